"""The model in Dutch: per wijk the expected score with its band and the drivers up and down ("t-shape":
what matters nationally, what moves this wijk), and the overview's "Welke wijk als volgende?" signals.

Only published model results (gate 3 passed, ``publish.*``) are shown; a withheld outcome says
"model niet gepubliceerd" with the reason. Drivers are associations, never causes.
"""

from __future__ import annotations


import pandas as pd

from wijk_assets.lib.wijkbeeld.data import page_reference
from wijk_assets.lib.wijkbeeld.fmt import nl_int, nl_number, nl_pct
from wijk_assets.lib.wijkbeeld.labels import DIMENSIONS, HIGHER_IS_BETTER, HIGHER_IS_WORSE, OUTCOMES_NL, feature_label_nl

CAVEAT = ("Dit zijn verbanden, geen oorzaken: een kenmerk dat de verwachte score verlaagt, is niet "
          "noodzakelijk de reden van een lagere score, en het veranderen ervan verandert de score niet vanzelf.")
TREND_MIN = 0.02  # a decline relative to Nederland smaller than this is not listed as a signal
FLAGS_NL = {
    "higher than its indicators predict": "hoger dan de kenmerken voorspellen",
    "lower than its indicators predict": "lager dan de kenmerken voorspellen",
    "within the expected range": "binnen de verwachte marge",
}


def _v(x) -> float | None:
    return None if x is None or pd.isna(x) else float(x)


def withheld_reason(problems: object) -> str:
    text = str(problems or "")
    if "baseline" in text:
        return "niet aangetoond dat het model beter voorspelt dan een eenvoudig lineair model (kwaliteitspoort 3)"
    if "missing" in text:
        return "te veel ontbrekende waarden in belangrijke kenmerken (kwaliteitspoort 3)"
    if "shap" in text.lower():
        return "de verklaringen tellen niet op tot de voorspelling (kwaliteitspoort 3)"
    return f"afgewezen door kwaliteitspoort 3 ({text})" if text else "afgewezen door kwaliteitspoort 3"


def _band(row) -> tuple[float | None, float | None]:
    if "lower" in row.index and _v(row["lower"]) is not None:
        return _v(row["lower"]), _v(row["upper"])
    if "band" in row.index and _v(row["band"]) is not None and _v(row["predicted"]) is not None:
        return _v(row["predicted"]) - _v(row["band"]), _v(row["predicted"]) + _v(row["band"])
    return None, None


def expected_text(row, decimals: int = 2) -> str:
    lo, hi = _band(row)
    coverage = _v(row["nominal_coverage"]) if "nominal_coverage" in row.index else None
    level = f"{nl_number(coverage * 100, 0)}%-interval" if coverage is not None else "interval"
    band = f" ({level} {nl_number(lo, decimals)} – {nl_number(hi, decimals)})" if lo is not None else ""
    return f"verwacht {nl_number(_v(row['predicted']), decimals)}{band}"


def _rank_text(row) -> str | None:
    low, high, n = (_v(row.get("rank_min")), _v(row.get("rank_max")), _v(row.get("n_ranked")))
    if low is None or high is None or n is None:
        return None
    if "rank_informative" in row.index and row["rank_informative"] is False:
        return None
    if low == 1 and high == n or (high - low) > 0.8 * n:
        return "de onzekerheid laat geen plaats in de landelijke volgorde toe"
    return f"landelijk plaats {nl_int(low)} tot {nl_int(high)} van {nl_int(n)} (gesimuleerd uit de onzekerheid)"


def _buurt_of(data, code: str, d) -> str:
    """' (buurt BU01060403)': the buurt whose figure a highest/lowest-buurt driver is (the data carry
    no buurt names, so the CBS buurt code names it)."""
    feature = str(d["feature"])
    if not feature.startswith(("bu_max__", "bu_min__")) or data.buurt_values.empty or _v(d["feature_value"]) is None:
        return ""
    base = feature.split("__", 1)[1]
    if not data.links.empty:  # the drivers are of the Leefbaarometer wijk the page wijk is linked to
        linked = data.links.loc[data.links["area_code"] == code, "lbm_wijk_code"].dropna()
        code = linked.iloc[0] if len(linked) else code
    rows = data.buurt_values[(data.buurt_values["feature"] == base) & (data.buurt_values["year"] == d.get("feature_year"))
                             & data.buurt_values["area_code"].str.startswith("BU" + code[2:])]
    hits = rows.loc[(rows["value"] - float(d["feature_value"])).abs() < 0.05, "area_code"]
    return f" (buurt {', '.join(sorted(hits))})" if len(hits) else ""


def driver_sentence(d, buurt: str = "") -> str:
    verb = "verhoogt" if _v(d["shap_value"]) and d["shap_value"] > 0 else "verlaagt"
    unit_pct = str(d["feature"]).split("__")[-1] in ("18plus", "18_64", "65plus") or str(d["feature"]).startswith(("pct_", "bu_"))
    fmt = (lambda v: nl_pct(v)) if unit_pct and "pct_" in str(d["feature"]) else (lambda v: nl_number(v, 2))
    value = fmt(_v(d["feature_value"]))
    if "comparison_value" in d.index:  # what SHAP compares with: the wijken the model learned from
        comparison, against = d["comparison_value"], "gemiddeld in de wijken waarvan het model leerde"
    else:
        comparison, against = d.get("national_value"), "landelijk"
    compared = f" ({against}: {fmt(_v(comparison))})" if _v(comparison) is not None else ""
    year = f", {int(d['feature_year'])}" if _v(d.get("feature_year")) is not None else ""
    return (f"{feature_label_nl(str(d['feature']))}: {value}{buurt}{compared}{year} — dit kenmerk {verb} de verwachte "
            f"score met {nl_number(abs(_v(d['shap_value'])), 3)}.")


def _importance_sentences(data, outcome: str) -> list[str]:
    if data.importance.empty:
        return []
    rows = data.importance[data.importance["outcome"] == outcome].sort_values("rank")
    out = []
    for r in rows.itertuples(index=False):
        direction = str(getattr(r, "direction_text", "") or "")
        effect = ("hogere waarden verlagen de verwachte score" if "lower" in direction else
                  "hogere waarden verhogen de verwachte score" if "raise" in direction else "richting wisselt")
        out.append(f"{feature_label_nl(r.feature)}: {effect} (gemiddeld effect {nl_number(r.mean_abs_shap, 3)}).")
    return out


def model_sections(data, code: str) -> list[dict]:
    """One section per outcome: published (score, expected value with band, drivers) or withheld."""
    sections = []
    gate = {r.outcome: r for r in data.gate.itertuples(index=False)} if not data.gate.empty else {}
    for outcome in ("lbm", *DIMENSIONS):
        section = {"outcome": outcome, "label": OUTCOMES_NL[outcome], "published": False, "reason": None}
        verdict = gate.get(outcome)
        if verdict is None:
            section["reason"] = "geen model voor deze uitkomst in deze database"
        elif not verdict.passed:
            section["reason"] = withheld_reason(verdict.problems)
        else:
            rows = data.comparison[(data.comparison["outcome"] == outcome) & (data.comparison["area_code"] == code)] \
                if not data.comparison.empty else pd.DataFrame()
            if rows.empty:
                section["reason"] = "geen gepubliceerde modeluitkomst voor deze wijk (geen score of geen passende kenmerken)"
            else:
                row = rows.iloc[0]
                decimals = 2 if outcome == "lbm" else 3
                year = int(row["outcome_year"])
                ref = data.lbm_reference[data.lbm_reference["year"] == year] if not data.lbm_reference.empty else None
                national = _v(ref[f"nl_{outcome}"].iloc[0]) if ref is not None and not ref.empty else None
                drivers = data.drivers[(data.drivers["outcome"] == outcome) & (data.drivers["area_code"] == code)]
                section.update({
                    "published": True, "year": year,
                    "score": nl_number(_v(row["actual"]), decimals),
                    "national": nl_number(national, decimals),
                    "expected": expected_text(row, decimals), "flag": FLAGS_NL.get(str(row["flag"]), str(row["flag"])),
                    "rank": _rank_text(row), "version": str(row["model_version"]),
                    "up": [driver_sentence(d, _buurt_of(data, code, d)) for _i, d in drivers[drivers["side"] == "up"].iterrows()],
                    "down": [driver_sentence(d, _buurt_of(data, code, d)) for _i, d in drivers[drivers["side"] == "down"].iterrows()],
                    "global": _importance_sentences(data, outcome),
                })
        sections.append(section)
    return sections


def _ranges_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return not (a[1] < b[0] or b[1] < a[0])


def order_text(codes: list[str], ranges: dict[str, tuple[float, float]]) -> str:
    """Whether the uncertainty allows an order of the wijken with a published model outcome (``codes``):
    a pair is ordered only when both have a simulated rank range (a wijk without one is not
    distinguishable from most wijken) and the ranges do not overlap."""
    if not codes:
        return "Er zijn geen gepubliceerde modeluitkomsten om een volgorde op te beoordelen."
    if len(codes) == 1:
        return "Er is maar één wijk met een gepubliceerde modeluitkomst: er is geen volgorde te beoordelen."
    pairs = [(a, b) for i, a in enumerate(codes) for b in codes[i + 1:]]
    separable = sum(a in ranges and b in ranges and not _ranges_overlap(ranges[a], ranges[b]) for a, b in pairs)
    if separable == 0:
        return ("De onzekerheid laat geen volgorde toe: de gesimuleerde rangplaatsen van de wijken overlappen. "
                "Daarom staan de wijken hieronder op alfabet, met hun signalen, en niet in een rangorde.")
    others = len(pairs) - separable
    return (f"Bij {separable} van de {len(pairs)} paren wijken met een modeluitkomst laat de onzekerheid een "
            f"volgorde toe; bij de andere {others} niet. Daarom staan de wijken op alfabet, met hun signalen, "
            "en niet in een rangorde.")


def next_wijk_signals(data, latest: int | None, earlier: int | None, hidden: set[str], far_pp: float) -> dict:
    """Per wijk the neutral signals for "Welke wijk als volgende?", each with its uncertainty, and
    whether the uncertainty allows an order at all (judged on the simulated rank ranges of the total)."""
    per_wijk: dict[str, list[str]] = {}
    model: dict[str, str] = {}
    lbm = data.lbm
    ref = page_reference(data, hidden)  # the gemeente's mean over the wijken shown
    gem_now = ref.loc[ref["year"] == latest, "lbm"].iloc[0] if latest is not None and not ref.empty else None
    nl_now = _v(ref.loc[ref["year"] == latest, "nl_lbm"].iloc[0]) if latest is not None and not ref.empty else None
    comparison = data.comparison[data.comparison["outcome"] == "lbm"] if not data.comparison.empty else pd.DataFrame()
    ranges: dict[str, tuple[float, float]] = {}
    health = data.health
    health_year = int(health["year"].max()) if not health.empty else None
    for code in data.wijken["area_code"]:
        if code in hidden:
            continue
        signals = []
        own = lbm[lbm["wijk_code"] == code].set_index("year") if not lbm.empty else pd.DataFrame()
        now = _v(own["lbm"].get(latest)) if not own.empty else None
        if now is not None and gem_now is not None and now < gem_now and nl_now is not None and now < nl_now:
            signals.append(f"totaalscore {nl_number(now, 2)} onder het gemiddelde van de gemeente ({nl_number(gem_now, 2)}) "
                           f"en van Nederland ({nl_number(nl_now, 2)}); de Leefbaarometer geeft geen foutmarge per wijk")
        then = _v(own["lbm"].get(earlier)) if not own.empty and earlier is not None else None
        nl_then = _v(ref.loc[ref["year"] == earlier, "nl_lbm"].iloc[0]) \
            if earlier is not None and not ref.empty and (ref["year"] == earlier).any() else None
        if None not in (now, then, nl_now, nl_then):
            # the change of the wijk's distance to the national mean (not afw: that is the distance to a
            # reference level that is fixed over the years, so its change is the wijk's own change)
            drift = (now - nl_now) - (then - nl_then)
            if drift <= -TREND_MIN:
                signals.append(f"ten opzichte van Nederland gedaald sinds {earlier} ({nl_number(drift, 3, sign=True)}); "
                               "de Leefbaarometer geeft geen foutmarge per wijk")
        rows = comparison[comparison["area_code"] == code] if not comparison.empty else comparison
        if not rows.empty:
            row = rows.iloc[0]
            lo, hi = _band(row)
            model[code] = (f"{nl_number(_v(row['predicted']), 2)} ({nl_number(lo, 2)} – {nl_number(hi, 2)})"
                           if lo is not None else nl_number(_v(row["predicted"]), 2))
            if "lower" in str(row["flag"]):
                signals.append(f"totaalscore {nl_number(_v(row['actual']), 2)} lager dan de kenmerken voorspellen ({expected_text(row)})")
            if _v(row.get("rank_min")) is not None and _v(row.get("rank_max")) is not None:
                ranges[code] = (float(row["rank_min"]), float(row["rank_max"]))
        if health_year is not None:
            at = health[health["year"] == health_year].set_index(["area_code", "feature"])["value"]
            far = []
            for feature in sorted({f for a, f in at.index if a == code}):
                w, n = _v(at.get((code, feature))), _v(at.get(("NL00", feature)))
                concept = feature.split("__")[0]
                if w is None or n is None:
                    continue
                gap = (w - n) if concept in HIGHER_IS_WORSE else (n - w) if concept in HIGHER_IS_BETTER else 0.0
                if gap >= far_pp:
                    far.append((gap, f"{feature_label_nl(concept)} {nl_pct(w)} (landelijk {nl_pct(n)})"))
            if far:
                far.sort(key=lambda t: -t[0])
                more = f" en {len(far) - 3} andere" if len(far) > 3 else ""
                signals.append(f"gezondheid {health_year} (18+), ten minste {nl_number(far_pp, 0)} procentpunt ongunstiger "
                               "dan landelijk: " + "; ".join(t for _g, t in far[:3]) + more
                               + " (schattingen van de Gezondheidsmonitor, met eigen onzekerheid)")
        per_wijk[code] = signals
    order = order_text(sorted(model), ranges)
    names = dict(zip(data.wijken["area_code"], data.wijken["area_name"]))
    listed = sorted(((names[c], s) for c, s in per_wijk.items() if s), key=lambda t: t[0])
    return {"per_wijk": per_wijk, "model": model, "order_text": order, "listed": listed,
            "trend_min": nl_number(TREND_MIN, 2),
            "health_year": health_year, "n_hidden": len(hidden)}
