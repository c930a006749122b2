"""What makes a failure in the cloud seen: the stack's parameters, a log group per function
with a retention, an on-failure destination for every asynchronously invoked function, and
CloudWatch alarms to the ops topic (and, optionally, an email subscription to it).

Alarms (each "more than 0 in 5 minutes", missing data is not a breach):

- per function: Lambda `Errors` and `Throttles`;
- per state machine: `ExecutionsFailed + ExecutionsTimedOut + ExecutionsAborted`;
- the failures queue (the on-failure destination): `ApproximateNumberOfMessagesVisible`;
- failed imports: the `ImportsFailed` metric `crm/services/imports.py` emits through Powertools
  (the stage's `POWERTOOLS_METRICS_NAMESPACE`, dimension `service`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from infra.resources import RETENTION

Cfn = dict[str, Any]

OPS_ALERT_EMAIL = "OpsAlertEmail"
HAS_OPS_ALERT_EMAIL = "HasOpsAlertEmail"
LOG_RETENTION = "LogRetentionDays"
# The values CloudWatch Logs accepts for a retention.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827)
DEFAULT_LOG_RETENTION = 30
PERIOD = 300
# Events that reach a function asynchronously, so a failure after Lambda's retries would be
# lost without a destination (SAM event types chalice writes, and bucket notifications).
ASYNC_EVENT_TYPES = frozenset({"Schedule", "S3", "SNS", "CloudWatchEvent", "EventBridgeRule"})
MAX_RETRIES = 2  # Lambda's default for asynchronous invocations, written down
MAX_EVENT_AGE = 6 * 3600
IMPORTS_FAILED_METRIC = "ImportsFailed"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def parameters(sender_default: str | None) -> Cfn:
    """The stack's parameters: every one has a default but the sending address, which is the
    shop's own (unless the stage's configuration names it)."""
    sender: Cfn = {
        "Type": "String",
        "Description": "The address transactional email is sent from: an SES identity of "
        "this account and region (the address, or its domain), not an example address",
        "AllowedPattern": EMAIL_PATTERN,
        "ConstraintDescription": "an email address",
    }
    if sender_default:
        sender["Default"] = sender_default
    out: Cfn = {
        "SenderEmail": sender,
        OPS_ALERT_EMAIL: {
            "Type": "String",
            "Default": "",
            "Description": "An address subscribed to the ops topic (alarms and operational "
            "alerts); empty for none. SNS asks the address to confirm.",
            "AllowedPattern": r"^$|" + EMAIL_PATTERN[1:],
            "ConstraintDescription": "empty, or an email address",
        },
        LOG_RETENTION: {
            "Type": "Number",
            "Default": str(DEFAULT_LOG_RETENTION),
            "Description": "Days each function's logs are kept",
            "AllowedValues": [str(d) for d in LOG_RETENTION_DAYS],
        },
    }
    for name, (days, description) in RETENTION.items():
        out[name] = {"Type": "Number", "Default": days, "Description": description, "MinValue": 1}
    return out


def conditions() -> Cfn:
    return {HAS_OPS_ALERT_EMAIL: {"Fn::Not": [{"Fn::Equals": [{"Ref": OPS_ALERT_EMAIL}, ""]}]}}


def subscription(topic_id: str) -> Cfn:
    return {
        "Type": "AWS::SNS::Subscription",
        "Condition": HAS_OPS_ALERT_EMAIL,
        "Properties": {
            "TopicArn": {"Ref": topic_id},
            "Protocol": "email",
            "Endpoint": {"Ref": OPS_ALERT_EMAIL},
        },
    }


def log_group_name(function_name: str) -> str:
    return f"/aws/lambda/{function_name}"


def log_group(function_name: str) -> Cfn:
    # Logs are operational records (personal data is masked before it is written): they go
    # with the stack.
    return {
        "Type": "AWS::Logs::LogGroup",
        "DeletionPolicy": "Delete",
        "UpdateReplacePolicy": "Delete",
        "Properties": {
            "LogGroupName": log_group_name(function_name),
            "RetentionInDays": {"Ref": LOG_RETENTION},
        },
    }


def is_async(function: Cfn) -> bool:
    events = function.get("Properties", {}).get("Events", {}) or {}
    return any(e.get("Type") in ASYNC_EVENT_TYPES for e in events.values())


def invoke_config(function_id: str, queue_id: str) -> Cfn:
    return {
        "Type": "AWS::Lambda::EventInvokeConfig",
        "Properties": {
            "FunctionName": {"Ref": function_id},
            "Qualifier": "$LATEST",
            "MaximumRetryAttempts": MAX_RETRIES,
            "MaximumEventAgeInSeconds": MAX_EVENT_AGE,
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [queue_id, "Arn"]}}},
        },
    }


def destination_statement(queue_id: str) -> Cfn:
    """Lambda sends the failed event to the destination with the function's own role."""
    return {
        "Sid": "OnFailureDestination",
        "Effect": "Allow",
        "Action": ["sqs:SendMessage"],
        "Resource": {"Fn::GetAtt": [queue_id, "Arn"]},
    }


def _alarm(description: str, topic_id: str, **metric: Any) -> Cfn:
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": description,
            "ComparisonOperator": "GreaterThanThreshold",
            "Threshold": 0,
            "EvaluationPeriods": 1,
            "TreatMissingData": "notBreaching",
            "AlarmActions": [{"Ref": topic_id}],
            **metric,
        },
    }


def _metric(namespace: str, name: str, dimensions: Mapping[str, Any], stat: str) -> Cfn:
    return {
        "Namespace": namespace,
        "MetricName": name,
        "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
        "Statistic": stat,
        "Period": PERIOD,
    }


def function_alarms(function_id: str, name: str, topic_id: str) -> dict[str, Cfn]:
    dimensions = {"FunctionName": {"Ref": function_id}}
    return {
        f"{function_id}ErrorsAlarm": _alarm(
            f"{name} failed (an unhandled error) in the last 5 minutes: see its logs",
            topic_id,
            **_metric("AWS/Lambda", "Errors", dimensions, "Sum"),
        ),
        f"{function_id}ThrottlesAlarm": _alarm(
            f"{name} was throttled in the last 5 minutes (concurrency limit)",
            topic_id,
            **_metric("AWS/Lambda", "Throttles", dimensions, "Sum"),
        ),
    }


STATE_MACHINE_FAILURES = (
    ("failed", "ExecutionsFailed"),
    ("timedout", "ExecutionsTimedOut"),
    ("aborted", "ExecutionsAborted"),
)


def state_machine_alarm(machine_id: str, topic_id: str) -> Cfn:
    dimensions = [{"Name": "StateMachineArn", "Value": {"Ref": machine_id}}]
    metrics: list[Cfn] = [
        {
            "Id": metric_id,
            "MetricStat": {
                "Metric": {"Namespace": "AWS/States", "MetricName": name, "Dimensions": dimensions},
                "Period": PERIOD,
                "Stat": "Sum",
            },
            "ReturnData": False,
        }
        for metric_id, name in STATE_MACHINE_FAILURES
    ]
    metrics.append(
        {
            "Id": "unfinished",
            "Expression": " + ".join(i for i, _ in STATE_MACHINE_FAILURES),
            "Label": "executions failed, timed out or aborted",
            "ReturnData": True,
        }
    )
    return _alarm(
        f"{machine_id}: an execution failed, timed out or was aborted in the last 5 minutes",
        topic_id,
        Metrics=metrics,
    )


def queue_alarm(queue_id: str, topic_id: str) -> Cfn:
    return _alarm(
        "An asynchronous invocation (drop-folder import, scheduled job) failed every retry: "
        "its event is in the failures queue",
        topic_id,
        **_metric(
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            {"QueueName": {"Fn::GetAtt": [queue_id, "QueueName"]}},
            "Maximum",
        ),
    )


def imports_alarm(namespace: str, service: str, topic_id: str) -> Cfn:
    return _alarm(
        "An import failed for good: its report is under results/ in the drop bucket",
        topic_id,
        **_metric(namespace, IMPORTS_FAILED_METRIC, {"service": service}, "Sum"),
    )


def monitoring_resources(
    function_ids: Mapping[str, str],
    async_ids: Iterable[str],
    machine_ids: Iterable[str],
    topic_id: str,
    queue_id: str | None,
    env: Mapping[str, str],
) -> dict[str, Cfn]:
    """Alarms, destinations and the optional subscription. `function_ids` maps each
    function's logical id to its name in app.py."""
    out: dict[str, Cfn] = {"OpsAlertSubscription": subscription(topic_id)}
    for function_id, name in sorted(function_ids.items()):
        out.update(function_alarms(function_id, name, topic_id))
    for machine_id in sorted(machine_ids):
        out[f"{machine_id}FailedAlarm"] = state_machine_alarm(machine_id, topic_id)
    if queue_id is not None:
        for function_id in sorted(async_ids):
            out[f"{function_id}InvokeConfig"] = invoke_config(function_id, queue_id)
        out[f"{queue_id}Alarm"] = queue_alarm(queue_id, topic_id)
    namespace = env.get("POWERTOOLS_METRICS_NAMESPACE")
    if namespace:
        service = env.get("POWERTOOLS_SERVICE_NAME", "service_undefined")
        out["ImportsFailedAlarm"] = imports_alarm(namespace, service, topic_id)
    return out
