"""Noticing new source releases, and keeping everything downstream of them up to date.

Three pieces, all shipped switched OFF (``default_status=STOPPED``) so nothing runs on its own until a
data engineer decides so:

``release_sensor``
    Lists what each source offers now and compares it with what it saw last time (its cursor):

    * live mode (``WIJK_CBS_BASE_URL`` set): the CBS catalog entries whose title matches the source's
      ``live.title_pattern`` in ``catalog.yaml`` -- Identifier, Period (the years) and Modified;
    * offline mode (a data folder): the catalogued files -- relative path, size, mtime and sha256 (the
      sha256 decides; size/mtime/inode only decide whether the file must be hashed again).

    A year it has not seen becomes a new ``<source>_release_year`` partition plus a run of
    ``raw/<source>`` for that year; a table or file that changed triggers a run for the year(s) it
    covers only; nothing changed means no run and an unchanged cursor. ``minimum_interval_seconds`` is
    3600 (an hour) unless ``WIJK_RELEASE_SENSOR_INTERVAL_SECONDS`` says otherwise; CBS publishes a few
    times a year, so checking more often only costs catalog requests.

``weekly_refresh_<source>`` schedules (Monday 06:00 Europe/Amsterdam)
    The fallback for when the sensor was off, or a run it started failed. It does not trust a cursor:
    it rebuilds "what was loaded" from the last materialisation of every raw partition (the file
    sha256s / table ids and retrieval time recorded in its metadata) and requests runs for the
    partitions whose source no longer matches (or that were never loaded). One schedule per source,
    because a Dagster schedule targets exactly one job and every raw asset has its own partition set
    (a single job over all raw assets is not a valid Dagster job).

``wijk_automation`` (an :class:`~dagster.AutomationConditionSensorDefinition`)
    Evaluates the automation conditions of the dbt and ML assets; use
    :func:`downstream_automation_condition` on them. When several raw partitions land in one go the
    downstream assets run once, after the last one (see that function).

Switching them on
-----------------
In the UI (``dagster dev``): *Automation* -> pick ``release_sensor`` / ``weekly_refresh_<source>`` /
``wijk_automation`` -> toggle *Running*. The dagster-daemon must run (``dagster dev`` starts one). From
the command line, with ``DAGSTER_HOME`` pointing at the instance (``wijk-assets`` uses
``.dagster_home``)::

    dagster sensor start release_sensor -m wijk_assets.definitions
    dagster sensor start wijk_automation -m wijk_assets.definitions
    dagster schedule start weekly_refresh_cbs_kwb -m wijk_assets.definitions   # one per source
    dagster sensor preview release_sensor -m wijk_assets.definitions           # dry run: what it would do

The pure planning (cursor, what to reload) lives in :mod:`wijk_assets.lib.release`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from wijk_assets.defs.raw.assets import RAW_SOURCES, raw_asset_key, release_year_partitions
from wijk_assets.defs.resources import CbsSourceResource
from wijk_assets.lib.release.listing import SourceListing, list_available
from wijk_assets.lib.release.planner import (
    CURSOR_VERSION,
    RefreshPlan,
    _year_order,
    dump_cursor,
    load_cursor,
    plan_refresh,
)
from wijk_assets.settings import load_settings

TIMEZONE = "Europe/Amsterdam"
CBS_TIMEZONE = ZoneInfo(TIMEZONE)  # CBS writes Modified as local (Dutch) time without an offset

TRIGGER_TAG = "wijk_assets/trigger"
SOURCE_TAG = "wijk_assets/source"
REASON_TAG = "wijk_assets/reason"


def known_partitions(instance: dg.DagsterInstance, sources: Iterable[str]) -> dict[str, list[str]]:
    return {s: list(instance.get_dynamic_partitions(release_year_partitions(s).name)) for s in sources}


# ---------------------------------------------------------------------------------------------------
# "What was loaded": fingerprints rebuilt from the last materialisation of every raw partition
# ---------------------------------------------------------------------------------------------------


def _latest_materialization(instance: dg.DagsterInstance, source: str, year: str):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=raw_asset_key(source), asset_partitions=[year]), limit=1
    ).records
    return records[0] if records else None


def _metadata_value(metadata: Mapping[str, Any], key: str) -> Any:
    value = metadata.get(key)
    if value is None:
        return None
    return getattr(value, "value", value)


def _as_utc(text: str | None, *, local: bool) -> datetime | None:
    """Parse a timestamp; naive values are Dutch local time (``local``) or UTC (otherwise)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CBS_TIMEZONE if local else timezone.utc)
    return moment.astimezone(timezone.utc)


def fingerprints_from_materializations(
    instance: dg.DagsterInstance,
    listing: SourceListing,
    partitions: Mapping[str, Iterable[str]],
) -> dict[str, dict[str, dict[str, str]]]:
    """The cursor-shaped ``sources`` as of the last materialisation of each known raw partition.

    Files: the sha256 each materialisation recorded per file (``sources`` metadata of the raw asset).
    Live tables: the table's current Modified when the partition was retrieved after that moment (so
    it counts as unchanged), otherwise a marker that differs from it (so it counts as changed). A
    partition that was never materialised contributes nothing, so its items look new and it is run.
    """
    out: dict[str, dict[str, dict[str, str]]] = {}
    for source, items in listing.items.items():
        years = {str(y) for y in partitions.get(source, ())}
        state: dict[str, dict[str, str]] = defaultdict(dict)
        for year in sorted(years, key=_year_order):
            record = _latest_materialization(instance, source, year)
            if record is None:
                continue
            materialization = record.asset_materialization
            metadata = materialization.metadata if materialization else {}
            entries = _metadata_value(metadata, "sources") or []
            retrieved = _as_utc(_metadata_value(metadata, "retrieved_at"), local=False) or datetime.fromtimestamp(
                record.timestamp, tz=timezone.utc
            )
            loaded_tables = {str(e.get("cbs_table_id") or "") for e in entries if isinstance(e, dict)}
            for entry in entries:
                if not isinstance(entry, dict):
                    continue
                name, sha = str(entry.get("source", "")), str(entry.get("sha256", ""))
                if name and not name.lower().startswith(("http://", "https://")):
                    state[name][year] = sha  # a file: compared by sha256 (also when it is gone now)
            for item, info in items.items():
                if info.kind != "table" or year not in info.years or item not in loaded_tables:
                    continue
                modified = _as_utc(info.modified, local=True)
                if modified is not None and modified <= retrieved:
                    state[item][year] = info.years[year]
                else:
                    state[item][year] = f"retrieved {retrieved.isoformat()}"
        out[source] = dict(state)
    return out


# ---------------------------------------------------------------------------------------------------
# Dagster: run requests, the release sensor, the weekly schedules
# ---------------------------------------------------------------------------------------------------


def run_requests(plan: RefreshPlan, trigger: str) -> list[dg.RunRequest]:
    return [
        dg.RunRequest(
            run_key=run.run_key,
            asset_selection=[raw_asset_key(run.source)],
            partition_key=run.year,
            tags={TRIGGER_TAG: trigger, SOURCE_TAG: run.source, REASON_TAG: run.reason},
        )
        for run in plan.runs
    ]


def partition_requests(plan: RefreshPlan) -> list[dg.AddDynamicPartitionsRequest]:
    return [
        dg.AddDynamicPartitionsRequest(release_year_partitions(source).name, years)
        for source, years in sorted(plan.new_partitions.items())
    ]


def evaluate_release_check(
    cbs, instance: dg.DagsterInstance, cursor_text: str | None, sources: Iterable[str] = RAW_SOURCES, log=None
) -> tuple[RefreshPlan, SourceListing, str]:
    """One release-sensor tick without Dagster's sensor machinery: (plan, listing, next cursor text).

    With no cursor yet (the sensor's first tick) the baseline is what the raw partitions were last
    materialised from, so switching the sensor on over an already-loaded warehouse reloads nothing.
    """
    sources = list(sources)
    previous = load_cursor(cursor_text)
    listing = list_available(cbs, sources, previous.get("files") or {})
    partitions = known_partitions(instance, sources)
    if not previous:
        baseline = fingerprints_from_materializations(instance, listing, partitions)
        previous = {"version": CURSOR_VERSION, "seq": 0, "sources": baseline}
        cursor_text = None
    plan = plan_refresh(previous, listing.available(), partitions)
    # the hashing cache keeps an entry for every file the next cursor still mentions
    in_cursor = {item for items in plan.cursor.get("sources", {}).values() for item in items}
    files = {
        path: entry
        for path, entry in {**(previous.get("files") or {}), **listing.files}.items()
        if path in in_cursor
    }
    next_cursor = {k: v for k, v in plan.cursor.items() if k != "files"}
    if files:
        next_cursor["files"] = files
    next_text = dump_cursor(next_cursor)
    if cursor_text and load_cursor(cursor_text) == next_cursor:
        next_text = cursor_text  # byte-identical when nothing changed
    if log is not None:
        for source, error in listing.errors.items():
            log.warning(f"release check: could not list {source}: {error}")
        for source, items in listing.skipped.items():
            log.warning(f"release check: {source}: ignored catalog entries {items}")
        log.info(f"release check: {plan.summary()}")
    return plan, listing, next_text


def build_release_sensor(
    name: str = "release_sensor",
    minimum_interval_seconds: int | None = None,
    sources: Iterable[str] | None = None,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """The release sensor (see the module docstring); ``minimum_interval_seconds`` defaults to
    the setting ``WIJK_RELEASE_SENSOR_INTERVAL_SECONDS`` (3600)."""
    interval = minimum_interval_seconds or load_settings().release_sensor_interval_seconds
    watched = list(sources or RAW_SOURCES)

    @dg.sensor(
        name=name,
        minimum_interval_seconds=interval,
        default_status=default_status,
        asset_selection=dg.AssetSelection.assets(*[raw_asset_key(s) for s in watched]),
        description=(
            "Watches the CBS catalog (live) or the data folder (offline) for new or changed releases; "
            "adds release-year partitions and loads only the raw partitions that changed."
        ),
    )
    def _release_sensor(context: dg.SensorEvaluationContext, cbs: CbsSourceResource):
        plan, listing, next_cursor = evaluate_release_check(
            cbs, context.instance, context.cursor, watched, log=context.log
        )
        if listing.errors and not listing.items:
            raise dg.Failure(
                "release sensor could not list any source: "
                + "; ".join(f"{s}: {e}" for s, e in listing.errors.items())
            )
        return dg.SensorResult(
            run_requests=run_requests(plan, "release_sensor"),
            dynamic_partitions_requests=partition_requests(plan),
            cursor=next_cursor,
        )

    return _release_sensor


release_sensor = build_release_sensor()
