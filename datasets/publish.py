"""The version lifecycle in the store: staging, publishing, discarding, removing, retention.

Layout under the store root:

    _staging/{slug}/{build_id}/_build            marker written first (JSON: slug, build id, start time)
    _staging/{slug}/{build_id}/part-0.parquet     data files, as the build writes them
    datasets/{slug}/v{n}/...                       a published version: the same files plus
    datasets/{slug}/v{n}/_published                the manifest (files, sizes, sha256), written last

Protocol: a version directory is complete only when it holds `_published`.

- Local store: the manifest is written into the staging directory, then the
  whole directory is renamed to `datasets/{slug}/v{n}` (one atomic rename on the
  same file system), so the version appears complete or not at all.
- Object store (S3): every file is copied to `datasets/{slug}/v{n}/`, then the
  manifest is written last; a crash mid-copy leaves a directory without
  `_published`, which readers ignore and `orphan_versions` reports.

The database is the authority on what partners may read: the caller marks the
version row published, in one transaction, only after `publish` returned. If
the process dies between the two, the version directory is an orphan (no
published row references it); `orphan_versions` finds it and `remove_version`
deletes it. Staging directories of builds that died are removed by
`cleanup_stale_staging`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from datasets.storage import Store

if TYPE_CHECKING:
    from datasets.build import BuildResult

STAGING_DIR = "_staging"
DATASETS_DIR = "datasets"
BUILD_MARKER = "_build"
PUBLISHED_MARKER = "_published"
MANIFEST_FORMAT = 1
_VERSION_DIR = re.compile(r"v([1-9][0-9]*)")


class PublishError(Exception):
    """A version could not be published (it exists already, or the staged files are not what the build wrote)."""


@dataclass(frozen=True)
class Staging:
    """Where one build writes its files before they are published."""

    store: Store
    slug: str
    build_id: str

    @classmethod
    def create(cls, store: Store, slug: str) -> Staging:
        staging = cls(store, slug, f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}")
        marker = {"slug": slug, "build_id": staging.build_id, "started_at": _now_iso()}
        store.write_bytes(staging.path_of(BUILD_MARKER), json.dumps(marker).encode())
        return staging

    @property
    def path(self) -> str:
        return self.store.path(STAGING_DIR, self.slug, self.build_id)

    def path_of(self, relative: str) -> str:
        return f"{self.path}/{relative}"


def version_path(store: Store, slug: str, number: int) -> str:
    return store.path(DATASETS_DIR, slug, f"v{number}")


def publish(store: Store, slug: str, version_number: int, build_result: BuildResult) -> dict:
    """Move a build's staged files to `datasets/{slug}/v{n}/` and mark it complete; returns the manifest.

    Versions are immutable: publishing onto an existing version directory fails.
    """
    staging = build_result.staging
    if staging.store != store or staging.slug != slug:
        raise PublishError("the build was staged for another store or dataset")
    for entry in build_result.files:
        path = staging.path_of(entry.path)
        if not store.exists(path) or store.size_bytes(path) != entry.size_bytes:
            raise PublishError(f"staged file {entry.path} is missing or changed")
    final = version_path(store, slug, version_number)
    if store.exists(final):
        raise PublishError(f"version {version_number} of {slug} exists already")

    manifest = {
        "format": MANIFEST_FORMAT,
        "slug": slug,
        "version": version_number,
        "build_id": staging.build_id,
        "release": build_result.release,
        "rows": build_result.row_count,
        "size_bytes": build_result.size_bytes,
        "schema_hash": build_result.schema_hash,
        "content_hash": build_result.content_hash,
        "files": [entry.to_dict() for entry in build_result.files],
        "published_at": _now_iso(),
    }
    manifest_bytes = json.dumps(manifest, indent=1).encode()
    store.fs.create_dir(store.path(DATASETS_DIR, slug), recursive=True)
    relative_paths = [entry.path for entry in build_result.files]
    if store.is_local:
        _publish_by_rename(store, staging, final, relative_paths, manifest_bytes)
    else:
        _publish_by_copy(store, staging, final, relative_paths, manifest_bytes)
    return manifest


def _publish_by_rename(store: Store, staging: Staging, final: str, files: list[str], manifest: bytes) -> None:
    store.write_bytes(staging.path_of(PUBLISHED_MARKER), manifest)
    # Files on disk before the rename, and the rename on disk before the caller commits: after a power cut the
    # database never lists a version whose files are missing.
    _fsync_local([staging.path_of(path) for path in [*files, PUBLISHED_MARKER]])
    store.fs.move(staging.path, final)  # rename(2): atomic on one file system
    directories = {f"{final}/{path}".rsplit("/", 1)[0] for path in files} | {final, final.rsplit("/", 1)[0]}
    _fsync_local(sorted(directories))


def _publish_by_copy(store: Store, staging: Staging, final: str, files: list[str], manifest: bytes) -> None:
    for path in [BUILD_MARKER, *files]:
        target = f"{final}/{path}"
        store.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        store.fs.copy_file(staging.path_of(path), target)
    store.write_bytes(f"{final}/{PUBLISHED_MARKER}", manifest)  # last: this makes the version complete
    store.delete_dir(staging.path)


def discard(staging: Staging) -> None:
    """Delete a build's staged files (a failed build, or one whose content matched the published version)."""
    staging.store.delete_dir(staging.path)


def cleanup_stale_staging(store: Store, older_than_seconds: float, *, now_seconds: float | None = None) -> list[str]:
    """Delete staging directories whose build started more than `older_than_seconds` ago; returns their paths.

    Use a threshold well above the longest build: a running build's staging looks exactly like a dead one's.
    """
    now_seconds = time.time() if now_seconds is None else now_seconds
    return discard_staging(store, started_before=now_seconds - older_than_seconds)


def discard_staging(store: Store, *, started_before: float, keep_slugs: Iterable[str] = ()) -> list[str]:
    """Delete the staging directories of builds started before `started_before` (epoch seconds), or without a
    build marker, except those of `keep_slugs`; returns their paths.

    The caller knows which builds are dead (no refresh of the dataset runs): the platform sweeps a killed
    build's staging at once this way, and everything else after a long age (`cleanup_stale_staging`).
    """
    keep = set(keep_slugs)
    removed = []
    for slug in store.subdirectories(store.path(STAGING_DIR)):
        if slug in keep:
            continue
        for build_id in store.subdirectories(store.path(STAGING_DIR, slug)):
            path = store.path(STAGING_DIR, slug, build_id)
            marker = f"{path}/{BUILD_MARKER}"
            started = store.modified_seconds(marker) if store.exists(marker) else None
            if started is None or started < started_before:
                store.delete_dir(path)
                removed.append(path)
    return removed


def version_numbers(store: Store, slug: str) -> list[int]:
    """Every version directory in the store for `slug`, complete or not."""
    names = store.subdirectories(store.path(DATASETS_DIR, slug))
    return sorted(int(match.group(1)) for name in names if (match := _VERSION_DIR.fullmatch(name)))


def is_complete(store: Store, slug: str, number: int) -> bool:
    return store.exists(f"{version_path(store, slug, number)}/{PUBLISHED_MARKER}")


def read_manifest(store: Store, slug: str, number: int) -> dict:
    return json.loads(store.read_bytes(f"{version_path(store, slug, number)}/{PUBLISHED_MARKER}"))


def verify_version(store: Store, slug: str, number: int) -> list[str]:
    """Problems with a published version's files against its manifest (missing, wrong size, wrong sha256)."""
    if not is_complete(store, slug, number):
        return [f"version {number} of {slug} has no {PUBLISHED_MARKER} marker"]
    root = version_path(store, slug, number)
    problems = []
    for entry in read_manifest(store, slug, number)["files"]:
        path = f"{root}/{entry['path']}"
        if not store.exists(path):
            problems.append(f"{entry['path']}: missing")
        elif store.size_bytes(path) != entry["size_bytes"] or store.sha256(path) != entry["sha256"]:
            problems.append(f"{entry['path']}: content differs from the manifest")
    return problems


def orphan_versions(store: Store, slug: str, published_numbers: Iterable[int]) -> list[int]:
    """Version directories no published version row references (crashed publishes, unfinished copies).

    Leave out versions being published right now: between `publish` and the
    database commit a new version looks exactly like an orphan.
    """
    published = set(published_numbers)
    return [number for number in version_numbers(store, slug) if number not in published]


def remove_version(store: Store, slug: str, number: int) -> None:
    """Delete a version: its marker first, so a half-deleted version is never mistaken for a complete one."""
    store.delete_file(f"{version_path(store, slug, number)}/{PUBLISHED_MARKER}")
    store.delete_dir(version_path(store, slug, number))


def versions_to_retire(published_numbers: list[int], keep: int, pinned: set[int]) -> list[int]:
    """Published versions to remove: every one but the newest `keep`, except pinned ones (kept on top of `keep`)."""
    if keep < 1:
        raise ValueError("keep at least one version")
    newest = set(sorted(set(published_numbers), reverse=True)[:keep])
    return sorted(number for number in set(published_numbers) if number not in newest and number not in pinned)


def _fsync_local(paths: list[str]) -> None:
    for path in paths:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
