"""What is stuck and what is stale: the answer ``wijk-assets status`` / ``refresh`` / ``materialize`` print.

A raw partition is **stuck** when its latest load attempt failed (the reader refused a file, or gate 1
refused the partition) and that source still offers the same data for it: the live table keeps the
previous rows (or none), the automation lets every other change flow past it (see
:func:`wijk_assets.defs.automation.release_sensor.downstream_automation_condition`), and nothing changes until someone
replaces or removes the file. The reason comes from ``quarantine.rejections`` (written by the raw asset,
with the run id) or else from the failed run's error.

A partition whose files are gone is not stuck: :func:`forget_unloaded_orphans` removes it when it
never loaded (so nothing counts it as missing any more); one that did load keeps its last content.

A build is **rejected** when a dbt test, gate 2 or the publication guard refused what a step built: the
live tables stayed the previous ones (:mod:`wijk_assets.lib.build_swap`), the refused tables are in
``quarantine``, and it stands until a later materialisation of the step's assets.

An asset is **stale** when Dagster's data-version lineage says an upstream asset has newer data, or
when it was never materialised (``missing``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path

import dagster as dg

from wijk_assets.lib.warehouse import REJECTIONS_TABLE, connect, quarantine_table
from wijk_assets.runner.retry import error_text, failed_downstream, failed_partition_attempts
from wijk_assets.runner.source_checks import offered_as_loaded, unreadable_sources


@dataclass
class StuckPartition:
    source: str
    year: str
    run_id: str
    stage: str  # "read" | "gate_1" | "run" (no rejection recorded: the run's own error)
    files: list[str] = field(default_factory=list)
    reason: str = ""
    loaded_before: bool = False  # an earlier load of this partition is still live

    def block(self) -> str:
        """A few lines for the terminal: which partition, file, reason, what to do."""
        files = ", ".join(self.files) or "(no file recorded)"
        keeps = "keeps its previous rows" if self.loaded_before else "has no rows (never loaded)"
        gone = re.search(r"files_of_live_partition_delivered\(source_file\).* missing (\S+)", self.reason)
        if self.stage == "gate_1" and gone:
            todo = (
                f"put {gone.group(1)} back in the data folder and run `wijk-assets refresh`; if the publisher "
                f"withdrew it, set WIJK_WITHDRAWN_FILES={gone.group(1)} and run `wijk-assets refresh`"
            )
        elif self.stage == "gate_1":
            todo = (
                f"inspect SELECT * FROM {quarantine_table('raw.' + self.source)} WHERE run_id = '{self.run_id}'; "
                "put a corrected file in its place (or remove it) and run `wijk-assets refresh`"
            )
        elif self.stage == "read":
            todo = "open the file at the place named above; replace it with a readable copy (or remove it) and run `wijk-assets refresh`"
        else:
            todo = f"see run {self.run_id} in the Dagster UI; fix the cause and run `wijk-assets refresh`"
        return (
            f"STUCK raw/{self.source} [{self.year}] - the partition {keeps}; other sources carry on\n"
            f"   file:   {files}\n"
            f"   reason: {self.reason}\n"
            f"   to do:  {todo}"
        )


def _rejections(duckdb_path: Path | str, run_ids: list[str]) -> dict[str, dict]:
    if not run_ids or not Path(duckdb_path).is_file():
        return {}
    try:
        with connect(duckdb_path, read_only=True, wait_seconds=30) as con:
            schema, name = REJECTIONS_TABLE.split(".")
            exists = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                [schema, name],
            ).fetchone()[0]
            if not exists:
                return {}
            rows = con.execute(
                f"SELECT run_id, stage, files, reason FROM {REJECTIONS_TABLE} WHERE list_contains(?, run_id)",
                [run_ids],
            ).fetchall()
    except Exception:  # noqa: BLE001 - status must still print what Dagster knows
        return {}
    return {r[0]: {"stage": r[1], "files": [f["source"] for f in json.loads(r[2] or "[]")], "reason": r[3]} for r in rows}


def _run_error(instance: dg.DagsterInstance, run_id: str) -> str:
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        data = record.dagster_event.event_specific_data
        user = getattr(data, "user_failure_data", None)
        text = (user.description if user and user.description else None) or error_text(data.error)
        return " ".join(str(text).split())[:300]
    return "the run failed before its step started"


def _failed_attempts(instance: dg.DagsterInstance, source: str) -> dict[str, str]:
    """partition -> run id of its latest load attempt, for partitions whose latest attempt failed."""
    from wijk_assets.defs.raw.assets import raw_asset_key

    return failed_partition_attempts(instance, raw_asset_key(source))


def _loaded(instance: dg.DagsterInstance, source: str, year: str) -> bool:
    from wijk_assets.defs.raw.assets import raw_asset_key

    return bool(
        instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=raw_asset_key(source), asset_partitions=[year]), limit=1
        ).records
    )


def stuck_partitions(
    instance: dg.DagsterInstance, cbs, duckdb_path: Path | str, sources: list[str] | None = None
) -> list[StuckPartition]:
    """Raw partitions whose latest load failed while their source still offers data for them."""
    from wijk_assets.defs.raw.assets import RAW_SOURCES

    found: list[StuckPartition] = []
    for source in sources or RAW_SOURCES:
        failed = _failed_attempts(instance, source)
        if not failed:
            continue
        try:
            offered = {str(y) for y in cbs.available_years(source)}
        except Exception:  # noqa: BLE001 - an unreadable file may be what hides its year: keep all
            offered = set(failed)
        live = offered_as_loaded(instance, cbs, source, list(failed))
        rejections = _rejections(duckdb_path, list(failed.values()))
        for year, run_id in sorted(failed.items()):
            if year not in offered:
                continue  # its file is gone: not stuck (see forget_unloaded_orphans)
            if year in live:
                continue  # the refused file was replaced by the one that is live: nothing left to load
            rejection = rejections.get(run_id)
            found.append(
                StuckPartition(
                    source=source,
                    year=year,
                    run_id=run_id,
                    stage=rejection["stage"] if rejection else "run",
                    files=rejection["files"] if rejection else [],
                    reason=rejection["reason"] if rejection else _run_error(instance, run_id),
                    loaded_before=_loaded(instance, source, year),
                )
            )
    return found


STAGE_TEXT = {
    "dbt": "a dbt model or test",
    "gate_2": "gate 2 (Great Expectations on the feature table)",
    "publish_guard": "the publication guard (judgemental labels, sensitive indicators, official names)",
}


@dataclass
class RejectedBuild:
    """A step whose latest build was refused before it went live (a dbt test, gate 2, the publication
    guard) and that no later materialisation of its assets has replaced."""

    step: str
    run_id: str
    stage: str  # "dbt" | "gate_2" | "publish_guard"
    rejected_at: str
    reason: str
    quarantined: list[str] = field(default_factory=list)

    def block(self) -> str:
        gate = STAGE_TEXT.get(self.stage, self.stage)
        kept = ", ".join(self.quarantined) or "(no table)"
        return (
            f"REJECTED build {self.step} (run {self.run_id}, {self.rejected_at} UTC) by {gate} - the previous "
            "tables stay live and nothing downstream was rebuilt\n"
            f"   reason: {self.reason[:1500]}\n"
            f"   kept:   {kept}\n"
            f"   to do:  inspect the kept tables; replace the source release that caused it with a corrected "
            "file and run `wijk-assets refresh`"
        )


def rejected_builds(instance: dg.DagsterInstance, duckdb_path: Path | str) -> list[RejectedBuild]:
    """The latest refused build per step, unless one of its assets was materialised after it."""
    from wijk_assets.lib.build_swap import latest_rejections

    if not Path(duckdb_path).is_file():
        return []
    try:
        with connect(duckdb_path, read_only=True, wait_seconds=30) as con:
            rows = latest_rejections(con)
    except Exception:  # noqa: BLE001 - status must still print what Dagster knows
        return []
    standing = []
    for row in rows:
        rejected_at = row["rejected_at"].to_pydatetime().replace(tzinfo=timezone.utc).timestamp()
        keys = [dg.AssetKey.from_user_string(k) for k in json.loads(row.get("asset_keys") or "[]")]
        later = [
            event for key in keys
            if (event := instance.get_latest_materialization_event(key)) is not None and event.timestamp > rejected_at
        ]
        if later:
            continue  # a build after the refused one went live
        standing.append(RejectedBuild(
            step=row["step"], run_id=row["run_id"], stage=row["stage"],
            rejected_at=row["rejected_at"].strftime("%Y-%m-%d %H:%M:%S"), reason=row["reason"],
            quarantined=sorted(set(json.loads(row["quarantined"] or "{}").values())),
        ))
    return standing


def interrupted_build(duckdb_path: Path | str) -> str | None:
    """A block when relations are still set aside (``<name>__previous``) by a dbt step that is running or
    was killed before it could swap or put them back; None otherwise."""
    from wijk_assets.lib.build_swap import set_aside_now

    if not Path(duckdb_path).is_file():
        return None
    try:
        with connect(duckdb_path, read_only=True, wait_seconds=30) as con:
            relations = [str(r) for r in set_aside_now(con)]
    except Exception:  # noqa: BLE001 - status must still print what Dagster knows
        return None
    if not relations:
        return None
    shown = ", ".join(relations[:6]) + (f" … (+{len(relations) - 6})" if len(relations) > 6 else "")
    return (
        f"INTERRUPTED build - {len(relations)} relation(s) set aside by a dbt step that did not finish: {shown}\n"
        "   what is live under those names was never validated; the next dbt step puts the previous ones back first\n"
        "   to do:  run `wijk-assets refresh` (or materialise the dbt assets in the UI)"
    )


def forget_unloaded_orphans(instance: dg.DagsterInstance, cbs, sources: list[str] | None = None, log=print) -> list[str]:
    """Remove release-year partitions that never loaded and whose source offers nothing for them any
    more (the bad file was removed): they are then neither missing nor stuck. Partitions that did load
    are kept with their content (deleting data is a human decision). Returns ``source[year]`` labels."""
    from wijk_assets.defs.raw.assets import RAW_SOURCES, release_year_partitions

    removed = []
    for source in sources or RAW_SOURCES:
        name = release_year_partitions(source).name
        try:
            offered = {str(y) for y in cbs.available_years(source)}
        except Exception:  # noqa: BLE001 - cannot tell what is gone: remove nothing
            continue
        for year in instance.get_dynamic_partitions(name):
            if year not in offered and not _loaded(instance, source, year):
                instance.delete_dynamic_partition(name, year)
                removed.append(f"{source}[{year}]")
                log(f"partition removed: {source} {year} (its files are gone and it never loaded)")
    return removed


@dataclass
class AssetState:
    key: str
    partition: str | None
    status: str  # "stale" | "missing"
    cause: str = ""
    # the cause is the code (a new code version, an added or removed dependency), not new upstream data:
    # the automation, and so `refresh`, follows new data only
    code_change: bool = False


def stale_assets(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[AssetState]:
    """Materialisable non-raw assets (per partition) that are stale or missing, per Dagster's lineage."""
    # Dagster's own stale-status machinery (what the UI shows); internal API, see dagster 1.13's
    # dagster/_utils/test/data_versions.py for the same construction.
    from dagster._core.asset_graph_view.asset_graph_view import (
        AssetGraphView,
        TemporalContext,
    )
    from dagster._core.definitions.data_version import (
        CachingStaleStatusResolver,
        StaleCauseCategory,
        StaleStatus,
    )
    from dagster._time import get_current_datetime

    graph = defs.resolve_asset_graph()
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)
    out = []
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if not node.is_materializable or key.path[0] == "raw":
            continue
        partitions = node.partitions_def.get_partition_keys(dynamic_partitions_store=instance) if node.partitions_def else [None]
        for partition in partitions:
            try:
                status = resolver.get_status(key, partition)
            except Exception as error:  # noqa: BLE001 - report, do not crash the status command
                out.append(AssetState(key.to_user_string(), partition, "unknown", str(error)[:120]))
                continue
            if status == StaleStatus.MISSING:
                out.append(AssetState(key.to_user_string(), partition, "missing"))
            elif status == StaleStatus.STALE:
                causes = resolver.get_stale_root_causes(key, partition)
                cause = causes[0] if causes else None
                text = f"{cause.asset_key.to_user_string()}: {cause.reason}" if cause else ""
                if cause is not None and cause.partition_key:
                    text = f"{cause.asset_key.to_user_string()} [{cause.partition_key}]: {cause.reason}"
                code = cause is not None and cause.category in (StaleCauseCategory.CODE, StaleCauseCategory.DEPENDENCIES)
                out.append(AssetState(key.to_user_string(), partition, "stale", text, code_change=code))
    return out


def status_lines(stuck: list[StuckPartition], stale: list[AssetState], rejected: list[RejectedBuild] = (),
                 interrupted: str | None = None) -> list[str]:
    lines = [p.block() for p in stuck] or ["no stuck raw partitions"]
    lines += [b.block() for b in rejected] + ([interrupted] if interrupted else [])
    if stale:
        missing = [s for s in stale if s.status == "missing"]
        other = [s for s in stale if s.status != "missing"]
        lines.append(f"{len(other)} asset(s) stale, {len(missing)} never materialised:")
        for state in other:
            part = f" [{state.partition}]" if state.partition else ""
            lines.append(f"   {state.status:7} {state.key}{part}{' - ' + state.cause if state.cause else ''}")
        if missing:
            names = [m.key + (f" [{m.partition}]" if m.partition else "") for m in missing]
            shown = ", ".join(names[:8]) + (f" … (+{len(names) - 8})" if len(names) > 8 else "")
            lines.append(f"   missing {shown}")
        if any(s.code_change for s in other):
            lines.append("   to do:  the code changed since some of these were made (a new dependency, or a new code "
                         "version: another version of wijk_assets); `refresh` follows new data only, so run "
                         "`wijk-assets materialize`, or materialise them in the Dagster UI")
    else:
        lines.append("every downstream asset is up to date with its inputs")
    return lines


__all__ = [
    "AssetState",
    "RejectedBuild",
    "StuckPartition",
    "error_text",
    "forget_unloaded_orphans",
    "interrupted_build",
    "rejected_builds",
    "stale_assets",
    "status_lines",
    "stuck_partitions",
]


def print_status(settings, *, stale: bool, instance=None) -> int:
    """Print one block per stuck raw partition (and, with ``stale``, the stale/missing assets).

    Returns the number of stuck partitions plus standing rejected builds and downstream runs that failed
    with an error (``wijk-assets status`` exits 1 when there are any)."""
    from wijk_assets.definitions import build_definitions
    from wijk_assets.runner.focus import focus_lines, made_for_another
    from wijk_assets.runner.materialize import ensure_dagster_home

    if instance is None:
        ensure_dagster_home()
        instance = dg.DagsterInstance.get()
    defs = build_definitions(settings)
    stuck = stuck_partitions(instance, defs.resources["cbs"], settings.duckdb_path)
    rejected = rejected_builds(instance, settings.duckdb_path)
    interrupted = interrupted_build(settings.duckdb_path)
    unreadable = unreadable_sources(defs.resources["cbs"])
    failed = failed_downstream(defs, instance)  # runs that failed with an error: the next refresh retries them
    lines = status_lines(stuck, stale_assets(defs, instance) if stale else [], rejected, interrupted)
    if not stale:
        lines = lines[:-1] if stuck or rejected or interrupted else []
        if (rejected or interrupted) and not stuck:
            lines = lines[1:]  # not "no stuck raw partitions" in front of the build blocks
    lines += [attempt.block() for attempt in failed]
    lines += focus_lines(made_for_another(instance, settings.gemeente), settings.gemeente)
    lines += [f"UNREADABLE source {source}: {error}\n   its partitions keep their previous content; "
              "to do: correct or replace the file, then run `wijk-assets refresh`" for source, error in unreadable.items()]
    if settings.data_dir is not None:  # a release under a name no source reads: not loaded, not an error
        from wijk_assets.lib.sources.catalog import unmatched_file_lines

        lines += unmatched_file_lines(settings.data_dir)
    for line in lines:
        print(line)
    return len(stuck) + len(rejected) + (1 if interrupted else 0) + len(unreadable) + len(failed)
