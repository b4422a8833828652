"""The run engine: materialise assets in this process against the persistent Dagster instance.

``wijk-assets materialize`` (:func:`materialize_all`) and ``wijk-assets refresh``
(:mod:`wijk_assets.runner.refresh`) launch every run through :func:`materialize_keys`.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from wijk_assets.settings import REPO_ROOT, Settings, load_settings

DEFAULT_DAGSTER_HOME = REPO_ROOT / ".dagster_home"

# Instance config written on first use: one slot in the "duckdb" pool, so runs launched from the UI in
# parallel queue for the database file instead of failing on DuckDB's single-writer lock; and Dagster's
# SQLite event log in its usual files, with its connections kept between events (see
# wijk_assets.runner.event_storage: ~10 -> ~4 ms per event, ~1,070 events in a national build).
DAGSTER_YAML = """\
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 4
telemetry:
  enabled: false
event_log_storage:
  module: wijk_assets.runner.event_storage
  class: KeptConnectionSqliteEventLogStorage
  config:
    dagster_home: {dagster_home}
"""


def instance_yaml(home: Path | str | None = None) -> str:
    """The ``dagster.yaml`` that ``wijk-assets`` writes into a new Dagster home: the event log under
    ``$DAGSTER_HOME`` (read when the instance loads, so the home can move). ``home``: a fixed home
    instead (the benchmark's instances, which are not loaded through ``DAGSTER_HOME``)."""
    where = "{env: DAGSTER_HOME}" if home is None else json.dumps(str(Path(home).resolve()))
    return DAGSTER_YAML.format(dagster_home=where)


def ensure_dagster_home() -> Path:
    home = Path(load_settings().dagster_home or DEFAULT_DAGSTER_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(instance_yaml(), encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


# Dagster's console logger prints every engine event at DEBUG, and failures with their stack traces; the
# CLI prints its own progress lines, the error of a failed run in one line and a STUCK block per refused
# raw partition instead. The full event log is in the instance (and the UI) either way.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class StepTiming:
    label: str
    seconds: float
    success: bool
    partition: str | None = None


@dataclass
class MaterializeReport:
    timings: list[StepTiming] = field(default_factory=list)
    # Outcome partitions stopped by a blocking quality gate on a *model* (not an error): their
    # explanations are not (re)published; everything else carried on.
    blocked: list[str] = field(default_factory=list)
    # Outcomes gate 3 (models/model_gate_verdict) withheld: a successful run, not published.
    withheld: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(t.success for t in self.timings)


def stage_job_for(defs, keys: list):
    """The smallest named job that holds every one of ``keys`` (see :mod:`wijk_assets.defs.jobs`)."""
    wanted = set(keys)
    best = None
    for job in defs.resolve_all_job_defs():
        if job.name.startswith("__"):
            continue
        selected = set(job.asset_layer.selected_asset_keys)
        if wanted <= selected and (best is None or len(selected) < len(best[1])):
            best = (job, selected)
    return best[0] if best else None


def materialize_keys(
    defs,
    instance,
    keys: list,
    partition_key: str | None,
    *,
    trigger: str,
    tags: dict[str, str] | None = None,
    raise_on_error: bool = False,
):
    """One in-process run of ``keys`` (one partition, or unpartitioned) with their asset checks.

    The one place runs are launched from code: ``wijk-assets materialize`` and ``wijk-assets refresh``.
    The run belongs to the stage's named job, so the UI lists it under that name.
    """
    from wijk_assets.defs.dbt.checks import forget_run_verdicts
    from wijk_assets.defs.models.frame_cache import forget_run_digests, forget_training_frames, reads_training_frame
    from wijk_assets.lib.memory import release_free_memory

    if not reads_training_frame(keys):
        # The training frame kept for the outcome runs (see frame_cache) does not sit on this run's peak.
        forget_training_frames()
        release_free_memory()
    try:
        with _warehouse_held_open(defs, keys):
            return _execute(defs, instance, keys, partition_key, trigger=trigger, tags=tags, raise_on_error=raise_on_error)
    finally:
        # Runs execute one after another in this process: what a run kept for its own steps is dropped
        # and what its frames freed goes back to the operating system before the next one, so each
        # run's peak does not sit on the last one's (the training frame stays for the next outcome run).
        forget_run_digests()
        forget_run_verdicts()
        release_free_memory()


# The asset groups whose runs hold the warehouse file open (see _warehouse_held_open).
HELD_OPEN_GROUPS = frozenset({"monitoring", "publish", "reports"})


def _warehouse_held_open(defs, keys: list):
    """The warehouse file held open for a run of monitoring, publish and report assets only (see
    ``warehouse.held_open``): its steps share one open database instead of opening and closing the file a
    dozen times (the run: 5.1 instead of 6.1 s). Every other run opens the file per connect, as measured:

    * raw partitions: slower held open (+0.05 s per partition);
    * dbt steps: dbt opens the file from its own process;
    * the model selection: the open database's buffers stay on its memory peak (+130-240 MiB on lbm);
    * the model, gate 3 and explanation steps: no faster held open.
    """
    from wijk_assets.lib.warehouse import held_open

    path = getattr((defs.resources or {}).get("duckdb"), "path", None)
    graph = defs.resolve_asset_graph()
    if path is None or not keys or any(graph.get(k).group_name not in HELD_OPEN_GROUPS for k in keys):
        return contextlib.nullcontext()
    return held_open(path)


def _execute(defs, instance, keys: list, partition_key: str | None, *, trigger: str, tags, raise_on_error: bool):
    import dagster as dg

    run_tags = {"wijk_assets/trigger": trigger, **(tags or {})}
    job = stage_job_for(defs, keys)
    if job is None:  # keys that no single stage job holds: an ad hoc run of exactly these assets
        return dg.materialize(
            list(defs.assets or []) + list(defs.asset_checks or []),
            selection=dg.AssetSelection.assets(*keys),
            partition_key=partition_key,
            instance=instance,
            resources=defs.resources,
            raise_on_error=raise_on_error,
            tags=run_tags,
            run_config=QUIET_RUN_CONFIG,
        )
    return job.execute_in_process(
        run_config=QUIET_RUN_CONFIG,
        instance=instance,
        partition_key=partition_key,
        raise_on_error=raise_on_error,
        asset_selection=list(keys),
        tags=run_tags,
    )


def register_partitions(instance, cbs, sources: list[str]) -> dict[str, list[str]]:
    """Add every release year the sources offer as a dynamic partition; returns source -> years."""
    from wijk_assets.defs.raw.assets import release_year_partitions

    found: dict[str, list[str]] = {}
    for source in sources:
        years = [str(y) for y in cbs.available_years(source)]
        name = release_year_partitions(source).name
        existing = set(instance.get_dynamic_partitions(name))
        new = [y for y in years if y not in existing]
        if new:
            instance.add_dynamic_partitions(name, new)
        found[source] = years
    return found


def materialize_all(
    settings: Settings | None = None,
    instance=None,
    *,
    sources: list[str] | None = None,
    downstream: bool = True,
    raise_on_error: bool = False,
    log=print,
) -> MaterializeReport:
    """Materialise every raw partition, then all unpartitioned assets downstream."""
    import dagster as dg

    from wijk_assets.defs.resources import cbs_resource
    from wijk_assets.lib import prestage
    from wijk_assets.lib.sources.catalog import source_names

    settings = settings or load_settings()
    sources = sources or source_names()
    # Large raw partitions are read, staged and GE-checked by a worker process while this one loads the
    # others (wijk_assets.lib.prestage). It starts first, with the definitions' source settings: it reads
    # while this process imports and builds the definitions (~3 s at one core), and is stopped when the raw
    # stage ends.
    cbs = cbs_resource(settings)
    large = prestage.candidates(cbs, sources)
    report = MaterializeReport()
    with contextlib.ExitStack() as build:
        with prestage.prestaging(cbs, large, log=log):  # the worker: from here to the raw stage's end
            from wijk_assets.defs.dbt.in_process import dbt_in_this_process
            from wijk_assets.defs.dbt.project import parse_state_in_background
            from wijk_assets.definitions import build_definitions

            if instance is None:
                ensure_dagster_home()
                instance = dg.DagsterInstance.get()
            defs = build_definitions(settings)
            # dbt's parse for this warehouse file (when the project's was made for another) runs beside the
            # raw stage, which runs no dbt; the first dbt step waits for it (wijk_assets.defs.dbt.project).
            # The build's dbt steps run dbt in this process (wijk_assets.defs.dbt.in_process).
            if downstream:
                build.enter_context(parse_state_in_background(settings.duckdb_path, log=log))
            build.enter_context(dbt_in_this_process())
            _load_raw(defs, instance, sources, large, raise_on_error, log, report)
        if downstream:
            _materialize_downstream(defs, instance, raise_on_error, log, report)
    return report


def _load_raw(defs, instance, sources, large, raise_on_error, log, report) -> None:
    """:func:`materialize_all`'s raw stage: one run per partition; ``large`` (the partitions the prestage
    worker prepares) load last, each source's years in order."""
    from wijk_assets.defs.raw.assets import raw_asset_key
    from wijk_assets.lib import prestage

    order, _ = prestage.load_order(register_partitions(instance, defs.resources["cbs"], sources), large)
    for source, year in order:
        start = time.perf_counter()
        result = materialize_keys(
            defs, instance, [raw_asset_key(source)], year, trigger="cli", raise_on_error=raise_on_error
        )
        seconds = time.perf_counter() - start
        report.timings.append(StepTiming(f"raw/{source}", seconds, result.success, year))
        log(f"{'ok ' if result.success else 'FAILED'} raw/{source} [{year}] {seconds:.1f}s")
    if not report.success:
        # Failure isolation: a refused partition keeps its previous rows (validate-then-swap), so the
        # rest of the pipeline runs on what is live; the command still ends non-zero.
        log("raw stage: some partitions were refused and keep their previous content (see STUCK below)")


def _materialize_downstream(defs, instance, raise_on_error, log, report) -> None:
    """:func:`materialize_all`'s runs after the raw stage: every other asset, in waves."""
    from wijk_assets.defs.raw.assets import RAW_SOURCES, raw_asset_key

    graph = defs.resolve_asset_graph()
    raw_steps = len(report.timings)
    raw_keys = {raw_asset_key(s) for s in RAW_SOURCES}
    rest = [k for k in graph.toposorted_asset_keys if k not in raw_keys and graph.get(k).is_materializable]
    for partitions_def, keys in plan_waves(graph, rest):
        partition_keys = partitions_def.get_partition_keys() if partitions_def else [None]
        for partition_key in partition_keys:
            start = time.perf_counter()
            result = materialize_keys(
                defs, instance, keys, partition_key, trigger="cli", raise_on_error=raise_on_error
            )
            seconds = time.perf_counter() - start
            gate = _blocking_gate_failures(result) if not result.success else []
            blocked_only = bool(gate) and partition_key is not None
            for step, (step_seconds, ok) in _step_timings(instance, result.run_id).items():
                report.timings.append(StepTiming(step, step_seconds, ok or blocked_only, partition_key))
            names = ", ".join(k.to_user_string() for k in keys[:3]) + (" …" if len(keys) > 3 else "")
            part = f" [{partition_key}]" if partition_key else ""
            status = "ok " if result.success else ("BLOCKED" if blocked_only else "FAILED")
            log(f"{status} {len(keys)} assets ({names}){part} {seconds:.1f}s")
            for line in _withheld(result):
                report.withheld.append(line)
                log(f"   WITHHELD by gate 3: {line} - this outcome is not published")
            for line in warning_lines(check_warnings(result)):
                log(line)
            if blocked_only:
                report.blocked.extend(f"{partition_key}: {g}" for g in gate)
                log(f"   gate: {'; '.join(gate)} - this partition's outputs are not published")
            elif not result.success:
                report.timings.append(StepTiming(f"run {result.run_id}", seconds, False, partition_key))
        if not all(t.success for t in report.timings[raw_steps:]):
            log("stopped: later assets keep their previous content")
            break


def _withheld(result) -> list[str]:
    from wijk_assets.defs.models.gate import withheld_in_result

    return withheld_in_result(result)


def _blocking_gate_failures(result) -> list[str]:
    """Names and verdicts of failed blocking checks, when they are the *only* reason a run failed."""
    failures = result.get_step_failure_events()
    if not failures or any(
        f.event_specific_data.error is None
        or f.event_specific_data.error.cls_name != "DagsterAssetCheckFailedError"
        for f in failures
    ):
        return []
    out = []
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            problems = evaluation.metadata.get("problems")
            detail = getattr(problems, "value", None) or ""
            out.append(f"{evaluation.check_name}: {detail}".strip(": "))
    return out


def warning_lines(warnings: list[str]) -> list[str]:
    """The log lines of :func:`check_warnings`: ``   WARNING <first line>``, further lines indented."""
    out = []
    for warning in warnings:
        first, *rest = warning.splitlines() or [""]
        out += [f"   WARNING {first}", *(f"      {more}" for more in rest)]
    return out


def check_warnings(result) -> list[str]:
    """"<asset> <check>: <what it found>" for every warning (a failed non-blocking check of severity WARN)
    the run's checks gave: the run succeeds, but the person who started it should read them."""
    import dagster as dg

    out = []
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN:
            summary = evaluation.metadata.get("summary")
            detail = str(getattr(summary, "value", "") or evaluation.description or "").strip()
            out.append(f"{evaluation.asset_key.to_user_string()} {evaluation.check_name}: {detail}".strip(": "))
    return out


def plan_waves(graph, keys: list) -> list[tuple[object, list]]:
    """Split topologically sorted asset keys into runs that share one partitions definition.

    Unpartitioned assets run together; assets partitioned by outcome run once per outcome; a wave
    never contains an asset whose upstream (within ``keys``) is in a later wave.
    """
    keyset = set(keys)
    remaining = list(keys)
    done: set = set()
    waves = []
    while remaining:
        partitions_def = graph.get(remaining[0]).partitions_def
        wave: list = []
        for key in remaining:
            node = graph.get(key)
            upstream_ready = all(
                up in done or up in wave or up not in keyset for up in node.parent_keys
            )
            if node.partitions_def == partitions_def and upstream_ready:
                wave.append(key)
        done.update(wave)
        remaining = [k for k in remaining if k not in done]
        waves.append((partitions_def, wave))
    return waves


def _step_timings(instance, run_id: str) -> dict[str, tuple[float, bool]]:
    """Wall time per step of a run, from its event log (STEP_START -> STEP_SUCCESS/FAILURE)."""
    from dagster import DagsterEventType

    starts: dict[str, float] = {}
    out: dict[str, tuple[float, bool]] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts[event.step_key] = record.timestamp
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            begun = starts.get(event.step_key, record.timestamp)
            out[event.step_key] = (
                record.timestamp - begun,
                event.event_type == DagsterEventType.STEP_SUCCESS,
            )
    return out
