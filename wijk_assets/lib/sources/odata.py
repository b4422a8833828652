"""A small, strict client for the CBS OData v3 API, and the live reader built on it.

CBS serves every StatLine table at ``{base}/{table_id}/{entity}`` (``TableInfos``, ``DataProperties``,
``CategoryGroups``, ``TypedDataSet``, ``UntypedDataSet`` and one endpoint per dimension such as
``Perioden``) and a catalog of all tables at ``{catalog}/Tables``. Responses are JSON objects
``{"odata.metadata": ..., "value": [...], "odata.nextLink": ...}``; a result larger than one page
(10,000 records on the real service) carries an ``odata.nextLink`` to the next page.

Compared with the ``cbsodata`` package this client

* retries with exponential backoff on connection errors, timeouts, HTTP 5xx/408/429 and on a body
  that is cut off or is not valid JSON;
* raises :class:`CbsODataError` naming the URL, the HTTP status and CBS's own error message for any
  other 4xx, and after the retries are used up;
* returns all pages or nothing: one failing page fails the whole request (no partial tables);
* hands the live reader every value as text the way the JSON gave it: strings verbatim (padding
  kept), numbers as ``str()`` of the parsed number (``76.1`` -> ``'76.1'``), null -> NULL.

:func:`read_live_table` turns one table and year into the raw long layout with
:func:`~wijk_assets.lib.sources.odata_shape.odata_records_to_long`, the same code the xlsx/CSV dumps use.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Iterable
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

import pandas as pd
import requests

from wijk_assets.lib.sources.base import RawExtract, SourceFormatError, key_stem
from wijk_assets.lib.sources.odata_shape import PERIOD_DIMENSIONS, odata_records_to_long, period_year

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://opendata.cbs.nl/ODataApi/odata"
DEFAULT_CATALOG_URL = "https://opendata.cbs.nl/ODataCatalog"
USER_AGENT = "wijk_assets (CBS OData v3 client; +https://opendata.cbs.nl)"

# Base URLs whose catalog lives next to them at /ODataCatalog (compared case-insensitively).
_API_SUFFIXES = ("/odataapi/odata", "/odatafeed/odata")
# Statuses worth another try: the service is busy/restarting, or asks us to slow down.
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Dimension types in DataProperties (a table has at most one geo and one time dimension).
GEO_TYPES = ("GeoDimension", "GeoDetail")
TIME_TYPES = ("TimeDimension",)
DIMENSION_TYPES = ("Dimension", *GEO_TYPES, *TIME_TYPES)
# The TableInfos fields kept in an extract's metadata.
TABLE_INFO_FIELDS = (
    "Identifier",
    "Title",
    "ShortTitle",
    "Period",
    "Modified",
    "MetaDataModified",
    "ReasonDelivery",
    "Frequency",
    "Language",
    "Catalog",
    "OutputStatus",
)


class CbsODataError(RuntimeError):
    """A CBS OData request failed for good. The message names the URL, the status and the reason."""

    def __init__(
        self,
        url: str,
        problem: str,
        *,
        status: int | None = None,
        server_message: str | None = None,
        attempts: int | None = None,
    ) -> None:
        self.url = url
        self.status = status
        self.server_message = server_message
        self.attempts = attempts
        message = f"CBS OData request {url} failed"
        if status is not None:
            message += f" with HTTP {status}"
        message += f": {problem}"
        if server_message:
            message += f" (server said: {server_message})"
        if attempts is not None:
            message += f" [{attempts} attempt{'s' if attempts != 1 else ''}]"
        super().__init__(message)


class _Retryable(Exception):
    """A transient failure of one attempt; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.status = status
        self.retry_after = retry_after


def parse_json(body: bytes) -> Any:
    """Parse a response body (UTF-8, a BOM tolerated)."""
    return json.loads(body.decode("utf-8-sig"))


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes the extract's sha256 is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def catalog_url_for(base_url: str) -> str | None:
    """``https://opendata.cbs.nl/ODataApi/odata`` -> ``https://opendata.cbs.nl/ODataCatalog``.

    None when the base URL does not end in ``/ODataApi/odata`` (or ``/ODataFeed/odata``).
    """
    base = base_url.rstrip("/")
    for suffix in _API_SUFFIXES:
        if base.lower().endswith(suffix):
            return base[: -len(suffix)] + "/ODataCatalog"
    return None


def with_query(url: str, params: dict[str, Any] | None) -> str:
    """Add query options to a URL, keeping ``$`` and OData punctuation readable (spaces as %20)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {k for k, _ in query}
    for key, value in (params or {}).items():
        if value is None:
            continue
        if key in present:
            query = [(k, v) for k, v in query if k != key]
        query.append((key, str(value)))
    encoded = urlencode(query, quote_via=quote, safe="$'(),:/")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, encoded, parts.fragment))


def _server_message(response: requests.Response) -> str | None:
    """CBS's error text: ``{"odata.error": {"message": {"value": ...}}}``, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("odata.error") or body.get("error")
        if isinstance(error, dict):
            message = error.get("message")
            if isinstance(message, dict):
                message = message.get("value")
            if message:
                return str(message)[:500]
    text = re.sub(r"<[^>]+>", " ", response.text or "")
    text = " ".join(text.split())
    return text[:300] or None


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if re.fullmatch(r"\d+(\.\d+)?", value) else None


@dataclass
class FetchResult:
    """All records of one (paged) request, with where they came from."""

    url: str  # the first page's full URL
    records: list[dict]
    page_urls: list[str]

    @property
    def pages(self) -> int:
        return len(self.page_urls)

    def sha256(self) -> str:
        return hashlib.sha256(canonical_json(self.records)).hexdigest()


class CbsODataClient:
    """CBS OData v3 client: ``{base_url}/{table_id}/{entity}`` plus the catalog ``{catalog_url}/Tables``.

    ``timeout`` is requests' connect and per-read timeout in seconds; ``max_retries`` is the number of
    retries after the first attempt of each page; the wait before retry *n* (1-based) is
    ``backoff * 2 ** (n - 1)`` seconds, at most ``max_backoff`` (or the server's Retry-After, capped).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30,
        max_retries: int = 4,
        backoff: float = 0.5,
        session: requests.Session | None = None,
        *,
        catalog_url: str | None = None,
        max_backoff: float = 30.0,
        max_pages: int = 10_000,
    ) -> None:
        if not base_url or not base_url.lower().startswith(("http://", "https://")):
            raise ValueError(f"CBS OData base URL must be an http(s) URL, got {base_url!r}")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.catalog_url = (catalog_url or catalog_url_for(self.base_url) or "").rstrip("/") or None
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_pages = max_pages
        self.session = session or requests.Session()
        self._own_session = session is None
        self.session.headers.setdefault("User-Agent", USER_AGENT)

    # -- plumbing -------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def __enter__(self) -> "CbsODataClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def table_url(self, table_id: str, entity: str = "") -> str:
        table_id = table_id.strip()
        if not re.fullmatch(r"[0-9A-Za-z]+", table_id):
            raise ValueError(f"not a CBS table id: {table_id!r}")
        return f"{self.base_url}/{table_id}" + (f"/{entity}" if entity else "")

    def _attempt(self, url: str) -> dict:
        """One GET. Returns the JSON object, raises _Retryable (try again) or CbsODataError (give up)."""
        try:
            response = self.session.get(url, timeout=self.timeout, headers={"Accept": "application/json"})
            body = response.content  # a body cut off mid-way raises here (ChunkedEncodingError)
        except (requests.Timeout, requests.ConnectionError) as error:
            raise _Retryable(f"{type(error).__name__}: {error}") from error
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as error:
            raise _Retryable(f"incomplete response body ({type(error).__name__}: {error})") from error
        except requests.RequestException as error:  # invalid URL, too many redirects, ...
            raise CbsODataError(url, f"{type(error).__name__}: {error}") from error
        status = response.status_code
        if status in _RETRY_STATUSES or status >= 500:
            message = _server_message(response)
            raise _Retryable(
                f"HTTP {status}" + (f" ({message})" if message else ""),
                status=status,
                retry_after=_retry_after(response),
            )
        if status >= 400:
            raise CbsODataError(url, "the request was refused", status=status, server_message=_server_message(response))
        if status != 200:
            raise CbsODataError(url, f"unexpected HTTP status {status} (expected 200)", status=status)
        try:
            data = parse_json(body)
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
            raise _Retryable(f"the body ({len(body)} bytes) is not valid JSON: {error}", status=status) from error
        if not isinstance(data, dict) or not isinstance(data.get("value"), list):
            found = f"keys {sorted(data)[:6]}" if isinstance(data, dict) else type(data).__name__
            raise CbsODataError(url, f"expected a JSON object with a 'value' list, found {found}", status=status)
        return data

    def get_json(self, url: str) -> dict:
        """GET one page with retries; the parsed JSON object."""
        attempts = self.max_retries + 1
        last: _Retryable | None = None
        for attempt in range(1, attempts + 1):
            try:
                return self._attempt(url)
            except _Retryable as error:
                last = error
                if attempt == attempts:
                    break
                wait = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                if error.retry_after is not None:
                    wait = min(self.max_backoff, max(wait, error.retry_after))
                log.warning("CBS OData %s: %s; retry %d/%d in %.2fs", url, error, attempt, self.max_retries, wait)
                time.sleep(wait)
        assert last is not None
        raise CbsODataError(
            url, f"gave up after retries; last error: {last}", status=last.status, attempts=attempts
        )

    def fetch(self, url: str, params: dict[str, Any] | None = None) -> FetchResult:
        """GET ``url`` with ``params`` and every ``odata.nextLink`` page after it. All pages or an error."""
        first = with_query(url, {**(params or {}), "$format": "json"})
        records: list[dict] = []
        page_urls: list[str] = []
        seen: set[str] = set()
        page_url: str | None = first
        while page_url is not None:
            if page_url in seen:
                raise CbsODataError(page_url, "odata.nextLink points to a page already fetched (a loop)")
            if len(page_urls) >= self.max_pages:
                raise CbsODataError(first, f"more than {self.max_pages} pages; refusing to continue")
            seen.add(page_url)
            data = self.get_json(page_url)
            page_urls.append(page_url)
            records.extend(data["value"])
            next_link = data.get("odata.nextLink")
            if next_link:
                next_url = urljoin(page_url, str(next_link))
                if "$format=" not in next_url:  # keep asking for JSON (the default is Atom XML)
                    next_url = with_query(next_url, {"$format": "json"})
                page_url = next_url
            else:
                page_url = None
        return FetchResult(url=first, records=records, page_urls=page_urls)

    def get_all(self, url: str, params: dict[str, Any] | None = None) -> list[dict]:
        """All records of ``url`` (following ``odata.nextLink``), ``$format=json`` added."""
        return self.fetch(url, params).records

    # -- endpoints ------------------------------------------------------------------------------------

    def table_infos(self, table_id: str) -> dict:
        """The table's single TableInfos entry (Identifier, Title, ShortTitle, Period, Modified, ...)."""
        url = self.table_url(table_id, "TableInfos")
        values = self.get_all(url)
        if not values:
            raise CbsODataError(url, "TableInfos is empty")
        return values[0]

    def data_properties(self, table_id: str) -> list[dict]:
        """DataProperties: dimensions, topic groups and topics (Key, Title, Type, Unit, Decimals, ...)."""
        return self.get_all(self.table_url(table_id, "DataProperties"))

    def category_groups(self, table_id: str) -> list[dict]:
        return self.get_all(self.table_url(table_id, "CategoryGroups"))

    def dimension(self, table_id: str, dimension_key: str) -> list[dict]:
        """The categories of one dimension, e.g. ``dimension('50090NED', 'Perioden')``."""
        return self.get_all(self.table_url(table_id, dimension_key))

    def typed_dataset(
        self, table_id: str, filter: str | None = None, select: Iterable[str] | str | None = None
    ) -> list[dict]:
        return self.fetch_dataset(table_id, filter=filter, select=select).records

    def fetch_dataset(
        self,
        table_id: str,
        *,
        filter: str | None = None,
        select: Iterable[str] | str | None = None,
        typed: bool = True,
    ) -> FetchResult:
        if select is not None and not isinstance(select, str):
            select = ",".join(select)
        params = {"$filter": filter or None, "$select": select or None}
        return self.fetch(self.table_url(table_id, "TypedDataSet" if typed else "UntypedDataSet"), params)

    def catalog_tables(self, filter: str | None = None, select: Iterable[str] | str | None = None) -> list[dict]:
        """Entries of ``{catalog}/Tables``: Identifier, Title, ShortTitle, Period, Modified, ..."""
        if not self.catalog_url:
            raise CbsODataError(
                self.base_url,
                "no catalog URL: the base URL does not end in /ODataApi/odata, so pass "
                "catalog_url= (e.g. https://opendata.cbs.nl/ODataCatalog)",
            )
        if select is not None and not isinstance(select, str):
            select = ",".join(select)
        return self.get_all(f"{self.catalog_url}/Tables", {"$filter": filter or None, "$select": select or None})


# ---------------------------------------------------------------------------------------------------
# DataProperties helpers
# ---------------------------------------------------------------------------------------------------


def _title_paths(data_properties: list[dict]) -> dict[Any, str]:
    """ID -> 'Group/Subgroup/Title' following ParentID (the labels StatLine CSV headers are made of)."""
    by_id = {p.get("ID"): p for p in data_properties}
    paths: dict[Any, str] = {}
    for entry in data_properties:
        parts, node, hops = [], entry, 0
        while node is not None and hops < 50:
            parts.append(str(node.get("Title") or "").strip())
            node = by_id.get(node.get("ParentID")) if node.get("ParentID") is not None else None
            hops += 1
        paths[entry.get("ID")] = "/".join(reversed(parts))
    return paths


def property_info(entry: dict, title_path: str | None = None) -> dict:
    key = str(entry.get("Key") or "")
    return {
        "key": key,
        "stem": key_stem(key),
        "title": entry.get("Title"),
        "unit": entry.get("Unit"),
        "decimals": entry.get("Decimals"),
        "type": entry.get("Type"),
        "datatype": entry.get("Datatype"),
        "position": entry.get("Position"),
        "title_path": title_path,
    }


def properties_by_key(data_properties: list[dict]) -> dict[str, dict]:
    """Key -> {key, stem, title, unit, decimals, type, datatype, position, title_path} (keyed entries only)."""
    paths = _title_paths(data_properties)
    return {
        str(p["Key"]): property_info(p, paths.get(p.get("ID")))
        for p in data_properties
        if p.get("Key") and p.get("Type") != "TopicGroup"
    }


def properties_by_stem(data_properties: list[dict]) -> dict[str, dict]:
    """Stem -> property info, so columns are found by ``HuishoudensTotaal`` whatever the ``_<n>`` suffix.

    Every value has ``keys`` (all keys with that stem) and ``ambiguous``. A stem used by one property
    gives that property's info (``key``, ``title``, ``unit``, ``decimals``, ``type``, ``datatype``,
    ``title_path``). Some stems occur more than once in a table (85984NED has ``Nederland_17`` under
    "Herkomstland" and ``Nederland_20`` under "Geboren in Nederland"; 85231ENG has a ``Within1Km`` per
    facility); then ``ambiguous`` is True,
    ``key``/``title`` are None and ``candidates`` lists each property's info: pick one by its
    ``title_path`` (the TopicGroup chain), never by position.
    """
    grouped: dict[str, list[dict]] = {}
    for info in properties_by_key(data_properties).values():
        grouped.setdefault(info["stem"], []).append(info)
    result: dict[str, dict] = {}
    for stem, infos in grouped.items():
        keys = [i["key"] for i in infos]
        if len(infos) == 1:
            result[stem] = {**infos[0], "keys": keys, "ambiguous": False}
        else:
            result[stem] = {
                "key": None,
                "stem": stem,
                "title": None,
                "unit": None,
                "decimals": None,
                "type": None,
                "datatype": None,
                "position": None,
                "title_path": None,
                "keys": keys,
                "ambiguous": True,
                "candidates": infos,
            }
    return result


# ---------------------------------------------------------------------------------------------------
# The live reader
# ---------------------------------------------------------------------------------------------------


def value_text(value: Any) -> str | None:
    """A JSON value as raw text: strings verbatim, numbers as written in the JSON, null -> None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _column_text(values: list[Any]) -> list[str | None]:
    kinds = set(map(type, values))
    if kinds <= {str, type(None)}:
        return values
    if kinds <= {int, float, type(None)}:
        return [None if v is None else str(v) for v in values]
    return [value_text(v) for v in values]


def records_to_text_frame(records: list[dict]) -> pd.DataFrame:
    """Records -> a frame of text cells (None for null), columns in the order the feed gives them."""
    columns: dict[str, None] = dict.fromkeys(records[0]) if records else {}
    first = columns.keys()
    for record in records:  # records normally share one key set; a stray key is appended, not lost
        if record.keys() != first:
            columns.update(dict.fromkeys(record))
    data = {c: _column_text([r.get(c) for r in records]) for c in columns}
    return pd.DataFrame(data, columns=list(columns), dtype=object)


def _period_dimension(data_properties: list[dict]) -> str | None:
    for entry in data_properties:
        if entry.get("Type") in TIME_TYPES and entry.get("Key"):
            return str(entry["Key"])
    keys = {str(p.get("Key")) for p in data_properties}
    return next((k for k in PERIOD_DIMENSIONS if k in keys), None)


def period_filter(period_key: str, year: int) -> str:
    return f"{period_key} eq '{int(year)}JJ00'"


def combine_filters(*filters: str | None) -> str | None:
    parts = [f.strip() for f in filters if f and f.strip()]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return " and ".join(f"({p})" for p in parts)


def read_live_table(
    client: CbsODataClient,
    table_id: str,
    *,
    year: int,
    filter: str | None = None,
) -> RawExtract:
    """One CBS table and year, live from OData, in the raw long layout.

    With a time dimension the query asks for ``{Perioden} eq '{year}JJ00'`` (and ``filter``, e.g. the
    catalog's ``live.filter``); a table without one (the yearly KWB / Nabijheid tables) must state that
    year as its TableInfos ``Period``. Raises :class:`CbsODataError` when the service fails and
    :class:`SourceFormatError` when the answer is not what a table of that year should look like (no
    records, a different period). The extract's ``source`` is the first page's full URL and its
    ``sha256`` is taken over the canonical JSON of all records of all pages.
    """
    table_id = table_id.strip()
    infos = client.table_infos(table_id)
    data_properties = client.data_properties(table_id)
    period_key = _period_dimension(data_properties)
    dimension_keys = [str(p["Key"]) for p in data_properties if p.get("Type") == "Dimension" and p.get("Key")]
    geo_keys = [str(p["Key"]) for p in data_properties if p.get("Type") in GEO_TYPES and p.get("Key")]

    if period_key is not None:
        query_filter = combine_filters(period_filter(period_key, year), filter)
    else:
        table_year = period_year(infos.get("Period"))
        period_text = str(infos.get("Period") or "").strip()
        if table_year is not None and re.fullmatch(r"\d{4}", period_text) and table_year != int(year):
            raise SourceFormatError(
                client.table_url(table_id, "TableInfos"),
                f"table {table_id} to hold {year} (it has no period dimension)",
                f"Period {infos.get('Period')!r}",
                hint="Each KWB-style table holds one year; pick that year's table id from the catalog",
            )
        query_filter = combine_filters(filter)

    fetched = client.fetch_dataset(table_id, filter=query_filter)
    if not fetched.records:
        raise SourceFormatError(
            fetched.url,
            f"at least one record of table {table_id} for {year}",
            "none",
            hint="CBS has not published that year (or the filter matches nothing)",
        )
    frame = records_to_text_frame(fetched.records)
    dimensions = [d for d in dimension_keys if d in frame.columns]
    long = odata_records_to_long(
        frame,
        source=fetched.url,
        first_data_row=1,  # record number in the feed
        expected_year=int(year),
        dimension_columns=dimensions,
    )
    by_key = properties_by_key(data_properties)
    metadata = {
        "format": "odata_live",
        "base_url": client.base_url,
        "request_url": fetched.url,
        "filter": query_filter,
        "period_dimension": period_key,
        "geo_dimension": geo_keys[0] if geo_keys else None,
        "dimensions": dimensions,
        "columns": list(frame.columns),
        "records": len(fetched.records),
        "pages": fetched.pages,
        "retrieved_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "table_infos": {k: infos.get(k) for k in TABLE_INFO_FIELDS if k in infos},
        "data_properties": by_key,
        "properties_by_stem": properties_by_stem(data_properties),
    }
    return RawExtract(
        frame=long,
        source=fetched.url,
        sha256=fetched.sha256(),
        cbs_table_id=table_id,
        metadata=metadata,
    )


__all__ = [
    "CbsODataClient",
    "CbsODataError",
    "DEFAULT_BASE_URL",
    "DEFAULT_CATALOG_URL",
    "FetchResult",
    "canonical_json",
    "catalog_url_for",
    "combine_filters",
    "properties_by_key",
    "properties_by_stem",
    "read_live_table",
    "records_to_text_frame",
]
