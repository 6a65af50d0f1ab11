"""Blob input and artifact output through the real aio `azure-storage-blob` client against Azurite."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from azure.storage.blob.aio import BlobServiceClient

from devstack.azurite import DEV_ACCOUNT, Azurite
from worker.blobs import BlobRef
from worker.errors import InputNotFound, InputTooLarge
from worker.jobs import InputInfo, Manifest, Timings
from worker.storage import (
    INPUT_RANGE_BYTES,
    BlobArtifacts,
    BlobInput,
    ManifestConflict,
    blob_service_client,
)

pytestmark = pytest.mark.integration

BIG = 40 * 1024 * 1024


@pytest_asyncio.fixture()
async def client(azurite: Azurite) -> AsyncIterator[BlobServiceClient]:
    async with blob_service_client(account_url="", connection_string=azurite.connection_string) as c:
        yield c


def ref(azurite: Azurite, container: str, name: str) -> BlobRef:
    return BlobRef(azurite.blob_endpoint, DEV_ACCOUNT, container, name)


async def test_large_blob_streams_in_bounded_memory(azurite: Azurite, client: BlobServiceClient) -> None:
    payload = os.urandom(BIG)
    await client.get_blob_client("audio-in", "big.bin").upload_blob(
        payload, overwrite=True, max_concurrency=2
    )
    expected = hashlib.sha256(payload).hexdigest()
    del payload

    digest, total, biggest = hashlib.sha256(), 0, 0
    tracemalloc.start()
    try:
        async with BlobInput(client, max_bytes=BIG).open(ref(azurite, "audio-in", "big.bin")) as stream:
            assert stream.size == BIG
            assert stream.etag
            async for chunk in stream.chunks:
                digest.update(chunk)
                total += len(chunk)
                biggest = max(biggest, len(chunk))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (total, digest.hexdigest()) == (BIG, expected)
    assert biggest <= INPUT_RANGE_BYTES
    # Never the whole 40 MiB: a few ranges in flight at most, whatever the blob's size.
    assert peak < 8 * INPUT_RANGE_BYTES, f"peak traced memory {peak / 2**20:.1f} MiB"


async def test_missing_blob_is_input_not_found(azurite: Azurite, client: BlobServiceClient) -> None:
    with pytest.raises(InputNotFound, match="not found"):
        async with BlobInput(client, max_bytes=BIG).open(ref(azurite, "audio-in", "nope.wav")):
            pass


async def test_missing_container_is_input_not_found(azurite: Azurite, client: BlobServiceClient) -> None:
    with pytest.raises(InputNotFound):
        async with BlobInput(client, max_bytes=BIG).open(ref(azurite, "no-such-container", "a.wav")):
            pass


async def test_oversize_blob_is_rejected_before_download(azurite: Azurite, client: BlobServiceClient) -> None:
    await client.get_blob_client("audio-in", "small.bin").upload_blob(b"x" * 2048, overwrite=True)
    with pytest.raises(InputTooLarge, match="2048 bytes"):
        async with BlobInput(client, max_bytes=1024).open(ref(azurite, "audio-in", "small.bin")):
            pass


def manifest(job_id: str, status: str = "succeeded") -> Manifest:
    now = datetime.now(UTC)
    return Manifest(
        job_id=job_id,
        status=status,  # type: ignore[arg-type]
        timings=Timings(started_at=now, finished_at=now, total_s=0.0),
        input=InputInfo(url="http://x"),
        worker_version="test",
    )


async def test_artifacts_then_manifest_with_first_writer_wins(
    azurite: Azurite, client: BlobServiceClient
) -> None:
    store = BlobArtifacts(client, ref(azurite, "results", "job-a/"))
    assert await store.read_manifest() == (None, None)
    entry = await store.put("transcript.json", b'{"turns": []}', content_type="application/json")
    assert entry.size == 13
    assert entry.sha256 == hashlib.sha256(b'{"turns": []}').hexdigest()
    data = await (await client.get_blob_client("results", "job-a/transcript.json").download_blob()).readall()
    assert data == b'{"turns": []}'

    await store.put_manifest(manifest("job-a", "failed"), if_version=None)
    with pytest.raises(ManifestConflict):  # a second first-writer loses
        await store.put_manifest(manifest("job-a"), if_version=None)
    current, version = await store.read_manifest()
    assert current is not None and current.status == "failed"
    await store.put_manifest(manifest("job-a"), if_version=version)  # a redriven run may replace a failure
    with pytest.raises(ManifestConflict):  # ...but only from the version it read
        await store.put_manifest(manifest("job-a"), if_version=version)
    final, _ = await store.read_manifest()
    assert final is not None and final.status == "succeeded"


async def test_blob_replaced_mid_read_fails_transient(azurite: Azurite, client: BlobServiceClient) -> None:
    from worker.errors import Transient

    blob = client.get_blob_client("audio-in", "moving.bin")
    await blob.upload_blob(b"a" * (3 * INPUT_RANGE_BYTES), overwrite=True)
    async with BlobInput(client, max_bytes=BIG).open(ref(azurite, "audio-in", "moving.bin")) as stream:
        chunks = aiter(stream.chunks)
        assert await anext(chunks) == b"a" * INPUT_RANGE_BYTES
        await blob.upload_blob(b"b" * (3 * INPUT_RANGE_BYTES), overwrite=True)
        with pytest.raises(Transient, match="412|ConditionNotMet"):
            await anext(chunks)


async def test_azurite_stop_leaves_no_process() -> None:
    server = Azurite()
    await server.start()
    pid = server._proc.pid if server._proc else 0
    assert server.port > 0
    await server.aclose()
    await server.aclose()  # twice is fine
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
