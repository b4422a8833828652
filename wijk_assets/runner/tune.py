"""``wijk-assets tune``: run the model selection again, on demand, then let the
models and everything after them follow.

A refresh never searches settings: ``models/model_selection`` keeps the stored choice unless the training
data changed beyond its documented rule (:func:`wijk_assets.lib.ml.selection.retune_reason`). This command
is the "when asked" route: it runs the ``tune_models`` job with ``retune: true`` for each outcome (with
``--nested``, the choice is scored by nested grouped CV instead of BBC-CV: the auditor's check), prints
what was chosen and how it scored, and then runs a refresh, so models whose choice changed are retrained
(and their gate verdicts, explanations and reports follow); an unchanged choice retrains nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from wijk_assets.settings import Settings


def tune(settings: Settings, outcomes: Sequence[str] | None = None, instance=None,
         log: Callable[[str], None] = print, *, nested: bool = False) -> bool:
    import dagster as dg

    from wijk_assets.definitions import build_definitions
    from wijk_assets.defs.models.selection import retune_run_config
    from wijk_assets.defs.resources import WarehouseResource
    from wijk_assets.defs.models.store import load_selection
    from wijk_assets.keys import OUTCOMES
    from wijk_assets.lib.ml.selection_estimate import corrected_figures
    from wijk_assets.runner.materialize import QUIET_RUN_CONFIG, ensure_dagster_home
    from wijk_assets.runner.refresh import refresh

    chosen = list(outcomes or OUTCOMES)
    unknown = sorted(set(chosen) - set(OUTCOMES))
    if unknown:
        raise SystemExit(f"wijk-assets tune: unknown outcome(s) {unknown}; choose from {', '.join(OUTCOMES)}")
    if instance is None:
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
    defs = build_definitions(settings)
    job = defs.resolve_job_def("tune_models")
    warehouse = WarehouseResource(path=str(settings.duckdb_path))
    ok = True
    for outcome in chosen:
        before = load_selection(warehouse, outcome)
        result = job.execute_in_process(
            run_config={**QUIET_RUN_CONFIG, **retune_run_config(nested)}, instance=instance, partition_key=outcome,
            raise_on_error=False, tags={"wijk_assets/trigger": "tune"},
        )
        if not result.success:
            ok = False
            log(f"FAILED tune [{outcome}]: see the run in the Dagster UI (run id {result.run_id})")
            continue
        after = load_selection(warehouse, outcome)
        corrected = corrected_figures(after["record"])
        change = ("unchanged" if before and before["selection_version"] == after["selection_version"]
                  else f"new choice (was {before['record']['chosen']['config']})" if before else "first choice")
        log(f"tuned [{outcome}]: {after['record']['chosen']['config']} ({change}); R² corrected for the choice "
            f"({corrected['method']}) {corrected['r2']:.4f}, margin over ridge {corrected['margin_r2']:+.4f} "
            f"({corrected['level']:.0%} interval {corrected['margin_lower']:+.4f} to "
            f"{corrected['margin_upper']:+.4f}); "
            f"params {json.dumps(after['params'], sort_keys=True)}")
    report = refresh(settings, instance, log=log)
    return ok and report.success
