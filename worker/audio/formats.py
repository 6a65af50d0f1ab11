"""Audio value objects: the session wire format (`AudioFormat`) and facts about an input (`InputFacts`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

__all__ = ["PCM16_RATES", "AudioFormat", "Encoding", "InputFacts"]

Encoding = Literal["pcm16", "g711_ulaw", "g711_alaw"]

#: Sample rates Voice Live accepts for raw 16-bit PCM input.
PCM16_RATES = (24000, 16000, 8000)
#: G.711 is defined at 8 kHz only.
G711_RATE = 8000

_SILENCE_BYTE: dict[str, int] = {"g711_ulaw": 0xFF, "g711_alaw": 0xD5}


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """A mono wire format: `pcm16` (little-endian int16) at 24/16/8 kHz, or G.711 µ-law / A-law at 8 kHz.

    Raises `ValueError` for an unknown encoding or a rate the encoding does not allow.
    """

    encoding: Encoding
    sample_rate: int

    def __post_init__(self) -> None:
        if self.encoding not in get_args(Encoding):
            raise ValueError(
                f"unknown audio encoding {self.encoding!r}; expected one of {get_args(Encoding)}"
            )
        allowed = PCM16_RATES if self.encoding == "pcm16" else (G711_RATE,)
        if self.sample_rate not in allowed:
            raise ValueError(f"{self.encoding} needs sample_rate in {allowed}, got {self.sample_rate}")

    @property
    def sample_width(self) -> int:
        """Bytes per sample: 2 for pcm16, 1 for G.711."""
        return 2 if self.encoding == "pcm16" else 1

    @property
    def bytes_per_ms(self) -> int:
        """Bytes of audio per millisecond (every allowed rate is a whole number of samples per ms)."""
        return self.sample_rate // 1000 * self.sample_width

    def frame_bytes(self, frame_ms: int) -> int:
        """Bytes in one frame of `frame_ms` milliseconds (`frame_ms` > 0)."""
        if frame_ms <= 0:
            raise ValueError(f"frame_ms must be > 0, got {frame_ms}")
        return self.bytes_per_ms * frame_ms

    def silence(self, n_bytes: int) -> bytes:
        """`n_bytes` of digital silence in this encoding (0x00 for pcm16, 0xFF µ-law, 0xD5 A-law)."""
        return bytes([_SILENCE_BYTE.get(self.encoding, 0)]) * n_bytes

    def duration_ms(self, n_bytes: int) -> float:
        """Milliseconds of audio in `n_bytes` of this format."""
        return n_bytes / self.bytes_per_ms


@dataclass(slots=True)
class InputFacts:
    """What the decoder found in an input; filled while decoding, final once the stream is exhausted.

    `declared_duration_s` comes from the container header when it states one (None otherwise);
    `decoded_duration_s` is audio actually decoded so far. `warnings` are short human-readable notes
    (e.g. the input ended before its declared duration).
    """

    container: str
    codec: str
    sample_rate: int
    channels: int
    declared_duration_s: float | None
    decoded_duration_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
