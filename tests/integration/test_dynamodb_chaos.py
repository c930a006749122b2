"""The embedded DynamoDB fails, when asked to, exactly as AWS's does: the shape of each error,
what was (not) written, what botocore does with it, and that every fault is counted."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from crm_local.chaos import Chaos
from tests.support import chaos as chaos_support

dynamodb_chaos = chaos_support.dynamodb_chaos  # the fixture

TABLE = "crm-local-deliveries"
ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1})


def only(kind: str) -> dict[str, dict[str, float]]:
    """A mix where every call that can meet `kind` does."""
    return {
        op: {kind: 1.0}
        for op in ("TransactWriteItems", "TransactGetItems", "write", "read", "BatchGetItem")
    }


def client(config: Config | None = None):
    return boto3.client("dynamodb", region_name="us-east-1", config=config)


def put(key: str, **extra) -> dict:
    return {"Put": {"TableName": TABLE, "Item": {"delivery_id": {"S": key}, **extra}}}


def keys(ddb) -> set[str]:
    return {i["delivery_id"]["S"] for i in ddb.scan(TableName=TABLE)["Items"]}


def error_of(call) -> dict:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response


def test_a_conflicting_transaction_is_cancelled_with_one_conflict_reason_and_writes_nothing(
    dynamodb_chaos: Chaos,
):
    ddb = client()
    dynamodb_chaos.configure(1.0, seed=7, mix=only("conflict"))
    answer = error_of(
        lambda: ddb.transact_write_items(TransactItems=[put("a"), put("b"), put("c")])
    )
    with dynamodb_chaos.paused():
        assert keys(ddb) == set()
    assert answer["Error"]["Code"] == "TransactionCanceledException"
    codes = [r["Code"] for r in answer["CancellationReasons"]]
    assert sorted(codes) == ["None", "None", "TransactionConflict"]
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert answer["ResponseMetadata"]["RetryAttempts"] == 0  # botocore leaves it to the caller

    single = error_of(lambda: ddb.put_item(TableName=TABLE, Item={"delivery_id": {"S": "d"}}))
    assert single["Error"]["Code"] == "TransactionConflictException"
    assert single["ResponseMetadata"]["RetryAttempts"] == 0
    counts = dynamodb_chaos.counts()
    assert counts["conflict"] == counts["faults"] == 2
    assert counts["by_operation"] == {
        "PutItem": {"conflict": 1},
        "TransactWriteItems": {"conflict": 1},
    }


def test_throttles_and_internal_errors_are_answered_as_aws_does_and_write_nothing(
    dynamodb_chaos: Chaos,
):
    ddb = client(ONE_ATTEMPT)  # the raw answer, without botocore's retries
    dynamodb_chaos.configure(1.0, seed=3, mix=only("throttle"))
    seen = set()
    for i in range(6):
        answer = error_of(
            lambda i=i: ddb.put_item(TableName=TABLE, Item={"delivery_id": {"S": f"t{i}"}})
        )
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 400
        seen.add(answer["Error"]["Code"])
    assert seen <= {"ProvisionedThroughputExceededException", "ThrottlingException"} and seen

    dynamodb_chaos.configure(1.0, seed=3, mix=only("internal"))
    answer = error_of(lambda: ddb.transact_write_items(TransactItems=[put("x")]))
    assert answer["Error"]["Code"] == "InternalServerError"
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 500
    with dynamodb_chaos.paused():
        assert keys(ddb) == set()


def test_botocore_retries_a_passing_fault_by_itself(dynamodb_chaos: Chaos):
    ddb = client()
    dynamodb_chaos.configure(0.25, seed=11, outage=0.0, mix=only("internal"))
    for i in range(20):
        ddb.put_item(TableName=TABLE, Item={"delivery_id": {"S": f"r{i}"}})
    counts = dynamodb_chaos.counts()
    assert counts["internal"] > 0  # the faults fired, and every call still succeeded
    assert counts["calls"] == 20 + counts["internal"]


def test_an_outage_outlasts_botocores_retries(dynamodb_chaos: Chaos):
    ddb = client()
    dynamodb_chaos.configure(1.0, seed=5, outage=1.0, mix=only("internal"))
    answer = error_of(lambda: ddb.get_item(TableName=TABLE, Key={"delivery_id": {"S": "x"}}))
    assert answer["Error"]["Code"] == "InternalServerError"
    assert answer["ResponseMetadata"]["RetryAttempts"] == 3  # 4 attempts, all failed
    assert dynamodb_chaos.counts()["outage_attempts"] == 4


def test_an_applied_write_answered_500_is_retried_into_its_own_condition(dynamodb_chaos: Chaos):
    """What AWS may do to a single write, and what the code must survive: written, answered
    500, sent again by botocore, refused by the condition the first attempt made true."""
    ddb = client()
    dynamodb_chaos.configure(1.0, seed=2, mix=only("applied"))
    answer = error_of(
        lambda: ddb.put_item(
            TableName=TABLE,
            Item={"delivery_id": {"S": "once"}},
            ConditionExpression="attribute_not_exists(delivery_id)",
        )
    )
    assert answer["Error"]["Code"] == "ConditionalCheckFailedException"
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    with dynamodb_chaos.paused():
        assert keys(ddb) == {"once"}


def test_an_applied_transaction_answered_500_is_not_applied_again(dynamodb_chaos: Chaos):
    """A transaction keeps its ClientRequestToken across botocore's retries, and DynamoDB
    answers a repeat of an applied one with success without writing again."""
    ddb = client()
    with dynamodb_chaos.paused():
        ddb.put_item(TableName=TABLE, Item={"delivery_id": {"S": "n"}, "count": {"N": "0"}})
    dynamodb_chaos.configure(1.0, seed=2, mix={"TransactWriteItems": {"applied": 1.0}})
    increment = {
        "Update": {
            "TableName": TABLE,
            "Key": {"delivery_id": {"S": "n"}},
            "UpdateExpression": "ADD #c :one",
            "ExpressionAttributeNames": {"#c": "count"},
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    }
    answer = error_of(lambda: ddb.transact_write_items(TransactItems=[increment]))
    assert answer["ResponseMetadata"]["RetryAttempts"] == 3  # every answer was lost
    with dynamodb_chaos.paused():
        item = ddb.get_item(TableName=TABLE, Key={"delivery_id": {"S": "n"}})["Item"]
    assert item["count"] == {"N": "1"}  # applied once, not four times
    assert dynamodb_chaos.counts()["token_replays"] == 3


def test_a_transactions_token_is_honoured_as_aws_does():
    """Without chaos too: the same token and items are one write; other items, a refusal."""
    from moto import mock_aws

    from crm_local import dynamodb_serial

    dynamodb_serial.install()
    with mock_aws():
        ddb = client()
        ddb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        add = {
            "Update": {
                "TableName": "t",
                "Key": {"k": {"S": "n"}},
                "UpdateExpression": "ADD #c :one",
                "ExpressionAttributeNames": {"#c": "c"},
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
        }
        ddb.transact_write_items(TransactItems=[add], ClientRequestToken="tok-1")
        ddb.transact_write_items(TransactItems=[add], ClientRequestToken="tok-1")
        assert ddb.get_item(TableName="t", Key={"k": {"S": "n"}})["Item"]["c"] == {"N": "1"}
        other = {**add, "Update": {**add["Update"], "Key": {"k": {"S": "m"}}}}
        answer = error_of(
            lambda: ddb.transact_write_items(TransactItems=[other], ClientRequestToken="tok-1")
        )
        assert answer["Error"]["Code"] == "IdempotentParameterMismatchException"
        ddb.transact_write_items(TransactItems=[add], ClientRequestToken="tok-2")
        assert ddb.get_item(TableName="t", Key={"k": {"S": "n"}})["Item"]["c"] == {"N": "2"}


def test_a_batch_read_may_come_back_in_part(dynamodb_chaos: Chaos):
    ddb = client()
    with dynamodb_chaos.paused():
        for k in "abcd":
            ddb.put_item(TableName=TABLE, Item={"delivery_id": {"S": k}})
    dynamodb_chaos.configure(1.0, seed=1, mix=only("unprocessed"))
    wanted = [{"delivery_id": {"S": k}} for k in "abcd"]
    answer = ddb.batch_get_item(RequestItems={TABLE: {"Keys": wanted, "ConsistentRead": True}})
    got = {i["delivery_id"]["S"] for i in answer["Responses"][TABLE]}
    left = answer["UnprocessedKeys"][TABLE]
    assert got == {"a", "b"}
    assert left == {"Keys": wanted[2:], "ConsistentRead": True}  # ready to send again


def test_the_share_is_what_was_asked_and_the_same_seed_fails_the_same_calls(
    dynamodb_chaos: Chaos,
):
    ddb = client(ONE_ATTEMPT)

    def run(seed: int) -> list[bool]:
        dynamodb_chaos.configure(0.05, seed=seed, outage=0.0, mix=only("internal"))
        failed = []
        for i in range(400):
            try:
                ddb.get_item(TableName=TABLE, Key={"delivery_id": {"S": str(i)}})
                failed.append(False)
            except ClientError:
                failed.append(True)
        return failed

    first, again, other = run(42), run(42), run(43)
    assert first == again and first != other
    assert 8 <= sum(first) <= 35  # 5 % of 400
    assert dynamodb_chaos.counts()["faults"] == sum(other)
    # Management calls and requests marked to be spared never fail.
    dynamodb_chaos.configure(1.0, seed=1, mix=only("internal"))
    ddb.describe_table(TableName=TABLE)
    ddb.meta.events.register(
        "before-sign.dynamodb.*",
        lambda request, **_: request.headers.__setitem__("x-crm-chaos", "skip"),
    )
    ddb.get_item(TableName=TABLE, Key={"delivery_id": {"S": "x"}})
    assert dynamodb_chaos.counts()["faults"] == 0


def test_the_setting_comes_from_the_environment_and_a_bad_one_is_refused():
    settings = Chaos()
    settings.configure_from_env(
        {"CRM_LOCAL_DYNAMODB_CHAOS": "0.05", "CRM_LOCAL_DYNAMODB_CHAOS_SEED": "9"}
    )
    assert (settings.rate, settings.seed, settings.active()) == (0.05, 9, True)
    settings.configure_from_env({})
    assert not settings.active()
    for wrong in ("5%", "1.5", "-0.1"):
        with pytest.raises(ValueError, match="CRM_LOCAL_DYNAMODB_CHAOS"):
            settings.configure_from_env({"CRM_LOCAL_DYNAMODB_CHAOS": wrong})


def test_the_endpoint_route_shows_the_counts_and_changes_the_setting():
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from crm_local.chaos import ROUTE, _route, chaos

    def call(method: str, body: dict | None = None) -> tuple[int, dict]:
        request = Request(EnvironBuilder(path=ROUTE, method=method, json=body).get_environ())
        status, _, answer = _route(request, ROUTE, request.headers)
        return status, json.loads(answer)

    try:
        status, view = call("POST", {"rate": 0.1, "seed": 4})
        assert status == 200 and (view["rate"], view["seed"], view["faults"]) == (0.1, 4, 0)
        assert call("GET")[1]["rate"] == 0.1
        assert call("POST", {"rate": 3})[0] == 400
    finally:
        chaos.configure(0.0)
