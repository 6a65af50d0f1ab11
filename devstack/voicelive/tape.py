"""The input samples kept for recognition: the current utterance (plus prefix padding) by audio position."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["InputTape"]

Samples = npt.NDArray[np.int16]


class InputTape:
    """int16 samples of the input stream from absolute sample index `start` to `end` (audio time).

    Only a connection with a real recogniser keeps one. It holds what may still belong to an utterance:
    while no turn is open the owner trims it to the prefix padding; a commit cuts the utterance out.
    """

    def __init__(self) -> None:
        self._chunks: list[Samples] = []
        self.start = 0
        self.end = 0

    def __len__(self) -> int:
        return self.end - self.start

    def append(self, samples: Samples) -> None:
        if len(samples):
            self._chunks.append(samples)
            self.end += len(samples)

    def skip(self, n_samples: int) -> None:
        """Advance audio time without keeping samples (e.g. audio appended before the tape existed)."""
        self.clear()
        self.start = self.end = self.end + n_samples

    def clear(self) -> None:
        """Drop everything; audio time keeps running."""
        self._chunks = []
        self.start = self.end

    def trim(self, keep: int) -> None:
        """Keep only the newest `keep` samples."""
        drop = len(self) - max(0, keep)
        if drop <= 0:
            return
        data = self._joined()[drop:]
        self._chunks = [data] if len(data) else []
        self.start += drop

    def cut(self, from_sample: int = 0) -> Samples:
        """The samples from absolute index `from_sample` (clipped to what is kept) to the end; then clear."""
        data = self._joined()[max(0, from_sample - self.start) :]
        self.clear()
        return data

    def _joined(self) -> Samples:
        if len(self._chunks) == 1:
            return self._chunks[0]
        joined = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        self._chunks = [joined] if len(joined) else []
        return joined
