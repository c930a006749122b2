"""Predicted customer value: BG/NBD for repeat buying (Fader, Hardie and Lee 2005, "Counting
Your Customers the Easy Way") and Gamma-Gamma for spend per order (Fader, Hardie and Lee 2005,
"RFM and CLV: Using Iso-Value Curves"; Fader and Hardie's note "The Gamma-Gamma Model of
Monetary Value"), each fitted on the shop's own history by maximum likelihood.

A customer's history is summarised as in those papers, in a time unit of the caller's choice
(the tests use weeks, the job days): `x` repeat purchases (purchase days after the first),
`t_x` the time of the last purchase since the first, `T` the time from the first purchase to
the end of the calibration period, and for spend `m_x` the mean value of the repeat purchases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class BgNbd:
    """Fitted BG/NBD parameters: purchase rates Gamma(r, alpha), dropout Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float

    def p_alive(self, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Floats:
        """P(still a customer at T | x, t_x, T): 1 for nobody who never came back."""
        x, t_x, T = _arrays(x, t_x, T)
        ratio = np.exp((self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x)))
        odds = np.where(x > 0, self.a / (self.b + x - 1) * ratio, 0.0)
        return 1.0 / (1.0 + odds)

    def expected_purchases(self, t: float, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> Floats:
        """E[purchases in (T, T + t] | x, t_x, T] (equation 10 of the paper)."""
        x, t_x, T = _arrays(x, t_x, T)
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
        head = (a + b + x - 1) / (a - 1)
        body = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
        ratio = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + t_x)))
        odds = np.where(x > 0, a / (b + x - 1) * ratio, 0.0)
        return head * body / (1 + odds)


@dataclass(frozen=True)
class GammaGamma:
    """Fitted Gamma-Gamma parameters (p, q, gamma) of the spend per transaction."""

    p: float
    q: float
    gamma: float
    log_likelihood: float

    def expected_spend(self, x: ArrayLike, m_x: ArrayLike) -> Floats:
        """E[spend per transaction | x repeat purchases of mean m_x]; the population's mean
        for a customer with none."""
        x, m_x = _arrays(x, m_x)
        p, q, g = self.p, self.q, self.gamma
        population = p * g / (q - 1)
        own = (g + m_x * x) * p / (p * x + q - 1)
        return np.where(x > 0, own, population)


# Where BFGS alone does not end well, a simplex first finds the basin from anywhere (a
# gradient method can wander off from a poor start); BFGS then takes the optimum to full
# precision in a few steps, so the simplex need not.
SIMPLEX = {"xatol": 1e-2, "fatol": 1e-2, "maxiter": 20_000}
# BFGS's ends that are an optimum: converged, or stopped by the numerical gradient's
# precision at it (scipy's status 2, "precision loss").
BFGS_OPTIMUM = (0, 2)
LOG_BOUND = 25.0  # a log-parameter past this is a degenerate direction, not an optimum


def _minimum(negative: Callable[[Floats], float], dims: int) -> Floats:
    """The log-parameters minimising `negative`: BFGS from the unit parameters (a hundred or
    two evaluations), or the simplex then BFGS when that does not end at a finite optimum."""
    best = optimize.minimize(negative, np.zeros(dims), method="BFGS")
    if (
        best.status in BFGS_OPTIMUM
        and np.isfinite(best.fun)
        and best.fun < 1e300
        and np.all(np.abs(best.x) < LOG_BOUND)
    ):
        return np.asarray(best.x)
    best = optimize.minimize(negative, np.zeros(dims), method="Nelder-Mead", options=SIMPLEX)
    return np.asarray(optimize.minimize(negative, best.x, method="BFGS").x)


def _arrays(*values: ArrayLike) -> tuple[Floats, ...]:
    return tuple(np.asarray(v, dtype=np.float64) for v in values)


def bgnbd_log_likelihood(
    params: Floats, x: Floats, t_x: Floats, T: Floats, weights: Floats | None = None
) -> float:
    """The BG/NBD log-likelihood (equation 6 of the paper), summed over customers."""
    unique, which = np.unique(np.asarray(x, dtype=np.float64), return_inverse=True)
    return _bgnbd_log_likelihood(params, unique, which.reshape(-1), x, t_x, T, weights)


def _bgnbd_log_likelihood(
    params: Floats,
    unique_x: Floats,
    which: NDArray[np.intp],
    x: Floats,
    t_x: Floats,
    T: Floats,
    weights: Floats | None = None,
) -> float:
    """`bgnbd_log_likelihood` with the terms that depend on x alone (the special functions)
    computed once per distinct x (`unique_x[which] == x`): a fit evaluates it hundreds of
    times over the same customers."""
    r, alpha, a, b = params
    ux = unique_x
    common = special.gammaln(r + ux) - special.gammaln(r) + r * np.log(alpha)
    beta_1 = special.betaln(a, b + ux) - special.betaln(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta_2 = np.where(
            ux > 0,
            special.betaln(a + 1, b + np.maximum(ux, 1) - 1) - special.betaln(a, b),
            -np.inf,
        )
        rx = r + x
        ln_a1 = beta_1[which] - rx * np.log(alpha + T)
        ln_a2 = beta_2[which] - rx * np.log(alpha + t_x)
    per_customer = common[which] + np.logaddexp(ln_a1, ln_a2)
    return float(np.sum(per_customer if weights is None else per_customer * weights))


def fit_bgnbd(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> BgNbd:
    """Maximum likelihood (over log-parameters, so each stays positive)."""
    xs, txs, Ts = _arrays(x, t_x, T)
    # Time in units of the mean observation, so the search starts near the answer whatever
    # the caller's unit (weeks, days): alpha scales with time, r, a and b do not.
    scale = float(np.mean(Ts)) or 1.0
    # Customers with the same history add the same term: each distinct (x, t_x, T) once,
    # weighted by how many have it (the same likelihood; half the terms in a shop's sample).
    histories = pd.DataFrame({"x": xs, "t_x": txs / scale, "T": Ts / scale}).value_counts(
        sort=False
    )
    distinct = histories.index.to_frame(index=False)
    hx, htx, hT = (distinct[c].to_numpy(dtype=np.float64) for c in ("x", "t_x", "T"))
    weights = histories.to_numpy(dtype=np.float64)
    unique, which = np.unique(hx, return_inverse=True)
    which = which.reshape(-1)

    def negative(log_params: Floats) -> float:
        value = _bgnbd_log_likelihood(np.exp(log_params), unique, which, hx, htx, hT, weights)
        return -value if np.isfinite(value) else 1e300

    r, alpha, a, b = np.exp(_minimum(negative, 4))
    alpha *= scale
    ll = bgnbd_log_likelihood(np.array([r, alpha, a, b]), xs, txs, Ts)
    return BgNbd(float(r), float(alpha), float(a), float(b), ll)


def gamma_gamma_log_likelihood(params: Floats, x: Floats, m_x: Floats) -> float:
    """The Gamma-Gamma log-likelihood of the repeat buyers' mean spend, summed."""
    p, q, g = params
    return float(
        np.sum(
            special.gammaln(p * x + q)
            - special.gammaln(p * x)
            - special.gammaln(q)
            + q * np.log(g)
            + (p * x - 1) * np.log(m_x)
            + (p * x) * np.log(x)
            - (p * x + q) * np.log(g + m_x * x)
        )
    )


def _gamma_gamma_terms(x: Floats, m_x: Floats) -> Callable[[Floats], float]:
    """`gamma_gamma_log_likelihood` over fixed customers as a function of the parameters,
    what depends on the data alone computed once, the special functions once per distinct x."""
    unique, which = np.unique(x, return_inverse=True)
    which = which.reshape(-1)
    log_m, log_x, money = np.log(m_x), np.log(x), m_x * x
    sum_log_m = float(np.sum(log_m))
    counts = np.bincount(which, minlength=len(unique)).astype(np.float64)
    n = float(len(x))

    def log_likelihood(params: Floats) -> float:
        p, q, g = params
        px = p * x
        special_terms = special.gammaln(p * unique + q) - special.gammaln(p * unique)
        return float(
            np.dot(counts, special_terms)
            - n * special.gammaln(q)
            + n * q * np.log(g)
            + np.dot(px, log_m)
            - sum_log_m
            + np.dot(px, log_x)
            - np.dot(px + q, np.log(g + money))
        )

    return log_likelihood


def fit_gamma_gamma(x: ArrayLike, m_x: ArrayLike) -> GammaGamma:
    """Maximum likelihood on the customers with repeat purchases (x > 0, m_x > 0)."""
    xs, ms = _arrays(x, m_x)
    keep = (xs > 0) & (ms > 0)
    xs, ms = xs[keep], ms[keep]
    # Money in units of the mean spend (dollars or cents alike): gamma scales with money.
    scale = float(np.mean(ms))
    ms = ms / scale

    log_likelihood = _gamma_gamma_terms(xs, ms)

    def negative(log_params: Floats) -> float:
        value = log_likelihood(np.exp(log_params))
        return -value if np.isfinite(value) else 1e300

    p, q, g = np.exp(_minimum(negative, 3))
    g *= scale
    ll = gamma_gamma_log_likelihood(np.array([p, q, g]), xs, ms * scale)
    return GammaGamma(float(p), float(q), float(g), ll)


# -- a shop's customers --------------------------------------------------------------------------

MIN_REPEAT_BUYERS = 10  # fewer, and the models say nothing worth showing
# Customers the models are fitted on, a seeded sample past that size (docs/analytics.md)
SAMPLE_SIZE = 50_000


@dataclass(frozen=True)
class Predictions:
    """Per customer (indexed by `customer_id`): `p_alive`, `expected_orders_90d` and `clv_12m`
    (integer minor units), with the fitted models; `reason` when nothing could be fitted."""

    frame: pd.DataFrame
    bgnbd: BgNbd | None
    gamma_gamma: GammaGamma | None
    reason: str | None = None
    fitted_on: int = 0  # customers the models were fitted on (0: reused or not fitted)


def history(counted: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """The models' summary of each customer, in days, from counted orders (`customer_id`,
    `day`, `amount`): same-day orders are one purchase."""
    daily = counted.groupby(["customer_id", "day"], as_index=False)["amount"].sum()
    daily = daily.sort_values(["customer_id", "day"])
    grouped = daily.groupby("customer_id")
    first, last = grouped["day"].min(), grouped["day"].max()
    purchases = grouped["day"].size()
    first_amount = grouped["amount"].first()
    out = pd.DataFrame(
        {
            "x": (purchases - 1).astype("int64"),
            "t_x": (last - first).dt.days.astype("float64"),
            "T": (pd.Timestamp(as_of) - first).dt.days.astype("float64"),
        }
    )
    repeat_money = grouped["amount"].sum() - first_amount
    out["m_x"] = np.where(out["x"] > 0, repeat_money / out["x"].clip(lower=1), 0.0)
    return out


def predict(
    counted: pd.DataFrame, as_of: date, *, sample: int = SAMPLE_SIZE, seed: int = 0
) -> Predictions:
    """`predict_history` of the shop's counted orders (`history`)."""
    return predict_history(history(counted, as_of), sample=sample, seed=seed)


def predict_history(
    summary: pd.DataFrame, *, sample: int = SAMPLE_SIZE, seed: int = 0
) -> Predictions:
    """Fit both models on the customers' histories (`history`'s frame; on a seeded sample of
    `sample` customers past that size: the parameters settle long before) and score every
    customer. `clv_12m` is the expected orders of the next 365 days times the expected spend
    per order, undiscounted."""
    fit_on = summary if len(summary) <= sample else summary.sample(sample, random_state=seed)
    repeat = fit_on[fit_on["x"] > 0]
    if len(repeat) < MIN_REPEAT_BUYERS:
        empty = pd.DataFrame(
            index=summary.index, columns=["p_alive", "expected_orders_90d", "clv_12m"]
        )
        return Predictions(empty, None, None, f"fewer than {MIN_REPEAT_BUYERS} repeat buyers")
    # Plain arrays: numpy looking for its protocols on a Series hashes the Series' index.
    x, t_x, T = (fit_on[name].to_numpy(dtype=np.float64) for name in ("x", "t_x", "T"))
    purchases = fit_bgnbd(x, t_x, T)
    spend = fit_gamma_gamma(
        repeat["x"].to_numpy(dtype=np.float64), repeat["m_x"].to_numpy(dtype=np.float64)
    )
    return replace(score_history(summary, purchases, spend), fitted_on=len(fit_on))


def score(counted: pd.DataFrame, as_of: date, purchases: BgNbd, spend: GammaGamma) -> Predictions:
    """Score every customer with models fitted before (the day's own, on a re-run)."""
    return score_history(history(counted, as_of), purchases, spend)


def score_history(summary: pd.DataFrame, purchases: BgNbd, spend: GammaGamma) -> Predictions:
    """Every customer of `history`'s frame scored with these models."""
    x = summary["x"].to_numpy(dtype=np.float64)
    t_x = summary["t_x"].to_numpy(dtype=np.float64)
    T = summary["T"].to_numpy(dtype=np.float64)
    alive = purchases.p_alive(x, t_x, T)
    # The Gauss function depends on (x, T) only, a few thousand pairs in a shop of millions:
    # each pair's value is computed once (`expected_purchases_by_pair`).
    quarter, year = expected_purchases_by_pair(purchases, (90, 365), x, t_x, T)
    value = np.rint(year * spend.expected_spend(x, summary["m_x"].to_numpy(dtype=np.float64)))
    # A degenerate fit (a parameter at its bound) can make a customer's numbers not finite:
    # that customer has no prediction, rather than a garbage integer.
    finite = np.isfinite(value) & np.isfinite(alive) & np.isfinite(quarter)
    whole = np.where(finite, value, 0).astype(np.int64)
    clv_12m: Any = whole
    if not finite.all():
        alive, quarter = np.where(finite, alive, np.nan), np.where(finite, quarter, np.nan)
        clv_12m = pd.arrays.IntegerArray(whole, ~finite)
    frame = pd.DataFrame(
        {"p_alive": alive, "expected_orders_90d": quarter, "clv_12m": clv_12m},
        index=summary.index,
    )
    return Predictions(frame, purchases, spend)


def expected_purchases_by_pair(
    model: BgNbd, horizons: tuple[float, ...], x: Floats, t_x: Floats, T: Floats
) -> list[Floats]:
    """`model.expected_purchases(t, x, t_x, T)` for each horizon `t`, with what depends on
    (x, T) alone (the Gauss hypergeometric function) evaluated once per distinct pair: the
    same numbers, element for element."""
    if len(x) == 0:
        return [np.zeros(0) for _ in horizons]
    # x and T are whole numbers of purchases and days: one integer key per pair
    key = x.astype(np.int64) * (1 << 32) + T.astype(np.int64)
    if not (np.array_equal(key >> 32, x) and np.array_equal(key & 0xFFFFFFFF, T)):
        return [model.expected_purchases(t, x, t_x, T) for t in horizons]  # not whole
    unique, which = np.unique(key, return_inverse=True)
    which = which.reshape(-1)
    ux, uT = (unique >> 32).astype(np.float64), (unique & 0xFFFFFFFF).astype(np.float64)
    r, alpha, a, b = model.r, model.alpha, model.a, model.b
    ratio = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + t_x)))
    odds = np.where(x > 0, a / (b + x - 1) * ratio, 0.0)
    head = (a + b + ux - 1) / (a - 1)
    out = []
    for t in horizons:
        hyp = special.hyp2f1(r + ux, b + ux, a + b + ux - 1, t / (alpha + uT + t))
        body = head * (1 - ((alpha + uT) / (alpha + uT + t)) ** (r + ux) * hyp)
        out.append(body[which] / (1 + odds))
    return out
