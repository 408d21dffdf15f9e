"""The `http_json` connector: records from a JSON API over HTTP(S), page by page, with retries.

Pagination follows a next-page link in the body, or counts pages with a page
parameter, or reads one response. Failures that may pass (connection errors,
timeouts, 429 and 5xx) are retried with exponential backoff, honouring
Retry-After; the bearer token, if any, comes from token_env or token_file and is
never sent to another host than the one in `url`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any
from urllib.parse import urljoin, urlsplit

import pyarrow as pa
import requests

from .base import Connector, ConnectorError, Option, read_declared_columns, split_batches

PAGINATIONS = ("none", "next_link", "page")
RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_RETRY_AFTER_SECONDS = 300.0


class HttpJsonConnector(Connector):
    kind = "http_json"
    declared_options = (
        Option("url", str, required=True, help="the first page, http:// or https://"),
        Option("records_path", str, default="", help="dot path to the list of records in each body; '' = the body"),
        Option("pagination", str, default="none", choices=PAGINATIONS),
        Option("next_link_path", str, default="next", help="dot path to the next page URL (next_link pagination)"),
        Option("page_param", str, default="page", help="query parameter holding the page number (page pagination)"),
        Option("page_size_param", str, default="page_size", help="query parameter holding the page size"),
        Option("page_size", int, default=100, minimum=1),
        Option("first_page", int, default=1, minimum=0),
        Option("max_pages", int, default=100_000, minimum=1, help="stop after this many pages"),
        Option("params", dict, help="extra query parameters for every request"),
        Option("headers", dict, help="extra request headers (not Authorization: use token_env or token_file)"),
        Option("token", secret=True, help="bearer token, as token_env or token_file"),
        Option("timeout_seconds", float, default=30.0, minimum=0.001),
        Option("max_retries", int, default=3, minimum=0, maximum=20),
        Option("backoff_seconds", float, default=0.5, minimum=0.0, help="first retry delay; doubles each retry"),
        Option("columns", dict, help="declared schema {name: type}; otherwise inferred from the first page"),
    )
    # How the connector waits between retries (a test can record the delays instead).
    sleep: Callable[[float], None] = staticmethod(time.sleep)

    def check_options(self, options: dict[str, Any], problems: list[tuple[str, str]]) -> None:
        url = urlsplit(options["url"] or "")
        if options["url"] is not None and (url.scheme not in ("http", "https") or not url.netloc):
            problems.append(("url", "must be an http:// or https:// URL"))
        if url.password is not None or url.username is not None:
            problems.append(("url", "credentials must not be written in the URL; use token_env or token_file"))
        for name, value in (options["headers"] or {}).items():
            if str(name).lower() in ("authorization", "proxy-authorization", "cookie"):
                problems.append(
                    (f"headers.{name}", "credentials must not be written inline; use token_env or token_file")
                )
            elif not isinstance(value, str):
                problems.append((f"headers.{name}", "must be a string"))
        self.declared_types = read_declared_columns(options["columns"], problems)

    @cached_property
    def session(self) -> requests.Session:
        session = requests.Session()
        session.headers.update({"Accept": "application/json", **(self.options["headers"] or {})})
        return session

    def schema(self) -> pa.Schema:
        if self.declared_types:
            return pa.schema(list(self.declared_types.items()))
        return self._inferred_schema

    @cached_property
    def _inferred_schema(self) -> pa.Schema:
        """The schema of the first page's records (fetched once per connector)."""
        records = next(self._pages(), [])
        if not records:
            raise ConnectorError("the first page has no records to infer a schema from; declare `columns`")
        try:
            return pa.Table.from_pylist(records).schema
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ConnectorError(f"cannot infer a schema from the first page: {exc}; declare `columns`") from exc

    def batches(self) -> Iterator[pa.RecordBatch]:
        schema = self.schema()
        return split_batches((self._to_batch(records, schema) for records in self._pages()), self.batch_rows)

    @staticmethod
    def _to_batch(records: list[dict], schema: pa.Schema) -> pa.RecordBatch:
        """Each column's values as JSON gave them, converted to the schema's type (e.g. float to decimal)."""
        arrays = []
        for field in schema:
            try:
                arrays.append(pa.array([record.get(field.name) for record in records]).cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise ConnectorError(
                    f"field {field.name!r} does not fit {field.type}: {exc}; declare `columns`"
                ) from exc
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def _pages(self) -> Iterator[list[dict]]:
        """The records of each page, in order."""
        options = self.options
        url, page = options["url"], options["first_page"]
        for _ in range(options["max_pages"]):
            params = dict(options["params"] or {})
            if options["pagination"] == "page":
                params |= {options["page_param"]: page, options["page_size_param"]: options["page_size"]}
            body = self._get(url, params)
            records = _at_path(body, options["records_path"])
            if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
                raise ConnectorError(f"{options['records_path'] or 'the body'} is not a list of JSON objects")
            yield records
            if options["pagination"] == "page":
                if len(records) < options["page_size"]:
                    return
                page += 1
            elif options["pagination"] == "next_link":
                next_url = _at_path(body, options["next_link_path"], missing=None)
                if not next_url:
                    return
                url = self._same_origin(urljoin(url, str(next_url)))
            else:
                return

    def _same_origin(self, url: str) -> str:
        """Refuse to follow a link to another host: the token must only go where `url` points."""
        origin, target = urlsplit(self.options["url"]), urlsplit(url)
        if (target.scheme, target.netloc) != (origin.scheme, origin.netloc):
            raise ConnectorError(
                f"next link leaves {origin.scheme}://{origin.netloc}: {target.scheme}://{target.netloc}"
            )
        return url

    def _get(self, url: str, params: dict[str, Any]) -> Any:
        options = self.options
        headers = {"Authorization": f"Bearer {self.secrets['token']}"} if self.secrets.get("token") else {}
        for attempt in range(options["max_retries"] + 1):
            retry_after = None
            try:
                response = self.session.get(url, params=params, headers=headers, timeout=options["timeout_seconds"])
            except requests.Timeout:
                problem = f"timed out after {options['timeout_seconds']} s"
            except requests.ConnectionError as exc:
                problem = f"connection failed: {type(exc).__name__}"
            else:
                if response.status_code < 400:
                    try:
                        return response.json()
                    except ValueError as exc:
                        raise ConnectorError(f"GET {_without_query(url)}: the response is not JSON") from exc
                problem = f"HTTP {response.status_code}"
                if response.status_code not in RETRY_STATUSES:
                    raise ConnectorError(f"GET {_without_query(url)}: {problem}", transient=False)
                retry_after = _retry_after_seconds(response)
            if attempt < options["max_retries"]:
                self.sleep(retry_after if retry_after is not None else options["backoff_seconds"] * 2**attempt)
        raise ConnectorError(
            f"GET {_without_query(url)}: {problem} (after {options['max_retries'] + 1} attempts)", transient=True
        )


def _at_path(body: Any, path: str, missing: Any = ...) -> Any:
    """The value at a dot path ('data.items'); '' is the body itself."""
    value = body
    for key in filter(None, path.split(".")):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        elif missing is not ...:
            return missing
        else:
            raise ConnectorError(f"the response has nothing at {path!r}")
    return value


def _retry_after_seconds(response: requests.Response) -> float | None:
    """Retry-After given in seconds (the HTTP-date form is treated as absent), capped."""
    value = response.headers.get("Retry-After", "").strip()
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_SECONDS)
    except ValueError:
        return None


def _without_query(url: str) -> str:
    """A URL fit for an error message: query strings may hold API keys."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
