"""What each Lambda function may do in AWS, from evidence: `infra/permissions.json`.

`make permissions` runs the integration and e2e suites with every AWS call recorded
(`crm_local.aws_calls`), then `python -m infra.permissions <recordings>` turns the calls into
this map: `{function: {IAM action: [resource, ...]}}`, sorted, in the template's terms (the
logical ids of `infra.resources`). `infra.template` builds each function's policy from it.

Resource words of the map:

- `OrdersTable`, `OrdersTable/index/by_customer`: a table, an index;
- `DropBucket/incoming/*`: the objects under a prefix (a key's first folder; its first two
  under `analytics/`, `DataBucket/analytics/segments/*`: `crm_local.aws_calls.DEEP_PREFIXES`);
  `DataBucket` and `DataBucket?prefix=exports/*` (s3:ListBucket): the bucket, or listing under
  a prefix only;
- `OpsTopic`, `EventsQueue`, `OrderFulfilment`, `OrderFulfilment/executions`;
- `PhoneNumbers`: an SMS sent straight to a phone number (`sns:Publish` with `PhoneNumber`);
- `SenderIdentity`: the SES identity of the sending address;
- `Secrets/<name>`: a parameter under the stage's secrets path (granted to every function);
- `Function/<name>`: a function of the stack, by its name in app.py (`lambda:InvokeFunction`;
  recorded from a call on `<app>-<stage>-<name>`, its name or ARN);
- `AnalyticsWorkGroup`: an Athena workgroup; `AnalyticsDatabase`: a Glue database (and the
  account's catalog, which IAM asks for with it), `AnalyticsDatabase/orders`: one of its tables.

Three derivations complete what the suites can show:

- a task token does not say which workflow it belongs to: `SendTaskSuccess`/`SendTaskFailure`
  are granted on every state machine whose definition waits for a task token;
- `IMPLIED`: a grant that the same code path needs in another case than the one the suites
  ran (the channel of a message is the customer's, not the code's; the payment provider is
  the stage's; a waiting task is answered with success or failure, whichever the recorded
  facts say, so `SendTaskSuccess` and `SendTaskFailure` go together on the same machines);
- `CLOUD_ONLY`: what a function does only in the cloud, where the suites have no stand-in that
  makes the same calls (the snapshot's SQL runs on Athena there, on DuckDB here).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from infra.resources import (
    ANALYTICS_FUNCTIONS,
    GLUE_DATABASES,
    WORKGROUPS,
    Bucket,
    Queue,
    StateMachine,
    Table,
    Topic,
    all_resources,
)

PERMISSIONS_FILE = Path(__file__).resolve().parent / "permissions.json"
PHONE_NUMBERS = "PhoneNumbers"
SENDER_IDENTITY = "SenderIdentity"
SECRETS = "Secrets/"
FUNCTION = "Function/"
EXECUTIONS = "/executions"
LIST_PREFIX = "?prefix="

PermissionMap = dict[str, dict[str, list[str]]]

# Functions that make no AWS call of their own, and why (the test of the map wants a reason).
NO_CALLS: dict[str, str] = {
    "operator": "the authorizer only compares the bearer token with the operator token, read "
    "from the stage's secrets path in SSM (granted to every function, and not seen locally, "
    "where secrets come from the environment)",
}

# (recorded action, word) -> what the same code path needs in another case, and why.
IMPLIED: dict[tuple[str, str], tuple[list[tuple[str, str]], str]] = {
    ("ses:SendEmail", SENDER_IDENTITY): (
        [("sns:Publish", PHONE_NUMBERS)],
        "crm.adapters.messaging: a customer with a phone and no email gets the same message by SMS",
    ),
    ("sns:Publish", PHONE_NUMBERS): (
        [("ses:SendEmail", SENDER_IDENTITY)],
        "crm.adapters.messaging: a customer with an email gets the same message by email",
    ),
    ("dynamodb:UpdateItem", "CustomersTable"): (
        [("dynamodb:GetItem", "CustomersTable")],
        "a conditional write that lost to a concurrent one reads the profile again (the "
        "segmentation job's write-back after a profile was saved meanwhile)",
    ),
    ("s3:PutObject", "DataBucket/payments/*"): (
        [("sns:Publish", "OpsTopic")],
        "crm.adapters.payments: the suites run the local provider (a record in the data "
        "bucket); a stage with CRM_PAYMENTS=manual asks operations on the ops topic instead",
    ),
}


def _athena_grants() -> list[tuple[str, str]]:
    """Run a query in the workgroup over the database's tables: Athena acts with the caller's
    rights, so the caller reads the tables' files and writes the results itself."""
    grants: list[tuple[str, str]] = []
    for workgroup in WORKGROUPS:
        grants += [
            (f"athena:{action}", workgroup.logical_id)
            for action in (
                "StartQueryExecution",
                "GetQueryExecution",
                "GetQueryResults",
                "StopQueryExecution",
            )
        ]
        results = f"{workgroup.bucket}/{workgroup.results_prefix}*"
        grants += [
            ("s3:GetBucketLocation", workgroup.bucket),
            ("s3:GetObject", results),
            ("s3:PutObject", results),
            ("s3:AbortMultipartUpload", results),
        ]
    for database in GLUE_DATABASES:
        tables = [f"{database.logical_id}/{t.name}" for t in database.tables]
        grants.append(("glue:GetDatabase", database.logical_id))
        for action in ("glue:GetTable", "glue:GetPartitions"):
            grants += [(action, word) for word in (database.logical_id, *tables)]
        grants += [
            ("s3:GetBucketLocation", database.bucket),
            ("s3:GetObject", f"{database.bucket}/{database.prefix}*"),
            ("s3:ListBucket", f"{database.bucket}{LIST_PREFIX}{database.prefix}*"),
        ]
    return sorted(set(grants))


# function -> what it does in the cloud only, and why.
CLOUD_ONLY: dict[str, tuple[list[tuple[str, str]], str]] = {
    name: (
        _athena_grants(),
        "crm_analytics: past the documented size the snapshot's segment, RFM and report "
        "definitions run as SQL on Athena over the Glue tables (crm_analytics.athena); the "
        "suites run the same SQL on DuckDB, which makes no AWS call",
    )
    for name in ANALYTICS_FUNCTIONS
}

# A step that answers a waiting task answers success or failure, whichever the recorded facts
# say (functions.orders.answer_due, stop_waiting): a suite that saw one saw the same code.
_CALLBACKS = ("states:SendTaskSuccess", "states:SendTaskFailure")


def _callback_rules(
    machines: Iterable[str],
) -> dict[tuple[str, str], tuple[list[tuple[str, str]], str]]:
    return {
        (action, machine): (
            [(other, machine)],
            "functions.orders.answer_due: a waiting task is answered with success or failure "
            "from what is recorded (a carrier's delivered or delivery_failed)",
        )
        for machine in machines
        for action in _CALLBACKS
        for other in _CALLBACKS
        if other != action
    }


# IAM needs nothing for these.
NO_PERMISSION_NEEDED = frozenset({"sts.GetCallerIdentity"})

_IAM_PREFIX = {"stepfunctions": "states", "sesv2": "ses"}
_S3_ACTIONS = {
    "HeadObject": "s3:GetObject",
    "GetObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "CopyObject": "s3:PutObject",
    "UploadPartCopy": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject",
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "ListParts": "s3:ListMultipartUploadParts",
}
# Invoking a function, whichever way, is authorised as `lambda:InvokeFunction`.
_LAMBDA_ACTIONS = {
    "Invoke": "lambda:InvokeFunction",
    "InvokeWithResponseStream": "lambda:InvokeFunction",
}
# A transaction's parts are authorised as the single-item actions (there is no IAM action for
# TransactWriteItems or TransactGetItems themselves).
_TRANSACT_PARTS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}


class UnknownResource(ValueError):
    """A recorded call touched something `infra.resources` does not declare."""


def _last(name: str, separator: str) -> str:
    return name.rstrip("/").rsplit(separator, 1)[-1]


class Names:
    """Physical names of a stage (its `.chalice/config.json` values) -> logical ids."""

    def __init__(
        self,
        env: Mapping[str, str],
        resources: Iterable[Any] | None = None,
        *,
        app_name: str = "shop-crm",
        functions: Iterable[str] | None = None,
    ) -> None:
        self.env = env
        # Functions are named `<app>-<stage>-<name>` (chalice's names, and the local stack's).
        self.function_prefix = f"{app_name}-{env.get('CRM_STAGE', '')}-"
        self.functions = set(functions) if functions is not None else None
        self.by_kind: dict[str, dict[str, str]] = {
            "table": {},
            "bucket": {},
            "topic": {},
            "queue": {},
            "state_machine": {},
        }
        for resource in resources if resources is not None else all_resources():
            value = env.get(resource.env_var, "")
            if isinstance(resource, Table):
                self.by_kind["table"][value] = resource.logical_id
            elif isinstance(resource, Bucket):
                self.by_kind["bucket"][value] = resource.logical_id
            elif isinstance(resource, Topic):
                self.by_kind["topic"][_last(value, ":")] = resource.logical_id
            elif isinstance(resource, Queue):
                self.by_kind["queue"][_last(value, "/")] = resource.logical_id
            elif isinstance(resource, StateMachine):
                self.by_kind["state_machine"][_last(value, ":")] = resource.logical_id
        source = env.get("CRM_SECRETS_SOURCE", "")
        stage = env.get("CRM_STAGE", "")
        self.secrets_prefix = (
            source.removeprefix("ssm:") if source.startswith("ssm:/") else f"/crm/{stage}/"
        )

    def function(self, physical: str) -> str:
        """A function's name in app.py from its cloud name or ARN (with or without a version or
        alias: `arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`)."""
        name = physical.split(":function:", 1)[1] if ":function:" in physical else physical
        name = name.split(":", 1)[0]
        if not name.startswith(self.function_prefix):
            raise UnknownResource(f"function {physical!r} (not {self.function_prefix}<name>)")
        name = name.removeprefix(self.function_prefix)
        if self.functions is not None and name not in self.functions:
            raise UnknownResource(f"function {physical!r} ({name!r} is no function of app.py)")
        return name

    def logical(self, kind: str, physical: str) -> str:
        key = physical
        if kind in ("topic", "state_machine"):
            key = _last(physical, ":")
        elif kind == "queue":
            key = _last(physical, "/")
        try:
            return self.by_kind[kind][key]
        except KeyError:
            raise UnknownResource(f"{kind} {physical!r}") from None


def token_machines(resources: Iterable[Any] | None = None) -> list[str]:
    """State machines that hand out task tokens (a `.waitForTaskToken` task)."""
    return sorted(
        r.logical_id
        for r in (resources if resources is not None else all_resources())
        if isinstance(r, StateMachine)
        and ".waitForTaskToken" in r.definition_path().read_text(encoding="utf-8")
    )


def _execution_machine(arn: str) -> str:
    # arn:aws:states:<region>:<account>:execution:<machine name>:<execution name>
    parts = arn.split(":")
    return parts[6] if len(parts) > 7 and parts[5] == "execution" else arn


def permissions_of(
    call: Mapping[str, Any], names: Names, machines_with_tokens: list[str]
) -> list[tuple[str, str]]:
    """`(IAM action, resource word)` pairs one recorded call needs."""
    service, operation = call["service"], call["operation"]
    if f"{service}.{operation}" in NO_PERMISSION_NEEDED:
        return []
    default_action = f"{_IAM_PREFIX.get(service, service)}:{operation}"
    out: list[tuple[str, str]] = []
    for resource in call["resources"]:
        kind, name = resource["kind"], resource["name"]
        if kind == "table":
            table = names.logical("table", name)
            word = f"{table}/index/{resource['index']}" if resource.get("index") else table
            part = resource.get("item")
            out.append((_TRANSACT_PARTS[part] if part else default_action, word))
        elif kind == "object":
            bucket = names.logical("bucket", name)
            action = _S3_ACTIONS.get(operation, default_action)
            if resource.get("role") == "source":
                action = "s3:GetObject"
            out.append((action, f"{bucket}/{resource.get('prefix', '')}*"))
        elif kind == "bucket":
            bucket = names.logical("bucket", name)
            prefix = resource.get("prefix", "")
            word = f"{bucket}{LIST_PREFIX}{prefix}*" if prefix else bucket
            out.append((_S3_ACTIONS.get(operation, default_action), word))
        elif kind == "topic":
            out.append((default_action, names.logical("topic", name)))
        elif kind == "phone":
            out.append((default_action, PHONE_NUMBERS))
        elif kind == "sender":
            out.append((default_action, SENDER_IDENTITY))
        elif kind == "state_machine":
            out.append((default_action, names.logical("state_machine", name)))
        elif kind == "execution":
            machine = names.logical("state_machine", _execution_machine(name))
            out.append((default_action, machine + EXECUTIONS))
        elif kind == "task_token":
            out += [(default_action, m) for m in machines_with_tokens]
        elif kind == "queue":
            out.append((default_action, names.logical("queue", name)))
        elif kind == "function":
            action = _LAMBDA_ACTIONS.get(operation, default_action)
            out.append((action, FUNCTION + names.function(name)))
        elif kind == "parameter":
            if not name.startswith(names.secrets_prefix):
                raise UnknownResource(f"parameter {name!r} outside {names.secrets_prefix}")
            out.append((default_action, SECRETS + name.removeprefix(names.secrets_prefix)))
        else:
            raise UnknownResource(f"{kind} {name!r} of {service}.{operation}")
    if not call["resources"]:
        raise UnknownResource(f"{service}.{operation} names no resource")
    return out


def build_map(
    calls: Iterable[Mapping[str, Any]],
    env: Mapping[str, str],
    functions: Iterable[str],
    resources: Iterable[Any] | None = None,
    *,
    app_name: str = "shop-crm",
    cloud_only: Mapping[str, tuple[list[tuple[str, str]], str]] | None = None,
) -> tuple[PermissionMap, list[str]]:
    """The map of the recorded calls, for every function of `functions` (those with no call
    get an empty entry, or their `cloud_only` grants), and the calls that could not be
    placed."""
    resources = list(resources) if resources is not None else all_resources()
    functions = list(functions)
    names = Names(env, resources, app_name=app_name, functions=functions)
    machines = token_machines(resources)
    grants: dict[str, dict[str, set[str]]] = {f: {} for f in functions}
    for function, (pairs, _why) in (CLOUD_ONLY if cloud_only is None else cloud_only).items():
        if function in grants:
            for action, word in pairs:
                grants[function].setdefault(action, set()).add(word)
    problems: list[str] = []
    for call in calls:
        try:
            pairs = permissions_of(call, names, machines)
        except UnknownResource as exc:
            problems.append(f"{call['function']}: {call['service']}.{call['operation']}: {exc}")
            continue
        for action, word in pairs:
            grants.setdefault(call["function"], {}).setdefault(action, set()).add(word)
    rules = {**IMPLIED, **_callback_rules(machines)}
    for by_action in grants.values():
        for (action, word), (implied, _why) in rules.items():
            if word in by_action.get(action, set()):
                for more_action, more_word in implied:
                    by_action.setdefault(more_action, set()).add(more_word)
    return {
        function: {action: sorted(words) for action, words in sorted(by_action.items())}
        for function, by_action in sorted(grants.items())
    }, sorted(set(problems))


def declared_functions(project_dir: Path | None = None) -> list[str]:
    """Every Lambda function `app.py` declares (the API handler as `api_handler`)."""
    from crm_local import aws_calls

    entries = aws_calls.entry_points(project_dir or aws_calls.PROJECT_DIR)
    return sorted(set(entries.values()))


def app_name(project_dir: Path | None = None) -> str:
    """The app's name in `.chalice/config.json`, the first part of every function's name."""
    from crm_local import aws_calls

    config = (project_dir or aws_calls.PROJECT_DIR) / ".chalice" / "config.json"
    return str(json.loads(config.read_text())["app_name"])


def load_map(path: Path = PERMISSIONS_FILE) -> PermissionMap:
    data = json.loads(path.read_text())
    return {f: dict(actions) for f, actions in data["functions"].items()}


def dump_map(permissions: PermissionMap) -> str:
    document = {
        "about": "What each Lambda function does in AWS, recorded while the integration and "
        "e2e suites ran. Generated by `make permissions`; do not edit by hand. "
        "infra/permissions.py explains the resource words.",
        "functions": permissions,
    }
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def summary(permissions: PermissionMap) -> str:
    lines = []
    for function, actions in permissions.items():
        grants = sum(len(words) for words in actions.values())
        lines.append(f"  {function}: {len(actions)} actions, {grants} action-resource pairs")
    return "\n".join(lines)


_SECRETS_WORD = re.compile(r"^Secrets/")


def data_words(words: Iterable[str]) -> list[str]:
    """The resource words that need a statement of their own (the secrets path is granted to
    every function anyway)."""
    return [w for w in words if not _SECRETS_WORD.match(w)]


def missing_from(recorded: PermissionMap, checked_in: PermissionMap) -> list[str]:
    """The grants a recording needs that the checked-in map lacks."""
    missing = []
    for function, actions in recorded.items():
        for action, words in actions.items():
            have = checked_in.get(function, {}).get(action, [])
            missing += [f"{function}: {action} {w}" for w in words if w not in have]
    return missing


def main(argv: Iterable[str] | None = None) -> int:
    from crm_local import aws_calls
    from crm_local.provision import stage_environment

    parser = argparse.ArgumentParser(
        prog="python -m infra.permissions",
        description="Rewrite infra/permissions.json from recorded AWS calls.",
    )
    parser.add_argument("recordings", type=Path, help="the RECORD_AWS_CALLS directory")
    parser.add_argument("--stage", default="local", help="the stage the suites ran as")
    parser.add_argument("--out", type=Path, default=PERMISSIONS_FILE)
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; fail if the recorded calls need a grant the map lacks "
        "(what `make test` runs after the suites)",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)

    calls = aws_calls.load(args.recordings)
    if not calls:
        print(f"no recorded calls under {args.recordings}", file=sys.stderr)
        return 1
    functions = declared_functions()
    permissions, problems = build_map(
        calls, stage_environment(args.stage), functions, app_name=app_name()
    )
    strangers = sorted(set(permissions) - set(functions))
    if problems or strangers:
        for line in problems + [f"{f}: not a function of app.py" for f in strangers]:
            print(f"  {line}", file=sys.stderr)
        print("some calls could not be placed: nothing written", file=sys.stderr)
        return 1
    if args.check:
        missing = missing_from(permissions, load_map(args.out))
        for line in missing:
            print(f"  {line}", file=sys.stderr)
        if missing:
            print(
                f"{args.out} lacks what the suites just did: run `make permissions`",
                file=sys.stderr,
            )
            return 1
        print(f"{args.out} grants every one of the {len(calls)} distinct calls recorded")
        return 0
    args.out.write_text(dump_map(permissions))
    print(f"{args.out}: {len(calls)} distinct calls\n{summary(permissions)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
