"""Guards against stigmatising output: judgement labels, sensitive indicators, single-rank league tables.

Pure functions (no Dagster). Published tables and texts of wijk_assets describe neighbourhoods with
figures and uncertainty; they never label a place, never publish migration-background / nationality /
religion indicators without an explicit opt-in, and never present a single "worst" rank.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------------------------------
# Judgement labels
# --------------------------------------------------------------------------------------------------

# Labels for *places*. The list is not about words that describe a measured condition ("laag
# inkomen", "hoge WOZ-waarde" are fine, with their figures); it is about names that pass judgement on a
# neighbourhood as a whole and stick to the people who live there. Once a model output calls a wijk a
# "probleemwijk" that word travels into council papers and the press, and it lowers house prices, the
# willingness of people to move in and residents' own view of their area.
#
# 'krachtwijk', 'prachtwijk', 'Vogelaarwijk', 'aandachtswijk', 'focuswijk/focusgebied' are *policy*
# labels: a council or the national government assigns them through a political decision (the 2007
# "40 krachtwijken" / Vogelaar list, the Nationaal Programma Leefbaarheid en Veiligheid focus areas).
# A model output must not assign them - not even implicitly by thresholding a score - because that
# would present a political choice as a statistical fact. Text that quotes such an existing decision
# belongs in hand-written documents, not in generated tables.
#
# 'best'/'beste' are only banned when used as a ranking label for a place ("de beste wijk", a cell
# reading just "beste"); 'best estimate', 'beste schatting' are fine.
BANNED_TERMS: tuple[str, ...] = (
    # Dutch
    "probleemwijk",
    "probleembuurt",
    "achterstandswijk",
    "achterstandsbuurt",
    "achterstandsgebied",
    "krachtwijk",
    "prachtwijk",
    "vogelaarwijk",
    "aandachtswijk",
    "focuswijk",
    "focusgebied",
    "achterbuurt",
    "sloppenwijk",
    "getto",
    "slechte wijk",
    "slechte buurt",
    "slechtste",
    "beste",
    "kansarme wijk",
    "kansarme buurt",
    "verloederde wijk",
    "verpauperde wijk",
    # English
    "problem neighbourhood",
    "problem area",
    "deprived neighbourhood",
    "deprived area",
    "bad neighbourhood",
    "bad area",
    "worst",
    "best",
    "ghetto",
    "no-go",
    "slum",
    "sink estate",
)

_NEIGHBOURHOOD = r"(?:neighbou?rhoods?|areas?|districts?|places?|wijk(?:en)?|buurt(?:en)?|gebied(?:en)?)"
# Patterns for terms that need context or spelling variants; other terms get a generic pattern.
_SPECIAL_PATTERNS: dict[str, str] = {
    "best": (
        r"^\s*(?:the\s+)?best(?:\s+\d+)?\s*$"  # the whole cell is a ranking label
        r"|\bbest(?:[\s-]+(?:scoring|ranked|performing))?\s+" + _NEIGHBOURHOOD + r"\b"
        r"|\bbest[\s-]+(?:scoring|ranked|performing)\b"
    ),
    "beste": (
        r"^\s*(?:de\s+)?beste(?:\s+\d+)?\s*$"
        r"|\bbeste\s+(?:scorende\s+)?" + _NEIGHBOURHOOD + r"\b"
        r"|\bbest\s+scorende\b"
    ),
    "no-go": r"\bno[\s-]?go(?:[\s-]?(?:area|zone|wijk|gebied)s?)?\b",
    "getto": r"\bgetto(?:'?s)?\b",
    "ghetto": r"\bghettos?\b",
    "worst": r"\bworst(?:[\s-]+(?:scoring|ranked|off))?\b(?!en|je)",
    "slechtste": r"\bslechtste\b",
    "slum": r"\bslums?\b",
    "problem neighbourhood": r"\bproblem\s+neighbou?rhoods?\b",
    "deprived neighbourhood": r"\bdeprived\s+neighbou?rhoods?\b",
    "bad neighbourhood": r"\bbad\s+neighbou?rhoods?\b",
}


def _generic_pattern(term: str) -> str:
    words = [re.escape(w) for w in re.split(r"[\s_-]+", term.strip()) if w]
    body = r"[\s-]+".join(words)
    # Dutch plurals/compounds (probleemwijken, krachtwijkaanpak) and English plurals.
    return r"(?<![^\W\d_])" + body + r"(?:en|s|es|'s|aanpak|beleid)?(?![^\W\d_])"


def compile_terms(terms: Iterable[str] = BANNED_TERMS) -> dict[str, re.Pattern[str]]:
    """One case-insensitive regex per term (special context rules for best/beste/worst/no-go)."""
    return {
        t: re.compile(_SPECIAL_PATTERNS.get(t.lower(), _generic_pattern(t)), re.IGNORECASE)
        for t in terms
    }


_COMPILED = compile_terms(BANNED_TERMS)


def _prepare(text: str) -> str:
    # underscores separate words in column names and codes ("is_probleemwijk")
    return str(text).replace("_", " ")


# A word every match of a special pattern contains (generic patterns: the term's first word).
_SPECIAL_LITERALS = {"best": "best", "beste": "best", "no-go": "go", "getto": "getto", "ghetto": "ghetto",
                     "worst": "worst", "slechtste": "slechtste", "slum": "slum", "problem neighbourhood": "problem",
                     "deprived neighbourhood": "deprived", "bad neighbourhood": "bad"}


def required_literal(term: str) -> str:
    """A lower-case word that every text the term's pattern matches contains (after ``casefold``)."""
    if term.lower() in _SPECIAL_PATTERNS:
        return _SPECIAL_LITERALS[term.lower()]
    return re.split(r"[\s_-]+", term.strip())[0].lower()


@functools.lru_cache(maxsize=16)
def _literals(terms: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted({required_literal(t) for t in terms}))


def _terms_in(text: object, compiled: Mapping[str, re.Pattern[str]]) -> list[str]:
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return []
    if not isinstance(text, str):
        return []
    prepared = _prepare(text)
    # Almost every cell holds no banned term. A text without any term's required word (substring tests
    # on the case-folded text; case folding maps at least what a case-insensitive regex equates) cannot
    # match, so the ~40 regex searches run only on the few texts that have one: ~2 s less on the ~21,000
    # distinct texts of the published explanations.
    folded = prepared.casefold()
    if not any(word in folded for word in _literals(tuple(compiled))):
        return []
    return [term for term, pattern in compiled.items() if pattern.search(prepared)]


def find_judgemental_labels(
    frame_or_texts: pd.DataFrame | pd.Series | Iterable[str] | str,
    *,
    terms: Iterable[str] | None = None,
    include_column_names: bool = True,
) -> list[tuple[str | None, object, str]]:
    """Every occurrence of a banned term as ``(column, row, term)``.

    * DataFrame: text columns are scanned (``row`` = index label); with ``include_column_names``
      the column names too (``row`` = ``None``).
    * Series: ``column`` = the series name.
    * A string or an iterable of strings: ``column`` = ``None``, ``row`` = position.
    """
    compiled = _COMPILED if terms is None else compile_terms(terms)
    hits: list[tuple[str | None, object, str]] = []
    if isinstance(frame_or_texts, pd.DataFrame):
        frame = frame_or_texts
        if include_column_names:
            for col in frame.columns:
                for term in _terms_in(str(col), compiled):
                    hits.append((str(col), None, term))
        for col in frame.columns:
            series = frame[col]
            if not (series.dtype == object or isinstance(series.dtype, (pd.StringDtype, pd.CategoricalDtype))):
                continue
            hits.extend(_scan_series(series, str(col), compiled))
        return hits
    if isinstance(frame_or_texts, pd.Series):
        name = None if frame_or_texts.name is None else str(frame_or_texts.name)
        return _scan_series(frame_or_texts, name, compiled)
    if isinstance(frame_or_texts, str):
        frame_or_texts = [frame_or_texts]
    for pos, text in enumerate(frame_or_texts):
        for term in _terms_in(text, compiled):
            hits.append((None, pos, term))
    return hits


def _scan_series(
    series: pd.Series, name: str | None, compiled: Mapping[str, re.Pattern[str]]
) -> list[tuple[str | None, object, str]]:
    hits: list[tuple[str | None, object, str]] = []
    values = series.astype(object)
    cache: dict[str, list[str]] = {}
    for idx, value in values.items():
        if not isinstance(value, str):
            continue
        if value not in cache:
            cache[value] = _terms_in(value, compiled)
        for term in cache[value]:
            hits.append((name, idx, term))
    return hits


@dataclass(frozen=True)
class Violation:
    """One finding of a publication check."""

    table: str
    column: str | None
    row: object
    kind: str  # "judgemental_label" | "sensitive_column"
    detail: str

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["row"] = None if self.row is None else str(self.row)
        return d

    def __str__(self) -> str:
        where = self.table + (f".{self.column}" if self.column else "")
        if self.row is not None:
            where += f"[{self.row}]"
        return f"{where}: {self.kind}: {self.detail}"


def check_no_judgemental_labels(
    tables: Mapping[str, pd.DataFrame], *, terms: Iterable[str] | None = None
) -> list[Violation]:
    """Violations for every banned term in the text cells or column names of the given tables."""
    out: list[Violation] = []
    for name, frame in tables.items():
        for column, row, term in find_judgemental_labels(frame, terms=terms):
            out.append(
                Violation(name, column, row, "judgemental_label", f"judgement label {term!r}")
            )
    return out


# --------------------------------------------------------------------------------------------------
# Sensitive indicators
# --------------------------------------------------------------------------------------------------

# Concept-name patterns (regex, searched in the normalised column name: lower case, camelCase split
# into snake_case, non-alphanumerics -> '_') for indicators about migration background, herkomst,
# nationality, country of birth, religion or ethnicity. Such indicators may only appear in a published
# table when the municipality explicitly opts in (WIJK_SENSITIVE_OPT_IN), e.g. for a documented
# anti-discrimination analysis. Extend or replace per municipality by passing ``patterns=``; the
# concept catalog can also flag concepts explicitly (``sensitive: true``).
SENSITIVE_DEFAULT: tuple[str, ...] = (
    # kwb-YYYY.xlsx short names, up to 2021 (westers / niet-westers) ...
    r"^a_nl_all$",
    r"^a_we_all$",
    r"^a_w_all$",
    r"^a_nw_all$",
    r"^a_marok$",
    r"^a_antaru$",
    r"^a_surina$",
    r"^a_turk$",
    r"^a_ov_nw$",
    # ... and from 2022 (herkomstland Europa / buiten Europa, geboren in / buiten Nederland)
    r"^a_eur_al$",
    r"^a_neu_al$",
    r"^a_geb_(nl|eu|ne)$",
    r"^a_gbl_(eu|ne)$",
    r"^p_(we|nw|w|nl)_all$",
    # concept / OData key stems
    r"migratie_?achtergrond",
    r"migration_?background",
    r"herkomst",
    r"(^|_)(niet_)?westers",
    r"(^|_)(non_)?western",
    r"geboren_(buiten|in)_nederland",
    r"born_(abroad|outside|in_the_netherlands)",
    r"europa_exclusief_nederland",
    r"(^|_)buiten_europa",
    r"(^|_)nationalit",
    r"(^|_)nationaliteit",
    r"(^|_)religi",
    r"(^|_)geloof",
    r"(^|_)kerkelijk",
    r"(^|_)etni",
    r"(^|_)ethnic",
    r"(^|_)allochto",
    r"(^|_)autochto",
    r"(^|_)marokk",
    r"(^|_)morocc",
    r"(^|_)turk(ije|ish|ey|s)?(_|$)",
    r"(^|_)surinam",
    r"(^|_)antill",
    r"nederlandse_antillen",
    r"overig_niet_westers",
)


def normalise_column_name(name: object) -> str:
    """``NietWestersTotaal_18`` -> ``niet_westers_totaal_18``; ``% Migratie-achtergrond`` -> ``migratie_achtergrond``."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name).strip())
    text = re.sub(r"[^0-9a-z]+", "_", text.lower())
    return text.strip("_")


def _catalog_flags(catalog: object) -> dict[str, bool]:
    """Accept {name: bool}, {name: {"sensitive": bool, ...}}, a list of such dicts with a
    ``name``/``concept``/``column`` key, or a DataFrame with such a column plus ``sensitive``."""
    if catalog is None:
        return {}
    if isinstance(catalog, pd.DataFrame):
        key = next((k for k in ("concept", "column", "name", "measure") if k in catalog.columns), None)
        if key is None or "sensitive" not in catalog.columns:
            raise ValueError(
                "catalog DataFrame needs a concept/column/name column and a 'sensitive' column"
            )
        return {
            str(k): bool(v) for k, v in zip(catalog[key], catalog["sensitive"]) if pd.notna(v)
        }
    if isinstance(catalog, Mapping):
        flags: dict[str, bool] = {}
        for k, v in catalog.items():
            if isinstance(v, Mapping):
                if "sensitive" in v and v["sensitive"] is not None:
                    flags[str(k)] = bool(v["sensitive"])
            elif v is not None:
                flags[str(k)] = bool(v)
        return flags
    if isinstance(catalog, Iterable):
        flags = {}
        for entry in catalog:
            if not isinstance(entry, Mapping):
                continue
            key = next((entry[k] for k in ("concept", "column", "name") if k in entry), None)
            if key is not None and entry.get("sensitive") is not None:
                flags[str(key)] = bool(entry["sensitive"])
        return flags
    raise TypeError(f"unsupported catalog type {type(catalog)!r}")


def _catalog_lookup(column: str, flags: Mapping[str, bool]) -> bool | None:
    if column in flags:
        return flags[column]
    norm = normalise_column_name(column)
    for name, flag in flags.items():
        if normalise_column_name(name) == norm:
            return flag
    return None


def is_sensitive(
    column: str,
    catalog_flags: object = None,
    *,
    patterns: Sequence[str] = SENSITIVE_DEFAULT,
) -> bool:
    """True when the catalog flags ``column`` as sensitive or its name matches a sensitive pattern.

    A catalog flag of ``True`` always makes a column sensitive; a flag of ``False`` does *not*
    overrule a matching pattern (to narrow the patterns, pass your own ``patterns``). The OData
    positional suffix (``_18``) is ignored for matching.
    """
    flags = _catalog_flags(catalog_flags)
    if _catalog_lookup(column, flags) is True:
        return True
    norm = normalise_column_name(column)
    stem = re.sub(r"_\d+$", "", norm)
    return any(re.search(p, norm) or re.search(p, stem) for p in patterns)


def _opted_in(column: str, opt_in: Iterable[str]) -> bool:
    norm = normalise_column_name(column)
    for entry in opt_in:
        entry = str(entry).strip()
        if not entry:
            continue
        if entry == column or normalise_column_name(entry) == norm:
            return True
        if any(ch in entry for ch in "*?[") and (
            fnmatch.fnmatchcase(column.lower(), entry.lower()) or fnmatch.fnmatchcase(norm, entry.lower())
        ):
            return True
    return False


def sensitive_columns(
    columns: Iterable[str],
    catalog: object = None,
    opt_in: Iterable[str] = (),
    *,
    patterns: Sequence[str] = SENSITIVE_DEFAULT,
) -> list[str]:
    """The sensitive columns among ``columns`` that are NOT covered by ``opt_in`` (i.e. must not be
    published or used as features). ``opt_in`` entries are column/concept names or globs
    (``a_*_all``), typically ``Settings.sensitive_opt_in``."""
    opt_in = tuple(opt_in or ())
    flags = _catalog_flags(catalog)
    return [
        str(c)
        for c in columns
        if is_sensitive(str(c), flags, patterns=patterns) and not _opted_in(str(c), opt_in)
    ]


def opted_in_sensitive_columns(
    columns: Iterable[str],
    catalog: object = None,
    opt_in: Iterable[str] = (),
    *,
    patterns: Sequence[str] = SENSITIVE_DEFAULT,
) -> list[str]:
    """The sensitive columns among ``columns`` that ARE used under an opt-in (for the register)."""
    opt_in = tuple(opt_in or ())
    flags = _catalog_flags(catalog)
    return [
        str(c)
        for c in columns
        if is_sensitive(str(c), flags, patterns=patterns) and _opted_in(str(c), opt_in)
    ]


def check_no_sensitive_columns(
    tables: Mapping[str, pd.DataFrame | Iterable[str]],
    catalog: object = None,
    opt_in: Iterable[str] = (),
    *,
    patterns: Sequence[str] = SENSITIVE_DEFAULT,
    long_measure_columns: Sequence[str] = ("measure_key", "concept", "indicator", "feature"),
) -> list[Violation]:
    """A violation for every sensitive column (or, in a long table, sensitive measure value in one of
    ``long_measure_columns``) of a published table that is not covered by ``opt_in``.

    ``tables`` maps table name to a DataFrame or to a list of column names.
    """
    opt_in = tuple(opt_in or ())
    flags = _catalog_flags(catalog)
    out: list[Violation] = []
    for name, table in tables.items():
        columns = list(table.columns) if isinstance(table, pd.DataFrame) else list(table)
        for col in sensitive_columns(columns, flags, opt_in, patterns=patterns):
            out.append(
                Violation(
                    name, col, None, "sensitive_column",
                    f"sensitive indicator {col!r} published without opt-in (WIJK_SENSITIVE_OPT_IN)",
                )
            )
        if isinstance(table, pd.DataFrame):
            for mcol in long_measure_columns:
                if mcol not in table.columns:
                    continue
                values = [str(v) for v in pd.unique(table[mcol].dropna())]
                for value in sensitive_columns(values, flags, opt_in, patterns=patterns):
                    out.append(
                        Violation(
                            name, mcol, value, "sensitive_column",
                            f"sensitive indicator {value!r} (long layout) published without opt-in",
                        )
                    )
    return out


# --------------------------------------------------------------------------------------------------
# Rank ranges instead of league tables
# --------------------------------------------------------------------------------------------------


def _fmt_int(n: int, lang: str) -> str:
    text = f"{n:,}"
    return text.replace(",", ".") if lang == "nl" else text


NOT_DISTINGUISHABLE = {"en": "not distinguishable from most wijken", "nl": "niet te onderscheiden van de meeste wijken"}


def simulated_rank_text(rank_low, rank_high, n_ranked, informative, *, lang: str = "en") -> pd.DataFrame:
    """Publishable rank columns from simulated rank quantiles: ``rank_min``/``rank_max`` and
    ``rank_range`` ("rank 12–40 of 3,100") only where ``informative``; elsewhere those are empty and
    ``rank_note`` says the wijk is not distinguishable. Never a single position, never a range that
    spans (nearly) the whole country."""
    low = pd.Series(rank_low).astype("Int64")
    index = low.index
    high = pd.Series(rank_high, index=index).astype("Int64")
    n = pd.Series(n_ranked, index=index)
    ok = pd.Series(informative, index=index).fillna(False).astype(bool) & low.notna() & high.notna()
    word, of = ("plaats", "van") if lang == "nl" else ("rank", "of")
    out = pd.DataFrame(index=index)
    out["rank_min"] = low.where(ok)
    out["rank_max"] = high.where(ok)
    out["rank_range"] = pd.Series(
        [
            (f"{word} {_fmt_int(int(a), lang)}–{_fmt_int(int(b), lang)} {of} {_fmt_int(int(m), lang)}"
             if a != b else f"{word} {_fmt_int(int(a), lang)} {of} {_fmt_int(int(m), lang)}") if good else None
            for a, b, m, good in zip(low, high, n, ok)
        ],
        index=index, dtype=object,
    )
    out["rank_note"] = pd.Series([None if good else NOT_DISTINGUISHABLE[lang] for good in ok], index=index, dtype=object)
    return out


__all__ = [
    "BANNED_TERMS",
    "SENSITIVE_DEFAULT",
    "Violation",
    "compile_terms",
    "find_judgemental_labels",
    "check_no_judgemental_labels",
    "normalise_column_name",
    "is_sensitive",
    "sensitive_columns",
    "opted_in_sensitive_columns",
    "check_no_sensitive_columns",
    "simulated_rank_text",
]
