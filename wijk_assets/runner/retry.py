"""Which downstream runs failed with an error and were never retried (no Dagster definitions here).

``refresh`` follows new data: an asset is requested when something it reads was updated. A run that then
failed with an unexpected error (a worker that ran out of memory, a full disk, a lock, a bug) counted as
handled, so the asset stayed on its previous version until the next release of one of its sources,
with nothing in the next refreshes saying so. :func:`failed_with_error` finds those assets; the refresh
retries them once per invocation (:func:`wijk_assets.runner.refresh.refresh`).

Not retried, because running them again on the same input gives the same answer:

* raw partitions (a refused or unreadable release is the release check's and ``status``'s business:
  it stays refused until its file changes);
* a step that refused on purpose (``dg.Failure``: a dbt build that its tests or gate 2 refused, a model
  without training rows, a publication guard); its previous state stays current, as designed;
* an asset that was skipped because a blocking check or an upstream step failed (no error of its own;
  when the upstream is retried and updates, the automation requests it again).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import dagster as dg


@dataclass(frozen=True)
class FailedAttempt:
    key: dg.AssetKey
    partition: str | None
    run_id: str
    error: str  # the step's error, in one line

    def block(self) -> str:
        """What ``wijk-assets status`` prints for it."""
        part = f" [{self.partition}]" if self.partition else ""
        return (f"FAILED {self.key.to_user_string()}{part} - error in run {self.run_id[:8]}: {self.error}\n"
                "   its previous version stays current; to do: `wijk-assets refresh` runs it again once "
                "(remove the cause first if it is not a passing one)")


def error_text(error) -> str:
    """The message of a step's error (Dagster's ``SerializableErrorInfo``) a person can act on.

    An exception raised inside an op reaches the event log wrapped in Dagster's
    ``DagsterExecutionStepExecutionError: Error occurred while executing op …``; the reader's own error
    (which file, which line, what was expected) is its cause. The module path of the class is dropped."""
    while error is not None and error.cls_name == "DagsterExecutionStepExecutionError" and error.cause is not None:
        error = error.cause
    message = str(error.message) if error is not None else ""
    head, sep, rest = message.partition(": ")
    if sep and "." in head and " " not in head:
        message = f"{head.rsplit('.', 1)[-1]}: {rest}"
    return message


def _step_errors(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """step key -> error text of the steps that failed with an unexpected error (not ``dg.Failure``)."""
    out = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = record.dagster_event
        data = event.event_specific_data
        if getattr(data, "user_failure_data", None) is not None:
            continue  # dg.Failure: a deliberate refusal
        out[event.step_key] = " ".join(str(error_text(data.error)).split())[:300]
    return out


def _planned_steps(instance: dg.DagsterInstance, run_id: str) -> dict[tuple[dg.AssetKey, str | None], str]:
    """(asset key, partition) -> the step of ``run_id`` that was to materialise it."""
    out = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED):
        event = record.dagster_event
        data = event.event_specific_data
        partitions = [data.partition]
        if data.partition is None and data.partitions_subset is not None:
            partitions = list(data.partitions_subset.get_partition_keys())
        for partition in partitions:
            out[(data.asset_key, partition)] = event.step_key
    return out


def _latest_attempts(instance: dg.DagsterInstance, key: dg.AssetKey, partitioned: bool, record) -> dict[str | None, str]:
    """partition (None: unpartitioned) -> run id of the latest attempt that materialised nothing.
    ``record``: the asset's record (``instance.get_asset_records``), read for all keys at once."""
    if partitioned:
        attempts = instance.event_log_storage.get_latest_asset_partition_materialization_attempts_without_materializations(key)
        return {partition: run_id for partition, (run_id, _) in attempts.items()}
    entry = record.asset_entry if record is not None else None
    if entry is None or entry.last_run_id is None:
        return {}
    last = entry.last_materialization_record
    if last is not None and last.run_id == entry.last_run_id:
        return {}  # the latest run that planned it also materialised it
    planned = instance.get_latest_planned_materialization_info(key)
    if planned is None:
        return {}
    done = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, after_storage_id=planned.storage_id), limit=1).records
    return {} if done else {None: planned.run_id}


def failed_partition_attempts(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, str]:
    """partition -> run id, for the partitions of ``key`` whose latest attempt was a failed run that
    materialised nothing (``status`` uses it for the raw partitions it calls stuck)."""
    out = {}
    for partition, run_id in _latest_attempts(instance, key, True, None).items():
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status == dg.DagsterRunStatus.FAILURE:
            out[partition] = run_id
    return out


def failed_with_error(instance: dg.DagsterInstance, graph, skip: set[dg.AssetKey]) -> list[FailedAttempt]:
    """The materialisable assets (partitions) outside ``skip`` whose latest attempt was a finished, failed
    run in which their own step failed with an unexpected error, and that materialised nothing since."""
    runs: dict[str, tuple[bool, dict[str, str], dict]] = {}
    out = []
    keys = [key for key in graph.materializable_asset_keys if key not in skip]
    records = {r.asset_entry.asset_key: r for r in instance.get_asset_records(keys)} if keys else {}
    for key in keys:
        partitioned = graph.get(key).partitions_def is not None
        for partition, run_id in _latest_attempts(instance, key, partitioned, records.get(key)).items():
            if run_id not in runs:
                run = instance.get_run_by_id(run_id)
                failed = run is not None and run.status == dg.DagsterRunStatus.FAILURE
                errors = _step_errors(instance, run_id) if failed else {}
                runs[run_id] = (failed, errors, _planned_steps(instance, run_id) if errors else {})
            failed, errors, steps = runs[run_id]
            step = steps.get((key, partition))
            if failed and step in errors:
                out.append(FailedAttempt(key, partition, run_id, errors[step]))
    return out


def retry_requests(graph, attempts: list[FailedAttempt]) -> dict[dg.AssetKey, set[str | None]]:
    """asset key -> partitions to run again: each failed asset with the assets it must run with (a
    multi-asset that cannot be subset runs whole)."""
    out: dict[dg.AssetKey, set[str | None]] = defaultdict(set)
    for attempt in attempts:
        for key in {attempt.key, *graph.get(attempt.key).execution_set_asset_keys}:
            out[key].add(attempt.partition)
    return dict(out)


def failed_downstream(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[FailedAttempt]:
    """:func:`failed_with_error` over every non-raw asset of ``defs`` (what ``wijk-assets status`` lists)."""
    from wijk_assets.defs.raw.assets import RAW_SOURCES, raw_asset_key

    return failed_with_error(instance, defs.resolve_asset_graph(), {raw_asset_key(s) for s in RAW_SOURCES})


__all__ = ["FailedAttempt", "error_text", "failed_downstream", "failed_partition_attempts", "failed_with_error",
           "retry_requests"]
