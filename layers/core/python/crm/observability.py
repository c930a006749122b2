"""Logger, Metrics and Tracer for every function, and the one place personal data is masked.

Every log line goes through `MaskingFormatter`, so a careless `logger.info(profile)` still
cannot leak an email, a phone number, a name, a birthday or an address.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
    AmazonCloudWatchEMFProvider,
)

REDACTED = "***"

# Keys whose values are personal data wherever they appear in a structured log record.
PERSONAL_KEYS = frozenset(
    {
        "email",
        "phone",
        "first_name",
        "last_name",
        "name",
        "full_name",
        "birthday",
        "address",
        "addresses",
        "line1",
        "line2",
        "address1",
        "address2",
        "zip",
        "city",
        "province",
        "shipping_address",
        "billing_address",
        "customer",
        "latitude",
        "longitude",
    }
)

_EMAIL = re.compile(r"[^\s@\"'<>(),;:]+@[^\s@\"'<>(),;:]+\.[A-Za-z]{2,}")
# Seven or more digits, optionally grouped by spaces, dots or dashes, optionally with a '+':
# covers E.164 and the usual local ways of writing a phone number.
# Not inside an identifier: `ord_shopify_5012345678901` or `cus_…` ids must stay readable.
_PHONE = re.compile(r"(?<![\w-])\+?\d(?:[\s.\-]?\d){6,}")


def mask_text(text: str) -> str:
    return _PHONE.sub(REDACTED, _EMAIL.sub(REDACTED, text))


def mask_personal_data(value: Any, _key: str | None = None) -> Any:
    """A copy of `value` with personal data replaced by `***`, recursively."""
    if _key is not None and _key.lower() in PERSONAL_KEYS and value not in (None, "", [], {}):
        return REDACTED
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_personal_data(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [mask_personal_data(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    # Anything else (an exception object, a dataclass) would be str()-ed by the serializer.
    return mask_text(str(value))


class MaskingFormatter(LambdaPowertoolsFormatter):
    # Structural keys Powertools adds itself; masking them would only hide useful context.
    _SAFE = frozenset(
        {
            "level",
            "location",
            "timestamp",
            "service",
            "xray_trace_id",
            "cold_start",
            "function_name",
            "function_memory_size",
            "function_arn",
            "function_request_id",
            "correlation_id",
            "sampling_rate",
        }
    )

    def serialize(self, log: dict[str, Any]) -> str:  # type: ignore[override]
        masked = {k: (v if k in self._SAFE else mask_personal_data(v, k)) for k, v in log.items()}
        return super().serialize(masked)


# The stage's environment names them (POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE);
# the defaults are the same names, so a process that imported this before its environment was
# set (a test run, a tool) still has a namespace: without one, the 100th metric fails to flush.
logger = Logger(
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", "crm"),
    logger_formatter=MaskingFormatter(),
)


class _LockedEMFProvider(AmazonCloudWatchEMFProvider):
    """Powertools' EMF provider with every use of its metric set behind one lock. A Lambda
    process runs one invocation at a time, but the local stack serves requests and runs
    asynchronous invocations on threads of one process: there, one request's flush could
    clear the shared set between another's check that it is not empty and its serialising,
    which raised "Must contain at least one metric" (a 500 to a webhook) one time in a
    thousand."""

    _lock = threading.RLock()

    def add_metric(self, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            super().add_metric(*args, **kwargs)

    def add_dimension(self, name: str, value: str) -> None:
        with self._lock:
            super().add_dimension(name, value)

    def add_metadata(self, key: str, value: Any) -> None:
        with self._lock:
            super().add_metadata(key, value)

    def serialize_metric_set(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return super().serialize_metric_set(*args, **kwargs)

    def clear_metrics(self) -> None:
        with self._lock:
            super().clear_metrics()

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        with self._lock:
            super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)


# The sets are Metrics' own class-level ones, as Powertools' default provider shares them.
metrics = Metrics(
    provider=_LockedEMFProvider(
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "ShopCRM"),
        service=os.environ.get("POWERTOOLS_SERVICE_NAME", "crm"),
        metric_set=Metrics._metrics,
        dimension_set=Metrics._dimensions,
        metadata_set=Metrics._metadata,
        default_dimensions=Metrics._default_dimensions,
    )
)


def get_tracer() -> Any:
    """The Tracer, built on first use: X-Ray's SDK is only loaded where tracing is on."""
    global _tracer
    if _tracer is None:
        from aws_lambda_powertools import Tracer

        _tracer = Tracer()
    return _tracer


_tracer: Any = None
