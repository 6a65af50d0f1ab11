"""A finished session → the job's artifact files (DESIGN.md §5), rendered into a work directory.

Everything streams from the session's spool files in bounded blocks, so a 60-minute input never sits in
memory: `conversation.wav` is assembled ten seconds at a time from `input.pcm` (left) and the response
spools placed where their audio arrived on the input clock (right).
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from worker.audio import AudioFormat, Converter, WavWriter
from worker.report import REPORT_CONTENT_TYPE, REPORT_NAME, render_report
from worker.voice.timeline import AssistantResponse, Timeline, to_vtt, tool_calls_jsonl
from worker.waveform import waveform_from_pcm

__all__ = ["OUTPUT_RATE", "ArtifactFile", "render_artifacts"]

#: Voice Live sends pcm16 mono at 24 kHz; conversation.wav uses the same rate for both channels.
OUTPUT_RATE = 24_000
_BLOCK_SAMPLES = OUTPUT_RATE * 10


@dataclass(frozen=True, slots=True)
class ArtifactFile:
    """One artifact rendered to disk, with the name it gets under the job's output prefix."""

    name: str
    path: Path
    content_type: str


def render_artifacts(
    *,
    timeline: Timeline,
    header: dict[str, Any],
    workdir: Path,
    input_pcm: Path,
    input_sample_rate: int,
    response_audio: bool,
    conversation_audio: bool,
    events_file: Path | None,
    report: bool = False,
) -> list[ArtifactFile]:
    """Write every artifact into `workdir/out/`. Blocking (file I/O, numpy): run it in a thread.

    `header` is merged at the top of transcript.json (job id, session, input facts). `report` adds
    report.html (job.outputs.report), rendered last so it links only the audio files that exist.
    """
    out = workdir / "out"
    (out / "audio").mkdir(parents=True, exist_ok=True)
    files: list[ArtifactFile] = []

    def add(name: str, data: bytes | None, content_type: str, path: Path | None = None) -> None:
        target = path or out / name
        if data is not None:
            target.write_bytes(data)
        files.append(ArtifactFile(name, target, content_type))

    transcript = {**header, **timeline.model_dump(mode="json")}
    add("transcript.json", json.dumps(transcript, indent=2, ensure_ascii=False).encode(), "application/json")
    add("transcript.vtt", to_vtt(timeline).encode(), "text/vtt")
    add("tool_calls.jsonl", tool_calls_jsonl(timeline), "application/x-ndjson")
    if response_audio:
        for resp in timeline.responses:
            if resp.audio_file and (workdir / resp.audio_file).exists():
                name = f"audio/response-{resp.index:03d}.wav"
                _pcm_to_wav(workdir / resp.audio_file, out / name, sample_rate=OUTPUT_RATE)
                add(name, None, "audio/wav")
    if conversation_audio:
        name = "audio/conversation.wav"
        write_conversation_wav(
            out / name,
            input_pcm=input_pcm,
            input_sample_rate=input_sample_rate,
            responses=timeline.responses,
            workdir=workdir,
        )
        add(name, None, "audio/wav")
    if events_file is not None and events_file.exists():
        add("events.jsonl.gz", None, "application/gzip", path=events_file)
    if report:
        waveform = waveform_from_pcm(input_pcm, sample_rate=input_sample_rate) if input_pcm.exists() else None
        audio = {f.name for f in files if f.name.startswith("audio/")}
        html = render_report(transcript, waveform=waveform, audio_files=audio)
        add(REPORT_NAME, html.encode("utf-8"), REPORT_CONTENT_TYPE)
    return files


def _pcm_to_wav(source: Path, target: Path, *, sample_rate: int) -> None:
    with (
        source.open("rb") as src,
        target.open("wb") as dst,
        WavWriter(dst, sample_rate=sample_rate, channels=1) as wav,
    ):
        while chunk := src.read(1 << 20):
            wav.write(chunk[: len(chunk) // 2 * 2])


@dataclass(frozen=True, slots=True)
class _Segment:
    """`n_samples` of response audio from `path` at `offset` bytes, placed at `start` (output samples)."""

    start: int
    path: Path
    offset: int
    n_samples: int


def _segments(responses: list[AssistantResponse], workdir: Path) -> list[_Segment]:
    """Place each response's deltas on the input clock: audio plays contiguously from its first arrival;
    a delta that arrives after the playhead (the service fell behind) starts where it arrived."""
    segments: list[_Segment] = []
    for resp in responses:
        if not resp.audio_file:
            continue
        path = workdir / resp.audio_file
        playhead = 0
        for placement in resp.placements:
            arrival = round(placement.input_ms * OUTPUT_RATE / 1000)
            start = max(playhead, arrival)
            n_samples = placement.n_bytes // 2
            segments.append(_Segment(start, path, placement.byte_offset, n_samples))
            playhead = start + n_samples
    segments.sort(key=lambda s: s.start)
    return segments


def write_conversation_wav(
    target: Path,
    *,
    input_pcm: Path,
    input_sample_rate: int,
    responses: list[AssistantResponse],
    workdir: Path,
) -> int:
    """Stereo 24 kHz WAV: L = the input as streamed, R = assistant audio where it arrived. Returns frames.

    Length is the longer of the streamed input and the last assistant audio.
    """
    segments = _segments(responses, workdir)
    starts = [s.start for s in segments]
    longest = max((s.n_samples for s in segments), default=0)
    input_samples = _input_samples(input_pcm.stat().st_size // 2, input_sample_rate)
    total = max([input_samples, *(s.start + s.n_samples for s in segments)])
    left_blocks = _resampled_blocks(input_pcm, input_sample_rate)
    written = 0
    with target.open("wb") as fh, WavWriter(fh, sample_rate=OUTPUT_RATE, channels=2) as wav:
        for block_start in range(0, total, _BLOCK_SAMPLES):
            n = min(_BLOCK_SAMPLES, total - block_start)
            stereo = np.zeros((n, 2), dtype=np.int16)
            left = left_blocks.take(n)
            stereo[: len(left), 0] = left
            first = bisect.bisect_left(starts, block_start - longest)
            _mix_right(stereo, block_start, itertools.islice(segments, first, None))
            wav.write(stereo.tobytes())
            written += n
    return written


def _input_samples(n_in: int, rate: int) -> int:
    return round(n_in * OUTPUT_RATE / rate)


class _BlockReader:
    """Pulls resampled input samples on demand, keeping only what one block needs."""

    def __init__(self, chunks: Iterator[npt.NDArray[np.int16]]) -> None:
        self._chunks = chunks
        self._buffer = np.zeros(0, dtype=np.int16)

    def take(self, n: int) -> npt.NDArray[np.int16]:
        parts = [self._buffer]
        have = len(self._buffer)
        for chunk in self._chunks:
            parts.append(chunk)
            have += len(chunk)
            if have >= n:
                break
        joined = np.concatenate(parts)
        self._buffer = joined[n:]
        return joined[:n]


def _resampled_blocks(input_pcm: Path, rate: int) -> _BlockReader:
    def chunks() -> Iterator[npt.NDArray[np.int16]]:
        converter = (
            Converter(rate, 1, target=AudioFormat("pcm16", OUTPUT_RATE)) if rate != OUTPUT_RATE else None
        )
        with input_pcm.open("rb") as fh:
            while raw := fh.read(rate * 2 * 5):
                pcm = np.frombuffer(raw[: len(raw) // 2 * 2], dtype=np.int16)
                yield np.frombuffer(converter.push(pcm), dtype=np.int16) if converter else pcm
            if converter:
                yield np.frombuffer(converter.flush(), dtype=np.int16)

    return _BlockReader(chunks())


def _mix_right(stereo: npt.NDArray[np.int16], block_start: int, segments: Iterator[_Segment]) -> None:
    block_end = block_start + len(stereo)
    right = np.zeros(len(stereo), dtype=np.int32)
    for seg in segments:
        if seg.start >= block_end:
            break
        seg_end = seg.start + seg.n_samples
        if seg_end <= block_start:
            continue
        lo, hi = max(seg.start, block_start), min(seg_end, block_end)
        with seg.path.open("rb") as fh:
            fh.seek(seg.offset + (lo - seg.start) * 2)
            samples = np.frombuffer(fh.read((hi - lo) * 2), dtype=np.int16)
        right[lo - block_start : lo - block_start + len(samples)] += samples
    stereo[:, 1] = np.clip(right, -32768, 32767).astype(np.int16)
