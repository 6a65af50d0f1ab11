"""Min/max envelopes of pcm16 audio for drawing: computed in one streaming pass, in bounded memory."""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_BUCKETS", "Waveform", "waveform_from_pcm", "waveform_from_wav"]

#: Enough columns for a 1200-px-wide timeline; a report stays small (≈ 20 KB of path data).
DEFAULT_BUCKETS = 1200
_CHUNK_SAMPLES = 1 << 18


@dataclass(frozen=True, slots=True)
class Waveform:
    """`mins[i]`/`maxs[i]` (in [-1, 1]) over bucket i; buckets evenly cover `duration_ms` of audio."""

    duration_ms: float
    mins: tuple[float, ...]
    maxs: tuple[float, ...]

    @property
    def bucket_ms(self) -> float:
        return self.duration_ms / len(self.mins) if self.mins else 0.0


def waveform_from_pcm(path: Path, *, sample_rate: int, buckets: int = DEFAULT_BUCKETS) -> Waveform:
    """Envelope of a headerless pcm16 mono file (the session's `input.pcm`)."""
    n_samples = path.stat().st_size // 2
    with path.open("rb") as fh:
        return _envelope(_blocks(fh, n_samples, channels=1, channel=0), n_samples, sample_rate, buckets)


def waveform_from_wav(path: Path, *, channel: int = 0, buckets: int = DEFAULT_BUCKETS) -> Waveform:
    """Envelope of one channel of a pcm16 WAV file (channel 0 of conversation.wav is the input).

    Raises `ValueError` if the file is not a pcm16 WAV or has fewer channels than `channel + 1`.
    """
    with path.open("rb") as fh:
        rate, channels, data_bytes = _wav_data(fh)
        if channel >= channels:
            raise ValueError(f"{path.name} has {channels} channel(s), not {channel + 1}")
        n_frames = min(data_bytes, path.stat().st_size - fh.tell()) // (2 * channels)
        return _envelope(_blocks(fh, n_frames, channels=channels, channel=channel), n_frames, rate, buckets)


def _wav_data(fh: BinaryIO) -> tuple[int, int, int]:
    """Walk the RIFF chunks up to `data`; returns (sample rate, channels, data bytes), fh at the data."""
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    fmt: tuple[int, ...] | None = None
    while len(chunk := fh.read(8)) == 8:
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"data":
            if fmt is None:
                raise ValueError("WAV data chunk before its fmt chunk")
            return fmt[2], fmt[1], size
        body = fh.read(size + (size & 1))
        if cid == b"fmt ":
            fmt = struct.unpack_from("<HHIIHH", body)
            if fmt[0] not in (1, 0xFFFE) or fmt[5] != 16:
                raise ValueError("only 16-bit PCM WAV files are supported")
    raise ValueError("WAV file has no data chunk")


def _blocks(fh: BinaryIO, n_frames: int, *, channels: int, channel: int) -> Iterator[npt.NDArray[np.int16]]:
    left = n_frames
    while left > 0:
        want = min(left, _CHUNK_SAMPLES)
        raw = fh.read(want * 2 * channels)
        got = len(raw) // (2 * channels)
        if got == 0:
            return
        frames = np.frombuffer(raw[: got * 2 * channels], dtype="<i2").reshape(got, channels)
        yield frames[:, channel]
        left -= got


def _envelope(
    blocks: Iterator[npt.NDArray[np.int16]], n_samples: int, sample_rate: int, buckets: int
) -> Waveform:
    if buckets <= 0 or sample_rate <= 0:
        raise ValueError("buckets and sample_rate must be > 0")
    per = max(1, math.ceil(n_samples / buckets))
    mins: list[float] = []
    maxs: list[float] = []
    carry = np.zeros(0, dtype=np.int16)
    seen = 0
    for block in blocks:
        seen += len(block)
        joined = np.concatenate((carry, block))
        whole = len(joined) // per * per
        if whole:
            grid = joined[:whole].reshape(-1, per)
            mins.extend((grid.min(axis=1) / 32768.0).tolist())
            maxs.extend((grid.max(axis=1) / 32768.0).tolist())
        carry = joined[whole:]
    if len(carry):
        mins.append(float(carry.min()) / 32768.0)
        maxs.append(float(carry.max()) / 32768.0)
    return Waveform(duration_ms=seen * 1000.0 / sample_rate, mins=tuple(mins), maxs=tuple(maxs))
