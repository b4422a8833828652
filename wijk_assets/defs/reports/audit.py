"""Audit trail and lineage report, read from a Dagster instance (no assets defined here).

* :func:`audit_trail_rows`: one row per materialisation of the given assets, with run id, code and
  data versions, the data versions of the inputs it was computed from, source sha256 metadata, row
  count and the outcomes of the asset checks that ran for that asset in that run.
* :func:`lineage_report_markdown`: the asset graph with, per asset, its upstream assets, code version,
  latest data version, latest materialisation time and row count, and its check history - Markdown an
  auditor can read without the Dagster UI.

APIs used (dagster 1.13): ``DagsterInstance.fetch_materializations`` (EventLogRecord with the
``AssetMaterialization`` whose ``tags`` hold ``dagster/code_version``, ``dagster/data_version`` and
``dagster/input_data_version/<key>``), ``DagsterInstance.all_logs(run_id, of_type=ASSET_CHECK_EVALUATION)``
for the check evaluations of a run, and ``instance.event_log_storage.get_asset_check_execution_history``
for check histories (statuses PLANNED / SUCCEEDED / FAILED).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

import dagster as dg
import pandas as pd
from dagster import AssetCheckKey, AssetKey, DagsterEventType, DagsterInstance

CODE_VERSION_TAG = "dagster/code_version"
DATA_VERSION_TAG = "dagster/data_version"
INPUT_DATA_VERSION_PREFIXES = ("dagster/input_data_version/", "dagster/input_logical_version/")
ROW_COUNT_KEY = "dagster/row_count"

AUDIT_COLUMNS = [
    "asset_key",
    "partition",
    "run_id",
    "timestamp",
    "storage_id",
    "code_version",
    "data_version",
    "input_data_versions",  # JSON object {upstream asset key: data version}
    "source_sha256",  # JSON object {metadata key: sha256} or None
    "row_count",
    "checks",  # JSON list of {check_name, status, passed, severity, description}
    "n_checks",
    "n_checks_failed",
    "checks_passed",  # True/False, None when no check ran in that run (or one had not finished yet)
    "run_ended",  # the run had ended when the row was written (else its check outcomes may be incomplete)
]


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _as_asset_key(key: AssetKey | str | Sequence[str]) -> AssetKey:
    if isinstance(key, AssetKey):
        return key
    if isinstance(key, str):
        return AssetKey.from_user_string(key)
    return AssetKey(list(key))


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")


def _meta_value(value: Any) -> Any:
    """Plain Python value of a Dagster MetadataValue (or the value itself)."""
    inner = getattr(value, "value", value)
    if isinstance(inner, (str, int, float, bool)) or inner is None:
        return inner
    if isinstance(inner, (dict, list)):
        return inner
    return str(inner)


def _sha256_metadata(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    found = {k: _meta_value(v) for k, v in metadata.items() if "sha256" in k.lower()}
    return found or None


def _row_count(metadata: Mapping[str, Any]) -> int | None:
    for key in (ROW_COUNT_KEY, "row_count", "num_rows", "n_rows"):
        if key in metadata:
            value = _meta_value(metadata[key])
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
    return None


def _input_data_versions(tags: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for tag, value in tags.items():
        for prefix in INPUT_DATA_VERSION_PREFIXES:
            if tag.startswith(prefix):
                out.setdefault(tag[len(prefix):], value)
    return out


def fetch_materializations_after(
    instance: DagsterInstance, key: AssetKey, after_storage_id: int | None, limit: int
) -> list[Any]:
    """The materialisation records of ``key`` after ``after_storage_id`` (None: all), oldest first."""
    records: list[Any] = []
    cursor = None
    records_filter = dg.AssetRecordsFilter(asset_key=key, after_storage_id=after_storage_id)
    while len(records) < limit:
        result = instance.fetch_materializations(records_filter, limit=min(1000, limit - len(records)), cursor=cursor,
                                                 ascending=True)
        records.extend(result.records)
        if not result.has_more:
            break
        cursor = result.cursor
    return records


ENDED_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
PENDING_CHECK_STATUSES = frozenset({"IN_PROGRESS", "PLANNED"})


def _run_of(instance: DagsterInstance, run_id: str, cache: dict[str, Any]) -> Any:
    """The run record (None when deleted from run storage), read once per run."""
    if run_id not in cache:
        cache[run_id] = instance.get_run_by_id(run_id)
    return cache[run_id]


def _status_name(run: Any) -> str | None:
    return None if run is None else getattr(run.status, "value", str(run.status))


def _planned_status(run: Any) -> str:
    """A planned check without an evaluation: IN_PROGRESS while its run is going, EXECUTION_FAILED when
    the run failed, SKIPPED when it succeeded without evaluating it (as the Dagster UI resolves it)."""
    name = _status_name(run)
    if name is None:
        return "PLANNED"  # run deleted from run storage
    if name in ("FAILURE", "CANCELED"):
        return "EXECUTION_FAILED"
    if name == "SUCCESS":
        return "SKIPPED"
    return "IN_PROGRESS"


def _run_check_outcomes(
    instance: DagsterInstance, run_id: str, cache: dict[str, list[dict[str, Any]]], runs: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every check outcome of one run, read with one event-log query: each evaluation, and each check
    that was planned in the run but never evaluated (a check that crashed, or a run stopped before it),
    with its status resolved from the run's."""
    if run_id in cache:
        return cache[run_id]
    entries = instance.all_logs(
        run_id, of_type={DagsterEventType.ASSET_CHECK_EVALUATION, DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED}
    )
    outcomes: list[dict[str, Any]] = []
    planned = []
    for entry in entries:
        event = entry.dagster_event
        if event is None:
            continue
        data = event.event_specific_data
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            outcomes.append({
                "asset_key": data.asset_key, "partition": data.partition, "check_name": data.check_name,
                "status": "SUCCEEDED" if data.passed else "FAILED", "passed": bool(data.passed),
                "severity": data.severity.value, "description": data.description, "planned_only": False,
            })
        else:
            planned.append(data)
    if planned:
        run = _run_of(instance, run_id, runs)
        run_partition = None if run is None else run.tags.get("dagster/partition")
        evaluated = {(o["asset_key"], o["check_name"], o["partition"]) for o in outcomes}
        for data in planned:
            subset = getattr(data, "partitions_subset", None)
            partitions = list(subset.get_partition_keys()) if subset is not None else [run_partition]
            for partition in partitions:
                if {(data.asset_key, data.check_name, partition), (data.asset_key, data.check_name, None)} & evaluated:
                    continue
                outcomes.append({
                    "asset_key": data.asset_key, "partition": partition, "check_name": data.check_name,
                    "status": _planned_status(run), "passed": None, "severity": None, "description": None,
                    "planned_only": True,
                })
    cache[run_id] = outcomes
    return outcomes


def _check_history(
    instance: DagsterInstance, check_key: AssetCheckKey, limit: int
) -> list[Any]:
    return list(instance.event_log_storage.get_asset_check_execution_history(check_key, limit=limit))


def _resolved_status(instance: DagsterInstance, record: Any, run_cache: dict[str, Any]) -> str:
    """SUCCEEDED / FAILED as stored; a PLANNED record is resolved from its run (:func:`_planned_status`)."""
    status = record.status.value
    if status != "PLANNED":
        return status
    return _planned_status(_run_of(instance, record.run_id, run_cache))


def _record_outcome(
    record: Any, instance: DagsterInstance | None = None, run_status_cache: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Plain dict of an AssetCheckExecutionRecord."""
    evaluation = None
    if record.event is not None and record.event.dagster_event is not None:
        if record.event.dagster_event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = record.event.dagster_event.asset_check_evaluation_data
    status = record.status.value
    if instance is not None:
        status = _resolved_status(instance, record, run_status_cache if run_status_cache is not None else {})
    return {
        "check_name": record.key.name,
        "status": status,
        "passed": None if evaluation is None else bool(evaluation.passed),
        "severity": None if evaluation is None else evaluation.severity.value,
        "description": None if evaluation is None else evaluation.description,
        "run_id": record.run_id,
        "partition": record.partition,
        "timestamp": _iso(record.create_timestamp if evaluation is None else record.event.timestamp),
    }


# --------------------------------------------------------------------------------------------------
# audit trail
# --------------------------------------------------------------------------------------------------


class _RowBuilder:
    """Audit rows of materialisation records; each run's check outcomes and record are read once."""

    def __init__(self, instance: DagsterInstance, check_keys: Iterable[AssetCheckKey] | None = None):
        self.instance = instance
        self.only_planned = None if check_keys is None else set(check_keys)
        self.outcomes: dict[str, list[dict[str, Any]]] = {}
        self.runs: dict[str, Any] = {}

    def row(self, key: AssetKey, record: Any) -> dict[str, Any]:
        mat = record.asset_materialization
        tags = dict(mat.tags or {}) if mat is not None else {}
        metadata = dict(mat.metadata or {}) if mat is not None else {}
        partition = record.partition_key
        outcomes = [o for o in _run_check_outcomes(self.instance, record.run_id, self.outcomes, self.runs)
                    if o["asset_key"] == key and (partition is None or o["partition"] in (None, partition))]
        # every evaluation, then the planned checks that produced none (one per check name)
        evaluated = [o for o in outcomes if not o["planned_only"]]
        seen = {o["check_name"] for o in evaluated}
        planned = {o["check_name"]: o for o in outcomes if o["planned_only"] and o["check_name"] not in seen
                   and (self.only_planned is None or AssetCheckKey(key, o["check_name"]) in self.only_planned)}
        fields = ("check_name", "status", "passed", "severity", "description")
        checks = [{k: o[k] for k in fields} for o in [*evaluated, *planned.values()]]
        checks.sort(key=lambda c: c["check_name"])
        failed = [c for c in checks if c["passed"] is False or (c["passed"] is None and c["status"] not in PENDING_CHECK_STATUSES)]
        pending = [c for c in checks if c["passed"] is None and c["status"] in PENDING_CHECK_STATUSES]
        sha = _sha256_metadata(metadata)
        run_status = _status_name(_run_of(self.instance, record.run_id, self.runs))
        return {
            "asset_key": key.to_user_string(),
            "partition": partition,
            "run_id": record.run_id,
            "timestamp": pd.Timestamp(record.timestamp, unit="s", tz="UTC"),
            "storage_id": int(record.storage_id),
            "code_version": tags.get(CODE_VERSION_TAG),
            "data_version": tags.get(DATA_VERSION_TAG) or tags.get("dagster/logical_version"),
            "input_data_versions": json.dumps(_input_data_versions(tags), sort_keys=True),
            "source_sha256": json.dumps(sha, sort_keys=True, default=str) if sha else None,
            "row_count": _row_count(metadata),
            "checks": json.dumps(checks, default=str),
            "n_checks": len(checks),
            "n_checks_failed": len(failed),
            # None: no check ran, or one is still running (see run_ended)
            "checks_passed": False if failed else (None if pending or not checks else True),
            "run_ended": run_status is None or run_status in ENDED_RUN_STATUSES,
        }


def audit_trail_rows(
    instance: DagsterInstance,
    asset_keys: Iterable[AssetKey | str | Sequence[str]] | None = None,
    *,
    check_keys: Iterable[AssetCheckKey] | None = None,
    limit_per_asset: int = 10_000,
    after: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """One row per materialisation (oldest first per asset) with columns :data:`AUDIT_COLUMNS`.

    ``asset_keys``: AssetKeys or user strings (``"raw/leefbaarometer"``); default: every asset key
    the instance knows. Check outcomes come from the materialisation's run, for that asset (and
    partition): every ASSET_CHECK_EVALUATION, and every check that was planned in the run but produced
    no evaluation (it crashed, or the run stopped first): status EXECUTION_FAILED, SKIPPED or, while
    the run is going, IN_PROGRESS (see :func:`_planned_status`). A crashed check is never a row without
    checks. ``check_keys`` limits the planned-only checks listed to these (default: all). ``after``:
    asset key (user string) -> only its materialisations after this storage id (the audit table's update).
    """
    keys = (
        [_as_asset_key(k) for k in asset_keys]
        if asset_keys is not None
        else list(instance.get_asset_keys())
    )
    builder = _RowBuilder(instance, check_keys)
    after = after or {}
    rows = [builder.row(key, record) for key in keys
            for record in fetch_materializations_after(instance, key, after.get(key.to_user_string()), limit_per_asset)]
    frame = pd.DataFrame(rows, columns=AUDIT_COLUMNS)
    frame["row_count"] = frame["row_count"].astype("Int64")
    frame["n_checks"] = frame["n_checks"].astype("int64")
    frame["n_checks_failed"] = frame["n_checks_failed"].astype("int64")
    return frame


# --------------------------------------------------------------------------------------------------
# lineage report
# --------------------------------------------------------------------------------------------------


def _md(text: Any) -> str:
    if text is None:
        return "-"
    return str(text).replace("|", "\\|").replace("\n", " ")


def _short(version: str | None, n: int = 12) -> str:
    if not version:
        return "-"
    return version if len(version) <= n else version[:n] + "…"


def _gate_verdict_lines(instance: DagsterInstance, graph) -> list[str]:
    """The latest gate-3 verdict per outcome (``models/model_gate_verdict``): published or WITHHELD with
    the reason, so the summary never reads "passed" for an outcome that was not published."""
    from wijk_assets.defs.models.gate import GATE_KEY

    if not graph.has(GATE_KEY):
        return []
    node = graph.get(GATE_KEY)
    partitions = node.partitions_def.get_partition_keys() if node.partitions_def else [None]
    lines = ["", "## Gate 3 verdicts (models/model_gate_verdict)", "",
             "| outcome | verdict | reason | model version |", "|---|---|---|---|"]
    for partition in partitions:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=GATE_KEY, asset_partitions=[partition] if partition else None), limit=1
        ).records
        if not records:
            lines.append(f"| {partition} | not judged yet | - | - |")
            continue
        metadata = records[0].asset_materialization.metadata
        value = lambda k: getattr(metadata.get(k), "value", None)  # noqa: E731
        verdict = value("verdict")
        shown = "WITHHELD (not published)" if verdict == "withheld" else str(verdict)
        lines.append(f"| {partition} | {shown} | {_md(value('reason') or '-')} | `{_md(value('model_version'))}` |")
    return lines


def lineage_report_markdown(
    defs: dg.Definitions,
    instance: DagsterInstance,
    *,
    history: int = 5,
    title: str = "wijk_assets lineage and audit report",
) -> str:
    """Markdown report of the asset graph of ``defs`` with materialisation and check history from
    ``instance``: a summary table, the dependency edges, and one section per asset."""
    graph = defs.resolve_asset_graph()
    keys = list(graph.toposorted_asset_keys)
    all_checks = set(graph.asset_check_keys)
    audit = audit_trail_rows(instance, keys, check_keys=all_checks)
    audit_by_key = {k: g for k, g in audit.groupby("asset_key", sort=False)} if len(audit) else {}

    lines = [
        f"# {title}",
        "",
        f"Generated at {datetime.now(tz=timezone.utc).isoformat(timespec='seconds')} from the Dagster "
        f"instance's event log. {len(keys)} assets, {len(all_checks)} asset checks, "
        f"{len(audit)} materialisations recorded.",
        "",
        "Data versions are Dagster's content hashes (shortened); the full values are in the per-asset "
        "sections. Times are UTC.",
        "",
        "## Summary",
        "",
        "| asset | upstream | code version | latest data version | latest materialisation | rows | "
        "materialisations | latest checks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    latest_by_key: dict[AssetKey, pd.Series | None] = {}
    run_status_cache: dict[str, Any] = {}
    check_hist: dict[AssetCheckKey, list[dict[str, Any]]] = {}
    for ck in sorted(all_checks, key=lambda c: (c.asset_key.to_user_string(), c.name)):
        check_hist[ck] = [
            _record_outcome(r, instance, run_status_cache) for r in _check_history(instance, ck, history)
        ]

    for key in keys:
        node = graph.get(key)
        rows = audit_by_key.get(key.to_user_string())
        latest = rows.iloc[-1] if rows is not None and len(rows) else None
        latest_by_key[key] = latest
        upstream = ", ".join(sorted(k.to_user_string() for k in node.parent_keys)) or "(source)"
        latest_checks = []
        for ck in sorted(node.check_keys, key=lambda c: c.name):
            hist = check_hist.get(ck) or []
            if hist:
                h = hist[0]
                mark = "passed" if h["passed"] else ("FAILED" if h["passed"] is False else h["status"])
                latest_checks.append(f"{ck.name}: {mark}")
            else:
                latest_checks.append(f"{ck.name}: never run")
        lines.append(
            "| "
            + " | ".join(
                [
                    f"`{key.to_user_string()}`",
                    _md(upstream),
                    _md(node.code_version),
                    _short(latest["data_version"]) if latest is not None else "never materialised",
                    latest["timestamp"].isoformat(timespec="seconds") if latest is not None else "-",
                    _md(latest["row_count"]) if latest is not None and pd.notna(latest["row_count"]) else "-",
                    str(0 if rows is None else len(rows)),
                    _md("; ".join(latest_checks)) if latest_checks else "(no checks)",
                ]
            )
            + " |"
        )

    lines += _gate_verdict_lines(instance, graph)
    lines += ["", "## Dependencies", ""]
    edges = [
        (p.to_user_string(), k.to_user_string()) for k in keys for p in sorted(graph.get(k).parent_keys)
    ]
    if edges:
        lines += [f"- `{a}` → `{b}`" for a, b in edges]
        lines += ["", "```mermaid", "graph LR"]
        ids = {k.to_user_string(): f"n{i}" for i, k in enumerate(keys)}
        for a, b in edges:
            ids.setdefault(a, f"n{len(ids)}")
            lines.append(f'  {ids[a]}["{a}"] --> {ids[b]}["{b}"]')
        lines.append("```")
    else:
        lines.append("(no dependencies between assets)")

    lines += ["", "## Assets", ""]
    for key in keys:
        node = graph.get(key)
        name = key.to_user_string()
        rows = audit_by_key.get(name)
        latest = latest_by_key[key]
        lines += [f"### `{name}`", ""]
        if node.description:
            lines += [_md(node.description.strip().splitlines()[0]), ""]
        lines.append(f"- **Group**: {_md(node.group_name)}")
        lines.append(
            "- **Upstream**: "
            + (", ".join(f"`{k.to_user_string()}`" for k in sorted(node.parent_keys)) or "none (source)")
        )
        lines.append(
            "- **Downstream**: "
            + (", ".join(f"`{k.to_user_string()}`" for k in sorted(node.child_keys)) or "none")
        )
        lines.append(f"- **Code version (definition)**: {_md(node.code_version)}")
        if node.partitions_def is not None:
            lines.append(f"- **Partitioned**: {_md(type(node.partitions_def).__name__)}")
        if latest is None:
            lines += ["- **Latest materialisation**: never materialised", ""]
        else:
            lines += [
                f"- **Latest materialisation**: {latest['timestamp'].isoformat(timespec='seconds')}"
                f" (run `{latest['run_id']}`"
                + (f", partition `{latest['partition']}`" if latest["partition"] else "")
                + ")",
                f"- **Code version (latest run)**: {_md(latest['code_version'])}",
                f"- **Data version**: `{_md(latest['data_version'])}`",
                f"- **Rows**: {_md(latest['row_count']) if pd.notna(latest['row_count']) else '-'}",
            ]
            inputs = json.loads(latest["input_data_versions"] or "{}")
            if inputs:
                lines.append("- **Input data versions**: " + ", ".join(
                    f"`{k}` = `{_short(v)}`" for k, v in sorted(inputs.items())))
            if latest["source_sha256"]:
                sha = json.loads(latest["source_sha256"])
                lines.append("- **Source sha256**: " + ", ".join(f"{k} = `{v}`" for k, v in sha.items()))
            lines.append("")
            lines += [
                "Materialisation history (latest first):",
                "",
                "| time | run | partition | code version | data version | rows | checks |",
                "|---|---|---|---|---|---|---|",
            ]
            for _, r in rows.iloc[::-1].head(history).iterrows():
                checks = json.loads(r["checks"])
                summary = (
                    ", ".join(
                        f"{c['check_name']}: {'passed' if c['passed'] else ('FAILED' if c['passed'] is False else c['status'])}"
                        for c in checks
                    )
                    or "-"
                )
                lines.append(
                    f"| {r['timestamp'].isoformat(timespec='seconds')} | `{r['run_id'][:8]}` | "
                    f"{_md(r['partition'])} | {_md(r['code_version'])} | `{_short(r['data_version'])}` | "
                    f"{_md(r['row_count']) if pd.notna(r['row_count']) else '-'} | {_md(summary)} |"
                )
            lines.append("")
        for ck in sorted(node.check_keys, key=lambda c: c.name):
            check_node = graph.get(ck)
            hist = check_hist.get(ck) or []
            lines.append(
                f"Check `{ck.name}`"
                + (f" ({_md(check_node.description)})" if check_node.description else "")
                + (" - blocking" if check_node.blocking else "")
                + ":"
            )
            lines.append("")
            if not hist:
                lines += ["- never run", ""]
                continue
            lines += ["| time | run | partition | status | passed | severity |", "|---|---|---|---|---|---|"]
            for h in hist:
                lines.append(
                    f"| {_md(h['timestamp'])} | `{h['run_id'][:8]}` | {_md(h['partition'])} | {h['status']} | "
                    f"{'-' if h['passed'] is None else ('yes' if h['passed'] else 'NO')} | {_md(h['severity'])} |"
                )
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["AUDIT_COLUMNS", "audit_trail_rows", "lineage_report_markdown"]
