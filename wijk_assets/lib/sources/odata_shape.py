"""Turn OData-shaped records (live feed, xlsx or CSV dumps of it) into the raw long layout.

CBS OData tables have one geo dimension (``WijkenEnBuurten`` / ``DistrictsAndNeighbourhoods``), a period
dimension (``Perioden`` / ``Periods``), optional other dimensions (``Leeftijd``, ``Marges``), region
attributes (``Gemeentenaam_1``, ``SoortRegio_2``, ``Codering_3``) and topics. The same handling serves
every OData-derived format, so the live reader and the file dumps land identical raw rows.
"""

from __future__ import annotations

import re

import pandas as pd

from wijk_assets.lib.sources.base import SourceFormatError, key_stem, wide_to_long

GEO_DIMENSIONS = ("WijkenEnBuurten", "DistrictsAndNeighbourhoods", "RegioS", "Regions")
PERIOD_DIMENSIONS = ("Perioden", "Periods")
# Region attributes are topics in CBS's metadata but describe the area, not a measurement.
GEMEENTE_NAME_STEMS = ("Gemeentenaam", "MunicipalityName")
REGION_TYPE_STEMS = ("SoortRegio", "RegionType")
NOT_A_MEASURE = ("ID",)

_PERIOD = re.compile(r"^\s*(\d{4})")


def period_year(value: object) -> int | None:
    """``'2012JJ00'`` -> 2012; ``'2019'`` -> 2019; anything else -> None."""
    match = _PERIOD.match(str(value)) if value is not None else None
    return int(match.group(1)) if match else None


def _first_present(columns: list[str], names: tuple[str, ...]) -> str | None:
    return next((c for c in columns if c in names), None)


def _first_with_stem(columns: list[str], stems: tuple[str, ...]) -> str | None:
    return next((c for c in columns if key_stem(c) in stems), None)


def odata_records_to_long(
    frame: pd.DataFrame,
    *,
    source: str,
    first_data_row: int,
    expected_year: int | None = None,
    dimension_columns: list[str] | None = None,
    sheet: str | None = None,
) -> pd.DataFrame:
    """Melt OData records (all cells as text) into raw long rows.

    ``dimension_columns`` are non-geo, non-period dimensions (e.g. ``Leeftijd``, ``Marges``); when not
    given they are taken to be the columns without a ``_<n>`` suffix other than ID, geo and period (CBS
    gives topics a positional suffix and dimensions none). Their values form ``subgroup``.
    ``expected_year`` (from the file name) must agree with every row's period, otherwise the file is
    mislabelled and loading it would put figures in the wrong year.
    """
    columns = [str(c) for c in frame.columns]
    geo = _first_present(columns, GEO_DIMENSIONS)
    if geo is None:
        raise SourceFormatError(
            source,
            f"a geo dimension column (one of {', '.join(GEO_DIMENSIONS)})",
            f"columns {columns[:8]}{'…' if len(columns) > 8 else ''}",
            sheet=sheet,
            row=first_data_row - 1,
        )
    period = _first_present(columns, PERIOD_DIMENSIONS)
    if dimension_columns is None:
        dimension_columns = [
            c
            for c in columns
            if c not in (geo, period, *NOT_A_MEASURE) and key_stem(c) == c.strip()
        ]
    gemeente_col = _first_with_stem(columns, GEMEENTE_NAME_STEMS)
    region_col = _first_with_stem(columns, REGION_TYPE_STEMS)
    skip = {geo, period, gemeente_col, region_col, *dimension_columns, *NOT_A_MEASURE}
    measures = [c for c in columns if c not in skip]
    if not measures:
        raise SourceFormatError(source, "at least one topic column", "none", sheet=sheet)

    years: pd.Series | int | None = expected_year
    if period is not None:
        parsed = frame[period].map(period_year)
        bad = parsed.isna()
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise SourceFormatError(
                source,
                "a period code starting with a 4-digit year (e.g. '2020JJ00')",
                repr(frame[period].iloc[i]),
                sheet=sheet,
                row=first_data_row + i,
                column=period,
            )
        if expected_year is not None and (parsed != expected_year).any():
            i = int((parsed != expected_year).to_numpy().nonzero()[0][0])
            raise SourceFormatError(
                source,
                f"period {expected_year} (the year in the file name)",
                repr(frame[period].iloc[i]),
                sheet=sheet,
                row=first_data_row + i,
                column=period,
                hint="Rename the file to the year it holds",
            )
        years = parsed.astype("int64")
    if years is None:
        raise SourceFormatError(source, "a period column or a year in the file name", "neither")

    if dimension_columns:
        # Vectorised "Leeftijd=20300|Marges=MW00000" (a row-wise apply cost ~0.5 s on 17k rows and
        # returned a DataFrame instead of a Series for an empty frame).
        parts = [f"{k}=" + frame[k].astype(str).str.strip() for k in dimension_columns]
        subgroup = parts[0]
        for part in parts[1:]:
            subgroup = subgroup + "|" + part
    else:
        subgroup = ""
    return wide_to_long(
        frame,
        id_columns={
            "area_code": geo,
            "area_name": None,
            "region_type": region_col,
            "gemeente_name": gemeente_col,
        },
        measure_columns=measures,
        first_data_row=first_data_row,
        release_year=years,
        subgroup=subgroup,
    )
