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

from dataclasses import dataclass, replace
from datetime import date

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


def _arrays(*values: ArrayLike) -> tuple[Floats, ...]:
    return tuple(np.asarray(v, dtype=np.float64) for v in values)


def bgnbd_log_likelihood(
    params: Floats, x: Floats, t_x: Floats, T: Floats, weights: Floats | None = None
) -> float:
    """The BG/NBD log-likelihood (equation 6 of the paper), summed over customers."""
    r, alpha, a, b = params
    ln_common = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    ln_a1 = special.betaln(a, b + x) - special.betaln(a, b) - (r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_a2 = np.where(
            x > 0,
            special.betaln(a + 1, b + np.maximum(x, 1) - 1)
            - special.betaln(a, b)
            - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
    per_customer = ln_common + np.logaddexp(ln_a1, ln_a2)
    return float(np.sum(per_customer if weights is None else per_customer * weights))


def fit_bgnbd(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> BgNbd:
    """Maximum likelihood (over log-parameters, so each stays positive)."""
    xs, txs, Ts = _arrays(x, t_x, T)
    # Time in units of the mean observation, so the search starts near the answer whatever
    # the caller's unit (weeks, days): alpha scales with time, r, a and b do not.
    scale = float(np.mean(Ts)) or 1.0
    txs, Ts = txs / scale, Ts / scale

    def negative(log_params: Floats) -> float:
        value = bgnbd_log_likelihood(np.exp(log_params), xs, txs, Ts)
        return -value if np.isfinite(value) else 1e300

    best = optimize.minimize(
        negative,
        np.zeros(4),
        method="Nelder-Mead",
        options={"xatol": 1e-8, "fatol": 1e-8, "maxiter": 20_000},
    )
    best = optimize.minimize(negative, best.x, method="BFGS")
    r, alpha, a, b = np.exp(best.x)
    alpha *= scale
    ll = bgnbd_log_likelihood(np.array([r, alpha, a, b]), xs, txs * scale, Ts * scale)
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


def fit_gamma_gamma(x: ArrayLike, m_x: ArrayLike) -> GammaGamma:
    """Maximum likelihood on the customers with repeat purchases (x > 0, m_x > 0)."""
    xs, ms = _arrays(x, m_x)
    keep = (xs > 0) & (ms > 0)
    xs, ms = xs[keep], ms[keep]
    # Money in units of the mean spend (dollars or cents alike): gamma scales with money.
    scale = float(np.mean(ms))
    ms = ms / scale

    def negative(log_params: Floats) -> float:
        value = gamma_gamma_log_likelihood(np.exp(log_params), xs, ms)
        return -value if np.isfinite(value) else 1e300

    best = optimize.minimize(
        negative,
        np.zeros(3),
        method="Nelder-Mead",
        options={"xatol": 1e-8, "fatol": 1e-8, "maxiter": 20_000},
    )
    best = optimize.minimize(negative, best.x, method="BFGS")
    p, q, g = np.exp(best.x)
    g *= scale
    ll = gamma_gamma_log_likelihood(np.array([p, q, g]), xs, ms * scale)
    return GammaGamma(float(p), float(q), float(g), ll)


# -- a shop's customers --------------------------------------------------------------------------

MIN_REPEAT_BUYERS = 10  # fewer, and the models say nothing worth showing


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
    counted: pd.DataFrame, as_of: date, *, sample: int = 200_000, seed: int = 0
) -> Predictions:
    """Fit both models on the shop's history (on a seeded sample of `sample` customers past
    that size: the parameters settle long before) and score every customer. `clv_12m` is the
    expected orders of the next 365 days times the expected spend per order, undiscounted."""
    summary = history(counted, as_of)
    fit_on = summary if len(summary) <= sample else summary.sample(sample, random_state=seed)
    repeat = fit_on[fit_on["x"] > 0]
    if len(repeat) < MIN_REPEAT_BUYERS:
        empty = pd.DataFrame(
            index=summary.index, columns=["p_alive", "expected_orders_90d", "clv_12m"]
        )
        return Predictions(empty, None, None, f"fewer than {MIN_REPEAT_BUYERS} repeat buyers")
    purchases = fit_bgnbd(fit_on["x"], fit_on["t_x"], fit_on["T"])
    spend = fit_gamma_gamma(repeat["x"], repeat["m_x"])
    return replace(_scored(summary, purchases, spend), fitted_on=len(fit_on))


def score(counted: pd.DataFrame, as_of: date, purchases: BgNbd, spend: GammaGamma) -> Predictions:
    """Score every customer with models fitted before (the day's own, on a re-run)."""
    return _scored(history(counted, as_of), purchases, spend)


def _scored(summary: pd.DataFrame, purchases: BgNbd, spend: GammaGamma) -> Predictions:
    x, t_x, T = summary["x"], summary["t_x"], summary["T"]
    frame = pd.DataFrame(index=summary.index)
    frame["p_alive"] = purchases.p_alive(x, t_x, T)
    frame["expected_orders_90d"] = purchases.expected_purchases(90, x, t_x, T)
    year = purchases.expected_purchases(365, x, t_x, T)
    value = np.rint(year * spend.expected_spend(x, summary["m_x"]))
    # A degenerate fit (a parameter at its bound) can make a customer's numbers not finite:
    # that customer has no prediction, rather than a garbage integer.
    finite = (
        np.isfinite(value)
        & np.isfinite(frame["p_alive"])
        & np.isfinite(frame["expected_orders_90d"])
    )
    frame["clv_12m"] = np.where(finite, value, 0).astype("int64")
    if not finite.all():
        frame["clv_12m"] = frame["clv_12m"].astype("Int64")
        frame.loc[~finite, ["p_alive", "expected_orders_90d"]] = np.nan
        frame.loc[~finite, "clv_12m"] = pd.NA
    return Predictions(frame, purchases, spend)
