"""Model selection by grouped cross-validation: which features, which training rows, which settings.

Issue 12 asked to "let the evidence choose" between the pipeline's wide model and a simpler reference fit;
issue 14 asked to take hyperparameter search out of the refresh path. Both are this module: an explicit
selection step whose choice is stored and versioned (``models/model_selection``), and a model step that
trains exactly the stored choice.

Candidates (:data:`RECIPES`) differ in what the model sees and what it learns from, not only in settings:

* feature set: ``all`` (every selected feature: the wijk's own values, gemeente context, buurt spread,
  KWB, proximity, SES) or ``own_health`` (the wijk's own health-monitor values only);
* training rows: ``all_matches`` (every wijk-year whose features were linked by a documented matching
  rule) or ``exact_only`` (only wijk-years whose features certainly describe the same area);
* LightGBM settings; a tuned setting is also read at 1/3 and 2/3 of its rounds (one fit, three
  configurations). Dropped as candidates, to keep the selection affordable: a shallower setting (7 leaves;
  within 0.001 R² of the medium one for lbm) and the wide feature set on exact matches only (98.7 % of
  the rows are exact, so it was never chosen: 0.001-0.005 R² below the choice). Exact-only training
  stays a candidate through the reference fit.

Issue 12's reference fit (LightGBM defaults, own health features, exact matches) is one of the candidates.

**Scoring rows.** Every candidate is scored on the *exact-match* rows of the test folds: wijk-years whose
features certainly belong to the scored area, as they do for every published current-year prediction. A
candidate trained on exact matches still predicts those rows, so all candidates are compared on the same
rows. (When a frame has no match column, e.g. synthetic test data, every row counts as exact.)

**Choice.** 5 folds grouped by gemeente, the model's own folds. Every configuration is fitted on each
training part and predicts its test fold; the stored choice is the configuration with the lowest
out-of-fold RMSE on the exact-match rows (first minimum on ties). The chosen configuration's five fold
fits are the model step's cross-validation fits (:mod:`wijk_assets.lib.ml.outer_fits`). The ridge
baseline (all features, all matched rows, penalty by grouped inner CV) is scored on the same folds.

**Scored with the choice included** (:mod:`wijk_assets.lib.ml.selection_estimate`). The winner's own CV
figure is optimistic by what picking the best of seven adds, so the record's ``corrected`` figures score
the procedure instead:

* by default, **bootstrap bias-corrected CV** (BBC-CV, Tsamardinos et al. 2018): 2000 draws of gemeenten
  from the out-of-fold predictions above, each choosing on the drawn gemeenten and scoring on the others.
  No fit beyond the one CV, so the selection costs the five fold fits of each of the three recipes;
* on request (``wijk-assets tune --nested``), **nested grouped CV**: inside each outer training part a
  two-fold grouped CV (halves of ~120 gemeenten) picks the configuration whose outer fit predicts the
  outer test fold. Twice as many fits again (30 inner fits per outcome on top of the 15).

The choice is the same either way; national figures of both in :mod:`.selection_estimate`.

**When to select again** (:func:`retune_reason`): when asked, when no choice is stored, when the
candidates or this code changed, when the LightGBM version changed, when the set of outcome years
changed, when more than :data:`RETUNE_FEATURE_CHANGE` of the feature columns were added or removed, or
when the number of training rows changed by more than :data:`RETUNE_ROW_CHANGE`. A release that adds no training row, or corrects some values, keeps the
stored choice; the model step still retrains on changed rows with the stored settings and reports its
own grouped-CV figures.

Pure: no Dagster, no DuckDB.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from wijk_assets.lib.ml.gate import compare_with_baseline
from wijk_assets.lib.ml.outer_fits import OuterFits, cut_to_rounds
from wijk_assets.lib.ml.model_fits import final_and_temporal_payloads, final_and_temporal_results
from wijk_assets.lib.ml.parallel_fits import fit_pool
from wijk_assets.lib.ml.recipes import (  # noqa: F401  (re-exported: the candidates belong to the selection)
    FEATURE_SETS, MEDIUM, MEDIUM_OWN, RECIPES, REFERENCE, TRAINING_ROWS, Recipe, exact_rows, recipe_features,
    training_mask,
)
from wijk_assets.lib.ml.selection_estimate import (
    BBC, NESTED, bootstrap_corrected, check_method, chosen_shares, finite_rmse, method_text,
)
from wijk_assets.lib.ml.training import (
    _default_workers,
    _jsonable,
    _checkpoints,
    _fit_predict_ridge,
    _model_feature_names,
    _outcome_rows,
    data_version,
    feature_matrix,
    resolve_params,
    temporal_variants,
)
from wijk_assets.lib.ml.validation import evaluate_predictions, fold_assignment, grouped_folds

SELECTION_CODE_VERSION = "selection-4"
RETUNE_ROW_CHANGE = 0.10
RETUNE_FEATURE_CHANGE = 0.10
N_OUTER = 5
N_INNER = 2


def candidates_version(recipes: Sequence[Recipe] = RECIPES) -> str:
    payload = json.dumps({"recipes": [asdict(r) for r in recipes], "outer_folds": N_OUTER, "inner_folds": N_INNER},
                         sort_keys=True, default=str)
    return hashlib.sha256(f"{SELECTION_CODE_VERSION}\n{payload}".encode()).hexdigest()[:16]


@dataclass
class SelectionResult:
    outcome: str
    chosen: dict[str, Any]  # recipe, feature_set, training_rows, params (with n_estimators)
    candidates: pd.DataFrame
    corrected: dict[str, Any]  # the chosen configuration's figures corrected for the choice (selection_estimate)
    reference: dict[str, Any]
    chosen_plain_cv: dict[str, Any]
    training: dict[str, Any]  # what the choice was made on (for the re-selection rule)
    seconds: float = 0.0
    outer_choices: list[str] = field(default_factory=list)
    # the chosen configuration's outer-fold fits and the ridge's (not part of the record or the version)
    chosen_outer_fits: OuterFits | None = None
    method_text: str = ""

    @property
    def version(self) -> str:
        payload = json.dumps({"chosen": self.chosen, "training": self.training}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def record(self) -> dict[str, Any]:
        return _jsonable({
            "outcome": self.outcome,
            "version": self.version,
            "chosen": self.chosen,
            "candidates": self.candidates.to_dict(orient="records"),
            "corrected": self.corrected,
            "reference": self.reference,
            "chosen_plain_cv": self.chosen_plain_cv,
            "training": self.training,
            "outer_choices": self.outer_choices,
            "method": self.method_text,
        })



def training_summary(data: pd.DataFrame, outcome: str, features: Sequence[str]) -> dict[str, Any]:
    """What a choice was made on: rows, outcome years, feature names and the training-data version."""
    y = data[outcome].to_numpy(dtype=np.float64)
    return {
        "n_rows": int(len(data)),
        "outcome_years": sorted(int(v) for v in pd.unique(data["outcome_year"])) if "outcome_year" in data else [],
        "features_sha256": hashlib.sha256("\n".join(features).encode()).hexdigest()[:16],
        "n_features": len(features),
        "features": list(features),
        "data_version": data_version(feature_matrix(data, features), y, features),
        "candidates_version": candidates_version(),
        "lightgbm_version": lgb.__version__,
    }


def retune_reason(stored: Mapping[str, Any] | None, current: Mapping[str, Any], *, force: bool = False) -> str | None:
    """Why the choice must be made again (None: keep the stored one). ``stored`` and ``current`` are
    :func:`training_summary` dicts (``stored`` None when nothing is stored)."""
    if force:
        return "asked for (retune)"
    if not stored:
        return "no stored choice"
    if stored.get("candidates_version") != current["candidates_version"]:
        return "the candidates or the selection code changed"
    if stored.get("lightgbm_version") != current["lightgbm_version"]:
        return f"LightGBM {stored.get('lightgbm_version')} -> {current['lightgbm_version']}"
    if list(stored.get("outcome_years") or []) != list(current["outcome_years"]):
        return f"outcome years {stored.get('outcome_years')} -> {current['outcome_years']}"
    if "features" not in stored:  # a record without the column names: any change counts
        if stored.get("features_sha256") != current["features_sha256"]:
            return "feature columns changed"
        before_features = now_features = set(current["features"])
    else:
        before_features, now_features = set(stored["features"]), set(current["features"])
    changed = len(before_features ^ now_features)
    if changed > RETUNE_FEATURE_CHANGE * max(len(before_features), 1):
        return (f"feature columns changed: {changed} added or removed of {len(before_features)} "
                f"(more than {RETUNE_FEATURE_CHANGE:.0%})")
    before, now = int(stored.get("n_rows") or 0), int(current["n_rows"])
    if before == 0 or abs(now - before) / before > RETUNE_ROW_CHANGE:
        return f"training rows {before} -> {now} (more than {RETUNE_ROW_CHANGE:.0%} change)"
    return None


def _configs(recipe: Recipe) -> list[int]:
    _, rounds = resolve_params(recipe.params, 0, 1)
    return _checkpoints(rounds, recipe.checkpoints)


def select_model(
    frame: pd.DataFrame,
    outcome: str,
    features: Sequence[str],
    catalog: pd.DataFrame,
    *,
    seed: int = 0,
    n_jobs: int | None = 1,
    recipes: Sequence[Recipe] = RECIPES,
    n_outer: int = N_OUTER,
    n_inner: int = N_INNER,
    workers: int | None = None,
    method: str = BBC,
) -> SelectionResult:
    """Grouped CV of every configuration in ``recipes``, the choice, and the chosen configuration's figures
    corrected for the choice by ``method`` (``"bbc"`` or ``"nested"``; see the module docstring and
    :mod:`wijk_assets.lib.ml.selection_estimate`); deterministic for a given seed."""
    check_method(method)
    t0 = time.perf_counter()
    data = _outcome_rows(frame, outcome)
    y = data[outcome].to_numpy(dtype=np.float64)
    groups = data["gemeente_code"].astype(str).to_numpy()
    exact = exact_rows(data)
    scored = exact if exact.any() else np.ones(len(data), dtype=bool)
    feature_sets = {fs: recipe_features(fs, features, catalog) for fs in {r.feature_set for r in recipes}}
    matrices = {fs: feature_matrix(data, cols) for fs, cols in feature_sets.items()}
    masks = {r.name: training_mask(r.training_rows, exact) for r in recipes}
    configs = [(r, k) for r in recipes for k in _configs(r)]
    labels = [f"{r.name}@{k}" for r, k in configs]
    outer_pred = {label: np.full(len(data), np.nan) for label in labels}
    ridge_pred = np.full(len(data), np.nan)
    X_base = matrices.get("all")
    if X_base is None:
        X_base = feature_matrix(data, features)
    outer = grouped_folds(data, "gemeente_code", n_outer, seed)
    fold_of = fold_assignment(len(data), outer)

    # Every LightGBM fit is an independent task: (outer fold, inner fold or None for the outer fit,
    # recipe), run in worker processes when workers > 1 (identical results for any number of workers).
    # Inner fits only for nested CV. The ridge baseline's folds run in this process (see below).
    tasks = []
    for o, (train, test) in enumerate(outer):
        if method == NESTED:
            inner_frame = data.iloc[train][["gemeente_code"]].reset_index(drop=True)
            for i, (itr, ite) in enumerate(grouped_folds(inner_frame, "gemeente_code", n_inner, seed + 1 + o)):
                for recipe in recipes:
                    fit_rows = train[itr][masks[recipe.name][train[itr]]]
                    if fit_rows.size:
                        tasks.append((o, i, recipe, fit_rows, ite, train[ite]))
        for recipe in recipes:
            tasks.append((o, None, recipe, train[masks[recipe.name][train]], test, test))
    # the outer fits keep their model text: the chosen configuration's are the model step's fold models
    payloads = [(recipe.feature_set, dict(recipe.params), _configs(recipe), fit_rows, predict_rows, i is None)
                for _, i, recipe, fit_rows, _, predict_rows in tasks]
    names = {fs: _model_feature_names(cols) for fs, cols in feature_sets.items()}

    # the temporal check's ridge baselines (every row of a variant, every kept feature) do not depend on
    # the choice: fitted beside the fits, for the choice's final and temporal fits made after choosing
    temporal_candidates = (temporal_variants(data, seed, n_outer)[1]
                           if "outcome_year" in data and data["outcome_year"].nunique() >= 2 else {})
    temporal_ridges: dict[str, np.ndarray] = {}

    def ridge_folds() -> None:
        for train, test in outer:
            ridge_pred[test] = _fit_predict_ridge(X_base[train], y[train], X_base[test], groups[train], seed)
        for name, (tr, te) in temporal_candidates.items():
            if tr.size and te.size:
                temporal_ridges[name] = _fit_predict_ridge(X_base[tr], y[tr], X_base[te], groups[tr], seed)

    def score_choice() -> dict[str, Any]:
        """Everything the record says of the candidates and the choice (figures corrected for the
        choice, candidates table, reference fit, plain CV of the choice, what it was made on) and the
        choice's fold models: it needs the cross-validation only, so it runs while the workers fit the
        choice's final and temporal models."""
        def versus_ridge(pred: np.ndarray) -> dict[str, Any]:
            comparison = compare_with_baseline(y[scored], pred[scored], ridge_pred[scored], groups[scored], fold_of[scored])
            return {
                "r2": comparison.model_r2, "ridge_r2": comparison.baseline_r2, "margin_r2": comparison.margin_r2,
                "margin_lower": comparison.margin_lower, "margin_upper": comparison.margin_upper,
                "level": comparison.level, "n_rows": comparison.n_rows, "n_gemeenten": comparison.n_groups,
            }

        outer_choices: list[str] = []
        if method == NESTED:
            nested_pred = np.full(len(data), np.nan)
            for o, (train, test) in enumerate(outer):
                inner_scored = scored[train]
                inner_rmse = [finite_rmse(y[train][inner_scored], inner_pred[o][label][inner_scored]) for label in labels]
                outer_choices.append(labels[int(np.nanargmin(inner_rmse))])
                nested_pred[test] = outer_pred[outer_choices[-1]][test]
            corrected = {**versus_ridge(nested_pred),
                         **{f"{k}_exact_rows": v for k, v in evaluate_predictions(y[scored], nested_pred[scored]).items()
                            if k in ("mae", "rmse")},
                         "r2_all_rows": evaluate_predictions(y, nested_pred)["r2"], "method": NESTED}
            shares = chosen_shares(outer_choices, labels)
        else:
            corrected, shares = bootstrap_corrected(y, outer_pred, ridge_pred, groups, scored)

        rows = []
        for (recipe, k), label in zip(configs, labels):
            on_scored = evaluate_predictions(y[scored], outer_pred[label][scored])
            on_all = evaluate_predictions(y, outer_pred[label])
            rows.append({
                "config": label, "recipe": recipe.name, "feature_set": recipe.feature_set,
                "training_rows": recipe.training_rows, "n_estimators": int(k),
                "n_features": len(feature_sets[recipe.feature_set]), "n_train_rows": int(masks[recipe.name].sum()),
                "r2_exact_rows": on_scored["r2"], "rmse_exact_rows": on_scored["rmse"], "r2_all_rows": on_all["r2"],
                "chosen_share": shares[label],
            })
        candidates = pd.DataFrame(rows)
        candidates["chosen"] = False
        candidates.loc[chosen_pos, "chosen"] = True
        chosen = {
            "config": labels[chosen_pos], "recipe": chosen_recipe.name, "feature_set": chosen_recipe.feature_set,
            "training_rows": chosen_recipe.training_rows, "params": chosen_params,
        }
        reference_labels = [label for (r, _), label in zip(configs, labels) if r.name == REFERENCE]
        reference = ({"config": reference_labels[0], "description": "LightGBM defaults on the wijk's own health-monitor "
                      "features, trained on exact matches only", **versus_ridge(outer_pred[reference_labels[0]])}
                     if reference_labels else {})
        return {"outer_choices": outer_choices, "corrected": corrected, "candidates": candidates,
                "chosen": chosen, "reference": reference,
                "chosen_plain_cv": versus_ridge(outer_pred[labels[chosen_pos]]),
                "training": training_summary(data, outcome, features),
                "fold_models": [cut_to_rounds(outer_models[(o, chosen_recipe.name)], chosen_k) for o in range(len(outer))]}

    n_workers = _default_workers() if workers is None else max(1, int(workers))
    with fit_pool(matrices, y, names, seed, n_jobs, n_workers, len(payloads)) as run:
        if n_workers > 1 and len(payloads) > 1:
            # this thread would only wait for the workers: the ridge folds (one BLAS thread) run meanwhile
            with ThreadPoolExecutor(max_workers=1) as waiter:
                pending = waiter.submit(run, payloads)
                ridge_folds()
                results = pending.result()
        else:
            results = run(payloads)
            ridge_folds()
        inner_pred = {o: {label: np.full(train.size, np.nan) for label in labels} for o, (train, _) in enumerate(outer)}
        outer_models: dict[tuple[int, str], str] = {}
        for (o, i, recipe, _, predict_at, _), (predictions, model_text) in zip(tasks, results):
            for k, pred in predictions.items():
                if i is None:
                    outer_pred[f"{recipe.name}@{k}"][predict_at] = pred
                else:
                    inner_pred[o][f"{recipe.name}@{k}"][predict_at] = pred
            if i is None:
                outer_models[(o, recipe.name)] = model_text
        # the choice: lowest out-of-fold RMSE on the exact-match rows, first minimum (deterministic)
        rmse = [evaluate_predictions(y[scored], outer_pred[label][scored])["rmse"] for label in labels]
        chosen_pos = int(np.argmin(rmse))
        chosen_recipe, chosen_k = configs[chosen_pos]
        chosen_params = {**dict(chosen_recipe.params), "n_estimators": int(chosen_k)}
        # the model step's final and temporal fits of the choice, in the workers that hold the matrices
        more, variants = final_and_temporal_payloads(data, chosen_recipe.feature_set, chosen_params,
                                                     masks[chosen_recipe.name], seed, n_outer,
                                                     temporal=bool(temporal_candidates), candidates=temporal_candidates)
        if n_workers > 1:
            with ThreadPoolExecutor(max_workers=1) as waiter:
                round_two = waiter.submit(run, more)  # in the workers, while this thread scores the choice
                scored_choice = score_choice()
                fitted = round_two.result()
        else:
            fitted = run(more)
            scored_choice = score_choice()
        final_model, temporal = final_and_temporal_results(fitted, variants, int(chosen_k),
                                                           {v: temporal_ridges[v] for v in variants})
    chosen_fits = OuterFits(
        fold_of=fold_of.copy(),
        models=scored_choice["fold_models"],
        ridge=ridge_pred.copy(),
        final_model=final_model,
        temporal=temporal,
        predictions=outer_pred[labels[chosen_pos]].copy(),
    )
    return SelectionResult(
        outcome=outcome,
        chosen=scored_choice["chosen"],
        candidates=scored_choice["candidates"],
        corrected=scored_choice["corrected"],
        reference=scored_choice["reference"],
        chosen_plain_cv=scored_choice["chosen_plain_cv"],
        training=scored_choice["training"],
        seconds=time.perf_counter() - t0,
        outer_choices=scored_choice["outer_choices"],
        chosen_outer_fits=chosen_fits,
        method_text=method_text(method, n_outer, n_inner),
    )


__all__ = ["RECIPES", "RETUNE_ROW_CHANGE", "Recipe", "SelectionResult", "exact_rows", "recipe_features",
           "retune_reason", "select_model", "training_mask", "training_summary"]
