"""What to (re)load after a source release: the release planner (pure, no Dagster).

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
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CURSOR_VERSION = 1

# Why a partition is (re)loaded, strongest first.
REASONS = ("new_year", "changed", "new_item", "removed_item")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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
