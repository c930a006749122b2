"""Create the resources of `infra.resources` in an AWS endpoint (the embedded one, or moto
in-process in the tests), with the physical names of a stage's environment variables."""

from __future__ import annotations

import importlib
import io
import json
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.resources import (
    ABORT_INCOMPLETE_UPLOADS_DAYS,
    BUCKETS,
    FAILURES_QUEUE,
    QUEUES,
    RETENTION,
    STAGE_SETTINGS,
    STATE_MACHINES,
    TABLES,
    TOPICS,
    Bucket,
    StateMachine,
    Table,
)

PROJECT_DIR = Path(__file__).resolve().parent.parent
ClientFactory = Callable[[str], Any]


def stage_environment(stage: str, project_dir: Path = PROJECT_DIR) -> dict[str, str]:
    """The environment variables of a stage in `.chalice/config.json` (global, then stage)."""
    config = json.loads((project_dir / ".chalice" / "config.json").read_text())
    env = dict(config.get("environment_variables", {}))
    env.update(config.get("stages", {}).get(stage, {}).get("environment_variables", {}))
    return env


def table_request(table: Table, name: str) -> dict[str, Any]:
    """`CreateTable` arguments for a table definition: the deployable template builds its
    tables with the same function, so the local stack and the cloud cannot drift apart."""
    from infra.template import table_request as request

    return request(table, name)


def provision_data_resources(client: ClientFactory, env: Mapping[str, str]) -> dict[str, Any]:
    """Tables (with TTL), buckets, topics and queues. Idempotent: what exists is kept.
    Returns what was provisioned by kind, with physical names (and ARNs/URLs where useful)."""
    dynamodb, s3, sns, sqs = (client(s) for s in ("dynamodb", "s3", "sns", "sqs"))
    existing = set(dynamodb.list_tables().get("TableNames", []))
    made: dict[str, Any] = {"tables": [], "buckets": [], "topics": {}, "queues": {}}
    for table in TABLES:
        name = env[table.env_var]
        if name not in existing:
            dynamodb.create_table(**table_request(table, name))
            if table.ttl_attribute:
                dynamodb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
                )
        made["tables"].append(name)
    buckets = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in BUCKETS:
        name = env[bucket.env_var]
        if name not in buckets:
            s3.create_bucket(Bucket=name)
        # As in the cloud, with the default retention (the embedded S3 keeps the rules but
        # deletes nothing). The TLS-only bucket policy is the cloud's alone: this endpoint
        # speaks plain HTTP.
        s3.put_bucket_lifecycle_configuration(
            Bucket=name, LifecycleConfiguration=lifecycle_configuration(bucket)
        )
        made["buckets"].append(name)
    for topic in TOPICS:
        made["topics"][env[topic.env_var]] = sns.create_topic(Name=env[topic.env_var])["TopicArn"]
    for queue in QUEUES:
        made["queues"][env[queue.env_var]] = sqs.create_queue(
            QueueName=env[queue.env_var],
            Attributes={"VisibilityTimeout": str(queue.visibility_timeout)},
        )["QueueUrl"]
    return made


def lifecycle_configuration(bucket: Bucket) -> dict[str, Any]:
    """The bucket's expiry rules (`Bucket.expiries`, default days) in the S3 API's shape."""
    rules: list[dict[str, Any]] = [
        {
            "ID": "expire-" + expiry.prefix.strip("/"),
            "Status": "Enabled",
            "Filter": {"Prefix": expiry.prefix},
            "Expiration": {"Days": RETENTION[expiry.parameter][0]},
        }
        for expiry in bucket.expiries
    ]
    rules.append(
        {
            "ID": "abort-incomplete-uploads",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {
                "DaysAfterInitiation": ABORT_INCOMPLETE_UPLOADS_DAYS
            },
        }
    )
    return {"Rules": rules}


DEFAULT_SENDER_EMAIL = "orders@shop.example"  # as crm.adapters.messaging


def provision_messaging(client: ClientFactory, env: Mapping[str, str]) -> dict[str, Any]:
    """Verify the sender address in SES (the embedded SES, like SES's sandbox, refuses to send
    from an unverified address). Idempotent."""
    sender = env.get("CRM_SENDER_EMAIL") or DEFAULT_SENDER_EMAIL
    client("ses").verify_email_identity(EmailAddress=sender)
    return {"sender": sender}


def substitutions(
    machine_substitutions: Mapping[str, str],
    env: Mapping[str, str],
    function_arn: Callable[[str], str],
    stage_settings: Mapping[str, object],
) -> dict[str, str]:
    """Resolve a state machine's `${Name}` substitutions for one stage (see `StateMachine`)."""
    resolved: dict[str, str] = {}
    for name, ref in machine_substitutions.items():
        kind, _, value = ref.partition(":")
        if kind == "function":
            resolved[name] = function_arn(value)
        elif kind == "env":
            resolved[name] = env[value]
        elif kind == "stage":
            resolved[name] = str(stage_settings[value])
        else:
            raise ValueError(f"unknown substitution {ref!r} for {name}")
    return resolved


def render_definition(path: Path, values: Mapping[str, str]) -> str:
    text = path.read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    if "${" in text:
        missing = text[text.index("${") :].split("}", 1)[0] + "}"
        raise ValueError(f"{path.name}: unresolved substitution {missing}")
    return text


# -- functions, notifications, state machines and schedules --------------------------------
# The Chalice app declares the functions; `infra.resources` says what triggers them. Locally the
# functions exist in the endpoint for their ARNs, and `crm_local.lambda_executor` runs their code.

LAMBDA_RUNTIME = "python3.11"


@dataclass(frozen=True)
class AppFunction:
    """A non-HTTP function of the Chalice app: a pure Lambda, a schedule or an event handler."""

    name: str
    handler_string: str
    handler: Callable[[Any, Any], Any]
    schedule: str | None = None  # `rate(...)` / `cron(...)` for `@app.schedule`
    s3_source: Any = None  # chalice's S3EventConfig for `@app.on_s3_event`


def function_name(app_name: str, stage: str, name: str) -> str:
    """The physical name `chalice package` gives a function."""
    return f"{app_name}-{stage}-{name}"


def resolve_handler(handler_string: str, app_module: Any) -> Callable[[Any, Any], Any]:
    """The `(event, context)` callable behind a handler string: `app.<attr>` is looked up on
    `app_module` (the loaded app, whatever its import name); a blueprint's module is imported."""
    module_name, _, attr = handler_string.rpartition(".")
    module = app_module if module_name == "app" else importlib.import_module(module_name)
    handler = getattr(module, attr, None)
    if not callable(handler):
        raise TypeError(f"{handler_string} is not a callable (event, context) handler")
    return handler


def app_functions(app: Any, app_module: Any) -> list[AppFunction]:
    """Every non-HTTP function in `app.pure_lambda_functions` and `app.event_sources`."""
    from chalice.app import S3EventConfig, ScheduledEventConfig

    found: list[AppFunction] = []
    for source in [*app.pure_lambda_functions, *app.event_sources]:
        schedule = None
        if isinstance(source, ScheduledEventConfig):
            expression = source.schedule_expression
            schedule = expression if isinstance(expression, str) else expression.to_string()
        found.append(
            AppFunction(
                name=source.name,
                handler_string=source.handler_string,
                handler=resolve_handler(source.handler_string, app_module),
                schedule=schedule,
                s3_source=source if isinstance(source, S3EventConfig) else None,
            )
        )
    names = [f.name for f in found]
    if len(names) != len(set(names)):
        raise ValueError(f"two app functions share a name: {sorted(names)}")
    return found


def ensure_role(iam: Any, name: str, service: str) -> str:
    """An IAM role `service` may assume; the ARN of the existing one if it is there."""
    try:
        return str(iam.get_role(RoleName=name)["Role"]["Arn"])
    except iam.exceptions.NoSuchEntityException:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
        return str(
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"][
                "Arn"
            ]
        )


def _placeholder_zip() -> bytes:
    # The endpoint wants code; it never runs it (the executor runs the handler in-process).
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "Run in-process by crm_local.lambda_executor.\n")
    return buffer.getvalue()


def provision_functions(
    client: ClientFactory,
    functions: Iterable[AppFunction],
    app_name: str,
    stage: str,
    env: Mapping[str, str],
    *,
    timeout: int = 30,
    memory: int = 512,
) -> dict[str, str]:
    """Create each function (once). Returns its ARN by the name the app gives it."""
    functions = list(functions)
    if not functions:
        return {}
    lam = client("lambda")
    role = ensure_role(client("iam"), f"{app_name}-{stage}-lambda", "lambda.amazonaws.com")
    arns: dict[str, str] = {}
    for function in functions:
        physical = function_name(app_name, stage, function.name)
        try:
            arn = lam.get_function(FunctionName=physical)["Configuration"]["FunctionArn"]
        except lam.exceptions.ResourceNotFoundException:
            arn = lam.create_function(
                FunctionName=physical,
                Runtime=LAMBDA_RUNTIME,
                Role=role,
                Handler=function.handler_string,
                Code={"ZipFile": _placeholder_zip()},
                Timeout=timeout,
                MemorySize=memory,
                Environment={"Variables": dict(env)},
            )["FunctionArn"]
        arns[function.name] = str(arn)
    return arns


def provision_failure_destinations(
    client: ClientFactory,
    functions: Iterable[AppFunction],
    function_arns: Mapping[str, str],
    env: Mapping[str, str],
) -> dict[str, str]:
    """The on-failure destination (the failures queue) of every asynchronously invoked
    function, as the template sets it: schedules, S3 event handlers and the functions infra
    buckets notify. `crm_local.lambda_executor` sends a failed S3 invocation there. Returns
    the destination by function name."""
    queue = next((q for q in QUEUES if q.logical_id == FAILURES_QUEUE), None)
    if queue is None:
        return {}
    notified = {n.function for b in BUCKETS for n in b.notifications}
    asynchronous = [
        f.name for f in functions if f.schedule or f.s3_source is not None or f.name in notified
    ]
    if not asynchronous:
        return {}
    sqs, lam = client("sqs"), client("lambda")
    url = sqs.get_queue_url(QueueName=env[queue.env_var])["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    made: dict[str, str] = {}
    for name in asynchronous:
        lam.put_function_event_invoke_config(
            FunctionName=_arn_of(function_arns, name, "the failures queue"),
            MaximumRetryAttempts=2,
            DestinationConfig={"OnFailure": {"Destination": arn}},
        )
        made[name] = arn
    return made


def _arn_of(function_arns: Mapping[str, str], name: str, wanted_by: str) -> str:
    try:
        return function_arns[name]
    except KeyError:
        raise ValueError(
            f"{wanted_by} refers to function {name!r}, which the Chalice app does "
            f"not declare (it declares: {sorted(function_arns) or 'none'})"
        ) from None


def provision_notifications(
    client: ClientFactory,
    env: Mapping[str, str],
    function_arns: Mapping[str, str],
    app_sources: Iterable[AppFunction] = (),
) -> dict[str, list[Any]]:
    """S3 -> Lambda notifications of `infra` buckets and of `@app.on_s3_event` handlers. A
    bucket's configuration is replaced as a whole, as S3 does, so running it again is harmless."""
    configs: dict[str, list[dict[str, Any]]] = {}

    def add(bucket: str, arn: str, events: Iterable[str], prefix: str, suffix: str) -> None:
        rules = [{"Name": n, "Value": v} for n, v in (("prefix", prefix), ("suffix", suffix)) if v]
        config: dict[str, Any] = {
            "Id": f"{arn.rsplit(':', 1)[-1]}-{prefix}{suffix}"[:255],
            "LambdaFunctionArn": arn,
            "Events": list(events),
        }
        if rules:
            config["Filter"] = {"Key": {"FilterRules": rules}}
        configs.setdefault(bucket, []).append(config)

    for bucket in BUCKETS:
        for note in bucket.notifications:
            arn = _arn_of(function_arns, note.function, f"the {bucket.logical_id} notification")
            add(env[bucket.env_var], arn, note.events, note.prefix, note.suffix)
    for function in app_sources:
        source = function.s3_source
        if source is not None:
            add(
                source.bucket,
                function_arns[function.name],
                source.events,
                source.prefix or "",
                source.suffix or "",
            )
    s3 = client("s3")
    for bucket_name, lambda_configs in configs.items():
        s3.put_bucket_notification_configuration(
            Bucket=bucket_name,
            NotificationConfiguration={"LambdaFunctionConfigurations": lambda_configs},
        )
    return configs


def state_machine_name(value: str) -> str:
    """The stage's variable holds the machine's name, or its ARN (whose last part is the name)."""
    return value.rsplit(":", 1)[-1] if value.startswith("arn:") else value


def provision_state_machines(
    client: ClientFactory,
    env: Mapping[str, str],
    function_arns: Mapping[str, str],
    stage: str,
    app_name: str = "shop-crm",
    machines: Iterable[StateMachine] = STATE_MACHINES,
) -> dict[str, str]:
    """Standard workflows from `statemachines/`, rendered for the stage; an existing one gets
    the current definition. Returns the ARN by physical name."""
    machines = list(machines)
    if not machines:
        return {}
    sfn = client("stepfunctions")
    role = ensure_role(client("iam"), f"{app_name}-{stage}-states", "states.amazonaws.com")
    existing = {
        m["name"]: m["stateMachineArn"] for m in sfn.list_state_machines().get("stateMachines", [])
    }
    made: dict[str, str] = {}
    for machine in machines:
        name = state_machine_name(env[machine.env_var])
        values = substitutions(
            machine.substitutions,
            env,
            lambda fn, m=machine: _arn_of(function_arns, fn, m.definition_file),
            STAGE_SETTINGS.get(stage, {}),
        )
        definition = render_definition(machine.definition_path(), values)
        if name in existing:
            sfn.update_state_machine(
                stateMachineArn=existing[name], definition=definition, roleArn=role
            )
            made[name] = existing[name]
        else:
            made[name] = sfn.create_state_machine(
                name=name, definition=definition, roleArn=role, type="STANDARD"
            )["stateMachineArn"]
    return made


def provision_schedules(
    client: ClientFactory,
    functions: Iterable[AppFunction],
    function_arns: Mapping[str, str],
    app_name: str,
    stage: str,
) -> dict[str, str]:
    """An EventBridge rule per `@app.schedule`, targeting its function. Returns the schedule
    expression by rule name (the function's physical name)."""
    scheduled = [f for f in functions if f.schedule]
    if not scheduled:
        return {}
    events = client("events")
    rules: dict[str, str] = {}
    for function in scheduled:
        assert function.schedule is not None
        rule = function_name(app_name, stage, function.name)
        events.put_rule(
            Name=rule,
            ScheduleExpression=function.schedule,
            State="ENABLED",
            Description=f"{function.handler_string} on {function.schedule}",
        )
        events.put_targets(
            Rule=rule, Targets=[{"Id": "function", "Arn": function_arns[function.name]}]
        )
        rules[rule] = function.schedule
    return rules
