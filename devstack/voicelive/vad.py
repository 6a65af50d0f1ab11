"""Energy-based voice activity detection in audio time (ms from the session's first appended byte)."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["EnergyVad", "VadEvent", "VadEventKind", "level_from_dbfs"]

_FRAME_MS = 10
# A frame's level is its RMS mapped linearly from -75 dBFS (0.0) to 0 dBFS (1.0), so the service's default
# threshold 0.5 means -37.5 dBFS: quiet word endings count as speech, -45 dBFS noise does not.
_FLOOR_DBFS = -75.0


def level_from_dbfs(dbfs: float) -> float:
    """Detector level in [0, 1] for an RMS level in dBFS."""
    return min(1.0, max(0.0, 1.0 - dbfs / _FLOOR_DBFS))


class VadEventKind(enum.Enum):
    STARTED = "started"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class VadEvent:
    """`audio_ms`: speech onset (STARTED) or end of the last speech frame (STOPPED), in audio time."""

    kind: VadEventKind
    audio_ms: int


class EnergyVad:
    """Frame-wise (10 ms) RMS detector with the service's knobs.

    `threshold` (0..1, see `level_from_dbfs`), `silence_duration_ms` (silence that ends a turn),
    `speech_duration_ms` (speech needed before a turn starts; onset is back-dated to the first loud frame).
    Timestamps are computed from samples received, never from wall time, so unpaced input gives the same
    result as real-time input. Prefix padding does not move the reported onset (the caller adds it to the
    committed item's audio).
    """

    def __init__(
        self, *, sample_rate: int, threshold: float, silence_duration_ms: int, speech_duration_ms: int = 30
    ) -> None:
        self._frame = sample_rate * _FRAME_MS // 1000
        self._threshold = threshold
        self._silence_frames = max(1, math.ceil(silence_duration_ms / _FRAME_MS))
        self._speech_frames = max(1, math.ceil(speech_duration_ms / _FRAME_MS))
        self._pending = np.zeros(0, dtype=np.int16)
        self._frames_seen = 0
        self._run = 0
        self._in_speech = False
        self._last_loud = 0
        # Frames of 10 ms whose mean square is above this are "loud" (avoids a log per frame).
        dbfs = _FLOOR_DBFS * (1.0 - threshold)
        self._min_mean_square = (32768.0**2) * (10.0 ** (dbfs / 10.0))

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def reset(self) -> None:
        """Forget a turn in progress (after `input_audio_buffer.clear`); audio time keeps running."""
        self._run = 0
        self._in_speech = False

    def skip(self, n_samples: int) -> None:
        """Advance audio time without analysing (audio appended while detection is off)."""
        total = len(self._pending) + n_samples
        self._frames_seen += total // self._frame
        self._pending = np.zeros(total % self._frame, dtype=np.int16)

    def feed(self, samples: npt.NDArray[np.int16]) -> list[VadEvent]:
        """Analyse appended samples; returns the turn boundaries they complete, in order."""
        data = np.concatenate((self._pending, samples)) if len(self._pending) else samples
        n_frames = len(data) // self._frame
        self._pending = data[n_frames * self._frame :].copy()
        if n_frames == 0:
            return []
        frames = data[: n_frames * self._frame].astype(np.float64).reshape(n_frames, self._frame)
        loud = (frames * frames).mean(axis=1) >= self._min_mean_square
        events: list[VadEvent] = []
        for i, is_loud in enumerate(loud.tolist()):
            self._step(self._frames_seen + i, is_loud, events)
        self._frames_seen += n_frames
        return events

    def _step(self, frame_no: int, is_loud: bool, events: list[VadEvent]) -> None:
        if not self._in_speech:
            self._run = self._run + 1 if is_loud else 0
            if self._run >= self._speech_frames:
                self._in_speech = True
                self._last_loud = frame_no
                events.append(VadEvent(VadEventKind.STARTED, (frame_no - self._run + 1) * _FRAME_MS))
            return
        if is_loud:
            self._last_loud = frame_no
        elif frame_no - self._last_loud >= self._silence_frames:
            self._in_speech = False
            self._run = 0
            events.append(VadEvent(VadEventKind.STOPPED, (self._last_loud + 1) * _FRAME_MS))
