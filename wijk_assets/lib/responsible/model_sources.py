"""Which sources feed the model, and which only describe the present.

The register entry and the model card must list exactly the sources whose figures the models use
(issue: they claimed population, housing and facilities figures no feature came from). This is decided
from the run, not from configuration:

* a model feature (``pct_good_health__18plus``, or a context column ``gm__...``, ``bu_sd__...``,
  ``bu_min__...``, ``bu_max__...``, a spatial lag ``nb_mean__...``) belongs to the source of its base
  feature in ``marts.feature_catalog``;
* its years are the source years the as-of join (``intermediate.int_lbm_feature_years``) used for the
  training rows (an outcome year is only ever explained by source years <= it);
* the outcome source (the Leefbaarometer) feeds the model with its outcome years.

Everything else that was loaded (e.g. KWB 2024 and the 2024 boundaries: later than every outcome year,
so never a training input) only describes the present: names, inhabitants for privacy, the wijkbeeld.
Pure pandas, no Dagster.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import pandas as pd

# Context columns of the training mart: <prefix>__<feature>
CONTEXT_PREFIXES = ("gm", "bu_sd", "bu_min", "bu_max", "nb_mean")
_PREFIX = re.compile(rf"^(?:{'|'.join(CONTEXT_PREFIXES)})__")
# Features derived from the code lists / boundaries, not from a figure of a source.
STRUCTURAL = {"n_buurten": None, "n_neighbours": "cbs_wijkgrenzen"}
SPATIAL_LAG_PREFIX = "nb_mean__"


def base_feature(column: str) -> str:
    """``gm__pct_good_health__18plus`` -> ``pct_good_health__18plus``."""
    return _PREFIX.sub("", column, count=1)


def sources_of_features(features: Iterable[str], catalog: pd.DataFrame) -> dict[str, list[str]]:
    """source -> the model features that come from it. ``catalog``: columns ``feature``, ``source``.

    A spatially lagged feature (``nb_mean__x``) comes from x's source *and* from the boundaries
    (``cbs_wijkgrenzen``), which decide who the neighbours are. A feature whose base is not in the
    catalog raises: an unknown origin must not be described as some source's figure.
    """
    by_feature = dict(zip(catalog["feature"], catalog["source"]))
    out: dict[str, list[str]] = {}
    unknown = []
    for column in features:
        base = base_feature(column)
        if base in STRUCTURAL:
            origin = [STRUCTURAL[base]] if STRUCTURAL[base] else []
        elif base in by_feature:
            origin = [by_feature[base]]
        else:
            unknown.append(column)
            continue
        if column.startswith(SPATIAL_LAG_PREFIX):
            origin.append("cbs_wijkgrenzen")
        for source in origin:
            out.setdefault(source, []).append(column)
    if unknown:
        raise ValueError(f"model features not in marts.feature_catalog: {unknown[:10]}")
    return {s: sorted(set(f)) for s, f in sorted(out.items())}


def model_source_years(
    features: Iterable[str],
    catalog: pd.DataFrame,
    feature_years: pd.DataFrame,
    outcome_source: str,
    outcome_years: Iterable[int],
    structural_years: Mapping[str, Iterable[int]] | None = None,
) -> list[dict]:
    """``[{name, role, years, features}]`` for exactly the sources that feed the model.

    ``feature_years``: columns ``source``, ``source_year`` (the source years the training rows used);
    ``structural_years``: years of sources that enter through structure (the boundaries year).
    """
    used = sources_of_features(features, catalog)
    years = feature_years.groupby("source")["source_year"].agg(lambda y: sorted({int(v) for v in y})).to_dict()
    for source, ys in (structural_years or {}).items():
        years[source] = sorted({int(y) for y in ys})
    out = [{"name": outcome_source, "role": "uitkomst", "years": sorted({int(y) for y in outcome_years}), "features": []}]
    for source, columns in used.items():
        if not years.get(source):
            raise ValueError(f"model features {columns[:5]} come from {source!r}, but no training row used a year of it")
        out.append({"name": source, "role": "kenmerken", "years": years[source], "features": columns})
    return out


def context_source_years(loaded: Mapping[str, Iterable[int]], model: list[dict]) -> dict[str, list[int]]:
    """The loaded source years that do not feed the model (they only describe the present)."""
    feeding = {(s["name"], int(y)) for s in model for y in s["years"]}
    out: dict[str, list[int]] = {}
    for source, years in loaded.items():
        rest = sorted({int(y) for y in years if (source, int(y)) not in feeding})
        if rest:
            out[source] = rest
    return out


def files_with_gemeente(con, sources: Iterable[str], gemeente: str) -> dict[str, set[str]]:
    """source -> the files of ``raw.<source>`` that hold rows of ``gemeente`` (its own code, or a wijk or
    buurt code of it: ``GM0106``, ``WK0106..``, ``BU0106....``). ``con``: a DuckDB connection.

    The register entry names a loaded file that does not feed the model only when it holds rows of the
    gemeente in focus (it describes that gemeente's present); a file of another gemeente, whose name
    may say so, is counted there but not named.
    """
    digits = gemeente[2:] if re.fullmatch(r"GM\d{4}", gemeente or "") else None
    out: dict[str, set[str]] = {}
    for source in sources:
        if digits is None:
            out[source] = set()
            continue
        rows = con.execute(
            f"SELECT DISTINCT source_file FROM raw.{source} "
            "WHERE area_code = ? OR area_code LIKE ? OR area_code LIKE ?",
            [gemeente, f"WK{digits}%", f"BU{digits}%"],
        ).fetchall()
        out[source] = {r[0] for r in rows}
    return out


def mark_files_with_gemeente(source_facts: list[dict], covering: Mapping[str, set[str]]) -> list[dict]:
    """Set ``covers_gemeente`` on every file of ``source_facts`` (register DataSourceFact dicts)."""
    return [{**s, "files": [{**f, "covers_gemeente": f["path"] in covering.get(s["name"], set())} for f in s["files"]]}
            for s in source_facts]


__all__ = ["base_feature", "context_source_years", "files_with_gemeente", "mark_files_with_gemeente",
           "model_source_years", "sources_of_features"]
