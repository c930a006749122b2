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
