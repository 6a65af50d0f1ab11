"""Wire audio formats: decoding client appends to int16 samples and synthesizing reply audio (a tone)."""

from __future__ import annotations

import base64
import functools

import numpy as np
import numpy.typing as npt

__all__ = [
    "INPUT_FORMATS",
    "OUTPUT_FORMATS",
    "b64_decoded_len",
    "decode_input",
    "input_bytes_per_ms",
    "output_rate",
    "reply_chunk_b64",
]

Samples = npt.NDArray[np.int16]

INPUT_FORMATS = ("pcm16", "g711_ulaw", "g711_alaw")
OUTPUT_FORMATS = ("pcm16", "pcm16_16000hz", "pcm16_8000hz", "g711_ulaw", "g711_alaw")
_OUTPUT_RATES = {
    "pcm16": 24000,
    "pcm16_16000hz": 16000,
    "pcm16_8000hz": 8000,
    "g711_ulaw": 8000,
    "g711_alaw": 8000,
}


def b64_decoded_len(b64: str) -> int:
    """Decoded byte count of a base64 string without decoding it (the sink-mode fast path)."""
    n = len(b64)
    if n == 0:
        return 0
    return n * 3 // 4 - (2 if b64.endswith("==") else 1 if b64.endswith("=") else 0)


def input_rate(fmt: str, sampling_rate: int) -> int:
    """Sample rate of the input stream: G.711 is always 8 kHz, pcm16 uses `input_audio_sampling_rate`."""
    return 8000 if fmt.startswith("g711") else sampling_rate


def input_bytes_per_ms(fmt: str, sampling_rate: int) -> float:
    """Bytes of wire audio per millisecond of input (pcm16: 2 bytes/sample, G.711: 1 byte/sample)."""
    width = 1 if fmt.startswith("g711") else 2
    return input_rate(fmt, sampling_rate) * width / 1000.0


@functools.cache
def _ulaw_table() -> Samples:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = ((mantissa << 3) + 0x84) << exponent
    values = np.where(codes & 0x80, 0x84 - magnitude, magnitude - 0x84)
    return values.astype(np.int16)


@functools.cache
def _alaw_table() -> Samples:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
    values = np.where(codes & 0x80, magnitude, -magnitude)
    return values.astype(np.int16)


def _table(fmt: str) -> Samples:
    return _ulaw_table() if fmt == "g711_ulaw" else _alaw_table()


def decode_input(raw: bytes, fmt: str) -> Samples:
    """int16 samples of one append (a trailing odd byte of pcm16 is dropped: only whole samples count)."""
    if fmt.startswith("g711"):
        return _table(fmt)[np.frombuffer(raw, dtype=np.uint8)]
    return np.frombuffer(raw[: len(raw) - len(raw) % 2], dtype="<i2").astype(np.int16)


def _encode_g711(samples: Samples, fmt: str) -> bytes:
    # Nearest code by value: sort the 256 decoded values once and search.
    table = _table(fmt).astype(np.int32)
    order = np.argsort(table, kind="stable")
    sorted_vals = table[order]
    idx = np.clip(np.searchsorted(sorted_vals, samples.astype(np.int32)), 1, 255)
    left, right = sorted_vals[idx - 1], sorted_vals[idx]
    pick = np.where(np.abs(samples - left) <= np.abs(right - samples), idx - 1, idx)
    return bytes(order[pick].astype(np.uint8).tobytes())


def output_rate(fmt: str) -> int:
    """Sample rate of reply audio for an `output_audio_format`."""
    return _OUTPUT_RATES[fmt]


@functools.cache
def reply_chunk_b64(fmt: str, chunk_ms: int) -> str:
    """One base64 chunk of the reply tone (440 Hz at -12 dBFS; whole cycles, so chunks join seamlessly)."""
    rate = output_rate(fmt)
    n = rate * chunk_ms // 1000
    t = np.arange(n) / rate
    samples = (0.25 * 32767 * np.sin(2 * np.pi * 440.0 * t)).astype(np.int16)
    raw = _encode_g711(samples, fmt) if fmt.startswith("g711") else samples.astype("<i2").tobytes()
    return base64.b64encode(raw).decode("ascii")


def output_bytes_per_ms(fmt: str) -> float:
    """Bytes of reply audio per millisecond."""
    width = 1 if fmt.startswith("g711") else 2
    return output_rate(fmt) * width / 1000.0
