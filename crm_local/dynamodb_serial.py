"""Make the embedded DynamoDB apply one request at a time, as DynamoDB's items appear to,
and make its transactions cost what the items they touch cost.

moto 5.2.5's `transact_write_items` takes a deep copy of every table it touches and, when any
condition fails, puts the copies back: a write another thread made in between is silently
undone, and the copy itself can fail with "dictionary changed size during iteration". Under
concurrent webhooks that lost orders. `install()` wraps the DynamoDB request handler in one
lock, so a transaction is all-or-nothing and isolated from every other request. Conditions are
still evaluated against whatever the concurrent clients wrote before, so concurrency tests keep
their meaning (DynamoDB itself serialises writes per item).

The table copy also made every transaction cost the size of its tables: a 100,000-row import
(4,000 transactions over tables growing to 400,000 items) never finished. `install()` replaces
it with an undo log of the items the transaction touched, restored on failure: the same
all-or-nothing result, at the cost of the transaction's own items. Part of the moto pin: see
`crm_local.lambda_executor.MOTO_PIN`.

Two more things AWS does that moto does not: a transaction's `ClientRequestToken` makes it
idempotent for 10 minutes (`_idempotent_transaction`), and DynamoDB fails now and then
(`crm_local.chaos`, off unless asked for: every request passes through `chaos.around`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
from collections import OrderedDict
from typing import Any

from crm_local.chaos import chaos, install_route

_lock = threading.RLock()
_installed = False
TOKEN_WINDOW = 600.0  # seconds DynamoDB keeps a transaction's ClientRequestToken
_TOKENS_KEPT = 100_000
# token -> (items digest, until, the answer), oldest first
_tokens: OrderedDict[str, tuple[str, float, Any]] = OrderedDict()


def install() -> None:
    """Idempotent. Fails loudly if moto is not the pinned version."""
    global _installed
    from crm_local.lambda_executor import check_moto

    check_moto()
    if _installed:
        return
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action

    @functools.wraps(original)
    def call_action(self: Any) -> Any:
        return chaos.around(self, lambda: _serve(original, self))

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    from moto.dynamodb.models import DynamoDBBackend

    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
    _cache_condition_parsing()
    install_route()
    _installed = True


def _serve(original: Any, handler: Any) -> Any:
    """One request, alone; a TransactWriteItems with a `ClientRequestToken` as AWS serves it."""
    with _lock:
        if handler._get_action() == "TransactWriteItems":
            return _idempotent_transaction(original, handler)
        return original(handler)


def _idempotent_transaction(original: Any, handler: Any) -> Any:
    """DynamoDB keeps a transaction's `ClientRequestToken` for 10 minutes after it succeeded:
    the same token and items again answer success without writing a second time; the same
    token with other items is refused. (botocore gives every call a token of its own and keeps
    it across its retries; moto ignores tokens.) A transaction that failed leaves no token."""
    token = handler.params.get("ClientRequestToken")
    if not token:
        return original(handler)
    digest = hashlib.sha256(
        json.dumps(handler.params.get("TransactItems"), sort_keys=True, default=repr).encode()
    ).hexdigest()
    now = time.monotonic()
    known = _tokens.get(token)
    if known is not None and known[1] > now:
        if known[0] != digest:
            return (
                400,
                {"Content-Type": "application/x-amz-json-1.0", "status": 400},
                json.dumps(
                    {
                        "__type": "com.amazonaws.dynamodb.v20120810#"
                        "IdempotentParameterMismatchException",
                        "message": "The request uses the same client token as a previous, "
                        "but non-identical request.",
                    }
                ),
            )
        chaos.note("token_replays")
        return known[2]
    answer = original(handler)
    if answer[0] == 200:
        # Oldest first: drop what has expired, and past a bound the oldest (memory stays small).
        while _tokens and (len(_tokens) >= _TOKENS_KEPT or next(iter(_tokens.values()))[1] <= now):
            _tokens.popitem(last=False)
        _tokens[token] = (digest, now + TOKEN_WINDOW, answer)
    return answer


def _cache_condition_parsing() -> None:
    """moto parses a condition expression (a hand-written lexer, ~0.3 ms) for every item it is
    checked on, twice per request; the same few expressions come back with every write. Parsed
    trees are kept by (expression, names, values), which fixes everything they depend on."""
    import moto.dynamodb.comparisons as comparisons
    import moto.dynamodb.models as models
    import moto.dynamodb.models.table as table_module
    import moto.dynamodb.responses as responses

    parser_class = comparisons.ConditionExpressionParser

    @functools.lru_cache(maxsize=8192)
    def parsed(expression: str, names: str, values: str) -> tuple[Any, list[str], list[str]]:
        parser = parser_class(expression, json.loads(names), json.loads(values))
        tree = parser.parse()
        return tree, parser.expr_attr_names_found, parser.expr_attr_values_found

    class CachedParser:
        """What moto's request handlers use of its parser: `parse()` and what it found."""

        def __init__(self, expression: Any, names: Any, values: Any) -> None:
            self.args = (expression, names, values)
            self.expr_attr_names_found: list[str] = []
            self.expr_attr_values_found: list[str] = []

        def parse(self) -> Any:
            expression, names, values = self.args
            try:
                key = (
                    expression,
                    json.dumps(names, sort_keys=True),
                    json.dumps(values, sort_keys=True),
                )
            except (TypeError, ValueError):
                key = None
            if key is None or not isinstance(expression, str):
                parser = parser_class(expression, names, values)
                tree = parser.parse()
                self.expr_attr_names_found = parser.expr_attr_names_found
                self.expr_attr_values_found = parser.expr_attr_values_found
                return tree
            tree, found_names, found_values = parsed(*key)
            self.expr_attr_names_found = list(found_names)
            self.expr_attr_values_found = list(found_values)
            return tree

    def create_parser(expression: Any, names: Any, values: Any) -> Any:
        return CachedParser(expression, names, values)

    def get_filter_expression(expression: Any, names: Any, values: Any) -> Any:
        return CachedParser(expression, names, values).parse()

    comparisons.create_condition_expression_parser = create_parser
    comparisons.get_filter_expression = get_filter_expression
    responses.create_condition_expression_parser = create_parser  # type: ignore[attr-defined]
    table_module.get_filter_expression = get_filter_expression  # type: ignore[attr-defined]
    models.get_filter_expression = get_filter_expression  # type: ignore[attr-defined]


def _transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    """moto 5.2.5's own `DynamoDBBackend.transact_write_items`, with an undo log of the items it
    changed instead of a deep copy of every table it touched."""
    import copy

    from moto.dynamodb.comparisons import get_filter_expression  # the cached one
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MockValidationException,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )
    from moto.dynamodb.models.dynamo_type import DynamoType

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    undo: list[tuple[str, dict[str, Any], Any]] = []  # (table, key, the item before or None)

    def rollback() -> None:
        for table_name, key, before in reversed(undo):
            table = self.get_table(table_name)
            if before is None:
                table.delete_item(
                    key[table.hash_key_attr],
                    key.get(table.range_key_attr) if table.range_key_attr else None,
                )
            else:
                table.put_item(before.to_json()["Attributes"])

    target_items: set[tuple[str, str]] = set()
    errors: list[tuple[Any, Any, Any]] = []
    for item in transact_items:
        original_item: dict[str, Any] | None = None
        if len(list(item.keys())) > 1:
            raise TransactWriteSingleOpException
        try:
            op_type, op = next(iter(item.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")
            table_name = op["TableName"]
            condition_expression = op.get("ConditionExpression")
            names = op.get("ExpressionAttributeNames")
            values = op.get("ExpressionAttributeValues")
            if op_type == "Put":
                attrs = op["Item"]
                table = self.get_table(table_name)
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]
            unique = (str(table_name), str(dict(sorted(key.items()))))
            if unique in target_items:
                raise MultipleTransactionsException()
            target_items.add(unique)
            current = self.get_item(table_name, key)
            if condition_expression is not None:
                condition = get_filter_expression(condition_expression, names, values)
                if not condition.expr(current):
                    if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=original_item)
            if op_type != "ConditionCheck":
                typed_key = {name: DynamoType(value) for name, value in key.items()}
                undo.append((table_name, typed_key, copy.deepcopy(current)))
            # The condition held above and nothing runs in between (the lock): writing without
            # it spares moto parsing it a second time, its most expensive step here.
            if op_type == "Put":
                self.put_item(table_name, op["Item"])
            elif op_type == "Delete":
                self.delete_item(table_name, key)
            elif op_type == "Update":
                self.update_item(
                    table_name,
                    key,
                    update_expression=op["UpdateExpression"],
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            rollback()
            raise
        except ConditionalCheckFailed as e:
            errors.append(("ConditionalCheckFailed", str(e.message), original_item))
        except Exception as e:
            errors.append((type(e).__name__, str(e), original_item))
    if any(code is not None for code, _, _ in errors):
        rollback()
        raise TransactionCanceledException(errors)
