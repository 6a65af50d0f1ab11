"""RIFF/WAVE writing for our own artifacts: a header builder, a streaming writer, and a small reader."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Self

__all__ = ["WavInfo", "WavWriter", "read_wav", "wav_header"]

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_ALAW = 0x0006
WAVE_FORMAT_MULAW = 0x0007
_HEADER_BYTES = 44
_MAX_RIFF_BYTES = 0xFFFFFFFF


def wav_header(
    *,
    sample_rate: int,
    channels: int,
    sample_width: int = 2,
    n_frames: int,
    format_tag: int = WAVE_FORMAT_PCM,
) -> bytes:
    """A canonical 44-byte WAV header for `n_frames` sample frames (one sample per channel each).

    `sample_width` is bytes per sample (2 for int16 PCM, 1 for G.711 with `format_tag` 6/7).
    Raises `ValueError` if the data would not fit a RIFF file (4 GiB).
    """
    if sample_rate <= 0 or channels <= 0 or sample_width <= 0 or n_frames < 0:
        raise ValueError("sample_rate, channels and sample_width must be > 0 and n_frames >= 0")
    block_align = channels * sample_width
    data_bytes = n_frames * block_align
    if data_bytes + _HEADER_BYTES - 8 > _MAX_RIFF_BYTES:
        raise ValueError(f"{data_bytes} bytes of audio do not fit a WAV file")
    return b"".join(
        (
            b"RIFF",
            struct.pack("<I", 36 + data_bytes),
            b"WAVEfmt ",
            struct.pack(
                "<IHHIIHH",
                16,
                format_tag,
                channels,
                sample_rate,
                sample_rate * block_align,
                block_align,
                sample_width * 8,
            ),
            b"data",
            struct.pack("<I", data_bytes),
        )
    )


class WavWriter:
    """Writes a WAV stream to a seekable binary file object, fixing the header sizes on `close`.

    The caller owns `fileobj` (it is flushed, not closed). `write` takes whole sample frames of
    interleaved little-endian samples. Usable as a context manager; `close` is idempotent.
    Raises `ValueError` for a partial sample frame and `RuntimeError` when written after close.
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        *,
        sample_rate: int,
        channels: int,
        sample_width: int = 2,
        format_tag: int = WAVE_FORMAT_PCM,
    ) -> None:
        self._file = fileobj
        self._fmt = {
            "sample_rate": sample_rate,
            "channels": channels,
            "sample_width": sample_width,
            "format_tag": format_tag,
        }
        self._block_align = channels * sample_width
        self._start = fileobj.tell()
        self.data_bytes = 0
        self.closed = False
        self._file.write(wav_header(**self._fmt, n_frames=0))

    @property
    def n_frames(self) -> int:
        """Sample frames written so far."""
        return self.data_bytes // self._block_align

    def write(self, data: bytes) -> None:
        """Append interleaved samples (a whole number of sample frames)."""
        if self.closed:
            raise RuntimeError("WavWriter.write after close")
        if len(data) % self._block_align:
            raise ValueError(f"{len(data)} bytes is not a whole number of {self._block_align}-byte frames")
        self._file.write(data)
        self.data_bytes += len(data)

    def close(self) -> None:
        """Rewrite the header with the final sizes and leave the file positioned at its end."""
        if self.closed:
            return
        self.closed = True
        end = self._file.tell()
        self._file.seek(self._start)
        self._file.write(wav_header(**self._fmt, n_frames=self.n_frames))
        self._file.seek(end)
        self._file.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class WavInfo:
    """A parsed WAV file: format fields plus the raw data chunk."""

    format_tag: int
    sample_rate: int
    channels: int
    sample_width: int
    data: bytes

    @property
    def n_frames(self) -> int:
        return len(self.data) // (self.channels * self.sample_width)

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.sample_rate


def read_wav(blob: bytes) -> WavInfo:
    """Parse a whole WAV file held in memory (tests and small artifacts); raises `ValueError` if malformed."""
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    pos, fmt, data = 12, None, None
    while pos + 8 <= len(blob):
        cid, size = blob[pos : pos + 4], struct.unpack_from("<I", blob, pos + 4)[0]
        body = blob[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            fmt = struct.unpack_from("<HHIIHH", body)
        elif cid == b"data":
            data = body
        pos += 8 + size + (size & 1)
    if fmt is None or data is None:
        raise ValueError("WAV file lacks a fmt or data chunk")
    tag, channels, rate, _, _, bits = fmt
    return WavInfo(format_tag=tag, sample_rate=rate, channels=channels, sample_width=bits // 8, data=data)
