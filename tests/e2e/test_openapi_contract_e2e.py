"""The OpenAPI document says what the API does: schemathesis generates requests from it
(examples, coverage, fuzzing and stateful phases, every default check) against the running
local stack, with the webhook and carrier bodies signed, and nothing may fail.

Bounded and reproducible: generation is deterministic (no seed drawn, no example database) and
the example budget is fixed in `schemathesis.toml`, which also lists, each with its reason, the
few rules no JSON Schema keyword can state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_DIR
from tests.e2e.conftest import TOKEN, RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HERE = Path(__file__).resolve().parent


def test_every_generated_request_gets_an_answer_the_document_allows(
    stack: RunningStack, tmp_path: Path
):
    # Given the running stack and its published document
    st = Path(sys.executable).with_name("st")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PROJECT_DIR), str(PROJECT_DIR / "layers/core/python")]),
        "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks",
        "NO_COLOR": "1",
    }
    # When schemathesis runs every phase and every default check against it
    run = subprocess.run(
        [
            str(st),
            "--config-file",
            str(HERE / "schemathesis.toml"),
            "run",
            f"{stack.api_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--workers",
            "4",
            "--request-timeout",
            "30",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path),
        ],
        cwd=tmp_path,  # its cache directory lands there, not in the checkout
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )

    # Then nothing failed, in any phase
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    assert " passed" in run.stdout and "failure" not in run.stdout.split("SUMMARY")[-1]
