"""The operator commands built on `JobClient` and the artifact store: enqueue, status, dlq."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from worker.client import DeadLetter, JobClient
from worker.clients import open_clients
from worker.config import Settings
from worker.jobs import Manifest, read_job_file
from worker.storage import BlobArtifacts

__all__ = ["build_jobs", "dead_letters", "read_manifest", "redrive", "send_jobs"]


def build_jobs(
    *, input_url: str | None, job_file: Path | None, job_id: str | None, count: int
) -> list[dict[str, Any]]:
    """N job bodies from `--input` or `--job`; with N > 1 ids get a `-0001` style suffix."""
    base = read_job_file(job_file) if job_file is not None else {"version": 1, "input": {"url": input_url}}
    root = job_id or base.get("job_id") or f"job-{uuid.uuid4().hex[:12]}"
    if count == 1:
        return [base | {"job_id": root}]
    return [base | {"job_id": f"{root}-{n:04d}"} for n in range(1, count + 1)]


@asynccontextmanager
async def _job_client(settings: Settings) -> AsyncIterator[JobClient]:
    queue = settings.queue_config()
    async with open_clients(settings, storage=False, voice=False, bus=True) as clients:
        assert clients.bus is not None
        async with JobClient(clients.bus, queue=queue.queue) as jobs:
            yield jobs


async def send_jobs(settings: Settings, jobs: list[dict[str, Any]]) -> list[str]:
    async with _job_client(settings) as client:
        return await client.enqueue_many(jobs)


async def dead_letters(settings: Settings, *, max_count: int) -> list[DeadLetter]:
    async with _job_client(settings) as client:
        return await client.dead_letters(max_count=max_count)


async def redrive(settings: Settings, *, job_id: str | None, max_count: int) -> list[str]:
    async with _job_client(settings) as client:
        return await client.redrive(job_id=job_id, max_count=max_count)


async def read_manifest(settings: Settings, job_id: str) -> Manifest | None:
    """The manifest under the default output prefix `<RESULTS_CONTAINER>/<job_id>/`."""
    prefix = settings.blob_policy().default_output(job_id)
    async with open_clients(settings, storage=True, voice=False) as clients:
        assert clients.blob is not None
        manifest, _ = await BlobArtifacts(clients.blob, prefix).read_manifest()
    return manifest
