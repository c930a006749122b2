# Everything a new machine needs comes from these targets: they create .venv and install into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: run test test-fast bench package permissions lint format clean install

$(STAMP): requirements.txt requirements-dev.txt layers/analytics/requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip<26.3"  # chalice 1.34 asks for pip<26.3
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

## Serve the whole system locally: embedded AWS endpoint, API, Step Functions, schedules, drop-folder.
run: $(STAMP)
	$(BIN)/crm local

## Lint, then the whole test suite: unit, integration (moto) and end-to-end (the local stack),
## with every AWS call recorded; then every call a function made must be in its IAM grants
## (infra/permissions.json; `make permissions` rewrites it).
test: lint
	rm -rf build/aws-calls-test
	RECORD_AWS_CALLS=$(CURDIR)/build/aws-calls-test \
		$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --durations=15
	$(BIN)/python -m infra.permissions --check build/aws-calls-test

## The inner loop: lint, unit and integration tests (no local stack).
test-fast: lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile tests/unit tests/integration

## Benchmarks: every figure as JSON under bench/results/ (git-ignored), and bench/RESULTS.md
## (committed) rewritten from them: the figures, targets and verdicts that the docs refer to.
bench: $(STAMP)
	$(BIN)/python -m bench

## The deployable artifact (template, code, core layer, the analytics image's build context)
## under build/, offline.
package: $(STAMP)
	$(BIN)/python -m infra.build --stage prod --out build/package

## Rewrite infra/permissions.json (each function's IAM grants) from the AWS calls each function
## makes while the integration and e2e suites run (crm_local/aws_calls.py records them).
permissions: $(STAMP)
	rm -rf build/aws-calls
	RECORD_AWS_CALLS=$(CURDIR)/build/aws-calls $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) \
		--dist loadfile tests/integration tests/e2e $(PYTEST_ARGS)
	$(BIN)/python -m infra.permissions build/aws-calls

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf build bench/results bench/.data .pytest_cache .mypy_cache .ruff_cache
