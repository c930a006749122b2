"""The segmentation of a whole shop as of a date, from the snapshot's frames: every built-in
segment (lifecycle, value band, RFM group), every rule segment, and the predictions, as what
each customer's profile should hold (`analytics`), with each segment's members.

Pure over frames: reading and writing are the job's (`crm_analytics.jobs`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from itertools import compress
from typing import Any

import numpy as np
import pandas as pd

from crm.domain.money import to_decimal_string
from crm.domain.segment_rules import LIFECYCLE_STAGES, RFM_GROUPS, RFM_SEGMENTS, VALUE_BANDS
from crm_analytics import clv, rules
from crm_analytics.segments import Thresholds, counted_orders, segment

PREDICTION_DECIMALS = 4
DEFAULT_THRESHOLDS = Thresholds()


@dataclass
class Outcome:
    as_of: date
    # Per active customer (index `customer_id`): the RFM columns (`r`, `f`, `m`, `group`,
    # `recency_days`, `frequency`, `monetary`; NA without a counted order), the predictions
    # (`p_p_alive`, `p_expected_orders_90d`, `p_clv_12m`) and `segments` (names, sorted).
    profiles: pd.DataFrame
    members: dict[str, list[str]]
    revenue: dict[str, int]  # money kept in the window by each segment's members
    total_revenue: int
    models: dict[str, Any] = field(default_factory=dict)


def rule_frame(customers: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """The documented rule fields of every customer (`crm.domain.segment_rules.FIELDS`):
    profile fields from the snapshot, scores from this run."""
    frame = customers.set_index("customer_id").rename(
        columns={"consents_email": "consents.email", "consents_sms": "consents.sms"}
    )
    frame["tags"] = frame["tags"].map(lambda v: list(v) if v is not None else [])
    joined = scores.reindex(frame.index)
    for name in ("r", "f", "m", "recency_days"):
        frame[name] = joined[name].astype("Int64").astype(object).where(joined[name].notna(), None)
    frame["rfm_group"] = joined["group"].where(joined["group"].notna(), None)
    frame["lifecycle"] = joined["lifecycle"].where(joined["lifecycle"].notna(), None)
    frame["value_band"] = joined["value_band"].where(joined["value_band"].notna(), None)
    return frame


def compute(
    orders: pd.DataFrame,
    customers: pd.DataFrame,
    as_of: date,
    *,
    rule_segments: dict[str, Any] | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    models: tuple[clv.BgNbd, clv.GammaGamma] | None = None,
    sample: int = 200_000,
    scores: pd.DataFrame | None = None,
) -> Outcome:
    """`orders`: the snapshot's orders of active customers; `customers`: the active customers.
    `rule_segments`: name -> parsed rule. `models`: fitted models to reuse (a re-run of the
    same day scores with the day's models, so what did not change is not rewritten).
    `scores`: the RFM, lifecycle and value band already computed as SQL (Athena or DuckDB,
    `crm_analytics.sql`), in `segment`'s shape; computed here with pandas otherwise."""
    customer_ids = pd.Index(customers["customer_id"], name="customer_id")
    if scores is None:
        scores = segment(orders, as_of, thresholds)
    scores = scores[scores.index.isin(customer_ids)]
    counted = counted_orders(orders, as_of)
    counted = counted[counted["customer_id"].isin(customer_ids)]

    members: dict[str, list[str]] = {}
    for name in LIFECYCLE_STAGES:
        members[name] = sorted(scores.index[scores["lifecycle"] == name])
    for name in VALUE_BANDS:
        members[name] = sorted(scores.index[scores["value_band"] == name])
    for group, name in zip(RFM_GROUPS, RFM_SEGMENTS, strict=True):
        members[name] = sorted(scores.index[scores["group"] == group])
    if rule_segments:
        frame = rule_frame(customers, scores)
        for name, rule in sorted(rule_segments.items()):
            members[name] = sorted(frame.index[rules.mask(rule, frame)])

    predicted, fitted = _predictions(counted, as_of, models, sample)

    window = scores["window_monetary"]
    revenue = {name: int(window.reindex(ids).fillna(0).sum()) for name, ids in members.items()}
    profiles = pd.DataFrame(index=customer_ids)
    profiles = profiles.join(
        scores[["r", "f", "m", "group", "recency_days", "frequency", "monetary"]]
    )
    profiles = profiles.join(predicted.rename(columns=lambda c: f"p_{c}"))
    profiles["segments"] = memberships(customer_ids, members)
    return Outcome(
        as_of=as_of,
        profiles=profiles,
        members=members,
        revenue=revenue,
        total_revenue=int(window.sum()),
        models=fitted,
    )


def memberships(customer_ids: pd.Index, members: dict[str, list[str]]) -> pd.Series:
    """Each customer's segments as a tuple of names in sorted order, `()` for none.

    One boolean column per segment, packed to bits: the tuples are built once per distinct
    combination of segments (a shop has a few hundred at most), not once per customer."""
    names = sorted(members)
    if not names or len(customer_ids) == 0:
        return pd.Series([()] * len(customer_ids), index=customer_ids, dtype=object)
    held = np.zeros((len(customer_ids), len(names)), dtype=bool)
    for column, name in enumerate(names):
        if customer_ids.is_unique:  # the index's own hash table, built once
            at = customer_ids.get_indexer(members[name])
            held[at[at >= 0], column] = True
        else:
            held[:, column] = customer_ids.isin(members[name])
    packed = np.packbits(held, axis=1)
    if packed.shape[1] <= 8:  # up to 64 segments: one integer per customer
        words = np.zeros((len(packed), 8), dtype=np.uint8)
        words[:, : packed.shape[1]] = packed
        keys, which = np.unique(words.view(np.uint64).reshape(-1), return_inverse=True)
        combinations = keys.reshape(-1, 1).view(np.uint8)[:, : packed.shape[1]]
    else:
        combinations, which = np.unique(packed, axis=0, return_inverse=True)
    flags = np.unpackbits(combinations, axis=1, count=len(names)).tolist()
    tuples = np.empty(len(combinations), dtype=object)
    tuples[:] = [tuple(compress(names, row)) for row in flags]  # one per combination
    return pd.Series(tuples[which.reshape(-1)], index=customer_ids, dtype=object)


def _predictions(
    counted: pd.DataFrame,
    as_of: date,
    models: tuple[clv.BgNbd, clv.GammaGamma] | None,
    sample: int,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    if counted.empty:
        return pd.DataFrame(columns=["p_alive", "expected_orders_90d", "clv_12m"]), {
            "reason": "no counted orders"
        }
    if models is not None:
        result = clv.score(counted, as_of, *models)
    else:
        result = clv.predict(counted, as_of, sample=sample)
    if result.bgnbd is None or result.gamma_gamma is None:
        return result.frame.iloc[0:0], {"reason": result.reason}
    return result.frame, {
        # Full precision: a re-run of the day scores with exactly these (JSON keeps a float's
        # every bit), so what did not change scores the same.
        "bgnbd": {k: float(v) for k, v in vars(result.bgnbd).items()},
        "gamma_gamma": {k: float(v) for k, v in vars(result.gamma_gamma).items()},
        "fitted_on": int(result.fitted_on),
    }


def analytics_texts(outcome: Outcome, currency: str) -> pd.Series:
    """What each profile's `analytics` should hold, as canonical JSON text (compared as text
    with what it holds: equal text, no write); empty text for nothing."""
    p = outcome.profiles
    scored = p["r"].notna().to_numpy()
    predicted = p["p_p_alive"].notna().to_numpy() if "p_p_alive" in p else np.zeros(len(p), bool)
    texts = []
    columns = [
        p[c].to_numpy() for c in ("r", "f", "m", "group", "recency_days", "frequency", "monetary")
    ]
    if predicted.any():
        alive = p["p_p_alive"].to_numpy(dtype="float64", na_value=np.nan)
        expected = p["p_expected_orders_90d"].to_numpy(dtype="float64", na_value=np.nan)
        value = p["p_clv_12m"].to_numpy(dtype="float64", na_value=np.nan)
    for i, segments in enumerate(p["segments"].to_numpy()):
        held: dict[str, Any] = {}
        if segments:
            held["segments"] = list(segments)
        if scored[i]:
            r, f, m, group, recency, frequency, monetary = (col[i] for col in columns)
            held["rfm"] = {
                "r": int(r),
                "f": int(f),
                "m": int(m),
                "group": str(group),
                "recency_days": int(recency),
                "frequency": int(frequency),
                "monetary": to_decimal_string(int(monetary), currency),
            }
        if predicted[i]:
            held["predicted"] = {
                "p_alive": round(float(alive[i]), PREDICTION_DECIMALS),
                "expected_orders_90d": round(float(expected[i]), PREDICTION_DECIMALS),
                "clv_12m": to_decimal_string(int(value[i]), currency),
            }
        texts.append(json.dumps(held, sort_keys=True) if held else "")
    return pd.Series(texts, index=p.index, dtype=object)
