"""Streaming sample conversion: channel select/downmix, soxr resampling, int16 PCM and G.711 encoding."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
import soxr

from worker.audio.formats import AudioFormat, Encoding

__all__ = [
    "Channel",
    "Converter",
    "g711_to_pcm16",
    "pcm16_to_g711",
    "to_float32",
]

Channel = Literal["mix"] | int

#: Largest channel count we accept from an input.
MAX_CHANNELS = 8

_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def _lin2ulaw(x: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """CPython `audioop.lin2ulaw` (14-bit, bias 0x21) vectorised; used once to build the LUT."""
    v = x.astype(np.int32) >> 2
    mask = np.where(v < 0, 0x7F, 0xFF)
    v = np.minimum(np.abs(v), 8159) + 0x21
    seg = np.searchsorted(_ULAW_SEG_END, v)
    u = np.where(seg >= 8, 0x7F, (seg << 4) | ((v >> (seg + 1)) & 0xF))
    return (u ^ mask).astype(np.uint8)


def _lin2alaw(x: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """CPython `audioop.lin2alaw` (13-bit, even-bit inversion 0x55) vectorised; used once to build the LUT."""
    v = x.astype(np.int32) >> 3
    mask = np.where(v >= 0, 0xD5, 0x55)
    v = np.where(v >= 0, v, -v - 1)
    seg = np.searchsorted(_ALAW_SEG_END, v)
    quant = np.where(seg < 2, v >> 1, v >> np.maximum(seg, 1)) & 0xF
    a = np.where(seg >= 8, 0x7F, (seg << 4) | quant)
    return (a ^ mask).astype(np.uint8)


def _ulaw2lin(u: int) -> int:
    u = ~u & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return 0x84 - t if u & 0x80 else t - 0x84


def _alaw2lin(a: int) -> int:
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = t + 8 if seg == 0 else (t + 0x108) << max(seg - 1, 0)
    return t if a & 0x80 else -t


_ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)
#: Encoder LUTs indexed by the int16 sample's bits XOR 0x8000 (so -32768 → 0).
_ENCODE_LUT: dict[str, npt.NDArray[np.uint8]] = {
    "g711_ulaw": _lin2ulaw(_ALL_INT16),
    "g711_alaw": _lin2alaw(_ALL_INT16),
}
_DECODE_LUT: dict[str, npt.NDArray[np.int16]] = {
    "g711_ulaw": np.array([_ulaw2lin(b) for b in range(256)], dtype=np.int16),
    "g711_alaw": np.array([_alaw2lin(b) for b in range(256)], dtype=np.int16),
}


def pcm16_to_g711(pcm: npt.NDArray[np.int16], encoding: Encoding) -> bytes:
    """Encode int16 samples as G.711 (`g711_ulaw` / `g711_alaw`), bit-exact with CPython `audioop`."""
    codes: npt.NDArray[np.uint8] = _ENCODE_LUT[encoding][pcm.view(np.uint16) ^ np.uint16(0x8000)]
    return codes.tobytes()


def g711_to_pcm16(data: bytes, encoding: Encoding) -> bytes:
    """Decode G.711 bytes to little-endian int16 PCM, bit-exact with `audioop.ulaw2lin` / `alaw2lin`."""
    return _DECODE_LUT[encoding][np.frombuffer(data, dtype=np.uint8)].astype("<i2").tobytes()


def to_float32(samples: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    """Scale integer samples to float32 in [-1, 1) (u8 is offset binary); float input is passed through."""
    kind, bits = samples.dtype.kind, samples.dtype.itemsize * 8
    if kind == "f":
        return samples.astype(np.float32, copy=False)
    if kind not in "iu":
        raise TypeError(f"unsupported sample dtype {samples.dtype}")
    half = float(1 << (bits - 1))
    if bits > 32:  # float32 rounding first would differ from the exact float64 quotient's rounding
        offset = half if kind == "u" else 0.0
        return ((samples.astype(np.float64) - offset) / half).astype(np.float32)
    # Exact in float32 for ≤ 32-bit input: int→float32 rounds once, the offset is exact, and scaling by a
    # power of two does not round again, so this equals the float64 route bit for bit, in fewer passes.
    x = samples.astype(np.float32)
    if kind == "u":
        x -= np.float32(half)
    x *= np.float32(1.0 / half)
    return x


class Converter:
    """Turns decoded multi-channel audio into mono `target` bytes, chunk by chunk, with no seams.

    Args:
        in_rate: input sample rate in Hz.
        in_channels: input channel count (1-8).
        target: the output wire format.
        channel: ``"mix"`` averages all channels; an int selects that channel (0-based).

    `push` takes an array shaped ``(n_samples, in_channels)`` (or 1-D for mono) of float in [-1, 1] or
    integer PCM; it returns whatever output is ready. `flush` drains the resampler; call it once at the end.
    Splitting the input differently never changes the output beyond resampler rounding.
    Raises `ValueError` for an invalid channel selection.
    """

    def __init__(
        self, in_rate: int, in_channels: int, *, target: AudioFormat, channel: Channel = "mix"
    ) -> None:
        if not 1 <= in_channels <= MAX_CHANNELS:
            raise ValueError(f"in_channels must be 1-{MAX_CHANNELS}, got {in_channels}")
        if channel != "mix" and not (isinstance(channel, int) and 0 <= channel < in_channels):
            raise ValueError(f"channel {channel!r} does not exist in {in_channels}-channel input")
        if in_rate <= 0:
            raise ValueError(f"in_rate must be > 0, got {in_rate}")
        self.in_rate = in_rate
        self.in_channels = in_channels
        self.target = target
        self.channel = channel
        self._resampler: soxr.ResampleStream | None = None
        if in_rate != target.sample_rate:
            self._resampler = soxr.ResampleStream(
                in_rate, target.sample_rate, 1, dtype="float32", quality="HQ"
            )
        self.samples_in = 0
        self._flushed = False

    def push(self, samples: npt.NDArray[np.generic]) -> bytes:
        """Convert one chunk; returns encoded output (possibly empty while the resampler fills)."""
        if self._flushed:
            raise RuntimeError("Converter.push after flush")
        mono = self._mono(samples)
        self.samples_in += mono.shape[0]
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(mono, last=False)
        return self._encode(mono)

    def flush(self) -> bytes:
        """Drain the resampler's tail; afterwards the converter is finished."""
        if self._flushed:
            return b""
        self._flushed = True
        if self._resampler is None:
            return b""
        return self._encode(self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))

    def _mono(self, samples: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
        x = to_float32(samples)
        if x.ndim == 1:
            x = x.reshape(-1, 1)
        if x.ndim != 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected shape (n, {self.in_channels}), got {samples.shape}")
        if self.in_channels == 1:
            return np.ascontiguousarray(x[:, 0])
        if self.channel != "mix":
            return np.ascontiguousarray(x[:, self.channel])
        if self.in_channels == 2:  # the mean of two, without a reduction over a length-2 axis (slow)
            pair: npt.NDArray[np.float32] = x[:, 0] + x[:, 1]
            pair *= np.float32(0.5)
            return pair
        mixed: npt.NDArray[np.float32] = np.ascontiguousarray(x).mean(axis=1, dtype=np.float32)
        return mixed

    def _encode(self, mono: npt.NDArray[np.float32]) -> bytes:
        scaled = mono * np.float32(32768.0)  # a new array: `mono` may be the caller's
        np.rint(scaled, out=scaled)
        np.clip(scaled, -32768, 32767, out=scaled)
        pcm = scaled.astype(np.int16)
        if self.target.encoding == "pcm16":
            little: npt.NDArray[np.int16] = pcm.astype("<i2", copy=False)
            return little.tobytes()
        return pcm16_to_g711(pcm, self.target.encoding)
