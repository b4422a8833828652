"""Doing in one process what the release sensor and the automation sensor do with a daemon.

A Dagster daemon (``dagster dev`` or ``dagster-daemon run``) evaluates the ``release_sensor`` and the
``wijk_automation`` sensor on its own. A municipality that runs the pipeline from a scheduled job
(cron, a CI runner) instead of a daemon uses ``wijk-assets refresh``; tests use the same functions to
show what the sensors would have done, step by step:

1. :func:`apply_sensor_result` registers the partitions a sensor tick asked for and executes its run
   requests (the raw partitions whose source is new or changed);
2. :func:`follow_automation` evaluates the *declared* automation conditions of every asset (see
   :func:`wijk_assets.defs.automation.conditions.downstream_automation_condition`) tick after tick and executes what they
   request, until nothing is requested any more.

Nothing here decides *what* runs: the sensor's plan and the assets' conditions do. Runs are executed
one after the other in this process, so the DuckDB file never has two writers.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field

import dagster as dg

from wijk_assets.runner.materialize import (
    _blocking_gate_failures,
    _withheld,
    check_warnings,
    warning_lines,
    ensure_dagster_home,
    materialize_keys,
)
from wijk_assets.runner.focus import remake_for_focus
from wijk_assets.runner.retry import failed_downstream, failed_with_error, retry_requests
from wijk_assets.settings import Settings, load_settings

MAX_AUTOMATION_TICKS = 25
# Where ``refresh`` keeps its automation cursor between invocations: the instance's key-value store (the
# daemon keeps its sensors' cursors in the same run storage).
CURSOR_KEY = "wijk_assets/refresh_automation_cursor"


@dataclass
class ExecutedRun:
    """One run this module launched: what it materialised, for which partition, and how it ended."""

    trigger: str  # "release_sensor", "automation tick 3", …
    asset_keys: list[str]
    partition_key: str | None
    run_id: str
    success: bool
    seconds: float
    failed_checks: list[str] = field(default_factory=list)  # "<check>: <verdict>" when only gates failed
    error: str = ""  # the first failed step's error, in one line (no stack trace)
    materialised: list[tuple[str, str | None]] = field(default_factory=list)  # (asset key, partition)
    withheld_outcomes: list[str] = field(default_factory=list)  # "<outcome>: <reason>" from gate 3's verdict asset
    warnings: list[str] = field(default_factory=list)  # failed warning checks: "<asset> <check>: <summary>"


@dataclass
class RefreshReport:
    runs: list[ExecutedRun] = field(default_factory=list)
    ticks: int = 0  # automation ticks evaluated, the last of which requested nothing
    automation_cursor: object | None = None
    # source -> why its files/tables could not be listed (e.g. a file in another format): the release
    # check could not see that source's releases, so the refresh did not do all it was asked to
    unreadable: dict[str, str] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        # a withheld outcome (gate 3) is a successful run with verdict "withheld", not a failure
        return all(r.success for r in self.runs) and not self.unreadable

    def materialised(self) -> dict[str, list[str | None]]:
        """asset key -> partitions the runs materialised, in execution order (a run stopped by a gate
        counts with what it materialised before the gate)."""
        out: dict[str, list[str | None]] = defaultdict(list)
        for run in self.runs:
            for key, partition in run.materialised:
                out[key].append(partition)
        return dict(out)


def execute(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    keys: list[dg.AssetKey],
    partition_key: str | None,
    *,
    trigger: str,
    tags: dict[str, str] | None = None,
) -> ExecutedRun:
    """Materialise ``keys`` (one partition, or unpartitioned) with their asset checks, in-process (dbt
    too: :mod:`wijk_assets.defs.dbt.in_process`)."""
    from wijk_assets.defs.dbt.in_process import dbt_in_this_process

    start = time.perf_counter()
    with dbt_in_this_process():
        result = materialize_keys(defs, instance, keys, partition_key, trigger=trigger.split(" ")[0], tags=tags)
    failed = _blocking_gate_failures(result) if not result.success else []
    error = ""
    if not result.success and not failed:
        from wijk_assets.runner.status import _run_error

        error = _run_error(instance, result.run_id)
    return ExecutedRun(
        trigger=trigger,
        asset_keys=[k.to_user_string() for k in keys],
        partition_key=partition_key,
        run_id=result.run_id,
        success=result.success,
        seconds=time.perf_counter() - start,
        failed_checks=failed,
        error=error,
        materialised=[
            (e.asset_key.to_user_string(), e.partition) for e in result.get_asset_materialization_events()
            for e in [e.event_specific_data.materialization]
        ],
        withheld_outcomes=_withheld(result),
        warnings=check_warnings(result),
    )


def apply_sensor_result(
    defs: dg.Definitions, instance: dg.DagsterInstance, result: dg.SensorResult, *, trigger: str, log=print
) -> list[ExecutedRun]:
    """Register the dynamic partitions a sensor tick requested, then execute its run requests in order."""
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            log(f"partition added: {request.partitions_def_name} {', '.join(request.partition_keys)}")
    runs = []
    for request in result.run_requests or []:
        run = execute(
            defs, instance, list(request.asset_selection or []), request.partition_key,
            trigger=trigger, tags=dict(request.tags),
        )
        runs.append(run)
        _log_run(log, run)
    return runs


def _requested(result, graph) -> dict[dg.AssetKey, set[str | None]]:
    """asset key -> partitions this evaluation requested.

    Read from the evaluator's requests, not from each asset's own condition result: when one asset of
    a multi-asset that cannot be subset (``explanations``) is requested, Dagster requests all of them
    together (as the daemon's run requests do), although the others' own conditions may be false (a new
    feature table re-runs the drivers, not the SHAP values)."""
    out = {}
    for key in graph.materializable_asset_keys:
        partitions = set(result.get_requested_partitions(key))
        if partitions:
            out[key] = partitions
    return out


def _run_groups(graph, requested: dict[dg.AssetKey, set[str | None]]) -> list[tuple[str | None, list[dg.AssetKey]]]:
    """One run per partition key (unpartitioned assets together), upstream groups first.

    Dagster's automation only requests an asset together with an upstream asset that is requested in
    the same tick when both can run in one run, so runs of one tick never wait for each other; the
    order only keeps logs readable.
    """
    order = {key: i for i, key in enumerate(graph.toposorted_asset_keys)}
    groups: dict[str | None, list[dg.AssetKey]] = defaultdict(list)
    for key, partitions in requested.items():
        for partition in partitions:
            groups[partition].append(key)
    ordered = sorted(groups.items(), key=lambda item: (min(order[k] for k in item[1]), str(item[0])))
    return [(partition, sorted(keys, key=order.__getitem__)) for partition, keys in ordered]


@contextmanager
def dynamic_partitions_read_once(instance: dg.DagsterInstance):
    """Within the block, each dynamic partitions definition's keys are read from the instance once.

    ``dg.evaluate_automation_conditions`` serialises its new cursor with the instance itself as the
    dynamic-partitions store (the daemon uses its caching queryer there), and that asks for the keys of
    a raw source's release years once per condition node and partitioned subset: ~1,000 reads of the
    partitions table per evaluation on this asset graph, each with a fresh SQLAlchemy engine: 2.1-2.4 s
    per evaluation on the national warehouse, 0.6-0.9 s with one read per name. Partitions are only
    added between evaluations (by the release sensor's result, :func:`apply_sensor_result`), never
    during one, so one read per name is the same answer.
    """
    read = instance.get_dynamic_partitions
    own = vars(instance).get("get_dynamic_partitions")  # already wrapped on this object (nested use)
    keys: dict[str, list[str]] = {}

    def get_dynamic_partitions(partitions_def_name: str) -> list[str]:
        if partitions_def_name not in keys:
            keys[partitions_def_name] = list(read(partitions_def_name))
        return list(keys[partitions_def_name])

    instance.get_dynamic_partitions = get_dynamic_partitions  # this instance object only
    try:
        yield
    finally:
        if own is None:
            del instance.get_dynamic_partitions  # the class's method again
        else:
            instance.get_dynamic_partitions = own


def evaluate_automation(defs: dg.Definitions, instance: dg.DagsterInstance, cursor=None):
    """``dg.evaluate_automation_conditions`` with each dynamic partitions definition read once."""
    with dynamic_partitions_read_once(instance):
        return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)


def stored_cursor(instance: dg.DagsterInstance, log=print):
    """The automation cursor the last ``refresh`` on this instance left (:func:`store_cursor`), or None
    (none yet, or one this Dagster version cannot read: the refresh then starts from a baseline)."""
    raw = instance.run_storage.get_cursor_values({CURSOR_KEY}).get(CURSOR_KEY)
    if not raw:
        return None
    try:
        return dg.deserialize_value(raw)
    except Exception as error:  # noqa: BLE001 - e.g. written by another Dagster version
        log(f"the stored automation cursor cannot be read ({type(error).__name__}: {error}); "
            "this refresh starts from a new baseline")
        return None


def store_cursor(instance: dg.DagsterInstance, cursor) -> None:
    instance.run_storage.set_cursor_values({CURSOR_KEY: dg.serialize_value(cursor)})


def follow_automation(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    *,
    cursor=None,
    max_ticks: int = MAX_AUTOMATION_TICKS,
    log=print,
    persist: bool = False,
) -> RefreshReport:
    """Evaluate the assets' automation conditions and execute what they request until nothing is.

    Pass the ``cursor`` of an earlier call (``report.automation_cursor``): conditions such as "a
    dependency has new data" compare with the previous evaluation, so the first evaluation ever only
    establishes that baseline (and requests missing assets).

    ``persist``: store the cursor in the instance (:func:`store_cursor`) after each tick's runs have
    finished, so the next ``refresh`` continues from it. Stored only then: a process that dies during a
    tick's runs leaves the previous tick's cursor, and the next refresh requests that tick again.
    """
    report = RefreshReport(automation_cursor=cursor)
    graph = defs.resolve_asset_graph()
    for tick in range(1, max_ticks + 1):
        result = evaluate_automation(defs, instance, report.automation_cursor)
        report.ticks = tick
        requested = _requested(result, graph)
        for partition, keys in _run_groups(graph, requested):
            run = execute(defs, instance, keys, partition, trigger=f"automation tick {tick}")
            report.runs.append(run)
            _log_run(log, run)
        report.automation_cursor = result.cursor
        if persist:
            store_cursor(instance, result.cursor)
        if not requested:
            return report
    raise RuntimeError(
        f"automation still requested runs after {max_ticks} ticks; a condition keeps re-triggering "
        "(see the runs above)"
    )


def _log_run(log, run: ExecutedRun) -> None:
    names = ", ".join(run.asset_keys[:3]) + (f" … (+{len(run.asset_keys) - 3})" if len(run.asset_keys) > 3 else "")
    part = f" [{run.partition_key}]" if run.partition_key else ""
    status = "ok " if run.success else "FAILED"
    checks = f"; failed checks: {', '.join(run.failed_checks)}" if run.failed_checks else ""
    log(f"{status} {run.trigger}: {names}{part} {run.seconds:.1f}s{checks}")
    for line in run.withheld_outcomes:
        log(f"   WITHHELD by gate 3: {line} - this outcome is not published")
    for line in warning_lines(run.warnings):
        log(line)
    if run.error:
        log(f"   error: {run.error}")


def refresh(settings: Settings | None = None, instance: dg.DagsterInstance | None = None, *, log=print,
            defs: dg.Definitions | None = None) -> RefreshReport:
    """``wijk-assets refresh``: load new or changed source releases, then everything that follows from them.

    What counts as a new or changed release is decided against the files/tables the raw partitions
    were last materialised from (the weekly schedule's comparison), so it needs no sensor cursor.

    The automation's cursor is kept in the instance from one refresh to the next (:data:`CURSOR_KEY`),
    as the daemon keeps its own: "a dependency has new data" means new since the last evaluation, also
    across refreshes. Without it every refresh began with a baseline evaluation, which counted
    everything before it as already handled, so raw partitions a refresh had loaded before it was
    stopped (a crash, a killed cron job), or that someone materialised in the UI, never reached the
    marts, models and pages. The first refresh on an instance still begins with that baseline.

    A downstream run that failed with an unexpected error before this refresh (not a refusal, not a raw
    load: see :mod:`wijk_assets.runner.retry`), and that nothing in this refresh ran again, is retried
    once at the end, followed by what depends on it; it was counted as handled, so without the retry
    its asset kept its previous version until the next release of one of its sources.
    The reports about the focus gemeente (wijkbeeld, register entry, model card) last made for another
    gemeente than ``WIJK_GEMEENTE`` are made again at the end (:mod:`wijk_assets.runner.focus`).
    ``defs``: the definitions to run (default: :func:`wijk_assets.definitions.build_definitions`).
    """
    from wijk_assets.defs.raw.assets import RAW_SOURCES
    from wijk_assets.definitions import build_definitions
    from wijk_assets.runner.status import forget_unloaded_orphans
    from wijk_assets.defs.automation.release_sensor import run_requests
    from wijk_assets.defs.automation.schedules import weekly_refresh_plan

    settings = settings or load_settings()
    if instance is None:
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
    defs = defs or build_definitions(settings)
    cursor = stored_cursor(instance, log=log)
    # runs that failed with an error before this refresh (see .retry); retried below unless this
    # refresh runs those assets anyway
    failed_before = set(failed_downstream(defs, instance)) if cursor is not None else set()
    if cursor is None:
        # The first refresh here: a baseline evaluation first ("new data upstream" is relative to the
        # previous evaluation), which also requests what is missing.
        report = follow_automation(defs, instance, log=log, persist=True)
    else:  # what happened since the last refresh is followed below, with this release's runs
        report = RefreshReport(automation_cursor=cursor)
    # A partition that never loaded and whose files were removed is dropped (neither missing nor stuck).
    forget_unloaded_orphans(instance, defs.resources["cbs"], RAW_SOURCES, log=log)
    plan, listing = weekly_refresh_plan(defs.resources["cbs"], instance, RAW_SOURCES)
    for source, error in listing.errors.items():
        log(f"could not list {source}: {error}; its partitions keep their previous content")
    report.unreadable = dict(listing.errors)
    # after a "could not list" line: the check's verdict is about the sources it could read
    log(f"release check{' of the other sources' if listing.errors else ''}: {plan.summary()}")
    if settings.data_dir is not None:
        from wijk_assets.lib.sources.catalog import unmatched_file_lines

        for line in unmatched_file_lines(settings.data_dir):
            log(line)
    for source, years in plan.new_partitions.items():
        log(f"partition added: {source} {', '.join(years)}")
    report.runs += apply_sensor_result(
        defs, instance, dg.SensorResult(run_requests=run_requests(plan, "refresh")), trigger="refresh", log=log
    )
    if not all(run.success for run in report.runs):
        log("a raw load failed: its partition keeps its previous content (validated before the swap); "
            "the changes of every other source follow below")
    _follow(defs, instance, report, log)
    retry_failed_runs(defs, instance, failed_before, report, log=log)
    # last: a report this refresh made already has the current gemeente (see .focus)
    focus_run = remake_for_focus(defs, instance, settings.gemeente, execute=execute, log=log)
    if focus_run is not None:
        report.runs.append(focus_run)
        _log_run(log, focus_run)
        _follow(defs, instance, report, log)
    return report


def retry_failed_runs(defs: dg.Definitions, instance: dg.DagsterInstance, failed_before: set, report: RefreshReport,
                      *, log=print) -> None:
    """Run again, once, what ``failed_before`` (:func:`wijk_assets.runner.retry.failed_with_error`, taken
    before this refresh ran anything) still holds as the latest failed attempt of its asset, i.e. what
    nothing in this refresh ran again; then follow what depends on it. Appends to ``report``."""
    if not failed_before:
        return
    graph = defs.resolve_asset_graph()
    others = set(graph.materializable_asset_keys) - {a.key for a in failed_before}
    still = set(failed_with_error(instance, graph, skip=others))
    pending = sorted(failed_before & still, key=lambda a: (a.key.to_user_string(), str(a.partition)))
    if not pending:
        return
    for attempt in pending:
        part = f" [{attempt.partition}]" if attempt.partition else ""
        log(f"retry: {attempt.key.to_user_string()}{part} failed with an error in run {attempt.run_id[:8]} "
            f"({attempt.error}); it runs again once")
    for partition, keys in _run_groups(graph, retry_requests(graph, pending)):
        run = execute(defs, instance, keys, partition, trigger="retry of a failed run")
        report.runs.append(run)
        _log_run(log, run)
    _follow(defs, instance, report, log)  # what follows from the retried assets


def _follow(defs: dg.Definitions, instance: dg.DagsterInstance, report: RefreshReport, log) -> None:
    followed = follow_automation(defs, instance, cursor=report.automation_cursor, log=log, persist=True)
    report.runs += followed.runs
    report.ticks += followed.ticks
    report.automation_cursor = followed.automation_cursor


__all__ = ["CURSOR_KEY", "ExecutedRun", "RefreshReport", "apply_sensor_result", "stored_cursor", "store_cursor", "dynamic_partitions_read_once", "evaluate_automation",
           "execute", "follow_automation", "refresh", "retry_failed_runs"]
