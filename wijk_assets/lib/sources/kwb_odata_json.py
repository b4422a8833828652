"""Reader for CBS KWB figures saved as OData TypedDataSet JSON (e.g. 85984NED, KWB 2024).

Two shapes are accepted, both keyed by the real OData topic keys (``AantalInwoners_5``, ``Mannen_6``):

* records, as the TypedDataSet endpoint answers: ``{"value": [{"WijkenEnBuurten": "WK010600  ",
  "AantalInwoners_5": 2840, ...}, ...]}`` or a bare list of such records;
* one object per region code, as the shared national extract stores them:
  ``{"GM1680": {"AantalInwoners_5": 25845, ...}, "WK168000": {...}}``.

Both are handed to :func:`~wijk_assets.lib.sources.odata_shape.odata_records_to_long`, the code the live
OData reader uses, with each number written as the live reader writes it (``str()`` of the JSON number,
null -> NULL). A keyed object becomes records with the code as ``WijkenEnBuurten``. So this file and
the live 85984NED feed land the same raw rows, and one set of concept-map rows (by OData key stem)
maps both. ``source_row`` is the 1-based position of the record (or region key) in the file.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from wijk_assets.lib.sources.base import RawExtract, SourceFormatError
from wijk_assets.lib.sources.odata import records_to_text_frame
from wijk_assets.lib.sources.odata_shape import GEO_DIMENSIONS, odata_records_to_long

if TYPE_CHECKING:
    from wijk_assets.lib.sources.catalog import SourceFile

GEO_KEY = "WijkenEnBuurten"
# Since 2024 Amsterdam's wijk and buurt codes end in letters (WK0363AA, BU0363AA01).
_CODE = re.compile(r"^(?:NL\d{2}|GM\d{4}|WK\d{4}[0-9A-Z]{2}|BU\d{4}[0-9A-Z]{4})$")


def _no_duplicates(source: str):
    def hook(pairs: list[tuple[str, Any]]) -> dict:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise SourceFormatError(source, "each key once per JSON object", f"{key!r} twice")
            seen[key] = value
        return seen

    return hook


def _load(source_file: "SourceFile") -> Any:
    source = source_file.relative_path
    try:
        text = source_file.path.read_bytes().decode("utf-8-sig")
        return json.loads(text, object_pairs_hook=_no_duplicates(source))
    except SourceFormatError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SourceFormatError(
            source,
            "a complete UTF-8 JSON document",
            f"{type(error).__name__}: {error}",
            hint="The file is truncated or not JSON; download it again",
        ) from error


def _check_value(source: str, row: int, code: str, key: str, value: Any) -> None:
    if value is None or isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return
    raise SourceFormatError(
        source,
        "a number, a text or null as a topic value",
        f"{type(value).__name__} {json.dumps(value)[:60]} for region {code!r}",
        row=row,
        column=key,
    )


def records_from_document(document: Any, source: str) -> tuple[list[dict], str]:
    """The records of a KWB JSON document and its shape (``records`` or ``keyed_by_code``)."""
    if isinstance(document, dict) and isinstance(document.get("value"), list):
        document = document["value"]
    if isinstance(document, list):
        records = document
        shape = "records"
        for i, record in enumerate(records, start=1):
            if not isinstance(record, dict):
                raise SourceFormatError(source, "a JSON object per record", type(record).__name__, row=i)
            geo = next((k for k in GEO_DIMENSIONS if k in record), None)
            if geo is None:
                raise SourceFormatError(
                    source, f"a geo dimension key (one of {', '.join(GEO_DIMENSIONS)})",
                    f"keys {sorted(record)[:6]}", row=i,
                )
            for key, value in record.items():
                _check_value(source, i, str(record.get(geo)), key, value)
    elif isinstance(document, dict):
        shape = "keyed_by_code"
        records = []
        for i, (code, values) in enumerate(document.items(), start=1):
            if not _CODE.match(str(code).strip()):
                raise SourceFormatError(
                    source,
                    "a CBS region code as object key (GM + 4 digits, WK + 4 digits + 2, BU + 4 digits + 4 digits/letters, or NL00)",
                    repr(code),
                    row=i,
                    hint="The file is not keyed by region code; is it a different export?",
                )
            if not isinstance(values, dict):
                raise SourceFormatError(
                    source, f"an object of topic values for region {code!r}", type(values).__name__, row=i
                )
            for key, value in values.items():
                _check_value(source, i, code, key, value)
            records.append({GEO_KEY: code, **values})
    else:
        raise SourceFormatError(
            source,
            "an OData TypedDataSet answer ({'value': [...]}), a list of records or an object keyed by region code",
            type(document).__name__,
        )
    if not records:
        raise SourceFormatError(source, "at least one region", "none")
    return records, shape


def read_kwb_odata_json(source_file: "SourceFile") -> RawExtract:
    source = source_file.relative_path
    records, shape = records_from_document(_load(source_file), source)
    frame = records_to_text_frame(records)
    geo = next(k for k in GEO_DIMENSIONS if k in frame.columns)
    codes = frame[geo].astype(str).str.strip()
    duplicated = codes[codes.duplicated()]
    if not duplicated.empty:
        first = int(duplicated.index[0])
        raise SourceFormatError(source, "each region once", f"{duplicated.iloc[0]!r} again", row=first + 1, column=geo)
    long = odata_records_to_long(
        frame,
        source=source,
        first_data_row=1,  # record number in the file
        expected_year=source_file.filename_year,
    )
    topics = [c for c in frame.columns if c not in (geo, "ID")]
    metadata = {
        "format": "kwb_odata_json",
        "shape": shape,
        "records": len(records),
        "columns": list(frame.columns),
        "topics": topics,
        "levels": {k: int(v) for k, v in codes.str[:2].value_counts().sort_index().items()},
    }
    return RawExtract.from_file(source_file, long, metadata)


__all__ = ["read_kwb_odata_json", "records_from_document"]
