"""Shared by the tests that drive `run_session` through the real SDK: the job and the fixture's frames."""

from __future__ import annotations

import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from worker.audio.formats import AudioFormat
from worker.jobs import Job

AUDIO = Path(__file__).resolve().parents[2].parent / "shared" / "audio"
CALLER_TURNS_MS = [(500, 3050), (6050, 9120), (12120, 14000)]  # INDEX.md
FRAME_MS = 20
FMT = AudioFormat("pcm16", 16000)


def make_job(**fields: Any) -> Job:
    """A 16 kHz job with a 1.5 s tail; `fields` override (`streaming` is merged)."""
    base: dict[str, Any] = {
        "version": 1,
        "job_id": "sdk-1",
        "input": {"url": "https://a.blob.core.windows.net/in/x.wav"},
    }
    streaming = {"sample_rate": 16000, "trailing_silence_ms": 1500, "response_timeout_s": 20.0}
    streaming |= fields.pop("streaming", {})
    return Job.model_validate(base | {"streaming": streaming} | fields)


async def wav_frames(name: str) -> AsyncIterator[bytes]:
    """The fixture's pcm16 16 kHz mono samples as exact 20 ms frames (the last one zero-padded)."""
    with wave.open(str(AUDIO / name), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        raw = w.readframes(w.getnframes())
    step = FMT.frame_bytes(FRAME_MS)
    for i in range(0, len(raw), step):
        yield raw[i : i + step].ljust(step, b"\0")
