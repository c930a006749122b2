"""From recorded AWS calls to `infra/permissions.json`: IAM actions on the template's words."""

from __future__ import annotations

import random

from crm_local.provision import stage_environment
from infra import permissions

ENV = stage_environment("local")
FUNCTIONS = ["api_handler", "operator", "refund_step", "import_step"]


def call(function: str, service: str, operation: str, *resources: dict) -> dict:
    return {
        "function": function,
        "service": service,
        "operation": operation,
        "resources": list(resources),
    }


CALLS = [
    call(
        "api_handler",
        "dynamodb",
        "TransactWriteItems",
        {"kind": "table", "name": "crm-local-customers", "item": "Put"},
        {"kind": "table", "name": "crm-local-identities", "item": "ConditionCheck"},
    ),
    call(
        "api_handler",
        "dynamodb",
        "Query",
        {"kind": "table", "name": "crm-local-orders", "index": "by_customer"},
    ),
    call(
        "api_handler",
        "s3",
        "ListObjectsV2",
        {"kind": "bucket", "name": "crm-local-data", "prefix": "exports/"},
    ),
    call("api_handler", "stepfunctions", "SendTaskSuccess", {"kind": "task_token", "name": "*"}),
    call("api_handler", "sts", "GetCallerIdentity"),
    call(
        "import_step",
        "s3",
        "CopyObject",
        {"kind": "object", "name": "crm-local-drop", "prefix": "archive/"},
        {"kind": "object", "name": "crm-local-drop", "prefix": "incoming/", "role": "source"},
    ),
    call(
        "import_step",
        "s3",
        "HeadObject",
        {"kind": "object", "name": "crm-local-drop", "prefix": "incoming/"},
    ),
    call(
        "import_step",
        "ssm",
        "GetParameter",
        {"kind": "parameter", "name": "/crm/local/faults"},
    ),
    call("refund_step", "ses", "SendEmail", {"kind": "sender", "name": "orders@shop.example"}),
    call(
        "refund_step",
        "s3",
        "PutObject",
        {"kind": "object", "name": "crm-local-data", "prefix": "payments/"},
    ),
    call(
        "refund_step",
        "sns",
        "Publish",
        {"kind": "topic", "name": "arn:aws:sns:us-east-1:123456789012:crm-local-ops"},
    ),
]


def test_calls_become_iam_actions_on_the_template_s_resources() -> None:
    built, problems = permissions.build_map(CALLS, ENV, FUNCTIONS)

    assert problems == []
    assert built["operator"] == {}  # declared, never seen calling AWS
    assert built["api_handler"] == {
        # A transaction is authorised as its parts.
        "dynamodb:ConditionCheckItem": ["IdentitiesTable"],
        "dynamodb:PutItem": ["CustomersTable"],
        "dynamodb:Query": ["OrdersTable/index/by_customer"],
        "s3:ListBucket": ["DataBucket?prefix=exports/*"],
        # A task token names no workflow: every one that hands tokens out; and the code that
        # answers one with success answers it with failure in another case.
        "states:SendTaskFailure": ["OrderException", "OrderFulfilment"],
        "states:SendTaskSuccess": ["OrderException", "OrderFulfilment"],
    }
    assert built["import_step"] == {
        "s3:GetObject": ["DropBucket/incoming/*"],  # HeadObject, and the copy's source
        "s3:PutObject": ["DropBucket/archive/*"],
        "ssm:GetParameter": ["Secrets/faults"],
    }


def test_what_the_same_code_needs_in_another_case_is_granted_too() -> None:
    built, _ = permissions.build_map(CALLS, ENV, FUNCTIONS)

    # Email seen: the same message may go by SMS; a local payout seen: a manual one publishes.
    assert built["refund_step"]["sns:Publish"] == ["OpsTopic", "PhoneNumbers"]
    assert built["refund_step"]["ses:SendEmail"] == ["SenderIdentity"]


def test_a_task_answered_one_way_may_be_answered_the_other_way_on_the_same_machines() -> None:
    # Given a step seen only failing a waiting task (the carrier said delivery_failed)
    failing = call(
        "fulfilment_step", "stepfunctions", "SendTaskFailure", {"kind": "task_token", "name": "*"}
    )

    built, _ = permissions.build_map([failing], ENV, ["fulfilment_step"])

    # Then it may succeed one too (the carrier says delivered), on the same machines
    machines = ["OrderException", "OrderFulfilment"]
    assert built["fulfilment_step"] == {
        "states:SendTaskFailure": machines,
        "states:SendTaskSuccess": machines,
    }


def test_the_map_does_not_depend_on_the_order_calls_were_seen_in() -> None:
    shuffled = CALLS[:]
    random.Random(7).shuffle(shuffled)

    first = permissions.dump_map(permissions.build_map(CALLS, ENV, FUNCTIONS)[0])
    second = permissions.dump_map(permissions.build_map(shuffled, ENV, FUNCTIONS)[0])

    assert first == second


def test_a_call_on_something_infra_does_not_declare_is_reported_not_granted() -> None:
    stray = call("api_handler", "dynamodb", "GetItem", {"kind": "table", "name": "elsewhere"})

    built, problems = permissions.build_map([stray], ENV, FUNCTIONS)

    assert built["api_handler"] == {}
    assert problems == ["api_handler: dynamodb.GetItem: table 'elsewhere'"]


def test_the_checked_in_map_is_sorted_and_has_no_timestamps() -> None:
    text = permissions.PERMISSIONS_FILE.read_text()

    assert text == permissions.dump_map(permissions.load_map())


def test_the_check_after_the_suites_fails_on_a_call_the_map_does_not_grant(tmp_path, capsys):
    import json

    granted = call(
        "low_stock", "dynamodb", "Scan", {"kind": "table", "name": "crm-local-inventory"}
    )
    new = call("low_stock", "dynamodb", "GetItem", {"kind": "table", "name": "crm-local-orders"})
    (tmp_path / "calls-1.json").write_text(json.dumps({"calls": [granted]}))

    assert permissions.main(["--check", str(tmp_path)]) == 0

    (tmp_path / "calls-2.json").write_text(json.dumps({"calls": [new]}))

    assert permissions.main(["--check", str(tmp_path)]) == 1
    assert "low_stock: dynamodb:GetItem OrdersTable" in capsys.readouterr().err


REGION, ANALYTICS = "us-east-1", "shop-crm-local-analytics"


def test_an_invoked_function_of_the_stack_is_granted_by_its_name_in_app_py() -> None:
    from crm_local import aws_calls

    # Given the API invoking the analytics function (by name, or by ARN with a qualifier), as
    # the recorder sees the calls
    by_name = aws_calls.resources_of(
        "lambda", "Invoke", {"FunctionName": ANALYTICS, "Payload": b"{}"}
    )
    by_arn = aws_calls.resources_of(
        "lambda",
        "Invoke",
        {"FunctionName": f"arn:aws:lambda:{REGION}:123456789012:function:{ANALYTICS}:7"},
    )
    calls = [
        call("api_handler", "lambda", "Invoke", *by_name),
        call("refund_step", "lambda", "Invoke", *by_arn),
    ]

    built, problems = permissions.build_map(calls, ENV, [*FUNCTIONS, "analytics"], cloud_only={})

    # Then each may invoke it: the word the template turns into the function's ARN
    assert problems == []
    assert built["api_handler"] == {"lambda:InvokeFunction": ["Function/analytics"]}
    assert built["refund_step"]["lambda:InvokeFunction"] == ["Function/analytics"]


def test_an_invoke_of_a_function_that_is_not_the_stack_s_is_reported_not_granted() -> None:
    calls = [
        call("api_handler", "lambda", "Invoke", {"kind": "function", "name": name})
        for name in ("shop-crm-prod-analytics", "shop-crm-local-nobody", "elsewhere")
    ]

    built, problems = permissions.build_map(calls, ENV, [*FUNCTIONS, "analytics"], cloud_only={})

    assert built["api_handler"] == {}
    assert len(problems) == 3
    assert "'nobody' is no function of app.py" in problems[1]


def test_the_analytics_functions_may_query_the_snapshot_on_athena_though_no_suite_shows_it() -> (
    None
):
    # Given no recorded call at all
    built, _ = permissions.build_map([], ENV, ["analytics", "reports", "api_handler"])

    # Then the functions that run crm_analytics may run the snapshot's SQL on Athena
    analytics = built["analytics"]
    assert analytics["athena:StartQueryExecution"] == ["AnalyticsWorkGroup"]
    assert analytics["athena:StopQueryExecution"] == ["AnalyticsWorkGroup"]
    assert analytics["glue:GetDatabase"] == ["AnalyticsDatabase"]
    assert analytics["glue:GetTable"] == [
        "AnalyticsDatabase",
        "AnalyticsDatabase/customers",
        "AnalyticsDatabase/order_lines",
        "AnalyticsDatabase/orders",
        "AnalyticsDatabase/points",
    ]
    assert analytics["s3:GetObject"] == [
        "DataBucket/analytics/snapshot/*",
        "DataBucket/athena-results/*",
    ]
    assert analytics["s3:ListBucket"] == ["DataBucket?prefix=analytics/snapshot/*"]
    assert analytics["s3:PutObject"] == ["DataBucket/athena-results/*"]
    assert built["reports"] == analytics
    assert built["api_handler"] == {}  # the API runs no query
    assert all(why for _grants, why in permissions.CLOUD_ONLY.values())
