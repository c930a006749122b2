"""Create the resources of `infra.resources` in an AWS endpoint (the embedded one, or moto
in-process in the tests), with the physical names of a stage's environment variables."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from infra.resources import BUCKETS, QUEUES, TABLES, TOPICS, Table

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
                    TimeToLiveSpecification={"Enabled": True,
                                             "AttributeName": table.ttl_attribute})
        made["tables"].append(name)
    buckets = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in BUCKETS:
        name = env[bucket.env_var]
        if name not in buckets:
            s3.create_bucket(Bucket=name)
        made["buckets"].append(name)
    for topic in TOPICS:
        made["topics"][env[topic.env_var]] = sns.create_topic(Name=env[topic.env_var])["TopicArn"]
    for queue in QUEUES:
        made["queues"][env[queue.env_var]] = sqs.create_queue(
            QueueName=env[queue.env_var],
            Attributes={"VisibilityTimeout": str(queue.visibility_timeout)})["QueueUrl"]
    return made


def substitutions(machine_substitutions: Mapping[str, str], env: Mapping[str, str],
                  function_arn: Callable[[str], str], stage_settings: Mapping[str, object]
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
        missing = text[text.index("${"):].split("}", 1)[0] + "}"
        raise ValueError(f"{path.name}: unresolved substitution {missing}")
    return text


