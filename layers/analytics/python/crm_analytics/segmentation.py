"""The segmentation of a whole shop as of a date: every built-in segment (lifecycle, value
band, RFM group), every rule segment, and the predictions, as what each customer's profile
should hold (`analytics`), with each segment's members and a digest of each profile's part.

Two steps. The facts: one row per active customer with its scores (`segments.COLUMNS`), its
history for the models (`sql.HISTORY_COLUMNS`) and one boolean per rule segment, computed by
`facts` with pandas from the snapshot's frames, or by one SQL query over the snapshot's files
(`sql.facts_sql`: DuckDB here, Athena in the cloud) past a documented size; the two are held
equal by the tests. Then `finish`, the same for both: memberships, predictions and digests.

Pure over frames: reading and writing are the job's (`crm_analytics.jobs`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from itertools import compress
from typing import Any

import numpy as np
import pandas as pd

from crm.domain.money import to_decimal_string
from crm.domain.segment_rules import LIFECYCLE_STAGES, RFM_GROUPS, RFM_SEGMENTS, VALUE_BANDS
from crm_analytics import clv, rules
from crm_analytics.facts import Facts
from crm_analytics.segments import COLUMNS, Thresholds, counted_orders, segment
from crm_analytics.sql import HISTORY_COLUMNS

PREDICTION_DECIMALS = 4
DEFAULT_THRESHOLDS = Thresholds()
RFM_FIELDS = ("r", "f", "m", "group", "recency_days", "frequency", "monetary")
PREDICTED = ("p_alive", "expected_orders_90d", "clv_12m")
# What the digest covers changes with this: a new version rewrites every profile once.
DIGEST_VERSION = 1


@dataclass
class Outcome:
    as_of: date
    # Per active customer (index `customer_id`, in order): the RFM columns (`RFM_FIELDS`,
    # numbers as floats; NaN or None without a counted order), the predictions (`p_p_alive`,
    # `p_expected_orders_90d`, `p_clv_12m`, floats rounded as written; NaN without),
    # `segments` (names, sorted), `digest` (Int64, of what the profile should hold; NA for
    # nothing), and what the profile holds: `version` and `held_digest` (NA for none).
    profiles: pd.DataFrame
    members: dict[str, np.ndarray]  # name -> its members' ids (str), in customer order
    revenue: dict[str, int]  # money kept in the window by each segment's members
    total_revenue: int
    models: dict[str, Any] = field(default_factory=dict)

    def changed(self) -> np.ndarray:
        """Which profiles hold something else than they should (by digest)."""
        return changed(self.profiles["digest"], self.profiles["held_digest"])


def changed(new: pd.Series, held: pd.Series) -> np.ndarray:
    """A profile to write: its digest differs from the one it holds, one of the two being
    none (nothing to hold) only when the other is not."""
    new_none = new.isna().to_numpy()
    held_none = held.isna().to_numpy()
    both = ~new_none & ~held_none
    same = np.zeros(len(new), dtype=bool)
    same[both] = new.to_numpy()[both].astype(np.int64) == held.to_numpy()[both].astype(np.int64)
    return ~(same | (new_none & held_none))


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


def facts(
    orders: pd.DataFrame,
    customers: pd.DataFrame,
    as_of: date,
    *,
    rule_segments: dict[str, Any] | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> pd.DataFrame:
    """The facts with pandas (what `sql.facts_sql` gives, indexed by `customer_id`, in its
    order).

    `orders`: the snapshot's orders of active customers; `customers`: the active customers
    (the snapshot's customers frame). `rule_segments`: name -> parsed rule."""
    scores = segment(orders, as_of, thresholds)
    held = customers.set_index("customer_id")
    out = pd.DataFrame(index=held.index)
    out["version"] = held.get("version", 0)
    out["analytics_digest"] = held.get("analytics_digest")
    out = out.join(scores[list(COLUMNS)])
    counted = counted_orders(orders, as_of)
    out = out.join(clv.history(counted[counted["customer_id"].isin(held.index)], as_of))
    if rule_segments:
        frame = rule_frame(customers, scores)
        for i, (_, rule) in enumerate(sorted(rule_segments.items())):
            out[f"rule_{i}"] = rules.mask(rule, frame).to_numpy()
    return out.sort_index()


def compute(
    orders: pd.DataFrame,
    customers: pd.DataFrame,
    as_of: date,
    *,
    rule_segments: dict[str, Any] | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    models: tuple[clv.BgNbd, clv.GammaGamma] | None = None,
    sample: int = clv.SAMPLE_SIZE,
) -> Outcome:
    """`finish` of the pandas `facts`."""
    found = facts(orders, customers, as_of, rule_segments=rule_segments, thresholds=thresholds)
    return finish(found, as_of, sorted(rule_segments or {}), models=models, sample=sample)


def finish(
    found: pd.DataFrame | Facts,
    as_of: date,
    rule_names: list[str],
    *,
    models: tuple[clv.BgNbd, clv.GammaGamma] | None = None,
    sample: int = clv.SAMPLE_SIZE,
) -> Outcome:
    """From the facts (`facts`, or `sql.facts_sql`'s rows as `sql.as_facts` gives them; rule
    columns in the order of `rule_names`, which is sorted): the segments' members, the
    predictions (fitted on a sample, or with the day's `models`), and each profile's digest.

    The facts come in customer order (both give them so), and so do the member lists.
    Whole columns at once, by position: a shop of millions takes a second here."""
    customer_ids = found.index
    n = len(found)
    scored = found["r"].notna().to_numpy()

    masks: dict[str, np.ndarray] = {}
    group_codes = _codes(found["group"], RFM_GROUPS)
    for codes, labelled in (
        (_codes(found["lifecycle"], LIFECYCLE_STAGES), LIFECYCLE_STAGES),
        (_codes(found["value_band"], VALUE_BANDS), VALUE_BANDS),
        (group_codes, RFM_SEGMENTS),
    ):
        for k, name in enumerate(labelled):
            masks[name] = codes == k
    for i, name in enumerate(rule_names):
        masks[name] = found[f"rule_{i}"].to_numpy(dtype=bool)
    names = sorted(masks)
    ids = customer_ids.to_numpy(dtype=object)
    members = {name: ids[masks[name]] for name in names}

    window = _floats(found["window_monetary"], 0)
    window = np.where(scored, window, 0).astype(np.int64)
    revenue = {name: int(window[masks[name]].sum()) for name in names}

    # By position (the scored customers in order): the models need no customer id
    history = pd.DataFrame({name: _floats(found[name], 0)[scored] for name in HISTORY_COLUMNS})
    history["x"] = history["x"].astype(np.int64)
    predicted, fitted = _predictions(history, models, sample)

    # Every number as float64, NaN for none (whole numbers stay exact below 2^53), in one
    # two-dimensional block: the profiles' frame takes it as it is, without a copy.
    names_of_numbers = [name for name in RFM_FIELDS if name != "group"]
    names_of_numbers += [f"p_{name}" for name in PREDICTED]
    block = np.full((n, len(names_of_numbers)), np.nan, order="F")  # columns contiguous
    numbers = {name: block[:, k] for k, name in enumerate(names_of_numbers)}
    for name in RFM_FIELDS:
        if name != "group":
            numbers[name][:] = _floats(found[name], np.nan)
    at = np.flatnonzero(scored)
    for name in PREDICTED:
        if name in predicted and len(predicted):
            values = _floats(predicted[name], np.nan)
            if name != "clv_12m":
                values = np.round(values, PREDICTION_DECIMALS)  # as written, so as digested
            numbers[f"p_{name}"][at] = values
    combinations, which = _combinations(names, [masks[name] for name in names], n)
    digest = digests(numbers, group_codes, combinations, which)

    profiles = pd.DataFrame(block, index=customer_ids, columns=names_of_numbers, copy=False)
    profiles["group"] = found["group"].to_numpy(dtype=object)
    profiles["segments"] = combinations[which]
    profiles["digest"] = digest
    profiles["version"] = found["version"].to_numpy()
    profiles["held_digest"] = found["analytics_digest"].astype("Int64").array
    return Outcome(
        as_of=as_of,
        profiles=profiles,
        members=members,
        revenue=revenue,
        total_revenue=int(window.sum()),
        models=fitted,
    )


def _floats(column: pd.Series, missing: float) -> np.ndarray:
    """A column's values as float64, `missing` for none. From the column's array, not the
    Series: numpy looking for its protocols on a Series hashes the Series' index."""
    return np.asarray(column.array.to_numpy(dtype=np.float64, na_value=missing))


def _codes(column: pd.Series, labels: tuple[str, ...]) -> np.ndarray:
    """Each value's place in `labels`, -1 for none (a categorical column is recoded, not
    compared string by string)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.set_categories(list(labels)).cat.codes.to_numpy()
    return pd.Categorical(column.to_numpy(dtype=object), categories=list(labels)).codes


def _combinations(
    names: list[str], masks: list[np.ndarray], n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct combinations of segments as tuples of names (sorted as `names` is), and
    which one each customer holds. One boolean column per segment, packed to bits: the
    tuples are built once per distinct combination (a shop has a few hundred at most), not
    once per customer."""
    if not names or n == 0:
        nothing = np.empty(1, dtype=object)
        nothing[0] = ()
        return nothing, np.zeros(n, dtype=np.intp)
    if len(names) <= 64:  # one integer per customer, bit k for segment k; hashed, not sorted
        keys = np.zeros(n, dtype=np.uint64)
        bit = np.empty(n, dtype=np.uint64)  # one scratch column: fresh memory costs here
        for k, mask in enumerate(masks):
            np.copyto(bit, mask)
            bit <<= np.uint64(k)
            keys |= bit
        which, distinct = pd.factorize(keys)
        flags = [[bool(int(key) >> k & 1) for k in range(len(names))] for key in distinct]
    else:
        packed = np.packbits(np.stack(masks, axis=1), axis=1)
        combinations, which = np.unique(packed, axis=0, return_inverse=True)
        flags = np.unpackbits(combinations, axis=1, count=len(names)).astype(bool).tolist()
    tuples = np.empty(len(flags), dtype=object)
    tuples[:] = [tuple(compress(names, row)) for row in flags]  # one per combination
    return tuples, np.asarray(which).reshape(-1)


def _predictions(
    history: pd.DataFrame,
    models: tuple[clv.BgNbd, clv.GammaGamma] | None,
    sample: int,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    if history.empty:
        return pd.DataFrame(columns=list(PREDICTED)), {"reason": "no counted orders"}
    if models is not None:
        result = clv.score_history(history, *models)
    else:
        result = clv.predict_history(history, sample=sample)
    if result.bgnbd is None or result.gamma_gamma is None:
        return result.frame.iloc[0:0], {"reason": result.reason}
    return result.frame, {
        # Full precision: a re-run of the day scores with exactly these (JSON keeps a float's
        # every bit), so what did not change scores the same.
        "bgnbd": {k: float(v) for k, v in vars(result.bgnbd).items()},
        "gamma_gamma": {k: float(v) for k, v in vars(result.gamma_gamma).items()},
        "fitted_on": int(result.fitted_on),
    }


# -- what each profile holds ---------------------------------------------------------------------

ODD = np.uint64(0x100000001B3 | 0x9E3779B97F4A7C15)  # odd: multiplying is a bijection


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, element-wise and in place (wrapping uint64 arithmetic)."""
    shifted = z >> np.uint64(30)
    z ^= shifted
    z *= np.uint64(0xBF58476D1CE4E5B9)
    np.right_shift(z, np.uint64(27), out=shifted)
    z ^= shifted
    z *= np.uint64(0x94D049BB133111EB)
    np.right_shift(z, np.uint64(31), out=shifted)
    z ^= shifted
    return z


def digests(
    numbers: dict[str, np.ndarray],
    group_codes: np.ndarray,
    combinations: np.ndarray,
    which: np.ndarray,
) -> pd.arrays.IntegerArray:
    """A 64-bit digest of what each profile should hold (`payloads`), for the whole shop at
    once: two profiles with the same digest hold the same (short of a 1 in 2^64 chance); NA
    for a profile that should hold nothing. `numbers`: the RFM figures and the predictions
    as written (floats, NaN for none); `group_codes`: the RFM group's place in `RFM_GROUPS`
    (-1 for none); the segments enter as a digest of their names, one per combination."""
    n = len(which)
    missing = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        names = np.array(
            [
                int.from_bytes(hashlib.blake2b(",".join(c).encode(), digest_size=8).digest(), "big")
                for c in combinations
            ],
            dtype=np.uint64,
        )
        # Each value in turn: h -> (h xor value) x an odd constant, a bijection of h for a
        # given value, so a profile that differs in one value always gets another digest;
        # then a finaliser spreads every bit. In place, through one scratch column.
        h = np.full(n, np.uint64(DIGEST_VERSION), dtype=np.uint64)
        value = names[which]
        h ^= value
        h *= ODD
        np.copyto(value, group_codes.astype(np.int64, copy=False).view(np.uint64))
        h ^= value
        h *= ODD
        for name in sorted(numbers):  # a float's bits stand for it (whole ones too, < 2^53)
            np.copyto(value, numbers[name].view(np.uint64))
            value[np.isnan(numbers[name])] = missing
            h ^= value
            h *= ODD
        h = _mix(h)
    no_segments = np.array([len(c) == 0 for c in combinations], dtype=bool)
    empty = no_segments[which] & np.isnan(numbers["r"]) & np.isnan(numbers["p_p_alive"])
    return pd.arrays.IntegerArray(h.view(np.int64), empty)


def payloads(outcome: Outcome, positions: np.ndarray, currency: str) -> list[dict[str, Any]]:
    """What the profiles at these positions of `outcome.profiles` should hold as `analytics`:
    `segments`, `rfm`, `predicted` (each when there is one) and the `digest` of it all
    (`digests`); `{}` for nothing. Built only for the profiles to be written."""
    p = outcome.profiles.iloc[positions]
    whole = {
        name: p[name].to_numpy(dtype=np.float64, na_value=np.nan)
        for name in ("r", "f", "m", "recency_days", "frequency", "monetary", "p_clv_12m")
    }
    alive = p["p_p_alive"].to_numpy(dtype=np.float64, na_value=np.nan)
    expected = p["p_expected_orders_90d"].to_numpy(dtype=np.float64, na_value=np.nan)
    digest = p["digest"].to_numpy(dtype=object, na_value=None)
    out = []
    for i, (segments, group) in enumerate(zip(p["segments"], p["group"], strict=True)):
        held: dict[str, Any] = {}
        if segments:
            held["segments"] = list(segments)
        if not np.isnan(whole["r"][i]):
            held["rfm"] = {
                "r": int(whole["r"][i]),
                "f": int(whole["f"][i]),
                "m": int(whole["m"][i]),
                "group": str(group),
                "recency_days": int(whole["recency_days"][i]),
                "frequency": int(whole["frequency"][i]),
                "monetary": to_decimal_string(int(whole["monetary"][i]), currency),
            }
        if not np.isnan(alive[i]):
            held["predicted"] = {
                "p_alive": float(alive[i]),
                "expected_orders_90d": float(expected[i]),
                "clv_12m": to_decimal_string(int(whole["p_clv_12m"][i]), currency),
            }
        if held:
            held["digest"] = int(digest[i])
        out.append(held)
    return out
