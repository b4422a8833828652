"""The shape every source reader returns, and the error every reader raises.

Raw tables are *long*: one row per (area, subgroup, measure) with the cell text exactly as the source
wrote it. CBS renames and renumbers columns between yearly releases (``HuishoudensTotaal_28`` in 2022,
``_29`` in 2024; ``g_woz`` vs ``g_wozbag``), so a wide raw table would need a schema change for every
release. In long form a new year lands as new rows; mapping source keys to our column names is the job
of the concept map in the dbt staging layer.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from wijk_assets.lib.sources.catalog import SourceFile

# Bump when a reader's output for the same input file changes; recorded on every raw row.
READER_VERSION = "1.0.0"

# Columns a reader fills (all text, verbatim from the source, except the two integers).
RAW_DATA_COLUMNS: dict[str, str] = {
    "release_year": "INTEGER",  # the year the figures describe (partition key)
    "area_code": "VARCHAR",  # verbatim, may be space padded ("WK034401  ")
    "area_name": "VARCHAR",  # verbatim region name where the source has one
    "region_type": "VARCHAR",  # verbatim ("Buurt     ", "Neighbourhood", "Wijk") or NULL
    "gemeente_name": "VARCHAR",  # verbatim municipality name where the source has one
    "subgroup": "VARCHAR",  # other dimensions, "Leeftijd=20300|Marges=MW00000"; '' when none
    "measure_key": "VARCHAR",  # the source's own column key / header / subject, verbatim
    "value_raw": "VARCHAR",  # cell text verbatim ('    78.4', '.', 'NA'); NULL for an empty cell
    "source_row": "INTEGER",  # 1-based row in the file (header row = 1) or record number in a feed
}

# Columns the loader adds from the extract's provenance.
RAW_PROVENANCE_COLUMNS: dict[str, str] = {
    "cbs_table_id": "VARCHAR",
    "source_file": "VARCHAR",  # path relative to the data folder, or the feed URL
    "source_sha256": "VARCHAR",
    "retrieved_at": "TIMESTAMP",
    "reader_version": "VARCHAR",
}

RAW_COLUMNS: dict[str, str] = {**RAW_DATA_COLUMNS, **RAW_PROVENANCE_COLUMNS}


class SourceFormatError(ValueError):
    """A source file or feed does not look like what its reader expects.

    The message always names the file (or URL), where in it (sheet, row, column) and what was expected
    versus found, so a data engineer can open the file and see the problem.
    """

    def __init__(
        self,
        source: str | Path,
        expected: str,
        found: str | None = None,
        *,
        sheet: str | None = None,
        row: int | None = None,
        column: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.source = str(source)
        self.expected = expected
        self.found = found
        self.sheet = sheet
        self.row = row
        self.column = column
        self.hint = hint
        where = [f"file {self.source}"]
        if sheet is not None:
            where.append(f"sheet {sheet!r}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        message = f"{', '.join(where)}: expected {expected}"
        if found is not None:
            message += f", found {found}"
        if hint:
            message += f". {hint}"
        super().__init__(message)


@dataclass
class RawExtract:
    """What a reader returns for one file or one feed query."""

    frame: pd.DataFrame  # columns: RAW_DATA_COLUMNS
    source: str  # relative file path or URL
    sha256: str
    cbs_table_id: str | None = None
    metadata: dict = field(default_factory=dict)  # e.g. sheet name, period codes, DataProperties

    @classmethod
    def from_file(cls, source_file: SourceFile, frame: pd.DataFrame, metadata: dict) -> RawExtract:
        """The extract of one catalogued file: its relative path, the sha256 of its bytes, its table id."""
        return cls(
            frame=frame,
            source=source_file.relative_path,
            sha256=sha256_file(source_file.path),
            cbs_table_id=source_file.cbs_table_id,
            metadata=metadata,
        )

    def years(self) -> list[int]:
        return sorted(int(y) for y in self.frame["release_year"].dropna().unique())


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=1)
def odata_key_pattern() -> re.Pattern[str]:
    """THE rule for OData keys, read from its one home: ``vars.odata_key_pattern`` in dbt_project.yml.

    dbt's ``measure_key_stem`` macro applies the same pattern, so the concept map is matched by the same
    stems in SQL (staging) and Python (gate 1, the live reader's DataProperties).
    """
    import yaml

    from wijk_assets.settings import DBT_PROJECT_DIR

    config = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text(encoding="utf-8"))
    return re.compile(config["vars"]["odata_key_pattern"])


def key_stem(key: str) -> str:
    """``AantalInwoners_5`` -> ``AantalInwoners``, ``k_0Tot15Jaar_8`` -> ``k_0Tot15Jaar``: the part of an
    OData key that is stable across years. Keys that are not OData keys (kwb short names such as
    ``a_00_14``, ``gwb_code_8``) are returned stripped but otherwise unchanged."""
    key = key.strip()
    match = odata_key_pattern().fullmatch(key)
    return match.group(1) if match else key


def wide_to_long(
    wide: pd.DataFrame,
    *,
    id_columns: dict[str, str | None],
    measure_columns: list[str],
    first_data_row: int,
    release_year: int | pd.Series | None = None,
    subgroup: str | pd.Series = "",
) -> pd.DataFrame:
    """Melt a wide frame of *text* cells into the raw long layout.

    ``id_columns`` maps our raw id column (area_code, area_name, region_type, gemeente_name) to the
    source column holding it (or None when the source lacks it). ``first_data_row`` is the 1-based file
    row of ``wide``'s first record, so ``source_row`` points at the real line in the file.
    Empty cells (NaN / '') become NULL in ``value_raw``; everything else is kept verbatim.
    """
    base = pd.DataFrame(index=wide.index)
    for ours, theirs in id_columns.items():
        base[ours] = wide[theirs] if theirs is not None else None
    base["subgroup"] = subgroup
    base["release_year"] = release_year
    base["source_row"] = range(first_data_row, first_data_row + len(wide))
    # Vectorised melt (row-major: all measures of the first record, then the next record). A
    # DataFrame.melt + join on the repeated index took ~1.4 s for a 17k x 36 sheet; numpy takes ~0.1 s.
    n_measures = len(measure_columns)
    matrix = wide[measure_columns].to_numpy(dtype=object)
    if matrix.shape[1] != n_measures:
        raise ValueError(f"duplicated measure column names in {list(measure_columns)}")
    values = matrix.ravel(order="C")
    empty = pd.isna(values)
    empty |= pd.Series(values, dtype=object).eq("").to_numpy()  # NA-safe, unlike values == ""
    if empty.any():
        values = values.copy()
        values[empty] = None
    columns: dict[str, object] = {}
    for name in RAW_DATA_COLUMNS:
        if name == "measure_key":
            columns[name] = np.tile(np.asarray(list(measure_columns), dtype=object), len(wide))
        elif name == "value_raw":
            columns[name] = values
        else:
            columns[name] = np.repeat(base[name].to_numpy(), n_measures)
    return pd.DataFrame(columns, columns=list(RAW_DATA_COLUMNS))
