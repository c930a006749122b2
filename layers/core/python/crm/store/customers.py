"""The customer repository: profiles and the identity index that keeps them one per person.

Every write that changes who owns an identity is one `TransactWriteItems` whose conditions
make it correct under concurrency: an identity is claimed only if it is free or already
ours, released only if it is still ours, and a profile is saved only at the version read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from functools import lru_cache
from typing import Any

from pynamodb.attributes import MapAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import (
    DoesNotExist,
    PynamoDBException,
    TransactWriteError,
)
from pynamodb.transactions import TransactWrite

from crm.config import get_settings
from crm.domain.customers import Customer
from crm.store import retry
from crm.store.errors import error_code, limit_exceeded, refused_as_invalid, store_error
from crm.store.models import CustomerModel, IdentityModel, bind_models
from crm.store.retry import RetryingConnection

MAX_TRANSACTION_ITEMS = 100  # DynamoDB's limit for one TransactWriteItems
_CUSTOMER_FIELDS = [f.name for f in fields(Customer) if f.name != "version"]
_LIST_FIELDS = {"tags", "possible_duplicates"}
_MAP_FIELDS = {"consents", "attributes", "external_ids", "stats", "platform_seen", "analytics"}


class IdentityTaken(Exception):
    """An identity the write wanted is owned by another profile (someone got there first)."""


class StaleProfile(Exception):
    """The profile changed since it was read; read it again and redo the change."""


def _plain(value: Any) -> Any:
    if isinstance(value, MapAttribute):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def to_customer(item: CustomerModel) -> Customer:
    values = {name: _plain(getattr(item, name)) for name in _CUSTOMER_FIELDS}
    for name in _LIST_FIELDS:
        values[name] = values[name] or []
    for name in _MAP_FIELDS:
        values[name] = values[name] or {}
    return Customer(version=item.version, **values)


def to_item(customer: Customer) -> CustomerModel:
    item = CustomerModel(customer.customer_id)
    for name in _CUSTOMER_FIELDS:
        if name == "customer_id":
            continue
        setattr(item, name, getattr(customer, name))
    if customer.version is not None:
        item.version = customer.version
    return item


class CustomerRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    # -- reads -------------------------------------------------------------------------------

    def resolve(self, keys: Iterable[str]) -> dict[str, str]:
        """Identity key -> customer id, for the keys that are owned (one BatchGetItem)."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        try:
            found = IdentityModel.batch_get(wanted, consistent_read=True)
            return {item.identity: item.customer_id for item in found}
        except PynamoDBException as exc:
            raise store_error(exc, "the identity index could not be read") from exc

    def owner_of(self, key: str) -> str | None:
        try:
            return IdentityModel.get(key, consistent_read=True).customer_id
        except DoesNotExist:
            return None
        except PynamoDBException as exc:
            raise store_error(exc, "the identity index could not be read") from exc

    def get(self, customer_id: str) -> Customer | None:
        try:
            return to_customer(CustomerModel.get(customer_id, consistent_read=True))
        except DoesNotExist:
            return None
        except PynamoDBException as exc:
            raise store_error(exc, "the customer could not be read") from exc

    # -- writes ------------------------------------------------------------------------------

    def save(
        self,
        customer: Customer,
        *,
        claim: Iterable[str] = (),
        release: Iterable[str] = (),
        now: str,
    ) -> Customer:
        """Save the profile (created if its version is None), claiming and releasing identity
        keys in the same transaction. Raises `IdentityTaken` or `StaleProfile`."""
        item = to_item(customer)
        claim, release = list(claim), list(release)
        with self._transaction() as tx:
            tx.save(item)
            for key in claim:
                tx.save(
                    IdentityModel(key, customer_id=customer.customer_id, created_at=now),
                    condition=(
                        IdentityModel.identity.does_not_exist()
                        | (IdentityModel.customer_id == customer.customer_id)
                    ),
                )
            for key in release:
                tx.delete(
                    IdentityModel(key), condition=IdentityModel.customer_id == customer.customer_id
                )
        return to_customer(item)

    def release(self, customer_id: str, keys: Iterable[str]) -> None:
        """Delete identity items still owned by `customer_id`, in transactions of at most
        `MAX_TRANSACTION_ITEMS` (erasure of a profile with more identities than its own write
        can carry). Raises `IdentityTaken` when one is no longer ours."""
        wanted = list(keys)
        for start in range(0, len(wanted), MAX_TRANSACTION_ITEMS):
            with self._transaction() as tx:
                for key in wanted[start : start + MAX_TRANSACTION_ITEMS]:
                    tx.delete(
                        IdentityModel(key), condition=IdentityModel.customer_id == customer_id
                    )

    def merge(
        self, target: Customer, tombstone: Customer, move: Iterable[str], now: str
    ) -> Customer:
        """Save the merged target and the source's tombstone, and move the source's identities
        to the target, in one transaction."""
        target_item, tombstone_item = to_item(target), to_item(tombstone)
        with self._transaction() as tx:
            tx.save(target_item)
            tx.save(tombstone_item)
            for key in move:
                tx.save(
                    IdentityModel(key, customer_id=target.customer_id, created_at=now),
                    condition=(IdentityModel.customer_id == tombstone.customer_id)
                    | (IdentityModel.customer_id == target.customer_id),
                )
        return to_customer(target_item)

    def get_many(self, customer_ids: Iterable[str]) -> dict[str, Customer]:
        """Profiles by id, in as few BatchGetItem calls as DynamoDB allows (100 keys each)."""
        wanted = list(dict.fromkeys(customer_ids))
        if not wanted:
            return {}
        try:
            return {
                item.customer_id: to_customer(item)
                for item in CustomerModel.batch_get(wanted, consistent_read=True)
            }
        except PynamoDBException as exc:
            raise store_error(exc, "the customers could not be read") from exc

    def save_many(self, changes: list[tuple[Customer, list[str]]], now: str) -> None:
        """Several profiles (each at its version, created when None) with the identities each
        claims, in ONE transaction (at most 100 items: the caller sizes the batch). Raises
        `StaleProfile` / `IdentityTaken` like `save`; the caller then goes row by row."""
        with self._transaction() as tx:
            for customer, claim in changes:
                tx.save(to_item(customer))
                for key in claim:
                    tx.save(
                        IdentityModel(key, customer_id=customer.customer_id, created_at=now),
                        condition=(
                            IdentityModel.identity.does_not_exist()
                            | (IdentityModel.customer_id == customer.customer_id)
                        ),
                    )

    def write_analytics(
        self, customer_id: str, analytics: dict[str, Any], version: int
    ) -> dict[str, Any] | None:
        """Set what the segmentation job computed for an active profile, at the version the
        job read (so a profile saved meanwhile is not overwritten with stale fields; its own
        save would in turn fail on the version this write moves, as PynamoDB's versioned
        saves do). Returns the analytics the profile held until this write (`{}` for none),
        as DynamoDB hands them back (`UPDATED_OLD`: the job's events compare with exactly
        what was replaced, and need not carry every profile's old text to know it); None
        when the profile is no longer active or changed since: the caller reads it again or
        leaves it to the next run."""
        field, counter, status = (
            CustomerModel.analytics.attr_name,
            CustomerModel.version.attr_name,
            CustomerModel.status.attr_name,
        )
        request = {
            "TableName": CustomerModel.Meta.table_name,
            "Key": {CustomerModel.customer_id.attr_name: {"S": customer_id}},
            "UpdateExpression": "SET #analytics = :analytics, #version = :next",
            "ConditionExpression": "#status = :active AND #version = :version",
            "ExpressionAttributeNames": {
                "#analytics": field,
                "#version": counter,
                "#status": status,
            },
            "ExpressionAttributeValues": {
                ":analytics": {"S": CustomerModel.analytics.serialize(analytics)},
                ":next": {"N": str(version + 1)},
                ":active": {"S": "active"},
                ":version": {"N": str(version)},
            },
            "ReturnValues": "UPDATED_OLD",
        }
        try:
            answer = self._connection.dispatch("UpdateItem", request)
        except Exception as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise store_error(exc, "the customer could not be written") from exc
        old = (answer.get("Attributes") or {}).get(field, {}).get("S")
        held = CustomerModel.analytics.deserialize(old) if old else None
        return held if isinstance(held, dict) else {}

    def _transaction(self) -> _Transaction:
        return _Transaction(self._connection)


class _Transaction:
    """A PynamoDB TransactWrite whose failures are told apart by their cancellation reasons,
    never by message text."""

    def __init__(self, connection: Connection) -> None:
        self._tx = TransactWrite(connection=connection)
        self._deletes = 0

    def __enter__(self) -> TransactWrite:
        return self._tx.__enter__()

    def __exit_prepare(self) -> None:
        self._deletes = len(self._tx._delete_items)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.__exit_prepare()
        try:
            self._tx.__exit__(exc_type, exc, tb)
        except TransactWriteError as error:
            if refused_as_invalid(error):
                raise limit_exceeded() from error
            reasons = [r.code if r else None for r in error.cancellation_reasons]
            if not reasons:
                raise store_error(error, "the customer store did not accept the write") from error
            # PynamoDB sends deletes (released identities) before puts (the profile, then the
            # claimed identities): the profile's reason follows the deletes.
            profile_at = self._deletes
            if len(reasons) > profile_at and reasons[profile_at] == "ConditionalCheckFailed":
                raise StaleProfile() from error
            if "ConditionalCheckFailed" in reasons:
                raise IdentityTaken() from error
            # TransactionConflict and throttling: another writer holds an item right now.
            raise StaleProfile() from error
        except PynamoDBException as error:
            raise store_error(error, "the customer store did not accept the write") from error


@lru_cache(maxsize=1)
def get_customer_repository() -> CustomerRepository:
    settings = get_settings()
    bind_models(settings)
    return CustomerRepository(RetryingConnection(region=CustomerModel.Meta.region))


def reset() -> None:
    """Forget built repositories and connections (tests, and a stage switch in one process)."""
    retry.reset()  # connections forgotten: their shared client too (a new endpoint, a test)
    get_customer_repository.cache_clear()
    for model in (CustomerModel, IdentityModel):
        model._connection = None
