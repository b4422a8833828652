"""What the chosen configuration is worth once the choice itself is accounted for.

Choosing the best of several configurations by their cross-validated error and then reporting that same
error is optimistic: the minimum of several noisy estimates is biased low. The model selection
(:mod:`wijk_assets.lib.ml.selection`) corrects for it in one of two ways; both score the *procedure*
("pick the configuration with the lowest error") rather than the configuration it picked.

**Bootstrap bias-corrected CV (BBC-CV; the default).** Tsamardinos, Greasidou and Borboudakis,
"Bootstrapping the out-of-sample predictions for efficient and accurate cross-validation", *Machine
Learning* 107 (2018) 1895-1922. Every candidate's out-of-fold predictions from the one grouped 5-fold CV
are resampled, no model is fitted again:

* each replicate draws the gemeenten with replacement (the unit the folds are grouped by);
* on the rows of the drawn gemeenten it picks the configuration with the lowest RMSE (the same rule as
  the stored choice, first minimum on ties);
* it scores that configuration, and the ridge baseline, on the rows of the gemeenten *not* drawn (about
  37 % of them): R², RMSE, MAE, and the R² margin over ridge.

The estimate is the mean over replicates; the interval is the 5th-95th percentile of the replicates'
out-of-bag margins. Each out-of-bag part holds about 37 % of the gemeenten, so that interval is wider
than one for the whole data would be: it errs on the cautious side. The paper finds BBC-CV about as
accurate as nested CV (slightly conservative) at the cost of a single CV.

**Nested grouped CV (on demand: ``wijk-assets tune --nested``).** Inside each outer training part a
two-fold grouped CV picks a configuration, which then predicts the outer test fold; the outer
predictions are scored as one set. Three times the fits of BBC-CV.

Both write the same figures (:data:`FIGURES`), with ``method`` saying which produced them. The stored
choice is the same either way. National data, seed 20240917, R² on exact-match rows, BBC-CV / nested:
lbm 0.6551 / 0.6593, fys 0.2347 / 0.2244, onv 0.8431 / 0.8462, soc 0.8480 / 0.8529, vrz 0.8198 / 0.8247,
won 0.7022 / 0.7099 (BBC-CV the lower for five of six). The selection took 14.9 s (lbm) and 9.0-9.8 s
(the others) against 33.2 s and 21.4 s nested, on two cores.

Pure: no Dagster, no DuckDB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from wijk_assets.lib.ml.gate import DEFAULT_LEVEL, DEFAULT_SEED, _group_sums, bootstrap_weights

BBC = "bbc"
NESTED = "nested"
METHODS = (BBC, NESTED)
BBC_REPLICATES = 2000
FIGURES = ("r2", "ridge_r2", "margin_r2", "margin_lower", "margin_upper", "level", "n_rows", "n_gemeenten",
           "mae_exact_rows", "rmse_exact_rows", "r2_all_rows", "method")


def bootstrap_corrected(
    y: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    ridge: np.ndarray,
    groups: np.ndarray,
    scored: np.ndarray,
    *,
    n_boot: int = BBC_REPLICATES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> tuple[dict[str, Any], dict[str, float]]:
    """BBC-CV (see the module docstring) over the out-of-fold ``predictions`` of every configuration
    (label -> one prediction per row, in the order of the candidates table).

    Returns the figures (:data:`FIGURES`, ``method`` ``"bbc"``) and, per label, the share of replicates
    that picked it. Choice and scores use the ``scored`` (exact-match) rows; ``r2_all_rows`` scores the
    replicate's choice on all rows of its out-of-bag gemeenten. Deterministic: fixed seed, gemeenten in
    sorted order, per-gemeente sums in a canonical order (so the row order does not matter)."""
    labels = list(predictions)
    y = np.asarray(y, dtype=np.float64)
    scored = np.asarray(scored, dtype=bool)
    groups = np.asarray(groups).astype(str)
    ok = np.isfinite(y) & np.isfinite(ridge) & np.all([np.isfinite(p) for p in predictions.values()], axis=0)
    if not labels or (ok & scored).sum() < 3:
        raise ValueError(f"BBC-CV needs at least 3 scored rows with every prediction; got {(ok & scored).sum()}")
    y_ok, g_ok = y[ok], groups[ok]
    sc = scored[ok].astype(np.float64)
    err = {label: y_ok - np.asarray(predictions[label], dtype=np.float64)[ok] for label in labels}
    err_ridge = y_ok - np.asarray(ridge, dtype=np.float64)[ok]
    columns = {"n": sc, "sy": sc * y_ok, "syy": sc * y_ok * y_ok, "n_all": np.ones_like(y_ok), "sy_all": y_ok,
               "syy_all": y_ok * y_ok, "sse_ridge": sc * err_ridge ** 2}
    for c, label in enumerate(labels):
        columns[f"sse_{c}"] = sc * err[label] ** 2
        columns[f"sae_{c}"] = sc * np.abs(err[label])
        columns[f"sse_all_{c}"] = err[label] ** 2
    sums = _group_sums(g_ok, columns)
    # a gemeente without an exact-match row still counts for ``r2_all_rows``; it adds nothing to the
    # choice or to the exact-row scores
    s = {name: sums[name].to_numpy() for name in sums.columns}
    n_groups = len(sums)
    sse = np.column_stack([s[f"sse_{c}"] for c in range(len(labels))])
    sae = np.column_stack([s[f"sae_{c}"] for c in range(len(labels))])
    sse_all = np.column_stack([s[f"sse_all_{c}"] for c in range(len(labels))])

    in_bag = bootstrap_weights(n_boot, n_groups, seed)  # the same draws as gate 3's interval
    out_bag = (in_bag == 0).astype(np.float64)
    keep = (out_bag @ s["n"]) >= 2  # a replicate needs out-of-bag rows to score (all but never true)
    in_bag, out_bag = in_bag[keep], out_bag[keep]
    choice = np.argmin(in_bag @ sse, axis=1)  # first minimum on ties, like the stored choice
    rows = np.arange(choice.size)

    def r2(weights, sse_chosen, n, sy, syy):
        N, Sy, Syy = weights @ n, weights @ sy, weights @ syy
        return 1 - sse_chosen / (Syy - Sy * Sy / N)

    n_oob = out_bag @ s["n"]
    sse_oob = (out_bag @ sse)[rows, choice]
    model_r2 = r2(out_bag, sse_oob, s["n"], s["sy"], s["syy"])
    ridge_r2 = r2(out_bag, out_bag @ s["sse_ridge"], s["n"], s["sy"], s["syy"])
    all_r2 = r2(out_bag, (out_bag @ sse_all)[rows, choice], s["n_all"], s["sy_all"], s["syy_all"])
    margin = model_r2 - ridge_r2
    alpha = (1 - level) / 2
    figures = {
        "r2": float(np.mean(model_r2)),
        "ridge_r2": float(np.mean(ridge_r2)),
        "margin_r2": float(np.mean(margin)),
        "margin_lower": float(np.quantile(margin, alpha)),
        "margin_upper": float(np.quantile(margin, 1 - alpha)),
        "level": level,
        "n_rows": int(s["n"].sum()),
        "n_gemeenten": int((s["n"] > 0).sum()),
        "mae_exact_rows": float(np.mean((out_bag @ sae)[rows, choice] / n_oob)),
        "rmse_exact_rows": float(np.mean(np.sqrt(sse_oob / n_oob))),
        "r2_all_rows": float(np.mean(all_r2)),
        "method": BBC,
        "replicates": int(choice.size),
    }
    counts = np.bincount(choice, minlength=len(labels))
    return figures, {label: float(counts[c] / choice.size) for c, label in enumerate(labels)}


def method_text(method: str, n_outer: int, n_inner: int) -> str:
    """One line for the record and the model card: how the chosen configuration's figures were obtained."""
    return {
        BBC: (f"grouped {n_outer}-fold CV by gemeente of every candidate; the choice (lowest RMSE on exact-match "
              f"rows) scored by bootstrap bias-corrected CV (BBC-CV, Tsamardinos et al. 2018): "
              f"{BBC_REPLICATES} draws of gemeenten, chosen on the drawn ones, scored on the others"),
        NESTED: (f"nested grouped CV: {n_outer} outer folds by gemeente, {n_inner} inner folds by gemeente choose "
                 "among the candidates by RMSE on exact-match rows; scored on exact-match rows of the outer folds"),
    }[check_method(method)]


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown selection method {method!r}; expected one of {METHODS}")
    return method


def corrected_figures(record: Mapping[str, Any] | None) -> dict[str, Any]:
    """The figures corrected for the choice from a selection record (or a model's ``model_selection``
    metrics); records written before BBC-CV carry them as ``nested`` (two-fold nested CV), which is
    what they are. Empty when there are none."""
    record = record or {}
    if record.get("corrected"):
        return dict(record["corrected"])
    if record.get("nested"):
        return {**record["nested"], "method": record["nested"].get("method") or NESTED}
    return {}


def finite_rmse(actual: np.ndarray, pred: np.ndarray) -> float:
    """RMSE over the rows with a prediction (inf when there is none): the nested inner loops' score."""
    ok = np.isfinite(pred)
    if not ok.any():
        return float("inf")
    return float(np.sqrt(np.mean((actual[ok] - pred[ok]) ** 2)))


def chosen_shares(outer_choices: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Nested CV: the share of outer folds whose inner loop picked each label."""
    n = max(len(outer_choices), 1)
    return {label: outer_choices.count(label) / n for label in labels}


__all__ = ["BBC", "BBC_REPLICATES", "FIGURES", "METHODS", "NESTED", "bootstrap_corrected", "check_method",
           "chosen_shares", "corrected_figures", "finite_rmse", "method_text"]
