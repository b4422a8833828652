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

Cursor format (JSON, keys sorted)::

    {"version": 1,
     "seq": 3,                                        # bumped on every tick that saw a change
     "sources": {                                     # source -> item -> year -> fingerprint
        "cbs_kwb": {"85984NED": {"2024": "2025-03-27T02:00:00"}},          # live: Modified
        "cbs_ses_woa": {"cbs_ses_woa_85163NED/ses_woa_..._2019_....csv":    # offline: sha256
                        {"2019": "9f2c..."}}},
     "files": {"cbs_ses_woa_85163NED/ses_woa_..._2019_....csv":            # hashing cache only
               {"size": 61307, "mtime_ns": 1700000000000000000, "inode": 123, "sha256": "9f2c...",
                "years": [2019]}}}

A file whose years come from a column (Leefbaarometer: one file 2002-2022) has the same sha256 for
every year it holds, so a new version of it re-runs all its years (a Leefbaarometer release revises
the back series, so that is also what should happen). A live table covering several years (RIVM
50090NED: "2012, 2016, 2020") likewise re-runs all of them when its Modified changes.

Run keys are ``<source>:<year>:<what>#<seq>`` with ``<what>`` the table and its Modified
(``cbs_kwb:2025:86123NED@2025-06-01T02:00:00#4``) or a digest of the files' sha256s. The key is a
pure function of the previous cursor and what is available, so a tick that is evaluated again (the
daemon crashed before storing the cursor) produces the same keys and Dagster skips the duplicates;
``#<seq>`` keeps a file that is changed back to an earlier version from being mistaken for a repeat.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from wijk_assets.assets.raw import RAW_SOURCES, raw_asset_key, release_year_partitions
from wijk_assets.resources import CbsSourceResource

CURSOR_VERSION = 1
DEFAULT_INTERVAL_SECONDS = 3600
INTERVAL_ENV = "WIJK_RELEASE_SENSOR_INTERVAL_SECONDS"
WEEKLY_CRON = "0 6 * * 1"
TIMEZONE = "Europe/Amsterdam"
CBS_TIMEZONE = ZoneInfo(TIMEZONE)  # CBS writes Modified as local (Dutch) time without an offset

TRIGGER_TAG = "wijk_assets/trigger"
SOURCE_TAG = "wijk_assets/source"
REASON_TAG = "wijk_assets/reason"

# Why a partition is (re)loaded, strongest first.
REASONS = ("new_year", "changed", "new_item", "removed_item")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# ---------------------------------------------------------------------------------------------------
# The plan: pure, no Dagster
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedRun:
    """One raw partition to (re)load, and why."""

    source: str
    year: str
    reason: str  # one of REASONS
    items: tuple[str, ...]  # the tables/files that caused it (for removed_item: the ones that went)
    run_key: str


@dataclass
class RefreshPlan:
    """What :func:`plan_refresh` decided: partitions to add, runs to request, the next cursor."""

    runs: list[PlannedRun]
    new_partitions: dict[str, list[str]]  # source -> years to add as dynamic partitions
    cursor: dict  # the next cursor (same object content as the previous one when nothing changed)
    orphaned: dict[str, list[str]] = field(default_factory=dict)  # known years with no source data left

    @property
    def changed(self) -> bool:
        return bool(self.runs or self.new_partitions or self.orphaned)

    def summary(self) -> str:
        if not self.changed:
            return "no new or changed releases"
        parts = [f"{r.source}[{r.year}] {r.reason}" for r in self.runs]
        parts += [f"{s}[{', '.join(ys)}] no source data left (partition kept)" for s, ys in self.orphaned.items()]
        return "; ".join(parts)


def _normalise(available: Mapping[str, Mapping[Any, Any]]) -> dict[str, dict[str, str]]:
    """item -> year -> fingerprint with the years as partition-key strings and values as strings."""
    return {
        str(item): {str(year): str(fp) for year, fp in years.items()}
        for item, years in available.items()
    }


def _by_year(items: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for item, years in items.items():
        for year, fp in years.items():
            out[year][item] = fp
    return out


def _year_order(year: str) -> tuple[int, str]:
    return (int(year), year) if year.isdigit() else (10**9, year)


def _run_label(items: Mapping[str, str]) -> str:
    """What a run is for, readable when it is one live table, a short digest otherwise."""
    if len(items) == 1:
        (item, fp), = items.items()
        if not _SHA256.match(fp):
            return f"{item}@{fp}"
    digest = hashlib.sha256()
    for item, fp in sorted(items.items()):
        digest.update(f"{item}\0{fp}\n".encode())
    return "sha256=" + digest.hexdigest()[:12]


def plan_refresh(
    previous_cursor: Mapping[str, Any] | None,
    available: Mapping[str, Mapping[str, Mapping[Any, Any]]],
    known_partitions: Mapping[str, Iterable[Any]],
) -> RefreshPlan:
    """Compare what the sources offer now with the cursor and decide what to (re)load.

    ``previous_cursor``: the last cursor (``{"sources": {source: {item: {year: fingerprint}}}, "seq": n}``;
    ``{}``/None on the first tick). ``available``: the same shape for what the sources offer now
    (item = CBS table id or file path relative to the data folder; fingerprint = Modified or sha256).
    Sources missing from ``available`` (their listing failed) keep their previous state and get no runs.
    ``known_partitions``: source -> the release years that are already dynamic partitions.

    Per source and year: a year that is not a partition yet -> add it and run it (``new_year``); an
    item whose fingerprint differs from the cursor -> run that year (``changed``); an item the cursor
    did not have for a known year -> run (``new_item``); an item that disappeared while others remain
    for that year -> run (``removed_item``, the partition is rebuilt from what is left). A year whose
    every item disappeared is reported in ``orphaned`` and left as it is (deleting data is a human
    decision).
    """
    previous = dict(previous_cursor or {})
    before_sources: dict[str, dict[str, dict[str, str]]] = {
        source: _normalise(items) for source, items in (previous.get("sources") or {}).items()
    }
    seq = int(previous.get("seq", 0) or 0)
    next_seq = seq + 1

    runs: list[PlannedRun] = []
    new_partitions: dict[str, list[str]] = {}
    orphaned: dict[str, list[str]] = {}
    next_sources = dict(before_sources)

    for source in sorted(available):
        now = _normalise(available[source])
        before = before_sources.get(source, {})
        known = {str(y) for y in known_partitions.get(source, ())}
        now_by_year, before_by_year = _by_year(now), _by_year(before)

        for year in sorted(now_by_year, key=_year_order):
            items_now = now_by_year[year]
            items_before = before_by_year.get(year, {})
            changed = sorted(i for i, fp in items_now.items() if i in items_before and items_before[i] != fp)
            added = sorted(i for i in items_now if i not in items_before)
            removed = sorted(i for i in items_before if i not in items_now)
            if year not in known:
                new_partitions.setdefault(source, []).append(year)
                reason, items = "new_year", tuple(sorted(items_now))
            elif changed:
                reason, items = "changed", tuple(changed)
            elif added:
                reason, items = "new_item", tuple(added)
            elif removed:
                reason, items = "removed_item", tuple(removed)
            else:
                continue
            run_key = f"{source}:{year}:{_run_label(items_now)}#{next_seq}"
            runs.append(PlannedRun(source, year, reason, items, run_key))

        gone = sorted((y for y in before_by_year if y not in now_by_year and y in known), key=_year_order)
        if gone:
            orphaned[source] = gone
        next_sources[source] = now

    if next_sources == before_sources and not runs and not new_partitions:
        cursor = previous  # nothing changed: hand the same cursor back
        cursor.setdefault("version", CURSOR_VERSION)
        cursor.setdefault("sources", {})
        cursor.setdefault("seq", seq)
    else:
        cursor = {**previous, "version": CURSOR_VERSION, "seq": next_seq, "sources": next_sources}
    return RefreshPlan(runs=runs, new_partitions=new_partitions, cursor=cursor, orphaned=orphaned)


def load_cursor(text: str | None) -> dict:
    """Parse a sensor cursor; an empty/None cursor or one of another version counts as no cursor."""
    if not text:
        return {}
    try:
        cursor = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(cursor, dict) or cursor.get("version") != CURSOR_VERSION:
        return {}
    return cursor


def dump_cursor(cursor: Mapping[str, Any]) -> str:
    return json.dumps(cursor, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------------
# Listing what the sources offer now
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AvailableItem:
    kind: str  # "table" (live CBS catalog entry) or "file" (offline data folder)
    years: dict[str, str]  # year -> fingerprint (Modified or sha256)
    modified: str | None = None  # tables: the catalog's Modified


@dataclass
class SourceListing:
    """What :func:`list_available` found: per source its items, plus errors and the hashing cache."""

    items: dict[str, dict[str, AvailableItem]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)  # items without a usable year
    files: dict[str, dict] = field(default_factory=dict)  # relative path -> stat + sha256 + years

    def available(self) -> dict[str, dict[str, dict[str, str]]]:
        return {
            source: {item: dict(info.years) for item, info in items.items()}
            for source, items in self.items.items()
        }


def table_years(entry: Mapping[str, Any]) -> list[int]:
    """Years a CBS catalog entry covers: '2024' -> [2024]; '2012, 2016, 2020' -> all three."""
    from wijk_assets.resources import _table_years

    return sorted(_table_years(dict(entry)))


def table_fingerprint(entry: Mapping[str, Any]) -> str:
    for key in ("Modified", "MetaDataModified", "Updated"):
        if entry.get(key):
            return str(entry[key])
    # no date at all (not seen on CBS): fall back on the entry itself
    return "entry-sha256=" + hashlib.sha256(json.dumps(entry, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_item(source_file, cache: Mapping[str, dict]) -> tuple[AvailableItem, dict]:
    """Fingerprint one data file, re-hashing only when size, mtime or inode changed."""
    from wijk_assets.sources import read_source_file
    from wijk_assets.sources.base import sha256_file

    path = Path(source_file.path)
    stat = path.stat()
    cached = cache.get(source_file.relative_path) or {}
    same_stat = (
        cached.get("size") == stat.st_size
        and cached.get("mtime_ns") == stat.st_mtime_ns
        and cached.get("inode") == stat.st_ino
        and cached.get("sha256")
    )
    sha = cached["sha256"] if same_stat else sha256_file(path)
    if source_file.filename_year is not None:
        years = [int(source_file.filename_year)]
    elif cached.get("sha256") == sha and cached.get("years"):
        years = [int(y) for y in cached["years"]]
    else:
        years = read_source_file(source_file).years()  # the year is in a column: read the file once
    entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino, "sha256": sha,
             "years": years}
    return AvailableItem("file", {str(y): sha for y in years}), entry


def _has_data_dir(cbs) -> bool:
    data_dir = getattr(cbs, "data_dir", None)
    return bool(data_dir) and Path(data_dir).is_dir()


def list_available(cbs, sources: Iterable[str], file_cache: Mapping[str, dict] | None = None) -> SourceListing:
    """What each source offers now, the way :class:`~wijk_assets.resources.CbsSourceResource` loads it.

    Live mode: the CBS catalog entries of the source (a source without live tables, such as the
    Leefbaarometer, falls back to the data folder, exactly as ``CbsSourceResource.extracts`` does).
    Offline: the catalogued files. A source whose listing fails is reported in ``errors`` and left out
    of ``items`` (so its cursor state is kept and it gets no runs this tick).
    """
    listing = SourceListing()
    cache = dict(file_cache or {})
    for source in sources:
        try:
            items: dict[str, AvailableItem] = {}
            if getattr(cbs, "mode", "offline") == "live":
                for entry in cbs.live_tables(source):
                    table_id = str(entry.get("Identifier", "")).strip()
                    years = table_years(entry)
                    if not table_id or not years:
                        listing.skipped.setdefault(source, []).append(
                            f"{table_id or '?'} (Period {entry.get('Period')!r} names no year)"
                        )
                        continue
                    fingerprint = table_fingerprint(entry)
                    items[table_id] = AvailableItem(
                        "table", {str(y): fingerprint for y in years}, modified=fingerprint
                    )
            if not items and _has_data_dir(cbs):
                files: dict[str, dict] = {}
                for source_file in cbs.source_files(source):
                    item, entry = _file_item(source_file, cache)
                    items[source_file.relative_path] = item
                    files[source_file.relative_path] = entry
                listing.files.update(files)
            listing.items[source] = items
        except Exception as error:  # noqa: BLE001 - one source's failure must not hide the others
            listing.errors[source] = f"{type(error).__name__}: {error}"
    return listing


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
    ``$WIJK_RELEASE_SENSOR_INTERVAL_SECONDS`` or 3600."""
    interval = minimum_interval_seconds or int(os.environ.get(INTERVAL_ENV, "") or DEFAULT_INTERVAL_SECONDS)
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


def _unfinished_run_exists(instance: dg.DagsterInstance, source: str, year: str) -> bool:
    from dagster._core.storage.dagster_run import FINISHED_STATUSES

    statuses = [s for s in dg.DagsterRunStatus if s not in FINISHED_STATUSES]
    return bool(
        instance.get_run_records(
            filters=dg.RunsFilter(statuses=statuses, tags={SOURCE_TAG: source, "dagster/partition": year}),
            limit=1,
        )
    )


def weekly_refresh_plan(cbs, instance: dg.DagsterInstance, sources: Iterable[str]) -> tuple[RefreshPlan, SourceListing]:
    """The weekly check: compare what is available with what the raw partitions were last loaded from.

    New years are added as partitions right away (a schedule cannot ask the daemon to add them), and
    partitions that already have a queued or running run for their source are left alone.
    """
    sources = list(sources)
    listing = list_available(cbs, sources)
    partitions = known_partitions(instance, sources)
    baseline = fingerprints_from_materializations(instance, listing, partitions)
    plan = plan_refresh({"version": CURSOR_VERSION, "seq": 0, "sources": baseline}, listing.available(), partitions)
    for source, years in plan.new_partitions.items():
        instance.add_dynamic_partitions(release_year_partitions(source).name, years)
    plan.runs = [r for r in plan.runs if not _unfinished_run_exists(instance, r.source, r.year)]
    return plan, listing


def raw_refresh_job(source: str) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        f"raw_refresh_{source}",
        selection=dg.AssetSelection.assets(raw_asset_key(source)),
        description=f"(Re)load partitions of raw/{source}; launched by weekly_refresh_{source}.",
    )


def build_weekly_refresh_schedule(
    source: str,
    cron_schedule: str = WEEKLY_CRON,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"weekly_refresh_{source}",
        cron_schedule=cron_schedule,
        execution_timezone=TIMEZONE,
        default_status=default_status,
        target=raw_refresh_job(source),
        description=(
            f"Fallback for release_sensor: every Monday 06:00 reload the raw/{source} partitions whose "
            "source files/tables differ from what they were last materialised from."
        ),
    )
    def _weekly(context: dg.ScheduleEvaluationContext, cbs: CbsSourceResource):
        plan, listing = weekly_refresh_plan(cbs, context.instance, [source])
        if source in listing.errors:
            raise dg.Failure(f"weekly refresh of {source}: could not list the source: {listing.errors[source]}")
        context.log.info(f"weekly refresh {source}: {plan.summary()}")
        requests = run_requests(plan, f"weekly_refresh_{source}")
        return requests or dg.SkipReason(f"{source}: every partition matches its source ({plan.summary()})")

    return _weekly


weekly_refresh_schedules = [build_weekly_refresh_schedule(source) for source in RAW_SOURCES]


# ---------------------------------------------------------------------------------------------------
# Declarative automation for everything downstream of raw
# ---------------------------------------------------------------------------------------------------


def downstream_automation_condition(
    triggered_by: Iterable[dg.AssetKey] | None = None, may_be_missing: Iterable[dg.AssetKey] = ()
) -> dg.AutomationCondition:
    """For the dbt, ML and report assets: run once after upstream *data* changed, when complete and checked.

    This is :meth:`AutomationCondition.eager` with one change: a dependency counts as updated only
    when its new materialisation carries a different **data version** (or it is requested in the same
    run). Raw partitions are versioned by the sha256 of their source files, dbt and report assets by a
    hash of their code version and their inputs' data versions, models by their content; so reloading
    an unchanged file, or rebuilding a mart from identical inputs, retrains nothing downstream.

    The rest is eager's: not while any dependency partition is missing or *in progress* (a queued
    run counts), and not while the asset itself is in progress. The release sensor requests all the
    raw runs of a tick at once, so while the last of them is queued behind the ``duckdb`` pool the
    marts wait, and they are requested once when it finishes (``since_last_handled`` folds all the
    updates into that one request). ``all_deps_blocking_checks_passed()`` additionally holds an asset
    back while a blocking asset check (a Great Expectations gate) has failed on a dependency.

    Failure isolation: a raw partition whose latest load *failed* (unreadable file, or refused by gate 1
    before the swap) is stuck, not pending. It counts neither as missing nor as an unpassed gate (its
    check was planned but never ran), so one bad file never freezes the other sources' updates;
    ``wijk-assets status`` reports it (:mod:`wijk_assets.release_status`).

    ``triggered_by`` names the dependencies whose new data triggers a run, when not all should: an
    asset that reads both a model and the mart the model is trained on (a diamond) must wait for the
    model, or it would run once after the mart and again after the model. The guards (missing, in
    progress, failed blocking checks) still look at every dependency, except that partitions of
    ``may_be_missing`` may be missing: the published tables must follow the explanations of the
    outcomes that passed gate 3 although a withheld outcome has none.
    """
    AC = dg.AutomationCondition
    new_data_upstream = AC.any_deps_match(
        (AC.newly_updated() & AC.data_version_changed() & ~AC.executed_with_root_target()).with_label(
            "updated_with_new_data_version"
        )
        | AC.will_be_requested()
    )
    if triggered_by is not None:
        new_data_upstream = new_data_upstream.allow(dg.AssetSelection.assets(*triggered_by))
    new_data_upstream = new_data_upstream.with_label("any_deps_have_new_data")
    deps_missing = AC.any_deps_missing()
    may_be_missing = list(may_be_missing)
    if may_be_missing:
        deps_missing = deps_missing.ignore(dg.AssetSelection.assets(*may_be_missing))
    # Failure isolation (issue 11): a raw partition whose load failed (an unreadable file, or one gate 1
    # refused) is *stuck*, not *pending*: waiting for it froze every downstream asset, for all sources.
    # It keeps its previous content (or none), ``wijk-assets status`` lists it, and everything else
    # flows; a raw partition that is missing and never failed (not loaded yet) still holds them back.
    raw_keys = dg.AssetSelection.assets(*[raw_asset_key(s) for s in RAW_SOURCES])
    deps_missing = deps_missing.ignore(raw_keys) | AC.any_deps_match(
        AC.missing() & ~AC.will_be_requested() & ~AC.execution_failed()
    ).allow(raw_keys).with_label("any_raw_deps_missing_not_failed")
    # Likewise for the raw gate: a failed load leaves its check *planned but never evaluated*, which
    # ``check_passed`` reads as "not passed" and froze everything downstream. Raw partitions are
    # validated before they go live, so for raw dependencies only an actual gate failure holds back.
    checks_ok = AC.all_deps_blocking_checks_passed().ignore(raw_keys) & AC.all_deps_match(
        AC.all_checks_match(~AC.check_failed(), blocking_only=True)
    ).allow(raw_keys).with_label("no_raw_dep_gate_failed")
    return (
        (AC.newly_missing() | new_data_upstream).since_last_handled()
        & ~deps_missing
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
        & checks_ok
    ).with_label("wijk_downstream")


automation_sensor = dg.AutomationConditionSensorDefinition(
    "wijk_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Evaluates the automation conditions of the dbt and ML assets (downstream_automation_condition).",
)

sensors = [release_sensor, automation_sensor]

__all__ = [
    "AvailableItem",
    "PlannedRun",
    "RefreshPlan",
    "SourceListing",
    "automation_sensor",
    "build_release_sensor",
    "build_weekly_refresh_schedule",
    "downstream_automation_condition",
    "evaluate_release_check",
    "fingerprints_from_materializations",
    "list_available",
    "plan_refresh",
    "release_sensor",
    "sensors",
    "weekly_refresh_plan",
    "weekly_refresh_schedules",
]
