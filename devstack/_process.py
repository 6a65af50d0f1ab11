"""Child processes of the stand-ins: stop a whole process group politely, then firmly; drain its output."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

__all__ = ["discard", "stop_group", "stop_task"]


async def stop_group(proc: asyncio.subprocess.Process | None, *, sig: int, grace_s: float) -> None:
    """Send `sig` to the process's group, wait up to `grace_s`, then SIGKILL the group. No-op if gone."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


async def stop_task(task: asyncio.Task[None] | None) -> None:
    """Cancel and await a helper task (its cancellation is expected, not an error)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def discard(stream: asyncio.StreamReader) -> None:
    """Keep reading so a chatty child never blocks on a full pipe."""
    while await stream.read(65536):
        pass
