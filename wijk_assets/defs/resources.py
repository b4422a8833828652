"""Dagster resources: the DuckDB warehouse file and the CBS source (live OData or an offline folder)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb

from wijk_assets.lib import warehouse
from wijk_assets.lib.sources.catalog import SourceFile, find_source_files, load_catalog
from wijk_assets.lib.release.listing import catalog_entry_years
from wijk_assets.lib.sources import RawExtract, raw_parts, read_multi_year_file, read_partition_files  # noqa: F401


# Every step that opens the database file shares this Dagster pool (limit 1: DuckDB has one writer).
DUCKDB_POOL = "duckdb"


class SettingsResource(dg.ConfigurableResource):
    """The run-time choices of a municipality, handed to the assets that need them.

    Built once from :class:`wijk_assets.settings.Settings` in :func:`wijk_assets.definitions.build_resources`,
    so a run uses the settings its definitions were built with (no asset re-reads the environment).
    """

    gemeente: str = "GM0106"
    min_inhabitants: int = 50
    min_respondents: int = 10
    sensitive_opt_in: list[str] = []
    ml_n_jobs: int = 1
    ml_workers: int = 1  # as Settings built directly (see settings.Settings)

    @classmethod
    def from_settings(cls, settings) -> "SettingsResource":
        return cls(
            gemeente=settings.gemeente,
            min_inhabitants=int(settings.min_inhabitants),
            min_respondents=int(settings.min_respondents),
            sensitive_opt_in=list(settings.sensitive_opt_in),
            ml_n_jobs=int(settings.ml_n_jobs),
            ml_workers=int(settings.ml_workers),
        )


class WarehouseResource(dg.ConfigurableResource):
    """The one DuckDB database file every asset reads and writes."""

    path: str

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with warehouse.connect(self.path, read_only=read_only) as con:
            yield con

class CbsSourceResource(dg.ConfigurableResource):
    """Where source data comes from.

    Offline mode (no ``base_url``): the catalogued files in ``data_dir``. Live mode: CBS OData tables
    found in the CBS catalog by the title patterns in ``catalog.yaml``; sources CBS does not publish
    (Leefbaarometer) still come from ``data_dir``.
    """

    data_dir: str | None = None
    base_url: str | None = None
    catalog_url: str | None = None
    timeout_seconds: float = 30.0
    # reader options from the settings (the survey reader's minimum number of respondents)
    min_respondents: int = 10
    # files the publisher withdrew on purpose (Settings.withdrawn_files): gate 1 accepts a reload without them
    withdrawn_files: list[str] = []

    @property
    def mode(self) -> str:
        return "live" if self.base_url else "offline"

    def _data_dir(self) -> Path:
        if not self.data_dir:
            raise dg.Failure(
                "no data folder configured: set WIJK_DATA_DIR to a folder of source files "
                "(default ../shared/data beside the repository) or WIJK_CBS_BASE_URL for live CBS"
            )
        path = Path(self.data_dir)
        if not path.is_dir():
            raise dg.Failure(f"data folder {path} (WIJK_DATA_DIR) does not exist")
        return path

    def source_files(self, source: str) -> list[SourceFile]:
        return find_source_files(source, self._data_dir())

    def _client(self):
        from wijk_assets.lib.sources.odata import CbsODataClient

        return CbsODataClient(self.base_url, catalog_url=self.catalog_url, timeout=self.timeout_seconds)

    def live_tables(self, source: str) -> list[dict]:
        """CBS catalog entries for ``source`` (Identifier, Title, Period, Modified)."""
        spec = load_catalog()[source]
        if not self.base_url or not spec.live_title_pattern:
            return []
        return find_catalog_tables(self._client(), spec.live_title_pattern, spec.live_table_ids)

    def available_years(self, source: str) -> list[int]:
        """The release years this source can deliver now (the partition keys)."""
        years: set[int] = set()
        for table in self.live_tables(source):
            years.update(catalog_entry_years(table))
        if self.data_dir and Path(self.data_dir).is_dir() and not (self.mode == "live" and years):
            for source_file in self.source_files(source):
                if source_file.filename_year is not None:
                    years.add(source_file.filename_year)
                else:
                    years.update(read_multi_year_file(source_file, min_respondents=self.min_respondents).years())
        return sorted(years)

    def extracts(self, source: str, year: int) -> list[RawExtract]:
        """Everything this source has for ``year``, each extract with its own provenance."""
        spec = load_catalog()[source]
        out: list[RawExtract] = []
        live = [t for t in self.live_tables(source) if year in catalog_entry_years(t)]
        if live:
            from wijk_assets.lib.sources.odata import read_live_table

            client = self._client()
            for table in live:
                out.append(
                    read_live_table(client, table["Identifier"], year=year, filter=spec.live_filter)
                )
            return out
        return read_partition_files(self.source_files(source), year, self.min_respondents)


def cbs_resource(settings) -> CbsSourceResource:
    """The source resource of a :class:`wijk_assets.settings.Settings`: the definitions' ``cbs``, and what a
    full build's prestage worker reads with before the definitions are built."""
    return CbsSourceResource(
        data_dir=str(settings.data_dir) if settings.data_dir else None,
        base_url=settings.cbs_base_url,
        min_respondents=int(settings.min_respondents),
        withdrawn_files=list(settings.withdrawn_files),
    )


def find_catalog_tables(client, title_pattern: str, table_ids: tuple[str, ...] = ()) -> list[dict]:
    """Catalog entries whose Title matches the source's pattern, or whose Identifier is listed."""
    import re

    pattern = re.compile(title_pattern)
    return [
        t
        for t in client.catalog_tables()
        if pattern.search(str(t.get("Title", "")).strip()) or t.get("Identifier") in table_ids
    ]


