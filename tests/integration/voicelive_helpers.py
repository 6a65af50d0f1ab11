"""Helpers for the Voice Live simulator conformance tests: start it, drive the real SDK, read traces."""

from __future__ import annotations

import json
import wave
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from azure.ai.voicelive.aio import VoiceLiveConnection, connect
from azure.ai.voicelive.models import ServerEvent
from azure.core.credentials import AzureKeyCredential

from devstack.voicelive import Mode, VoiceLiveSimulator

REPO = Path(__file__).resolve().parents[2]
AUDIO = REPO.parent / "shared" / "audio"
TRACES = REPO.parent / "shared" / "research" / "voicelive-traces"
KEY = "devstack-key"
_DELTAS = {"response.audio.delta", "response.audio_transcript.delta"}
# Events the service sends asynchronously (their place varies between recordings); shape checks drop them.
FLOATING = {
    "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.completed",
}


@asynccontextmanager
async def simulator(**options: Any) -> AsyncIterator[VoiceLiveSimulator]:
    """A started simulator: zero-latency and no connect-rate limit unless the test says otherwise."""
    options.setdefault("mode", Mode.ZERO_LATENCY)
    options.setdefault("connects_per_minute", None)
    async with VoiceLiveSimulator(**options) as sim:
        yield sim


def sdk(sim: VoiceLiveSimulator, **kwargs: Any) -> Any:
    """The real SDK's `connect()` pointed at the simulator (an async context manager)."""
    kwargs.setdefault("credential", AzureKeyCredential(KEY))
    kwargs.setdefault("model", "gpt-realtime")
    return connect(endpoint=sim.endpoint, **kwargs)


async def collect(
    conn: VoiceLiveConnection, *, until: Callable[[ServerEvent], bool], count: int = 1
) -> list[ServerEvent]:
    """Typed events up to and including the `count`-th one matching `until` (or until the socket closes)."""
    events: list[ServerEvent] = []
    async for event in conn:
        events.append(event)
        if until(event):
            count -= 1
            if count == 0:
                break
    return events


def is_type(*kinds: str) -> Callable[[ServerEvent], bool]:
    return lambda e: e.type in kinds


def shape(kinds: Iterable[str]) -> list[str]:
    """Event types with runs of audio/transcript deltas (and repeats) collapsed, floating events removed."""
    out: list[str] = []
    for raw in kinds:
        if raw in FLOATING:
            continue
        kind = "<audio deltas>" if raw in _DELTAS else raw
        if not out or out[-1] != kind:
            out.append(kind)
    return out


def trace_server_types(name: str) -> list[str]:
    """Server event types of a golden trace, in recorded order."""
    lines = (TRACES / name).read_text().splitlines()
    return [json.loads(line)["event"]["type"] for line in lines if json.loads(line)["dir"] == "server"]


def wav_pcm(name: str) -> tuple[bytes, int]:
    """(PCM16 mono frames, sample rate) of a fixture WAV."""
    with wave.open(str(AUDIO / name)) as w:
        return w.readframes(w.getnframes()), w.getframerate()


def wav_data_chunk(name: str) -> bytes:
    """The raw `data` chunk of a WAV the `wave` module cannot read (G.711)."""
    blob = (AUDIO / name).read_bytes()
    start = blob.index(b"data") + 8
    return blob[start : start + int.from_bytes(blob[start - 4 : start], "little")]


async def send_audio(conn: VoiceLiveConnection, raw: bytes, *, chunk: int) -> None:
    """Append `raw` unpaced in `chunk`-byte pieces."""
    for i in range(0, len(raw), chunk):
        await conn.input_audio_buffer.append(audio=raw[i : i + chunk])
