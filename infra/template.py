"""The resources of `infra.resources` as CloudFormation, merged into the template that
`chalice package` writes.

We merge in Python rather than with `chalice package --merge-template` because that option
replaces lists instead of appending to them (a function's `Layers`, a role's `Policies`).

Three rules keep the stack free of dependency cycles once buckets notify functions and
functions start state machines (every function gets every stage variable, so every function
would otherwise depend on every bucket and state machine, which depend back on functions):

- a bucket's name and a state machine's ARN are known before either exists (`Fn::Sub` with
  the stage's configured name, the account and the region), and everything that only needs to
  *name* them uses that string instead of `Ref`;
- a bucket waits for the `AWS::Lambda::Permission` of each function it notifies;
- only state machines and bucket notifications point at functions (`Fn::GetAtt ... Arn`).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from chalice.utils import to_cfn_resource_name

from infra import monitoring, policies
from infra.permissions import PermissionMap
from infra.resources import (
    ABORT_INCOMPLETE_UPLOADS_DAYS,
    FAILURES_QUEUE,
    OPS_TOPIC,
    STAGE_SETTINGS,
    Bucket,
    GlueDatabase,
    Queue,
    Resource,
    StateMachine,
    Table,
    Topic,
    WorkGroup,
)

Cfn = dict[str, Any]

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
LAMBDA_FUNCTION = "AWS::Lambda::Function"
FUNCTION_TYPES = (SERVERLESS_FUNCTION, LAMBDA_FUNCTION)
REST_API = "RestAPI"  # the logical id chalice gives the API

# Lambda's limit on a function's name.
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Bucket names are `<configured name>-<account>-<region>`: 12 + 14 (the longest region name
# so far) + 2 dashes leave 35 characters of the 63 S3 allows.
_BUCKET_BASE = re.compile(r"^[a-z0-9][a-z0-9-]{1,33}[a-z0-9]$")
_STATE_MACHINE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
# Athena reads database names of lower case, digits and underscores only.
_GLUE_DATABASE_NAME = re.compile(r"^[a-z0-9_]{1,255}$")
_WORKGROUP_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


# -- names ---------------------------------------------------------------------------------------


def function_logical_id(name: str) -> str:
    """The logical id chalice gives the Lambda of a function declared in app.py."""
    # Chalice names the REST handler specially; every other function goes through its helper.
    return "APIHandler" if name == "api_handler" else to_cfn_resource_name(name)


def _kebab(logical_id: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", logical_id).lower()


def physical_name(resource: Resource, stage: str, names: Mapping[str, str]) -> str:
    """The name a bucket or state machine gets in the cloud, before account and region: the
    stage's configured value of its variable (an ARN keeps its last part), else a default."""
    configured = names.get(resource.env_var, "").strip()
    if configured:
        return configured.rsplit(":", 1)[-1]
    return f"crm-{stage}-{_kebab(resource.logical_id)}"


def bucket_name(bucket: Bucket, stage: str, names: Mapping[str, str]) -> Cfn:
    base = physical_name(bucket, stage, names)
    if not _BUCKET_BASE.match(base):
        raise ValueError(
            f"{bucket.logical_id}: {base!r} cannot start a bucket name "
            "(lower case, digits and dashes, at most 35 characters)"
        )
    return {"Fn::Sub": base + "-${AWS::AccountId}-${AWS::Region}"}


def bucket_arn(bucket: Bucket, stage: str, names: Mapping[str, str], suffix: str = "") -> Cfn:
    name = bucket_name(bucket, stage, names)["Fn::Sub"]
    return {"Fn::Sub": "arn:${AWS::Partition}:s3:::" + name + suffix}


def state_machine_name(machine: StateMachine, stage: str, names: Mapping[str, str]) -> str:
    name = physical_name(machine, stage, names)
    if not _STATE_MACHINE_NAME.match(name):
        raise ValueError(f"{machine.logical_id}: {name!r} is not a valid state machine name")
    return name


def state_machine_arn(machine: StateMachine, stage: str, names: Mapping[str, str]) -> Cfn:
    return {
        "Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"
        ":stateMachine:" + state_machine_name(machine, stage, names)
    }


def glue_database_name(database: GlueDatabase, stage: str, names: Mapping[str, str]) -> str:
    name = physical_name(database, stage, names).replace("-", "_")
    if not _GLUE_DATABASE_NAME.match(name):
        raise ValueError(
            f"{database.logical_id}: {name!r} is no name Athena reads "
            "(lower case, digits and underscores)"
        )
    return name


def workgroup_name(workgroup: WorkGroup, stage: str, names: Mapping[str, str]) -> str:
    name = physical_name(workgroup, stage, names)
    if not _WORKGROUP_NAME.match(name):
        raise ValueError(f"{workgroup.logical_id}: {name!r} is not a valid workgroup name")
    return name


def env_binding(resource: Resource, stage: str, names: Mapping[str, str]) -> Cfn:
    """What the resource's environment variable holds in the cloud: the same kind of value
    the local stack puts there (a name; an ARN for state machines)."""
    if isinstance(resource, Table):
        return {"Ref": resource.logical_id}
    if isinstance(resource, Bucket):
        return bucket_name(resource, stage, names)
    if isinstance(resource, Topic):
        return {"Fn::GetAtt": [resource.logical_id, "TopicName"]}
    if isinstance(resource, Queue):
        return {"Fn::GetAtt": [resource.logical_id, "QueueName"]}
    if isinstance(resource, GlueDatabase | WorkGroup):
        return {"Ref": resource.logical_id}  # the name
    return state_machine_arn(resource, stage, names)


# -- data resources ------------------------------------------------------------------------------


def table_request(table: Table, name: str) -> dict[str, Any]:
    """`CreateTable` arguments for a table definition. The template uses the same fields, so
    the local stack and the cloud cannot disagree on keys and indexes."""

    def key_schema(hash_key: str, range_key: str | None) -> list[dict[str, str]]:
        schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
        if range_key:
            schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
        return schema

    request: dict[str, Any] = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": key_schema(table.hash_key, table.range_key),
        "AttributeDefinitions": [
            {"AttributeName": a, "AttributeType": "N" if a in table.numeric_keys else "S"}
            for a in table.key_attributes()
        ],
    }
    if table.indexes:
        request["GlobalSecondaryIndexes"] = [
            {
                "IndexName": i.name,
                "KeySchema": key_schema(i.hash_key, i.range_key),
                "Projection": {"ProjectionType": i.projection},
            }
            for i in table.indexes
        ]
    return request


# Customer data outlives a deleted or replaced stack; removing it is a decision, not a side
# effect of `delete-stack`.
_KEEP = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}


def table_resource(table: Table) -> Cfn:
    properties = table_request(table, "")
    del properties["TableName"]  # CloudFormation names it; functions get it through Ref
    properties["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
    properties["SSESpecification"] = {"SSEEnabled": True}
    if table.ttl_attribute:
        properties["TimeToLiveSpecification"] = {
            "AttributeName": table.ttl_attribute,
            "Enabled": True,
        }
    return {"Type": "AWS::DynamoDB::Table", **_KEEP, "Properties": properties}


def _permission_id(bucket: Bucket, function_id: str) -> str:
    return f"{bucket.logical_id}{function_id}Permission"


def bucket_resources(
    bucket: Bucket, stage: str, names: Mapping[str, str], function_ids: Iterable[str] | None = None
) -> dict[str, Cfn]:
    """The bucket and, for each function it notifies, the permission S3 needs first."""
    known = set(function_ids) if function_ids is not None else None
    properties: Cfn = {
        "BucketName": bucket_name(bucket, stage, names),
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        },
        "BucketEncryption": {
            "ServerSideEncryptionConfiguration": [
                {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
            ]
        },
        "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
    }
    resources: dict[str, Cfn] = {}
    configurations: list[Cfn] = []
    for notification in bucket.notifications:
        function_id = function_logical_id(notification.function)
        if known is not None and function_id not in known:
            raise ValueError(
                f"{bucket.logical_id} notifies {notification.function!r}, which "
                f"app.py does not declare (no {function_id} in the template)"
            )
        rules = [{"Name": "prefix", "Value": notification.prefix}]
        if notification.suffix:
            rules.append({"Name": "suffix", "Value": notification.suffix})
        for event in notification.events:
            configurations.append(
                {
                    "Event": event,
                    "Function": {"Fn::GetAtt": [function_id, "Arn"]},
                    "Filter": {"S3Key": {"Rules": rules}},
                }
            )
        resources[_permission_id(bucket, function_id)] = {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": {"Fn::GetAtt": [function_id, "Arn"]},
                "Principal": "s3.amazonaws.com",
                "SourceAccount": {"Ref": "AWS::AccountId"},
                "SourceArn": bucket_arn(bucket, stage, names),
            },
        }
    properties["LifecycleConfiguration"] = {"Rules": lifecycle_rules(bucket)}
    resources[f"{bucket.logical_id}TlsPolicy"] = tls_only_policy(bucket, stage, names)
    body: Cfn = {"Type": "AWS::S3::Bucket", **_KEEP}
    if configurations:
        properties["NotificationConfiguration"] = {"LambdaConfigurations": configurations}
        # S3 checks it may invoke each function when the notification is set.
        body["DependsOn"] = sorted(r for r in resources if r.endswith("Permission"))
    body["Properties"] = properties
    return {bucket.logical_id: body, **resources}


def lifecycle_rules(bucket: Bucket) -> list[Cfn]:
    """Expiry of each prefix that holds personal data (days: the stack's parameters), and of
    uploads that never completed."""
    rules: list[Cfn] = [
        {
            "Id": "expire-" + expiry.prefix.strip("/"),
            "Status": "Enabled",
            "Prefix": expiry.prefix,
            "ExpirationInDays": {"Ref": expiry.parameter},
        }
        for expiry in bucket.expiries
    ]
    rules.append(
        {
            "Id": "abort-incomplete-uploads",
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {
                "DaysAfterInitiation": ABORT_INCOMPLETE_UPLOADS_DAYS
            },
        }
    )
    return rules


def tls_only_policy(bucket: Bucket, stage: str, names: Mapping[str, str]) -> Cfn:
    """Refuse every request to the bucket that does not come over TLS."""
    return {
        "Type": "AWS::S3::BucketPolicy",
        "Properties": {
            "Bucket": {"Ref": bucket.logical_id},
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "TlsOnly",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [
                            bucket_arn(bucket, stage, names),
                            bucket_arn(bucket, stage, names, "/*"),
                        ],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ],
            },
        },
    }


def topic_resource(topic: Topic) -> Cfn:
    return {"Type": "AWS::SNS::Topic", "Properties": {}}


def queue_resource(queue: Queue) -> Cfn:
    # Messages are in flight, not records: the queue goes with the stack, but keeps them as
    # long as SQS allows (14 days) so an outage of the consumer loses nothing.
    return {
        "Type": "AWS::SQS::Queue",
        "DeletionPolicy": "Delete",
        "UpdateReplacePolicy": "Delete",
        "Properties": {
            "VisibilityTimeout": queue.visibility_timeout,
            "MessageRetentionPeriod": 1_209_600,
            "SqsManagedSseEnabled": True,
        },
    }


# -- Glue and Athena -----------------------------------------------------------------------------

_PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        "Parameters": {"serialization.format": "1"},
    },
}
PARTITION_KEY = "date"  # `date=YYYY-MM-DD/` in every dataset's keys


def glue_table_id(database: GlueDatabase, table: str) -> str:
    return database.logical_id + "".join(part.capitalize() for part in table.split("_"))


def _bucket_of(logical_id: str, owner: str, resources: Iterable[Resource]) -> Bucket:
    for resource in resources:
        if isinstance(resource, Bucket) and resource.logical_id == logical_id:
            return resource
    raise ValueError(
        f"{owner} names bucket {logical_id}, which infra/resources.py does not declare"
    )


def _s3_url(bucket: Bucket, stage: str, names: Mapping[str, str], path: str) -> Cfn:
    """`s3://<bucket>/<path>`; `path` may hold `${!name}` (a literal `${name}`)."""
    return {"Fn::Sub": "s3://" + bucket_name(bucket, stage, names)["Fn::Sub"] + "/" + path}


def glue_resources(
    database: GlueDatabase,
    resources: Iterable[Resource],
    stage: str,
    names: Mapping[str, str],
) -> dict[str, Cfn]:
    """The database and a table per dataset. Each table projects its `date` partitions (a
    string `yyyy-MM-dd` from the database's first date to tomorrow, UTC: the shop's day may be
    ahead of UTC's), so Athena finds a day's files by their key and nothing has to register
    partitions."""
    bucket = _bucket_of(database.bucket, database.logical_id, resources)
    out: dict[str, Cfn] = {
        database.logical_id: {
            "Type": "AWS::Glue::Database",
            "Properties": {
                "CatalogId": {"Ref": "AWS::AccountId"},
                "DatabaseInput": {
                    "Name": glue_database_name(database, stage, names),
                    "Description": f"The columnar snapshot (s3://<data bucket>/{database.prefix})",
                },
            },
        }
    }
    for table in database.tables:
        location = f"{database.prefix}{table.name}/"
        out[glue_table_id(database, table.name)] = {
            "Type": "AWS::Glue::Table",
            "Properties": {
                "CatalogId": {"Ref": "AWS::AccountId"},
                "DatabaseName": {"Ref": database.logical_id},
                "TableInput": {
                    "Name": table.name,
                    "TableType": "EXTERNAL_TABLE",
                    "Parameters": {
                        "classification": "parquet",
                        "EXTERNAL": "TRUE",
                        "projection.enabled": "true",
                        f"projection.{PARTITION_KEY}.type": "date",
                        f"projection.{PARTITION_KEY}.format": "yyyy-MM-dd",
                        f"projection.{PARTITION_KEY}.range": f"{database.first_date},NOW+1DAYS",
                        f"projection.{PARTITION_KEY}.interval": "1",
                        f"projection.{PARTITION_KEY}.interval.unit": "DAYS",
                        "storage.location.template": _s3_url(
                            bucket,
                            stage,
                            names,
                            f"{location}{PARTITION_KEY}=${{!{PARTITION_KEY}}}/",
                        ),
                    },
                    "PartitionKeys": [{"Name": PARTITION_KEY, "Type": "string"}],
                    "StorageDescriptor": {
                        "Columns": [{"Name": n, "Type": t} for n, t in table.columns],
                        "Location": _s3_url(bucket, stage, names, location),
                        **copy.deepcopy(_PARQUET),
                    },
                },
            },
        }
    return out


def workgroup_resource(
    workgroup: WorkGroup, resources: Iterable[Resource], stage: str, names: Mapping[str, str]
) -> Cfn:
    """The workgroup the analytics run their queries in: results under its prefix of the
    bucket (whatever the caller asks), encrypted, with CloudWatch metrics."""
    bucket = _bucket_of(workgroup.bucket, workgroup.logical_id, resources)
    return {
        "Type": "AWS::Athena::WorkGroup",
        "Properties": {
            "Name": workgroup_name(workgroup, stage, names),
            "Description": "The analytics' queries over the columnar snapshot",
            "State": "ENABLED",
            # Query history is no data: the workgroup goes with the stack even when it ran.
            "RecursiveDeleteOption": True,
            "WorkGroupConfiguration": {
                "EnforceWorkGroupConfiguration": True,
                "PublishCloudWatchMetricsEnabled": True,
                "ResultConfiguration": {
                    "OutputLocation": _s3_url(bucket, stage, names, workgroup.results_prefix),
                    "EncryptionConfiguration": {"EncryptionOption": "SSE_S3"},
                },
            },
        },
    }


# -- state machines ------------------------------------------------------------------------------


def definition_substitutions(
    machine: StateMachine,
    resources: Iterable[Resource],
    stage: str,
    names: Mapping[str, str],
    stage_settings: Mapping[str, Mapping[str, object]] = STAGE_SETTINGS,
    function_ids: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The cloud values of a state machine's `${Name}` substitutions (see `StateMachine`)."""
    by_var = {r.env_var: r for r in resources}
    known = set(function_ids) if function_ids is not None else None
    values: dict[str, Any] = {}
    for name, ref in machine.substitutions.items():
        kind, _, value = ref.partition(":")
        if kind == "function":
            function_id = function_logical_id(value)
            if known is not None and function_id not in known:
                raise ValueError(
                    f"{machine.logical_id}: ${{{name}}} names {value!r}, which "
                    f"app.py does not declare (no {function_id} in the template)"
                )
            values[name] = {"Fn::GetAtt": [function_id, "Arn"]}
        elif kind == "env":
            if value not in by_var:
                raise ValueError(
                    f"{machine.logical_id}: ${{{name}}} names {value}, which no "
                    "resource of infra/resources.py declares"
                )
            values[name] = env_binding(by_var[value], stage, names)
        elif kind == "stage":
            settings = stage_settings.get(stage, {})
            if value not in settings:
                raise ValueError(
                    f"{machine.logical_id}: ${{{name}}} needs STAGE_SETTINGS[{stage!r}][{value!r}]"
                )
            values[name] = str(settings[value])
        else:
            raise ValueError(f"{machine.logical_id}: unknown substitution {ref!r} for {name}")
    return values


def state_machine_resources(
    machine: StateMachine,
    resources: Iterable[Resource],
    stage: str,
    names: Mapping[str, str],
    stage_settings: Mapping[str, Mapping[str, object]] = STAGE_SETTINGS,
    function_ids: Iterable[str] | None = None,
) -> dict[str, Cfn]:
    """A Standard state machine and its role, which may invoke the functions it names and use
    the resources it names."""
    resources = list(resources)
    substitutions = definition_substitutions(
        machine, resources, stage, names, stage_settings, function_ids
    )
    # As text: numeric waits are bare `${Name}` placeholders (TimeoutSeconds must be a number),
    # which only a string definition can carry through DefinitionSubstitutions.
    definition = machine.definition_path().read_text(encoding="utf-8")
    functions = sorted(
        {
            v["Fn::GetAtt"][0]
            for v in substitutions.values()
            if isinstance(v, dict) and "Fn::GetAtt" in v and v["Fn::GetAtt"][1] == "Arn"
        }
    )
    named_vars = {
        ref.partition(":")[2] for ref in machine.substitutions.values() if ref.startswith("env:")
    }
    statements = _data_statements([r for r in resources if r.env_var in named_vars], stage, names)
    if functions:
        statements.insert(
            0,
            {
                "Effect": "Allow",
                "Action": "lambda:InvokeFunction",
                "Resource": [
                    arn
                    for f in functions
                    for arn in ({"Fn::GetAtt": [f, "Arn"]}, {"Fn::Sub": "${" + f + ".Arn}:*"})
                ],
            },
        )
    role_id = f"{machine.logical_id}Role"
    role: Cfn = {
        "Type": "AWS::IAM::Role",
        "Properties": {"AssumeRolePolicyDocument": _trust("states.amazonaws.com")},
    }
    if statements:
        role["Properties"]["Policies"] = [
            {
                "PolicyName": f"{role_id}Policy",
                "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
            }
        ]
    properties: Cfn = {
        "StateMachineName": state_machine_name(machine, stage, names),
        "StateMachineType": "STANDARD",
        "RoleArn": {"Fn::GetAtt": [role_id, "Arn"]},
        "DefinitionString": definition,
    }
    if substitutions:
        properties["DefinitionSubstitutions"] = substitutions
    return {
        machine.logical_id: {"Type": "AWS::StepFunctions::StateMachine", "Properties": properties},
        role_id: role,
    }


# -- IAM -----------------------------------------------------------------------------------------


def _trust(service: str) -> Cfn:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        ],
    }


TABLE_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DescribeTable",
]


def _data_statements(
    resources: Iterable[Resource], stage: str, names: Mapping[str, str]
) -> list[Cfn]:
    """Statements for using (not managing) the given resources, grouped by service."""
    resources = list(resources)
    tables = [r for r in resources if isinstance(r, Table)]
    buckets = [r for r in resources if isinstance(r, Bucket)]
    topics = [r for r in resources if isinstance(r, Topic)]
    queues = [r for r in resources if isinstance(r, Queue)]
    machines = [r for r in resources if isinstance(r, StateMachine)]
    statements: list[Cfn] = []

    def allow(actions: list[str], arns: list[Any]) -> None:
        if arns:
            statements.append({"Effect": "Allow", "Action": actions, "Resource": arns})

    allow(
        TABLE_ACTIONS,
        [
            arn
            for t in tables
            for arn in (
                {"Fn::GetAtt": [t.logical_id, "Arn"]},
                {"Fn::Sub": "${" + t.logical_id + ".Arn}/index/*"},
            )
        ],
    )
    allow(
        ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
        [bucket_arn(b, stage, names, "/*") for b in buckets],
    )
    allow(["s3:ListBucket"], [bucket_arn(b, stage, names) for b in buckets])
    allow(["sns:Publish"], [{"Ref": t.logical_id} for t in topics])
    allow(
        ["sqs:SendMessage", "sqs:GetQueueUrl"],
        [{"Fn::GetAtt": [q.logical_id, "Arn"]} for q in queues],
    )
    allow(
        [
            "states:StartExecution",
            "states:SendTaskSuccess",
            "states:SendTaskFailure",
            "states:SendTaskHeartbeat",
        ],
        [state_machine_arn(m, stage, names) for m in machines],
    )
    return statements


def function_policy(stage: str, secrets_path: str | None = None) -> Cfn:
    """What every function may do whatever it does (logs, traces, the stage's secrets): the
    policy `chalice package` is given. `merge` replaces it with each function's own."""
    path = secrets_path or f"/crm/{stage}/"
    return {"Version": "2012-10-17", "Statement": policies.base_statements(path)}


# -- API Gateway ---------------------------------------------------------------------------------


def _error_template(code: str, message: str | None) -> str:
    # Gateway response templates only substitute $context variables (no VTL), and
    # messageString arrives already quoted.
    text = json.dumps(message) if message else "$context.error.messageString"
    return '{"error": {"code": "' + code + '", "message": ' + text + ', "details": []}}'


# Response type -> (status to answer, or None to keep API Gateway's, code, fixed message).
GATEWAY_RESPONSES: dict[str, tuple[str | None, str, str | None]] = {
    "UNAUTHORIZED": (
        "401",
        "unauthenticated",
        "a valid operator token is required: Authorization: Bearer <token>",
    ),
    "ACCESS_DENIED": ("403", "forbidden", "this token may not call this route"),
    # Without IAM auth API Gateway says this only for a route or method that does not exist,
    # which the contract answers with 404.
    "MISSING_AUTHENTICATION_TOKEN": ("404", "not_found", "no such route"),
    "REQUEST_TOO_LARGE": ("413", "payload_too_large", "the request is too large"),
    "THROTTLED": ("429", "throttled", "too many requests; retry later"),
    "DEFAULT_4XX": (None, "request_refused", None),
    "DEFAULT_5XX": (None, "internal_error", "an unexpected error occurred"),
}


def gateway_responses() -> Cfn:
    """API Gateway's own errors (authorizer, unknown route, throttling) in the contract's
    error shape, as the `x-amazon-apigateway-gateway-responses` extension of the API body."""
    responses: Cfn = {}
    for response_type, (status, code, message) in GATEWAY_RESPONSES.items():
        response: Cfn = {"responseTemplates": {"application/json": _error_template(code, message)}}
        if status:
            response["statusCode"] = status
        responses[response_type] = response
    return responses


# -- the template --------------------------------------------------------------------------------


def functions_of(template: Cfn) -> dict[str, Cfn]:
    return {
        k: v for k, v in template.get("Resources", {}).items() if v.get("Type") in FUNCTION_TYPES
    }


def infra_resources(
    resources: Iterable[Resource],
    stage: str,
    names: Mapping[str, str],
    stage_settings: Mapping[str, Mapping[str, object]] = STAGE_SETTINGS,
    function_ids: Iterable[str] | None = None,
) -> dict[str, Cfn]:
    """Every resource of `infra.resources` (and the permissions and roles they need)."""
    resources = list(resources)
    ids = None if function_ids is None else list(function_ids)
    out: dict[str, Cfn] = {}

    def add(items: Mapping[str, Cfn]) -> None:
        for logical_id, body in items.items():
            if logical_id in out:
                raise ValueError(f"two resources are called {logical_id}")
            out[logical_id] = body

    for resource in resources:
        if isinstance(resource, Table):
            add({resource.logical_id: table_resource(resource)})
        elif isinstance(resource, Bucket):
            add(bucket_resources(resource, stage, names, ids))
        elif isinstance(resource, Topic):
            add({resource.logical_id: topic_resource(resource)})
        elif isinstance(resource, Queue):
            add({resource.logical_id: queue_resource(resource)})
        elif isinstance(resource, StateMachine):
            add(state_machine_resources(resource, resources, stage, names, stage_settings, ids))
        elif isinstance(resource, GlueDatabase):
            add(glue_resources(resource, resources, stage, names))
        elif isinstance(resource, WorkGroup):
            add({resource.logical_id: workgroup_resource(resource, resources, stage, names)})
        else:
            raise TypeError(f"no CloudFormation for {resource!r}")
    return out


def bind_environment(
    template: Cfn, resources: Iterable[Resource], stage: str, names: Mapping[str, str]
) -> None:
    """Point every function's variable of an infra resource at the resource itself."""
    bindings = {r.env_var: env_binding(r, stage, names) for r in resources}
    for function in functions_of(template).values():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        for var in variables:
            if var in bindings:
                variables[var] = copy.deepcopy(bindings[var])


# -- container-image functions -------------------------------------------------------------------

# Lambda's limit for an image, uncompressed, with all its layers (a zip function's code and
# layers may hold 250 MB unzipped).
IMAGE_LIMIT = 10 * 1024**3
# What of a chalice function an image function keeps as it is.
_IMAGE_KEEPS = (
    "FunctionName",
    "Description",
    "Role",
    "Environment",
    "Timeout",
    "MemorySize",
    "Architectures",
    "ReservedConcurrentExecutions",
)
# What it leaves behind: the zip's code, runtime and layers (an image carries its own), and
# what it says another way (Tracing, Tags, Events).
_IMAGE_DROPS = ("Runtime", "Handler", "CodeUri", "Layers", "Tracing", "Tags", "Events")


def image_parameter() -> Cfn:
    return {
        "Type": "String",
        "Description": "The analytics image, pushed to ECR in this account and region: "
        "<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag> (or @sha256:<digest>); "
        "a new tag or digest for each build, so CloudFormation sees the change",
        "AllowedPattern": r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/\S+$",
        "ConstraintDescription": "an image URI of Amazon ECR",
    }


def use_image(template: Cfn, function_names: Iterable[str], parameter: str) -> None:
    """Make the named functions (names in app.py) container-image functions whose image is the
    stack parameter `parameter`, each running its own handler (`ImageConfig.Command`).

    They become plain `AWS::Lambda::Function`s: `aws cloudformation package` uploads the
    template's own directory as the `CodeUri` of an `AWS::Serverless::Function` that has
    none, and the SAM transform then refuses a function with both `CodeUri` and `ImageUri`.
    So their schedules become an `AWS::Events::Rule` each (with the permission to invoke,
    under SAM's names), `Tracing` a `TracingConfig`, `Tags` a list. Role, environment, memory,
    timeout, log group, alarms and destinations stay as `merge` made them."""
    names = list(function_names)
    if not names:
        return
    resources = template["Resources"]
    functions = functions_of(template)
    template.setdefault("Parameters", {})[parameter] = image_parameter()
    for name in names:
        function_id = function_logical_id(name)
        if function_id not in functions:
            raise ValueError(f"no function {name!r} ({function_id}) in the template")
        body = functions[function_id]
        if body["Type"] != SERVERLESS_FUNCTION:
            raise ValueError(f"{function_id} is no chalice function ({body['Type']})")
        props = body["Properties"]
        unknown = sorted(set(props) - set(_IMAGE_KEEPS) - set(_IMAGE_DROPS))
        if unknown:
            raise ValueError(f"{function_id}: no image function equivalent for {unknown}")
        image: Cfn = {
            "PackageType": "Image",
            "Code": {"ImageUri": {"Ref": parameter}},
            "ImageConfig": {"Command": [props["Handler"]]},
        }
        image.update({key: props[key] for key in _IMAGE_KEEPS if key in props})
        if "Tracing" in props:
            image["TracingConfig"] = {"Mode": props["Tracing"]}
        if props.get("Tags"):
            image["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(props["Tags"].items())]
        for event_name, event in (props.get("Events") or {}).items():
            for logical_id, resource in _schedule_resources(function_id, event_name, event):
                if logical_id in resources:
                    raise ValueError(f"{logical_id} clashes with another resource")
                resources[logical_id] = resource
        body["Type"] = LAMBDA_FUNCTION
        body["Properties"] = image


def _schedule_resources(function_id: str, event_name: str, event: Cfn) -> list[tuple[str, Cfn]]:
    """What SAM makes of a `Schedule` event: a rule targeting the function, and the
    permission EventBridge needs to invoke it."""
    properties = event.get("Properties", {})
    if event.get("Type") != "Schedule" or set(properties) - {"Schedule"}:
        raise ValueError(f"{function_id}: event {event_name} is no plain schedule: {event}")
    rule_id = f"{function_id}{event_name}"
    rule = {
        "Type": "AWS::Events::Rule",
        "Properties": {
            "ScheduleExpression": properties["Schedule"],
            "State": "ENABLED",
            "Targets": [
                {"Arn": {"Fn::GetAtt": [function_id, "Arn"]}, "Id": f"{rule_id}LambdaTarget"}
            ],
        },
    }
    permission = {
        "Type": "AWS::Lambda::Permission",
        "Properties": {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Ref": function_id},
            "Principal": "events.amazonaws.com",
            "SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]},
        },
    }
    return [(rule_id, rule), (f"{rule_id}Permission", permission)]


def is_image(function: Cfn) -> bool:
    return function.get("Properties", {}).get("PackageType") == "Image"


def asynchronous_function_ids(template: Cfn, resources: Iterable[Resource]) -> list[str]:
    """Functions invoked asynchronously: by an event source (SAM's async events, chalice's
    schedules; a bucket notification; an EventBridge rule's target) or by another function
    (`infra.resources.INVOKED_ASYNCHRONOUSLY`)."""
    from infra.resources import INVOKED_ASYNCHRONOUSLY

    functions = functions_of(template)
    invoked = {function_logical_id(name) for name in INVOKED_ASYNCHRONOUSLY}
    targeted = {
        target["Arn"]["Fn::GetAtt"][0]
        for body in template["Resources"].values()
        if body.get("Type") == "AWS::Events::Rule"
        for target in body.get("Properties", {}).get("Targets", [])
        if isinstance(target.get("Arn"), dict) and "Fn::GetAtt" in target["Arn"]
    }
    notified = bucket_notified_functions(resources)
    return sorted(
        f
        for f, body in functions.items()
        if monitoring.is_async(body) or f in notified or f in targeted or f in invoked
    )


def layer_resource(content: str, description: str, runtime: str) -> Cfn:
    """A layer whose `Content` is a zip beside the template, uploaded by
    `aws cloudformation package` as it uploads the functions' `CodeUri`."""
    return {
        "Type": "AWS::Lambda::LayerVersion",
        "Properties": {
            "Content": content,
            "Description": description,
            "CompatibleRuntimes": [runtime],
            "CompatibleArchitectures": ["x86_64"],
        },
    }


def _role_of(template: Cfn, function_id: str) -> Cfn | None:
    role = template["Resources"][function_id]["Properties"].get("Role")
    if isinstance(role, dict) and "Fn::GetAtt" in role:
        return template["Resources"].get(role["Fn::GetAtt"][0])
    return None


def app_function_names(template: Cfn) -> dict[str, str]:
    """`{logical id: name in app.py}` of the template's functions (the handler `app.<name>`, an
    image function's command; the API handler, `app.app`, is `api_handler`)."""
    names: dict[str, str] = {}
    for function_id, function in functions_of(template).items():
        props = function["Properties"]
        handler = str(props.get("Handler") or props.get("ImageConfig", {}).get("Command", [""])[0])
        names[function_id] = (
            "api_handler" if function_id == "APIHandler" else handler.rpartition(".")[2]
        )
    return names


def cloud_function_name(app_name: str, stage: str, name: str) -> str:
    """The physical name of a function: chalice's `<app>-<stage>-<name>` (the local stack and
    the `crm jobs` command use the same)."""
    physical = f"{app_name}-{stage}-{name}"
    if not _FUNCTION_NAME.match(physical):
        raise ValueError(f"{physical!r} is not a valid Lambda function name (64 characters)")
    return physical


def _depends_on(body: Cfn, logical_id: str) -> None:
    depends = body.get("DependsOn", [])
    depends = [depends] if isinstance(depends, str) else list(depends)
    if logical_id not in depends:
        depends.append(logical_id)
    body["DependsOn"] = depends


def bucket_notified_functions(resources: Iterable[Resource]) -> set[str]:
    return {
        function_logical_id(n.function)
        for r in resources
        if isinstance(r, Bucket)
        for n in r.notifications
    }


def merge(
    chalice_template: Cfn,
    resources: Iterable[Resource],
    stage: str,
    names: Mapping[str, str],
    *,
    permissions: PermissionMap,
    app_name: str = "shop-crm",
    layers: Mapping[str, tuple[str, str]] | None = None,
    every_function_layers: Iterable[str] = (),
    secrets_path: str | None = None,
    stage_settings: Mapping[str, Mapping[str, object]] = STAGE_SETTINGS,
) -> Cfn:
    """The deployable template: chalice's, plus the infra resources, the environment bound to
    them, each function's own role from `permissions` (see `infra.permissions`), its log group,
    the alarms and on-failure destinations (`infra.monitoring`), the layers (`{logical id:
    (zip path, description)}`, those named in `every_function_layers` attached to every
    function) and the contract's gateway errors."""
    resources = list(resources)
    template = copy.deepcopy(chalice_template)
    all_resources = template.setdefault("Resources", {})
    functions = functions_of(template)
    if not functions:
        raise ValueError("the chalice template has no functions")
    added = infra_resources(resources, stage, names, stage_settings, functions)
    clash = sorted(set(added) & set(all_resources))
    if clash:
        raise ValueError(f"infra resources clash with chalice's: {clash}")
    all_resources.update(added)
    bind_environment(template, resources, stage, names)

    sender = names.get("CRM_SENDER_EMAIL", "").strip() or None
    template.setdefault("Parameters", {}).update(monitoring.parameters(sender))
    template.setdefault("Conditions", {}).update(monitoring.conditions())
    by_id = {r.logical_id: r for r in resources}
    app_names = app_function_names(template)
    async_ids = asynchronous_function_ids(template, resources)
    failures = FAILURES_QUEUE if isinstance(by_id.get(FAILURES_QUEUE), Queue) else None
    _apply_permissions(
        template,
        permissions,
        resources,
        stage,
        names,
        app_name=app_name,
        secrets_path=secrets_path or f"/crm/{stage}/",
        destination_ids=async_ids if failures else [],
        failures_queue=failures,
    )
    if isinstance(by_id.get(OPS_TOPIC), Topic):
        machines = [r.logical_id for r in resources if isinstance(r, StateMachine)]
        monitored = monitoring.monitoring_resources(
            app_names, async_ids, machines, OPS_TOPIC, failures, names
        )
        clash = sorted(set(monitored) & set(all_resources))
        if clash:
            raise ValueError(f"monitoring resources clash with others: {clash}")
        all_resources.update(monitored)

    runtime = next(iter(functions.values()))["Properties"].get("Runtime", "python3.11")
    for layer_id, (content, description) in (layers or {}).items():
        if layer_id in all_resources:
            raise ValueError(f"layer {layer_id} clashes with a resource of the same name")
        all_resources[layer_id] = layer_resource(content, description, runtime)
    for layer_id in every_function_layers:
        for function_id in functions:
            layers_list = all_resources[function_id]["Properties"].setdefault("Layers", [])
            if {"Ref": layer_id} not in layers_list:
                layers_list.append({"Ref": layer_id})

    api = all_resources.get(REST_API)
    if api is not None and "DefinitionBody" in api.get("Properties", {}):
        # In the API's body, not as separate GatewayResponse resources: a response set
        # outside the body only takes effect after another deployment of the API.
        api["Properties"]["DefinitionBody"]["x-amazon-apigateway-gateway-responses"] = (
            gateway_responses()
        )

    outputs = template.setdefault("Outputs", {})
    for resource in resources:
        outputs[f"{resource.logical_id}Name"] = {
            "Description": f"{resource.env_var} in the cloud",
            "Value": env_binding(resource, stage, names),
        }
    return template


def _apply_permissions(
    template: Cfn,
    permissions: PermissionMap,
    resources: list[Resource],
    stage: str,
    names: Mapping[str, str],
    *,
    app_name: str,
    secrets_path: str,
    destination_ids: Iterable[str],
    failures_queue: str | None,
) -> None:
    """Name each function, give it its log group, and its role exactly its recorded grants."""
    all_resources = template["Resources"]
    app_names = app_function_names(template)
    unknown = sorted(set(app_names.values()) - set(permissions))
    stale = sorted(set(permissions) - set(app_names.values()))
    if unknown or stale:
        raise ValueError(
            "infra/permissions.json does not match app.py (run `make permissions`): "
            + "; ".join(
                [f"no entry for {', '.join(unknown)}"] * bool(unknown)
                + [f"no function {', '.join(stale)}"] * bool(stale)
            )
        )
    resolver = policies.Resolver(
        resources, stage, names, app_name=app_name, functions=app_names.values()
    )
    destinations = set(destination_ids)
    for function_id, name in sorted(app_names.items()):
        function = all_resources[function_id]
        physical = cloud_function_name(app_name, stage, name)
        function["Properties"]["FunctionName"] = physical
        function["Properties"]["Environment"]["Variables"]["CRM_SENDER_EMAIL"] = {
            "Ref": policies.SENDER_PARAMETER
        }
        log_id = f"{function_id}LogGroup"
        if log_id in all_resources:
            raise ValueError(f"{log_id} clashes with another resource")
        all_resources[log_id] = monitoring.log_group(physical)
        # The group exists before the function can run, so Lambda never creates it itself.
        _depends_on(function, log_id)
        role = _role_of(template, function_id)
        if role is None:
            raise ValueError(f"{function_id} has no role of its own in the template")
        extra = (
            [monitoring.destination_statement(failures_queue)]
            if failures_queue and function_id in destinations
            else []
        )
        role["Properties"]["Policies"] = [
            {
                "PolicyName": f"{function_id}Policy",
                "PolicyDocument": policies.function_policy_document(
                    permissions[name],
                    resolver,
                    secrets_path,
                    monitoring.log_group_name(physical),
                    extra,
                ),
            }
        ]


def dependencies(template: Cfn) -> dict[str, set[str]]:
    """Which resources each resource waits for (Ref, GetAtt, ${..} in Sub, DependsOn)."""
    ids = set(template.get("Resources", {}))

    def walk(node: Any) -> set[str]:
        found: set[str] = set()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "Ref" and isinstance(value, str):
                    found.add(value)
                elif key == "Fn::GetAtt":
                    target = value[0] if isinstance(value, list) else str(value).split(".")[0]
                    found.add(target)
                elif key == "Fn::Sub":
                    text = value[0] if isinstance(value, list) else value
                    found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                    if isinstance(value, list):
                        found |= walk(value[1])
                else:
                    found |= walk(value)
        elif isinstance(node, list):
            for item in node:
                found |= walk(item)
        return found

    graph: dict[str, set[str]] = {}
    for logical_id, body in template.get("Resources", {}).items():
        depends = body.get("DependsOn", [])
        depends = [depends] if isinstance(depends, str) else depends
        graph[logical_id] = (walk(body.get("Properties", {})) | set(depends)) & ids
    return graph


def find_cycle(template: Cfn) -> list[str] | None:
    """A dependency cycle among the template's resources, or None."""
    graph = dependencies(template)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None
