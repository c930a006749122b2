"""Reports as the API serves them: the query checked here, the numbers computed by the
analytics function over the latest snapshot (pandas, reached through Lambda)."""

from __future__ import annotations

from datetime import date
from typing import Any

from crm.adapters import lambdas
from crm.config import get_settings
from crm.domain.errors import NotFound, ValidationFailed
from crm.services.jobs import parse_as_of

REPORTS = ("sales", "customers", "loyalty", "segments")
GRANULARITIES = ("day", "week", "month")
FORMATS = ("json", "csv")
# A day-by-day report of more than ten years is a mistake, not a question.
MAX_DAYS = 3660
ALLOWED = {
    "sales": {"from", "to", "granularity", "format"},
    "customers": {"as_of", "format"},
    "loyalty": {"from", "to", "format"},
    "segments": {"format"},
}
DOCUMENTED = set().union(*ALLOWED.values())


def _problem(field: str, issue: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details=[{"field": field, "issue": issue}])


def report(name: str, params: dict[str, str]) -> dict[str, Any]:
    if name not in REPORTS:
        raise NotFound(f"report {name} does not exist", extra={"reports": list(REPORTS)})
    # A documented parameter another report takes is ignored; anything else is a mistake.
    unknown = sorted(set(params) - DOCUMENTED)
    if unknown:
        raise ValidationFailed(
            "unknown query parameter",
            details=[{"field": f, "issue": "unknown_parameter"} for f in unknown],
        )
    fmt = params.get("format", "json")
    if fmt not in FORMATS:
        raise _problem("format", "unknown_value", "format is json or csv")
    clean: dict[str, Any] = {"format": fmt}
    if name == "sales":
        granularity = params.get("granularity", "day")
        if granularity not in GRANULARITIES:
            raise _problem("granularity", "unknown_value", "granularity is day, week or month")
        clean["granularity"] = granularity
    if "from" in ALLOWED[name]:
        start = parse_as_of(params.get("from"), field="from")
        end = parse_as_of(params.get("to"), field="to")
        if name == "sales" and (start is None or end is None):
            raise _problem(
                "from" if start is None else "to", "required", "from and to are required"
            )
        if start and end and start > end:
            raise _problem("to", "before_from", "to is before from")
        if start and end and (end - start).days > MAX_DAYS:
            raise _problem("to", "out_of_range", f"a report covers at most {MAX_DAYS} days")
        clean["from"] = start.isoformat() if start else None
        clean["to"] = end.isoformat() if end else None
    if "as_of" in ALLOWED[name]:
        as_of: date | None = parse_as_of(params.get("as_of"))
        clean["as_of"] = as_of.isoformat() if as_of else None
    if name != "segments":
        from crm.services.segments import require_snapshot

        require_snapshot()
    answer = lambdas.invoke(
        get_settings().analytics_function, {"task": "report", "report": name, "params": clean}
    )
    return dict(answer)
