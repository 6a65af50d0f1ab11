"""Our own energy VAD for manual-turn mode: segments the streamed input into utterances to commit.

Deliberately simple (frame RMS against a dBFS threshold with a hangover): manual mode exists for
deterministic, reproducible runs over recorded audio, where the gaps between turns are real silence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EnergySegmenter", "Utterance"]


@dataclass(frozen=True, slots=True)
class Utterance:
    """One detected utterance on the input clock (ms)."""

    start_ms: float
    end_ms: float


class EnergySegmenter:
    """Feed pcm16 mono frames in stream order; `push` returns an `Utterance` when one has just ended.

    Args:
        sample_rate: of the pcm16 frames.
        threshold_dbfs: a frame is speech when its RMS is above this.
        min_speech_ms: shorter bursts are ignored (clicks).
        silence_ms: this much non-speech after speech ends the utterance.
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        threshold_dbfs: float = -40.0,
        min_speech_ms: float = 120.0,
        silence_ms: float = 600.0,
    ) -> None:
        self._rate = sample_rate
        self._threshold = 32768.0 * 10 ** (threshold_dbfs / 20.0)
        self._min_speech_ms = min_speech_ms
        self._silence_ms = silence_ms
        self._pos_ms = 0.0
        self._start_ms: float | None = None
        self._last_voiced_end_ms = 0.0
        self._voiced_ms = 0.0

    @property
    def in_speech(self) -> bool:
        return self._start_ms is not None and self._voiced_ms >= self._min_speech_ms

    def push(self, pcm16: bytes) -> Utterance | None:
        samples = np.frombuffer(pcm16[: len(pcm16) // 2 * 2], dtype="<i2").astype(np.float32)
        frame_ms = len(samples) * 1000.0 / self._rate
        start, self._pos_ms = self._pos_ms, self._pos_ms + frame_ms
        voiced = bool(len(samples)) and float(np.sqrt(np.mean(samples * samples))) > self._threshold
        if voiced:
            if self._start_ms is None:
                self._start_ms, self._voiced_ms = start, 0.0
            self._voiced_ms += frame_ms
            self._last_voiced_end_ms = self._pos_ms
            return None
        if self._start_ms is None or self._pos_ms - self._last_voiced_end_ms < self._silence_ms:
            return None
        return self._close()

    def flush(self) -> Utterance | None:
        """End of input: the utterance in progress, if it is long enough."""
        return self._close() if self._start_ms is not None else None

    def _close(self) -> Utterance | None:
        assert self._start_ms is not None
        utterance = Utterance(self._start_ms, self._last_voiced_end_ms) if self.in_speech else None
        self._start_ms, self._voiced_ms = None, 0.0
        return utterance
