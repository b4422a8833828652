"""What the data folder (or the CBS catalog) offers now, against what the raw partitions hold: the two
questions ``wijk-assets status`` asks of the sources themselves (no warehouse)."""

from __future__ import annotations

import dagster as dg


def offered_as_loaded(instance: dg.DagsterInstance, cbs, source: str, years: list[str]) -> set[str]:
    """The ``years`` for which the source now offers exactly what their live partition was last loaded
    from (files by sha256, live tables by Modified). A refused file that was replaced by the one loaded
    before leaves a failed latest attempt, but the live rows are those of the file on offer: the release
    check has nothing to run, so the partition is not stuck (it stayed so for good: every refresh exited 1)."""
    from wijk_assets.defs.automation.release_sensor import fingerprints_from_materializations
    from wijk_assets.lib.release.listing import list_available

    listing = list_available(cbs, [source])
    if source in listing.errors:
        return set()
    loaded = fingerprints_from_materializations(instance, listing, {source: years}).get(source, {})
    offered = listing.available().get(source, {})

    def at(state: dict[str, dict[str, str]], year: str) -> dict[str, str]:
        return {item: fps[year] for item, fps in state.items() if year in fps}

    return {year for year in years if at(loaded, year) and at(loaded, year) == at(offered, year)}


def unreadable_sources(cbs, sources: list[str] | None = None) -> dict[str, str]:
    """source -> why the release check cannot list it (e.g. a file in another format): the refresh says so
    and exits 1, but no run failed, so it is no stuck partition; ``status`` must say so too."""
    from wijk_assets.defs.raw.assets import RAW_SOURCES
    from wijk_assets.lib.release.listing import list_available

    return dict(list_available(cbs, sources or RAW_SOURCES).errors)


__all__ = ["offered_as_loaded", "unreadable_sources"]
