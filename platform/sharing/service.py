"""Delta Sharing's domain: which tables an institution sees, which version a request reads, its files.

A table is a dataset the institution is granted in mode `download` now. One it is not granted
does not exist for it: every lookup answers NOT_FOUND, never FORBIDDEN, so a partner cannot
learn what others may download. Only datasets whose versions carry no identifying column are
downloadable: the open tier publishes none (its spec may not declare one), and a version whose
spec has one anyway is refused here too, so a file can never be joined with another partner's
on a pseudonym (SQL re-keys pseudonyms per partner; files are the same bytes for everyone).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
from django.conf import settings
from django.utils import timezone

from access import service as access
from access.service import Grant
from catalog.models import Dataset, DatasetVersion
from datasets.query.bindings import IDENTIFYING_ROLES
from datasets.spec import Mode
from datasets.storage import Store
from sharing import protocol
from vitamin.refusals import Kind, Refusal


@dataclass(frozen=True)
class SharedTable:
    schema: str
    name: str
    grant: Grant

    @property
    def dataset(self) -> Dataset:
        return self.grant.dataset


@dataclass(frozen=True)
class SharedFile:
    path: str  # relative to the version's location
    size: int
    rows: int
    partition_values: dict[str, str]


def not_found(message: str) -> Refusal:
    return Refusal(message, code="not_found", kind=Kind.NOT_FOUND)


def tables(institution_id: int) -> list[SharedTable]:
    """Every table the institution sees now, by schema and name."""
    found = [
        SharedTable(protocol.schema_name(grant.dataset.theme), grant.dataset.slug, grant)
        for grant in access.active_grants(institution_id, Mode.DOWNLOAD)
        if grant.dataset.is_active
    ]
    return sorted(found, key=lambda table: (table.schema, table.name))


def check_share(share: str) -> None:
    if share != protocol.SHARE:
        raise not_found(f"There is no share {share!r}.")


def schemas(institution_id: int, share: str) -> list[str]:
    check_share(share)
    return sorted({table.schema for table in tables(institution_id)})


def tables_in(institution_id: int, share: str, schema: str | None = None) -> list[SharedTable]:
    check_share(share)
    found = tables(institution_id)
    if schema is not None:
        found = [table for table in found if table.schema == schema]
        if not found:
            raise not_found(f"There is no schema {schema!r} in share {share!r}.")
    return found


def table(institution_id: int, share: str, schema: str, name: str) -> SharedTable:
    for candidate in tables_in(institution_id, share):
        if candidate.schema == schema and candidate.name == name:
            return candidate
    raise not_found(f"There is no table {share}.{schema}.{name}.")


def parse_timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise Refusal(
            f"The timestamp {text!r} is not an ISO 8601 time such as 2026-01-31T00:00:00Z.", code="invalid_timestamp"
        ) from None
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, timezone.get_default_timezone())


def version_of(table: SharedTable, *, version: int | None = None, timestamp: str | None = None) -> DatasetVersion:
    """The version a request reads: a pinned subscription reads its pin; else the version asked for,
    the one current at `timestamp` (as the SQL API resolves an as-of time), or the latest."""
    if version is not None and timestamp is not None:
        raise Refusal("Give a version or a timestamp, not both.", code="invalid_parameter")
    dataset, pinned = table.dataset, table.grant.pinned_version
    if timestamp is not None:
        chosen = dataset.version_at(parse_timestamp(timestamp))
        if chosen is None:
            raise not_found(f"{table.name} had no published version at {timestamp}.")
    elif version is not None:
        chosen = dataset.versions.filter(number=version, status=DatasetVersion.Status.PUBLISHED).first()
        if chosen is None:
            raise not_found(f"{table.name} has no published version {version}.")
    else:
        chosen = pinned or dataset.latest_version()
        if chosen is None:
            raise not_found(f"{table.name} has no published version yet.")
    if pinned is not None and chosen.pk != pinned.pk:
        raise Refusal(
            f"Your subscription to {table.name} is pinned to version {pinned.number}.",
            code="version_pinned",
            kind=Kind.CONFLICT,
        )
    if chosen.files_removed_at is not None:
        raise not_found(f"Version {chosen.number} of {table.name} is retired.")
    spec = chosen.dataset_spec
    identifying = [column.name for column in spec.published_columns if column.role in IDENTIFYING_ROLES]
    if identifying:
        raise Refusal(
            f"Version {chosen.number} of {table.name} carries identifying columns ({', '.join(identifying)}) "
            "and is not downloadable; query it with SQL, which re-keys them for you.",
            code="identifiers_not_downloadable",
            kind=Kind.FORBIDDEN,
        )
    return chosen


def store() -> Store:
    return Store.from_url(settings.STORE_URL)


def open_file(version: DatasetVersion, path: str):
    """A version's file, open for reading, and its size. A local file is a plain file (the web server
    may send it with sendfile); an object store's is streamed through Vitamin."""
    target = store()
    location = target.path(version.location, path)
    if target.is_local:
        handle = open(location, "rb")  # noqa: SIM115 - the response closes it
        return handle, os.fstat(handle.fileno()).st_size
    handle = target.fs.open_input_file(location)
    return handle, handle.size()


def files_of(version: DatasetVersion) -> list[SharedFile]:
    """The version's Parquet files, each with its row count and, for hive-partitioned versions, the
    partition values its path carries."""
    target = store()
    found = []
    for entry in version.data_files:
        path = entry["path"]
        rows = _row_count(target, target.path(version.location, path), entry.get("sha256", ""))
        values = dict(part.split("=", 1) for part in Path(path).parts[:-1] if "=" in part)
        found.append(SharedFile(path, int(entry.get("size_bytes") or 0), rows, values))
    return found


def _row_count(target: Store, path: str, checksum: str) -> int:
    return _row_count_cached(settings.STORE_URL, path, checksum)


@functools.lru_cache(maxsize=4096)
def _row_count_cached(store_url: str, path: str, checksum: str) -> int:
    """Rows of one file, from its footer, on a local or object store (a version's files never change;
    the store and checksum in the key tell apart two stores that reused a path)."""
    with Store.from_url(store_url).fs.open_input_file(path) as handle:
        return pq.read_metadata(handle).num_rows


def arrow_schema(version: DatasetVersion, shared: list[SharedFile]):
    """The table's columns: the files' own, then the partition columns the paths carry."""
    import pyarrow as pa

    if not shared:
        return pa.schema([(column["name"], pa.string()) for column in version.schema]), []
    target = store()
    with target.fs.open_input_file(target.path(version.location, shared[0].path)) as handle:
        schema = pq.read_schema(handle)
    partition_columns = list(shared[0].partition_values)
    for name in partition_columns:
        if name not in schema.names:
            schema = schema.append(pa.field(name, pa.string()))
    return schema, partition_columns


def within_limit(shared: list[SharedFile], limit: int | None) -> list[SharedFile]:
    """`limitHint`: the first files that hold at least `limit` rows (all of them without one)."""
    if limit is None:
        return shared
    chosen, rows = [], 0
    for entry in shared:
        if rows >= limit and chosen:
            break
        chosen.append(entry)
        rows += entry.rows
    return chosen
