"""The template builder on a synthetic set of resources: a table with an index and a TTL, a
bucket that notifies a function, a state machine with every kind of substitution, merged into a
small template shaped like chalice's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crm_local.provision import table_request as local_table_request
from infra import template as cfn
from infra.resources import (
    Bucket,
    Expiry,
    GlueDatabase,
    GlueTable,
    Index,
    Notification,
    Queue,
    StateMachine,
    Table,
    Topic,
    WorkGroup,
)

STAGE = "prod"
SETTINGS = {"prod": {"delivery_wait_seconds": 1209600}}
NAMES = {
    "POWERTOOLS_SERVICE_NAME": "crm",
    "POWERTOOLS_METRICS_NAMESPACE": "ShopCRM",
    "CRM_ORDERS_TABLE": "crm-prod-orders",
    "CRM_DROP_BUCKET": "crm-prod-drop",
    "CRM_OPS_TOPIC": "crm-prod-ops",
    "CRM_EVENTS_QUEUE": "crm-prod-events",
    "CRM_FULFILMENT_SM": "crm-prod-fulfilment",
    "CRM_GLUE_DATABASE": "crm_prod_analytics",
    "CRM_ATHENA_WORKGROUP": "crm-prod-analytics",
}
DEFINITION = {
    "StartAt": "Allocate",
    "States": {
        "Allocate": {
            "Type": "Task",
            "Resource": "${AllocateArn}",
            "Parameters": {"table": "${OrdersTable}", "topic": "${OpsTopic}"},
            "Next": "Wait",
        },
        "Wait": {"Type": "Wait", "Seconds": 60, "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}

ORDERS = Table(
    logical_id="OrdersTable",
    env_var="CRM_ORDERS_TABLE",
    hash_key="order_id",
    range_key="sk",
    ttl_attribute="expires_at",
    numeric_keys=("placed_at",),
    indexes=(Index(name="by_customer", hash_key="customer_id", range_key="placed_at"),),
)
DROP = Bucket(
    logical_id="DropBucket",
    env_var="CRM_DROP_BUCKET",
    notifications=(Notification(prefix="incoming/orders/", suffix=".csv", function="import_file"),),
)
DATA = Bucket(
    logical_id="DataBucket",
    env_var="CRM_DATA_BUCKET",
    expiries=(Expiry("exports/", "ExportsRetentionDays"),),
)
OPS = Topic(logical_id="OpsTopic", env_var="CRM_OPS_TOPIC")
EVENTS = Queue(logical_id="EventsQueue", env_var="CRM_EVENTS_QUEUE", visibility_timeout=90)
FAILURES = Queue(logical_id="FailuresQueue", env_var="CRM_FAILURES_QUEUE")
SNAPSHOT = GlueDatabase(
    logical_id="AnalyticsDatabase",
    env_var="CRM_GLUE_DATABASE",
    bucket="DataBucket",
    prefix="analytics/snapshot/",
    tables=(
        GlueTable("orders", (("order_id", "string"), ("day", "date"), ("total", "bigint"))),
        GlueTable("order_lines", (("order_id", "string"), ("tags", "array<string>"))),
    ),
)
ATHENA = WorkGroup(
    logical_id="AnalyticsWorkGroup",
    env_var="CRM_ATHENA_WORKGROUP",
    bucket="DataBucket",
    results_prefix="athena-results/",
)
# What each function of the synthetic app was "seen" doing (infra/permissions.json's shape).
PERMISSIONS = {
    "api_handler": {
        "dynamodb:GetItem": ["OrdersTable"],
        "dynamodb:Query": ["OrdersTable/index/by_customer"],
        "s3:ListBucket": ["DataBucket?prefix=exports/*"],
        "s3:PutObject": ["DataBucket/exports/*"],
        "states:StartExecution": ["FulfilmentStateMachine"],
        "lambda:InvokeFunction": ["Function/nightly"],
    },
    "operator": {},
    "import_file": {
        "s3:GetObject": ["DropBucket/incoming/*"],
        "s3:PutObject": ["DropBucket/archive/*", "DropBucket/results/*"],
        "sqs:SendMessage": ["EventsQueue"],
    },
    "allocate": {
        "dynamodb:PutItem": ["OrdersTable"],
        "ses:SendEmail": ["SenderIdentity"],
        "sns:Publish": ["OpsTopic", "PhoneNumbers"],
        "ssm:GetParameter": ["Secrets/faults"],
        "states:DescribeExecution": ["FulfilmentStateMachine/executions"],
        "states:SendTaskSuccess": ["FulfilmentStateMachine"],
    },
    "nightly": {
        "athena:StartQueryExecution": ["AnalyticsWorkGroup"],
        "dynamodb:Scan": ["OrdersTable"],
        "glue:GetTable": ["AnalyticsDatabase", "AnalyticsDatabase/orders"],
    },
}


def _machine(definition: Path) -> StateMachine:
    class LocalMachine(StateMachine):
        def definition_path(self) -> Path:
            return definition

    return LocalMachine(
        logical_id="FulfilmentStateMachine",
        env_var="CRM_FULFILMENT_SM",
        definition_file=definition.name,
        substitutions={
            "AllocateArn": "function:allocate",
            "OrdersTable": "env:CRM_ORDERS_TABLE",
            "OpsTopic": "env:CRM_OPS_TOPIC",
            "WaitSeconds": "stage:delivery_wait_seconds",
        },
    )


def _function(handler: str, role: str) -> dict:
    return {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "Runtime": "python3.11",
            "Handler": handler,
            "CodeUri": "./deployment.zip",
            "Role": {"Fn::GetAtt": [role, "Arn"]},
            "Environment": {"Variables": {"CRM_STAGE": "prod", **NAMES}},
        },
    }


def _scheduled(function: dict, expression: str) -> dict:
    function["Properties"]["Events"] = {
        "NightlyEvent": {"Type": "Schedule", "Properties": {"Schedule": expression}}
    }
    return function


def _role() -> dict:
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "Policies": [
                {
                    "PolicyName": "Chalice",
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}
                        ],
                    },
                }
            ],
        },
    }


def chalice_like() -> dict:
    """The parts of a `chalice package` template that the merge touches."""
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Resources": {
            "APIHandler": _function("app.app", "ApiHandlerRole"),
            "ApiHandlerRole": _role(),
            "Operator": _function("app.operator", "OperatorRole"),
            "OperatorRole": _role(),
            "ImportFile": _function("app.import_file", "ImportFileRole"),
            "ImportFileRole": _role(),
            "Allocate": _function("app.allocate", "AllocateRole"),
            "AllocateRole": _role(),
            "Nightly": _scheduled(_function("app.nightly", "NightlyRole"), "cron(0 2 * * ? *)"),
            "NightlyRole": _role(),
            "RestAPI": {
                "Type": "AWS::Serverless::Api",
                "Properties": {
                    "StageName": "api",
                    "DefinitionBody": {
                        "swagger": "2.0",
                        "info": {"title": "t", "version": "1"},
                        "paths": {},
                    },
                },
            },
        },
        "Outputs": {},
    }


@pytest.fixture
def machine(tmp_path: Path) -> StateMachine:
    path = tmp_path / "order_fulfilment.asl.json"
    path.write_text(json.dumps(DEFINITION))
    return _machine(path)


@pytest.fixture
def resources(machine: StateMachine) -> list:
    return [ORDERS, DROP, DATA, OPS, EVENTS, FAILURES, machine, SNAPSHOT, ATHENA]


def merge(template: dict, resources: list, **options) -> dict:
    options.setdefault("permissions", PERMISSIONS)
    return cfn.merge(template, resources, STAGE, NAMES, stage_settings=SETTINGS, **options)


@pytest.fixture
def merged(resources: list) -> dict:
    return merge(
        chalice_like(),
        resources,
        layers={"CoreLayer": ("./core-layer.zip", "core")},
        every_function_layers=["CoreLayer"],
    )


def statements_of(template: dict, role_id: str) -> list[dict]:
    return [
        s
        for p in template["Resources"][role_id]["Properties"].get("Policies", [])
        for s in p["PolicyDocument"]["Statement"]
    ]


def actions(statement: dict) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else action


# -- tables --------------------------------------------------------------------------------------


def test_a_table_has_its_keys_index_ttl_recovery_and_encryption(merged: dict) -> None:
    table = merged["Resources"]["OrdersTable"]
    props = table["Properties"]

    assert table["Type"] == "AWS::DynamoDB::Table"
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert "TableName" not in props
    assert props["KeySchema"] == [
        {"AttributeName": "order_id", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert {"AttributeName": "placed_at", "AttributeType": "N"} in props["AttributeDefinitions"]
    [index] = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by_customer"
    assert index["KeySchema"][1] == {"AttributeName": "placed_at", "KeyType": "RANGE"}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True}
    assert table["DeletionPolicy"] == "Retain"


def test_the_local_stack_and_the_template_build_tables_the_same_way(merged: dict) -> None:
    local = local_table_request(ORDERS, "crm-local-orders")
    props = merged["Resources"]["OrdersTable"]["Properties"]

    for key in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "BillingMode"):
        assert props[key] == local[key]


# -- buckets -------------------------------------------------------------------------------------


def test_a_bucket_is_private_encrypted_and_named_per_account(merged: dict) -> None:
    props = merged["Resources"]["DropBucket"]["Properties"]

    assert props["BucketName"] == {"Fn::Sub": "crm-prod-drop-${AWS::AccountId}-${AWS::Region}"}
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_a_bucket_notifies_its_function_once_s3_may_invoke_it(merged: dict) -> None:
    resources = merged["Resources"]
    bucket = resources["DropBucket"]
    [config] = bucket["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]

    assert config["Event"] == "s3:ObjectCreated:*"
    assert config["Function"] == {"Fn::GetAtt": ["ImportFile", "Arn"]}
    assert config["Filter"]["S3Key"]["Rules"] == [
        {"Name": "prefix", "Value": "incoming/orders/"},
        {"Name": "suffix", "Value": ".csv"},
    ]
    permission = resources["DropBucketImportFilePermission"]
    assert permission["Type"] == "AWS::Lambda::Permission"
    assert permission["Properties"]["Principal"] == "s3.amazonaws.com"
    assert permission["Properties"]["FunctionName"] == {"Fn::GetAtt": ["ImportFile", "Arn"]}
    assert permission["Properties"]["SourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:s3:::crm-prod-drop-${AWS::AccountId}-${AWS::Region}"
    }
    assert bucket["DependsOn"] == ["DropBucketImportFilePermission"]


def test_a_notification_to_an_undeclared_function_is_refused(resources: list) -> None:
    lost = Bucket(
        logical_id="LostBucket",
        env_var="CRM_LOST_BUCKET",
        notifications=(Notification(prefix="x/", function="nobody"),),
    )

    with pytest.raises(ValueError, match="nobody"):
        merge(chalice_like(), [*resources, lost])


def test_a_bucket_name_that_cannot_fit_is_refused() -> None:
    bucket = Bucket(logical_id="B", env_var="CRM_B")

    with pytest.raises(ValueError, match="bucket name"):
        cfn.bucket_name(bucket, STAGE, {"CRM_B": "crm-prod-a-much-too-long-bucket-name-prefix"})
    with pytest.raises(ValueError, match="bucket name"):
        cfn.bucket_name(bucket, STAGE, {"CRM_B": "Crm_Prod"})


# -- the snapshot's tables and the Athena workgroup -----------------------------------------------

# No CRM_DATA_BUCKET in NAMES: the default name.
DATA_BUCKET_NAME = "crm-prod-data-bucket-${AWS::AccountId}-${AWS::Region}"


def test_each_snapshot_dataset_is_a_parquet_table_with_projected_dates(merged: dict) -> None:
    resources = merged["Resources"]
    database = resources["AnalyticsDatabase"]
    table = resources["AnalyticsDatabaseOrderLines"]
    props = table["Properties"]["TableInput"]

    assert database["Type"] == "AWS::Glue::Database"
    assert database["Properties"]["DatabaseInput"]["Name"] == "crm_prod_analytics"
    assert table["Type"] == "AWS::Glue::Table"
    assert table["Properties"]["DatabaseName"] == {"Ref": "AnalyticsDatabase"}
    assert props["Name"] == "order_lines"
    assert props["TableType"] == "EXTERNAL_TABLE"
    assert props["PartitionKeys"] == [{"Name": "date", "Type": "string"}]
    storage = props["StorageDescriptor"]
    assert storage["Columns"] == [
        {"Name": "order_id", "Type": "string"},
        {"Name": "tags", "Type": "array<string>"},
    ]
    assert storage["Location"] == {
        "Fn::Sub": f"s3://{DATA_BUCKET_NAME}/analytics/snapshot/order_lines/"
    }
    assert storage["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    # No crawler and no partition to add: Athena computes each day's location.
    parameters = props["Parameters"]
    assert parameters["projection.enabled"] == "true"
    assert parameters["projection.date.type"] == "date"
    assert parameters["projection.date.format"] == "yyyy-MM-dd"
    assert parameters["projection.date.range"] == "2000-01-01,NOW+1DAYS"
    assert parameters["storage.location.template"] == {
        # ${!date} is a literal ${date} for Athena, not a substitution of CloudFormation's.
        "Fn::Sub": f"s3://{DATA_BUCKET_NAME}/analytics/snapshot/order_lines/date=${{!date}}/"
    }
    assert {"AnalyticsDatabaseOrders", "AnalyticsDatabaseOrderLines"} <= set(resources)


def test_athena_keeps_its_results_under_its_prefix_of_the_data_bucket(merged: dict) -> None:
    workgroup = merged["Resources"]["AnalyticsWorkGroup"]
    configuration = workgroup["Properties"]["WorkGroupConfiguration"]

    assert workgroup["Type"] == "AWS::Athena::WorkGroup"
    assert workgroup["Properties"]["Name"] == "crm-prod-analytics"
    assert configuration["EnforceWorkGroupConfiguration"] is True  # whatever a caller asks
    assert configuration["ResultConfiguration"]["OutputLocation"] == {
        "Fn::Sub": f"s3://{DATA_BUCKET_NAME}/athena-results/"
    }


def test_functions_find_the_database_and_the_workgroup_by_name(merged: dict) -> None:
    variables = merged["Resources"]["Allocate"]["Properties"]["Environment"]["Variables"]

    # Ref of a Glue database and of a workgroup is its name.
    assert variables["CRM_GLUE_DATABASE"] == {"Ref": "AnalyticsDatabase"}
    assert variables["CRM_ATHENA_WORKGROUP"] == {"Ref": "AnalyticsWorkGroup"}
    assert merged["Outputs"]["AnalyticsDatabaseName"]["Value"] == {"Ref": "AnalyticsDatabase"}


def test_a_database_name_athena_cannot_read_or_a_missing_bucket_is_refused(resources: list) -> None:
    # The default name is made of the stage and the logical id, with underscores.
    assert cfn.glue_database_name(SNAPSHOT, "prod", {}) == "crm_prod_analytics_database"
    with pytest.raises(ValueError, match="no name Athena reads"):
        cfn.glue_database_name(SNAPSHOT, "prod", {"CRM_GLUE_DATABASE": "Crm_Prod"})
    with pytest.raises(ValueError, match="DataBucket"):
        merge(chalice_like(), [r for r in resources if r is not DATA])


# -- state machines ------------------------------------------------------------------------------


def test_a_state_machine_gets_each_kind_of_substitution(merged: dict) -> None:
    machine = merged["Resources"]["FulfilmentStateMachine"]
    props = machine["Properties"]

    assert machine["Type"] == "AWS::StepFunctions::StateMachine"
    assert props["StateMachineType"] == "STANDARD"
    assert props["StateMachineName"] == "crm-prod-fulfilment"
    assert json.loads(props["DefinitionString"]) == DEFINITION
    assert props["DefinitionSubstitutions"] == {
        "AllocateArn": {"Fn::GetAtt": ["Allocate", "Arn"]},
        "OrdersTable": {"Ref": "OrdersTable"},
        "OpsTopic": {"Fn::GetAtt": ["OpsTopic", "TopicName"]},
        "WaitSeconds": "1209600",
    }
    assert props["RoleArn"] == {"Fn::GetAtt": ["FulfilmentStateMachineRole", "Arn"]}


def test_a_state_machine_may_invoke_its_functions_and_use_what_it_names(merged: dict) -> None:
    role = merged["Resources"]["FulfilmentStateMachineRole"]
    statements = statements_of(merged, "FulfilmentStateMachineRole")
    by_action = {a: s for s in statements for a in actions(s)}

    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "states.amazonaws.com"}
    assert {"Fn::GetAtt": ["Allocate", "Arn"]} in by_action["lambda:InvokeFunction"]["Resource"]
    assert {"Fn::GetAtt": ["OrdersTable", "Arn"]} in by_action["dynamodb:PutItem"]["Resource"]
    assert by_action["sns:Publish"]["Resource"] == [{"Ref": "OpsTopic"}]
    assert "sqs:SendMessage" not in by_action  # the queue is not named by the machine


@pytest.mark.parametrize(
    ("substitution", "message"),
    [
        ("function:nowhere", "nowhere"),
        ("env:CRM_NOTHING", "CRM_NOTHING"),
        ("stage:no_such_setting", "no_such_setting"),
        ("secret:x", "unknown substitution"),
    ],
)
def test_a_substitution_that_cannot_be_resolved_is_refused(
    tmp_path: Path, substitution: str, message: str
) -> None:
    path = tmp_path / "m.asl.json"
    path.write_text(json.dumps(DEFINITION))
    machine = _machine(path)
    broken = type(machine)(
        logical_id=machine.logical_id,
        env_var=machine.env_var,
        definition_file=path.name,
        substitutions={"X": substitution},
    )

    with pytest.raises(ValueError, match=message):
        merge(chalice_like(), [ORDERS, broken])


# -- functions -----------------------------------------------------------------------------------


def test_function_variables_point_at_the_resources(merged: dict) -> None:
    for function_id in ("APIHandler", "Operator", "ImportFile", "Allocate"):
        variables = merged["Resources"][function_id]["Properties"]["Environment"]["Variables"]
        assert variables["CRM_STAGE"] == "prod"
        assert variables["CRM_ORDERS_TABLE"] == {"Ref": "OrdersTable"}
        assert variables["CRM_DROP_BUCKET"] == {
            "Fn::Sub": "crm-prod-drop-${AWS::AccountId}-${AWS::Region}"
        }
        assert variables["CRM_OPS_TOPIC"] == {"Fn::GetAtt": ["OpsTopic", "TopicName"]}
        assert variables["CRM_EVENTS_QUEUE"] == {"Fn::GetAtt": ["EventsQueue", "QueueName"]}
        assert variables["CRM_FULFILMENT_SM"] == {
            "Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"
            ":stateMachine:crm-prod-fulfilment"
        }


def test_buckets_notifying_functions_and_workflows_calling_them_make_no_cycle(merged: dict) -> None:
    assert cfn.find_cycle(merged) is None


def test_a_cycle_is_found_when_there_is_one(merged: dict) -> None:
    # What binding the bucket's variable with Ref would do: function -> bucket -> function.
    merged["Resources"]["ImportFile"]["Properties"]["Environment"]["Variables"][
        "CRM_DROP_BUCKET"
    ] = {"Ref": "DropBucket"}

    cycle = cfn.find_cycle(merged)

    assert cycle is not None
    assert {"ImportFile", "DropBucket"} <= set(cycle)


def test_every_function_gets_the_core_layer(merged: dict) -> None:
    layers = {
        f: merged["Resources"][f]["Properties"]["Layers"]
        for f in ("APIHandler", "Operator", "ImportFile", "Allocate", "Nightly")
    }

    assert all(lst == [{"Ref": "CoreLayer"}] for lst in layers.values())
    layer = merged["Resources"]["CoreLayer"]
    assert layer["Type"] == "AWS::Lambda::LayerVersion"
    assert layer["Properties"]["Content"] == "./core-layer.zip"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.11"]


# -- container-image functions -------------------------------------------------------------------


@pytest.fixture
def imaged(merged: dict) -> dict:
    """The merged template with the scheduled `nightly` and the workflow's `allocate` run from
    an image."""
    merged["Resources"]["Nightly"]["Properties"]["Tracing"] = "Active"
    cfn.use_image(merged, ["nightly", "allocate"], "JobsImageUri")
    return merged


def test_an_image_function_runs_its_handler_from_the_image_parameter(imaged: dict) -> None:
    nightly = imaged["Resources"]["Nightly"]
    props = nightly["Properties"]

    # Not AWS::Serverless::Function: `aws cloudformation package` would upload the template's
    # directory as the CodeUri it lacks, and SAM refuses CodeUri beside ImageUri.
    assert nightly["Type"] == "AWS::Lambda::Function"
    assert props["PackageType"] == "Image"
    assert props["Code"] == {"ImageUri": {"Ref": "JobsImageUri"}}
    assert props["ImageConfig"] == {"Command": ["app.nightly"]}
    assert not {"Runtime", "Handler", "CodeUri", "Layers", "Events", "Tracing"} & set(props)
    assert props["TracingConfig"] == {"Mode": "Active"}
    # As merge made it: its name, role, environment and log group.
    assert props["FunctionName"] == "shop-crm-prod-nightly"
    assert props["Role"] == {"Fn::GetAtt": ["NightlyRole", "Arn"]}
    assert props["Environment"]["Variables"]["CRM_ORDERS_TABLE"] == {"Ref": "OrdersTable"}
    assert nightly["DependsOn"] == ["NightlyLogGroup"]
    assert imaged["Parameters"]["JobsImageUri"]["Type"] == "String"
    assert cfn.app_function_names(imaged)["Nightly"] == "nightly"
    assert cfn.is_image(nightly) and not cfn.is_image(imaged["Resources"]["ImportFile"])


def test_an_image_function_s_schedule_is_a_rule_that_may_invoke_it(imaged: dict) -> None:
    resources = imaged["Resources"]
    rule = resources["NightlyNightlyEvent"]
    permission = resources["NightlyNightlyEventPermission"]

    assert rule["Type"] == "AWS::Events::Rule"
    assert rule["Properties"]["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert rule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["Nightly", "Arn"]}
    assert permission["Properties"]["Principal"] == "events.amazonaws.com"
    assert permission["Properties"]["SourceArn"] == {"Fn::GetAtt": ["NightlyNightlyEvent", "Arn"]}
    # Still asynchronous: its failures go to the failures queue.
    assert "Nightly" in cfn.asynchronous_function_ids(imaged, [])
    assert resources["NightlyInvokeConfig"]["Properties"]["FunctionName"] == {"Ref": "Nightly"}


def test_a_workflow_still_invokes_an_image_function_by_its_arn(imaged: dict) -> None:
    substitutions = imaged["Resources"]["FulfilmentStateMachine"]["Properties"][
        "DefinitionSubstitutions"
    ]

    assert substitutions["AllocateArn"] == {"Fn::GetAtt": ["Allocate", "Arn"]}
    assert cfn.find_cycle(imaged) is None


def test_the_template_with_image_functions_passes_cfn_lint(imaged: dict) -> None:
    from cfnlint.api import lint

    matches = lint(json.dumps(imaged))

    errors = [f"{m.rule.id} {m.message} ({m.path})" for m in matches if m.rule.id.startswith("E")]
    assert errors == []


def test_what_an_image_function_cannot_carry_refuses_the_build(merged: dict) -> None:
    with pytest.raises(ValueError, match="nobody"):
        cfn.use_image(merged, ["nobody"], "ImageUri")
    merged["Resources"]["ImportFile"]["Properties"]["Events"] = {
        "Upload": {"Type": "S3", "Properties": {"Bucket": "b"}}
    }
    with pytest.raises(ValueError, match="no plain schedule"):
        cfn.use_image(merged, ["import_file"], "ImageUri")
    merged["Resources"]["Operator"]["Properties"]["SnapStart"] = {"ApplyOn": "None"}
    with pytest.raises(ValueError, match="SnapStart"):
        cfn.use_image(merged, ["operator"], "ImageUri")


def test_the_api_handler_has_chalice_s_logical_id() -> None:
    assert cfn.function_logical_id("api_handler") == "APIHandler"
    assert cfn.function_logical_id("import_file") == "ImportFile"


# -- IAM -----------------------------------------------------------------------------------------


def test_the_base_policy_is_logs_traces_and_the_stage_secrets_only() -> None:
    statements = cfn.function_policy(STAGE)["Statement"]
    by_action = {a: s for s in statements for a in actions(s)}

    assert {a.split(":")[0] for a in by_action} == {"logs", "xray", "ssm", "kms"}
    assert by_action["ssm:GetParameter"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/crm/prod/*"
    }
    assert "kms:ViaService" in by_action["kms:Decrypt"]["Condition"]["StringEquals"]


def evaluator(template: dict, sender: str = "orders@shop.com"):
    from tests.support import iam

    resolver = iam.Resolver(template, {"SenderEmail": sender})
    return iam, resolver


def test_each_function_may_do_exactly_what_it_was_seen_doing(merged: dict) -> None:
    iam, resolver = evaluator(merged)
    for name, grants in PERMISSIONS.items():
        statements = iam.statements_of_function(merged, cfn.function_logical_id(name), resolver)
        for action, words in grants.items():
            for word in words:
                request = iam.sample_request(action, word, merged, resolver)
                if request is not None:
                    assert iam.allowed(statements, request), (name, action, word)


def test_a_function_may_not_touch_what_it_was_not_seen_touching(merged: dict) -> None:
    iam, resolver = evaluator(merged)
    import_file = iam.statements_of_function(merged, "ImportFile", resolver)
    allocate = iam.statements_of_function(merged, "Allocate", resolver)
    drop = "arn:aws:s3:::crm-prod-drop-123456789012-us-east-1"

    # The same bucket, another prefix or another action.
    assert not iam.allowed(import_file, iam.Request("s3:GetObject", f"{drop}/archive/x.csv"))
    assert not iam.allowed(import_file, iam.Request("s3:DeleteObject", f"{drop}/incoming/x"))
    # The same table, another action; another function's table.
    orders = resolver.get_att("OrdersTable", "Arn")
    assert not iam.allowed(allocate, iam.Request("dynamodb:DeleteItem", orders))
    assert not iam.allowed(import_file, iam.Request("dynamodb:GetItem", orders))
    # An index is not its table, nor another index.
    api = iam.statements_of_function(merged, "APIHandler", resolver)
    assert not iam.allowed(api, iam.Request("dynamodb:Query", orders))
    assert not iam.allowed(api, iam.Request("dynamodb:Query", f"{orders}/index/other"))


def test_sms_may_go_to_phone_numbers_but_the_same_grant_reaches_no_topic(merged: dict) -> None:
    iam, resolver = evaluator(merged)
    allocate = iam.statements_of_function(merged, "Allocate", resolver)
    api = iam.statements_of_function(merged, "APIHandler", resolver)

    assert iam.allowed(allocate, iam.Request("sns:Publish", "+8613800138000"))
    assert iam.allowed(allocate, iam.Request("sns:Publish", resolver.ref("OpsTopic")))
    other_topic = "arn:aws:sns:us-east-1:123456789012:someone-elses-topic"
    assert not iam.allowed(allocate, iam.Request("sns:Publish", other_topic))
    assert not iam.allowed(allocate, iam.Request("sns:Publish", "arn:aws:sns:eu-west-1:1:x"))
    assert not iam.allowed(api, iam.Request("sns:Publish", "+8613800138000"))


def test_email_may_go_out_from_the_shop_s_address_only(merged: dict) -> None:
    iam, resolver = evaluator(merged, sender="orders@shop.com")
    allocate = iam.statements_of_function(merged, "Allocate", resolver)
    identity = "arn:aws:ses:us-east-1:123456789012:identity/"

    def send(resource: str, sender: str) -> object:
        return iam.Request("ses:SendEmail", identity + resource, {"ses:FromAddress": sender})

    assert iam.allowed(allocate, send("orders@shop.com", "orders@shop.com"))
    assert iam.allowed(allocate, send("shop.com", "orders@shop.com"))  # a verified domain
    assert not iam.allowed(allocate, send("shop.com", "ceo@shop.com"))
    assert not iam.allowed(allocate, send("other.com", "orders@shop.com"))
    assert not iam.allowed(
        iam.statements_of_function(merged, "ImportFile", resolver),
        send("orders@shop.com", "orders@shop.com"),
    )
    variables = merged["Resources"]["Allocate"]["Properties"]["Environment"]["Variables"]
    assert variables["CRM_SENDER_EMAIL"] == {"Ref": "SenderEmail"}
    assert "Default" not in merged["Parameters"]["SenderEmail"]  # the shop's own, at deploy


def test_listing_a_bucket_is_limited_to_the_prefixes_seen(merged: dict) -> None:
    iam, resolver = evaluator(merged)
    api = iam.statements_of_function(merged, "APIHandler", resolver)
    data = "arn:aws:s3:::" + resolver.ref("DataBucket")

    assert iam.allowed(api, iam.Request("s3:ListBucket", data, {"s3:prefix": "exports/c1/"}))
    assert not iam.allowed(api, iam.Request("s3:ListBucket", data, {"s3:prefix": "payments/"}))
    assert not iam.allowed(api, iam.Request("s3:ListBucket", data))


def test_task_callbacks_and_executions_name_their_state_machine(merged: dict) -> None:
    statements = statements_of(merged, "AllocateRole")
    by_action = {a: s for s in statements for a in actions(s)}

    assert by_action["states:SendTaskSuccess"]["Resource"] == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"
            ":stateMachine:crm-prod-fulfilment"
        }
    ]
    assert by_action["states:DescribeExecution"]["Resource"] == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"
            ":execution:crm-prod-fulfilment:*"
        }
    ]


def test_no_data_action_is_granted_by_wildcard(merged: dict) -> None:
    for name in PERMISSIONS:
        function_id = cfn.function_logical_id(name)
        role = merged["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
        for statement in statements_of(merged, role):
            assert not any(a.endswith("*") for a in actions(statement)), statement
            data = [a for a in actions(statement) if not a.startswith(("logs:", "xray:"))]
            if statement.get("Resource") == "*":
                assert data == [], statement


def test_a_function_missing_from_the_map_refuses_the_build(resources: list) -> None:
    partial = {k: v for k, v in PERMISSIONS.items() if k != "nightly"}
    stale = {**PERMISSIONS, "gone": {}}

    with pytest.raises(ValueError, match="no entry for nightly"):
        merge(chalice_like(), resources, permissions=partial)
    with pytest.raises(ValueError, match="no function gone"):
        merge(chalice_like(), resources, permissions=stale)


def test_a_map_word_infra_does_not_declare_refuses_the_build(resources: list) -> None:
    wrong = {**PERMISSIONS, "nightly": {"dynamodb:Scan": ["LostTable"]}}

    with pytest.raises(ValueError, match="LostTable"):
        merge(chalice_like(), resources, permissions=wrong)


def test_a_function_may_invoke_a_function_of_the_stack_by_its_cloud_name(merged: dict) -> None:
    iam, resolver = evaluator(merged)
    api = iam.statements_of_function(merged, "APIHandler", resolver)
    function = "arn:aws:lambda:us-east-1:123456789012:function:shop-crm-prod-"
    [statement] = [
        s
        for s in statements_of(merged, "ApiHandlerRole")
        if s["Action"] == ["lambda:InvokeFunction"]
    ]

    # Named, not Fn::GetAtt: the API's role does not wait for the function it invokes.
    assert statement["Resource"] == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}"
            ":function:shop-crm-prod-nightly"
        }
    ]
    assert iam.allowed(api, iam.Request("lambda:InvokeFunction", f"{function}nightly"))
    assert not iam.allowed(api, iam.Request("lambda:InvokeFunction", f"{function}allocate"))
    assert not iam.allowed(api, iam.Request("lambda:InvokeFunction", f"{function}nightly:1"))


def test_a_map_word_naming_no_function_of_app_py_refuses_the_build(resources: list) -> None:
    wrong = {**PERMISSIONS, "nightly": {"lambda:InvokeFunction": ["Function/nobody"]}}

    with pytest.raises(ValueError, match="no function 'nobody'"):
        merge(chalice_like(), resources, permissions=wrong)


def test_athena_and_glue_grants_name_the_workgroup_the_database_and_its_tables(
    merged: dict,
) -> None:
    iam, resolver = evaluator(merged)
    nightly = iam.statements_of_function(merged, "Nightly", resolver)
    api = iam.statements_of_function(merged, "APIHandler", resolver)
    glue = "arn:aws:glue:us-east-1:123456789012"
    workgroup = "arn:aws:athena:us-east-1:123456789012:workgroup/crm-prod-analytics"
    get_table = [s for s in statements_of(merged, "NightlyRole") if "glue:GetTable" in s["Action"]]

    # IAM asks for the catalog and the database with every table.
    assert [r["Fn::Sub"].rsplit(":", 1)[1] for r in get_table[0]["Resource"]] == [
        "catalog",
        "database/crm_prod_analytics",
        "table/crm_prod_analytics/orders",
    ]
    assert iam.allowed(nightly, iam.Request("athena:StartQueryExecution", workgroup))
    assert iam.allowed(nightly, iam.Request("glue:GetTable", f"{glue}:catalog"))
    assert iam.allowed(
        nightly, iam.Request("glue:GetTable", f"{glue}:table/crm_prod_analytics/orders")
    )
    assert not iam.allowed(
        nightly, iam.Request("glue:GetTable", f"{glue}:table/crm_prod_analytics/order_lines")
    )
    assert not iam.allowed(nightly, iam.Request("athena:StartQueryExecution", f"{workgroup}x"))
    assert not iam.allowed(api, iam.Request("athena:StartQueryExecution", workgroup))


def test_the_authorizer_may_read_secrets_and_touch_no_data(merged: dict) -> None:
    operator = {a for s in statements_of(merged, "OperatorRole") for a in actions(s)}

    assert "ssm:GetParameter" in operator
    assert not {
        a for a in operator if a.split(":")[0] in ("dynamodb", "s3", "sns", "sqs", "states")
    }


# -- failures are seen ---------------------------------------------------------------------------


def test_each_asynchronous_function_sends_what_failed_every_retry_to_the_failures_queue(
    merged: dict,
) -> None:
    resources = merged["Resources"]
    configs = {
        body["Properties"]["FunctionName"]["Ref"]: body
        for body in resources.values()
        if body["Type"] == "AWS::Lambda::EventInvokeConfig"
    }

    # The bucket's notification and the schedule; not the API, its authorizer or a step.
    assert set(configs) == {"ImportFile", "Nightly"}
    for function_id, config in configs.items():
        destination = config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
        assert destination == {"Fn::GetAtt": ["FailuresQueue", "Arn"]}
        iam, resolver = evaluator(merged)
        statements = iam.statements_of_function(merged, function_id, resolver)
        queue = resolver.get_att("FailuresQueue", "Arn")
        assert iam.allowed(statements, iam.Request("sqs:SendMessage", queue))
    iam, resolver = evaluator(merged)
    api = iam.statements_of_function(merged, "APIHandler", resolver)
    assert not iam.allowed(
        api, iam.Request("sqs:SendMessage", resolver.get_att("FailuresQueue", "Arn"))
    )


def _alarms(merged: dict) -> dict[str, dict]:
    return {
        k: v["Properties"]
        for k, v in merged["Resources"].items()
        if v["Type"] == "AWS::CloudWatch::Alarm"
    }


def test_every_alarm_tells_the_ops_topic_when_anything_happens(merged: dict) -> None:
    for name, alarm in _alarms(merged).items():
        assert alarm["AlarmActions"] == [{"Ref": "OpsTopic"}], name
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold", name
        assert alarm["Threshold"] == 0, name
        assert alarm["TreatMissingData"] == "notBreaching", name


def test_each_function_has_an_errors_and_a_throttles_alarm(merged: dict) -> None:
    alarms = _alarms(merged)
    for function_id in ("APIHandler", "Operator", "ImportFile", "Allocate", "Nightly"):
        for metric in ("Errors", "Throttles"):
            alarm = alarms[f"{function_id}{metric}Alarm"]
            assert alarm["Namespace"] == "AWS/Lambda"
            assert alarm["MetricName"] == metric
            assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]


def test_a_failed_timed_out_or_aborted_execution_raises_its_machine_s_alarm(merged: dict) -> None:
    metrics = _alarms(merged)["FulfilmentStateMachineFailedAlarm"]["Metrics"]
    named = {m["MetricStat"]["Metric"]["MetricName"]: m for m in metrics if "MetricStat" in m}
    [total] = [m for m in metrics if m.get("ReturnData")]

    assert set(named) == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
    for metric in named.values():
        assert metric["MetricStat"]["Metric"]["Dimensions"] == [
            {"Name": "StateMachineArn", "Value": {"Ref": "FulfilmentStateMachine"}}
        ]
        assert metric["Id"] in total["Expression"]


def test_a_message_in_the_failures_queue_and_a_failed_import_raise_alarms(merged: dict) -> None:
    alarms = _alarms(merged)
    queue = alarms["FailuresQueueAlarm"]
    imports = alarms["ImportsFailedAlarm"]

    assert queue["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert queue["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["FailuresQueue", "QueueName"]}}
    ]
    # The metric functions/imports.py emits, where Powertools puts it.
    assert imports["MetricName"] == "ImportsFailed"
    assert imports["Namespace"] == NAMES["POWERTOOLS_METRICS_NAMESPACE"]
    assert imports["Dimensions"] == [{"Name": "service", "Value": NAMES["POWERTOOLS_SERVICE_NAME"]}]


def test_the_ops_topic_mails_an_address_only_when_one_is_given(merged: dict) -> None:
    subscription = merged["Resources"]["OpsAlertSubscription"]
    parameter = merged["Parameters"]["OpsAlertEmail"]

    assert parameter["Default"] == ""
    assert subscription["Condition"] == "HasOpsAlertEmail"
    assert merged["Conditions"]["HasOpsAlertEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "OpsAlertEmail"}, ""]}]
    }
    assert subscription["Properties"]["Endpoint"] == {"Ref": "OpsAlertEmail"}
    assert subscription["Properties"]["TopicArn"] == {"Ref": "OpsTopic"}


def test_each_function_logs_to_its_own_group_which_exists_before_it(merged: dict) -> None:
    resources = merged["Resources"]
    for function_id, name in cfn.app_function_names(merged).items():
        function = resources[function_id]
        group = resources[f"{function_id}LogGroup"]
        physical = f"shop-crm-prod-{name}"

        assert function["Properties"]["FunctionName"] == physical
        assert group["Properties"]["LogGroupName"] == f"/aws/lambda/{physical}"
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        # Created first, so Lambda never creates the group itself (which would make this
        # resource fail as "already exists").
        assert f"{function_id}LogGroup" in function["DependsOn"]
        role = function["Properties"]["Role"]["Fn::GetAtt"][0]
        [logs] = [s for s in statements_of(merged, role) if "logs:PutLogEvents" in actions(s)]
        assert all(physical in r["Fn::Sub"] for r in logs["Resource"])
    assert (
        merged["Parameters"]["LogRetentionDays"]["Default"]
        in (merged["Parameters"]["LogRetentionDays"]["AllowedValues"])
    )


def test_personal_data_in_buckets_expires_with_the_configured_retention(merged: dict) -> None:
    drop = merged["Resources"]["DropBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    data = merged["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]

    assert {r.get("Prefix"): r.get("ExpirationInDays") for r in data} == {
        "exports/": {"Ref": "ExportsRetentionDays"},
        None: None,
    }
    for rules in (drop, data):
        [abort] = [r for r in rules if "AbortIncompleteMultipartUpload" in r]
        assert abort["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1
        assert all(r["Status"] == "Enabled" for r in rules)
    parameter = merged["Parameters"]["ExportsRetentionDays"]
    assert parameter["Type"] == "Number" and parameter["Default"] >= 1


def test_a_bucket_refuses_every_request_not_made_over_tls(merged: dict) -> None:
    for bucket in ("DropBucket", "DataBucket"):
        policy = merged["Resources"][f"{bucket}TlsPolicy"]
        [statement] = policy["Properties"]["PolicyDocument"]["Statement"]

        assert policy["Type"] == "AWS::S3::BucketPolicy"
        assert policy["Properties"]["Bucket"] == {"Ref": bucket}
        assert statement["Effect"] == "Deny"
        assert statement["Principal"] == "*"
        assert statement["Action"] == "s3:*"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert len(statement["Resource"]) == 2  # the bucket and every object in it


# -- API Gateway ---------------------------------------------------------------------------------


def test_api_gateway_errors_have_the_contract_shape(merged: dict) -> None:
    body = merged["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    responses = body["x-amazon-apigateway-gateway-responses"]

    assert responses["UNAUTHORIZED"]["statusCode"] == "401"
    assert responses["ACCESS_DENIED"]["statusCode"] == "403"
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["statusCode"] == "404"
    assert {"DEFAULT_4XX", "DEFAULT_5XX"} <= set(responses)
    for response_type, response in responses.items():
        text = response["responseTemplates"]["application/json"]
        # API Gateway puts a quoted string where the variable is.
        error = json.loads(text.replace("$context.error.messageString", '"refused"'))["error"]
        assert set(error) == {"code", "message", "details"}, response_type
        assert error["code"].islower() and " " not in error["code"]
        assert error["details"] == []


# -- the whole -----------------------------------------------------------------------------------


def test_the_merged_template_passes_cfn_lint(merged: dict) -> None:
    from cfnlint.api import lint

    matches = lint(json.dumps(merged))

    errors = [f"{m.rule.id} {m.message} ({m.path})" for m in matches if m.rule.id.startswith("E")]
    assert errors == []


def test_an_infra_resource_may_not_take_a_chalice_name(resources: list) -> None:
    clash = Topic(logical_id="APIHandler", env_var="CRM_CLASH")

    with pytest.raises(ValueError, match="APIHandler"):
        merge(chalice_like(), [*resources, clash])
