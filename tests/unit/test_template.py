"""The template builder on a synthetic set of resources: a table with an index and a TTL, a
bucket that notifies a function, a state machine with every kind of substitution, merged into a
small template shaped like chalice's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crm_local.provision import table_request as local_table_request
from infra import template as cfn
from infra.resources import Bucket, Index, Notification, Queue, StateMachine, Table, Topic

STAGE = "prod"
SETTINGS = {"prod": {"delivery_wait_seconds": 1209600}}
NAMES = {
    "CRM_ORDERS_TABLE": "crm-prod-orders",
    "CRM_DROP_BUCKET": "crm-prod-drop",
    "CRM_OPS_TOPIC": "crm-prod-ops",
    "CRM_EVENTS_QUEUE": "crm-prod-events",
    "CRM_FULFILMENT_SM": "crm-prod-fulfilment",
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
OPS = Topic(logical_id="OpsTopic", env_var="CRM_OPS_TOPIC")
EVENTS = Queue(logical_id="EventsQueue", env_var="CRM_EVENTS_QUEUE", visibility_timeout=90)


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
    return [ORDERS, DROP, OPS, EVENTS, machine]


@pytest.fixture
def merged(resources: list) -> dict:
    return cfn.merge(
        chalice_like(),
        resources,
        STAGE,
        NAMES,
        stage_settings=SETTINGS,
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
        cfn.merge(chalice_like(), [*resources, lost], STAGE, NAMES, stage_settings=SETTINGS)


def test_a_bucket_name_that_cannot_fit_is_refused() -> None:
    bucket = Bucket(logical_id="B", env_var="CRM_B")

    with pytest.raises(ValueError, match="bucket name"):
        cfn.bucket_name(bucket, STAGE, {"CRM_B": "crm-prod-a-much-too-long-bucket-name-prefix"})
    with pytest.raises(ValueError, match="bucket name"):
        cfn.bucket_name(bucket, STAGE, {"CRM_B": "Crm_Prod"})


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
        cfn.merge(chalice_like(), [ORDERS, broken], STAGE, NAMES, stage_settings=SETTINGS)


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


def test_every_function_gets_the_core_layer_and_one_the_analytics_layer(merged: dict) -> None:
    merged["Resources"]["AnalyticsLayer"] = cfn.layer_resource(
        "./analytics-layer.zip", "a", "python3.11"
    )
    cfn.attach_layer(merged, "allocate", "AnalyticsLayer")
    cfn.attach_layer(merged, "allocate", "AnalyticsLayer")  # twice is once

    layers = {
        f: merged["Resources"][f]["Properties"]["Layers"]
        for f in ("APIHandler", "Operator", "ImportFile", "Allocate")
    }
    assert all({"Ref": "CoreLayer"} in lst for lst in layers.values())
    assert layers["Allocate"] == [{"Ref": "CoreLayer"}, {"Ref": "AnalyticsLayer"}]
    assert {"Ref": "AnalyticsLayer"} not in layers["APIHandler"]
    layer = merged["Resources"]["CoreLayer"]
    assert layer["Type"] == "AWS::Lambda::LayerVersion"
    assert layer["Properties"]["Content"] == "./core-layer.zip"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.11"]
    with pytest.raises(ValueError, match="nobody"):
        cfn.attach_layer(merged, "nobody", "AnalyticsLayer")


def test_the_api_handler_has_chalice_s_logical_id() -> None:
    assert cfn.function_logical_id("api_handler") == "APIHandler"
    assert cfn.function_logical_id("import_file") == "ImportFile"


# -- IAM -----------------------------------------------------------------------------------------


def test_the_function_policy_names_every_resource_and_nothing_more(resources: list) -> None:
    policy = cfn.function_policy(resources, STAGE, NAMES)
    statements = policy["Statement"]
    by_action = {a: s for s in statements for a in actions(s)}

    assert not any(a.endswith("*") for s in statements for a in actions(s))
    assert [s["Resource"] for s in statements if s["Resource"] == "*"] == ["*"]  # X-Ray only
    assert by_action["ssm:GetParameter"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/crm/prod/*"
    }
    assert "kms:ViaService" in by_action["kms:Decrypt"]["Condition"]["StringEquals"]
    assert {"Fn::Sub": "${OrdersTable.Arn}/index/*"} in by_action["dynamodb:Query"]["Resource"]
    assert by_action["s3:PutObject"]["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:s3:::crm-prod-drop-${AWS::AccountId}-${AWS::Region}/*"}
    ]
    assert by_action["sns:Publish"]["Resource"] == [{"Ref": "OpsTopic"}]
    assert by_action["sqs:SendMessage"]["Resource"] == [{"Fn::GetAtt": ["EventsQueue", "Arn"]}]
    assert (
        by_action["states:StartExecution"]["Resource"]
        == by_action["states:SendTaskSuccess"]["Resource"]
    )


def test_the_authorizer_may_read_secrets_and_touch_no_data(merged: dict) -> None:
    operator = {a for s in statements_of(merged, "OperatorRole") for a in actions(s)}

    assert "ssm:GetParameter" in operator
    assert not {
        a for a in operator if a.split(":")[0] in ("dynamodb", "s3", "sns", "sqs", "states")
    }


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
        cfn.merge(chalice_like(), [*resources, clash], STAGE, NAMES, stage_settings=SETTINGS)
