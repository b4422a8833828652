"""Gate 3, pure: does the LightGBM model beat the linear (ridge) baseline on evidence, not on noise?

A single pair of CV R² values (0.2222 vs 0.2219) is not evidence: a retrain on the same data in a
different row order moved it by more than that. The gate therefore judges the *paired* difference of
the two models on the same out-of-fold rows (same grouped folds, so the same rows are predicted by
models that never saw their gemeente) and its uncertainty:

* ``margin_r2``: R²(LightGBM) − R²(ridge) on all out-of-fold rows. Both share the same total sum of
  squares, so this equals (SSE_ridge − SSE_lightgbm) / SST.
* ``interval``: a percentile bootstrap over **gemeenten** (the unit the folds are grouped by; wijken
  of one gemeente are not independent). Each replicate draws gemeenten with replacement and recomputes
  the margin from per-gemeente sums, so one replicate costs a matrix product, not a refit. The draws
  come from a fixed seed and the gemeenten are taken in sorted order, so the interval does not depend on
  the order of the rows.
* ``fold_margins``: the margin per CV fold, for the record (five numbers are too few for an interval).

Verdict rule (:data:`RULE`): **published** only when the lower bound of the two-sided interval
(default 90 %, i.e. the 5th percentile) is above 0; otherwise **withheld**, "not shown to beat the
linear baseline". Per-gemeente sums are taken over rows sorted by value, so float summation order, and
with it the verdict, is the same for any row order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

DEFAULT_LEVEL = 0.90
DEFAULT_N_BOOT = 2000
DEFAULT_SEED = 20240917
METHOD = "paired out-of-fold R² difference (LightGBM − ridge), percentile bootstrap over gemeenten"
RULE = "published when the lower bound of the {level:.0%} interval of the R² margin over ridge is above 0"
WITHHELD_NOT_BETTER = "withheld: not shown to beat the linear baseline"


@dataclass(frozen=True)
class BaselineComparison:
    """The paired comparison of a model with a baseline on the same out-of-fold rows."""

    model_r2: float
    baseline_r2: float
    margin_r2: float
    margin_lower: float
    margin_upper: float
    level: float
    n_boot: int
    seed: int
    n_rows: int
    n_groups: int
    fold_margins: list[float] = field(default_factory=list)
    method: str = METHOD

    @property
    def beats_baseline(self) -> bool:
        return bool(np.isfinite(self.margin_lower) and self.margin_lower > 0)

    @property
    def rule(self) -> str:
        return RULE.format(level=self.level)

    def summary(self) -> str:
        """One line: margin and interval, e.g. ``+0.0123 R² (90% interval +0.0051 to +0.0190)``."""
        return (
            f"{self.margin_r2:+.4f} R² over ridge ({self.level:.0%} interval "
            f"{self.margin_lower:+.4f} to {self.margin_upper:+.4f}, {self.n_groups} gemeenten)"
        )

    def to_dict(self) -> dict:
        out = asdict(self)
        out["rule"] = self.rule
        out["beats_baseline"] = self.beats_baseline
        return out


def _group_sums(groups: np.ndarray, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per group (sorted by group code) the sum of each column, summed in a canonical order.

    Rows are sorted by group and then by the summed values themselves, so the float summation order,
    and with it every bit of the result, is independent of the input row order.
    """
    frame = pd.DataFrame({"group": groups.astype(str), **columns})
    frame = frame.sort_values(["group", *columns], kind="mergesort", ignore_index=True)
    return frame.groupby("group", sort=True).sum()


def bootstrap_weights(n_boot: int, n_groups: int, seed: int) -> np.ndarray:
    """``n_boot`` bootstrap draws of ``n_groups`` groups with replacement, as counts per group (one row per
    draw): a replicate's sums are then a matrix product with the per-group sums."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    weights = np.zeros((n_boot, n_groups))
    np.add.at(weights, (np.repeat(np.arange(n_boot), n_groups), draws.ravel()), 1.0)
    return weights


def compare_with_baseline(
    actual,
    model_pred,
    baseline_pred,
    groups,
    folds=None,
    *,
    level: float = DEFAULT_LEVEL,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
) -> BaselineComparison:
    """Paired R² difference of ``model_pred`` over ``baseline_pred`` with a bootstrap interval over
    ``groups``; ``folds`` (one fold number per row, optional) adds the per-fold margins.

    Rows where the actual value or either prediction is missing are left out (both models are judged
    on the same rows)."""
    y = np.asarray(actual, dtype=np.float64)
    pm = np.asarray(model_pred, dtype=np.float64)
    pb = np.asarray(baseline_pred, dtype=np.float64)
    g = np.asarray(groups, dtype=object)
    if not (y.shape == pm.shape == pb.shape == g.shape):
        raise ValueError(
            f"actual, predictions and groups must have one value per row; got lengths "
            f"{y.size}, {pm.size}, {pb.size}, {g.size}"
        )
    ok = np.isfinite(y) & np.isfinite(pm) & np.isfinite(pb) & pd.notna(g)
    y, pm, pb, g = y[ok], pm[ok], pb[ok], g[ok]
    fold = None if folds is None else np.asarray(folds)[ok]
    if y.size < 3:
        raise ValueError(f"need at least 3 out-of-fold rows to compare with the baseline, got {y.size}")

    stats = _group_sums(g, {
        "n": np.ones_like(y), "sy": y, "syy": y * y,
        "sse_model": (y - pm) ** 2, "sse_base": (y - pb) ** 2,
    })
    n, sy, syy = (stats[c].to_numpy() for c in ("n", "sy", "syy"))
    sse_m, sse_b = stats["sse_model"].to_numpy(), stats["sse_base"].to_numpy()

    def margins(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        N, Sy, Syy = weights @ n, weights @ sy, weights @ syy
        sst = Syy - Sy * Sy / N
        return (weights @ sse_b - weights @ sse_m) / sst, 1 - (weights @ sse_m) / sst, 1 - (weights @ sse_b) / sst

    full_margin, model_r2, base_r2 = (float(v[0]) for v in margins(np.ones((1, len(n)))))
    n_groups = len(n)
    boot, _, _ = margins(bootstrap_weights(n_boot, n_groups, seed))
    boot = boot[np.isfinite(boot)]
    alpha = (1 - level) / 2
    lower, upper = (float(np.quantile(boot, q)) for q in (alpha, 1 - alpha)) if boot.size else (np.nan, np.nan)

    fold_margins: list[float] = []
    if fold is not None:
        for k in sorted(set(fold.tolist())):
            rows = fold == k
            ys = np.sort(y[rows])
            sst = float(np.sum(np.sort((ys - ys.mean()) ** 2)))
            sse_gap = float(np.sum(np.sort((y[rows] - pb[rows]) ** 2)) - np.sum(np.sort((y[rows] - pm[rows]) ** 2)))
            fold_margins.append(sse_gap / sst if sst > 0 else float("nan"))

    return BaselineComparison(
        model_r2=model_r2,
        baseline_r2=base_r2,
        margin_r2=full_margin,
        margin_lower=lower,
        margin_upper=upper,
        level=level,
        n_boot=n_boot,
        seed=seed,
        n_rows=int(y.size),
        n_groups=n_groups,
        fold_margins=fold_margins,
    )


def compare_oof(oof: pd.DataFrame, **kwargs) -> BaselineComparison:
    """:func:`compare_with_baseline` on the stored out-of-fold table (columns ``actual``, ``lightgbm``,
    ``ridge``, ``gemeente_code``, ``fold``)."""
    missing = [c for c in ("actual", "lightgbm", "ridge", "gemeente_code") if c not in oof.columns]
    if missing:
        raise KeyError(f"out-of-fold predictions lack column(s) {missing} (have {list(oof.columns)})")
    return compare_with_baseline(
        oof["actual"], oof["lightgbm"], oof["ridge"], oof["gemeente_code"],
        oof["fold"] if "fold" in oof.columns else None, **kwargs,
    )


@dataclass(frozen=True)
class GateVerdict:
    """Gate 3 for one outcome: ``published`` or ``withheld`` with the reasons."""

    outcome: str
    model_version: str
    verdict: str  # "published" | "withheld"
    reasons: list[str]
    comparison: BaselineComparison | None

    @property
    def passed(self) -> bool:
        return self.verdict == "published"

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def decide(
    outcome: str,
    model_version: str,
    comparison: BaselineComparison | None,
    other_problems: list[str] = (),
) -> GateVerdict:
    """The verdict: withheld when the model is not shown to beat ridge, or for any other problem
    (a dominant feature that is mostly missing, SHAP that does not add up)."""
    reasons = []
    if comparison is None:
        reasons.append(f"{WITHHELD_NOT_BETTER} (no ridge baseline on the same folds)")
    elif not comparison.beats_baseline:
        reasons.append(f"{WITHHELD_NOT_BETTER}: {comparison.summary()}")
    reasons.extend(other_problems)
    return GateVerdict(outcome, model_version, "withheld" if reasons else "published", reasons, comparison)


__all__ = [
    "BaselineComparison",
    "GateVerdict",
    "bootstrap_weights",
    "METHOD",
    "RULE",
    "WITHHELD_NOT_BETTER",
    "compare_oof",
    "compare_with_baseline",
    "decide",
]
