"""Gate 3 judges the paired LightGBM-vs-ridge difference with its uncertainty (synthetic data).

All frames here are SYNTHETIC: gemeenten with a few wijken each, an outcome, and two sets of
"out-of-fold predictions" whose quality we control.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wijk_assets.lib.ml.gate import WITHHELD_NOT_BETTER, compare_oof, compare_with_baseline, decide


def _synthetic_oof(model_noise: float, baseline_noise: float, *, seed: int = 1, n_gemeenten: int = 150,
                   shared: float = 0.0) -> pd.DataFrame:
    """Synthetic: 150 gemeenten x 2-12 wijken; predictions = truth + noise of the given size.
    ``shared`` adds an error both models make (so a tie is a tie with realistic noise)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 13, size=n_gemeenten)
    gemeente = np.repeat([f"GM{i:04d}" for i in range(n_gemeenten)], sizes)
    n = gemeente.size
    level = rng.normal(0, 0.5, n_gemeenten)
    y = np.repeat(level, sizes) + rng.normal(0, 1.0, n)
    common = rng.normal(0, shared, n)
    return pd.DataFrame({
        "gemeente_code": gemeente,
        "fold": np.repeat(np.arange(n_gemeenten) % 5, sizes),
        "actual": y,
        "lightgbm": y + common + rng.normal(0, model_noise, n),
        "ridge": y + common + rng.normal(0, baseline_noise, n),
    })


def test_a_clearly_better_model_is_published():
    oof = _synthetic_oof(model_noise=0.5, baseline_noise=0.8)
    comparison = compare_oof(oof)
    assert comparison.margin_r2 > 0.2
    assert 0 < comparison.margin_lower < comparison.margin_r2 < comparison.margin_upper
    assert len(comparison.fold_margins) == 5 and all(m > 0 for m in comparison.fold_margins)
    verdict = decide("lbm", "v1", comparison)
    assert verdict.verdict == "published" and verdict.passed and verdict.reasons == []


def test_a_tie_with_noise_is_withheld_even_when_the_point_margin_is_positive():
    # Same quality; search seeds for a draw where LightGBM is nominally ahead, as fys was (0.2222 vs 0.2219).
    for seed in range(40):
        oof = _synthetic_oof(model_noise=0.7, baseline_noise=0.7, seed=seed, shared=0.6)
        comparison = compare_oof(oof)
        if comparison.margin_r2 > 0:
            break
    else:
        pytest.fail("no synthetic draw with a positive point margin")
    assert comparison.margin_lower < 0 < comparison.margin_upper
    verdict = decide("fys", "v1", comparison)
    assert verdict.verdict == "withheld" and not verdict.passed
    assert verdict.reason.startswith(WITHHELD_NOT_BETTER)
    assert "interval" in verdict.reason


def test_a_worse_model_is_withheld():
    verdict = decide("x", "v1", compare_oof(_synthetic_oof(model_noise=0.9, baseline_noise=0.6)))
    assert verdict.verdict == "withheld"
    assert verdict.comparison.margin_upper < 0


def test_other_problems_withhold_a_better_model():
    comparison = compare_oof(_synthetic_oof(model_noise=0.5, baseline_noise=0.8))
    verdict = decide("x", "v1", comparison, ["x: SHAP additivity error 1.0e-03"])
    assert verdict.verdict == "withheld" and verdict.reasons == ["x: SHAP additivity error 1.0e-03"]


@pytest.mark.parametrize("noise", [(0.5, 0.8), (0.7, 0.7)])
def test_verdict_and_interval_do_not_depend_on_row_order(noise):
    oof = _synthetic_oof(*noise, shared=0.6)
    reference = compare_oof(oof)
    for seed in range(3):
        shuffled = oof.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        again = compare_oof(shuffled)
        assert again == reference  # bit-identical margin, interval, per-fold margins
        assert decide("x", "v", again).verdict == decide("x", "v", reference).verdict


def test_margin_equals_the_difference_of_the_two_r2_values():
    oof = _synthetic_oof(0.5, 0.8)
    comparison = compare_oof(oof)
    y = oof["actual"].to_numpy()

    def r2(p):
        return 1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2)

    assert comparison.model_r2 == pytest.approx(r2(oof["lightgbm"].to_numpy()), abs=1e-12)
    assert comparison.baseline_r2 == pytest.approx(r2(oof["ridge"].to_numpy()), abs=1e-12)
    assert comparison.margin_r2 == pytest.approx(comparison.model_r2 - comparison.baseline_r2, abs=1e-12)


def test_rows_without_a_prediction_are_left_out_of_both_sides_and_bad_lengths_are_refused():
    oof = _synthetic_oof(0.5, 0.8)
    with_gap = oof.copy()
    with_gap.loc[0, "ridge"] = np.nan
    assert compare_oof(with_gap).n_rows == len(oof) - 1
    with pytest.raises(ValueError, match="one value per row"):
        compare_with_baseline([1.0, 2.0], [1.0], [1.0, 2.0], ["a", "b"])
    with pytest.raises(KeyError, match="ridge"):
        compare_oof(oof.drop(columns="ridge"))
