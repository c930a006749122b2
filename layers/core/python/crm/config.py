"""Typed settings from the environment, read once per cold start.

A missing or malformed variable fails the cold start with every problem listed, instead of
failing the first request that happens to need it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache


class ConfigError(RuntimeError):
    """The environment does not describe a runnable stage."""


# Stages that may run the placeholders (the local payment provider, the example sender) and
# the fault switch: the local stack, and `test`, a cloud stage for fault drills that serves no
# real customer (docs/decisions.md). Every other stage serves a shop.
TEST_STAGES = frozenset({"local", "test"})
LOCAL_STAGE = "local"
PLACEHOLDER_PAYMENTS = "local"
# RFC 2606 / 6761: names that can never receive mail.
_EXAMPLE_DOMAINS = re.compile(
    r"(^|\.)(example|invalid|test|localhost)$|(^|\.)example\.(com|net|org)$"
)

# Local-stack defaults from the public contract; never used outside the local stage.
LOCAL_SECRET_DEFAULTS = {
    "operator_token": "local-operator-token",
    "shopify_secret": "local-shopify-secret",
    "webhook_secret": "local-webhook-secret",
    # Carriers sign their callbacks with a secret of their own: a carrier that holds it
    # cannot forge an order, and one that leaks it cannot forge anything but tracking.
    "logistics_secret": "local-logistics-secret",
}


@dataclass(frozen=True)
class Settings:
    stage: str
    customers_table: str
    identities_table: str
    orders_table: str
    deliveries_table: str
    ledger_table: str
    inventory_table: str
    cases_table: str
    notifications_table: str
    imports_table: str
    fulfilment_machine: str
    exception_machine: str
    refund_machine: str
    import_machine: str
    drop_bucket: str
    data_bucket: str
    ops_topic: str
    events_queue: str
    default_country: str
    currency: str
    secrets_source: str  # "env" or "ssm:<parameter path prefix>"
    max_body_bytes: int = 256 * 1024
    # Rows one invocation of the import works through before handing over to the next (it
    # also stops early when its Lambda is close to its time limit).
    import_chunk_rows: int = 200_000
    # The shop's calendar: the day of an order in segments and reports.
    timezone: str = "Asia/Shanghai"
    # Shop units per unit of another currency, for analytics (`CRM_EXCHANGE_RATES`,
    # `USD=7.1,EUR=7.8`); an order in a currency without a rate is left out and counted.
    exchange_rates: tuple[tuple[str, str], ...] = ()
    # The function that runs jobs, previews and reports (`crm_analytics`); by default the
    # stage's own `analytics` function.
    analytics_function: str = ""

    @property
    def is_local(self) -> bool:
        return self.stage == "local"


_REQUIRED = {
    "stage": "CRM_STAGE",
    "customers_table": "CRM_CUSTOMERS_TABLE",
    "identities_table": "CRM_IDENTITIES_TABLE",
    "orders_table": "CRM_ORDERS_TABLE",
    "deliveries_table": "CRM_DELIVERIES_TABLE",
    "ledger_table": "CRM_LEDGER_TABLE",
    "inventory_table": "CRM_INVENTORY_TABLE",
    "cases_table": "CRM_CASES_TABLE",
    "notifications_table": "CRM_NOTIFICATIONS_TABLE",
    "imports_table": "CRM_IMPORTS_TABLE",
    "fulfilment_machine": "CRM_FULFILMENT_MACHINE",
    "exception_machine": "CRM_EXCEPTION_MACHINE",
    "refund_machine": "CRM_REFUND_MACHINE",
    "import_machine": "CRM_IMPORT_MACHINE",
    "drop_bucket": "CRM_DROP_BUCKET",
    "data_bucket": "CRM_DATA_BUCKET",
    "ops_topic": "CRM_OPS_TOPIC",
    "events_queue": "CRM_EVENTS_QUEUE",
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    problems: list[str] = []
    values: dict[str, object] = {}
    for field_name, var in _REQUIRED.items():
        value = env.get(var, "").strip()
        if not value:
            problems.append(f"{var} is not set")
        values[field_name] = value

    country = env.get("CRM_DEFAULT_COUNTRY", "CN").strip().upper()
    if len(country) != 2 or not country.isalpha():
        problems.append(f"CRM_DEFAULT_COUNTRY must be an ISO 3166 alpha-2 code, not {country!r}")
    currency = env.get("CRM_CURRENCY", "CNY").strip().upper()
    if len(currency) != 3 or not currency.isalpha():
        problems.append(f"CRM_CURRENCY must be an ISO 4217 code, not {currency!r}")
    secrets_source = env.get("CRM_SECRETS_SOURCE", "env").strip()
    if secrets_source != "env" and not secrets_source.startswith("ssm:/"):
        problems.append("CRM_SECRETS_SOURCE must be 'env' or 'ssm:/<path>/'")
    try:
        max_body = int(env.get("CRM_MAX_BODY_BYTES", str(256 * 1024)))
    except ValueError:
        problems.append("CRM_MAX_BODY_BYTES must be an integer")
        max_body = 0
    try:
        chunk_rows = int(env.get("CRM_IMPORT_CHUNK_ROWS", "200000"))
        if chunk_rows < 1:
            raise ValueError
    except ValueError:
        problems.append("CRM_IMPORT_CHUNK_ROWS must be a positive integer")
        chunk_rows = 0
    timezone = env.get("CRM_TIMEZONE", "Asia/Shanghai").strip()
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(timezone)
    except (ValueError, KeyError, OSError):
        problems.append(f"CRM_TIMEZONE must be an IANA time zone, not {timezone!r}")
    rates, rate_problem = parse_exchange_rates(env.get("CRM_EXCHANGE_RATES", ""), currency)
    if rate_problem:
        problems.append(rate_problem)
    stage = values.get("stage") or "local"
    analytics_function = (
        env.get("CRM_ANALYTICS_FUNCTION", "").strip() or f"shop-crm-{stage}-analytics"
    )
    problems += unsafe_outside_tests(env)
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))
    return Settings(
        default_country=country,
        currency=currency,
        secrets_source=secrets_source,
        max_body_bytes=max_body,
        import_chunk_rows=chunk_rows,
        timezone=timezone,
        exchange_rates=rates,
        analytics_function=analytics_function,
        **values,  # type: ignore[arg-type]
    )


_RATE = re.compile(r"^([A-Z]{3})=(\d{1,9}(?:\.\d{1,9})?)$")


def parse_exchange_rates(
    text: str, currency: str
) -> tuple[tuple[tuple[str, str], ...], str | None]:
    """`USD=7.1,EUR=7.8` as `(("EUR", "7.8"), ("USD", "7.1"))` (decimal text: money is never a
    float), or the problem with it."""
    rates: dict[str, str] = {}
    for part in filter(None, (p.strip().upper() for p in text.split(","))):
        match = _RATE.match(part)
        if not match or Decimal(match.group(2)) <= 0 or match.group(1) == currency:
            return (), (
                "CRM_EXCHANGE_RATES must be CODE=RATE pairs (shop units per unit of another "
                f"currency, e.g. USD=7.1,EUR=7.8), not {part!r}"
            )
        rates[match.group(1)] = match.group(2)
    return tuple(sorted(rates.items())), None


def is_example_address(address: str) -> bool:
    domain = address.rpartition("@")[2].strip().lower().rstrip(".")
    return not domain or bool(_EXAMPLE_DOMAINS.search(domain))


def unsafe_outside_tests(env: Mapping[str, str], *, at_build: bool = False) -> list[str]:
    """Why this environment may not serve a shop's customers: the local stage in the cloud,
    or, outside the test stages, the placeholder payment provider or an example sender. A
    missing sender only matters in Lambda: the build asks for it as a template parameter."""
    stage = env.get("CRM_STAGE", "").strip()
    problems: list[str] = []
    in_lambda = env.get("AWS_EXECUTION_ENV", "").startswith("AWS_Lambda_")
    if stage == LOCAL_STAGE and (at_build or in_lambda):
        problems.append(
            "the local stage is the local stack's (its secrets are public defaults): "
            "build or run another stage in the cloud"
        )
    if stage in TEST_STAGES:
        return problems
    if env.get("CRM_PAYMENTS", PLACEHOLDER_PAYMENTS).strip() == PLACEHOLDER_PAYMENTS:
        problems.append(
            f"CRM_PAYMENTS={PLACEHOLDER_PAYMENTS} is the placeholder provider, which pays "
            f"nothing back: stage {stage!r} needs a real one (manual: operations pay by hand)"
        )
    sender = env.get("CRM_SENDER_EMAIL", "").strip()
    if sender and is_example_address(sender):
        problems.append(f"CRM_SENDER_EMAIL {sender!r} is an example address")
    elif not sender and in_lambda:
        problems.append("CRM_SENDER_EMAIL is not set (the shop's sending address)")
    return problems


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def get_secret(name: str) -> str:
    """A secret by its short name (`operator_token`, `shopify_secret`, `webhook_secret`,
    `logistics_secret`).

    Locally it comes from `CRM_<NAME>` with the contract's defaults; in the cloud from SSM
    Parameter Store (SecureString), cached for five minutes so a rotation reaches every warm
    function within that time.
    """
    settings = get_settings()
    if settings.secrets_source == "env":
        value = os.environ.get(f"CRM_{name.upper()}")
        if value:
            return value
        if settings.is_local and name in LOCAL_SECRET_DEFAULTS:
            return LOCAL_SECRET_DEFAULTS[name]
        raise ConfigError(f"secret {name} is not configured (CRM_{name.upper()})")
    from aws_lambda_powertools.utilities import parameters

    prefix = settings.secrets_source.removeprefix("ssm:")
    value = parameters.get_parameter(prefix + name, decrypt=True, max_age=300)
    return str(value)


_PREVIOUS_MAX_AGE = 300.0
# SSM lookups of an absent `_previous` parameter, remembered like Powertools caches the found
# ones, so a stage with no rotation in progress does not call SSM on every webhook.
_previous_absent_until: dict[str, float] = {}


def get_secrets(name: str) -> list[str]:
    """Every secret currently valid for `name`: the current one, then the previous one if set.

    Why: rotating a webhook secret cannot be atomic, because the sending platform switches to
    the new secret on its own schedule. So a rotation sets the new secret as current
    (`<name>`) and keeps the old one as `<name>_previous` until the platform has switched, then
    removes `_previous`. Signatures under either are accepted meanwhile.

    Locally the previous secret is `CRM_<NAME>_PREVIOUS` (no default); in the cloud the SSM
    parameter `<prefix><name>_previous`, whose absence means "no previous secret".
    """
    current = get_secret(name)
    previous = _get_previous_secret(name)
    if previous and previous != current:
        return [current, previous]
    return [current]


def _get_previous_secret(name: str) -> str | None:
    settings = get_settings()
    previous_name = f"{name}_previous"
    if settings.secrets_source == "env":
        return os.environ.get(_env_name(previous_name)) or None
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    prefix = settings.secrets_source.removeprefix("ssm:")
    key = prefix + previous_name
    if _previous_absent_until.get(key, 0.0) > time.monotonic():
        return None
    try:
        value = parameters.get_parameter(key, decrypt=True, max_age=int(_PREVIOUS_MAX_AGE))
    except GetParameterError:
        # Powertools wraps every failure (ParameterNotFound included) in GetParameterError.
        # Without a previous secret only the current one is accepted, which is the safe side.
        _remember_absent(key)
        return None
    _previous_absent_until.pop(key, None)
    return str(value) or None


# Keys remembered as absent, at most: source names come from unauthenticated bodies, so the
# memory of what is absent must not grow with whatever a caller invents.
_MAX_ABSENT_KEYS = 1024


def _remember_absent(key: str) -> None:
    now = time.monotonic()
    if len(_previous_absent_until) >= _MAX_ABSENT_KEYS:
        for stale in [k for k, until in _previous_absent_until.items() if until <= now]:
            del _previous_absent_until[stale]
        if len(_previous_absent_until) >= _MAX_ABSENT_KEYS:
            _previous_absent_until.clear()  # forgetting an absence costs one more lookup only
    _previous_absent_until[key] = now + _PREVIOUS_MAX_AGE


# A webhook source (crm.domain.identity's external id sources): safe in an environment
# variable's name (after `-` -> `_`) and in an SSM parameter's.
_SOURCE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def get_source_secrets(name: str, source: str) -> list[str] | None:
    """The secrets of one source, when it has its own: `<name>_<source>`, then its
    `_previous` (rotation as in `get_secrets`); None when it has none, and then the caller
    uses `get_secrets(name)`.

    Locally `CRM_<NAME>_<SOURCE>` (upper-cased, `-` -> `_`) and `..._PREVIOUS`, no defaults; in
    the cloud the SSM parameter `<prefix><name>_<source>`, whose absence is remembered for five
    minutes: a source without a secret of its own costs one SSM read per warm function every
    five minutes, not one per request. Any other failure to read it raises `Unavailable`:
    falling back to the shared secret then would accept what the source's own secret forbids.

    A source whose name could be read as a rotation's `_previous` (`previous`, `..._previous`)
    cannot have a secret of its own: its name would be another secret's previous one.
    """
    if not _SOURCE_NAME.fullmatch(source) or _env_name(source).endswith("_PREVIOUS"):
        return None
    own_name = f"{name}_{source}"
    own = _get_optional_secret(own_name)
    if own is None:
        return None
    previous = _get_previous_secret(own_name)
    return [own, previous] if previous and previous != own else [own]


def _env_name(name: str) -> str:
    return "CRM_" + name.upper().replace("-", "_")


def _get_optional_secret(name: str) -> str | None:
    settings = get_settings()
    if settings.secrets_source == "env":
        return os.environ.get(_env_name(name)) or None
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    key = settings.secrets_source.removeprefix("ssm:") + name
    if _previous_absent_until.get(key, 0.0) > time.monotonic():
        return None
    try:
        value = parameters.get_parameter(key, decrypt=True, max_age=int(_PREVIOUS_MAX_AGE))
    except GetParameterError as error:
        if not _parameter_not_found(error):
            from crm.domain.errors import Unavailable

            raise Unavailable("the secrets store could not be read; retry later") from error
        _remember_absent(key)
        return None
    _previous_absent_until.pop(key, None)
    return str(value) or None


def _parameter_not_found(error: Exception) -> bool:
    """Powertools re-raises every SSM failure as GetParameterError inside its `except`, so
    the SSM error is the context; only `ParameterNotFound` means absent."""
    from botocore.exceptions import ClientError

    cause = error.__cause__ or error.__context__
    return isinstance(cause, ClientError) and (
        cause.response.get("Error", {}).get("Code") == "ParameterNotFound"
    )


_faults_cache: tuple[float, frozenset[str]] | None = None
FAULT_SWITCH = "CRM_FAULT_SWITCH"


def injected_faults() -> frozenset[str]:
    """Workflow steps told to fail, for fault-injection tests: the SSM parameter
    `/crm/<stage>/faults` holds a comma-separated list such as `fulfilment.allocate`. Kept for
    1 s locally and 60 s in the cloud, absence included (Powertools does not cache a missing
    parameter, and every workflow step asks). Outside the test stages, or unless
    `CRM_FAULT_SWITCH=on` (the fault tests arm it): none, never read."""
    global _faults_cache
    settings = get_settings()
    if settings.stage not in TEST_STAGES or os.environ.get(FAULT_SWITCH) != "on":
        # The switch does not exist outside the test stages, and is armed in them only for
        # fault tests (`CRM_FAULT_SWITCH=on`): an order's steps pay no SSM read otherwise.
        return frozenset()
    now = time.monotonic()
    if _faults_cache is not None and _faults_cache[0] > now:
        return _faults_cache[1]
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    max_age = 1 if settings.is_local else 60
    try:
        value = parameters.get_parameter(f"/crm/{settings.stage}/faults", max_age=max_age)
        faults = frozenset(p.strip() for p in str(value).split(",") if p.strip())
    except GetParameterError:
        faults = frozenset()
    _faults_cache = (now + max_age, faults)
    return faults
