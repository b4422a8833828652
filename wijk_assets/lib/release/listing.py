"""What each source offers now: CBS catalog entries (live) or catalogued files (offline), fingerprinted."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def catalog_entry_years(table: Mapping[str, Any]) -> set[int]:
    """Years a catalog entry covers: '2024' -> {2024}; '2012, 2016, 2020' -> all three."""
    return {int(y) for y in re.findall(r"(?<!\d)(\d{4})(?!\d)", str(table.get("Period", "")))}


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
    return sorted(catalog_entry_years(entry))


def table_fingerprint(entry: Mapping[str, Any]) -> str:
    for key in ("Modified", "MetaDataModified", "Updated"):
        if entry.get(key):
            return str(entry[key])
    # no date at all (not seen on CBS): fall back on the entry itself
    return "entry-sha256=" + hashlib.sha256(json.dumps(entry, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_item(source_file, cache: Mapping[str, dict]) -> tuple[AvailableItem, dict]:
    """Fingerprint one data file, re-hashing only when size, mtime or inode changed."""
    from wijk_assets.lib.sources import read_source_file
    from wijk_assets.lib.sources.base import sha256_file

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
    """What each source offers now, the way :class:`~wijk_assets.defs.resources.CbsSourceResource` loads it.

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
