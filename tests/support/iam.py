"""A small IAM evaluator for the policies of a built template, and sample requests for the
words of `infra/permissions.json`: enough to ask "may this function do this?" without AWS.

Intrinsics are resolved with a fixed account, region and partition; a resource's physical name
is its logical id (tables, topics, queues) or its configured name (buckets, state machines, as
`infra.template` writes them). Only Allow statements matter here (the functions' policies have
no Deny); `Resource`/`NotResource` and `Action` wildcards are matched as IAM does (`*`, `?`);
conditions support the operators the policies use (StringEquals, StringLike, Bool).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PARTITION, REGION, ACCOUNT = "aws", "us-east-1", "123456789012"
PSEUDO = {"AWS::Partition": PARTITION, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
DATA_SERVICES = ("dynamodb", "s3", "sns", "sqs", "states", "ses", "lambda", "athena", "glue")
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)


class Resolver:
    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, str]) -> None:
        self.resources = template.get("Resources", {})
        self.parameters = {
            name: str(parameters.get(name, spec.get("Default", "")))
            for name, spec in template.get("Parameters", {}).items()
        }

    def _type(self, logical_id: str) -> str:
        return str(self.resources[logical_id]["Type"])

    def ref(self, name: str) -> str:
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        kind = self._type(name)
        if kind == "AWS::SNS::Topic":
            return f"arn:{PARTITION}:sns:{REGION}:{ACCOUNT}:{name}"
        if kind == "AWS::StepFunctions::StateMachine":
            machine = self.resources[name]["Properties"]["StateMachineName"]
            return f"arn:{PARTITION}:states:{REGION}:{ACCOUNT}:stateMachine:{machine}"
        if kind == "AWS::S3::Bucket":
            return self.value(self.resources[name]["Properties"]["BucketName"])
        if kind == "AWS::Glue::Database":
            return str(self.resources[name]["Properties"]["DatabaseInput"]["Name"])
        if kind == "AWS::Athena::WorkGroup":
            return str(self.resources[name]["Properties"]["Name"])
        return name

    def get_att(self, name: str, attribute: str) -> str:
        kind = self._type(name)
        if attribute != "Arn":
            return name  # TopicName, QueueName: the logical id stands for the name
        if kind == "AWS::DynamoDB::Table":
            return f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
        if kind == "AWS::SQS::Queue":
            return f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{name}"
        if kind in FUNCTION_TYPES:
            physical = self.resources[name]["Properties"].get("FunctionName", name)
            return f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{physical}"
        raise ValueError(f"no Arn for {name} ({kind})")

    def value(self, node: Any) -> Any:
        if isinstance(node, str | int | float | bool):
            return node
        if isinstance(node, list):
            return [self.value(n) for n in node]
        if not isinstance(node, dict) or len(node) != 1:
            raise ValueError(f"cannot resolve {node!r}")
        [(key, arg)] = node.items()
        if key == "Ref":
            return self.ref(arg)
        if key == "Fn::GetAtt":
            return self.get_att(*arg)
        if key == "Fn::Select":
            return self.value(arg[1])[int(arg[0])]
        if key == "Fn::Split":
            return str(self.value(arg[1])).split(arg[0])
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            values = {k: str(self.value(v)) for k, v in variables.items()}

            def substitute(match: re.Match[str]) -> str:
                name = match.group(1)
                if name in values:
                    return values[name]
                if "." in name:
                    return self.get_att(*name.split(".", 1))
                return self.ref(name)

            return re.sub(r"\$\{([^}!]+)\}", substitute, text)
        raise ValueError(f"unsupported intrinsic {key}")


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _conditions_hold(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    for operator, tests in condition.items():
        for key, expected in tests.items():
            if key not in context:
                return False
            actual = context[key]
            wanted = [str(e) for e in _listed(expected)]
            if operator == "StringEquals" and actual not in wanted:
                return False
            if operator == "StringLike" and not any(_matches(w, actual) for w in wanted):
                return False
            if operator == "Bool" and actual.lower() not in [w.lower() for w in wanted]:
                return False
            if operator not in ("StringEquals", "StringLike", "Bool"):
                raise ValueError(f"condition operator {operator} is not supported here")
    return True


@dataclass(frozen=True)
class Statement:
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_resources: tuple[str, ...]
    condition: Mapping[str, Any]

    def allows(self, request: Request) -> bool:
        if not any(_matches(a, request.action, ignore_case=True) for a in self.actions):
            return False
        if self.not_resources:
            if any(_matches(r, request.resource) for r in self.not_resources):
                return False
        elif not any(_matches(r, request.resource) for r in self.resources):
            return False
        return _conditions_hold(self.condition, request.context)

    @property
    def data_actions(self) -> list[str]:
        return [a for a in self.actions if a.split(":")[0] in DATA_SERVICES]


def role_of(template: Mapping[str, Any], function_id: str) -> str:
    """The logical id of a function's role."""
    return str(template["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0])


def statements_of_function(
    template: Mapping[str, Any], function_id: str, resolver: Resolver
) -> list[Statement]:
    return statements_of_role(template, role_of(template, function_id), resolver)


def statements_of_role(
    template: Mapping[str, Any], role_id: str, resolver: Resolver
) -> list[Statement]:
    out = []
    for policy in template["Resources"][role_id]["Properties"].get("Policies", []):
        for raw in policy["PolicyDocument"]["Statement"]:
            assert raw["Effect"] == "Allow", raw
            condition = {
                op: {k: resolver.value(v) for k, v in tests.items()}
                for op, tests in raw.get("Condition", {}).items()
            }
            out.append(
                Statement(
                    actions=tuple(_listed(raw["Action"])),
                    resources=tuple(
                        str(r) for r in _flatten(resolver.value(raw.get("Resource", [])))
                    ),
                    not_resources=tuple(
                        str(r) for r in _flatten(resolver.value(raw.get("NotResource", [])))
                    ),
                    condition=condition,
                )
            )
    return out


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [x for v in value for x in _flatten(v)]
    return [value]


def allowed(statements: Iterable[Statement], request: Request) -> bool:
    return any(s.allows(request) for s in statements)


# -- the map's words as requests ------------------------------------------------------------------


SAMPLE_PHONE = "+8613800138000"


def sample_request(
    action: str, word: str, template: Mapping[str, Any], resolver: Resolver
) -> Request | None:
    """A request a function with `action` on `word` makes (None: the secrets path, which is
    not a grant of the map)."""
    resources = template["Resources"]
    if word.startswith("Secrets/"):
        return None
    if word == "PhoneNumbers":
        return Request(action, SAMPLE_PHONE)
    if word == "SenderIdentity":
        sender = resolver.parameters["SenderEmail"]
        return Request(
            action,
            f"arn:{PARTITION}:ses:{REGION}:{ACCOUNT}:identity/{sender}",
            {"ses:FromAddress": sender},
        )
    if word.startswith("Function/"):
        from infra.template import app_function_names

        name = word.removeprefix("Function/")
        [function_id] = [f for f, n in app_function_names(dict(template)).items() if n == name]
        return Request(action, resolver.get_att(function_id, "Arn"))
    bucket_word, _, prefix = word.partition("?prefix=")
    head, _, rest = bucket_word.partition("/")
    kind = resources[head]["Type"]
    if kind == "AWS::Glue::Database":
        glue = f"arn:{PARTITION}:glue:{REGION}:{ACCOUNT}"
        database = resolver.ref(head)
        return Request(
            action, f"{glue}:table/{database}/{rest}" if rest else f"{glue}:database/{database}"
        )
    if kind == "AWS::Athena::WorkGroup":
        return Request(
            action, f"arn:{PARTITION}:athena:{REGION}:{ACCOUNT}:workgroup/{resolver.ref(head)}"
        )
    if kind == "AWS::DynamoDB::Table":
        arn = resolver.get_att(head, "Arn")
        return Request(action, f"{arn}/{rest}" if rest else arn)
    if kind == "AWS::S3::Bucket":
        arn = f"arn:{PARTITION}:s3:::{resolver.ref(head)}"
        if prefix:
            return Request(action, arn, {"s3:prefix": prefix.rstrip("*") + "sample"})
        if rest:
            return Request(action, f"{arn}/{rest.rstrip('*')}sample-object")
        return Request(action, arn)
    if kind == "AWS::StepFunctions::StateMachine":
        arn = resolver.ref(head)
        if rest == "executions":
            name = resources[head]["Properties"]["StateMachineName"]
            return Request(
                action, f"arn:{PARTITION}:states:{REGION}:{ACCOUNT}:execution:{name}:sample"
            )
        return Request(action, arn)
    if kind == "AWS::SNS::Topic":
        return Request(action, resolver.ref(head))
    if kind == "AWS::SQS::Queue":
        return Request(action, resolver.get_att(head, "Arn"))
    raise ValueError(f"no sample request for {word!r} ({kind})")
