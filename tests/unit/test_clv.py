"""Predicted customer value, validated against the published fits on the CDNOW sample (2,357
customers, 39-week calibration through 1997-09-30, same-day purchases combined, weeks):
BG/NBD r = 0.243, alpha = 4.414, a = 0.793, b = 2.426 (Fader, Hardie and Lee 2005, table 1);
Gamma-Gamma on the mean value of the 946 repeat buyers' repeat purchases p = 6.25, q = 3.74,
gamma = 15.44. The summary below is computed here, independently of the job."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "cdnow" / "CDNOW_sample.txt"
CALIBRATION_END = date(1997, 9, 30)


def cdnow_summary() -> tuple[list[int], list[float], list[float], list[float]]:
    """x, t_x, T (weeks) and the mean value of the repeat purchases, per customer."""
    spent: dict[str, dict[date, float]] = defaultdict(lambda: defaultdict(float))
    for line in SAMPLE.read_text().splitlines():
        customer, _, day, _, value = line.split()
        spent[customer][date(int(day[:4]), int(day[4:6]), int(day[6:]))] += float(value)
    x, t_x, T, m_x = [], [], [], []
    for days in spent.values():
        calibration = sorted(d for d in days if d <= CALIBRATION_END)
        first, repeats = calibration[0], calibration[1:]
        x.append(len(repeats))
        t_x.append((calibration[-1] - first).days / 7)
        T.append((CALIBRATION_END - first).days / 7)
        m_x.append(sum(days[d] for d in repeats) / len(repeats) if repeats else 0.0)
    return x, t_x, T, m_x


def significant(value: float, digits: int = 2) -> float:
    return float(f"{value:.{digits - 1}e}")


def test_the_bgnbd_fit_on_cdnow_matches_the_published_parameters() -> None:
    from crm_analytics.clv import fit_bgnbd

    x, t_x, T, _ = cdnow_summary()
    assert len(x) == 2357 and sum(1 for n in x if n > 0) == 946

    model = fit_bgnbd(x, t_x, T)

    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    fitted = {name: getattr(model, name) for name in published}
    assert {k: significant(v) for k, v in fitted.items()} == {
        k: significant(v) for k, v in published.items()
    }
    assert model.log_likelihood == pytest.approx(-9582.4, abs=0.1)


def test_the_gamma_gamma_fit_on_cdnow_matches_the_published_parameters() -> None:
    from crm_analytics.clv import fit_gamma_gamma

    x, _, _, m_x = cdnow_summary()

    model = fit_gamma_gamma(x, m_x)

    assert (significant(model.p), significant(model.q), significant(model.gamma)) == (
        6.2,
        3.7,
        15.0,
    )
    # And the population's mean spend per transaction, p * gamma / (q - 1), is the note's $35
    assert float(model.expected_spend(0, 0)) == pytest.approx(35.2, abs=0.1)


def test_predictions_of_the_published_model_match_the_papers_example() -> None:
    from crm_analytics.clv import BgNbd

    model = BgNbd(r=0.243, alpha=4.414, a=0.793, b=2.426, log_likelihood=0.0)

    # The paper's customer: 2 repeat purchases, the last at 30.43 weeks, observed for 38.86:
    # 1.226 purchases expected in the next 39 weeks
    assert float(model.expected_purchases(39, 2, 30.43, 38.86)) == pytest.approx(1.226, abs=1e-3)
    # Somebody who never came back is alive as far as the model can tell; a long silence after
    # frequent buying makes one less likely to be
    assert float(model.p_alive(0, 0, 38.86)) == 1.0
    assert float(model.p_alive(10, 5, 38.86)) < float(model.p_alive(10, 38, 38.86))


def test_a_shops_orders_are_scored_with_the_same_model_in_days() -> None:
    import pandas as pd

    from crm_analytics.clv import BgNbd, predict

    # Given CDNOW as a shop's counted orders (cents), up to the calibration end
    rows = []
    for line in SAMPLE.read_text().splitlines():
        customer, _, day, _, value = line.split()
        placed = date(int(day[:4]), int(day[4:6]), int(day[6:]))
        if placed <= CALIBRATION_END:
            rows.append(
                {
                    "customer_id": customer,
                    "day": pd.Timestamp(placed),
                    "amount": round(float(value) * 100),
                }
            )
    counted = pd.DataFrame(rows)

    # When every customer is scored as of the calibration end
    predicted = predict(counted, CALIBRATION_END)

    # Then the model is the published one in days: the rate's scale alpha is 7 times the
    # weekly one, r, a and b are the same
    assert predicted.bgnbd is not None and predicted.gamma_gamma is not None
    assert significant(predicted.bgnbd.alpha / 7) == significant(4.414)
    assert (significant(predicted.bgnbd.r), significant(predicted.bgnbd.a)) == (0.24, 0.79)
    assert significant(predicted.gamma_gamma.p) == 6.2
    # And each customer's 90-day expectation is the model's, from the weekly summary
    x, t_x, T, _ = cdnow_summary()
    weekly = BgNbd(
        r=predicted.bgnbd.r,
        alpha=predicted.bgnbd.alpha / 7,
        a=predicted.bgnbd.a,
        b=predicted.bgnbd.b,
        log_likelihood=0.0,
    )
    by_customer = dict(zip(sorted({r["customer_id"] for r in rows}), range(len(x)), strict=True))
    frame = predicted.frame
    assert len(frame) == 2357
    assert frame["p_alive"].between(0, 1).all()
    assert (frame["clv_12m"] >= 0).all() and frame["clv_12m"].dtype == "int64"
    customer = "00004"
    i = by_customer[customer]
    assert float(frame.loc[customer, "expected_orders_90d"]) == pytest.approx(
        float(weekly.expected_purchases(90 / 7, x[i], t_x[i], T[i])), rel=1e-6
    )


def test_where_bfgs_alone_ends_badly_the_simplex_finds_the_same_fit(monkeypatch) -> None:
    from scipy import optimize

    from crm_analytics import clv

    # Given BFGS from the start ending without an optimum (as it can from a poor start)
    real = optimize.minimize
    methods: list[str] = []

    def minimize(fun, x0, method=None, **kwargs):
        methods.append(method)
        found = real(fun, x0, method=method, **kwargs)
        if len(methods) == 1:
            found.status = 1  # "maximum number of iterations exceeded"
        return found

    monkeypatch.setattr(clv.optimize, "minimize", minimize)
    x, t_x, T, _ = cdnow_summary()

    # When the model is fitted
    model = clv.fit_bgnbd(x, t_x, T)

    # Then the simplex then BFGS ran, and the fit is the published one all the same
    assert methods == ["BFGS", "Nelder-Mead", "BFGS"]
    assert (significant(model.r), significant(model.a), significant(model.b)) == (0.24, 0.79, 2.4)
    assert model.log_likelihood == pytest.approx(-9582.4, abs=0.1)
