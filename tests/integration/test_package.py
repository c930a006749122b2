"""`make package` for real: the template lints, and the code runs from the artifact alone (the
analytics image's content: tests/integration/test_package_limits.py)."""

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
    return build.build("prod", out, log=lambda _line: None)


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
    assert build.ANALYTICS_IMAGE_DIR in names
    assert "sam.json" not in names  # one template to deploy, not two
    assert not [n for n in names if "analytics" in n and n.endswith(".zip")]  # no layer
    readme = (package.out / "README.md").read_text()
    assert "aws cloudformation deploy" in readme
    assert "docker push" in readme
    assert "AnalyticsImageUri=" in readme
    assert not (PROJECT_DIR / ".chalice" / "policy-prod.json").exists()


def test_the_image_context_holds_the_dockerfile_its_requirements_and_the_app(
    package: build.BuildResult,
) -> None:
    context = package.image_context
    dockerfile = (context / "Dockerfile").read_text()

    assert dockerfile.startswith("# The analytics functions")
    assert "FROM public.ecr.aws/lambda/python:3.11\n" in dockerfile
    for name in ("requirements.txt", "analytics-requirements.txt"):
        assert f"-r /tmp/requirements/{name}" in dockerfile
    assert (context / "analytics-requirements.txt").read_text() == (
        PROJECT_DIR / "layers" / "analytics" / "requirements.txt"
    ).read_text()
    for name in ("app.py", "functions", "crm", "crm_analytics", "chalice"):
        assert f"COPY {name} ${{LAMBDA_TASK_ROOT}}/{name}" in dockerfile
        assert (context / name).exists(), name
    assert (context / "chalice" / "app.py").is_file()  # the runtime deployment.zip carries
    assert (context / "crm_analytics" / "athena.py").is_file()
    assert not list(context.rglob("__pycache__"))


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


def test_the_analytics_functions_run_from_the_image_and_every_other_from_the_zip(
    template: dict[str, Any],
) -> None:
    from infra.template import app_function_names, is_image

    functions = functions_of(template)
    names = app_function_names(template)
    images = {names[f] for f, body in functions.items() if is_image(body)}

    assert images == set(build.ANALYTICS_FUNCTIONS) == {"analytics", "segmentation", "reports"}
    for function_id, function in functions.items():
        props = function["Properties"]
        if is_image(function):
            assert function["Type"] == "AWS::Lambda::Function"
            assert props["Code"] == {"ImageUri": {"Ref": build.ANALYTICS_IMAGE_PARAMETER}}
            assert props["ImageConfig"] == {"Command": [f"app.{names[function_id]}"]}
            assert "Layers" not in props
            # Set for the prod stage in .chalice/config.json.
            assert (props["MemorySize"], props["Timeout"]) == (3008, 900), function_id
        else:
            # `aws cloudformation package` uploads the zip it names (a function without one
            # would get the template's whole directory).
            assert props["CodeUri"] == "./deployment.zip", function_id
            assert props["Layers"] == [{"Ref": build.CORE_LAYER}], function_id
    layer = template["Resources"][build.CORE_LAYER]
    assert layer["Properties"]["Content"] == f"./{build.CORE_LAYER_ZIP}"
    assert "Default" not in template["Parameters"][build.ANALYTICS_IMAGE_PARAMETER]
    # The nightly jobs keep their schedules, as rules.
    rules = {
        body["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0]: body["Properties"]
        for body in template["Resources"].values()
        if body["Type"] == "AWS::Events::Rule"
    }
    assert rules["Segmentation"]["ScheduleExpression"] == "cron(30 18 * * ? *)"
    assert rules["Reports"]["ScheduleExpression"] == "cron(0 19 * * ? *)"


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
    # The image's handlers too: the same app.py, which loads no analytics package itself.
    handlers = sorted(
        {
            f["Properties"].get("Handler") or f["Properties"]["ImageConfig"]["Command"][0]
            for f in functions.values()
        }
    )
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
    assert {"app.app", "app.operator", "app.analytics", "app.reports"} <= set(handlers)
    assert report["data_libraries"] == []
    assert report["site_packages"] == []
    assert str(PROJECT_DIR) not in report["path"]


# -- least privilege, from evidence (infra/permissions.json) ---------------------------------------

SENDER = "orders@shop.com"


@pytest.fixture(scope="module")
def permissions() -> dict[str, dict[str, list[str]]]:
    from infra.permissions import load_map

    return load_map()


@pytest.fixture(scope="module")
def policies(template: dict[str, Any]) -> dict[str, Any]:
    """Each function's statements (by its name in app.py), and the resolver they were read with."""
    from infra.template import app_function_names
    from tests.support import iam

    resolver = iam.Resolver(template, {"SenderEmail": SENDER})
    return {
        name: iam.statements_of_function(template, function_id, resolver)
        for function_id, name in app_function_names(template).items()
    } | {"": resolver}


def test_every_recorded_call_of_every_function_is_allowed_by_its_role(
    template: dict[str, Any], permissions: dict, policies: dict
) -> None:
    from tests.support import iam

    resolver = policies[""]
    refused = []
    for function, grants in permissions.items():
        for action, words in grants.items():
            for word in words:
                request = iam.sample_request(action, word, template, resolver)
                if request is not None and not iam.allowed(policies[function], request):
                    refused.append((function, action, word))

    assert refused == []
    # What the template of issue 10 lacked: email, and an SMS straight to a phone number.
    fulfilment = policies["fulfilment_step"]
    identity = f"arn:aws:ses:us-east-1:123456789012:identity/{SENDER}"
    assert iam.allowed(
        fulfilment, iam.Request("ses:SendEmail", identity, {"ses:FromAddress": SENDER})
    )
    assert iam.allowed(fulfilment, iam.Request("sns:Publish", iam.SAMPLE_PHONE))


def _universe(template: dict[str, Any], permissions: dict) -> list[tuple[str, str]]:
    """Every (data action, resource word) a function could be granted: each action of the map
    on each table and index, each bucket prefix (and one nobody uses), each topic, queue and
    state machine, the Glue database and its tables, the Athena workgroup, each function of
    the stack, a phone number and the sender."""
    from infra.resources import all_resources

    actions = sorted({a for grants in permissions.values() for a in grants} | {"sqs:SendMessage"})
    prefixes = sorted(
        {
            w.split("?prefix=", 1)[1] if "?prefix=" in w else w.split("/", 1)[1]
            for g in permissions.values()
            for ws in g.values()
            for w in ws
            if "*" in w and "/" in w
        }
        | {"nobody-uses-this/*"}
    )
    from infra.template import app_function_names

    words: list[str] = ["PhoneNumbers", "SenderIdentity"]
    words += [f"Function/{name}" for name in app_function_names(template).values()]
    for resource in all_resources():
        kind = template["Resources"][resource.logical_id]["Type"]
        words.append(resource.logical_id)
        if kind == "AWS::DynamoDB::Table":
            words += [f"{resource.logical_id}/index/{i.name}" for i in resource.indexes]
        elif kind == "AWS::Glue::Database":
            words += [f"{resource.logical_id}/{t.name}" for t in resource.tables]
        elif kind == "AWS::S3::Bucket":
            words += [f"{resource.logical_id}/{p}" for p in prefixes]
            words += [f"{resource.logical_id}?prefix={p}" for p in prefixes if "?" not in p]
        elif kind == "AWS::StepFunctions::StateMachine":
            words.append(f"{resource.logical_id}/executions")
    services = {
        "AWS::DynamoDB::Table": "dynamodb",
        "AWS::S3::Bucket": "s3",
        "AWS::SNS::Topic": "sns",
        "AWS::SQS::Queue": "sqs",
        "AWS::StepFunctions::StateMachine": "states",
        "AWS::Glue::Database": "glue",
        "AWS::Athena::WorkGroup": "athena",
    }

    def service_of(word: str) -> str:
        if word.startswith("Function/"):
            return "lambda"
        if word == "PhoneNumbers":
            return "sns"
        if word == "SenderIdentity":
            return "ses"
        head = word.split("/")[0].split("?")[0]
        return services[template["Resources"][head]["Type"]]

    # A listing's prefix is a condition of s3:ListBucket only.
    return [
        (a, w)
        for a in actions
        for w in words
        if a.split(":")[0] == service_of(w) and ("?prefix=" not in w or a == "s3:ListBucket")
    ]


def test_no_function_may_use_a_resource_it_was_never_seen_using(
    template: dict[str, Any], permissions: dict, policies: dict
) -> None:
    from infra.resources import FAILURES_QUEUE, all_resources
    from infra.template import app_function_names, asynchronous_function_ids
    from tests.support import iam

    resolver = policies[""]
    names = app_function_names(template)
    asynchronous = {names[f] for f in asynchronous_function_ids(template, all_resources())}
    universe = _universe(template, permissions)
    too_much = []
    for function, grants in permissions.items():
        expected = {(a, w) for a, words in grants.items() for w in words}
        if function in asynchronous:  # Lambda sends what failed every retry there
            expected.add(("sqs:SendMessage", FAILURES_QUEUE))
        for action, word in universe:
            request = iam.sample_request(action, word, template, resolver)
            if request is None or (action, word) in expected:
                continue
            if iam.allowed(policies[function], request):
                too_much.append((function, action, word))

    assert sorted(set(too_much)) == [], "\n".join(map(str, sorted(set(too_much))))
    assert {"import_file", "points_expiry", "low_stock", "segmentation", "reports"} <= (
        asynchronous
    )


def test_every_function_of_app_py_has_its_grants_or_a_reason_for_none(permissions: dict) -> None:
    from infra.permissions import NO_CALLS, declared_functions

    declared = declared_functions()

    assert sorted(permissions) == declared
    for function in declared:
        assert permissions[function] or NO_CALLS.get(function), function
    assert {"api_handler", "operator", "fulfilment_step", "import_file", "low_stock"} <= set(
        declared
    )


def test_a_role_s_inline_policies_fit_iam_s_size_limit(template: dict[str, Any]) -> None:
    for function_id in functions_of(template):
        role = template["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
        policies = template["Resources"][role]["Properties"]["Policies"]
        # IAM counts the policy without whitespace, after CloudFormation resolved it: names
        # grow by ~40 characters per ARN; half the limit leaves room for that.
        assert len(json.dumps(policies, separators=(",", ":"))) < 10_240 // 2, function_id


# -- failures in the cloud are seen ----------------------------------------------------------------


def test_every_function_is_watched_and_every_async_one_has_a_destination(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    alarms = {k for k, v in resources.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    configs = {
        v["Properties"]["FunctionName"]["Ref"]
        for v in resources.values()
        if v["Type"] == "AWS::Lambda::EventInvokeConfig"
    }

    for function_id in functions_of(template):
        assert {f"{function_id}ErrorsAlarm", f"{function_id}ThrottlesAlarm"} <= alarms
        assert f"{function_id}LogGroup" in resources
    # Analytics: the API queues job runs and erasure's scrub on it (InvocationType=Event)
    assert configs == {
        "ImportFile",
        "PointsExpiry",
        "LowStock",
        "Segmentation",
        "Reports",
        "Analytics",
    }
    assert {"FailuresQueueAlarm", "ImportsFailedAlarm"} <= alarms
    for machine in ("OrderFulfilment", "OrderException", "OrderRefund", "FileImport"):
        assert f"{machine}FailedAlarm" in alarms
    assert {"DropBucketTlsPolicy", "DataBucketTlsPolicy", "OpsAlertSubscription"} <= set(resources)
    assert "Default" not in template["Parameters"]["SenderEmail"]
