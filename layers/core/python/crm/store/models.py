"""PynamoDB models. Table names come from the settings when a repository is built
(`bind_models`), so one model serves every stage and the tests' tables."""

from __future__ import annotations

import os

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from crm.config import Settings
from crm.store.retry import RetryingModel


class CustomerModel(RetryingModel):
    class Meta:
        table_name = "unbound-customers"
        region = "us-east-1"  # bind_models sets the stage's

    customer_id = UnicodeAttribute(hash_key=True)
    status = UnicodeAttribute(default="active")
    email = UnicodeAttribute(null=True)
    phone = UnicodeAttribute(null=True)
    first_name = UnicodeAttribute(null=True)
    last_name = UnicodeAttribute(null=True)
    birthday = UnicodeAttribute(null=True)
    gender = UnicodeAttribute(null=True)
    locale = UnicodeAttribute(null=True)
    timezone = UnicodeAttribute(null=True)
    address = MapAttribute(null=True)  # type: ignore[var-annotated]
    tags = ListAttribute(null=True)  # type: ignore[var-annotated]
    consents = MapAttribute(null=True)  # type: ignore[var-annotated]
    # The shop's own free-form data, kept as JSON text: a nested map whose keys happen to be
    # DynamoDB's type names (`L`, `M`, `S`...) came back mangled as a map (decision 58).
    attributes = JSONAttribute(null=True)
    external_ids = MapAttribute(null=True)  # type: ignore[var-annotated]
    possible_duplicates = ListAttribute(null=True)  # type: ignore[var-annotated]
    merged_into = UnicodeAttribute(null=True)
    erased_at = UnicodeAttribute(null=True)
    stats = MapAttribute(null=True)  # type: ignore[var-annotated]
    platform_seen = MapAttribute(null=True)  # type: ignore[var-annotated]
    # What the segmentation job last wrote: segments, rfm, predicted, as_of (JSON text).
    analytics = JSONAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    # Optimistic locking: every save is conditional on the version it read.
    version = VersionAttribute()


class IdentityModel(RetryingModel):
    class Meta:
        table_name = "unbound-identities"
        region = "us-east-1"

    identity = UnicodeAttribute(hash_key=True)
    customer_id = UnicodeAttribute()
    created_at = UnicodeAttribute()


class OrdersByCustomer(GlobalSecondaryIndex["OrderModel"]):
    class Meta:
        index_name = "by_customer"
        projection = AllProjection()

    customer_id = UnicodeAttribute(hash_key=True)
    created_at = UnicodeAttribute(range_key=True)


class OrdersByPlatformId(GlobalSecondaryIndex["OrderModel"]):
    class Meta:
        index_name = "by_platform_id"
        projection = KeysOnlyProjection()

    platform_order_id = UnicodeAttribute(hash_key=True)


class OrderModel(RetryingModel):
    class Meta:
        table_name = "unbound-orders"
        region = "us-east-1"

    order_id = UnicodeAttribute(hash_key=True)
    source = UnicodeAttribute()
    platform_order_id = UnicodeAttribute()
    received_at = UnicodeAttribute()
    customer_id = UnicodeAttribute(null=True)
    name = UnicodeAttribute(null=True)
    currency = UnicodeAttribute(null=True)
    lines = JSONAttribute(null=True)
    subtotal = NumberAttribute(default=0)
    shipping = NumberAttribute(default=0)
    total = NumberAttribute(default=0)
    shipping_address = JSONAttribute(null=True)
    # The by_customer index's range key: an order without it (not yet described) is not listed.
    created_at = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)
    paid_at = UnicodeAttribute(null=True)
    cancelled_at = UnicodeAttribute(null=True)
    cancel_reason = UnicodeAttribute(null=True)
    fulfilled_at = UnicodeAttribute(null=True)
    refunds = JSONAttribute(null=True)
    refunds_listed_at = UnicodeAttribute(null=True)
    progress = UnicodeAttribute(null=True)
    status = UnicodeAttribute()
    status_history = JSONAttribute(null=True)
    points_earned = NumberAttribute(default=0)
    points_reversed = NumberAttribute(default=0)
    points_status = UnicodeAttribute(null=True)
    counted = BooleanAttribute(default=False)
    spent = NumberAttribute(default=0)
    spent_month = UnicodeAttribute(null=True)
    fulfilment = JSONAttribute(null=True)
    workflow = JSONAttribute(null=True)
    waiting = JSONAttribute(null=True)
    version = VersionAttribute()

    by_customer = OrdersByCustomer()
    by_platform_id = OrdersByPlatformId()


class DeliveryModel(RetryingModel):
    class Meta:
        table_name = "unbound-deliveries"
        region = "us-east-1"

    delivery_id = UnicodeAttribute(hash_key=True)
    received_at = UnicodeAttribute()
    order_id = UnicodeAttribute(null=True)
    expires_at = TTLAttribute()


class EntriesByTime(GlobalSecondaryIndex["LedgerModel"]):
    class Meta:
        index_name = "entries_by_time"
        projection = AllProjection()

    customer_id = UnicodeAttribute(hash_key=True)
    entry_at = UnicodeAttribute(range_key=True)


class ExpiringLots(GlobalSecondaryIndex["LedgerModel"]):
    class Meta:
        index_name = "expiring"
        projection = AllProjection()

    expiry_month = UnicodeAttribute(hash_key=True)
    expires_at = UnicodeAttribute(range_key=True)


class LedgerModel(RetryingModel):
    """One model for every item of a customer's ledger partition; `sk` says which."""

    class Meta:
        table_name = "unbound-ledger"
        region = "us-east-1"

    customer_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    # `bal`: the account
    balance = NumberAttribute(null=True)
    pending = NumberAttribute(null=True)
    # `bal#lot#<id>`: a lot
    points = NumberAttribute(null=True)
    remaining = NumberAttribute(null=True)
    status = UnicodeAttribute(null=True)
    earned_at = UnicodeAttribute(null=True)
    activated_at = UnicodeAttribute(null=True)
    expires_at = UnicodeAttribute(null=True)
    expiry_month = UnicodeAttribute(null=True)  # set only while active with points left
    # `ent#<id>`: an entry
    entry_type = UnicodeAttribute(null=True)
    entry_at = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    source = UnicodeAttribute(null=True)
    details = JSONAttribute(null=True)  # lots touched, coupon, unrecovered points, tier change
    updated_at = UnicodeAttribute(null=True)

    entries_by_time = EntriesByTime()
    expiring = ExpiringLots()


class NotificationModel(RetryingModel):
    """A customer's message timeline (`sk` = `<at>#<notification id>`), and the dedup claims
    (`customer_id` = `dedup#<key>`, `sk` = `-`), which live in partitions of their own."""

    class Meta:
        table_name = "unbound-notifications"
        region = "us-east-1"

    customer_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    notification_id = UnicodeAttribute(null=True)
    kind = UnicodeAttribute(null=True)
    channel = UnicodeAttribute(null=True)
    to = UnicodeAttribute(null=True)  # the address used; removed on erasure
    status = UnicodeAttribute(null=True)  # sent | skipped | failed; a claim: sending | done
    reason = UnicodeAttribute(null=True)
    locale = UnicodeAttribute(null=True)
    subject = UnicodeAttribute(null=True)  # removed on erasure
    text = UnicodeAttribute(null=True)  # removed on erasure
    dedup_key = UnicodeAttribute(null=True)
    at = UnicodeAttribute(null=True)
    provider_message_id = UnicodeAttribute(null=True)
    forgotten_at = UnicodeAttribute(null=True)


class InventoryModel(RetryingModel):
    """Stock (`sku` = the SKU, `sk` = the warehouse id) and each order's reservations
    (`sku` = `order#<order id>`: `sk` = `<sku>#<warehouse>` per reserved line, `#order` for the
    order's header, `#restock#<key>` per restock)."""

    class Meta:
        table_name = "unbound-inventory"
        region = "us-east-1"

    sku = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    # stock
    on_hand = NumberAttribute(null=True)
    reserved = NumberAttribute(null=True)
    available = NumberAttribute(null=True)  # kept = on_hand - reserved: conditions cannot subtract
    safety_stock = NumberAttribute(null=True)
    alerted = BooleanAttribute(null=True)
    alert_token = UnicodeAttribute(null=True)  # the last `mark_alerted` change's own
    updated_at = UnicodeAttribute(null=True)
    version = NumberAttribute(null=True)  # counts writes; not a PynamoDB VersionAttribute
    # reservations, the order's header, restocks
    quantity = NumberAttribute(null=True)
    state = UnicodeAttribute(null=True)  # reserved | released | shipped
    restocked = NumberAttribute(null=True)
    at = UnicodeAttribute(null=True)
    details = JSONAttribute(null=True)  # the header's allocation; a restock's lines


class CasesByStatus(GlobalSecondaryIndex["CaseModel"]):
    class Meta:
        index_name = "by_status"
        projection = AllProjection()

    status = UnicodeAttribute(hash_key=True)
    opened_at = UnicodeAttribute(range_key=True)


class CasesByCustomer(GlobalSecondaryIndex["CaseModel"]):
    class Meta:
        index_name = "by_customer"
        projection = AllProjection()

    customer_id = UnicodeAttribute(hash_key=True)
    opened_at = UnicodeAttribute(range_key=True)


class CaseModel(RetryingModel):
    class Meta:
        table_name = "unbound-cases"
        region = "us-east-1"

    case_id = UnicodeAttribute(hash_key=True)
    order_id = UnicodeAttribute()
    customer_id = UnicodeAttribute(null=True)
    reason = UnicodeAttribute()
    cause = UnicodeAttribute(null=True)
    status = UnicodeAttribute()
    opened_at = UnicodeAttribute()
    attempt = UnicodeAttribute(null=True)
    token = UnicodeAttribute(null=True)  # the workflow step waiting for the decision
    decision = JSONAttribute(null=True)
    resolved_at = UnicodeAttribute(null=True)
    # A `restock_failed` case: the refund whose stock was not put back, and its SKUs.
    refund_id = UnicodeAttribute(null=True)
    skus = JSONAttribute(null=True)
    alerted_at = UnicodeAttribute(null=True)  # when operations were told (once)
    erased_at = UnicodeAttribute(null=True)  # the customer's erasure removed its texts

    by_status = CasesByStatus()
    by_customer = CasesByCustomer()


class ImportModel(RetryingModel):
    class Meta:
        table_name = "unbound-imports"
        region = "us-east-1"

    import_id = UnicodeAttribute(hash_key=True)
    run = UnicodeAttribute()
    status = UnicodeAttribute()
    file = UnicodeAttribute()
    kind = UnicodeAttribute()
    format = UnicodeAttribute()
    position = JSONAttribute(null=True)
    counts = JSONAttribute(null=True)
    error_parts = NumberAttribute(default=0)
    chunks = NumberAttribute(default=0)
    resumed_from = NumberAttribute(null=True)  # the row a resumed run went on after
    error = UnicodeAttribute(null=True)
    started_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    finished_at = UnicodeAttribute(null=True)
    expires_at = TTLAttribute(null=True)


ALL_MODELS: tuple[type[Model], ...] = (
    CustomerModel,
    IdentityModel,
    OrderModel,
    DeliveryModel,
    LedgerModel,
    NotificationModel,
    InventoryModel,
    CaseModel,
    ImportModel,
)


def bind_models(settings: Settings) -> None:
    """Point the models at the stage's tables. The endpoint comes from botocore's own
    configuration (`AWS_ENDPOINT_URL` locally), the region from the Lambda environment."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    for model, table in (
        (CustomerModel, settings.customers_table),
        (IdentityModel, settings.identities_table),
        (OrderModel, settings.orders_table),
        (DeliveryModel, settings.deliveries_table),
        (LedgerModel, settings.ledger_table),
        (NotificationModel, settings.notifications_table),
        (InventoryModel, settings.inventory_table),
        (CaseModel, settings.cases_table),
        (ImportModel, settings.imports_table),
    ):
        if model.Meta.table_name == table and getattr(model.Meta, "region", None) == region:
            continue
        model.Meta.table_name = table
        model.Meta.region = region
        model._connection = None  # a new table or region needs a new connection
