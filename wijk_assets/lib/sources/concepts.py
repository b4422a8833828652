"""The concept map (``dbt_project/seeds/concept_map.csv``) read from Python.

The seed is the one place that knows CBS keys; dbt staging (``stg_measure_map``) maps every raw key with
it. Gate 1 runs *before* dbt, so it reads the same seed here to name required measures by concept
(``inhabitants``) rather than by one source's key (``a_inw`` in the kwb xlsx, ``AantalInwoners_5`` in
85984NED OData and its JSON copy). The matching is the one stg_measure_map documents:

1. the normalised key itself (``|`` -> ``/``, runs of white space -> one space), else
2. the OData key stem (:func:`wijk_assets.lib.sources.base.key_stem`, the rule in dbt_project.yml),

within ``year_from..year_to`` when a year is given. Pure: no Dagster, no dbt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from wijk_assets.settings import DBT_PROJECT_DIR
from wijk_assets.lib.sources.base import key_stem

CONCEPT_MAP_PATH = DBT_PROJECT_DIR / "seeds" / "concept_map.csv"

# Raw value groups for gate-1 range rules, derived from a concept row: a concept with a denominator is a
# count in the raw file (a_man, Mannen_6) that dbt turns into a share; `ignore` rows are identifiers.
GROUP_BY_KIND = {"ignore": "code"}


def normalise_key(key: str) -> str:
    """The key normalisation of the dbt macro measure_key_norm."""
    return re.sub(r"\s+", " ", str(key).strip().replace("|", "/"))


@dataclass(frozen=True)
class ConceptRow:
    concept: str
    kind: str
    unit: str
    denominator: str | None
    year_from: int | None
    year_to: int | None
    measure_key_stem: str

    def covers(self, year: int | None) -> bool:
        if year is None:
            return True
        return (self.year_from or 0) <= year <= (self.year_to or 9999)

    @property
    def raw_group(self) -> str:
        """What kind of number the RAW cell is (``count`` for a numerator of a share)."""
        if self.kind in GROUP_BY_KIND:
            return GROUP_BY_KIND[self.kind]
        return "count" if self.denominator else self.kind


@lru_cache(maxsize=4)
def load_concept_map(path: Path = CONCEPT_MAP_PATH) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    required = {"source", "measure_key_stem", "year_from", "year_to", "concept", "kind", "unit", "denominator"}
    missing = required - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: concept map lacks columns {sorted(missing)}")
    return frame


class ConceptResolver:
    """Resolve a source's raw measure keys to concept-map rows, the way stg_measure_map does."""

    def __init__(self, source: str, path: Path = CONCEPT_MAP_PATH) -> None:
        frame = load_concept_map(path)
        rows = frame[frame["source"] == source]
        if rows.empty:
            raise ValueError(f"{path}: no concept-map rows for source {source!r}")
        self.source = source
        self._by_key: dict[str, list[ConceptRow]] = {}
        self._by_stem: dict[str, list[ConceptRow]] = {}
        for r in rows.itertuples(index=False):
            row = ConceptRow(
                concept=r.concept,
                kind=r.kind,
                unit=r.unit,
                denominator=r.denominator or None,
                year_from=int(r.year_from) if r.year_from else None,
                year_to=int(r.year_to) if r.year_to else None,
                measure_key_stem=r.measure_key_stem,
            )
            self._by_key.setdefault(normalise_key(r.measure_key_stem), []).append(row)
            self._by_stem.setdefault(r.measure_key_stem, []).append(row)

    def row(self, key: str, year: int | None = None) -> ConceptRow | None:
        """The concept-map row of ``key`` (by key first, then by OData stem), None when unmapped."""
        for candidates in (self._by_key.get(normalise_key(key)), self._by_stem.get(key_stem(str(key)))):
            hits = sorted((c for c in candidates or () if c.covers(year)), key=lambda c: c.concept)
            if hits:
                return hits[0]
        return None

    def concept(self, key: str, year: int | None = None) -> str | None:
        row = self.row(key, year)
        return row.concept if row else None

    def keys_of(self, concept: str) -> list[str]:
        """The concept-map keys/stems of a concept (for messages: 'a_inw or AantalInwoners_<n>')."""
        out = []
        for rows in self._by_stem.values():
            out.extend(r.measure_key_stem for r in rows if r.concept == concept)
        return sorted(set(out))


__all__ = ["CONCEPT_MAP_PATH", "ConceptResolver", "ConceptRow", "load_concept_map", "normalise_key"]
