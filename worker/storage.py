"""Blob Storage at the edges: streamed, allow-listed input and idempotent artifact output (manifest last).

Two small ports — `InputSource` (open a blob or file as a stream of chunks) and `ArtifactStore` (put named
artifacts under a job's output prefix, manifest last) — with Blob and local-file adapters. Azure errors are
translated to the worker's taxonomy in `_translate`, and nowhere else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import BlobServiceClient

from worker.blobs import BlobRef
from worker.errors import InputForbidden, InputNotFound, InputTooLarge, Transient
from worker.jobs import ArtifactEntry, Manifest

__all__ = [
    "CHUNK_BYTES",
    "ArtifactStore",
    "BlobArtifacts",
    "BlobInput",
    "InputSource",
    "InputStream",
    "LocalArtifacts",
    "LocalInput",
    "ManifestConflict",
    "blob_service_client",
]

#: Block and ranged-GET size. The SDK defaults (64 MiB single put, 32 MiB first get) would buffer whole
#: inputs in memory; 4 MiB keeps a job's footprint small at full throughput (research/platform.md §1.3).
CHUNK_BYTES = 4 * 1024 * 1024
#: Input is read in ranged GETs of this size: it bounds a job's input buffer (hundreds of jobs may be
#: streaming at once), and paced jobs need only ~6 KB/s, so small ranges cost nothing.
INPUT_RANGE_BYTES = 512 * 1024
MANIFEST = "manifest.json"


class ManifestConflict(Exception):
    """Another run wrote the manifest first (or it changed under us): this run must not commit."""


@dataclass(frozen=True, slots=True)
class InputStream:
    """An opened input: facts known before the first byte, and the bytes as an async iterator."""

    size: int
    etag: str | None
    content_type: str | None
    chunks: AsyncIterator[bytes]


class InputSource(Protocol):
    def open(self, ref: BlobRef) -> contextlib.AbstractAsyncContextManager[InputStream]: ...


class ArtifactStore(Protocol):
    async def read_manifest(self) -> tuple[Manifest | None, str | None]:
        """The existing manifest (if any) and a version token for `put_manifest(if_version=...)`."""
        ...

    async def put(self, name: str, source: Path | bytes, *, content_type: str) -> ArtifactEntry: ...

    async def put_manifest(self, manifest: Manifest, *, if_version: str | None) -> None:
        """Write the manifest only if it is still at `if_version` (None = must not exist yet)."""
        ...


def blob_service_client(
    *, account_url: str, credential: Any = None, connection_string: str | None = None
) -> BlobServiceClient:
    """A client tuned for streaming (4 MiB blocks and gets). Exactly one of credential / connection string."""
    tuning: dict[str, Any] = {
        "max_single_put_size": CHUNK_BYTES,
        "max_block_size": CHUNK_BYTES,
        "max_single_get_size": CHUNK_BYTES,
        "max_chunk_get_size": CHUNK_BYTES,
    }
    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string, **tuning)
    return BlobServiceClient(account_url, credential=credential, **tuning)


@contextlib.contextmanager
def _translate(what: str, *, not_found: type[Exception] = InputNotFound) -> Iterator[None]:
    """Map Azure SDK errors to the taxonomy: 404 → not found, 401/403 → forbidden, else transient."""
    try:
        yield
    except ResourceNotFoundError as exc:
        raise not_found(f"{what}: not found ({_code(exc)})") from exc
    except ClientAuthenticationError as exc:
        raise InputForbidden(f"{what}: authentication failed ({_code(exc)})") from exc
    except HttpResponseError as exc:
        if exc.status_code == 403:
            raise InputForbidden(f"{what}: access denied ({_code(exc)})") from exc
        if exc.status_code == 404:
            raise not_found(f"{what}: not found ({_code(exc)})") from exc
        raise Transient(f"{what}: storage error {exc.status_code} ({_code(exc)})") from exc
    except AzureError as exc:
        raise Transient(f"{what}: storage unreachable ({type(exc).__name__})") from exc


def _code(exc: HttpResponseError) -> str:
    return str(getattr(exc, "error_code", None) or exc.reason or exc.status_code)


class BlobInput:
    """Streams input blobs chunk by chunk; never holds more than one chunk. Rejects inputs over `max_bytes`.

    The client is borrowed: its owner closes it.
    """

    def __init__(
        self, client: BlobServiceClient, *, max_bytes: int, range_bytes: int = INPUT_RANGE_BYTES
    ) -> None:
        self._client = client
        self._max_bytes = max_bytes
        self._range_bytes = range_bytes

    @asynccontextmanager
    async def open(self, ref: BlobRef) -> AsyncIterator[InputStream]:
        blob = self._client.get_blob_client(ref.container, ref.name)
        what = f"input {ref.account}/{ref.container}/{ref.name}"
        with _translate(what):
            props = await blob.get_blob_properties()
        size = int(props.size)
        if size > self._max_bytes:
            raise InputTooLarge(f"{what} is {size} bytes; MAX_INPUT_BYTES is {self._max_bytes}")
        if size == 0:
            yield InputStream(0, props.etag, props.content_settings.content_type, _empty())
            return

        async def chunks() -> AsyncIterator[bytes]:
            # One ranged GET at a time, each pinned to the etag we sized: a blob replaced mid-read
            # fails (transient) instead of splicing two versions together.
            # Ranges are not traced: spans must not grow with the audio's length, and the decoder pulls
            # them from a context without the job's span (each would start an orphan trace).
            for offset in range(0, size, self._range_bytes):
                with _translate(what):
                    downloader = await blob.download_blob(
                        offset=offset,
                        length=min(self._range_bytes, size - offset),
                        etag=props.etag,
                        match_condition=_if_match(),
                        tracing_options={"enabled": False},
                    )
                    chunk = await downloader.readall()
                yield chunk

        yield InputStream(size, props.etag, props.content_settings.content_type, chunks())


class LocalInput:
    """Local files for `voicelive-worker process FILE`; the ref's name is the path."""

    def __init__(self, *, max_bytes: int, chunk_bytes: int = 256 * 1024) -> None:
        self._max_bytes = max_bytes
        self._chunk_bytes = chunk_bytes

    @asynccontextmanager
    async def open(self, ref: BlobRef) -> AsyncIterator[InputStream]:
        path = Path(ref.name)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise InputNotFound(f"input file {path} does not exist") from None
        except OSError as exc:
            raise InputForbidden(f"input file {path}: {exc.strerror}") from None
        if size > self._max_bytes:
            raise InputTooLarge(f"input file {path} is {size} bytes; the limit is {self._max_bytes}")

        async def chunks() -> AsyncIterator[bytes]:
            with path.open("rb") as fh:
                while chunk := fh.read(self._chunk_bytes):
                    yield chunk

        yield InputStream(size, None, None, chunks())


async def _empty() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover


def _if_match() -> Any:
    from azure.core import MatchConditions

    return MatchConditions.IfNotModified


class BlobArtifacts:
    """Artifacts under one output prefix in Blob Storage. Re-runs overwrite artifacts; the manifest is
    written with an etag condition, so only one run can commit it."""

    def __init__(self, client: BlobServiceClient, prefix: BlobRef) -> None:
        self._client = client
        self._prefix = prefix

    def _blob(self, name: str) -> Any:
        ref = self._prefix.child(name)
        return self._client.get_blob_client(ref.container, ref.name)

    async def read_manifest(self) -> tuple[Manifest | None, str | None]:
        blob = self._blob(MANIFEST)
        try:
            with _translate(f"manifest {self._prefix.url}", not_found=_Missing):
                downloader = await blob.download_blob()
                data = await downloader.readall()
        except _Missing:
            return None, None
        return _load_manifest(data), downloader.properties.etag

    async def put(self, name: str, source: Path | bytes, *, content_type: str) -> ArtifactEntry:
        digest = hashlib.sha256()
        size = 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal size
            for chunk in _iter_source(source):
                digest.update(chunk)
                size += len(chunk)
                yield chunk

        length = source.stat().st_size if isinstance(source, Path) else len(source)
        with _translate(f"artifact {name}", not_found=Transient):
            await self._blob(name).upload_blob(
                body(), length=length, overwrite=True, max_concurrency=2,
                content_settings=ContentSettings(content_type=content_type),
            )  # fmt: skip
        return ArtifactEntry(name=name, size=size, sha256=digest.hexdigest(), content_type=content_type)

    async def put_manifest(self, manifest: Manifest, *, if_version: str | None) -> None:
        from azure.core import MatchConditions

        data = manifest.model_dump_json(indent=2).encode()
        conditions: dict[str, Any] = (
            {"etag": if_version, "match_condition": MatchConditions.IfNotModified}
            if if_version
            else {"if_none_match": "*"}
        )
        try:
            with _translate("manifest", not_found=Transient):
                await self._blob(MANIFEST).upload_blob(
                    data, overwrite=True, content_settings=ContentSettings(content_type="application/json"),
                    **conditions,
                )  # fmt: skip
        except Transient as exc:
            if isinstance(exc.__cause__, ResourceExistsError | ResourceModifiedError) or (
                isinstance(exc.__cause__, HttpResponseError) and exc.__cause__.status_code in {409, 412}
            ):
                raise ManifestConflict(f"manifest at {self._prefix.url} was written by another run") from exc
            raise


class LocalArtifacts:
    """Artifacts in a local directory (for `process --out DIR`, tests and the demo's downloads)."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory

    async def read_manifest(self) -> tuple[Manifest | None, str | None]:
        path = self._dir / MANIFEST
        if not path.exists():
            return None, None
        data = path.read_bytes()
        return _load_manifest(data), hashlib.sha256(data).hexdigest()

    async def put(self, name: str, source: Path | bytes, *, content_type: str) -> ArtifactEntry:
        target = self._dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        with target.open("wb") as out:
            for chunk in _iter_source(source):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        return ArtifactEntry(name=name, size=size, sha256=digest.hexdigest(), content_type=content_type)

    async def put_manifest(self, manifest: Manifest, *, if_version: str | None) -> None:
        _, current = await self.read_manifest()
        if current != if_version:
            raise ManifestConflict(f"{self._dir / MANIFEST} changed under this run")
        self._dir.mkdir(parents=True, exist_ok=True)
        tmp = self._dir / (MANIFEST + ".tmp")
        tmp.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(self._dir / MANIFEST)


class _Missing(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)


def _iter_source(source: Path | bytes) -> Iterator[bytes]:
    if isinstance(source, bytes):
        for start in range(0, len(source), CHUNK_BYTES):
            yield source[start : start + CHUNK_BYTES]
        if not source:
            yield b""
        return
    with source.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            yield chunk


def _load_manifest(data: bytes) -> Manifest | None:
    """A manifest we cannot parse is treated as absent (and overwritten), not as a crash."""
    try:
        return Manifest.model_validate(json.loads(data))
    except ValueError:
        return None
