"""Each function's IAM policy, from what it was seen doing (`infra/permissions.json`).

A function gets its own log group, X-Ray, the stage's secrets path in SSM (and the KMS key SSM
decrypts them with), and exactly the recorded actions on exactly the recorded resources, in the
template's terms (see `infra.permissions` for the words of the map). Two grants cannot name a
resource ARN, and are as narrow as IAM allows instead:

- an SMS straight to a phone number: IAM authorises `sns:Publish` against the phone number
  itself (`... is not authorized to perform: SNS:Publish on resource: +86...`), which is no
  ARN, so no `Resource` can name it; the statement allows `sns:Publish` on everything that
  is NOT an SNS ARN (`NotResource arn:<partition>:sns:*:*:*`): phone numbers, and no topic or
  platform endpoint of any account;
- email: `ses:SendEmail`/`ses:SendRawEmail` on the SES identity of the sending address (the
  address, or its domain when the domain is what is verified), only with that address as the
  sender (`ses:FromAddress`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from infra.permissions import (
    EXECUTIONS,
    FUNCTION,
    LIST_PREFIX,
    PHONE_NUMBERS,
    SENDER_IDENTITY,
    data_words,
)
from infra.resources import (
    Bucket,
    GlueDatabase,
    Queue,
    StateMachine,
    Table,
    Topic,
    WorkGroup,
)

Cfn = dict[str, Any]
SENDER_PARAMETER = "SenderEmail"

_ARN_PREFIX = "arn:${AWS::Partition}"
_REGIONAL = "${AWS::Region}:${AWS::AccountId}"


def log_group_arns(log_group: str) -> list[Cfn]:
    base = f"{_ARN_PREFIX}:logs:{_REGIONAL}:log-group:{log_group}"
    return [{"Fn::Sub": base}, {"Fn::Sub": base + ":*"}]


def base_statements(secrets_path: str, log_group: str | None = None) -> list[Cfn]:
    """What every function needs whatever it does: its logs, traces and the stage's secrets."""
    path = "/" + secrets_path.strip("/") + "/"
    logs: Any = (
        log_group_arns(log_group)
        if log_group
        else {"Fn::Sub": f"{_ARN_PREFIX}:logs:{_REGIONAL}:log-group:/aws/lambda/*"}
    )
    return [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": logs,
        },
        # X-Ray accepts no resource-level permissions.
        {
            "Effect": "Allow",
            "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Action": ["ssm:GetParameter", "ssm:GetParameters"],
            "Resource": {"Fn::Sub": f"{_ARN_PREFIX}:ssm:{_REGIONAL}:parameter{path}*"},
        },
        # SecureString parameters are decrypted with the account's SSM key, only through SSM.
        {
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": {"Fn::Sub": f"{_ARN_PREFIX}:kms:{_REGIONAL}:key/*"},
            "Condition": {
                "StringEquals": {"kms:ViaService": {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"}}
            },
        },
    ]


def sender_identity_arns() -> list[Cfn]:
    identity = f"{_ARN_PREFIX}:ses:{_REGIONAL}:identity/${{Identity}}"
    address = {"Ref": SENDER_PARAMETER}
    domain = {"Fn::Select": [1, {"Fn::Split": ["@", address]}]}
    return [
        {"Fn::Sub": [identity, {"Identity": address}]},
        {"Fn::Sub": [identity, {"Identity": domain}]},
    ]


def sms_statement(actions: Iterable[str]) -> Cfn:
    return {
        "Sid": "SmsToPhoneNumbersOnly",
        "Effect": "Allow",
        "Action": sorted(actions),
        "NotResource": {"Fn::Sub": f"{_ARN_PREFIX}:sns:*:*:*"},
    }


def email_statement(actions: Iterable[str]) -> Cfn:
    return {
        "Sid": "EmailAsTheShopOnly",
        "Effect": "Allow",
        "Action": sorted(actions),
        "Resource": sender_identity_arns(),
        "Condition": {"StringEquals": {"ses:FromAddress": {"Ref": SENDER_PARAMETER}}},
    }


class Resolver:
    """Resource words of the map -> ARN expressions of the template."""

    def __init__(
        self,
        resources: Iterable[Any],
        stage: str,
        names: Mapping[str, str],
        *,
        app_name: str = "shop-crm",
        functions: Iterable[str] = (),
    ) -> None:
        # Imported here: infra.template imports this module.
        from infra import template as cfn

        self.cfn = cfn
        self.by_id = {r.logical_id: r for r in resources}
        self.stage = stage
        self.names = names
        self.app_name = app_name
        self.functions = set(functions)

    def _resource(self, logical_id: str, word: str) -> Any:
        try:
            return self.by_id[logical_id]
        except KeyError:
            raise ValueError(
                f"infra/permissions.json names {word!r}, but infra/resources.py declares no "
                f"{logical_id}: run `make permissions`"
            ) from None

    def arns(self, word: str) -> list[Cfn]:
        """Every ARN the word stands for: a Glue database is asked for with its catalog."""
        head, _, rest = word.partition("/")
        resource = self.by_id.get(head)
        if isinstance(resource, GlueDatabase) and not rest:
            glue = f"{_ARN_PREFIX}:glue:{_REGIONAL}"
            name = self.cfn.glue_database_name(resource, self.stage, self.names)
            return [{"Fn::Sub": f"{glue}:catalog"}, {"Fn::Sub": f"{glue}:database/{name}"}]
        return [self.arn(word)]

    def arn(self, word: str) -> Cfn:
        if word.startswith(FUNCTION):
            name = word.removeprefix(FUNCTION)
            if name not in self.functions:
                raise ValueError(
                    f"infra/permissions.json names {word!r}, but app.py declares no function "
                    f"{name!r}: run `make permissions`"
                )
            physical = self.cfn.cloud_function_name(self.app_name, self.stage, name)
            # By name, not Fn::GetAtt: a role that may invoke a function does not wait for it.
            return {"Fn::Sub": f"{_ARN_PREFIX}:lambda:{_REGIONAL}:function:{physical}"}
        head, _, rest = word.partition("/")
        resource = self._resource(head, word)
        if isinstance(resource, Table):
            if not rest:
                return {"Fn::GetAtt": [head, "Arn"]}
            return {"Fn::Sub": "${" + head + ".Arn}/" + rest}
        if isinstance(resource, Bucket):
            return self.cfn.bucket_arn(resource, self.stage, self.names, f"/{rest}" if rest else "")
        if isinstance(resource, StateMachine):
            if "/" + rest == EXECUTIONS:
                name = self.cfn.state_machine_name(resource, self.stage, self.names)
                return {"Fn::Sub": f"{_ARN_PREFIX}:states:{_REGIONAL}:execution:{name}:*"}
            if not rest:
                return self.cfn.state_machine_arn(resource, self.stage, self.names)
        if isinstance(resource, Topic) and not rest:
            return {"Ref": head}
        if isinstance(resource, Queue) and not rest:
            return {"Fn::GetAtt": [head, "Arn"]}
        if isinstance(resource, GlueDatabase) and rest in {t.name for t in resource.tables}:
            name = self.cfn.glue_database_name(resource, self.stage, self.names)
            return {"Fn::Sub": f"{_ARN_PREFIX}:glue:{_REGIONAL}:table/{name}/{rest}"}
        if isinstance(resource, WorkGroup) and not rest:
            name = self.cfn.workgroup_name(resource, self.stage, self.names)
            return {"Fn::Sub": f"{_ARN_PREFIX}:athena:{_REGIONAL}:workgroup/{name}"}
        raise ValueError(f"infra/permissions.json: no ARN for {word!r}")


def _sort_key(statement: Cfn) -> tuple[str, str]:
    action = statement["Action"]
    first = action if isinstance(action, str) else action[0]
    return first, repr(statement.get("Resource", statement.get("NotResource")))


def grant_statements(grants: Mapping[str, Iterable[str]], resolver: Resolver) -> list[Cfn]:
    """Statements for `{action: [word, ...]}`: resources with the same actions share one."""
    actions_of: dict[str, set[str]] = {}
    sms: set[str] = set()
    email: set[str] = set()
    listing: dict[tuple[str, str], set[str]] = {}
    for action, words in grants.items():
        for word in data_words(words):
            if word == PHONE_NUMBERS:
                sms.add(action)
            elif word == SENDER_IDENTITY:
                email.add(action)
            elif LIST_PREFIX in word:
                bucket, _, prefix = word.partition(LIST_PREFIX)
                listing.setdefault((bucket, action), set()).add(prefix)
            else:
                actions_of.setdefault(word, set()).add(action)
    statements: list[Cfn] = []
    by_actions: dict[tuple[str, ...], list[str]] = {}
    for word, actions in actions_of.items():
        by_actions.setdefault(tuple(sorted(actions)), []).append(word)
    for actions, words in by_actions.items():
        statements.append(
            {
                "Effect": "Allow",
                "Action": list(actions),
                "Resource": [arn for w in sorted(words) for arn in resolver.arns(w)],
            }
        )
    for (bucket, action), prefixes in listing.items():
        if action in actions_of.get(bucket, set()):
            continue  # the whole bucket is granted already
        statements.append(
            {
                "Effect": "Allow",
                "Action": [action],
                "Resource": resolver.arn(bucket),
                "Condition": {"StringLike": {"s3:prefix": sorted(prefixes)}},
            }
        )
    statements.sort(key=_sort_key)
    if sms:
        statements.append(sms_statement(sms))
    if email:
        statements.append(email_statement(email))
    return statements


def function_policy_document(
    grants: Mapping[str, Iterable[str]],
    resolver: Resolver,
    secrets_path: str,
    log_group: str | None,
    extra: Iterable[Cfn] = (),
) -> Cfn:
    statements = base_statements(secrets_path, log_group) + grant_statements(grants, resolver)
    return {"Version": "2012-10-17", "Statement": statements + list(extra)}
