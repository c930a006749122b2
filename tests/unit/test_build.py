"""`python -m infra.build` refuses a cloud build that would serve a shop with a placeholder,
before it builds anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra import build

PROJECT_DIR = Path(__file__).resolve().parents[2]


def project_with(tmp_path: Path, stage: str, **variables: str | None) -> Path:
    """A copy of the project's chalice config, one stage's variables changed (None: removed)."""
    config = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())
    section = config["stages"].setdefault(stage, json.loads(json.dumps(config["stages"]["prod"])))
    env = section["environment_variables"]
    env["CRM_STAGE"] = stage
    for name, value in variables.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    (tmp_path / ".chalice").mkdir(parents=True)
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))
    return tmp_path


def refusal(project: Path, stage: str, tmp_path: Path) -> str:
    out = tmp_path / "out" / "package"
    with pytest.raises(build.UnsafeStage) as refused:
        build.build(stage, out, project_dir=project, log=lambda _line: None)
    assert not out.exists()  # refused before anything was built
    return str(refused.value)


def test_the_local_stage_is_never_built_for_the_cloud(tmp_path: Path) -> None:
    message = refusal(PROJECT_DIR, "local", tmp_path)

    assert "refusing to build stage 'local'" in message
    assert "local stack" in message


def test_the_placeholder_payment_provider_is_refused(tmp_path: Path) -> None:
    for placeholder in ("local", None):  # named, or left to the default
        project = project_with(tmp_path / str(placeholder), "prod", CRM_PAYMENTS=placeholder)

        assert "CRM_PAYMENTS=local is the placeholder" in refusal(project, "prod", tmp_path)


def test_an_unknown_payment_provider_is_refused(tmp_path: Path) -> None:
    project = project_with(tmp_path, "prod", CRM_PAYMENTS="manaul")

    assert "no payment provider" in refusal(project, "prod", tmp_path)


def test_the_example_sender_address_is_refused(tmp_path: Path) -> None:
    project = project_with(tmp_path, "prod", CRM_SENDER_EMAIL="orders@shop.example")

    assert "example address" in refusal(project, "prod", tmp_path)


def test_a_test_stage_may_be_built_with_the_placeholders(tmp_path: Path) -> None:
    env = {"CRM_PAYMENTS": "local", "CRM_SENDER_EMAIL": "orders@shop.example"}

    build.check_stage("test", env)  # no refusal


def test_the_prod_stage_as_configured_may_be_built() -> None:
    _, env = build.stage_config("prod")

    build.check_stage("prod", env)  # no refusal: the sender is asked for at deploy


def test_the_command_line_says_why(tmp_path: Path) -> None:
    # SystemExit with a message: the interpreter prints it to stderr and exits with 1.
    with pytest.raises(SystemExit) as refused:
        build.main(["--stage", "local", "--out", str(tmp_path / "package")])

    assert "refusing to build stage 'local'" in str(refused.value.code)
