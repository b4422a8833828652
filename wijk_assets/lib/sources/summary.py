"""What a raw partition's metadata says about the extracts it was made from, computed once from the readers'
frames (which are released before gate 1 runs): files, areas per level, measures, suppression, reader options.

Used by the raw asset for a partition read in its own run, and by :mod:`wijk_assets.lib.prestage` for one read
in a worker process ahead of its run: both paths give the same summary for the same extracts. No Dagster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from wijk_assets.lib.sources.base import RawExtract


@dataclass(frozen=True)
class ExtractSummary:
    files: list[dict]  # per extract: source (relative path or URL), sha256, cbs_table_id, rows
    levels: dict[str, int]  # areas per level (land, gemeente, wijk, buurt, other, no_cbs_code)
    n_measures: int
    suppression: dict | None  # suppression_summary for the release year
    version_params: list[str]  # the readers' version_params, serialised (see raw_data_version)
    retrieved_at: datetime

    def extract_files(self) -> list[dict]:
        """(source, sha256) per extract: the rejection record's and the failure metadata's file list."""
        return [{"source": f["source"], "sha256": f["sha256"]} for f in self.files]


def summarise_extracts(extracts: list[RawExtract], year: int, retrieved_at: datetime) -> ExtractSummary:
    return ExtractSummary(
        files=[
            {"source": e.source, "sha256": e.sha256, "cbs_table_id": e.cbs_table_id or "", "rows": len(e.frame)}
            for e in extracts
        ],
        levels=level_counts(pd.concat([e.frame[["area_code", "area_name"]] for e in extracts])),
        n_measures=len({k for e in extracts for k in e.frame["measure_key"].unique()}),
        suppression=suppression_summary(extracts, year),
        version_params=version_params(extracts),
        retrieved_at=retrieved_at,
    )


def level_counts(frame: pd.DataFrame) -> dict[str, int]:
    has_code = frame["area_code"].notna()
    # distinct codes first: a RIVM year repeats each of its ~17k codes on ~110 rows (1.9 M strips -> 17k)
    codes = frame.loc[has_code, "area_code"].drop_duplicates().astype(str).str.strip().drop_duplicates()
    prefix = codes.str[:2].map({"NL": "land", "GM": "gemeente", "WK": "wijk", "BU": "buurt"})
    counts = {k: int(v) for k, v in prefix.fillna("other").value_counts().sort_index().items()}
    if (~has_code).any() and "area_name" in frame:
        # areas named only (a municipality's own survey areas): counted by name
        counts["no_cbs_code"] = int(frame.loc[~has_code, "area_name"].nunique())
    return counts


def version_params(extracts) -> list[str]:
    return sorted(
        {json.dumps(e.metadata["version_params"], sort_keys=True) for e in extracts if e.metadata.get("version_params")}
    )


def suppression_summary(extracts, year: int | None = None) -> dict | None:
    """Cells a reader blanked or found suppressed, per reason, over all extracts (None when no reader
    reports any). Readers report ``metadata["suppression"] = {"n_cells", "by_reason", ...}``, optionally
    ``"by_year": {"2023": {"n_cells", "by_reason"}}`` for files that feed several release years; the
    values of suppressed cells are never part of it."""
    reported = [e for e in extracts if isinstance(e.metadata.get("suppression"), dict)]
    if not reported:
        return None
    by_reason: dict[str, int] = {}
    per_file = []
    thresholds = set()
    for e in reported:
        supp = e.metadata["suppression"]
        if year is not None and str(year) in (supp.get("by_year") or {}):
            supp = {**supp, **supp["by_year"][str(year)]}
        for reason, n in (supp.get("by_reason") or {}).items():
            by_reason[reason] = by_reason.get(reason, 0) + int(n)
        if supp.get("min_respondents") is not None:
            thresholds.add(int(supp["min_respondents"]))
        per_file.append(
            {
                "source": e.source,
                "n_cells": int(supp.get("n_cells", 0)),
                "by_reason": {k: int(v) for k, v in (supp.get("by_reason") or {}).items()},
                "respondents_column": supp.get("respondents_column"),
            }
        )
    summary: dict = {
        "n_cells": sum(f["n_cells"] for f in per_file),
        "n_suppressed": sum(by_reason.values()),
        "by_reason": by_reason,
        "per_file": per_file,
    }
    if thresholds:
        summary["min_respondents"] = sorted(thresholds)[0] if len(thresholds) == 1 else sorted(thresholds)
    return summary


__all__ = ["ExtractSummary", "level_counts", "summarise_extracts", "suppression_summary", "version_params"]
