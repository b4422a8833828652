"""Assemble the wijkbeeld pages from :class:`~.data.GemeenteData` and write the folder.

``write_site(data, out_dir)`` writes ``index.html`` (the gemeente overview) and one page per wijk
(``<wijkcode>.html``) and returns the paths plus a Markdown preview of the overview. Texts are Dutch;
areas suppressed for privacy show "te klein om te tonen", never a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd

from wijk_assets.lib.wijkbeeld import charts, svgmap
from wijk_assets.lib.wijkbeeld.data import AGE_KEYS, NATIONAL_CODE, GemeenteData, hidden_in_reference, page_reference
from wijk_assets.lib.wijkbeeld.fmt import nl_int, nl_number, nl_pct
from wijk_assets.lib.wijkbeeld.labels import DIMENSIONS, OUTCOMES_NL, feature_label_nl
from wijk_assets.lib.wijkbeeld.links import UNLINKED
from wijk_assets.lib.wijkbeeld.model_text import model_sections, next_wijk_signals, withheld_reason

SUPPRESSED = "te klein om te tonen"
NOT_PUBLISHED = "niet gepubliceerd"
SRC_LBM = "Leefbaarometer 3.0 (ministerie van BZK), wijkscores"
SRC_KWB = "CBS, Kerncijfers wijken en buurten"
SRC_MAP = "CBS/Kadaster, Wijk- en buurtkaart {year} (PDOK), wijklaag"  # the year of the boundaries drawn
SRC_HEALTH = "RIVM/GGD's/CBS, Gezondheidsmonitor Volwassenen en Ouderen, CBS-tabel 50090NED"
HEALTH_FAR_PP = 5.0  # percentage points from the national figure that the overview lists as a signal


@dataclass
class Site:
    index: Path
    wijk_pages: dict[str, Path]  # area_code -> page
    markdown: str


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("wijk_assets.lib.wijkbeeld", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.filters.update(nl=nl_number, nl_int=nl_int, nl_pct=nl_pct)
    return env


def _val(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) or pd.isna(x) else float(x)


def kwb_source(year, table) -> str:
    """"CBS, Kerncijfers wijken en buurten <year> (<table id>)", from the figure's own lineage; the table id
    only when the file named one (a municipality's own KWB export may not)."""
    text = f"{SRC_KWB} {int(year)}" if _val(year) is not None else SRC_KWB
    return f"{text} ({table.strip()})" if isinstance(table, str) and table.strip() else text


def inhabitants_sources(data: GemeenteData) -> str:
    """The KWB releases the overview's inhabitants come from (each wijk's latest), as the data says."""
    known = data.wijken[data.wijken["inhabitants"].notna()]
    releases = {(int(y), t.strip() if isinstance(t, str) and t.strip() else "")
                for y, t in zip(known["inhabitants_year"], known["inhabitants_table"]) if _val(y) is not None}
    return "; ".join(kwb_source(y, t) for y, t in sorted(releases)) or "niet bekend"


def suppressed_codes(data: GemeenteData, min_inhabitants: int) -> set[str]:
    """Wijken that publish.* suppresses, plus any wijk under ``min_inhabitants`` (also without a
    published row)."""
    codes = set()
    if not data.comparison.empty and "suppressed_reason" in data.comparison:
        codes |= set(data.comparison.loc[data.comparison["suppressed_reason"].notna(), "area_code"])
    small = data.wijken["inhabitants"].isna() | (data.wijken["inhabitants"] < min_inhabitants)
    return codes | set(data.wijken.loc[small, "area_code"])


def _lbm_latest(data: GemeenteData) -> tuple[int | None, int | None]:
    if data.lbm.empty:
        return None, None
    years = sorted(data.lbm["year"].unique())
    latest = int(years[-1])
    dims_years = sorted(data.lbm.loc[data.lbm["fys"].notna(), "year"].unique())
    earlier = int(dims_years[0]) if dims_years and dims_years[0] < latest else (int(years[0]) if len(years) > 1 else None)
    return latest, earlier


def _lbm_value(data: GemeenteData, code: str, year: int | None, column: str) -> float | None:
    if year is None or data.lbm.empty:
        return None
    rows = data.lbm[(data.lbm["wijk_code"] == code) & (data.lbm["year"] == year)]
    return _val(rows.iloc[0][column]) if not rows.empty else None


def _reference(data: GemeenteData, year: int | None, column: str, hidden: set[str]) -> tuple[float | None, float | None]:
    """(gemeente, Nederland) for a Leefbaarometer column in ``year``; the gemeente's mean over the wijken
    shown (``hidden``: site.suppressed_codes)."""
    ref = page_reference(data, hidden)
    if year is None or ref.empty or (ref["year"] == year).sum() == 0:
        return None, None
    row = ref[ref["year"] == year].iloc[0]
    return _val(row[column]), _val(row.get(f"nl_{column}"))


def build_overview(data: GemeenteData, min_inhabitants: int, links: dict[str, str]) -> dict:
    hidden = suppressed_codes(data, min_inhabitants)
    latest, earlier = _lbm_latest(data)
    names = dict(zip(data.wijken["area_code"], data.wijken["area_name"]))
    indicators = []
    for key in ("lbm", *DIMENSIONS):
        values = {c: (None if c in hidden else _lbm_value(data, c, latest, key)) for c in names}
        texts = {c: SUPPRESSED if c in hidden else nl_number(v, 3 if key != "lbm" else 2, sign=key != "lbm", missing="geen score")
                 for c, v in values.items()}
        indicators.append(svgmap.Indicator(key, f"{OUTCOMES_NL[key]} {latest}", values, texts))
    if earlier is not None:
        change = {}
        for c in names:
            now, then = _lbm_value(data, c, latest, "lbm"), _lbm_value(data, c, earlier, "lbm")
            change[c] = None if c in hidden or now is None or then is None else now - then
        indicators.append(svgmap.Indicator(
            "verandering", f"Verandering totaalscore {earlier}–{latest}", change,
            {c: SUPPRESSED if c in hidden else nl_number(v, 3, sign=True, missing="geen score") for c, v in change.items()}))
    map_svg = svgmap.render_map(dict(zip(data.wijken["area_code"], data.wijken["geometry_geojson"])), names,
                                indicators, links=links)
    legends = svgmap.legends(indicators, lambda v: nl_number(v, 3))
    rows = []
    signals = next_wijk_signals(data, latest, earlier, hidden, HEALTH_FAR_PP)
    for w in data.wijken.itertuples(index=False):
        code = w.area_code
        row = {"code": code, "name": w.area_name, "link": links[code], "suppressed": code in hidden,
               "inhabitants": nl_int(w.inhabitants), "signals": signals["per_wijk"].get(code, [])}
        if code not in hidden:
            gem, nl = _reference(data, latest, "lbm", hidden)
            total = _lbm_value(data, code, latest, "lbm")
            row["lbm"] = nl_number(total, 2)
            row["vs_gemeente"] = nl_number(None if total is None or gem is None else total - gem, 3, sign=True)
            row["vs_nl"] = nl_number(None if total is None or nl is None else total - nl, 3, sign=True)
            row["dims"] = [nl_number(_lbm_value(data, code, latest, d), 3, sign=True) for d in DIMENSIONS]
            then = _lbm_value(data, code, earlier, "lbm")
            row["trend"] = nl_number(None if total is None or then is None else total - then, 3, sign=True)
            row["model"] = signals["model"].get(code, "geen modeluitkomst")
        rows.append(row)
    gem_lbm, nl_lbm = _reference(data, latest, "lbm", hidden)
    notes = overview_notes(data, hidden, signals["model"])
    for row in rows:
        if not row["suppressed"] and notes["model_withheld"]:
            row["model"] = "model niet gepubliceerd"
    return {
        "title": f"Wijkbeeld {data.gemeente_name}", "gemeente": data.gemeente_name, "code": data.gemeente_code,
        "latest": latest, "earlier": earlier, "map_svg": map_svg, "indicators": indicators, "legends": legends,
        "rows": rows, "dims": [OUTCOMES_NL[d] for d in DIMENSIONS], "gem_lbm": nl_number(gem_lbm, 2),
        "nl_lbm": nl_number(nl_lbm, 2), "gem_dims": [nl_number(_reference(data, latest, d, hidden)[0], 3, sign=True) for d in DIMENSIONS],
        "reference_left_out": hidden_in_reference(data, hidden),
        "next": signals, "src_lbm": f"{SRC_LBM} {latest}", "src_inhabitants": inhabitants_sources(data), "src_map": SRC_MAP.format(year=int(data.wijken["boundary_year"].max())),
        "survey": survey_table(data, None),
        "notes": data.notes, "far_pp": nl_number(HEALTH_FAR_PP, 0),
        "table_notes": notes["table"], "next_notes": notes["next"],
    }


def _wijken_text(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " en " + names[-1]


def overview_notes(data: GemeenteData, hidden: set[str], model: dict[str, str]) -> dict:
    """The overview's explanations of its gaps: a gemeente mean without the hidden wijken, wijken whose
    older-layout figures cannot be linked ("–"), wijken without a model outcome, a withheld model. A
    gap the overview does not explain reads as "nothing to report" in "Welke wijk als volgende?"."""
    names = dict(zip(data.wijken["area_code"], data.wijken["area_name"]))
    shown = [c for c in data.wijken["area_code"] if c not in hidden]
    table, after_signals = [], []
    left_out = hidden_in_reference(data, hidden)
    if left_out:
        table.append(f"Het gemiddelde van de wijken telt {'de wijk die' if left_out == 1 else f'de {left_out} wijken die'} "
                     f"te klein {'is' if left_out == 1 else 'zijn'} om te tonen niet mee, zodat er geen score van af te "
                     "leiden is.")
    rules = dict(zip(data.links["area_code"], data.links["link_rule"])) if not data.links.empty else {}
    unlinked = sorted(names[c] for c in shown if rules.get(c) == UNLINKED)
    if unlinked:
        n = len(unlinked)
        table.append(f"{n} {'wijk' if n == 1 else 'wijken'} met alleen “–”: de Leefbaarometer, het model en de "
                     "Gezondheidsmonitor gebruiken een oudere wijkindeling, waarvan de cijfers niet aan "
                     f"{'deze wijk' if n == 1 else 'deze wijken'} te koppelen zijn: {_wijken_text(unlinked)}. "
                     "De wijkpagina's leggen dit uit.")
        after_signals.append(f"Zonder cijfers, en daarom zonder signalen: {_wijken_text(unlinked)} (niet te koppelen aan "
                             "de oudere wijkindeling van de bronnen).")
    gate = {r.outcome: r for r in data.gate.itertuples(index=False)} if not data.gate.empty else {}
    verdict = gate.get("lbm")
    withheld = verdict is not None and not verdict.passed
    if withheld:
        table.append(f"Model niet gepubliceerd: {withheld_reason(verdict.problems)}.")
    elif verdict is not None:
        without = sorted(names[c] for c in shown if c not in model and rules.get(c) != UNLINKED)
        if without:
            n = len(without)
            table.append(f"“geen modeluitkomst” ({n} {'wijk' if n == 1 else 'wijken'}): het model heeft voor het jaar "
                         "van de score geen kenmerken die aan de wijk te koppelen zijn (bijvoorbeeld omdat de "
                         "Gezondheidsmonitor een andere wijkindeling gebruikt), en geeft dus geen verwachte score.")
    return {"table": table, "next": after_signals, "model_withheld": withheld}


def _age_rows(data: GemeenteData, code: str) -> list[dict]:
    ages = data.ages[data.ages["area_code"] == code] if not data.ages.empty else data.ages
    rows = []
    for key, label in AGE_KEYS.items():
        match = ages[ages["age_key"] == key] if not ages.empty else ages
        pct = _val(match.iloc[0]["pct"]) if not match.empty else None
        rows.append({"label": label, "pct": pct, "text": nl_pct(pct, 0, missing=NOT_PUBLISHED),
                     "lineage": f"{match.iloc[0]['source_file']}, rij {match.iloc[0]['source_row']}" if not match.empty else ""})
    return rows


def _ages_year(data: GemeenteData, boundary_year: int) -> int:
    """The release year of the boundary file the age shares are read from (the latest), else the map's."""
    if data.ages.empty or "year" not in data.ages or data.ages["year"].isna().all():
        return boundary_year
    return int(data.ages["year"].max())


def _lbm_charts(data: GemeenteData, code: str, name: str, hidden: set[str]) -> list[dict]:
    out = []
    for key in ("lbm", *DIMENSIONS):
        own = data.lbm[data.lbm["wijk_code"] == code].sort_values("year")
        ref = page_reference(data, hidden).sort_values("year")
        series = {
            name: [(int(y), _val(v)) for y, v in zip(own["year"], own[key])],
            f"gemiddelde wijken {data.gemeente_name}": [(int(y), _val(v)) for y, v in zip(ref["year"], ref[key])],
            "Nederland": [(int(y), _val(v)) for y, v in zip(ref["year"], ref[f"nl_{key}"]) if _val(v) is not None],
        }
        svg = charts.line_chart(series, title=OUTCOMES_NL[key], decimals=2 if key == "lbm" else 3,
                                chart_id=f"lbm-{key}")
        years = [y for y, v in series[name] if v is not None]
        lineage = ", ".join(f"{y}: rij {r}" for y, r in zip(own["year"], own["source_row"]))
        out.append({"key": key, "svg": svg, "label": OUTCOMES_NL[key],
                    "source": f"{SRC_LBM}, {min(years) if years else ''}–{max(years) if years else ''}"
                              + "; Nederland: gemiddelde van alle wijken in Nederland"
                              + ("; dimensies als afwijking van het vaste referentieniveau van de Leefbaarometer (0)"
                                 if key != "lbm" else ""),
                    "lineage": f"{own['source_file'].iloc[0]} ({lineage})" if not own.empty else "geen score"})
    return out


def _health_index(data: GemeenteData) -> tuple:
    """(years, features, first row per (feature, year, area code), linked (wijk, year) pairs or None, the
    years with figures of the gemeente itself) of
    ``data.health``, built once per GemeenteData: every wijk page reads it, and a mask over the whole
    table per cell made a gemeente of 110 wijken (Amsterdam) spend ~20 s here."""
    if data.health_index is None:
        health = data.health
        years = sorted(int(y) for y in health["year"].unique())
        features = sorted(health["feature"].unique())
        first = health.drop_duplicates(["feature", "year", "area_code"], keep="first")
        rows = {(r["feature"], int(r["year"]), r["area_code"]): r for r in first.to_dict("records")}
        # (page wijk, year) pairs whose own health figures are known (links.py); None: every code is
        # its own area (a GemeenteData built without links)
        linked = None if data.links.empty else {(a, int(y)) for a, y in zip(data.health_links["area_code"],
                                                                             data.health_links["year"])}
        # the years whose layout holds the gemeente itself: a gemeente formed later by a merger has no
        # figures of its own in an earlier year (they are under the gemeenten it was formed from)
        gemeente_years = {int(y) for y in health.loc[health["area_code"] == data.gemeente_code, "year"].unique()}
        data.health_index = (years, features, rows, linked, gemeente_years)
    return data.health_index


def _health_rows(data: GemeenteData, code: str) -> tuple[list[int], list[dict]]:
    if data.health.empty:
        return [], []
    years, features, index, linked, gemeente_years = _health_index(data)
    rows = []
    for feature in features:
        cells = []
        for year in years:
            def pick(area):
                r = index.get((feature, year, area))
                if r is None:
                    return None, "niet gemeten"
                v = _val(r["value"])
                return r, (nl_pct(v) if v is not None else
                           ("niet gemeten" if r["missing_reason"] in ("not_measured", "not_applicable") else NOT_PUBLISHED))
            own, own_text = pick(code) if linked is None or (code, year) in linked else (None, NOT_LINKED)
            _g, gem_text = pick(data.gemeente_code) if year in gemeente_years else (None, OTHER_GEMEENTE_LAYOUT)
            _n, nl_text = pick(NATIONAL_CODE)
            lineage = f"{own['source_file']}, rij {own['source_row']}" if own is not None else ""
            cells.append({"wijk": own_text, "gemeente": gem_text, "nl": nl_text, "lineage": lineage})
        if all(c["wijk"] in ("niet gemeten", NOT_LINKED) and c["nl"] == "niet gemeten" for c in cells):
            continue
        rows.append({"label": feature_label_nl(feature.split("__")[0]), "feature": feature, "cells": cells})
    return years, rows


NOT_LINKED = "niet te koppelen"
OTHER_GEMEENTE_LAYOUT = "andere indeling"


def link_note(data: GemeenteData, code: str) -> str | None:
    """Dutch sentence on how the page wijk was found in the older layouts (links.py); None when by code."""
    if data.links.empty:
        return None
    row = data.links[data.links["area_code"] == code]
    if row.empty or row.iloc[0]["link_rule"] in ("exact", "exact_code_and_name"):
        return None
    row = row.iloc[0]
    if row["link_rule"] == "name_within_gemeente":
        year = f" ({int(row['lbm_layout_year'])})" if _val(row["lbm_layout_year"]) is not None else ""
        return (f"De Leefbaarometer en de modellen gebruiken een oudere wijkindeling{year}. Daarin heeft deze wijk "
                f"dezelfde naam ({row['lbm_wijk_name']}) en een andere code ({row['lbm_wijk_code']}): de scores, "
                "modeluitkomsten en gezondheidscijfers op deze pagina zijn van die wijk.")
    return (f"{data.gemeente_name} heeft haar wijken opnieuw ingedeeld. Deze wijk komt in de oudere wijkindeling van "
            "de Leefbaarometer en de modellen niet met zekerheid voor (niet met dezelfde code én naam, en niet "
            "onder een andere code met dezelfde naam). Scores, modeluitkomsten en gezondheidscijfers van de oude "
            "wijken staan daarom niet bij deze wijk.")


def survey_table(data: GemeenteData, wijk_name: str | None) -> dict | None:
    """The gemeente's own survey (None when it delivered none); on a wijk page the areas whose label
    names the wijk first."""
    if data.survey.empty:
        return None
    frame = data.survey.copy()
    frame["text"] = [SUPPRESSED if s else nl_pct(v, 0, missing=NOT_PUBLISHED)
                     for s, v in zip(frame["is_suppressed"], frame["value_pct"])]
    matches = frame[frame["area_label"].str.contains(wijk_name, case=False, regex=False)] if wijk_name else frame.iloc[0:0]
    shown = matches if not matches.empty else frame
    tables = []
    for indicator, group in shown.groupby("indicator", sort=False):
        categories = list(dict.fromkeys(group["category"]))
        areas = []
        for label, g in group.groupby("area_label", sort=False):
            by_cat = dict(zip(g["category"], g["text"]))
            areas.append({"label": label, "cells": [by_cat.get(c, "–") for c in categories],
                          "lineage": f"{g['source_file'].iloc[0]}, rij {g['source_row'].iloc[0]}"})
        tables.append({"indicator": str(indicator).replace("_", " "), "categories": categories, "areas": areas,
                       "year": int(group["year"].iloc[0]), "source": str(group["source_file"].iloc[0])})
    return {"tables": tables, "matched": not matches.empty, "survey": str(frame["survey"].iloc[0])}


def build_wijk(data: GemeenteData, code: str, min_inhabitants: int, links: dict[str, str]) -> dict:
    w = data.wijken[data.wijken["area_code"] == code].iloc[0]
    all_hidden = suppressed_codes(data, min_inhabitants)
    hidden = code in all_hidden
    names = dict(zip(data.wijken["area_code"], data.wijken["area_name"]))
    locator = svgmap.render_map(dict(zip(data.wijken["area_code"], data.wijken["geometry_geojson"])), names, [],
                                width=300, highlight=code, links=links, labels=False, element_id="locator")
    context = {
        "title": f"{w.area_name} — wijkbeeld {data.gemeente_name}", "name": w.area_name, "code": code,
        "gemeente": data.gemeente_name, "gemeente_code": data.gemeente_code, "suppressed": hidden,
        "locator_svg": locator, "src_map": f"{SRC_MAP.format(year=int(w.boundary_year))}; herkomst: {w.source_file}, rij {w.source_row}",
        "survey": survey_table(data, w.area_name),
    }
    if hidden:
        return context
    years, health = _health_rows(data, code)
    link = link_note(data, code)
    context.update({
        "inhabitants": nl_int(w.inhabitants), "inhabitants_year": int(w.inhabitants_year) if _val(w.inhabitants_year) else None,
        "src_inhabitants": f"{kwb_source(w.inhabitants_year, w.inhabitants_table)}; "
                           f"herkomst: {w.inhabitants_file}, rij {w.inhabitants_row}",
        "ages": _age_rows(data, code), "ages_year": _ages_year(data, int(w.boundary_year)), "lbm_charts": _lbm_charts(data, code, w.area_name, all_hidden) if not data.lbm.empty else [],
        "health_years": years, "health": health, "src_health": SRC_HEALTH, "link_note": link,
        "not_linked": any(c["wijk"] == NOT_LINKED for h in health for c in h["cells"]),
        "gemeente_other_layout": any(c["gemeente"] == OTHER_GEMEENTE_LAYOUT for h in health for c in h["cells"]),
        "models": model_sections(data, code), "comparable": _comparable_rows(data, code),
    })
    return context


def _comparable_rows(data: GemeenteData, code: str) -> list[dict]:
    if data.comparables.empty:
        return []
    rows = data.comparables[data.comparables["area_code"] == code].sort_values("rank")
    return [{"name": r.other_name, "gemeente": r.other_gemeente, "code": r.other_code, "lbm": nl_number(r.lbm, 2),
             "year": r.year, "distance": nl_number(r.distance, 2), "shared": f"{r.n_shared} van {r.n_features}"}
            for r in rows.itertuples(index=False)]


def write_site(data: GemeenteData, out_dir: Path, *, min_inhabitants: int) -> Site:
    out_dir.mkdir(parents=True, exist_ok=True)
    env = _env()
    links = {code: f"{code}.html" for code in data.wijken["area_code"]}
    overview = build_overview(data, min_inhabitants, links)
    index = out_dir / "index.html"
    index.write_text(env.get_template("index.html.j2").render(**overview), encoding="utf-8")
    pages = {}
    for code in data.wijken["area_code"]:
        page = out_dir / links[code]
        page.write_text(env.get_template("wijk.html.j2").render(**build_wijk(data, code, min_inhabitants, links)),
                        encoding="utf-8")
        pages[code] = page
    return Site(index, pages, overview_markdown(overview))


def overview_markdown(overview: dict) -> str:
    head = f"**{overview['title']}** — Leefbaarometer {overview['latest']}, gemeente {overview['gem_lbm']}, Nederland {overview['nl_lbm']}\n\n"
    lines = ["| wijk | inwoners | totaalscore | t.o.v. gemeente | t.o.v. Nederland | verandering | aandachtspunten |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in overview["rows"]:
        if r["suppressed"]:
            lines.append(f"| {r['name']} | {SUPPRESSED} | | | | | |")
        else:
            lines.append(f"| {r['name']} | {r['inhabitants']} | {r['lbm']} | {r['vs_gemeente']} | {r['vs_nl']} | "
                         f"{r['trend']} | {'; '.join(r['signals']) or '–'} |")
    return head + "\n".join(lines) + "\n\n" + overview["next"]["order_text"]
