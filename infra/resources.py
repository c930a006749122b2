"""Every AWS resource the system needs besides its functions, defined once.

The same definitions are used twice: `infra.template` turns them into CloudFormation resources
for the deployable template, and `crm_local.provision` creates them in the embedded endpoint.
Each resource names the environment variable through which the functions find it; the stage's
value of that variable in `.chalice/config.json` is the physical name locally, and in the cloud
the template binds the variable to the resource itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

STATEMACHINES_DIR = Path(__file__).resolve().parent.parent / "statemachines"


@dataclass(frozen=True)
class Index:
    name: str
    hash_key: str
    range_key: str | None = None
    projection: str = "ALL"


@dataclass(frozen=True)
class Table:
    logical_id: str
    env_var: str
    hash_key: str
    range_key: str | None = None
    indexes: tuple[Index, ...] = ()
    ttl_attribute: str | None = None
    # Attribute types of every key (table and index); all keys here are strings unless listed.
    numeric_keys: tuple[str, ...] = ()

    def key_attributes(self) -> list[str]:
        names = [self.hash_key] + ([self.range_key] if self.range_key else [])
        for index in self.indexes:
            names += [index.hash_key] + ([index.range_key] if index.range_key else [])
        return list(dict.fromkeys(names))


@dataclass(frozen=True)
class Notification:
    """An S3 event notification from a bucket prefix to a function the Chalice app declares."""

    prefix: str
    function: str
    suffix: str = ""
    events: tuple[str, ...] = ("s3:ObjectCreated:*",)


@dataclass(frozen=True)
class Expiry:
    """Objects under `prefix` are deleted `RETENTION[parameter]` days after they were written
    (an S3 lifecycle rule; the days are a parameter of the stack)."""

    prefix: str
    parameter: str


@dataclass(frozen=True)
class Bucket:
    logical_id: str
    env_var: str
    notifications: tuple[Notification, ...] = ()
    expiries: tuple[Expiry, ...] = ()


@dataclass(frozen=True)
class Topic:
    logical_id: str
    env_var: str


@dataclass(frozen=True)
class Queue:
    logical_id: str
    env_var: str
    visibility_timeout: int = 60


@dataclass(frozen=True)
class GlueTable:
    """One dataset of the columnar snapshot (docs/analytics.md) as Athena reads it: the Parquet
    files under `<database prefix><name>/date=YYYY-MM-DD/`, partitioned by `date` (a string)."""

    name: str
    columns: tuple[tuple[str, str], ...]  # (name, Hive type), in the files' order


@dataclass(frozen=True)
class GlueDatabase:
    """A Glue database over one prefix of a bucket, its tables partitioned by day. The
    partitions are projected (`projection.*` table properties: dates from `first_date` to the
    day after today), so no crawler runs and no partition is ever added."""

    logical_id: str
    env_var: str
    bucket: str  # the logical id of the bucket that holds the files
    prefix: str
    tables: tuple[GlueTable, ...]
    first_date: str = "2000-01-01"


@dataclass(frozen=True)
class WorkGroup:
    """An Athena workgroup whose query results go under `results_prefix` of a bucket (its
    setting wins over the caller's)."""

    logical_id: str
    env_var: str
    bucket: str  # the logical id of the bucket that holds the results
    results_prefix: str


@dataclass(frozen=True)
class StateMachine:
    """A Standard workflow from `statemachines/<file>`; its `${Name}` substitutions are filled
    with function ARNs (`function:<name>`), resource names (`env:<VAR>`) or literal values
    that differ by stage (`stage:<key>`, see `STAGE_SETTINGS`)."""

    logical_id: str
    env_var: str
    definition_file: str
    substitutions: dict[str, str] = field(default_factory=dict)

    def definition_path(self) -> Path:
        return STATEMACHINES_DIR / self.definition_file


TABLES: tuple[Table, ...] = (
    # One item per person: the profile, consents, stats. Tombstones stay for merged-away ids.
    Table(logical_id="CustomersTable", env_var="CRM_CUSTOMERS_TABLE", hash_key="customer_id"),
    # One item per identity (external id, normalised email, E.164 phone) -> the customer who owns
    # it. The conditional put of these items is what makes "one profile per person" hold under
    # concurrent upserts.
    Table(logical_id="IdentitiesTable", env_var="CRM_IDENTITIES_TABLE", hash_key="identity"),
    # One item per order (`ord_<source>_<platform id>`). By customer for the 360 view and erasure;
    # by the platform's id for `GET /orders/{platform id}`.
    Table(
        logical_id="OrdersTable",
        env_var="CRM_ORDERS_TABLE",
        hash_key="order_id",
        indexes=(
            Index("by_customer", "customer_id", "created_at"),
            Index("by_platform_id", "platform_order_id", projection="KEYS_ONLY"),
        ),
    ),
    # Webhook deliveries seen (`<source>:<delivery id>`), kept 7 days by TTL: the dedup record,
    # completed in the same transaction as the delivery's effects.
    Table(
        logical_id="DeliveriesTable",
        env_var="CRM_DELIVERIES_TABLE",
        hash_key="delivery_id",
        ttl_attribute="expires_at",
    ),
    # The points ledger, one partition per customer: `bal` (balance and pending), `bal#lot#<id>`
    # (lots), `ent#<entry id>` (entries, id derived from the cause), `evt#...` (tier changes).
    # `entries_by_time` lists entries newest first; `expiring` (sparse: active lots with points
    # left) lets the expiry job find due lots by month without a Scan.
    Table(
        logical_id="LedgerTable",
        env_var="CRM_LEDGER_TABLE",
        hash_key="customer_id",
        range_key="sk",
        indexes=(
            Index("entries_by_time", "customer_id", "entry_at"),
            Index("expiring", "expiry_month", "expires_at"),
        ),
    ),
    # Stock per SKU per warehouse (`sk` = warehouse id), and each order's reservations
    # (`sku` = `order#<order id>`, `sk` = `<sku>#<warehouse>`), written in the same
    # transaction as the stock they hold, so a reservation is made and released exactly once.
    Table(
        logical_id="InventoryTable", env_var="CRM_INVENTORY_TABLE", hash_key="sku", range_key="sk"
    ),
    # Exception cases; `by_status` lists the open ones oldest first, `by_customer` (sparse:
    # only cases with a customer) finds a customer's cases, for erasure.
    Table(
        logical_id="CasesTable",
        env_var="CRM_CASES_TABLE",
        hash_key="case_id",
        indexes=(
            Index("by_status", "status", "opened_at"),
            Index("by_customer", "customer_id", "opened_at"),
        ),
    ),
    # Each customer's messages (`sk` = `<sent at>#<id>`), and one item per dedup key
    # (`customer_id` = `dedup#<key>`), so a message is sent at most once per key.
    Table(
        logical_id="NotificationsTable",
        env_var="CRM_NOTIFICATIONS_TABLE",
        hash_key="customer_id",
        range_key="sk",
    ),
)

TABLES = (
    *TABLES,
    # One item per dropped file content (`<key>#<etag>`): where its import stands (byte offset,
    # counts, error parts) and which run owns it. Kept 30 days after the last write by TTL.
    Table(
        logical_id="ImportsTable",
        env_var="CRM_IMPORTS_TABLE",
        hash_key="import_id",
        ttl_attribute="expires_at",
    ),
)

# How long objects holding personal data are kept, by CloudFormation parameter: (default days,
# what it covers). docs/operations.md lists them; the local stack applies the defaults.
RETENTION: dict[str, tuple[int, str]] = {
    "ImportFilesRetentionDays": (
        30,
        "Days a dropped file (incoming/, archive/) and its report and error file (results/) "
        "are kept; they hold personal data",
    ),
    "ImportWorkRetentionDays": (
        30,
        "Days the parts of an unfinished import's error file (work/) are kept, as long as its "
        "checkpoint (the imports table's TTL)",
    ),
    "ExportsRetentionDays": (
        30,
        "Days a customer's data export (exports/) is kept for the platform to collect",
    ),
    "AthenaResultsRetentionDays": (
        7,
        "Days Athena's query results (athena-results/: segment members, report rows) are "
        "kept; the jobs read each one once",
    ),
}
# An upload that never completed is invisible but billed, and may hold personal data.
ABORT_INCOMPLETE_UPLOADS_DAYS = 7

SNAPSHOT_PREFIX = "analytics/snapshot/"  # crm_analytics.snapshot.PREFIX
ATHENA_RESULTS_PREFIX = "athena-results/"

BUCKETS: tuple[Bucket, ...] = (
    # A file under incoming/<kind>/ is imported by `import_file`; results/ and archive/ are
    # written beside it (not under incoming/, so they trigger nothing); work/ holds the parts of
    # the error file while an import runs.
    Bucket(
        logical_id="DropBucket",
        env_var="CRM_DROP_BUCKET",
        notifications=(Notification(prefix="incoming/", function="import_file"),),
        expiries=(
            Expiry("incoming/", "ImportFilesRetentionDays"),
            Expiry("archive/", "ImportFilesRetentionDays"),
            Expiry("results/", "ImportFilesRetentionDays"),
            Expiry("work/", "ImportWorkRetentionDays"),
        ),
    ),
    # exports/<customer id>/ (a platform's data request: personal data) and payments/<order
    # id>/ (the local payment records: ids and amounts, no personal data, kept).
    # analytics/snapshot/ (the columnar snapshot, which Athena reads) and athena-results/
    # (Athena's output) are the analytics' (docs/analytics.md).
    Bucket(
        logical_id="DataBucket",
        env_var="CRM_DATA_BUCKET",
        expiries=(
            Expiry("exports/", "ExportsRetentionDays"),
            Expiry(ATHENA_RESULTS_PREFIX, "AthenaResultsRetentionDays"),
        ),
    ),
)

OPS_TOPIC = "OpsTopic"
TOPICS: tuple[Topic, ...] = (Topic(logical_id=OPS_TOPIC, env_var="CRM_OPS_TOPIC"),)

# The on-failure destination of every asynchronously invoked function (the S3 notification,
# the schedules): the event that failed every retry, with the error. An alarm watches it.
FAILURES_QUEUE = "FailuresQueue"
QUEUES: tuple[Queue, ...] = (
    Queue(logical_id="EventsQueue", env_var="CRM_EVENTS_QUEUE"),
    Queue(logical_id=FAILURES_QUEUE, env_var="CRM_FAILURES_QUEUE"),
)

# The functions of app.py that run `crm_analytics` (pandas, pyarrow, scipy): they ship as the
# analytics container image (`infra.build`), and run the snapshot's SQL on Athena.
ANALYTICS_FUNCTIONS: tuple[str, ...] = ("analytics", "segmentation", "reports")
# Functions another function invokes asynchronously (`InvocationType=Event`): the API queues job
# runs and erasure's scrub on `analytics`. Like any async function they get the on-failure
# destination and its alarm.
INVOKED_ASYNCHRONOUSLY: tuple[str, ...] = ("analytics",)

# The snapshot's datasets as Glue tables, columns as `crm_analytics.snapshot` writes them
# (Parquet int64 is bigint, date32 date, a list of strings array<string>); a test holds the two
# equal. Athena runs the same segment, RFM and report definitions over them as SQL
# (`crm_analytics.sql`) where the snapshot is too large for one Lambda (docs/analytics.md).
SNAPSHOT_TABLES: tuple[GlueTable, ...] = (
    GlueTable(
        "orders",
        (
            ("order_id", "string"),
            ("customer_id", "string"),
            ("source", "string"),
            ("currency", "string"),
            ("placed_at", "string"),
            ("day", "date"),
            ("paid", "boolean"),
            ("cancelled", "boolean"),
            ("total", "bigint"),
            ("refunded", "bigint"),
            ("country_code", "string"),
            ("province", "string"),
            ("customer_active", "boolean"),
        ),
    ),
    GlueTable(
        "order_lines",
        (
            ("order_id", "string"),
            ("customer_id", "string"),
            ("day", "date"),
            ("sku", "string"),
            ("quantity", "bigint"),
            ("amount", "bigint"),
        ),
    ),
    GlueTable(
        "customers",
        (
            ("customer_id", "string"),
            ("created_at", "string"),
            ("email", "string"),
            ("phone", "string"),
            ("first_name", "string"),
            ("last_name", "string"),
            ("gender", "string"),
            ("locale", "string"),
            ("timezone", "string"),
            ("country_code", "string"),
            ("province", "string"),
            ("city", "string"),
            ("zip", "string"),
            ("birthday", "string"),
            ("tags", "array<string>"),
            ("consents_email", "boolean"),
            ("consents_sms", "boolean"),
            ("tier", "string"),
            ("total_spent", "bigint"),
            ("orders_count", "bigint"),
            ("first_order_at", "string"),
            ("last_order_at", "string"),
            ("points_balance", "bigint"),
            ("analytics", "string"),
            ("analytics_digest", "bigint"),
            ("version", "bigint"),
        ),
    ),
    GlueTable(
        "points",
        (
            ("customer_id", "string"),
            ("entry_type", "string"),
            ("points", "bigint"),
            ("day", "date"),
        ),
    ),
)

GLUE_DATABASES: tuple[GlueDatabase, ...] = (
    GlueDatabase(
        logical_id="AnalyticsDatabase",
        env_var="CRM_GLUE_DATABASE",
        bucket="DataBucket",
        prefix=SNAPSHOT_PREFIX,
        tables=SNAPSHOT_TABLES,
    ),
)
WORKGROUPS: tuple[WorkGroup, ...] = (
    WorkGroup(
        logical_id="AnalyticsWorkGroup",
        env_var="CRM_ATHENA_WORKGROUP",
        bucket="DataBucket",
        results_prefix=ATHENA_RESULTS_PREFIX,
    ),
)

_WAITS = {
    "RetryIntervalSeconds": "stage:retry_interval",
    "DecisionTimeoutSeconds": "stage:decision_timeout",
    "ShipmentTimeoutSeconds": "stage:shipment_timeout",
    "DeliveryTimeoutSeconds": "stage:delivery_timeout",
    "DeliveryRecheckSeconds": "stage:delivery_recheck",
}

STATE_MACHINES: tuple[StateMachine, ...] = (
    # A paid order, from allocation to the customer's door.
    StateMachine(
        logical_id="OrderFulfilment",
        env_var="CRM_FULFILMENT_MACHINE",
        definition_file="order_fulfilment.asl.json",
        substitutions={"StepFunction": "function:fulfilment_step", **_WAITS},
    ),
    # What went wrong on the way: a case, a human decision (or the default), and its outcome.
    StateMachine(
        logical_id="OrderException",
        env_var="CRM_EXCEPTION_MACHINE",
        definition_file="order_exception.asl.json",
        substitutions={"StepFunction": "function:exception_step", **_WAITS},
    ),
    # Money, stock and notice for one refund.
    StateMachine(
        logical_id="OrderRefund",
        env_var="CRM_REFUND_MACHINE",
        definition_file="refund.asl.json",
        substitutions={"StepFunction": "function:refund_step", **_WAITS},
    ),
    # A dropped file, chunk after chunk (each one Lambda invocation that checkpoints), then the
    # report, the error file and the archive.
    StateMachine(
        logical_id="FileImport",
        env_var="CRM_IMPORT_MACHINE",
        definition_file="file_import.asl.json",
        substitutions={"StepFunction": "function:import_step", **_WAITS},
    ),
)

# Values that differ between the cloud and the local stack, used by `stage:<key>` substitutions
# (wait durations are days in the cloud and seconds locally).
STAGE_SETTINGS: dict[str, dict[str, object]] = {
    "local": {
        "retry_interval": 1,
        "decision_timeout": 30,
        "shipment_timeout": 3600,
        "delivery_timeout": 3600,
        "delivery_recheck": 5,
    },
    "prod": {
        "retry_interval": 2,
        "decision_timeout": 3 * 24 * 3600,
        "shipment_timeout": 7 * 24 * 3600,
        "delivery_timeout": 21 * 24 * 3600,
        # How long a delivery report waits for a contradicting one sent back to back.
        "delivery_recheck": 300,
    },
}


Resource = Table | Bucket | Topic | Queue | StateMachine | GlueDatabase | WorkGroup


def all_resources() -> list[Resource]:
    """Everything the template declares. The local stack provisions the tables, buckets,
    topics, queues and state machines; Glue and Athena have no local stand-in but DuckDB
    (`crm_analytics.sql.run_duckdb`), so the local stack leaves them out."""
    return [*TABLES, *BUCKETS, *TOPICS, *QUEUES, *STATE_MACHINES, *GLUE_DATABASES, *WORKGROUPS]
