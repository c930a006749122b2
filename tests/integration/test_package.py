"""`make package` for real (without the analytics layer, a ~100 MB download): the template
lints, and the code runs from the artifact alone."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from crm_local.provision import table_request
from infra import build
from infra.resources import TABLES, all_resources
from infra.template import find_cycle, functions_of

pytestmark = pytest.mark.slow

PROJECT_DIR = Path(__file__).resolve().parents[2]
DATA_LIBRARIES = ("pandas", "numpy", "pyarrow")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> build.BuildResult:
    out = tmp_path_factory.mktemp("package") / "package"
    return build.build("prod", out, skip_analytics_layer=True, log=lambda _line: None)


@pytest.fixture(scope="module")
def template(package: build.BuildResult) -> dict[str, Any]:
    return json.loads(package.template.read_text())


@pytest.fixture(scope="module")
def artifact(
    package: build.BuildResult, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """The deployment package and the core layer, unzipped where Lambda would put them."""
    root = tmp_path_factory.mktemp("lambda")
    with zipfile.ZipFile(package.artifacts["deployment"]) as archive:
        archive.extractall(root / "task")
    with zipfile.ZipFile(package.artifacts[build.CORE_LAYER]) as archive:
        archive.extractall(root / "opt")
    return root / "task", root / "opt" / "python"


def test_the_output_holds_the_template_the_code_and_the_layers(package: build.BuildResult) -> None:
    names = {p.name for p in package.out.iterdir()}

    assert {"template.json", "deployment.zip", "core-layer.zip", "README.md"} <= names
    assert "sam.json" not in names  # one template to deploy, not two
    assert "aws cloudformation deploy" in (package.out / "README.md").read_text()
    assert not (PROJECT_DIR / ".chalice" / "policy-prod.json").exists()


def test_the_template_passes_cfn_lint(package: build.BuildResult) -> None:
    from cfnlint.api import lint_file

    matches = lint_file(package.template)

    errors = [
        f"{m.rule.id} {m.message} at {'/'.join(map(str, m.path))}"
        for m in matches
        if m.rule.id.startswith("E")
    ]
    assert errors == []


def test_the_template_has_no_dependency_cycle(template: dict[str, Any]) -> None:
    assert find_cycle(template) is None


def test_every_function_has_the_core_layer(template: dict[str, Any]) -> None:
    functions = functions_of(template)

    assert {"APIHandler", "Operator"} <= set(functions)
    for function_id, function in functions.items():
        assert {"Ref": build.CORE_LAYER} in function["Properties"].get("Layers", []), function_id
    layer = template["Resources"][build.CORE_LAYER]
    assert layer["Properties"]["Content"] == f"./{build.CORE_LAYER_ZIP}"


def test_every_table_has_the_keys_the_local_stack_creates(template: dict[str, Any]) -> None:
    for table in TABLES:
        resource = template["Resources"][table.logical_id]
        local = table_request(table, "any")
        for key in ("KeySchema", "AttributeDefinitions", "BillingMode"):
            assert resource["Properties"][key] == local[key], (table.logical_id, key)
        assert resource["Properties"].get("GlobalSecondaryIndexes") == local.get(
            "GlobalSecondaryIndexes"
        ), table.logical_id


def test_every_resource_variable_is_bound_to_its_resource(template: dict[str, Any]) -> None:
    bound = {r.env_var for r in all_resources()}
    for function_id, function in functions_of(template).items():
        variables = function["Properties"]["Environment"]["Variables"]
        for var in bound & set(variables):
            assert isinstance(variables[var], dict), (function_id, var, variables[var])


def test_the_deployment_package_holds_the_app_not_the_core_or_data_libraries(
    package: build.BuildResult,
) -> None:
    with zipfile.ZipFile(package.artifacts["deployment"]) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}

    assert {"app.py", "functions", "chalice"} <= tops
    assert "crm" not in tops  # the layer is its only copy
    assert not tops & set(DATA_LIBRARIES)


CHECK = """
import importlib, json, sys
sys.path[:0] = sys.argv[1:3]
import app
handlers = json.loads(sys.argv[3])
resolved = {}
for handler in handlers:
    module, _, attr = handler.rpartition(".")
    resolved[handler] = callable(getattr(importlib.import_module(module), attr, None))
files = [getattr(m, "__file__", None) or "" for m in list(sys.modules.values())]
print(json.dumps({
    "resolved": resolved,
    "data_libraries": sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[4:])),
    "site_packages": sorted({f for f in files if "site-packages" in f})[:5],
    "path": sys.path,
}))
"""


def test_every_handler_resolves_from_the_artifact_alone(
    template: dict[str, Any], artifact: tuple[Path, Path]
) -> None:
    task, layer = artifact
    functions = functions_of(template)
    handlers = sorted({f["Properties"]["Handler"] for f in functions.values()})
    env = {"AWS_DEFAULT_REGION": "us-east-1"}
    for function in functions.values():
        for var, value in function["Properties"]["Environment"]["Variables"].items():
            env[var] = value if isinstance(value, str) else f"dummy-{var.lower()}"

    # -S -I: the stdlib and nothing else (no site-packages, no project dir, no PYTHONPATH).
    done = subprocess.run(
        [
            sys.executable,
            "-S",
            "-I",
            "-c",
            CHECK,
            str(task),
            str(layer),
            json.dumps(handlers),
            *DATA_LIBRARIES,
        ],
        env=env,
        cwd=task.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["resolved"] == {h: True for h in handlers}
    assert {"app.app", "app.operator"} <= set(handlers)
    assert report["data_libraries"] == []
    assert report["site_packages"] == []
    assert str(PROJECT_DIR) not in report["path"]
