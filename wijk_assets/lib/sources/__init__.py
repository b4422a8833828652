"""Source readers: one per file *format* (not per year), all returning the raw long layout.

``READERS`` maps the ``format`` named in ``catalog.yaml`` to its reader. Every reader takes a
:class:`~wijk_assets.lib.sources.catalog.SourceFile` and returns a :class:`~wijk_assets.lib.sources.base.RawExtract`, or
raises :class:`~wijk_assets.lib.sources.base.SourceFormatError` naming file, sheet/row/column and what it
expected.
"""

from __future__ import annotations

import copy
import inspect
from collections import OrderedDict
from dataclasses import replace
from importlib import import_module
from typing import TYPE_CHECKING

from wijk_assets.lib.sources.base import RawExtract, SourceFormatError

if TYPE_CHECKING:
    from wijk_assets.lib.sources.catalog import SourceFile

READERS: dict[str, str] = {
    "odata_xlsx": "wijk_assets.lib.sources.odata_dump:read_odata_xlsx",
    "odata_csv": "wijk_assets.lib.sources.odata_dump:read_odata_csv",
    "statline_csv": "wijk_assets.lib.sources.statline_csv:read_statline_csv",
    "statline_csv_transposed": "wijk_assets.lib.sources.statline_csv:read_statline_csv_transposed",
    "kwb_xlsx": "wijk_assets.lib.sources.kwb_xlsx:read_kwb_xlsx",
    "leefbaarometer_csv": "wijk_assets.lib.sources.leefbaarometer:read_leefbaarometer_csv",
    "survey_csv": "wijk_assets.lib.sources.survey_csv:read_survey_csv_source",
    "kwb_odata_json": "wijk_assets.lib.sources.kwb_odata_json:read_kwb_odata_json",
    "area_geojson": "wijk_assets.lib.sources.area_geojson:read_area_geojson",
}


def read_source_file(source_file: "SourceFile", **options) -> RawExtract:
    """Read one catalogued file with the reader its format names.

    ``options`` (e.g. ``min_respondents``) go to the readers whose signature takes them; the others
    ignore them.
    """
    target = READERS.get(source_file.spec.format)
    if target is None:
        raise SourceFormatError(
            source_file.path,
            f"a format with a reader ({', '.join(sorted(READERS))})",
            repr(source_file.spec.format),
            hint="Fix the `format` of this source in wijk_assets/lib/sources/catalog.yaml",
        )
    module_name, func_name = target.split(":")
    reader = getattr(import_module(module_name), func_name)
    accepted = inspect.signature(reader).parameters
    return reader(source_file, **{k: v for k, v in options.items() if k in accepted})


# Files that feed several release years (no year in the file name: the Leefbaarometer's one CSV holds
# 2002-2022): each year's partition and the partition listing read the whole file, nine reads of one
# file in a full build. Kept per process, keyed by the file's bytes (sha256) and reader and options.
_MULTI_YEAR: OrderedDict[tuple, RawExtract] = OrderedDict()
_MULTI_YEAR_SIZE = 2


def read_multi_year_file(source_file: "SourceFile", **options) -> RawExtract:
    """:func:`read_source_file` for a file without a year in its name, read once per content: the same
    bytes, reader and options give the extract read before (a new object; its frame is shared and never
    changed in place: callers select a year's rows into a new frame). A changed file is read again."""
    from wijk_assets.lib.sources.base import READER_VERSION, sha256_file

    key = (str(source_file.path), source_file.relative_path, source_file.spec.format, READER_VERSION,
           sha256_file(source_file.path), tuple(sorted((k, repr(v)) for k, v in options.items())))
    extract = _MULTI_YEAR.get(key)
    if extract is None:
        extract = read_source_file(source_file, **options)
        _MULTI_YEAR[key] = extract
        while len(_MULTI_YEAR) > _MULTI_YEAR_SIZE:
            _MULTI_YEAR.popitem(last=False)
    else:
        _MULTI_YEAR.move_to_end(key)
    return replace(extract, metadata=copy.deepcopy(extract.metadata))


__all__ = ["READERS", "RawExtract", "SourceFormatError", "read_multi_year_file", "read_source_file"]


def read_partition_files(files: list["SourceFile"], year: int, min_respondents: int | None = None) -> list[RawExtract]:
    """Everything ``files`` (a source's files in a data folder) hold for release ``year``, one extract per
    file that has rows for it (a multi-year file contributes its rows of that year)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    files = [f for f in files if f.filename_year in (None, year)]

    def read(source_file) -> RawExtract | None:
        reader = read_source_file if source_file.filename_year is not None else read_multi_year_file
        extract = reader(source_file, min_respondents=min_respondents)
        if source_file.filename_year is None:
            extract.frame = extract.frame[extract.frame["release_year"] == year]
            if extract.frame.empty:
                return None
        return extract

    # The files of one release (a RIVM year: three workbooks) are read two at a time: the xlsx parser
    # lets go of the GIL for part of its work (RIVM 2012: 2.35 -> 1.73 s). Results keep the files'
    # order, and the first file (in that order) a reader refuses is the error raised, as one by one.
    workers = min(2, len(files), os.cpu_count() or 1)
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            extracts = list(pool.map(read, files))
    else:
        extracts = [read(f) for f in files]
    return [e for e in extracts if e is not None]


def raw_parts(extracts: list[RawExtract], retrieved_at=None) -> list[tuple]:
    """Each extract's rows plus its provenance constants, ready for ``warehouse.replace_partition``."""
    from datetime import datetime, timezone

    from wijk_assets.lib.sources.base import READER_VERSION

    retrieved_at = retrieved_at or datetime.now(timezone.utc).replace(tzinfo=None)
    return [
        (
            extract.frame,
            {
                "cbs_table_id": extract.cbs_table_id,
                "source_file": extract.source,
                "source_sha256": extract.sha256,
                "retrieved_at": retrieved_at,
                "reader_version": READER_VERSION,
            },
        )
        for extract in extracts
    ]
