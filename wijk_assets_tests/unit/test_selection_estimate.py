"""BBC-CV (wijk_assets.lib.ml.selection_estimate) on SYNTHETIC out-of-fold predictions (labelled as such:
made-up gemeenten, outcomes and predictions; no model is fitted)."""

from __future__ import annotations

import numpy as np
import pytest

from wijk_assets.lib.ml.selection_estimate import bootstrap_corrected


def _synthetic(n_candidates: int, seed: int = 0, n_groups: int = 120, per_group: int = 12):
    """SYNTHETIC: ``n_candidates`` equally good predictions (the outcome plus independent noise of the
    same size) and a weaker ridge; every candidate's true R² is 0.5."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"GM{g:04d}" for g in range(n_groups)], per_group)
    y = rng.normal(size=groups.size)
    predictions = {f"c{c}": y + rng.normal(size=y.size) * np.sqrt(0.5) for c in range(n_candidates)}
    ridge = y + rng.normal(size=y.size) * np.sqrt(0.7)
    return y, predictions, ridge, groups


def _r2(y, pred):
    return 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)


def test_bbc_removes_the_optimism_of_picking_the_best_of_equally_good_candidates():
    """Picking the best of 30 equally good candidates by their own CV error reports more than any of them is
    worth (every one has true R² 0.5); BBC-CV scores the pick on gemeenten it did not see, and lands at
    what a pick is worth on this sample (the candidates' mean R²), not at the winner's figure."""
    y, predictions, ridge, groups = _synthetic(30)
    best = max(_r2(y, p) for p in predictions.values())
    mean = np.mean([_r2(y, p) for p in predictions.values()])
    figures, shares = bootstrap_corrected(y, predictions, ridge, groups, np.ones(y.size, dtype=bool))
    assert best - mean > 0.01  # the optimism to correct is real in this sample
    assert figures["r2"] < best - 0.01
    assert abs(figures["r2"] - mean) < 0.015
    assert figures["method"] == "bbc" and figures["n_gemeenten"] == 120 and figures["n_rows"] == y.size
    assert sum(shares.values()) == pytest.approx(1.0)
    assert max(shares.values()) < 0.5  # no candidate is really better: the draws disagree
    assert figures["margin_lower"] < figures["margin_r2"] < figures["margin_upper"]


def test_a_clearly_better_candidate_is_picked_in_every_draw_and_keeps_its_figure():
    y, predictions, ridge, groups = _synthetic(3, seed=1)
    predictions["good"] = y + np.random.default_rng(9).normal(size=y.size) * 0.3  # true R² 0.91
    figures, shares = bootstrap_corrected(y, predictions, ridge, groups, np.ones(y.size, dtype=bool))
    assert shares["good"] == 1.0
    assert abs(figures["r2"] - _r2(y, predictions["good"])) < 0.01
    assert figures["margin_lower"] > 0


def test_choice_and_scores_use_the_scored_rows_and_all_rows_only_for_r2_all_rows():
    """Non-exact rows (SYNTHETIC: candidate a is wildly wrong there) do not steer the choice, and a gemeente
    with no scored row still counts for ``r2_all_rows``."""
    y, predictions, ridge, groups = _synthetic(2, seed=2)
    scored = np.ones(y.size, dtype=bool)
    scored[groups == "GM0007"] = False
    scored[:: 10] = False
    predictions["c0"] = predictions["c0"].copy()
    predictions["c0"][~scored] += 5.0
    predictions["c0"][scored] = y[scored]  # perfect where it counts
    figures, shares = bootstrap_corrected(y, predictions, ridge, groups, scored)
    assert shares["c0"] == 1.0
    assert figures["r2"] == pytest.approx(1.0)
    assert figures["r2_all_rows"] < 0  # the wild rows count there
    assert figures["n_rows"] == int(scored.sum()) and figures["n_gemeenten"] == 119


def test_bbc_is_deterministic_and_independent_of_row_order():
    y, predictions, ridge, groups = _synthetic(5, seed=3)
    scored = np.ones(y.size, dtype=bool)
    first = bootstrap_corrected(y, predictions, ridge, groups, scored)
    order = np.random.default_rng(4).permutation(y.size)
    again = bootstrap_corrected(y[order], {k: v[order] for k, v in predictions.items()}, ridge[order], groups[order],
                                scored[order])
    assert first == again
    with pytest.raises(ValueError, match="at least 3 scored rows"):
        bootstrap_corrected(y[:2], {k: v[:2] for k, v in predictions.items()}, ridge[:2], groups[:2], scored[:2])


def test_a_record_from_before_bbc_cv_reads_as_what_it_is_nested_cv():
    """A stored selection or a reused model's metrics written by the previous code carry the figures as
    ``nested``; readers (model card, register entry, tune) show them as nested-CV figures, not as none."""
    from wijk_assets.lib.ml.selection_estimate import corrected_figures
    from wijk_assets.lib.responsible.register import outcome_facts

    old = {"r2": 0.6593, "ridge_r2": 0.6433, "margin_r2": 0.016, "margin_lower": -0.0023, "margin_upper": 0.0335,
           "level": 0.9, "n_rows": 15428}
    assert corrected_figures({"nested": old}) == {**old, "method": "nested"}
    assert corrected_figures({"corrected": {**old, "method": "bbc"}})["method"] == "bbc"
    assert corrected_figures(None) == {} and corrected_figures({}) == {}
    metrics = {"grouped_cv": {"lightgbm": {"r2": 0.66, "mae": 0.05, "rmse": 0.07, "n": 15626}},
               "model_selection": {"chosen": {"config": "wide_medium@450", "feature_set": "all",
                                              "training_rows": "all_matches"}, "nested": old, "candidates": []}}
    fact = outcome_facts("lbm", "Leefbaarometer total score", metrics, 15626, None)
    assert fact["model_selection"]["corrected"]["method"] == "nested"
    assert fact["model_selection"]["corrected"]["r2"] == 0.6593
