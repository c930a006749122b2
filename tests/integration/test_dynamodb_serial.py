"""The embedded DynamoDB must not lose a write to another request's failed transaction."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.exceptions import ClientError


def test_failed_transactions_never_undo_concurrent_writes(aws):
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    table = "crm-local-deliveries"
    ddb.put_item(TableName=table, Item={"delivery_id": {"S": "gate"}, "state": {"S": "x"}})

    def write(i: int) -> bool:
        # Odd writers fail their condition on the gate item, so moto rolls their transaction
        # back while the even ones write theirs.
        try:
            ddb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": table,
                            "Item": {"delivery_id": {"S": f"d{i}"}, "state": {"S": "done"}},
                        }
                    },
                    {
                        "ConditionCheck": {
                            "TableName": table,
                            "Key": {"delivery_id": {"S": "gate"}},
                            "ConditionExpression": "#s = :s",
                            "ExpressionAttributeNames": {"#s": "state"},
                            "ExpressionAttributeValues": {":s": {"S": "x" if i % 2 == 0 else "y"}},
                        }
                    },
                ]
            )
            return True
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "TransactionCanceledException"
            return False

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(write, range(200)))
    assert outcomes == [i % 2 == 0 for i in range(200)]
    items = {i["delivery_id"]["S"] for i in ddb.scan(TableName=table)["Items"]}
    assert items == {"gate"} | {f"d{i}" for i in range(0, 200, 2)}


def test_the_lock_refuses_an_unpinned_moto(monkeypatch: pytest.MonkeyPatch):
    import moto

    from crm_local import dynamodb_serial
    from crm_local.lambda_executor import SeamBroken

    monkeypatch.setattr(moto, "__version__", "9.9.9")
    with pytest.raises(SeamBroken):
        dynamodb_serial.install()
