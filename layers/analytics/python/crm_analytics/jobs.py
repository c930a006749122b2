"""The analytics function's work: the segmentation job, rule previews, and the snapshot's part
in an erasure. Each reads the tables or the snapshot, computes with pandas, and writes through
the core's stores and adapters."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from crm.adapters import events, s3
from crm.config import get_settings
from crm.domain.errors import ValidationFailed
from crm.domain.loyalty import Program
from crm.domain.segment_rules import LIFECYCLE_STAGES, VALUE_BANDS, parse_rule
from crm.store import segments as segment_store
from crm.store.customers import get_customer_repository
from crm_analytics import clv, snapshot
from crm_analytics.segmentation import Outcome, facts, finish, payloads, rule_frame

log = logging.getLogger("crm.analytics")
MODELS_PREFIX = "analytics/models/"
WRITERS = 16  # concurrent UpdateItems of the write-back
SAMPLE_SIZE = 10


def _program() -> Program:
    return Program(currency=get_settings().currency)


def rule_segments(currency: str) -> dict[str, Any]:
    """name -> parsed rule of every stored rule segment (a definition that no longer parses,
    after a change of the rule language, is left out and logged, not fatal)."""
    parsed = {}
    for definition in segment_store.definitions():
        try:
            parsed[definition["name"]] = parse_rule(definition["rule"], currency)
        except ValidationFailed:
            log.warning("rule segment no longer valid", extra={"segment": definition["name"]})
    return parsed


def _day_models(as_of: date) -> tuple[clv.BgNbd, clv.GammaGamma] | None:
    stored = s3.get_json(get_settings().data_bucket, f"{MODELS_PREFIX}{as_of.isoformat()}.json")
    if not isinstance(stored, dict) or "bgnbd" not in stored:
        return None
    return clv.BgNbd(**stored["bgnbd"]), clv.GammaGamma(**stored["gamma_gamma"])


def segmentation(as_of: date, run_id: str | None = None) -> dict[str, Any]:
    """The nightly job: snapshot, segments and predictions, the profiles' write-back (only
    what changed), membership files, one event per membership change, and the run's record."""
    settings = get_settings()
    taken = snapshot.take(as_of, settings, _program())
    files = snapshot.write(taken, settings.data_bucket)
    models = _day_models(as_of)
    engine = scoring_engine(int(pc.sum(taken.orders["customer_active"]).as_py() or 0))
    rules = rule_segments(settings.currency)
    if engine == "sql":
        found = sql_facts(as_of, rules)
    else:
        orders, customers = snapshot.frames(taken)
        found = facts(orders, customers, as_of, rule_segments=rules)
        del orders, customers
    sizes = {"customers": taken.customers.num_rows, "orders": taken.orders.num_rows}
    left_out = taken.left_out
    del taken  # the facts are all the rest needs
    outcome = finish(found, as_of, sorted(rules), models=models)
    if models is None and "bgnbd" in outcome.models:
        s3.put_json(
            settings.data_bucket, f"{MODELS_PREFIX}{as_of.isoformat()}.json", outcome.models
        )
    written = write_back(outcome, settings.currency, run_id)
    record(outcome, run_id)
    return {
        "as_of": as_of.isoformat(),
        **sizes,
        "orders_left_out": left_out,
        "snapshot_files": files,
        "segments": {name: len(ids) for name, ids in outcome.members.items()},
        "models": outcome.models if "reason" in outcome.models else _rounded(outcome.models),
        "models_reused": models is not None,
        "engine": engine,
        **written,
    }


def scoring_engine(orders: int) -> str:
    """`pandas` in the function's memory, or `sql` (Athena over the snapshot; DuckDB stands in
    locally) past `CRM_ANALYTICS_SQL_ABOVE` orders (docs/analytics.md); `CRM_ANALYTICS_ENGINE`
    forces one."""
    import os

    forced = os.environ.get("CRM_ANALYTICS_ENGINE", "auto")
    if forced in ("pandas", "sql"):
        return forced
    return "sql" if orders > int(os.environ.get("CRM_ANALYTICS_SQL_ABOVE", "5000000")) else "pandas"


def sql_facts(as_of: date, rules: dict[str, Any]) -> pd.DataFrame:
    """The facts of every active customer (`segmentation.facts`' frame) as one SQL query over
    the snapshot just written: on Athena over the Glue tables in the cloud; locally on DuckDB
    over a copy of the snapshot's orders and customers (moto's Athena answers without running
    SQL)."""
    import os

    from crm_analytics import sql

    settings = get_settings()
    if settings.is_local:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="crm-snapshot-") as root:
            snapshot.download(settings.data_bucket, root, ("orders", "customers"))
            return sql.facts_duckdb(root, as_of, rules=rules)
    database = os.environ["CRM_GLUE_DATABASE"]
    text = sql.facts_sql(
        sql.ACTIVE_ORDERS.format(table=f'"{database}"."orders"'),
        f'"{database}"."customers"',
        as_of,
        rules=rules,
    )
    return sql.as_facts(athena_runner()(text))


def athena_runner() -> Callable[[str], pd.DataFrame]:
    """Run a query on Athena in the stage's workgroup and Glue database."""
    import os

    from crm_analytics.athena import run_athena

    settings = get_settings()
    return lambda text: run_athena(
        text,
        database=os.environ["CRM_GLUE_DATABASE"],
        workgroup=os.environ["CRM_ATHENA_WORKGROUP"],
        output_location=f"s3://{settings.data_bucket}/athena-results/",
    )


def _rounded(models: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"fitted_on": models.get("fitted_on", 0)}
    for name in ("bgnbd", "gamma_gamma"):
        out[name] = {k: round(v, 4) for k, v in models[name].items() if k != "log_likelihood"}
    return out


def write_back(outcome: Outcome, currency: str, run_id: str | None) -> dict[str, int]:
    """Write each profile whose analytics changed (by digest: `Outcome.changed`) at the
    version the snapshot read (one more try at the version read again when the profile moved
    meanwhile), then publish its membership changes against what each write replaced.
    Nothing changed: no write and no event."""
    positions = np.flatnonzero(outcome.changed())
    values = payloads(outcome, positions, currency)
    profiles = outcome.profiles
    customer_ids = profiles.index.to_numpy(dtype=object)[positions]
    versions = profiles["version"].to_numpy()[positions]
    repo = get_customer_repository()

    def write(i: int) -> list[str] | None:
        """The segments the profile held until written; None when it was not written."""
        customer_id = customer_ids[i]
        held = repo.write_analytics(customer_id, values[i], int(versions[i]))
        if held is None:
            fresh = repo.get(customer_id)
            if fresh is None or fresh.status != "active" or fresh.version is None:
                return None
            held = repo.write_analytics(customer_id, values[i], fresh.version)
        return None if held is None else list(held.get("segments") or [])

    with ThreadPoolExecutor(WRITERS) as pool:
        replaced = list(pool.map(write, range(len(positions))))
    sent = []
    for i, old in enumerate(replaced):
        if old is None:
            continue
        new = values[i].get("segments", [])
        for kind, names in (
            ("segment_entered", sorted(set(new) - set(old))),
            ("segment_exited", sorted(set(old) - set(new))),
        ):
            sent += [
                {
                    "type": kind,
                    "customer_id": customer_ids[i],
                    "segment": name,
                    "as_of": outcome.as_of.isoformat(),
                    "run_id": run_id,
                }
                for name in names
            ]
    calls = events.publish(sent)
    written = sum(old is not None for old in replaced)
    return {
        "profiles_changed": len(positions),
        "profiles_written": written,
        "profiles_skipped": len(positions) - written,
        "segment_events": len(sent),
        "event_calls": calls,
    }


def record(outcome: Outcome, run_id: str | None) -> None:
    as_of = outcome.as_of.isoformat()
    run = {
        "as_of": as_of,
        "run_id": run_id,
        "total_revenue": outcome.total_revenue,
        "segments": {
            name: {
                "size": len(ids),
                "revenue": outcome.revenue[name],
                "members": segment_store.members_key(name, as_of),
            }
            for name, ids in outcome.members.items()
        },
        "models": outcome.models,
    }
    files = {name: "".join(f"{c}\n" for c in ids).encode() for name, ids in outcome.members.items()}
    segment_store.record_run(run, files)


def preview(rule: Any) -> dict[str, Any]:
    """A rule over the latest snapshot's customers, with the scores of the last run: how many
    it selects and a sample (the API refuses a preview before there is a snapshot)."""
    settings = get_settings()
    parsed = parse_rule(rule, settings.currency)
    as_of = snapshot.latest_date(settings.data_bucket)
    if as_of is None:
        raise LookupError("no analytics snapshot yet")
    customers = snapshot.read(settings.data_bucket, "customers")
    scores = _held_scores(customers)
    frame = rule_frame(customers, scores)
    from crm_analytics import rules

    selected = sorted(frame.index[rules.mask(parsed, frame)])
    return {
        "count": len(selected),
        "sample": [{"customer_id": c} for c in selected[:SAMPLE_SIZE]],
        "as_of": as_of.isoformat(),
    }


def _held_scores(customers: pd.DataFrame) -> pd.DataFrame:
    """The scores the last run wrote to each profile, in `segment`'s columns."""
    rows = {}
    for customer_id, text in zip(customers["customer_id"], customers["analytics"], strict=True):
        held = json.loads(text) if isinstance(text, str) and text else {}
        rfm = held.get("rfm")
        if rfm:
            segments = held.get("segments", [])
            rows[customer_id] = {
                "r": rfm["r"],
                "f": rfm["f"],
                "m": rfm["m"],
                "recency_days": rfm["recency_days"],
                "group": rfm["group"],
                "lifecycle": next((s for s in segments if s in _LIFECYCLE), None),
                "value_band": next((s for s in segments if s in _BANDS), None),
            }
    columns = ["r", "f", "m", "recency_days", "group", "lifecycle", "value_band"]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


_LIFECYCLE = frozenset(LIFECYCLE_STAGES)
_BANDS = frozenset(VALUE_BANDS)


def scrub(customer_ids: list[str]) -> dict[str, int]:
    """Erasure's reach into the snapshot: every customers file that names these people is
    rewritten without them."""
    return {"files_rewritten": snapshot.scrub(get_settings().data_bucket, set(customer_ids))}
