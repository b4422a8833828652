"""Algoritmeregister entry and model card, built from the facts of an actual run.

Static text (purpose, legal basis, contact, ...) comes from ``config`` - the municipality's YAML, see
``register_config.yaml`` (a reviewed-by-nobody DRAFT). Everything that a run can know for certain comes
from ``facts`` (schema: :class:`RegisterFacts`). A missing or placeholder fact is an error
(:class:`MissingFactError`); we never print "TBD" where a figure from the run belongs.

The config text names no gemeente: ``{gemeente_naam}``, ``{gemeente_code}``, ``{kenmerkbronnen}`` and
``{uitkomstbron}`` are filled from the facts (:func:`template_values`), so the entry for GM0344 says
"Gemeente Utrecht" and the sources the model really uses, and nothing about another gemeente.

Pure functions, no Dagster.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from pathlib import Path
from typing import Any, Mapping, NotRequired, Required, TypedDict

import yaml

from wijk_assets.lib.responsible.model_sources import CONTEXT_PREFIXES, STRUCTURAL, base_feature
from wijk_assets.lib.wijkbeeld.fmt import nl_number
from wijk_assets.lib.wijkbeeld.labels import AGE_GROUPS_NL, DIMENSIONS, OUTCOMES_NL, feature_label_nl

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent / "register_config.yaml"

# --------------------------------------------------------------------------------------------------
# Facts schema (what the lead fills from the run)
# --------------------------------------------------------------------------------------------------


class SourceFileFact(TypedDict, total=False):
    path: Required[str]  # relative to the data folder, or the feed URL
    sha256: Required[str]  # 64 hex characters
    # Whether the file holds rows of the gemeente in focus (model_sources.files_with_gemeente). Only
    # files of a describing source (context_sources) that do are named in the register entry; the
    # others are counted and given by sha256 only, as their names may name another gemeente.
    covers_gemeente: NotRequired[bool]


class DataSourceFact(TypedDict, total=False):
    name: Required[str]  # catalog key, e.g. "rivm_gezondheid"
    title: Required[str]  # e.g. "Gezondheid per wijk en buurt (RIVM/GGD ...)"
    publisher: Required[str]  # e.g. "RIVM, GGD GHOR Nederland, CBS"
    licence: Required[str]  # e.g. "CC BY 4.0 (Bron: CBS)"
    cbs_table_ids: Required[list[str]]  # e.g. ["50090NED"]; [] when the source has none
    years: Required[list[int]]  # release years actually used, non-empty
    files: Required[list[SourceFileFact]]  # every file/feed read, non-empty
    level: NotRequired[str]  # e.g. "wijk" / "buurt"
    role: NotRequired[str]  # "uitkomst" (the model's target) or "kenmerken" (features; the default)
    features: NotRequired[list[str]]  # the model features that come from this source


class ModelFact(TypedDict, total=False):
    type: Required[str]  # e.g. "LightGBM gradient-boosted regression trees"
    version: Required[str]  # model version / training code version
    library: NotRequired[str]  # e.g. "lightgbm 4.5.0"
    explainer: NotRequired[str]  # e.g. "SHAP TreeExplainer (shap 0.46)"
    trained_on: NotRequired[str]  # e.g. "all Dutch wijken, Leefbaarometer 2022"
    hyperparameters: NotRequired[dict[str, Any]]


class OutcomeFact(TypedDict, total=False):
    outcome: Required[str]  # e.g. "lbm"
    description: NotRequired[str]  # e.g. "Leefbaarometer totaalscore"
    validation: Required[str]  # e.g. "5-fold GroupKFold, groups = gemeente"
    n_areas: Required[int]  # number of areas in the validation
    metrics: Required[dict[str, float]]  # the model, e.g. {"r2": 0.61, "mae": 0.052}
    baselines: Required[dict[str, dict[str, float]]]  # e.g. {"mean": {"r2": 0.0, "mae": 0.09}}


class SuppressionFact(TypedDict, total=False):
    min_inhabitants: Required[int]  # Settings.min_inhabitants
    min_respondents: Required[int]  # Settings.min_respondents
    n_areas: Required[int]  # SuppressionReport.n_areas
    n_suppressed_population: Required[int]
    n_suppressed_signal: Required[int]
    n_population_unknown: Required[int]
    n_suppressed_respondents: NotRequired[int]  # survey cells, survey_suppression_counts()
    n_suppressed_by_publisher: NotRequired[int]
    population_source: NotRequired[str]  # where the inhabitants come from, e.g. "CBS KWB 2024 (85984NED)"


class RegisterFacts(TypedDict, total=False):
    run_id: Required[str]  # Dagster run id
    code_version: Required[str]  # git commit or package version of wijk_assets
    generated_at: Required[str]  # ISO 8601 timestamp (UTC) of the run
    gemeente: Required[str]  # e.g. "GM0106"
    gemeente_name: NotRequired[str]  # official name, e.g. "Assen" (required when the config names it)
    area_level: Required[str]  # e.g. "wijk"
    classification_year: NotRequired[int]  # CBS wijk/buurt indeling the figures are harmonised to
    sources: Required[list[DataSourceFact]]  # exactly the sources that feed the model
    context_sources: NotRequired[list[DataSourceFact]]  # loaded, but only describe the present
    model: Required[ModelFact]
    outcomes: Required[list[OutcomeFact]]
    features: Required[list[str]]  # features actually used, non-empty
    sensitive_opt_in: Required[list[str]]  # sensitive indicators used under opt-in; [] when none
    suppression: Required[SuppressionFact]


_REQUIRED_TOP = ("run_id", "code_version", "generated_at", "gemeente", "area_level", "sources",
                 "model", "outcomes", "features", "sensitive_opt_in", "suppression")
_REQUIRED_SOURCE = ("name", "title", "publisher", "licence", "cbs_table_ids", "years", "files")
_REQUIRED_MODEL = ("type", "version")
_REQUIRED_OUTCOME = ("outcome", "validation", "n_areas", "metrics", "baselines")
_REQUIRED_SUPPRESSION = ("min_inhabitants", "min_respondents", "n_areas", "n_suppressed_population",
                         "n_suppressed_signal", "n_population_unknown")

_PLACEHOLDER = re.compile(
    r"^\s*(tbd|tbc|todo|fixme|xxx+|\?+|n/?a|nvt|unknown|onbekend|placeholder|lorem ipsum.*|"
    r"<[^>]*>|\{[^}]*\}|\.\.\.|-+|nog in te vullen.*)\s*$",
    re.IGNORECASE,
)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class MissingFactError(ValueError):
    """A fact that must come from the run is missing, empty or a placeholder."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "register/model card needs facts from the run; fix these (no placeholders allowed): "
            + "; ".join(problems)
        )


# Where the reports asset (``run_facts``) looks up the official name of the gemeente in focus.
GEMEENTE_NAME_TABLE = "marts.dim_area"
_GEMEENTE_CODE = re.compile(r"^GM\d{4}$")


class UnknownGemeenteError(MissingFactError):
    """The gemeente in focus has no official name in the loaded data: not a gemeente there."""

    def __init__(self, code: Any, where: str = "organisatie") -> None:
        if isinstance(code, str) and _GEMEENTE_CODE.match(code):
            problem = (
                f"gemeente {code!r} is not a gemeente in the loaded data: {GEMEENTE_NAME_TABLE} (the area codes "
                f"of the CBS Kerncijfers wijken en buurten and the wijk- en buurtkaart) has no area {code!r}, "
                f"so its name ({{gemeente_naam}} in config field {where!r}) is unknown"
            )
        else:
            problem = f"{code!r} is not a CBS gemeente code (GM followed by four digits)"
        self.problems = [problem]
        ValueError.__init__(
            self,
            problem + "; expected the code of a gemeente in the KWB/area tables, like GM0106 (Assen): "
            "check WIJK_GEMEENTE",
        )


class RegisterConfigError(ValueError):
    """The municipality's register configuration is incomplete."""


def _is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and (value.strip() == "" or bool(_PLACEHOLDER.match(value)))


def _check_text(value: Any, path: str, problems: list[str]) -> None:
    if value is None:
        problems.append(f"{path} is missing")
    elif not isinstance(value, str):
        problems.append(f"{path} must be text, got {type(value).__name__}")
    elif _is_placeholder(value):
        problems.append(f"{path} is empty or a placeholder ({value!r})")


def _check_number(value: Any, path: str, problems: list[str], *, integer: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(f"{path} must be a number, got {value!r}")
    elif isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{path} is not a finite number ({value!r})")
    elif integer and (not float(value).is_integer() or value < 0):
        problems.append(f"{path} must be a non-negative integer, got {value!r}")


def _check_metrics(value: Any, path: str, problems: list[str]) -> None:
    if not isinstance(value, Mapping) or not value:
        problems.append(f"{path} must be a non-empty mapping of metric name to number")
        return
    for k, v in value.items():
        _check_number(v, f"{path}.{k}", problems)


def validate_facts(facts: Mapping[str, Any]) -> None:
    """Raise :class:`MissingFactError` listing every missing/invalid fact (see :class:`RegisterFacts`)."""
    problems: list[str] = []
    if not isinstance(facts, Mapping):
        raise MissingFactError([f"facts must be a mapping, got {type(facts).__name__}"])
    for key in _REQUIRED_TOP:
        if key not in facts or facts[key] is None:
            problems.append(f"facts.{key} is missing")
    for key in ("run_id", "code_version", "generated_at", "gemeente", "area_level"):
        if facts.get(key) is not None:
            _check_text(facts[key], f"facts.{key}", problems)
    if "classification_year" in facts and facts["classification_year"] is not None:
        _check_number(facts["classification_year"], "facts.classification_year", problems, integer=True)

    sources = facts.get("sources")
    if sources is not None:
        if not isinstance(sources, list) or not sources:
            problems.append("facts.sources must be a non-empty list")
        else:
            for i, src in enumerate(sources):
                p = f"facts.sources[{i}]"
                if not isinstance(src, Mapping):
                    problems.append(f"{p} must be a mapping")
                    continue
                p = f"facts.sources[{src.get('name', i)}]"
                for key in _REQUIRED_SOURCE:
                    if key not in src or src[key] is None:
                        problems.append(f"{p}.{key} is missing")
                for key in ("name", "title", "publisher", "licence"):
                    if src.get(key) is not None:
                        _check_text(src[key], f"{p}.{key}", problems)
                ids = src.get("cbs_table_ids")
                if ids is not None:
                    if not isinstance(ids, list):
                        problems.append(f"{p}.cbs_table_ids must be a list ([] when none)")
                    else:
                        for tid in ids:
                            _check_text(tid, f"{p}.cbs_table_ids[]", problems)
                years = src.get("years")
                if years is not None:
                    if not isinstance(years, list) or not years:
                        problems.append(f"{p}.years must be a non-empty list of years")
                    else:
                        for y in years:
                            _check_number(y, f"{p}.years[]", problems, integer=True)
                files = src.get("files")
                if files is not None:
                    if not isinstance(files, list) or not files:
                        problems.append(f"{p}.files must be a non-empty list of {{path, sha256}}")
                    else:
                        for j, f in enumerate(files):
                            if not isinstance(f, Mapping):
                                problems.append(f"{p}.files[{j}] must be a mapping")
                                continue
                            _check_text(f.get("path"), f"{p}.files[{j}].path", problems)
                            sha = f.get("sha256")
                            if not isinstance(sha, str) or not _SHA256.match(sha.lower()):
                                problems.append(f"{p}.files[{j}].sha256 must be 64 hex characters")

    model = facts.get("model")
    if model is not None:
        if not isinstance(model, Mapping):
            problems.append("facts.model must be a mapping")
        else:
            for key in _REQUIRED_MODEL:
                _check_text(model.get(key), f"facts.model.{key}", problems)
            for key in ("library", "explainer", "trained_on"):
                if key in model and model[key] is not None:
                    _check_text(model[key], f"facts.model.{key}", problems)

    outcomes = facts.get("outcomes")
    if outcomes is not None:
        if not isinstance(outcomes, list) or not outcomes:
            problems.append("facts.outcomes must be a non-empty list")
        else:
            for i, out in enumerate(outcomes):
                if not isinstance(out, Mapping):
                    problems.append(f"facts.outcomes[{i}] must be a mapping")
                    continue
                p = f"facts.outcomes[{out.get('outcome', i)}]"
                for key in _REQUIRED_OUTCOME:
                    if key not in out or out[key] is None:
                        problems.append(f"{p}.{key} is missing")
                for key in ("outcome", "validation"):
                    if out.get(key) is not None:
                        _check_text(out[key], f"{p}.{key}", problems)
                if out.get("n_areas") is not None:
                    _check_number(out["n_areas"], f"{p}.n_areas", problems, integer=True)
                if out.get("metrics") is not None:
                    _check_metrics(out["metrics"], f"{p}.metrics", problems)
                baselines = out.get("baselines")
                if baselines is not None:
                    if not isinstance(baselines, Mapping) or not baselines:
                        problems.append(f"{p}.baselines must name at least one baseline with metrics")
                    else:
                        for name, metrics in baselines.items():
                            _check_metrics(metrics, f"{p}.baselines.{name}", problems)

    features = facts.get("features")
    if features is not None:
        if not isinstance(features, list) or not features:
            problems.append("facts.features must be a non-empty list")
        else:
            for feat in features:
                _check_text(feat, "facts.features[]", problems)
    opt_in = facts.get("sensitive_opt_in")
    if opt_in is not None:
        if not isinstance(opt_in, list):
            problems.append("facts.sensitive_opt_in must be a list ([] when none)")
        else:
            for item in opt_in:
                _check_text(item, "facts.sensitive_opt_in[]", problems)

    supp = facts.get("suppression")
    if supp is not None:
        if not isinstance(supp, Mapping):
            problems.append("facts.suppression must be a mapping")
        else:
            for key in _REQUIRED_SUPPRESSION:
                if key not in supp or supp[key] is None:
                    problems.append(f"facts.suppression.{key} is missing")
                else:
                    _check_number(supp[key], f"facts.suppression.{key}", problems, integer=True)
            for key in ("n_suppressed_respondents", "n_suppressed_by_publisher"):
                if supp.get(key) is not None:
                    _check_number(supp[key], f"facts.suppression.{key}", problems, integer=True)

    if facts.get("gemeente_name") is not None:
        _check_text(facts["gemeente_name"], "facts.gemeente_name", problems)
    for i, src in enumerate(facts.get("sources") or []):
        role = src.get("role") if isinstance(src, Mapping) else None
        if role is not None and role not in ROLES:
            problems.append(f"facts.sources[{i}].role must be one of {ROLES}, got {role!r}")
    context = facts.get("context_sources")
    if context is not None and not isinstance(context, list):
        problems.append("facts.context_sources must be a list")

    if problems:
        raise MissingFactError(problems)


ROLES = ("uitkomst", "kenmerken")


def _join_nl(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " en " + items[-1]


def _describe_sources(sources: list[Mapping[str, Any]]) -> str | None:
    parts = []
    for s in sources:
        years = sorted(int(y) for y in s["years"])
        span = str(years[0]) if len(years) == 1 else f"{years[0]}-{years[-1]}"
        tables = ", ".join(s.get("cbs_table_ids") or [])
        parts.append(f"{s['title']} ({s['publisher']}{'; ' + tables if tables else ''}; {span})")
    return _join_nl(parts) if parts else None


def template_values(facts: Mapping[str, Any]) -> dict[str, str | None]:
    """What the config's placeholders stand for in this run (None: the run does not know it)."""
    sources = list(facts.get("sources") or [])
    return {
        "gemeente_naam": facts.get("gemeente_name"),
        "gemeente_code": facts.get("gemeente"),
        "kenmerkbronnen": _describe_sources([s for s in sources if s.get("role", "kenmerken") == "kenmerken"]),
        "uitkomstbron": _describe_sources([s for s in sources if s.get("role") == "uitkomst"]),
    }


_TEMPLATE_FIELD = re.compile(r"\{([a-z_]+)\}")


def fill_template(value: Any, values: Mapping[str, str | None], where: str) -> Any:
    """Replace ``{name}`` placeholders in config text (recursively in lists/dicts) with ``values``.

    An unknown placeholder is a config error; a known one the run cannot fill is a missing fact."""
    if isinstance(value, str):
        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name not in values:
                raise RegisterConfigError(
                    f"register config field {where!r} uses unknown placeholder {{{name}}}; "
                    f"known: {', '.join('{' + k + '}' for k in values)}"
                )
            if values[name] is None and name == "gemeente_naam":
                raise UnknownGemeenteError(values.get("gemeente_code"), where)
            if values[name] is None:
                raise MissingFactError([f"facts needed for {{{name}}} in config field {where!r} are missing"])
            return str(values[name])

        return _TEMPLATE_FIELD.sub(replace, value)
    if isinstance(value, list):
        return [fill_template(v, values, where) for v in value]
    if isinstance(value, dict):
        return {k: fill_template(v, values, f"{where}.{k}") for k, v in value.items()}
    return value


# --------------------------------------------------------------------------------------------------
# Config (static municipal text)
# --------------------------------------------------------------------------------------------------

REQUIRED_CONFIG = (
    "naam", "korte_omschrijving", "organisatie", "thema", "status", "doel_en_impact", "afwegingen",
    "menselijke_tussenkomst", "risicobeheer", "wettelijke_basis", "leverancier",
    "publicatiecategorie", "contact",
)
OPTIONAL_CONFIG = (
    "begindatum", "links_wettelijke_basis", "impacttoetsen", "gegevens_toelichting",
    "technische_werking_toelichting", "publicatiecategorie_toelichting", "links",
    "concept_toelichting",
)
TO_FILL = "nog in te vullen door de gemeente (concept)"


def load_register_config(path: str | Path | None = None) -> dict[str, Any]:
    """The municipality's static register text (default: the draft, `{gemeente_naam}` etc. filled per run)."""
    p = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise RegisterConfigError(f"{p}: expected a mapping at the top level")
    return data


def _empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    if isinstance(value, (list, dict)):
        return len(value) == 0 or all(_empty(v) for v in (value.values() if isinstance(value, dict) else value))
    return False


def _config_value(config: Mapping[str, Any], key: str, concept: bool) -> Any:
    value = config.get(key)
    if isinstance(value, dict):
        return {k: (TO_FILL if concept and _empty(v) else v) for k, v in value.items()}
    if _empty(value):
        return TO_FILL if concept else None
    return value.strip() if isinstance(value, str) else value


def _validate_config(config: Mapping[str, Any]) -> bool:
    if not isinstance(config, Mapping):
        raise RegisterConfigError(f"config must be a mapping, got {type(config).__name__}")
    concept = bool(config.get("concept", False))
    missing = [k for k in REQUIRED_CONFIG if k not in config]
    if missing:
        raise RegisterConfigError(f"register config lacks required field(s): {missing}")
    if not concept:
        empty = [k for k in REQUIRED_CONFIG if _empty(config.get(k))]
        if isinstance(config.get("contact"), dict) and any(_empty(v) for v in config["contact"].values()):
            empty.append("contact.*")
        if empty:
            raise RegisterConfigError(
                f"register config has empty field(s) {empty} but is not marked concept: true"
            )
    return concept


# --------------------------------------------------------------------------------------------------
# Register entry
# --------------------------------------------------------------------------------------------------


def _fmt_number(value: Any) -> str:
    """A number in the (English) model card: decimal point, 3 decimals."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ") if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1000:
            return str(int(value))
        return f"{value:.3f}"
    return str(value)


# --------------------------------------------------------------------------------------------------
# Dutch text of the register entry: numbers, outcome names, model texts, features
# --------------------------------------------------------------------------------------------------


def _nl(value: Any, decimals: int = 3, *, sign: bool = False) -> str:
    """A number in the Dutch entry: wijkbeeld's ``nl_number`` (decimal comma, thousands dot), with the
    ASCII minus the rest of the entry uses; ``-`` when there is no number."""
    return nl_number(value, decimals, sign=sign, missing="-").replace("\u2212", "-")


def _nl_value(value: Any) -> str:
    """Any value of the Dutch entry as text: counts with a thousands dot, fractions with a comma."""
    if isinstance(value, bool):
        return "ja" if value else "nee"
    if isinstance(value, int):
        return _nl(value, 0)
    if isinstance(value, float):
        return _nl(value, 0 if value.is_integer() and abs(value) >= 1000 else 3)
    return str(value)


# The Dutch outcome names are wijkbeeld's (what the municipality's pages say).
OUTCOME_LABELS_NL = {
    "lbm": OUTCOMES_NL["lbm"],
    **{d: f"Leefbaarometer-dimensie {OUTCOMES_NL[d][0].lower()}{OUTCOMES_NL[d][1:]}" for d in DIMENSIONS},
}


def outcome_name_nl(outcome: str) -> str:
    """``fys`` -> 'Fysieke omgeving' (the name in the entry's tables); an unknown code stays as it is."""
    return OUTCOMES_NL.get(outcome, outcome)


BASELINES_NL = {"ridge": "lineair (ridge)", "linear": "lineair", "mean": "gemiddelde"}

# The model texts run_facts states in English (the model card's language), as the entry says them.
MODEL_TEXT_NL = {
    "LightGBM gradient-boosted regression trees, one model per outcome":
        "LightGBM: een regressiemodel van beslisbomen (gradient boosting), één model per uitkomst",
    "TreeSHAP via LightGBM pred_contrib (checked equal to shap.TreeExplainer)":
        "TreeSHAP-waarden uit LightGBM (pred_contrib), gecontroleerd: gelijk aan die van shap.TreeExplainer",
    "all Dutch wijken with a Leefbaarometer score, outcome years with features at most 4 years older":
        "alle wijken van Nederland met een Leefbaarometer-score, in de uitkomstjaren waarvoor cijfers van "
        "hoogstens 4 jaar eerder bestaan",
}


def model_text_nl(text: Any) -> Any:
    """The Dutch wording of a model fact; a text without a known translation stays as it is."""
    return MODEL_TEXT_NL.get(text, text) if isinstance(text, str) else text


def model_versions_nl(version: str) -> str:
    """``fys=02ab, lbm=1a89`` -> 'Fysieke omgeving: 02ab; Leefbaarometer totaalscore: 1a89'."""
    pairs = [part.strip().split("=", 1) for part in version.split(",")]
    if not all(len(p) == 2 and p[0].strip() and p[1].strip() for p in pairs):
        return version
    return "; ".join(f"{outcome_name_nl(k.strip())}: {v.strip()}" for k, v in pairs)


_POPULATION_PART = re.compile(r"^(?P<source>[a-z_]+) (?P<year>\d{4})(?: \((?P<table>[^)]*)\))?: (?P<n>[\d,]+) areas$")


def population_source_nl(text: str, titles: Mapping[str, str]) -> str:
    """publish's 'cbs_kwb 2024 (85984NED): 2,478 areas' in Dutch, with the source's title for its code:
    'Kerncijfers wijken en buurten 2024 (CBS-tabel 85984NED): 2.478 gebieden'."""
    if text.startswith("none:"):
        return "geen: voor de gepubliceerde gebieden is geen inwonertal bekend"
    parts = []
    for part in text.split("; "):
        m = _POPULATION_PART.match(part.strip())
        if not m:
            return text
        table = f" (CBS-tabel {m['table']})" if m["table"] else ""
        parts.append(f"{titles.get(m['source'], m['source'])} {m['year']}{table}: "
                     f"{_nl(int(m['n'].replace(',', '')), 0)} gebieden")
    return "; ".join(parts)


# The kind of a model feature, by the prefix of its column (model_sources.CONTEXT_PREFIXES).
FEATURE_KINDS_NL = {
    "": "cijfer van de wijk zelf",
    "gm": "cijfer van de hele gemeente",
    "bu_max": "hoogste buurtwaarde in de wijk",
    "bu_min": "laagste buurtwaarde in de wijk",
    "bu_sd": "spreiding tussen de buurten in de wijk",
    "bu_mean": "gemiddelde van de buurten in de wijk",
    "nb_mean": "gemiddelde van de aangrenzende wijken",
}
STRUCTURAL_NL = {"n_buurten": "aantal buurten in de wijk", "n_neighbours": "aantal aangrenzende wijken"}
FEATURE_LIST_WHERE_NL = (
    "de volledige lijst (met codes) staat in de modelkaart en in de JSON-versie van deze registratie; "
    "de omschrijving per kenmerk in de tabel marts.feature_catalog"
)


def _sort_key_nl(text: str) -> str:
    """Alphabetical as a reader expects: accents and punctuation ignored ('één' under e, '(heel) veel' under h)."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9 ]", "", plain.lower())


def _feature_parts(feature: str) -> tuple[str, str, str | None]:
    """``bu_max__pct_obese__65plus`` -> ('bu_max', 'pct_obese', '65plus')."""
    kind = next((p for p in CONTEXT_PREFIXES if feature.startswith(p + "__")), "")
    parts = base_feature(feature).split("__")
    return kind, parts[0], (parts[1] if len(parts) > 1 else None)


def feature_summary_nl(features: list[str], sources: list[Mapping[str, Any]]) -> dict[str, Any]:
    """A readable Dutch summary of the model's features: how many per source and per kind, the
    subjects (wijkbeeld's Dutch labels) and age groups, and where the full list is."""
    source_of: dict[str, str] = {}
    for s in sources:
        for f in s.get("features") or []:
            source_of.setdefault(f, s["title"])
    per_source: dict[str, int] = {}
    per_kind: dict[str, int] = {}
    subjects: list[str] = []
    groups: list[str] = []
    for f in features:
        kind, concept, group = _feature_parts(f)
        if concept in STRUCTURAL:
            origin, subject = "afgeleid uit de gebiedsindeling", STRUCTURAL_NL.get(concept, concept)
        else:
            origin, subject = source_of.get(f, "bron niet vastgelegd"), feature_label_nl(concept)
        per_source[origin] = per_source.get(origin, 0) + 1
        kind_nl = subject if concept in STRUCTURAL and not kind else FEATURE_KINDS_NL.get(kind, kind)
        per_kind[kind_nl] = per_kind.get(kind_nl, 0) + 1
        if concept not in STRUCTURAL and subject not in subjects:
            subjects.append(subject)
        if group and AGE_GROUPS_NL.get(group, group) not in groups:
            groups.append(AGE_GROUPS_NL.get(group, group))
    order = list(FEATURE_KINDS_NL.values())
    return {
        "aantal": len(features),
        "per_bron": per_source,
        "per_soort": dict(sorted(per_kind.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))),
        "onderwerpen": sorted(subjects, key=_sort_key_nl),
        **({"leeftijdsgroepen": groups} if groups else {}),
        "volledige_lijst": FEATURE_LIST_WHERE_NL,
    }


VERDICT_NL = {"published": "gepubliceerd", "withheld": "achtergehouden", "not judged": "niet beoordeeld"}
TEMPORAL_METRIC = "r2_temporal"
TEMPORAL_METRIC_NL = "R² nieuw jaar"


def _pick(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    return {k: float(metrics[k]) for k in ("r2", "mae", "rmse") if metrics and metrics.get(k) is not None}


def outcome_facts(outcome: str, label: str, metrics: Mapping[str, Any], n_rows: int,
                  gate: Mapping[str, Any] | None) -> dict[str, Any]:
    """An :class:`OutcomeFact` from a model run's stored metrics and its gate-3 verdict.

    Every row carries its OWN figures: grouped-CV R²/MAE/RMSE of LightGBM and of each baseline, and
    ``r2_temporal`` = R² of the model (or that baseline) trained on the earlier outcome years of the
    gemeenten outside one grouped fold and tested on the latest year in that fold's gemeenten (new year
    and unseen gemeenten: the honest temporal figure; the all-wijken variant repeats each wijk's own
    earlier features and is not shown). ``gate``: the row of ``ml.model_gate`` (verdict, reason,
    margin over ridge with its interval), None when gate 3 has not judged this model.
    """
    cv = metrics["grouped_cv"]
    temporal = metrics.get("temporal") or {}
    unseen = temporal.get("unseen_gemeenten") or {}

    def figures(name: str) -> dict[str, float]:
        out = _pick(cv.get(name))
        if (unseen.get(name) or {}).get("r2") is not None:
            out[TEMPORAL_METRIC] = float(unseen[name]["r2"])
        return out

    validation = "5-fold cross-validation grouped by gemeente (no gemeente in both train and test)"
    validation_nl = "5-voudige kruisvalidatie, gegroepeerd per gemeente (geen gemeente in zowel training als test)"
    if unseen:
        test_year = temporal.get("test_year")
        validation += (f"; {TEMPORAL_METRIC}: trained on years before {test_year}, tested on {test_year} in "
                       f"gemeenten not trained on (n={unseen.get('n_test')})")
        validation_nl += (f"; {TEMPORAL_METRIC_NL}: getraind op de jaren vóór {test_year}, getest op {test_year} "
                          f"in gemeenten die niet in de training zaten (n = {_nl(unseen.get('n_test'), 0)} wijken)")
    verdict = (gate or {}).get("verdict")
    fact: dict[str, Any] = {
        "outcome": outcome,
        "description": label,
        "description_nl": OUTCOME_LABELS_NL.get(outcome, label),
        "validation": validation,
        "validation_nl": validation_nl,
        "n_areas": int(n_rows),
        "metrics": figures("lightgbm"),
        "baselines": {name: figures(name) for name in ("ridge", "mean") if name in cv},
        "verdict": verdict or "not judged",
    }
    if gate:
        fact["gate"] = {k: gate.get(k) for k in ("verdict", "reason", "margin", "lower", "upper", "level", "method", "rule")}
    chosen = metrics.get("model_selection") or {}
    from wijk_assets.lib.ml.selection_estimate import corrected_figures

    corrected = corrected_figures(chosen)  # a model trained before BBC-CV: its nested figures
    if corrected.get("r2") is not None:
        reference = chosen.get("reference") or {}
        fact["model_selection"] = {
            "chosen": (chosen.get("chosen") or {}).get("config"),
            "feature_set": (chosen.get("chosen") or {}).get("feature_set"),
            "training_rows": (chosen.get("chosen") or {}).get("training_rows"),
            "n_rows_scored": corrected.get("n_rows"),
            "corrected": {k: corrected.get(k) for k in ("r2", "ridge_r2", "margin_r2", "margin_lower", "margin_upper",
                                                        "level", "method")},
            "reference": {k: reference.get(k) for k in ("r2", "ridge_r2", "margin_r2", "margin_lower", "margin_upper", "level")},
            "chosen_plain_cv_r2": (chosen.get("chosen_plain_cv") or {}).get("r2"),
            "candidates": [{k: c.get(k) for k in ("config", "n_features", "n_train_rows", "r2_exact_rows",
                                                 "chosen_share", "chosen")}
                           for c in chosen.get("candidates") or []],
            "method": chosen.get("method", ""),
        }
    return fact


def _gate_reason_nl(o: Mapping[str, Any]) -> str:
    """Dutch explanation of an outcome's gate-3 verdict (the stored reason is English)."""
    gate = o.get("gate") or {}
    if not gate:
        return "kwaliteitspoort 3 heeft dit model niet beoordeeld; het wordt niet gepubliceerd"
    level = gate.get("level") or 0.9
    margin = (f"marge {_nl(gate['margin'], 4, sign=True)} R² boven het lineaire basismodel (ridge), "
              f"{level:.0%}-interval {_nl(gate['lower'], 4, sign=True)} tot {_nl(gate['upper'], 4, sign=True)}"
              ) if gate.get("margin") is not None else ""
    if gate.get("verdict") == "published":
        return f"aangetoond beter dan het lineaire basismodel: {margin}"
    parts = []
    if gate.get("lower") is None or not gate["lower"] > 0:
        parts.append(f"niet aangetoond dat het model beter voorspelt dan het lineaire basismodel: {margin}")
    if "additivity" in (gate.get("reason") or "") or "gain" in (gate.get("reason") or ""):
        parts.append("een andere voorwaarde van de kwaliteitspoort is niet gehaald (zie de modelkaart)")
    return "; ".join(parts) or "achtergehouden door kwaliteitspoort 3 (zie de modelkaart)"


FEATURE_SET_NL = {"all": "alle geselecteerde kenmerken", "own_health": "alleen de eigen gezondheidscijfers van de wijk"}
CORRECTION_NL = {
    "bbc": ("met bootstrap-gecorrigeerde kruisvalidatie: 2.000 keer een steekproef van gemeenten, het beste model "
            "gekozen op de getrokken gemeenten en beoordeeld op de andere"),
    "nested": ("met geneste kruisvalidatie: de keuze is telkens gemaakt zonder de gemeenten waarop het model daarna "
               "is beoordeeld"),
}
CORRECTION_SHORT_NL = {"bbc": "bootstrap over gemeenten", "nested": "geneste kruisvalidatie"}
TRAINING_ROWS_NL = {"all_matches": "alle gekoppelde wijk-jaren", "exact_only": "alleen exact gekoppelde wijk-jaren"}


def _selection_nl(sel: Mapping[str, Any]) -> dict:
    """Dutch summary of the model choice (grouped cross-validation, figures corrected for the choice) for the
    register entry."""
    corrected = sel.get("corrected") or {}

    def r2(value: Any) -> str | None:
        return _nl(value, 3) if isinstance(value, (int, float)) else None

    def margin(value: Any) -> str | None:
        return _nl(value, 4, sign=True) if isinstance(value, (int, float)) else None

    return {
        "werkwijze": ("gekozen met kruisvalidatie, gegroepeerd per gemeente: welke kenmerken, welke "
                      "trainingsrijen en welke instellingen het model gebruikt, is door de gegevens bepaald"),
        "correctie_voor_de_keuze": (f"de R² is gecorrigeerd voor die keuze {CORRECTION_NL[corrected['method']]}"
                                    if corrected.get("method") in CORRECTION_NL else corrected.get("method")),
        # per outcome: outcomes can differ (a model whose model step has not run since a re-selection, e.g.
        # after `tune --nested` that kept the choice, still carries the figures of the earlier selection)
        "correctiemethode": CORRECTION_SHORT_NL.get(corrected.get("method"), corrected.get("method")),
        "kenmerken": FEATURE_SET_NL.get(sel.get("feature_set"), sel.get("feature_set")),
        "trainingsrijen": TRAINING_ROWS_NL.get(sel.get("training_rows"), sel.get("training_rows")),
        "r2_gecorrigeerd_voor_de_keuze": r2(corrected.get("r2")),
        "r2_lineair_basismodel": r2(corrected.get("ridge_r2")),
        "marge_boven_basismodel": margin(corrected.get("margin_r2")),
        "interval_marge": (f"{margin(corrected.get('margin_lower'))} tot {margin(corrected.get('margin_upper'))}"
                           if corrected.get("margin_lower") is not None else None),
    }


def _named_files(facts: Mapping[str, Any]) -> tuple[list[dict], list[dict]]:
    """The files the entry names, each once, and the loaded files it gives by sha256 only.

    Named: every file of a source that feeds the model (the models are trained on national data, so
    these are the provenance of the model), then every file of a describing source that holds rows of
    the gemeente in focus (``covers_gemeente``), which describes its present. Not named: describing
    files without rows of this gemeente, or not known to have them - their names may name another
    gemeente."""
    named: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for role, sources in (("model", facts["sources"]), ("beschrijvend", facts.get("context_sources") or [])):
        for s in sources:
            for f in s["files"]:
                key = (f["path"], f["sha256"].lower())
                if key in seen or (role == "beschrijvend" and f.get("covers_gemeente") is not True):
                    continue
                seen.add(key)
                named.append({"pad": f["path"], "sha256": f["sha256"].lower(), "bron": s["name"],
                              "titel": s["title"], "gebruik": role})
    unnamed: list[dict] = []
    for s in facts.get("context_sources") or []:
        for f in s["files"]:
            key = (f["path"], f["sha256"].lower())
            if key in seen:
                continue
            seen.add(key)
            unnamed.append({"bron": s["name"], "titel": s["title"], "sha256": f["sha256"].lower(),
                            "bevat_deze_gemeente": f.get("covers_gemeente")})
    return named, unnamed


def build_register_entry(facts: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> dict:
    """An Algoritmeregister entry (dict with the register's Dutch field names).

    ``config``: static municipal text (default: :func:`load_register_config`). ``facts``: see
    :class:`RegisterFacts`; validated first (:class:`MissingFactError` on anything missing).
    """
    validate_facts(facts)
    if config is None:
        config = load_register_config()
    concept = _validate_config(config)
    values = template_values(facts)
    c = lambda key: fill_template(_config_value(config, key, concept), values, key)  # noqa: E731

    supp = facts["suppression"]

    def source_entry(s: Mapping[str, Any], describing: bool = False) -> dict:
        # a describing source's file is named only where it holds rows of this gemeente (_named_files)
        files = [f for f in s["files"] if not describing or f.get("covers_gemeente") is True]
        return {
            "bron": s["name"],
            "rol": s.get("role", "kenmerken"),
            "titel": s["title"],
            "uitgever": s["publisher"],
            "licentie": s["licence"],
            "cbs_tabellen": list(s["cbs_table_ids"]),
            "jaren": sorted(int(y) for y in s["years"]),
            "niveau": s.get("level"),
            **({"kenmerken": list(s["features"])} if s.get("features") else {}),
            "bestanden": [{"pad": f["path"], "sha256": f["sha256"].lower()} for f in files],
        }

    sources = [source_entry(s) for s in facts["sources"]]
    context_sources = [source_entry(s, describing=True) for s in facts.get("context_sources") or []]
    named_files, other_files = _named_files(facts)
    titles = {s["name"]: s["title"] for s in [*facts["sources"], *(facts.get("context_sources") or [])]}
    validation = [
        {
            "uitkomst": o["outcome"],
            "naam": outcome_name_nl(o["outcome"]),
            "omschrijving": o.get("description_nl") or o.get("description"),
            "validatiemethode": o.get("validation_nl") or o["validation"],
            "aantal_gebieden": int(o["n_areas"]),
            "model": dict(o["metrics"]),
            "basismodellen": {k: dict(v) for k, v in o["baselines"].items()},
            **(
                {"kwaliteitspoort": {
                    "oordeel": VERDICT_NL.get(o["verdict"], o["verdict"]),
                    "toelichting": _gate_reason_nl(o),
                    **({"marge_r2_boven_ridge": o["gate"]["margin"],
                        "interval": [o["gate"]["lower"], o["gate"]["upper"]],
                        "betrouwbaarheid": o["gate"]["level"]} if o.get("gate") else {}),
                }}
                if "verdict" in o else {}
            ),
            **({"modelkeuze": _selection_nl(o["model_selection"])} if o.get("model_selection") else {}),
        }
        for o in facts["outcomes"]
    ]
    withheld = [o["outcome"] for o in facts["outcomes"] if "verdict" in o and o["verdict"] != "published"]
    model = facts["model"]
    entry: dict[str, Any] = {
        "naam": c("naam"),
        "korte_omschrijving": c("korte_omschrijving"),
        "organisatie": c("organisatie"),
        "thema": c("thema"),
        "status": c("status"),
        "begindatum": c("begindatum"),
        "doel_en_impact": c("doel_en_impact"),
        "afwegingen": c("afwegingen"),
        "menselijke_tussenkomst": c("menselijke_tussenkomst"),
        "risicobeheer": {
            "toelichting": c("risicobeheer"),
            "maatregelen_in_deze_run": {
                # the counts below are national: say so, they read as the gemeente's own otherwise
                "toelichting_gebieden": ("gebieden: alle wijken in de gepubliceerde tabellen (publish.*), dus van "
                                         "elke gemeente in de gegevens (landelijk: heel Nederland), niet alleen die "
                                         "van de eigen gemeente; inwonertal onbekend: wijken zonder inwonertal in "
                                         "de bron voor het inwonertal"),
                "drempel_inwoners": int(supp["min_inhabitants"]),
                "drempel_respondenten": int(supp["min_respondents"]),
                "gebieden_totaal": int(supp["n_areas"]),
                "gebieden_onderdrukt_te_weinig_inwoners": int(supp["n_suppressed_population"]),
                "gebieden_onderdrukt_signaal_bron": int(supp["n_suppressed_signal"]),
                "gebieden_inwonertal_bekend": int(supp["n_areas"]) - int(supp["n_population_unknown"]),
                "gebieden_inwonertal_onbekend": int(supp["n_population_unknown"]),
                **({"bron_inwonertal": population_source_nl(supp["population_source"], titles)}
                   if supp.get("population_source") else {}),
                **(
                    {"enquetecellen_onderdrukt_te_weinig_respondenten": int(supp["n_suppressed_respondents"])}
                    if supp.get("n_suppressed_respondents") is not None else {}
                ),
                **(
                    {"cellen_onderdrukt_door_uitgever": int(supp["n_suppressed_by_publisher"])}
                    if supp.get("n_suppressed_by_publisher") is not None else {}
                ),
                "gevoelige_indicatoren_opt_in": list(facts["sensitive_opt_in"]),
            },
        },
        "wettelijke_basis": c("wettelijke_basis"),
        "links_wettelijke_basis": c("links_wettelijke_basis"),
        "impacttoetsen": c("impacttoetsen"),
        "gegevens": {
            "toelichting": c("gegevens_toelichting"),
            "gemeente": facts["gemeente"],
            **({"gemeente_naam": facts["gemeente_name"]} if facts.get("gemeente_name") else {}),
            "gebiedsniveau": facts["area_level"],
            "gebiedsindeling_jaar": facts.get("classification_year"),
            "bronnen": sources,
            "alleen_beschrijvend": context_sources,
            "bestanden": named_files,
            "overige_geladen_bestanden": other_files,
        },
        "technische_werking": {
            "toelichting": c("technische_werking_toelichting"),
            "modeltype": model_text_nl(model["type"]),
            "modelversie": model_versions_nl(model["version"]),
            "bibliotheek": model.get("library"),
            "uitleg": model_text_nl(model.get("explainer")),
            "getraind_op": model_text_nl(model.get("trained_on")),
            "kenmerken": list(facts["features"]),
            "aantal_kenmerken": len(facts["features"]),
            "kenmerken_samenvatting": feature_summary_nl(list(facts["features"]), facts["sources"]),
            "gevoelige_indicatoren_opt_in": list(facts["sensitive_opt_in"]),
            "validatie": validation,
            **(
                {"achtergehouden_uitkomsten": [
                    f"{o['naam']}: {o['kwaliteitspoort']['toelichting']}" for o in validation
                    if o.get("kwaliteitspoort") and o["uitkomst"] in withheld
                ] or ["geen"]}
                if any("verdict" in o for o in facts["outcomes"]) else {}
            ),
        },
        "leverancier": c("leverancier"),
        "publicatiecategorie": c("publicatiecategorie"),
        "publicatiecategorie_toelichting": c("publicatiecategorie_toelichting"),
        "links": c("links"),
        "contact": c("contact"),
        "verantwoording": {
            "run_id": facts["run_id"],
            "codeversie": facts["code_version"],
            "gegenereerd_op": facts["generated_at"],
        },
        "concept": concept,
    }
    if concept:
        entry["concept_toelichting"] = c("concept_toelichting")
    return entry


def register_json(entry: Mapping[str, Any]) -> str:
    """The entry as pretty-printed UTF-8 JSON (stable key order)."""
    return json.dumps(entry, indent=2, ensure_ascii=False, default=str) + "\n"


_TITLES = {
    "korte_omschrijving": "Korte omschrijving",
    "organisatie": "Organisatie",
    "thema": "Thema",
    "status": "Status",
    "begindatum": "Begindatum",
    "doel_en_impact": "Doel en impact",
    "afwegingen": "Afwegingen",
    "menselijke_tussenkomst": "Menselijke tussenkomst",
    "risicobeheer": "Risicobeheer",
    "wettelijke_basis": "Wettelijke basis",
    "links_wettelijke_basis": "Links naar wettelijke basis",
    "impacttoetsen": "Impacttoetsen",
    "gegevens": "Gegevens",
    "technische_werking": "Technische werking",
    "leverancier": "Leverancier",
    "publicatiecategorie": "Publicatiecategorie",
    "publicatiecategorie_toelichting": "Toelichting publicatiecategorie",
    "links": "Links",
    "contact": "Contact",
    "verantwoording": "Verantwoording (deze run)",
}


def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_value(value: Any, indent: int = 0) -> list[str]:
    pad = "  " * indent
    if isinstance(value, Mapping):
        lines: list[str] = []
        for k, v in value.items():
            if v is None:
                continue
            nested = isinstance(v, Mapping) or (
                isinstance(v, list) and any(isinstance(x, (Mapping, list)) for x in v)
            )
            if nested and v:
                lines.append(f"{pad}- **{k.replace('_', ' ')}**:")
                lines.extend(_md_value(v, indent + 1))
            elif isinstance(v, list):
                lines.append(f"{pad}- **{k.replace('_', ' ')}**: {', '.join(_nl_value(x) for x in v) or '(geen)'}")
            else:
                lines.append(f"{pad}- **{k.replace('_', ' ')}**: {_nl_value(v)}")
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, Mapping):
                sub = _md_value(item, indent + 1)
                if sub:
                    lines.append(f"{pad}- " + sub[0].strip()[2:])
                    lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {_nl_value(item)}")
        return lines
    return [f"{pad}{value}"]


def _metrics_table(outcomes: list[Mapping[str, Any]], *, model_key: str, baselines_key: str,
                   outcome_key: str, validation_key: str, n_key: str, lang: str = "en") -> list[str]:
    """The model card's metrics table (English, decimal points); the entry's is :func:`_validation_table_nl`."""
    names = _metric_names(outcomes, model_key, baselines_key)
    shown = ["r2 temporal" if m == TEMPORAL_METRIC else m for m in names]
    head = ["outcome", "model / baseline", *shown, "validation", "n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for o in outcomes:
        rows = [("model: LightGBM", o[model_key])] + [(f"baseline: {k}", v) for k, v in o[baselines_key].items()]
        for label, metrics in rows:
            cells = [_md_escape(o[outcome_key]), label]
            cells += [_fmt_number(metrics[m]) if m in metrics else "" for m in names]
            cells += [_md_escape(o[validation_key]), _fmt_number(int(o[n_key]))]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _metric_names(outcomes: list[Mapping[str, Any]], model_key: str, baselines_key: str) -> list[str]:
    names: list[str] = []
    for o in outcomes:
        for m in list(o[model_key]) + [k for b in o[baselines_key].values() for k in b]:
            if m not in names:
                names.append(m)
    order = ["r2", "rmse", "mae", "spearman"]
    return sorted(names, key=lambda m: (order.index(m) if m in order else len(order), m))


METRICS_NL = {"r2": "R²", "rmse": "RMSE", "mae": "MAE", "spearman": "Spearman-correlatie",
              TEMPORAL_METRIC: TEMPORAL_METRIC_NL}
METRIC_EXPLANATIONS_NL = {
    "r2": "R²: het deel van de verschillen tussen wijken dat het model verklaart (1 = alles, 0 = niet beter "
          "dan steeds het gemiddelde voorspellen, onder 0 = slechter dan dat)",
    "rmse": "RMSE (wortel van de gemiddelde gekwadrateerde fout) en MAE (gemiddelde absolute fout): hoe ver de "
            "voorspelling gemiddeld naast de gemeten score ligt, in punten van de score; lager is beter",
    "spearman": "Spearman-correlatie: hoe goed de volgorde van de voorspellingen die van de metingen volgt",
    TEMPORAL_METRIC: f"{TEMPORAL_METRIC_NL}: R² op een jaar en gemeenten die het model niet heeft gezien "
                     "(zie de validatie hieronder)",
}


def _validation_table_nl(validatie: list[Mapping[str, Any]]) -> list[str]:
    """The entry's validation table: Dutch outcome, model and metric names, decimal commas, and below it
    what the figures mean and how they were validated (once, not on every row)."""
    names = _metric_names(validatie, "model", "basismodellen")
    head = ["uitkomst", "model of basismodel", *(METRICS_NL.get(m, m) for m in names), "n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for o in validatie:
        rows = [("model (LightGBM)", o["model"])] + [
            (f"basismodel: {BASELINES_NL.get(k, k)}", v) for k, v in o["basismodellen"].items()]
        for label, metrics in rows:
            cells = [_md_escape(o.get("naam") or o["uitkomst"]), label]
            cells += [_nl(metrics[m], 3) if m in metrics else "" for m in names]
            cells.append(_nl(int(o["aantal_gebieden"]), 0))
            lines.append("| " + " | ".join(cells) + " |")
    legend = [METRIC_EXPLANATIONS_NL[m] for m in names if m in METRIC_EXPLANATIONS_NL and m != "mae"]
    if "mae" in names and "rmse" not in names:
        legend.append("MAE (gemiddelde absolute fout): hoe ver de voorspelling gemiddeld naast de gemeten score "
                      "ligt; lager is beter")
    baselines = [k for o in validatie for k in o["basismodellen"]]
    if "ridge" in baselines or "linear" in baselines:
        legend.append("basismodel lineair: een lineair regressiemodel op dezelfde kenmerken")
    if "mean" in baselines:
        legend.append("basismodel gemiddelde: voorspelt voor elke wijk het gemiddelde van de trainingswijken")
    legend.append("n: aantal gebieden (wijk-jaren) in de validatie")
    lines += ["", "Toelichting: " + "; ".join(legend) + "."]
    methods = list(dict.fromkeys(o["validatiemethode"] for o in validatie))
    if len(methods) == 1:
        lines += ["", f"Validatie: {methods[0]}."]
    else:
        lines += ["", "Validatie:", ""] + [f"- {o.get('naam') or o['uitkomst']}: {o['validatiemethode']}"
                                            for o in validatie]
    return lines


def _features_md(tw: Mapping[str, Any]) -> list[str]:
    """The features as a readable Dutch summary (the codes are in the JSON and the model card)."""
    summary = tw.get("kenmerken_samenvatting")
    if not summary:
        return [f"- **Kenmerken ({_nl(tw['aantal_kenmerken'], 0)})**: {', '.join(tw['kenmerken'])}"]
    lines = [f"- **Kenmerken**: {_nl(summary['aantal'], 0)}"]
    lines.append("  - per bron: " + "; ".join(f"{k}: {_nl(v, 0)}" for k, v in summary["per_bron"].items()))
    lines.append("  - per soort: " + "; ".join(f"{k}: {_nl(v, 0)}" for k, v in summary["per_soort"].items()))
    lines.append(f"  - onderwerpen ({_nl(len(summary['onderwerpen']), 0)}): " + "; ".join(summary["onderwerpen"]))
    if summary.get("leeftijdsgroepen"):
        lines.append("  - leeftijdsgroepen: " + "; ".join(summary["leeftijdsgroepen"]))
    lines.append(f"  - {summary['volledige_lijst']}")
    return lines


def _files_md(g: Mapping[str, Any]) -> list[str]:
    """The sha256 list: every file that feeds the model once, then the describing files with rows of
    this gemeente; the other loaded files counted per source, not named."""
    gemeente = f"de gemeente {g['gemeente_naam']}" if g.get("gemeente_naam") else f"gemeente {g['gemeente']}"
    model = [f for f in g["bestanden"] if f["gebruik"] == "model"]
    describing = [f for f in g["bestanden"] if f["gebruik"] != "model"]
    lines = ["Bestanden die het model voeden, elk één keer (sha256):", ""]
    lines += [f"- `{f['pad']}` - `{f['sha256']}`" for f in model]
    if describing:
        lines += ["", f"Geladen bestanden met gegevens van {gemeente} die het model niet voeden (sha256):", ""]
        lines += [f"- `{f['pad']}` - `{f['sha256']}`" for f in describing]
    for known in (False, None):
        others = [f for f in g.get("overige_geladen_bestanden") or [] if f.get("bevat_deze_gemeente") is known]
        if not others:
            continue
        count: dict[str, int] = {}
        for f in others:
            count[f["titel"]] = count.get(f["titel"], 0) + 1
        one = len(others) == 1
        it, they = ("het", "bevat") if one else ("ze", "bevatten")
        why = (f"{they} geen gegevens van {gemeente}" if known is False
               else f"de run heeft niet vastgelegd of {it} gegevens van {gemeente} {they}")
        lines += ["", f"Daarnaast {'is' if one else 'zijn'} {_nl(len(others), 0)} geladen "
                  f"{'bestand' if one else 'bestanden'} niet bij naam genoemd: {it} "
                  f"{'voedt' if one else 'voeden'} het model niet en {why}. De sha256 staat in de "
                  "JSON-versie van deze registratie. Per bron:", ""]
        lines += [f"- {t}: {_nl(n, 0)} {'bestand' if n == 1 else 'bestanden'}" for t, n in count.items()]
    return lines


def render_register_markdown(entry: Mapping[str, Any]) -> str:
    """Human-readable Markdown of a :func:`build_register_entry` result."""
    lines: list[str] = []
    lines.append(f"# Algoritmeregister: {entry['naam']}")
    lines.append("")
    if entry.get("concept"):
        lines.append("> **CONCEPT - nog niet vastgesteld door de gemeente.** "
                     + str(entry.get("concept_toelichting") or ""))
        lines.append("")
    for key, title in _TITLES.items():
        if key not in entry or entry[key] is None:
            continue
        value = entry[key]
        lines.append(f"## {title}")
        lines.append("")
        if key == "technische_werking":
            tw = value
            lines.append(str(tw["toelichting"]))
            lines.append("")
            for label, k in (("Modeltype", "modeltype"), ("Modelversie", "modelversie"),
                             ("Bibliotheek", "bibliotheek"), ("Uitleg", "uitleg"),
                             ("Getraind op", "getraind_op")):
                if tw.get(k):
                    lines.append(f"- **{label}**: {tw[k]}")
            lines.extend(_features_md(tw))
            opt = tw["gevoelige_indicatoren_opt_in"]
            lines.append("- **Gevoelige indicatoren (opt-in)**: " + (", ".join(opt) if opt else "geen"))
            lines.append("")
            lines.append("Validatie per uitkomst, met basismodellen:")
            lines.append("")
            lines.extend(_validation_table_nl(tw["validatie"]))
            gated = [o for o in tw["validatie"] if o.get("kwaliteitspoort")]
            if gated:
                lines += ["", "Kwaliteitspoort 3 per uitkomst (alleen gepubliceerde uitkomsten krijgen uitleg "
                          "en verschijnen in de gepubliceerde tabellen):", "",
                          "| uitkomst | oordeel | toelichting |", "|---|---|---|"]
                for o in gated:
                    gate = o["kwaliteitspoort"]
                    lines.append(f"| {_md_escape(o.get('naam') or o['uitkomst'])} | {gate['oordeel']} | "
                                 f"{_md_escape(gate['toelichting'])} |")
                lines += ["", "**Achtergehouden uitkomsten**: " + "; ".join(tw.get("achtergehouden_uitkomsten") or ["geen"])]
            chosen = [o for o in tw["validatie"] if o.get("modelkeuze")]
            if chosen:
                # each correction method in use explained once (models kept from an earlier selection run
                # can carry another method than those selected since; the table names it per outcome)
                methods = [m for m in dict.fromkeys(o["modelkeuze"].get("correctiemethode") for o in chosen) if m]
                explained = [CORRECTION_NL[m] for m in ("nested", "bbc") if CORRECTION_SHORT_NL[m] in methods]
                lines += ["", "Modelkeuze per uitkomst: " + chosen[0]["modelkeuze"]["werkwijze"]
                          + ("; de R² is gecorrigeerd voor die keuze " + "; of ".join(explained) if explained else "")
                          + ".", "",
                          "| uitkomst | kenmerken | trainingsrijen | correctie voor de keuze | R² (gecorrigeerd voor de keuze) "
                          "| R² lineair basismodel | marge | interval |", "|---|---|---|---|---|---|---|---|"]
                for o in chosen:
                    k = o["modelkeuze"]
                    lines.append(f"| {_md_escape(o.get('naam') or o['uitkomst'])} | {k['kenmerken']} | "
                                 f"{k['trainingsrijen']} | {k.get('correctiemethode') or '-'} | "
                                 f"{k['r2_gecorrigeerd_voor_de_keuze'] or '-'} | "
                                 f"{k['r2_lineair_basismodel'] or '-'} | "
                                 f"{k['marge_boven_basismodel'] or '-'} | {k['interval_marge'] or '-'} |")
        elif key == "gegevens":
            g = value
            lines.append(str(g["toelichting"]))
            lines.append("")
            gemeente = f"{g['gemeente_naam']} ({g['gemeente']})" if g.get("gemeente_naam") else g["gemeente"]
            lines.append(f"- **Gemeente**: {gemeente}; **gebiedsniveau**: {g['gebiedsniveau']}"
                         + (f"; **gebiedsindeling**: {g['gebiedsindeling_jaar']}"
                            if g.get("gebiedsindeling_jaar") else ""))
            lines.append("")
            lines.append("Bronnen die het model voeden (als kenmerk of als uitkomst):")
            lines.append("")
            lines.append("| titel | rol | uitgever | CBS-tabel | jaren | licentie |")
            lines.append("|---|---|---|---|---|---|")
            for s in g["bronnen"]:
                lines.append("| " + " | ".join([
                    _md_escape(s["titel"]), _md_escape(s["rol"]), _md_escape(s["uitgever"]),
                    ", ".join(s["cbs_tabellen"]) or "(geen CBS-tabel)",
                    ", ".join(str(y) for y in s["jaren"]), _md_escape(s["licentie"]),
                ]) + " |")
            if g.get("alleen_beschrijvend"):
                lines.append("")
                lines.append("Geladen, maar geen invoer van het model (jaren zonder bijpassend uitkomstjaar - "
                             "een cijfer verklaart nooit een eerder uitkomstjaar - of alleen gebruikt voor namen, "
                             "inwonertal en grenzen, die de huidige situatie beschrijven):")
                lines.append("")
                for s in g["alleen_beschrijvend"]:
                    tables = ", ".join(s["cbs_tabellen"])
                    lines.append(f"- {_md_escape(s['titel'])} ({_md_escape(s['uitgever'])}; "
                                 f"{'CBS-tabel ' + tables if tables else 'geen CBS-tabel'}; "
                                 f"{', '.join(str(y) for y in s['jaren'])})")
            lines.append("")
            lines.extend(_files_md(g))
        elif isinstance(value, (Mapping, list)):
            if isinstance(value, Mapping) and "toelichting" in value:
                lines.append(str(value["toelichting"]))
                lines.append("")
                value = {k: v for k, v in value.items() if k != "toelichting"}
            lines.extend(_md_value(value))
        else:
            lines.append(str(value))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------------------------------
# Model card
# --------------------------------------------------------------------------------------------------


def _selection_section(outcomes: list[Mapping[str, Any]]) -> list[str]:
    """Model card: the nested grouped-CV figures of the published choice and of the reference fit, each
    with its margin over ridge and the interval, and every candidate's plain grouped-CV score."""

    def r2(value):
        return f"{value:.3f}" if isinstance(value, (int, float)) else "-"

    def margin(fig):
        if not isinstance(fig.get("margin_r2"), (int, float)):
            return "-", "-"
        level = fig.get("level") or 0.9
        return (f"{fig['margin_r2']:+.4f}",
                f"{fig['margin_lower']:+.4f} to {fig['margin_upper']:+.4f} ({level:.0%})")

    first = outcomes[0]["model_selection"]
    lines = [
        "",
        "## Model selection: grouped cross-validation, scored with the choice included",
        "",
        "Which features, which training rows and which LightGBM settings each model uses was decided by the "
        "evidence, not by hand: " + (first.get("method") or "grouped CV") + ". The corrected R² scores the "
        "whole procedure, the choice included, on gemeenten the choice did not see (BBC-CV: the mean over "
        "the draws; its interval is the 5th-95th percentile of the draws, each scored on about 37 % of the "
        "gemeenten, so it is wider than an interval for all of them; nested: the outer folds of a nested "
        "grouped CV). The chosen "
        "configuration's plain grouped-CV R² (in the candidates table) is optimistic by the amount the "
        "choice adds. The reference fit "
        "(LightGBM defaults, the wijk's own health-monitor features, exact matches only) is scored on the "
        "same outer folds and rows. Margins are over the ridge baseline on the same rows, with a percentile "
        "bootstrap interval over gemeenten.",
        "",
        "| outcome | chosen | rows scored | method | corrected R² | ridge R² | corrected margin over ridge | interval "
        "| reference fit R² | reference margin over ridge | interval |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        sel = o["model_selection"]
        corrected, reference = sel.get("corrected") or {}, sel.get("reference") or {}
        nm, ni = margin(corrected)
        rm, ri = margin(reference)
        lines.append(f"| {_md_escape(o['outcome'])} | {_md_escape(sel.get('chosen') or '-')} | "
                     f"{sel.get('n_rows_scored') or '-'} | {corrected.get('method') or '-'} | "
                     f"{r2(corrected.get('r2'))} | {r2(corrected.get('ridge_r2'))} | "
                     f"{nm} | {ni} | {r2(reference.get('r2'))} | {rm} | {ri} |")
    lines += [
        "",
        "Candidates (plain grouped-CV R² on the same exact-match rows; `@n`: boosting rounds):",
        "",
        "| outcome | candidate | features | training rows | R² | share of draws (or outer folds) choosing it "
        "| chosen |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        for c in o["model_selection"].get("candidates") or []:
            lines.append(f"| {_md_escape(o['outcome'])} | {_md_escape(c.get('config'))} | {c.get('n_features')} | "
                         f"{c.get('n_train_rows')} | {r2(c.get('r2_exact_rows'))} | "
                         f"{_share(c.get('chosen_share'))} | {'yes' if c.get('chosen') else ''} |")
    return lines


def _share(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, (int, float)) else "-"


def build_model_card(facts: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> str:
    """A model card (Markdown, English) from the run's facts; ``config`` only adds the organisation
    name and the CONCEPT banner. Raises :class:`MissingFactError` on missing facts."""
    validate_facts(facts)
    concept = bool(config.get("concept")) if config else False
    organisation = (config or {}).get("organisatie")
    if organisation:
        organisation = fill_template(organisation, template_values(facts), "organisatie")
    org_line = f"{organisation} ({facts['gemeente']})" if organisation else facts["gemeente"]
    model = facts["model"]
    supp = facts["suppression"]
    outcomes = facts["outcomes"]
    lines: list[str] = []
    lines.append(f"# Model card: wijk liveability model ({', '.join(o['outcome'] for o in outcomes)})")
    lines.append("")
    if concept:
        lines.append("> **DRAFT** - the municipal text accompanying this card has not been reviewed yet.")
        lines.append("")
    lines += [
        "## Model details",
        "",
        f"- **Organisation**: {org_line}, area level: {facts['area_level']}",
        f"- **Model type**: {model['type']}",
        f"- **Model version**: {model['version']}",
    ]
    for label, key in (("Library", "library"), ("Explanations", "explainer"), ("Trained on", "trained_on")):
        if model.get(key):
            lines.append(f"- **{label}**: {model[key]}")
    if model.get("hyperparameters"):
        hp = ", ".join(f"{k}={v}" for k, v in model["hyperparameters"].items())
        lines.append(f"- **Hyperparameters**: {hp}")
    lines += [
        f"- **Code version**: {facts['code_version']}",
        f"- **Run id**: {facts['run_id']}",
        f"- **Generated at**: {facts['generated_at']}",
        "",
        "## Intended use",
        "",
        "- Supporting the *wijkanalyse* conversation between the municipality, wijkteams, partners and "
        "residents: which publicly published indicators go together with the Leefbaarometer score of a "
        "wijk, with uncertainty and compared against simple baselines.",
        "- Exploring explanations (SHAP contributions per feature) as prompts for questions, to be "
        "checked against local knowledge.",
        "",
        "## Out-of-scope uses",
        "",
        "- Ranking or labelling neighbourhoods: no league tables, no judgement labels for places and no "
        "policy labels (which only a council assigns). Where an order is shown it is the 5-95 % range "
        "of the wijk's rank when every wijk's score is drawn from its own calibrated interval, and only "
        "where that range is informative (at most a quarter of all ranks); elsewhere the wijk is 'not "
        "distinguishable'.",
        "- Decisions about individuals or households, or targeting of people; the model only sees "
        "aggregated area figures and says nothing about any resident.",
        "- Causal claims: a feature with a large SHAP contribution is associated with the score in "
        "this model, not shown to cause it; interventions cannot be read off the model.",
        "- Allocation of budgets or enforcement without human deliberation.",
        "",
        "## Data",
        "",
        "The sources that feed the model (features or outcome), with the years the training used:",
        "",
        "| source | role | publisher | CBS table(s) | years | files (sha256, first 12) |",
        "|---|---|---|---|---|---|",
    ]
    for s in facts["sources"]:
        files = "<br>".join(f"`{f['path']}` {f['sha256'][:12]}" for f in s["files"])
        role = {"uitkomst": "outcome", "kenmerken": "features"}[s.get("role", "kenmerken")]
        lines.append("| " + " | ".join([
            _md_escape(f"{s['title']} ({s['name']})"), role, _md_escape(s["publisher"]),
            ", ".join(s["cbs_table_ids"]) or "none", ", ".join(str(y) for y in sorted(s["years"])),
            files,
        ]) + " |")
    if facts.get("context_sources"):
        lines += ["", "Loaded but not a model input (years without a matching outcome year - a figure never "
                  "explains an earlier outcome year - or used only for names, inhabitants and boundaries, which "
                  "describe the present):", ""]
        for s in facts["context_sources"]:
            lines.append(f"- {s['title']} ({s['name']}; {', '.join(s['cbs_table_ids']) or 'no CBS table'}; "
                         f"{', '.join(str(y) for y in sorted(s['years']))})")
    lines += [
        "",
        f"**Features used ({len(facts['features'])})**: " + ", ".join(facts["features"]),
        "",
        "**Sensitive indicators used under opt-in**: "
        + (", ".join(facts["sensitive_opt_in"]) if facts["sensitive_opt_in"] else "none (default)"),
        "",
        "## Metrics",
        "",
    ]
    lines.extend(_metrics_table(outcomes, model_key="metrics", baselines_key="baselines",
                                outcome_key="outcome", validation_key="validation",
                                n_key="n_areas", lang="en"))
    gated = [o for o in outcomes if "verdict" in o]
    if gated:
        lines += [
            "",
            f"`{TEMPORAL_METRIC}`: each model (and each baseline, with its own figure) trained on the outcome "
            "years before the latest one in the gemeenten outside one grouped fold, tested on the latest year "
            "in that fold's gemeenten - a new year and unseen gemeenten.",
            "",
            "## Gate 3: margin over the linear baseline",
            "",
            "| outcome | verdict | margin R² over ridge | interval | reason |",
            "|---|---|---|---|---|",
        ]
        for o in gated:
            gate = o.get("gate") or {}
            interval = (f"{gate['lower']:+.4f} to {gate['upper']:+.4f} ({(gate.get('level') or 0.9):.0%})"
                        if gate.get("lower") is not None else "-")
            margin = f"{gate['margin']:+.4f}" if gate.get("margin") is not None else "-"
            lines.append(f"| {_md_escape(o['outcome'])} | {o['verdict']} | {margin} | {interval} | "
                         f"{_md_escape(gate.get('reason') or ('-' if o['verdict'] == 'published' else 'not judged'))} |")
        selected = [o for o in gated if (o.get("model_selection") or {}).get("corrected", {}).get("r2") is not None]
        if selected:
            lines.extend(_selection_section(selected))
        rule = next((o["gate"].get("rule") for o in gated if o.get("gate", {}).get("rule")), None)
        method = next((o["gate"].get("method") for o in gated if o.get("gate", {}).get("method")), None)
        withheld = [o["outcome"] for o in gated if o["verdict"] != "published"]
        lines += [
            "",
            f"Method: {method or 'paired out-of-fold comparison'}. Rule: {rule or 'see the gate asset'}.",
            "",
            "**Withheld outcomes**: " + (", ".join(withheld) + " - no explanations, not in any published table."
                                         if withheld else "none."),
        ]
    lines += [
        "",
        "A model that does not clearly beat its baselines for an outcome should not be used to "
        "explain that outcome.",
        "",
        "## Privacy",
        "",
        f"- Areas with fewer than {supp['min_inhabitants']} inhabitants are suppressed. Rule 1, real "
        f"inhabitants ({supp['n_areas'] - supp['n_population_unknown']} of {supp['n_areas']} areas"
        + (f", from {supp['population_source']}" if supp.get("population_source") else "")
        + f"): {supp['n_suppressed_population']} areas suppressed. Rule 2, the stand-in where no "
        f"population is known ({supp['n_population_unknown']} areas): the publisher itself suppressed all "
        f"health figures of the area, {supp['n_suppressed_signal']} areas suppressed.",
        f"- Survey cells with fewer than {supp['min_respondents']} respondents are suppressed"
        + (f": {supp['n_suppressed_respondents']} cells." if supp.get("n_suppressed_respondents") is not None else "."),
        "- No personal or respondent-level data is read; inputs that look personal are rejected.",
        "",
        "## Limitations",
        "",
        "- The Leefbaarometer is itself a model: its scores are weighted sums of many indicators, with "
        "weights estimated from statistical associations, and its makers caution that it describes "
        "liveability and does not explain it - the relations are not causal. A model of that score "
        "inherits the caveat.",
        "- Area classification: figures from different years are harmonised to one wijk/buurt "
        "classification"
        + (f" ({facts['classification_year']})" if facts.get("classification_year") else "")
        + "; areas that were split or merged carry back-cast or re-weighted values. A wijk code is "
        "reused across a re-division of its gemeente only where the names show it is the same area; "
        "otherwise the wijk is unmatched (counted in rpt_coverage) and not modelled.",
        "- Uncertainty: each published prediction is the wijk's out-of-fold prediction with a prediction "
        "interval calibrated per match quality and wijk size on out-of-fold residuals of other gemeenten (conformal); "
        "'higher/lower than its indicators predict' is said only outside that interval. The drivers are "
        "the SHAP values of the model of the wijk's own fold, so they add up to the published "
        "prediction; their comparison value is the average over the wijken the model learned from.",
        "- The RIVM/GGD health-monitor figures per wijk/buurt are small-area *model estimates*, not "
        "counts; their uncertainty is not propagated into this model.",
        "- The model is trained nationally and applied locally: local circumstances the national "
        "indicators do not capture are missing, and a municipality's wijken may differ from the "
        "national training distribution.",
        "- Suppressed small areas are absent, so results say nothing about them.",
        "",
        "## Ethical considerations",
        "",
        "- Stigmatisation: published tables are checked automatically for judgement and policy "
        "labels for places, and rankings are never published as a single position.",
        "- Sensitive indicators (migration background/herkomst, nationality, religion, ethnicity) are "
        "excluded unless the municipality opts in explicitly and documents why.",
        "- Residents should be able to see and question what is said about their wijk; the "
        "Algoritmeregister entry and this card are published for that reason.",
        "",
    ]
    return "\n".join(lines)


__all__ = [
    "RegisterFacts",
    "DataSourceFact",
    "SourceFileFact",
    "ModelFact",
    "OutcomeFact",
    "SuppressionFact",
    "MissingFactError",
    "UnknownGemeenteError",
    "RegisterConfigError",
    "DEFAULT_CONFIG_PATH",
    "load_register_config",
    "validate_facts",
    "build_register_entry",
    "register_json",
    "render_register_markdown",
    "build_model_card",
    "outcome_facts",
    "OUTCOME_LABELS_NL",
    "MODEL_TEXT_NL",
    "feature_summary_nl",
    "model_text_nl",
    "outcome_name_nl",
    "population_source_nl",
]
