"""``wijk-assets``: the command a data engineer runs outside the UI.

``wijk-assets materialize`` registers the release-year partitions the sources offer and materialises
every asset (raw partitions one year at a time, then everything downstream) in this process, against
the persistent Dagster instance in ``$DAGSTER_HOME`` so the runs show up in ``dagster dev`` afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from wijk_assets.settings import REPO_ROOT, Settings, load_settings

DEFAULT_DAGSTER_HOME = REPO_ROOT / ".dagster_home"

# Instance config written on first use: one slot in the "duckdb" pool, so runs launched from the UI in
# parallel queue for the database file instead of failing on DuckDB's single-writer lock.
DAGSTER_YAML = """\
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 4
telemetry:
  enabled: false
"""


def ensure_dagster_home() -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML, encoding="utf-8")
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

    @property
    def success(self) -> bool:
        return all(t.success for t in self.timings)


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
    """
    import dagster as dg

    return dg.materialize(
        list(defs.assets or []) + list(defs.asset_checks or []),
        selection=dg.AssetSelection.assets(*keys),
        partition_key=partition_key,
        instance=instance,
        resources=defs.resources,
        raise_on_error=raise_on_error,
        tags={"wijk_assets/trigger": trigger, **(tags or {})},
        run_config=QUIET_RUN_CONFIG,
    )


def register_partitions(instance, cbs, sources: list[str]) -> dict[str, list[str]]:
    """Add every release year the sources offer as a dynamic partition; returns source -> years."""
    from wijk_assets.assets.raw import release_year_partitions

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

    from wijk_assets.assets.raw import RAW_SOURCES, raw_asset_key
    from wijk_assets.definitions import build_definitions

    settings = settings or load_settings()
    if instance is None:
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    sources = sources or RAW_SOURCES
    report = MaterializeReport()

    for source, years in register_partitions(instance, defs.resources["cbs"], sources).items():
        for year in years:
            start = time.perf_counter()
            result = materialize_keys(
                defs, instance, [raw_asset_key(source)], year, trigger="cli", raise_on_error=raise_on_error
            )
            seconds = time.perf_counter() - start
            report.timings.append(StepTiming(f"raw/{source}", seconds, result.success, year))
            log(f"{'ok ' if result.success else 'FAILED'} raw/{source} [{year}] {seconds:.1f}s")

    raw_steps = len(report.timings)
    if not report.success:
        # Failure isolation: a refused partition keeps its previous rows (validate-then-swap), so the
        # rest of the pipeline runs on what is live; the command still ends non-zero.
        log("raw stage: some partitions were refused and keep their previous content (see STUCK below)")
    if downstream:
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
                if blocked_only:
                    report.blocked.extend(f"{partition_key}: {g}" for g in gate)
                    log(f"   gate: {'; '.join(gate)} - this partition's outputs are not published")
                elif not result.success:
                    report.timings.append(StepTiming(f"run {result.run_id}", seconds, False, partition_key))
            if not all(t.success for t in report.timings[raw_steps:]):
                log("stopped: later assets keep their previous content")
                break
    return report


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


def print_status(settings: Settings, *, stale: bool, instance=None) -> int:
    """Print one block per stuck raw partition (and, with ``stale``, the stale/missing assets).

    Returns the number of stuck partitions (``wijk-assets status`` exits 1 when there are any)."""
    import dagster as dg

    from wijk_assets.definitions import build_definitions
    from wijk_assets.release_status import stale_assets, status_lines, stuck_partitions

    if instance is None:
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
    defs = build_definitions(settings)
    stuck = stuck_partitions(instance, defs.resources["cbs"], settings.duckdb_path)
    lines = status_lines(stuck, stale_assets(defs, instance) if stale else [])
    if not stale:
        lines = lines[:-1] if stuck else []
    for line in lines:
        print(line)
    return len(stuck)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wijk-assets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    mat = sub.add_parser("materialize", help="materialise every asset on the configured data")
    mat.add_argument("--raw-only", action="store_true", help="only the raw source partitions")
    mat.add_argument("--source", action="append", help="limit raw loading to this source (repeatable)")
    sub.add_parser(
        "refresh",
        help="load new or changed source releases, then rebuild what depends on them (the sensors' work, "
        "without a daemon)",
    )
    sub.add_parser("partitions", help="list the release years each source offers")
    sub.add_parser(
        "status",
        help="show stuck raw partitions (a refused or unreadable file: file, reason, what to do) and stale assets",
    )
    lineage = sub.add_parser(
        "lineage",
        help="write the auditor's lineage report (asset graph, code/data versions, check history) as Markdown",
    )
    lineage.add_argument("--out", default="-", help="output file (default: standard output)")
    lineage.add_argument("--history", type=int, default=5, help="materialisations listed per asset")
    args = parser.parse_args(argv)

    settings = load_settings()
    print(
        f"wijk-assets: mode={settings.mode} data_dir={settings.data_dir} "
        f"duckdb={settings.duckdb_path} gemeente={settings.gemeente}"
    )
    if args.command == "partitions":
        from wijk_assets.definitions import build_resources

        cbs = build_resources(settings)["cbs"]
        from wijk_assets.assets.raw import RAW_SOURCES

        for source in RAW_SOURCES:
            print(f"{source}: {', '.join(str(y) for y in cbs.available_years(source))}")
        return 0
    if args.command == "lineage":
        import dagster as dg

        from wijk_assets.definitions import build_definitions
        from wijk_assets.responsible.audit import lineage_report_markdown

        ensure_dagster_home()
        report = lineage_report_markdown(
            build_definitions(settings), dg.DagsterInstance.get(), history=args.history
        )
        if args.out == "-":
            print(report)
        else:
            Path(args.out).write_text(report, encoding="utf-8")
            print(f"wijk-assets: lineage report written to {args.out}")
        return 0
    if args.command == "status":
        return 1 if print_status(settings, stale=True) else 0
    if args.command == "refresh":
        from wijk_assets.refresh import refresh

        report = refresh(settings)
        changed = sorted(report.materialised())
        stuck = print_status(settings, stale=False)
        print(f"wijk-assets: refresh {'done' if report.success and not stuck else 'FAILED (see above)'}; "
              f"{len(report.runs)} runs, {len(changed)} assets updated; database: {settings.duckdb_path}")
        return 0 if report.success and not stuck else 1
    if args.command == "materialize":
        report = materialize_all(settings, sources=args.source, downstream=not args.raw_only)
        for line in report.blocked:
            print(f"wijk-assets: BLOCKED by a quality gate (not published): {line}")
        stuck = print_status(settings, stale=False)
        done = "all assets materialised" if not report.blocked else "materialised; see BLOCKED lines"
        ok = report.success and not stuck
        print(f"wijk-assets: {done if ok else 'FAILED (see above)'}; database: {settings.duckdb_path}")
        return 0 if ok else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
