"""A loopback fake of the CBS OData v3 service that serves the REAL shared data in CBS's JSON shape.

There is no internet in CI, so the live CBS path is tested against this server. It listens on
127.0.0.1 (a free port), runs in a daemon thread and answers like ``https://opendata.cbs.nl``::

    GET /ODataApi/odata/{table}/{TableInfos|DataProperties|CategoryGroups|TypedDataSet|<dimension>}
    GET /ODataCatalog/Tables
    -> {"odata.metadata": "...", "value": [...], "odata.nextLink": "..."}   (nextLink while more pages)

What is real and what is constructed
------------------------------------
* 85984NED (KWB 2024): TableInfos, DataProperties and CategoryGroups are the real CBS answers
  (shared/data/cbs_odata_fixtures, stored as bare lists and wrapped here). Its TypedDataSet holds the
  REAL 2024 values of shared/data/cbs_kwb_85984NED_2024_wijk (all 342 gemeenten and 3,393 wijken, the 8
  topics that file keeps: AantalInwoners_5, Mannen_6, Vrouwen_7, Bevolkingsdichtheid_34,
  Woningvoorraad_35, OppervlakteTotaal/Land/Water_122-124, nulls kept), shaped like CBS's records: ``ID``
  numbered from 0, ``WijkenEnBuurten`` right-padded to 10 characters (``'WK010600  '``), and the region
  attributes CBS adds to every record CONSTRUCTED from the code and the real wijk boundaries file
  (shared/data/cbs_wijkgrenzen_2024): ``Gemeentenaam_1`` (official name, padded to 40),
  ``SoortRegio_2`` (``'Gemeente  '``/``'Wijk      '``) and ``Codering_3``. The other 117 topics of
  the real table are not in the shared data, so the records hold only these columns (as if the client
  had asked for them with ``$select``). Without the JSON file the TypedDataSet answers 404 unless a
  test installs records with :meth:`FakeCbsServer.set_records`.
* 50090NED (RIVM Gezondheid per wijk en buurt): the RECORDS are real — every row of the eight xlsx
  UntypedDataSet dumps in shared/data/rivm_gezondheid_50090NED, converted the way CBS's TypedDataSet
  differs from the UntypedDataSet: indicator text such as ``'    78.4'`` becomes the JSON number
  ``78.4``, ``'       .'`` and empty cells become ``null``, ``ID`` is a number, dimension keys are
  strings (``"20300"``) and ``WijkenEnBuurten`` stays padded to 10 characters. Its TableInfos,
  DataProperties (Leeftijd/Marges = Dimension, WijkenEnBuurten = GeoDimension, Perioden =
  TimeDimension, everything else a Topic; titles made from the keys) and dimension endpoints are
  CONSTRUCTED from the column names and file names; they are not CBS's own metadata.
* 85231ENG (Proximity to facilities 2021): the RECORDS are real (the TypedDataSet CSV dump, ``'     1.1'``
  -> ``1.1``, ``'       .'`` -> null, text topics verbatim); TableInfos and DataProperties are
  CONSTRUCTED from the file name and header the same way.
* The catalog ``/ODataCatalog/Tables`` lists these tables with Identifier, Title, ShortTitle, Period,
  Modified (real for 85984NED, constructed for the others).

Supported query options: ``$format=json`` (required, as the client must ask for JSON), ``$filter``
(``eq ne gt ge lt le``, ``and or not``, parentheses, ``substringof/startswith/endswith/tolower/
toupper/trim``), ``$select``, ``$skip``/``$top`` (paging through ``odata.nextLink``). Pages hold
``page_size`` records (default 500; the real service uses 10,000) for every entity set, so paging code
is exercised even on metadata.

Test hooks: :meth:`~FakeCbsServer.inject` (faults: ``"503"``/any 3-digit status, ``"timeout"``,
``"truncate"``, ``"badjson"``, ``"drop"``), :meth:`~FakeCbsServer.publish_table`,
:meth:`~FakeCbsServer.update_modified`, :meth:`~FakeCbsServer.set_records` and a request log
(:attr:`~FakeCbsServer.requests`).

Usage in a test module::

    @pytest.fixture(scope="module")
    def fake_cbs(shared_data_dir):
        with FakeCbsServer(shared_data_dir, page_size=500) as server:
            yield server

    def test_x(fake_cbs):
        fake_cbs.reset()  # clear faults, log and catalog changes from earlier tests
        client = CbsODataClient(fake_cbs.base_url, timeout=1, backoff=0.01)
"""

from __future__ import annotations

import copy
import csv
import functools
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

RIVM_DIR = "rivm_gezondheid_50090NED"
NABIJHEID_CSV = "cbs_nabijheid/85231ENG_proximity_facilities_2021_10_municipalities_typeddataset.csv"
FIXTURE_DIR = "cbs_odata_fixtures"
KWB_2024_JSON = "cbs_kwb_85984NED_2024_wijk/kwb_2024_gemeente_wijk_8vars.json"
WIJKGRENZEN_2024 = "cbs_wijkgrenzen_2024/wijken_2024_wgs84_simplified.geojson"

_RIVM_FILE = re.compile(r"^gezondheid_buurt_(\d{4})_(18plus|65plus|18-64)\.xlsx$")
# Leeftijd category per file-name age group (codes as in the files; titles as on StatLine).
LEEFTIJD = {
    "18plus": ("20300", "18 jaar of ouder"),
    "65plus": ("80200", "65 jaar of ouder"),
    "18-64": ("53115", "18 tot 65 jaar"),
}
MARGES = {"MW00000": "Waarde"}

# Topics that hold text (codes, names, region types), kept verbatim; all other topics are numbers.
TEXT_TOPIC_STEMS = {
    "Gemeentenaam",
    "SoortRegio",
    "Codering",
    "IndelingswijzigingGemeenteWijkBuurt",
    "MeestVoorkomendePostcode",
    "MunicipalityName",
    "RegionType",
    "Encoding",
    "ChangeInDistrictOrNeighbourhood",
}
TOPIC_UNITS = {
    "Gemeentenaam": "naam",
    "SoortRegio": "omschrijving",
    "Codering": "code",
    "MunicipalityName": "name",
    "RegionType": "description",
    "Encoding": "code",
    "ChangeInDistrictOrNeighbourhood": "code",
}

FAULT_KINDS = ("timeout", "truncate", "badjson", "drop")

_SUFFIX = re.compile(r"_\d+$")


def _stem(key: str) -> str:
    return _SUFFIX.sub("", key)


def _title_from_key(key: str) -> str:
    """``ErvarenGezondheidGoedZeerGoed_4`` -> ``Ervaren gezondheid goed zeer goed`` (constructed titles)."""
    words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", _stem(key))
    text = " ".join(w if w.isupper() and len(w) > 1 else w.lower() for w in words)
    return text[:1].upper() + text[1:]


def _number(text: str, double: bool) -> float | int | None:
    """Cell text of a numeric topic -> JSON number; '.', '' -> null (what TypedDataSet does)."""
    stripped = text.strip()
    if stripped in ("", "."):
        return None
    return float(stripped) if double else int(stripped)


# ---------------------------------------------------------------------------------------------------
# Loading the real files (cached per process: several servers in one session share the parsed data)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedRecords:
    columns: tuple[str, ...]
    records: tuple[dict, ...]
    serialized: tuple[str, ...]  # json.dumps of each record, built once


def _loaded(columns: list[str], records: list[dict]) -> LoadedRecords:
    return LoadedRecords(
        tuple(columns), tuple(records), tuple(json.dumps(r, ensure_ascii=False) for r in records)
    )


@functools.lru_cache(maxsize=None)
def load_rivm_xlsx(path: str) -> LoadedRecords:
    """One 50090NED UntypedDataSet xlsx dump -> TypedDataSet records (see the module docstring)."""
    from python_calamine import CalamineWorkbook

    workbook = CalamineWorkbook.from_path(path)
    try:
        rows = workbook.get_sheet_by_name(workbook.sheet_names[0]).to_python(skip_empty_area=False)
    finally:
        close = getattr(workbook, "close", None)
        if close:
            close()
    header = [str(c) for c in rows[0]]
    body = [row for row in rows[1:] if any(v not in ("", None) for v in row)]
    text_columns = {"Marges", "WijkenEnBuurten", "Perioden"} | {c for c in header if _stem(c) in TEXT_TOPIC_STEMS}
    converted = []
    for column, cells in zip(header, zip(*body)):
        if column == "ID":
            values = [int(v) for v in cells]
        elif column == "Leeftijd":  # a numeric cell in the dump, a string key in CBS's feed
            values = [v if isinstance(v, str) else str(int(v)) for v in cells]
        elif column in text_columns:
            values = [None if v in ("", None) else (v if isinstance(v, str) else str(v)) for v in cells]
        else:  # indicator: '    78.4' -> 78.4, '       .' / empty -> null (Decimals 1: always a double)
            values = [
                _number(v, True) if isinstance(v, str) else (None if v is None else float(v)) for v in cells
            ]
        converted.append(values)
    records = [dict(zip(header, values)) for values in zip(*converted)]
    return _loaded(header, records)


@functools.lru_cache(maxsize=None)
def load_typed_csv(path: str) -> tuple[LoadedRecords, dict[str, str]]:
    """A TypedDataSet CSV dump -> records; also returns each topic's datatype (String/Long/Double)."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    header, body = rows[0], [r for r in rows[1:] if r]
    datatypes: dict[str, str] = {}
    for i, column in enumerate(header):
        if column == "ID" or i == 1:  # ID, then the geo dimension
            continue
        values = [r[i].strip() for r in body if r[i].strip() not in ("", ".")]
        numeric = all(re.fullmatch(r"-?\d+(\.\d+)?", v) for v in values)
        if _stem(column) in TEXT_TOPIC_STEMS or not numeric:
            datatypes[column] = "String"
        else:
            datatypes[column] = "Double" if any("." in v for v in values) else "Long"
    records = []
    for row in body:
        record: dict[str, Any] = {}
        for i, column in enumerate(header):
            cell = row[i]
            if column == "ID":
                record[column] = int(cell)
            elif datatypes.get(column, "String") == "String":
                record[column] = cell if cell != "" else None
            else:
                record[column] = _number(cell, datatypes[column] == "Double")
        records.append(record)
    return _loaded(header, records), datatypes


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------


class Partition:
    """A slice of a table's records whose dimension values ``constants`` are known without loading it.

    Lets the server answer ``Perioden eq '2012JJ00'`` by reading only the 2012 files.
    """

    def __init__(self, constants: dict[str, str], loader: Callable[[], LoadedRecords]):
        self.constants = constants
        self._loader = loader
        self._lock = threading.Lock()
        self._data: LoadedRecords | None = None

    def data(self) -> LoadedRecords:
        with self._lock:
            if self._data is None:
                data = self._loader()
                for key, value in self.constants.items():
                    bad = next((r for r in data.records if r.get(key) != value), None)
                    if bad is not None:
                        raise RuntimeError(f"fake CBS data: expected {key}={value!r} in every record, found {bad.get(key)!r}")
                self._data = data
            return self._data


@dataclass
class FakeTable:
    table_id: str
    table_infos: Callable[[], dict]
    data_properties: Callable[[], list[dict]] | None
    category_groups: list[dict] = field(default_factory=list)
    partitions: list[Partition] = field(default_factory=list)
    dimensions: dict[str, Callable[[], list[dict]]] = field(default_factory=dict)
    no_data_reason: str | None = None

    def columns(self) -> list[str]:
        if self.data_properties is None:
            return []
        return [p["Key"] for p in self.data_properties() if p.get("Key") and p.get("Type") != "TopicGroup"]


def _topic(id_: int, key: str, datatype: str, decimals: int, unit: str) -> dict:
    return {
        "odata.type": "Cbs.OData.Topic",
        "ID": id_,
        "Position": id_,
        "ParentID": None,
        "Type": "Topic",
        "Key": key,
        "Title": _title_from_key(key),
        "Description": "",
        "Datatype": datatype,
        "Unit": unit,
        "Decimals": decimals,
        "Default": "Missing" if datatype != "String" else "Impossible",
        "PresentationType": "Relative" if unit == "%" else ("Absolute" if datatype != "String" else ""),
    }


def _dimension(id_: int, key: str, kind: str, title: str, **extra: Any) -> dict:
    return {
        "odata.type": f"Cbs.OData.{kind}",
        "ID": id_,
        "Position": id_,
        "ParentID": None,
        "Type": kind,
        "Key": key,
        "Title": title,
        "Description": "",
        **extra,
    }


def _rivm_table(data_dir: Path) -> FakeTable | None:
    folder = data_dir / RIVM_DIR
    files = sorted(p for p in folder.glob("*.xlsx") if _RIVM_FILE.match(p.name)) if folder.is_dir() else []
    if not files:
        return None
    partitions = []
    for path in files:
        year, age = _RIVM_FILE.match(path.name).groups()
        constants = {"Leeftijd": LEEFTIJD[age][0], "Marges": "MW00000", "Perioden": f"{year}JJ00"}
        partitions.append(Partition(constants, functools.partial(load_rivm_xlsx, str(path))))
    # Metadata below is CONSTRUCTED from the column names of the real dump, not copied from CBS.
    first = min(partitions, key=lambda p: (p.constants["Perioden"], p.constants["Leeftijd"]))
    years = sorted({p.constants["Perioden"][:4] for p in partitions})

    @functools.lru_cache(maxsize=1)
    def data_properties() -> list[dict]:
        columns = first.data().columns
        props = [
            _dimension(0, "Leeftijd", "Dimension", "Leeftijd"),
            _dimension(1, "Marges", "Dimension", "Marges"),
            _dimension(2, "WijkenEnBuurten", "GeoDimension", "Wijken en buurten", MapYear=2020, ReleasePolicy=False),
            _dimension(3, "Perioden", "TimeDimension", "Perioden", ReleasePolicy=False),
        ]
        for column in columns:
            if column in ("ID", "Leeftijd", "Marges", "WijkenEnBuurten", "Perioden"):
                continue
            if _stem(column) in TEXT_TOPIC_STEMS:
                props.append(_topic(len(props), column, "String", 0, TOPIC_UNITS.get(_stem(column), "")))
            else:
                props.append(_topic(len(props), column, "Double", 1, "%"))
        return props

    def table_infos() -> dict:
        return {
            "ID": 0,
            "Title": "Gezondheid per wijk en buurt; 2012/2016/2020 (indeling 2020)",
            "ShortTitle": "Gezondheid per wijk en buurt",
            "Identifier": "50090NED",
            "Summary": "Gezondheid, leefstijl en sociale situatie van volwassenen en ouderen per wijk en buurt "
            "(modelschattingen RIVM/GGD'en/CBS) [constructed by the fake server]",
            "Modified": "2022-11-30T02:00:00",  # constructed
            "MetaDataModified": "2022-11-30T02:00:00",
            "ReasonDelivery": "Actualisering",
            "Language": "nl",
            "Catalog": "CBS",
            "Frequency": "Onregelmatig",
            "Period": ", ".join(years),
            "OutputStatus": "Regulier",
        }

    def periods() -> list[dict]:
        return [{"Key": f"{y}JJ00", "Title": y, "Description": "", "Status": "Definitief"} for y in years]

    def leeftijd() -> list[dict]:
        present = {p.constants["Leeftijd"] for p in partitions}
        return [
            {"Key": code, "Title": title, "Description": "", "CategoryGroupID": None}
            for code, title in LEEFTIJD.values()
            if code in present
        ]

    def marges() -> list[dict]:
        return [{"Key": k, "Title": t, "Description": "", "CategoryGroupID": None} for k, t in MARGES.items()]

    def areas() -> list[dict]:
        # Titles are the codes: the dumps carry no buurt names (constructed).
        return [
            {"Key": r["WijkenEnBuurten"], "Title": r["WijkenEnBuurten"].strip(), "Description": "", "CategoryGroupID": None}
            for r in first.data().records
        ]

    return FakeTable(
        "50090NED",
        table_infos,
        data_properties,
        [],
        partitions,
        {"Perioden": periods, "Leeftijd": leeftijd, "Marges": marges, "WijkenEnBuurten": areas},
    )


def _nabijheid_table(data_dir: Path) -> FakeTable | None:
    path = data_dir / NABIJHEID_CSV
    if not path.is_file():
        return None
    partition = Partition({}, lambda: load_typed_csv(str(path))[0])

    @functools.lru_cache(maxsize=1)
    def data_properties() -> list[dict]:
        # CONSTRUCTED from the CSV header; CBS's real 85231ENG metadata has topic groups and titles.
        loaded, datatypes = load_typed_csv(str(path))
        props = [_dimension(0, loaded.columns[1], "GeoDimension", "Districts and neighbourhoods", MapYear=2021)]
        for column in loaded.columns[2:]:
            datatype = datatypes[column]
            decimals = 1 if datatype == "Double" else 0
            unit = TOPIC_UNITS.get(_stem(column), "km" if _stem(column).startswith("DistanceTo") else "number")
            props.append(_topic(len(props), column, datatype, decimals, unit))
        return props

    def table_infos() -> dict:
        return {
            "ID": 0,
            "Title": "Proximity to facilities; distance to location, districts and neighbourhoods 2021",
            "ShortTitle": "Proximity to facilities 2021",
            "Identifier": "85231ENG",
            "Summary": "Distance to facilities per district and neighbourhood [constructed by the fake server]",
            "Modified": "2022-06-30T02:00:00",  # constructed
            "MetaDataModified": "2022-06-30T02:00:00",
            "ReasonDelivery": "Actualisering",
            "Language": "en",
            "Catalog": "CBS",
            "Frequency": "Perjaar",
            "Period": "2021",
            "OutputStatus": "Regulier",
        }

    def areas() -> list[dict]:
        loaded = partition.data()
        geo = loaded.columns[1]
        return [{"Key": r[geo], "Title": r[geo].strip(), "Description": ""} for r in loaded.records]

    return FakeTable("85231ENG", table_infos, data_properties, [], [partition], {"DistrictsAndNeighbourhoods": areas})


@functools.lru_cache(maxsize=None)
def load_kwb_2024_json(json_path: str, geojson_path: str | None) -> LoadedRecords:
    """The real 85984NED values (one object per trimmed code) -> TypedDataSet records (see the docstring)."""
    values = _read_json(Path(json_path))
    gemeente_names: dict[str, str] = {}
    if geojson_path:
        for feature in _read_json(Path(geojson_path))["features"]:
            props = feature["properties"]
            gemeente_names.setdefault(props["gemeentecode"], props["gemeentenaam"])
    region_type = {"GM": "Gemeente", "WK": "Wijk", "BU": "Buurt"}
    records = []
    for i, (code, topics) in enumerate(values.items()):
        gemeente = "GM" + code[2:6]
        record = {
            "ID": i,
            "WijkenEnBuurten": code.ljust(10),
            "Gemeentenaam_1": gemeente_names.get(gemeente, "").ljust(40) if gemeente_names else None,
            "SoortRegio_2": region_type[code[:2]].ljust(10),
            "Codering_3": code.ljust(10),
        }
        record.update(topics)
        records.append(record)
    columns = list(dict.fromkeys(k for r in records for k in r))
    return _loaded(columns, records)


def _kwb_table(data_dir: Path) -> FakeTable | None:
    folder = data_dir / FIXTURE_DIR
    infos_path = folder / "85984NED_TableInfos.json"
    if not infos_path.is_file():
        return None
    infos = _read_json(infos_path)
    props = _read_json(folder / "85984NED_DataProperties.json")
    groups_path = folder / "85984NED_CategoryGroups.json"
    groups = _read_json(groups_path) if groups_path.is_file() else []
    values_path = data_dir / KWB_2024_JSON
    geojson_path = data_dir / WIJKGRENZEN_2024
    partitions = []
    if values_path.is_file():
        loader = functools.partial(
            load_kwb_2024_json, str(values_path), str(geojson_path) if geojson_path.is_file() else None
        )
        partitions.append(Partition({}, loader))
    return FakeTable(
        "85984NED",
        lambda: dict(infos[0]),
        lambda: props,
        groups,
        partitions,
        {},
        no_data_reason="the shared data holds only the metadata of 85984NED (TableInfos, DataProperties, "
        f"CategoryGroups) and no {KWB_2024_JSON}; install records with FakeCbsServer.set_records",
    )


# ---------------------------------------------------------------------------------------------------
# $filter
# ---------------------------------------------------------------------------------------------------


class FilterError(ValueError):
    pass


class _Unknown:
    """A value not known yet (partition pruning evaluates filters on the partition's constants only)."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)(?![A-Za-z_])|(?P<lp>\()|(?P<rp>\))"
    r"|(?P<comma>,)|(?P<name>[A-Za-z_][A-Za-z0-9_]*))"
)
_COMPARE = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and b is not None and a > b,
    "ge": lambda a, b: a is not None and b is not None and a >= b,
    "lt": lambda a, b: a is not None and b is not None and a < b,
    "le": lambda a, b: a is not None and b is not None and a <= b,
}
_FUNCTIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    "substringof": (2, lambda a, b: a is not None and b is not None and a in b),
    "startswith": (2, lambda a, b: a is not None and b is not None and a.startswith(b)),
    "endswith": (2, lambda a, b: a is not None and b is not None and a.endswith(b)),
    "tolower": (1, lambda a: a.lower() if a is not None else None),
    "toupper": (1, lambda a: a.upper() if a is not None else None),
    "trim": (1, lambda a: a.strip() if a is not None else None),
}

Expr = Callable[[dict], Any]


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise FilterError(f"Syntax error at position {pos} in '{text}'.")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.fields: set[str] = set()

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, kind: str | None = None, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (kind and token[0] != kind) or (value and token[1] != value):
            raise FilterError(f"Syntax error in '{self.text}': expected {value or kind}, found {token[1] if token else 'end'}.")
        self.i += 1
        return token

    def is_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token[0] == "name" and token[1] == word

    def parse(self) -> Expr:
        expr = self.or_expr()
        if self.peek() is not None:
            raise FilterError(f"Syntax error in '{self.text}': unexpected {self.peek()[1]!r}.")
        return expr

    def or_expr(self) -> Expr:
        terms = [self.and_expr()]
        while self.is_word("or"):
            self.take()
            terms.append(self.and_expr())
        if len(terms) == 1:
            return terms[0]

        def evaluate(row: dict) -> Any:
            values = [t(row) for t in terms]
            if any(v is True for v in values):
                return True
            return UNKNOWN if any(v is UNKNOWN for v in values) else False

        return evaluate

    def and_expr(self) -> Expr:
        terms = [self.not_expr()]
        while self.is_word("and"):
            self.take()
            terms.append(self.not_expr())
        if len(terms) == 1:
            return terms[0]

        def evaluate(row: dict) -> Any:
            values = [t(row) for t in terms]
            if any(v is False for v in values):
                return False
            return UNKNOWN if any(v is UNKNOWN for v in values) else True

        return evaluate

    def not_expr(self) -> Expr:
        if self.is_word("not"):
            self.take()
            inner = self.not_expr()
            return lambda row: UNKNOWN if (v := inner(row)) is UNKNOWN else (not v)
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.primary()
        token = self.peek()
        if token and token[0] == "name" and token[1] in _COMPARE:
            self.take()
            right = self.primary()
            op = _COMPARE[token[1]]

            def evaluate(row: dict) -> Any:
                a, b = left(row), right(row)
                if a is UNKNOWN or b is UNKNOWN:
                    return UNKNOWN
                try:
                    return bool(op(a, b))
                except TypeError:
                    return False

            return evaluate
        return left

    def primary(self) -> Expr:
        kind, value = self.take()
        if kind == "lp":
            inner = self.or_expr()
            self.take("rp")
            return inner
        if kind == "str":
            literal = value[1:-1].replace("''", "'")
            return lambda row: literal
        if kind == "num":
            number = float(value) if "." in value else int(value)
            return lambda row: number
        if kind == "name":
            if value in ("null", "true", "false"):
                constant = {"null": None, "true": True, "false": False}[value]
                return lambda row: constant
            if self.peek() and self.peek()[0] == "lp" and value in _FUNCTIONS:
                arity, function = _FUNCTIONS[value]
                self.take("lp")
                args = [self.or_expr()]
                while self.peek() and self.peek()[0] == "comma":
                    self.take()
                    args.append(self.or_expr())
                self.take("rp")
                if len(args) != arity:
                    raise FilterError(f"Function '{value}' takes {arity} argument(s), got {len(args)}.")

                def call(row: dict) -> Any:
                    values = [a(row) for a in args]
                    if any(v is UNKNOWN for v in values):
                        return UNKNOWN
                    try:
                        return function(*values)
                    except (TypeError, AttributeError):
                        return None

                return call
            if value in _COMPARE or value in ("and", "or", "not"):
                raise FilterError(f"Syntax error in '{self.text}': unexpected operator {value!r}.")
            self.fields.add(value)
            return lambda row: row.get(value, UNKNOWN)
        raise FilterError(f"Syntax error in '{self.text}': unexpected {value!r}.")


def parse_filter(text: str) -> tuple[Expr, set[str]]:
    """``$filter`` text -> (row predicate, field names used). Raises FilterError on bad syntax."""
    parser = _Parser(text)
    return parser.parse(), parser.fields


# ---------------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------------


class _HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Fault:
    path_substring: str
    kind: str
    times: int
    delay: float | None = None


@dataclass
class LoggedRequest:
    method: str
    target: str  # path and query, percent-decoded
    path: str
    params: dict[str, str]
    status: int | None
    fault: str | None
    at: float


class FakeCbsServer:
    """Fake CBS OData v3 service on 127.0.0.1 (see the module docstring). Use as a context manager."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        page_size: int = 500,
        timeout_delay: float = 5.0,
        connection_timeout: float = 10.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.page_size = page_size
        self.timeout_delay = timeout_delay  # how long a "timeout" fault stalls (> the client's timeout)
        self.connection_timeout = connection_timeout  # idle keep-alive connections are closed after this
        self.host = host
        self._lock = threading.RLock()
        self._data_lock = threading.Lock()  # held while a query's records are gathered (may load files)
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._builtin_tables = {t.table_id: t for t in self._build_tables() if t is not None}
        self.reset()

    def _build_tables(self) -> list[FakeTable | None]:
        return [_kwb_table(self.data_dir), _rivm_table(self.data_dir), _nabijheid_table(self.data_dir)]

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> "FakeCbsServer":
        if self._httpd is not None:
            return self
        handler = type("Handler", (_Handler,), {"timeout": self.connection_timeout})
        httpd = ThreadingHTTPServer((self.host, 0), handler)
        httpd.daemon_threads = True
        httpd.fake = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._stop.clear()
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                                        name=f"fake-cbs-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes handlers stalled by a "timeout" fault
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FakeCbsServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("fake CBS server is not running; call start()")
        return self._httpd.server_address[1]

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What ``WIJK_CBS_BASE_URL`` would be: ``http://127.0.0.1:<port>/ODataApi/odata``."""
        return f"{self.root_url}/ODataApi/odata"

    @property
    def catalog_url(self) -> str:
        return f"{self.root_url}/ODataCatalog"

    # -- test hooks -----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget faults, the request log and catalog/table changes made by tests (data stays loaded)."""
        with self._lock:
            self._faults: list[Fault] = []
            self._log: list[LoggedRequest] = []
            self._tables: dict[str, FakeTable] = dict(self._builtin_tables)
            self._catalog: dict[str, dict] = {}
            self._infos_override: dict[str, dict] = {}
            self._filter_cache: dict[tuple[str, str], list[tuple[dict, str]]] = {}
            for table_id, table in self._tables.items():
                self._catalog[table_id] = self._catalog_entry(table.table_infos())

    def inject(self, path_substring: str, kind: str, times: int = 1, *, delay: float | None = None) -> None:
        """Make the next ``times`` requests whose decoded path+query contains ``path_substring`` fail.

        ``kind``: a 3-digit HTTP status (``"503"``, ``"404"``, ``"500"``, ``"429"``, ...) answered with an
        OData error body; ``"timeout"`` stalls ``delay`` (default ``timeout_delay``) seconds and then
        closes without answering; ``"truncate"`` sends the full Content-Length but only half the body
        and closes; ``"badjson"`` sends half the body with a matching Content-Length (complete HTTP,
        invalid JSON); ``"drop"`` closes the connection without a response. Faults are used in the
        order they were injected.
        """
        if not (re.fullmatch(r"[1-5]\d\d", kind) or kind in FAULT_KINDS):
            raise ValueError(f"unknown fault kind {kind!r}: a 3-digit status or one of {FAULT_KINDS}")
        with self._lock:
            self._faults.append(Fault(path_substring, kind, times, delay))

    def preload(self, table_id: str, filter: str | None = None) -> int:
        """Load (and cache) the files behind ``table_id``'s metadata and the records ``filter`` selects.

        Call it in a fixture before tests that use a short client timeout: the first request for a
        table otherwise parses xlsx files while the client waits. Returns the number of records.
        """
        table = self._table(table_id)
        if table.data_properties is not None:
            table.data_properties()
        return len(self._dataset_rows(table, filter)) if table.partitions else 0

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def publish_table(self, entry: dict, *, data_from: str | None = None) -> dict:
        """Add (or replace) a catalog entry, as when CBS publishes a new table.

        ``entry`` needs ``Identifier``; Title, ShortTitle, Period, Modified, Language and Catalog get
        defaults. With ``data_from`` the new table serves that table's metadata and records (with its
        own TableInfos); otherwise only TableInfos is served.
        """
        if not entry.get("Identifier"):
            raise ValueError("publish_table needs an entry with an Identifier")
        table_id = entry["Identifier"]
        full = {
            "Title": table_id,
            "Period": "",
            "Modified": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "Language": "nl",
            "Catalog": "CBS",
            "ReasonDelivery": "Nieuw",
            **entry,
        }
        full.setdefault("ShortTitle", full["Title"])
        full.setdefault("MetaDataModified", full["Modified"])
        with self._lock:
            source = self._tables.get(data_from) if data_from else None
            if data_from and source is None:
                raise KeyError(f"no table {data_from!r} to copy data from")
            infos = {"ID": 0, **full}
            if source is not None:
                table = FakeTable(table_id, lambda: dict(infos), source.data_properties, source.category_groups,
                                  source.partitions, source.dimensions, source.no_data_reason)
            else:
                table = FakeTable(table_id, lambda: dict(infos), None,
                                  no_data_reason=f"{table_id} was published by a test without data")
            self._tables[table_id] = table
            self._infos_override.pop(table_id, None)
            self._catalog[table_id] = self._catalog_entry(full)
            self._drop_cache(table_id)
        return dict(self._catalog[table_id])

    def update_modified(self, table_id: str, modified: str) -> None:
        """Set ``Modified`` (and MetaDataModified) of a table in the catalog and its TableInfos."""
        with self._lock:
            if table_id not in self._catalog:
                raise KeyError(f"no table {table_id!r} in the fake catalog")
            self._catalog[table_id].update(Modified=modified, MetaDataModified=modified)
            self._infos_override.setdefault(table_id, {}).update(Modified=modified, MetaDataModified=modified)

    def remove_table(self, table_id: str) -> None:
        with self._lock:
            self._tables.pop(table_id, None)
            self._catalog.pop(table_id, None)
            self._drop_cache(table_id)

    def set_records(
        self,
        table_id: str,
        records: list[dict],
        *,
        data_properties: list[dict] | None = None,
        table_infos: dict | None = None,
    ) -> None:
        """Serve ``records`` as the TypedDataSet of ``table_id`` (e.g. test records for 85984NED)."""
        records = copy.deepcopy(records)
        columns = list(records[0]) if records else []
        loaded = _loaded(columns, records)
        with self._lock:
            existing = self._tables.get(table_id)
            if data_properties is None and existing is not None and existing.data_properties is not None:
                props_fn = existing.data_properties
            elif data_properties is not None:
                props_fn = (lambda p: (lambda: p))(copy.deepcopy(data_properties))
            else:
                raise ValueError(f"set_records({table_id!r}) needs data_properties for a new table")
            if table_infos is not None:
                infos = {"ID": 0, "Identifier": table_id, **table_infos}
                infos_fn = lambda: dict(infos)  # noqa: E731
            elif existing is not None:
                infos_fn = existing.table_infos
            else:
                raise ValueError(f"set_records({table_id!r}) needs table_infos for a new table")
            self._tables[table_id] = FakeTable(
                table_id,
                infos_fn,
                props_fn,
                existing.category_groups if existing else [],
                [Partition({}, lambda: loaded)],
                existing.dimensions if existing else {},
            )
            self._catalog.setdefault(table_id, self._catalog_entry(infos_fn()))
            self._drop_cache(table_id)

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def requests_matching(self, substring: str) -> list[LoggedRequest]:
        return [r for r in self.requests if substring in r.target]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    # -- internals ------------------------------------------------------------------------------------

    def _catalog_entry(self, infos: dict) -> dict:
        table_id = infos.get("Identifier", "")
        keep = ("Identifier", "Title", "ShortTitle", "ShortDescription", "Summary", "Modified",
                "MetaDataModified", "ReasonDelivery", "OutputStatus", "Source", "Language", "Catalog",
                "Frequency", "Period")
        entry = {"Updated": infos.get("Modified"), "ID": 0}
        entry.update({k: infos.get(k, "") for k in keep})
        entry["ApiUrl"] = f"{{base}}/{table_id}"
        entry["FeedUrl"] = f"{{feed}}/{table_id}"
        return entry

    def _drop_cache(self, table_id: str) -> None:
        for key in [k for k in self._filter_cache if k[0] == table_id]:
            del self._filter_cache[key]

    def _take_fault(self, target: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.path_substring in target:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def _table(self, table_id: str) -> FakeTable:
        with self._lock:
            table = self._tables.get(table_id)
        if table is None:
            raise _HttpError(404, f"Resource not found for the segment '{table_id}'.")
        return table

    def _table_infos(self, table: FakeTable) -> dict:
        with self._lock:
            return {**table.table_infos(), **self._infos_override.get(table.table_id, {})}

    def _dataset_rows(self, table: FakeTable, filter_text: str | None) -> list[tuple[dict, str]]:
        """(record, serialized) pairs matching the filter, ordered by ID; cached per (table, filter)."""
        key = (table.table_id, filter_text or "")
        with self._data_lock:
            with self._lock:
                cached = self._filter_cache.get(key)
            if cached is not None:
                return cached
            if not table.partitions:
                raise _HttpError(404, f"No records for {table.table_id}: {table.no_data_reason}")
            predicate = None
            if filter_text:
                try:
                    predicate, fields = parse_filter(filter_text)
                except FilterError as error:
                    raise _HttpError(400, str(error)) from error
                columns = set(table.columns()) | {"ID"}
                unknown = sorted(fields - columns)
                if unknown:
                    raise _HttpError(
                        400, f"No property '{unknown[0]}' exists in type 'Cbs.OData.WebAPI.TypedDataSet'."
                    )
            rows: list[tuple[dict, str]] = []
            for partition in table.partitions:
                verdict = predicate(partition.constants) if predicate else True
                if verdict is False:
                    continue  # pruned: the partition's constants already rule it out
                data = partition.data()
                if verdict is True:
                    rows.extend(zip(data.records, data.serialized))
                else:
                    rows.extend((r, s) for r, s in zip(data.records, data.serialized) if predicate(r) is True)
            rows.sort(key=lambda pair: pair[0].get("ID", 0))
            with self._lock:
                self._filter_cache[key] = rows
            return rows

    def _collection(self, segments: list[str], params: dict[str, str]) -> tuple[str, list[str]]:
        """(odata.metadata, serialized values) for an API path, before paging."""
        api = f"{self.base_url}"
        if segments[:1] == ["odatacatalog"]:
            if segments[1:] in ([], [""]):
                names = ["Tables", "Featured"]
                return (f"{self.catalog_url}/$metadata",
                        [json.dumps({"name": n, "url": f"{self.catalog_url}/{n}"}) for n in names])
            if segments[1:] == ["tables"]:
                with self._lock:
                    entries = [dict(e, ApiUrl=e["ApiUrl"].replace("{base}", api),
                                    FeedUrl=e["FeedUrl"].replace("{feed}", api))
                               for e in self._catalog.values()]
                entries = self._filter_small(entries, params.get("$filter"), "Table")
                return (f"{self.catalog_url}/$metadata#ODataCatalog.Tables",
                        [json.dumps(e, ensure_ascii=False) for e in entries])
            raise _HttpError(404, f"Resource not found for the segment '{'/'.join(segments[1:])}'.")
        table = self._table(segments[0])
        meta = f"{api}/{table.table_id}/$metadata"
        if len(segments) == 1 or segments[1] == "":
            names = ["TableInfos", "UntypedDataSet", "TypedDataSet", "DataProperties", "CategoryGroups",
                     *table.dimensions]
            return meta, [json.dumps({"name": n, "url": f"{api}/{table.table_id}/{n}"}) for n in names]
        entity = segments[1]
        if len(segments) > 2:
            raise _HttpError(404, f"Resource not found for the segment '{segments[2]}'.")
        if entity == "TableInfos":
            values: list[dict] = [self._table_infos(table)]
        elif entity == "DataProperties":
            if table.data_properties is None:
                raise _HttpError(404, f"No DataProperties for {table.table_id}: {table.no_data_reason}")
            values = table.data_properties()
        elif entity == "CategoryGroups":
            values = list(table.category_groups)
        elif entity == "TypedDataSet":
            rows = self._dataset_rows(table, params.get("$filter"))
            select = params.get("$select")
            if select:
                keys = [k.strip() for k in select.split(",") if k.strip()]
                unknown = [k for k in keys if k not in set(table.columns()) | {"ID"}]
                if unknown:
                    raise _HttpError(400, f"Could not find a property named '{unknown[0]}' on type 'Cbs.OData.WebAPI.TypedDataSet'.")
                serialized = [json.dumps({k: r.get(k) for k in keys}, ensure_ascii=False) for r, _ in rows]
            else:
                serialized = [s for _, s in rows]
            return f"{meta}#Cbs.OData.WebAPI.TypedDataSet", serialized
        elif entity == "UntypedDataSet":
            raise _HttpError(404, "UntypedDataSet is not served by the fake CBS server; use TypedDataSet.")
        elif entity in table.dimensions:
            values = table.dimensions[entity]()
        else:
            raise _HttpError(404, f"Resource not found for the segment '{entity}'.")
        values = self._filter_small(values, params.get("$filter"), entity)
        return f"{meta}#Cbs.OData.WebAPI.{entity}", [json.dumps(v, ensure_ascii=False) for v in values]

    @staticmethod
    def _filter_small(values: list[dict], filter_text: str | None, entity: str) -> list[dict]:
        if not filter_text:
            return values
        try:
            predicate, fields = parse_filter(filter_text)
        except FilterError as error:
            raise _HttpError(400, str(error)) from error
        known = set().union(*(v.keys() for v in values)) if values else set()
        unknown = sorted(fields - known)
        if values and unknown:
            raise _HttpError(400, f"No property '{unknown[0]}' exists in type 'Cbs.OData.WebAPI.{entity}'.")
        return [v for v in values if predicate(v) is True]

    def respond(self, raw_path: str) -> tuple[int, bytes]:
        """The status and JSON body for one GET (no faults)."""
        parts = urlsplit(raw_path)
        segments = [unquote(s) for s in parts.path.strip("/").split("/")]
        query = parse_qsl(parts.query, keep_blank_values=True)
        params = dict(query)
        try:
            for key in params:
                if key.startswith("$") and key not in ("$format", "$filter", "$select", "$skip", "$top",
                                                       "$inlinecount"):
                    raise _HttpError(400, f"The query option '{key}' is not supported by the fake CBS server.")
            if params.get("$format", "").lower() != "json":
                raise _HttpError(406, "The fake CBS server only serves JSON: add $format=json "
                                      "(the real service answers Atom XML without it).")
            lowered = [s.lower() for s in segments[:2]]
            if lowered == ["odataapi", "odata"] and len(segments) >= 3:
                metadata, values = self._collection(segments[2:], params)
            elif lowered[:1] == ["odatacatalog"]:
                metadata, values = self._collection(["odatacatalog", *[s.lower() for s in segments[1:]]], params)
            else:
                raise _HttpError(404, f"Resource not found for the segment '{segments[0] if segments else ''}'.")
            try:
                skip = int(params.get("$skip", "0") or 0)
                top = int(params["$top"]) if params.get("$top") else None
            except ValueError as error:
                raise _HttpError(400, f"Invalid $skip/$top: {error}") from error
            if skip < 0 or (top is not None and top < 0):
                raise _HttpError(400, "$skip and $top must not be negative.")
            end = len(values) if top is None else min(len(values), skip + top)
            page_end = min(end, skip + self.page_size)
            page = values[skip:page_end]
            body = '{"odata.metadata":' + json.dumps(metadata) + ',"value":[' + ",".join(page) + "]"
            if page_end < end:
                rest = [(k, v) for k, v in query if k not in ("$skip", "$top")]
                rest.append(("$skip", str(page_end)))
                if top is not None:
                    rest.append(("$top", str(end - page_end)))
                next_link = f"{self.root_url}{parts.path}?" + urlencode(rest, quote_via=quote, safe="$'(),:/")
                body += ',"odata.nextLink":' + json.dumps(next_link)
            body += "}"
            return 200, body.encode("utf-8")
        except _HttpError as error:
            return error.status, _error_body(error.message)


def _error_body(message: str) -> bytes:
    return json.dumps({"odata.error": {"code": "", "message": {"lang": "en-US", "value": message}}}).encode("utf-8")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real service
    server_version = "FakeCBS/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    def _send(self, status: int, body: bytes, *, length: int | None = None, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json;odata=minimalmetadata;streaming=true;charset=utf-8")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self) -> None:  # noqa: N802
        fake: FakeCbsServer = self.server.fake  # type: ignore[attr-defined]
        target = unquote(self.path)
        parts = urlsplit(self.path)
        entry = LoggedRequest("GET", target, unquote(parts.path), dict(parse_qsl(parts.query, keep_blank_values=True)),
                              None, None, time.time())
        fake._record(entry)  # logged on arrival; status is filled in below (a stalled request shows None)
        fault = fake._take_fault(target)
        try:
            if fault is not None:
                entry.fault = fault.kind
                if fault.kind == "timeout":
                    fake._stop.wait(fault.delay if fault.delay is not None else fake.timeout_delay)
                    self.close_connection = True
                    return
                if fault.kind == "drop":
                    self.close_connection = True
                    return
                if re.fullmatch(r"\d{3}", fault.kind):
                    entry.status = int(fault.kind)
                    reason = self.responses.get(entry.status, ("Error",))[0]
                    self._send(entry.status, _error_body(f"{reason} (fault injected by the fake CBS server)"))
                    return
            status, body = fake.respond(self.path)
            entry.status = status
            if fault is not None and fault.kind == "truncate":
                self._send(status, body[: len(body) // 2], length=len(body), close=True)
                self.close_connection = True
            elif fault is not None and fault.kind == "badjson":
                self._send(status, body[: len(body) // 2])
            else:
                self._send(status, body)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True

    def do_POST(self) -> None:  # noqa: N802
        self._send(405, _error_body("The fake CBS OData service is read-only (GET)."))


__all__ = ["FakeCbsServer", "LoggedRequest", "load_rivm_xlsx", "load_typed_csv", "parse_filter"]
