"""Privacy guards: small-area suppression, survey-table reading, and a personal-data tripwire.

Pure pandas functions (no Dagster), so assets, checks and tests share one implementation.

* :func:`suppress_small_areas` blanks the figures of areas with too few inhabitants (statistical
  disclosure control on top of what CBS/RIVM already suppress), and counts what it did.
* :func:`read_survey_csv` reads an aggregated municipal survey table (the Utrecht inwonersenquête
  layout: ``;``-separated, ``.`` = suppressed by the publisher, one row per area label) into a tidy
  frame, applying a minimum-respondents rule when the table carries respondent counts.
* :func:`reject_personal_data` refuses anything that looks respondent-level or personal. This project
  only ever processes *aggregated* figures; the check is a tripwire, not a licence to store such data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from wijk_assets.lib.sources.base import SourceFormatError

REASON_POPULATION = "population_below_threshold"
REASON_SIGNAL = "small_area_signal"
REASON_PUBLISHER = "suppressed_by_publisher"
REASON_RESPONDENTS = "too_few_respondents"
REASON_EMPTY = "empty_cell"

# --------------------------------------------------------------------------------------------------
# Small-area suppression
# --------------------------------------------------------------------------------------------------


@dataclass
class SuppressionReport:
    """What :func:`suppress_small_areas` did; every count is a number of distinct *areas*."""

    threshold: int
    n_areas: int = 0
    n_suppressed_population: int = 0  # known population < threshold
    n_suppressed_signal: int = 0  # population unknown and small_area_signal True
    n_population_unknown: int = 0  # population unknown (suppressed by signal or not)
    n_rows_suppressed: int = 0
    suppressed_codes: list[str] = field(default_factory=list)
    value_columns: list[str] = field(default_factory=list)

    @property
    def n_suppressed(self) -> int:
        return self.n_suppressed_population + self.n_suppressed_signal

    def to_metadata(self) -> dict[str, object]:
        """Plain JSON-able values, ready for Dagster ``MaterializeResult(metadata=...)``."""
        return {
            "suppression_threshold_inhabitants": int(self.threshold),
            "n_areas": int(self.n_areas),
            "n_suppressed": int(self.n_suppressed),
            "n_suppressed_population": int(self.n_suppressed_population),
            "n_suppressed_signal": int(self.n_suppressed_signal),
            "n_population_unknown": int(self.n_population_unknown),
            "n_rows_suppressed": int(self.n_rows_suppressed),
            "suppressed_codes": list(self.suppressed_codes),
            "suppressed_value_columns": list(self.value_columns),
        }


def _norm_code(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def _area_series(series: pd.Series | None, name: str) -> pd.Series | None:
    if series is None:
        return None
    if not isinstance(series, pd.Series):
        raise TypeError(f"{name} must be a pandas Series indexed by area code, got {type(series)!r}")
    out = series.copy()
    out.index = [_norm_code(i) for i in out.index]
    if out.index.has_duplicates:
        dupes = sorted({str(i) for i in out.index[out.index.duplicated()]})[:10]
        raise ValueError(f"{name} has duplicated area codes: {dupes}")
    return out


def suppress_small_areas(
    frame: pd.DataFrame,
    *,
    area_col: str = "area_code",
    population: pd.Series | str | None,
    threshold: int,
    value_columns: Sequence[str],
    small_area_signal: pd.Series | None = None,
    reason_col: str = "suppressed_reason",
) -> tuple[pd.DataFrame, SuppressionReport]:
    """Set ``value_columns`` to NULL for areas that are too small to publish.

    ``population``: inhabitants per area (a Series indexed by area code, or the name of a column of
    ``frame``). An area whose *known* population is below ``threshold`` is suppressed (reason
    ``population_below_threshold``; a population of 0 counts as known and small). Where population is
    unknown (NaN, or the area is absent from the Series), the optional boolean ``small_area_signal``
    (indexed by area code) decides, e.g. "the publisher itself suppressed all RIVM indicators of this
    area" (reason ``small_area_signal``). Area codes are ``strip()``-ed before matching (CBS pads them).

    Works on wide (one row per area) and long (several rows per area) frames. A ``reason_col`` that
    already holds a reason (e.g. ``suppressed_by_publisher``) is kept; ours fills only empty reasons.
    Returns a copy of the frame and a :class:`SuppressionReport`.
    """
    if threshold is None or int(threshold) < 0:
        raise ValueError(f"threshold must be a non-negative integer, got {threshold!r}")
    threshold = int(threshold)
    if area_col not in frame.columns:
        raise KeyError(f"area column {area_col!r} not in frame columns {list(frame.columns)}")
    missing = [c for c in value_columns if c not in frame.columns]
    if missing:
        raise KeyError(f"value columns not in frame: {missing}")

    out = frame.copy()
    codes = out[area_col].map(_norm_code)

    if isinstance(population, str):
        if population not in out.columns:
            raise KeyError(f"population column {population!r} not in frame")
        pop_rows = pd.to_numeric(out[population], errors="coerce")
        # one population per area: take the first known value
        pop = pop_rows.groupby(codes, dropna=True).first()
    else:
        pop = _area_series(population, "population")
        if pop is not None:
            pop = pd.to_numeric(pop, errors="coerce")
    signal = _area_series(small_area_signal, "small_area_signal")

    areas = pd.Index(pd.unique(codes.dropna()))
    pop_by_area = (
        pop.reindex(areas) if pop is not None else pd.Series(np.nan, index=areas, dtype=float)
    )
    known = pop_by_area.notna()
    small_pop = known & (pop_by_area < threshold)
    if signal is not None:
        sig = signal.reindex(areas)
        sig = sig.where(sig.notna(), False).astype(bool)
    else:
        sig = pd.Series(False, index=areas)
    small_signal = (~known) & sig

    reason_by_area = pd.Series(None, index=areas, dtype=object)
    reason_by_area[small_pop] = REASON_POPULATION
    reason_by_area[small_signal] = REASON_SIGNAL

    row_reason = codes.map(reason_by_area)
    row_mask = row_reason.notna().to_numpy()
    for col in value_columns:
        if row_mask.any():
            kind = out[col].dtype.kind
            if kind in "iu":
                out[col] = out[col].astype("Int64")  # keep integers, NULL as <NA>
            elif kind == "b":
                out[col] = out[col].astype("boolean")
            out.loc[row_mask, col] = None
    row_reason = row_reason.astype(object).where(row_reason.notna(), None)
    if reason_col in out.columns:
        existing = out[reason_col].astype(object)
        out[reason_col] = existing.where(existing.notna(), row_reason)
    else:
        out[reason_col] = row_reason

    suppressed = sorted(str(c) for c in reason_by_area[reason_by_area.notna()].index)
    report = SuppressionReport(
        threshold=threshold,
        n_areas=int(len(areas)),
        n_suppressed_population=int(small_pop.sum()),
        n_suppressed_signal=int(small_signal.sum()),
        n_population_unknown=int((~known).sum()),
        n_rows_suppressed=int(row_mask.sum()),
        suppressed_codes=suppressed,
        value_columns=list(value_columns),
    )
    return out, report


# --------------------------------------------------------------------------------------------------
# Personal-data tripwire
# --------------------------------------------------------------------------------------------------


def _norm_name(name: object) -> str:
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name).strip())  # camelCase -> snake
    text = re.sub(r"[^0-9a-z]+", "_", text.lower())
    return text.strip("_")


def _exact(*alternatives: str) -> re.Pattern[str]:
    return re.compile("^(?:" + "|".join(alternatives) + ")$")


# (pattern on the normalised column name, what it is). Exact matches, so area names such as
# ``wk_naam`` / ``Gemeentenaam_1`` or counts such as ``ste_oad`` (address density) do not trip it.
_PERSONAL_NAME_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (
        _exact(
            r"(respondent|resp|deelnemer|participant|response|respons|invuller)"
            r"(_?(id|nr|nummer|number|no|code|key))?",
            r"respondentnummer", r"respondentnr", r"respnr",
        ),
        "respondent identifier",
    ),
    (
        _exact(
            r"naam", r"name", r"voornaam", r"achternaam", r"tussenvoegsel", r"voorletters",
            r"roepnaam", r"first_?name", r"last_?name", r"surname", r"full_?name",
            r"volledige_?naam", r"given_?name", r"family_?name",
            r"(respondent|persoon|person|contact|klant|bewoner|inwoner|deelnemer)_?(naam|name)",
        ),
        "person name",
    ),
    (
        _exact(r"e_?mail", r"e_?mail_?(adres|address)", r"email_?adres", r"mail", r"mail_?adres"),
        "e-mail address",
    ),
    (
        _exact(
            r"telefoon", r"telefoon_?nummer", r"telefoonnr", r"tel", r"tel_?nr", r"telnr", r"phone",
            r"phone_?number", r"telephone", r"mobiel", r"mobiel_?nummer", r"mobile", r"gsm",
        ),
        "phone number",
    ),
    (
        _exact(
            r"adres", r"address", r"woonadres", r"huisadres", r"straat", r"straatnaam", r"street",
            r"street_?address", r"huisnummer", r"huisnr", r"house_?number",
        ),
        "address",
    ),
    (
        _exact(
            r"postcode", r"postcode_?6", r"pc_?6", r"pc6_?code", r"zip", r"zip_?code", r"zipcode",
            r"postal_?code", r"post_?code",
        ),
        "postcode (6-position)",
    ),
    (
        _exact(
            r"geboortedatum", r"geb_?datum", r"geboorte_?datum", r"date_?of_?birth", r"dob",
            r"birth_?date", r"birthdate", r"birthday",
        ),
        "date of birth",
    ),
    (
        _exact(r"bsn", r"burgerservicenummer", r"burger_?service_?nummer", r"sofi_?nummer", r"sofi_?nr"),
        "BSN",
    ),
    (_exact(r"ip", r"ip_?adres", r"ip_?address", r"ipaddress", r"ip_?v4", r"ip_?v6"), "IP address"),
]

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
# Dutch postcode: 4 digits (first not 0), optional space, 2 letters (SA/SD/SS are never issued).
_POSTCODE_CELL = re.compile(r"^[1-9][0-9]{3} ?(?!SA|SD|SS|sa|sd|ss)[A-Za-z]{2}$")
_POSTCODE_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])[1-9][0-9]{3} ?(?!SA|SD|SS)[A-Z]{2}(?![0-9A-Za-z])")
_PC4_CELL = re.compile(r"^[1-9][0-9]{3}$")
# Dutch phone numbers: 0 / +31 / 0031, then 9 digits, optional separators.
_PHONE = re.compile(r"^(?:\+31|0031|0)[\s\-.]?(?:\(0\))?[\s\-.]?[1-9](?:[\s\-.]?[0-9]){8}$")
_NINE_DIGITS = re.compile(r"^(?:[0-9]{9}|[0-9]{4}\.[0-9]{2}\.[0-9]{3}|[0-9]{3} [0-9]{3} [0-9]{3})$")
_IPV4 = re.compile(r"^(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}$")

_ID_COLUMN = re.compile(r"^(id|nr|nummer|volgnummer|record_?id|row_?id|rij_?id|key|uuid|guid|.*_id|id_.*)$")
_AREA_COLUMN = re.compile(
    r"^(area_?code|area_?label|area_?name|area|regio|region|niveau|gebied|gebiedsnaam|wijk|buurt|subwijk|"
    r"wijk_?naam|buurt_?naam|wk_?code|bu_?code|wk_?naam|bu_?naam|gwb_?code(_?\d+)?|wijken_?en_?buurten|"
    r"codering(_?\d+)?|postcode_?4|pc_?4)$"
)
_DIMENSION_COLUMN = re.compile(
    r"^(jaar|year|perioden?|period|release_?year|leeftijd|age(_?group)?|geslacht|sex|gender|marges|"
    r"subgroup|subgroep|categorie|category|indicator|measure(_?key)?|onderwerp|topic|variabele|variable|"
    r"soort_?regio(_?\d+)?|region_?type|level)(_?\d+)?$"
)

MAX_VALUES_SCANNED = 50_000


def _elfproef(digits: str) -> bool:
    """The BSN eleven-test (weights 9..2 and -1)."""
    if len(digits) != 9 or not digits.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1))) - int(digits[8])
    return total % 11 == 0 and digits != "000000000"


def _string_values(series: pd.Series) -> pd.Series:
    values = series.dropna()
    if len(values) > MAX_VALUES_SCANNED:
        values = values.iloc[:MAX_VALUES_SCANNED]
    if values.dtype.kind in "iu":
        return values.astype(str)
    if values.dtype.kind == "f":
        whole = values[np.isfinite(values) & (values == np.floor(values))]
        return whole.astype(np.int64).astype(str)
    if values.dtype.kind in "bmM":
        return pd.Series([], dtype=object)
    return values.astype(str).str.strip()


def _value_findings(series: pd.Series, column_norm: str) -> list[str]:
    values = _string_values(series)
    if values.empty:
        return []
    uniq = pd.Series(pd.unique(values))
    n = len(values)
    findings: list[str] = []

    def share(mask: pd.Series) -> str:
        hits = int(values.isin(set(uniq[mask])).sum())
        return f"{hits} of {n} values"

    is_text = series.dtype.kind in "OSU" or isinstance(series.dtype, pd.StringDtype)
    if is_text:
        m = uniq.str.contains(_EMAIL, regex=True, na=False)
        if m.any():
            findings.append(f"values that look like e-mail addresses ({share(m)})")
        m = uniq.str.match(_POSTCODE_CELL, na=False) | uniq.str.contains(_POSTCODE_IN_TEXT, na=False)
        if m.any():
            findings.append(f"values that look like 6-position postcodes ({share(m)})")
        m = uniq.str.match(_PHONE, na=False)
        if m.any():
            findings.append(f"values that look like phone numbers ({share(m)})")
        m = uniq.str.match(_IPV4, na=False)
        if m.any() and not column_norm.startswith(("versie", "version")):
            findings.append(f"values that look like IP addresses ({share(m)})")
    nine = uniq[uniq.str.match(_NINE_DIGITS, na=False)]
    if len(nine):
        digits = nine.str.replace(r"[ .]", "", regex=True)
        passes = digits.map(_elfproef)
        # A random 9-digit number passes the eleven-test ~1 in 11 times; BSNs always do.
        if passes.any() and passes.mean() >= 0.5:
            findings.append(
                f"BSN-like 9-digit numbers passing the eleven-test ({int(passes.sum())} distinct)"
            )
    return findings


def reject_personal_data(frame: pd.DataFrame, source: str | Path) -> None:
    """Raise :class:`SourceFormatError` when ``frame`` looks respondent-level or personal.

    Checks (1) column names that identify people (respondent id/respondentnummer, naam/name, e-mail,
    telefoon/phone, adres/address, 6-position postcode, geboortedatum/date of birth, BSN, IP address);
    (2) values that look like e-mail addresses, Dutch 6-position postcodes (``1234AB``), Dutch phone
    numbers, IPv4 addresses or BSNs (9 digits passing the eleven-test); (3) one row per respondent:
    a per-row unique id column plus an area column where one area has many rows, with no period /
    category column that would explain the repetition. A ``postcode`` column holding only 4-digit
    postcodes (PC4, an area) is allowed. The message names the file and the column(s) but never
    echoes the offending values. Returns ``None`` when clean.
    """
    problems: dict[str, list[str]] = {}
    normalised = {col: _norm_name(col) for col in frame.columns}

    for col, norm in normalised.items():
        for pattern, what in _PERSONAL_NAME_PATTERNS:
            if pattern.match(norm):
                if what.startswith("postcode"):
                    vals = _string_values(frame[col])
                    if len(vals) and vals.str.match(_PC4_CELL).all():
                        break  # PC4 is an area, not a person
                problems.setdefault(str(col), []).append(f"column name looks like a {what}")
                break

    for col, norm in normalised.items():
        for finding in _value_findings(frame[col], norm):
            problems.setdefault(str(col), []).append(finding)

    # One row per respondent: a unique per-row id and many rows for the same area.
    if len(frame) >= 10:
        id_cols = [
            c
            for c, n in normalised.items()
            if _ID_COLUMN.match(n) and not _AREA_COLUMN.match(n) and frame[c].notna().all()
            and frame[c].is_unique
        ]
        area_cols = [c for c, n in normalised.items() if _AREA_COLUMN.match(n)]
        has_dimension = any(_DIMENSION_COLUMN.match(n) for n in normalised.values())
        if id_cols and area_cols and not has_dimension:
            for area in area_cols:
                counts = frame[area].value_counts(dropna=True)
                if len(counts) and counts.iloc[0] >= 10 and len(frame) >= 3 * len(counts):
                    problems.setdefault(str(id_cols[0]), []).append(
                        f"a unique per-row id with up to {int(counts.iloc[0])} rows per value of "
                        f"{area!r}: this looks like one row per respondent"
                    )
                    break

    if problems:
        found = "; ".join(f"column {col!r}: {', '.join(why)}" for col, why in problems.items())
        raise SourceFormatError(
            source,
            "an aggregated table (figures per area) without personal or respondent-level data",
            found,
            column=next(iter(problems)),
            hint="wijk_assets only processes aggregated, published figures; remove the personal "
            "columns at the source and deliver percentages/counts per area instead",
        )
    return None


# --------------------------------------------------------------------------------------------------
# Municipal survey tables
# --------------------------------------------------------------------------------------------------

_RESPONDENTS_COLUMN = re.compile(
    r"^(n|n_?resp|aantal|aantal_?respondenten|respondenten|n_?respondenten|aantal_?resp|basis|"
    r"ongewogen_?n|n_?ongewogen|unweighted_?n|sample_?size|respondents|n_?respondents)$"
)
_YEAR = re.compile(r"(?<!\d)((?:19|20)\d{2})(?!\d)")
_AREA_LEVEL = re.compile(r"^(subwijk|wijk|buurt|stadsdeel|gemeente)\b", re.IGNORECASE)

SURVEY_COLUMNS = [
    "area_label",
    "area_level",
    "indicator",
    "category",
    "year",
    "value_pct",
    "suppressed",
    "suppressed_reason",
    "n_respondents",
    "source_file",
    "source_row",
]


def _parse_number(text: str) -> float | None:
    cleaned = text.strip().replace("%", "").strip()
    if "," in cleaned and "." not in cleaned:
        cleaned = cleaned.replace(",", ".")
    try:
        return float(cleaned)
    except ValueError:
        return None


def _indicator_from_stem(stem: str) -> str:
    text = _YEAR.sub("", stem)
    text = re.sub(r"_+", "_", text).strip("_")
    return text or stem


def survey_suppression_counts(tidy: pd.DataFrame) -> dict[str, int]:
    """Counts per suppression reason of a :func:`read_survey_csv` frame (JSON-able)."""
    reasons = tidy["suppressed_reason"].value_counts(dropna=True)
    return {
        "n_cells": int(len(tidy)),
        "n_suppressed": int(tidy["suppressed"].sum()),
        "n_suppressed_by_publisher": int(reasons.get(REASON_PUBLISHER, 0)),
        "n_too_few_respondents": int(reasons.get(REASON_RESPONDENTS, 0)),
        "n_empty": int(reasons.get(REASON_EMPTY, 0)),
    }


def read_survey_csv(
    path: str | Path,
    *,
    min_respondents: int,
    respondents_column: str | None = None,
    year: int | None = None,
    indicator: str | None = None,
    sep: str = ";",
    table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Read an aggregated municipal survey table into a tidy frame (one row per area x category).

    ``table``: the file already parsed (text cells, header as columns), e.g. by the survey source
    reader, so the file is parsed once; otherwise ``path`` is read here.

    Layout (the Utrecht in Cijfers exports): first column = area label (``"Subwijk Lombok,
    Leidseweg"``, ``"Utrecht"``); other columns = percentages. Headers either
    ``"<indicator>|<category>|<year>"`` or a bare category (``tevreden``), in which case the
    indicator is taken from ``indicator`` or the file name (year removed) and the year from ``year``
    or the first 4-digit year in the file name. ``.`` → NULL with reason ``suppressed_by_publisher``.

    When a respondents column exists (``respondents_column``, or auto-detected names such as ``n``,
    ``aantal respondenten``, ``basis``), cells of rows with fewer than ``min_respondents`` respondents
    are set to NULL with reason ``too_few_respondents``. The table is first passed through
    :func:`reject_personal_data`.

    Returns columns :data:`SURVEY_COLUMNS`; counts per reason are in ``frame.attrs["suppression"]``
    (also available via :func:`survey_suppression_counts`).
    """
    path = Path(path)
    if min_respondents is None or int(min_respondents) < 0:
        raise ValueError(f"min_respondents must be a non-negative integer, got {min_respondents!r}")
    min_respondents = int(min_respondents)
    if table is not None:
        raw = table.fillna("").astype(str)
    else:
        try:
            raw = pd.read_csv(
                path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig", quotechar='"'
            )
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise SourceFormatError(path, f"a {sep!r}-separated UTF-8 survey table", str(exc)) from exc
    if raw.shape[1] < 2:
        raise SourceFormatError(
            path,
            f"an area-label column plus at least one value column separated by {sep!r}",
            f"{raw.shape[1]} column(s): {list(raw.columns)}",
        )

    reject_personal_data(raw, path)

    area_col = raw.columns[0]
    resp_col: str | None = None
    if respondents_column is not None:
        if respondents_column not in raw.columns:
            raise SourceFormatError(
                path, f"a respondents column {respondents_column!r}", f"columns {list(raw.columns)}"
            )
        resp_col = respondents_column
    else:
        detected = [c for c in raw.columns[1:] if _RESPONDENTS_COLUMN.match(_norm_name(c))]
        resp_col = detected[0] if detected else None

    file_year_match = _YEAR.search(path.stem)
    file_year = int(file_year_match.group(1)) if file_year_match else None
    default_indicator = indicator or _indicator_from_stem(path.stem)

    value_cols = [c for c in raw.columns[1:] if c != resp_col]
    headers: dict[str, tuple[str, str, int]] = {}
    for col in value_cols:
        parts = [p.strip() for p in str(col).split("|")]
        if len(parts) == 3:
            ind, cat, yr_text = parts
            if not re.fullmatch(r"(19|20)\d{2}", yr_text):
                raise SourceFormatError(
                    path, "header '<indicator>|<category>|<year>'", repr(col), column=str(col)
                )
            yr = int(yr_text)
        elif len(parts) == 2:
            ind, cat = parts
            yr = year if year is not None else file_year
        elif len(parts) == 1:
            ind, cat = default_indicator, parts[0]
            yr = year if year is not None else file_year
        else:
            raise SourceFormatError(
                path, "header '<indicator>|<category>|<year>' or a bare category", repr(col),
                column=str(col),
            )
        if yr is None:
            raise SourceFormatError(
                path,
                "a year in the column header or the file name (or pass year=)",
                f"header {col!r}",
                column=str(col),
            )
        headers[col] = (ind if indicator is None else indicator, cat, int(yr))

    respondents: list[int | None] = [None] * len(raw)
    if resp_col is not None:
        for i, text in enumerate(raw[resp_col].tolist()):
            t = str(text).strip()
            if t in ("", "."):
                continue
            num = _parse_number(t)
            if num is None or num < 0:
                raise SourceFormatError(
                    path, "a respondent count", repr(text), row=i + 2, column=str(resp_col)
                )
            respondents[i] = int(num)

    records: list[dict[str, object]] = []
    for i, row in enumerate(raw.itertuples(index=False, name=None)):
        cells = dict(zip(raw.columns, row))
        label = str(cells[area_col]).strip()
        level_match = _AREA_LEVEL.match(label)
        n_resp = respondents[i]
        for col in value_cols:
            ind, cat, yr = headers[col]
            text = str(cells[col]).strip()
            value: float | None = None
            reason: str | None = None
            if text == ".":
                reason = REASON_PUBLISHER
            elif text == "":
                reason = REASON_EMPTY
            else:
                value = _parse_number(text)
                if value is None:
                    raise SourceFormatError(
                        path, "a percentage or '.'", repr(cells[col]), row=i + 2, column=str(col)
                    )
                if not 0 <= value <= 100:
                    raise SourceFormatError(
                        path, "a percentage between 0 and 100", repr(cells[col]), row=i + 2,
                        column=str(col),
                    )
                if n_resp is not None and n_resp < min_respondents:
                    value, reason = None, REASON_RESPONDENTS
            records.append(
                {
                    "area_label": label,
                    "area_level": level_match.group(1).lower() if level_match else None,
                    "indicator": ind,
                    "category": cat,
                    "year": yr,
                    "value_pct": value,
                    "suppressed": reason is not None,
                    "suppressed_reason": reason,
                    "n_respondents": n_resp,
                    "source_file": path.name,
                    "source_row": i + 2,
                }
            )

    tidy = pd.DataFrame.from_records(records, columns=SURVEY_COLUMNS)
    tidy["value_pct"] = tidy["value_pct"].astype("Float64")
    tidy["year"] = tidy["year"].astype("int64")
    tidy["n_respondents"] = tidy["n_respondents"].astype("Int64")
    tidy["suppressed"] = tidy["suppressed"].astype(bool)
    tidy.attrs["suppression"] = {
        **survey_suppression_counts(tidy),
        "min_respondents": min_respondents,
        "respondents_column": resp_col,
    }
    return tidy


__all__: Iterable[str] = [
    "REASON_POPULATION",
    "REASON_SIGNAL",
    "REASON_PUBLISHER",
    "REASON_RESPONDENTS",
    "REASON_EMPTY",
    "SURVEY_COLUMNS",
    "SuppressionReport",
    "suppress_small_areas",
    "reject_personal_data",
    "read_survey_csv",
    "survey_suppression_counts",
]
