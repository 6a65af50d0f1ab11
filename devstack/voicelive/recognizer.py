"""Input transcription: the `Recognizer` interface and pocketsphinx, a real offline English recogniser."""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["RECOGNIZERS", "PocketsphinxRecognizer", "Recognizer", "make_recognizer"]

log = logging.getLogger("devstack.voicelive")
Samples = npt.NDArray[np.int16]

RECOGNIZERS = ("placeholder", "pocketsphinx")
"""Names accepted by `VoiceLiveSimulator(recognizer=...)` and `--voicelive-recognizer`."""

_RATE = 16000  # the rate of pocketsphinx's shipped en-us acoustic model
# 100 ms per process_raw call (research platform.md §4.2: one whole-utterance call did worse).
_CHUNK = _RATE // 10


class Recognizer(Protocol):
    """Turns one committed utterance into text. Called once per user audio item, concurrently.

    `start()` loads models (the simulator calls it from its own `start()`), `aclose()` releases them.
    `transcribe` gets the utterance's int16 mono samples at the session's input rate; an exception becomes
    `conversation.item.input_audio_transcription.failed`.
    """

    async def start(self) -> None: ...

    async def transcribe(self, samples: Samples, *, rate: int) -> str: ...

    async def aclose(self) -> None: ...


class PocketsphinxRecognizer:
    """pocketsphinx 5 with the en-us model and generic language model that ship in its wheel.

    Decoding is CPU-bound (~5-8x real time per core), so it runs in a private thread pool of `workers`
    threads, never on the event loop; each thread reuses a decoder (loading one takes ~0.26 s). Input at
    any rate is resampled to 16 kHz first. Accuracy: good enough to find key words (~15 % WER on the piper
    voice of the fixtures, at 24/16 kHz and on the 8 kHz G.711 fixture); `utterances` and `busy_s` count work.
    """

    def __init__(self, *, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self._workers = workers
        self._executor: ThreadPoolExecutor | None = None
        self._idle: queue.SimpleQueue[_Decoder] = queue.SimpleQueue()
        self.utterances = 0
        self.busy_s = 0.0

    def __repr__(self) -> str:
        return f"PocketsphinxRecognizer(workers={self._workers}, utterances={self.utterances})"

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="voicelive-sphinx")
        return self._executor

    async def start(self) -> None:
        """Load one decoder now, so a missing package or model fails at start-up, not mid-session."""
        loop = asyncio.get_running_loop()
        self._idle.put(await loop.run_in_executor(self._pool(), _Decoder))

    async def transcribe(self, samples: Samples, *, rate: int) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), self._decode, samples, rate)

    async def aclose(self) -> None:
        """Drop queued work and wait for running decodes (at most one utterance per thread)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    def _decode(self, samples: Samples, rate: int) -> str:
        started = time.perf_counter()
        try:
            decoder = self._idle.get_nowait()
        except queue.Empty:
            decoder = _Decoder()
        try:
            text = decoder.recognise(to_16k(samples, rate))
        finally:
            self._idle.put(decoder)
        self.utterances += 1
        self.busy_s += time.perf_counter() - started
        log.debug("voicelive: recognised %.2f s of audio as %r", len(samples) / rate, text)
        return text


class _Decoder:
    """One pocketsphinx decoder (used by one thread at a time). Every utterance starts from the initial
    cepstral mean: pocketsphinx adapts it across utterances, which would make a transcript depend on what
    the decoder heard before (another session's audio)."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder  # imported here: only this recogniser needs the package

        self._decoder: Any = Decoder(samprate=_RATE, loglevel="FATAL")
        self._initial_cmn = self._decoder.get_cmn(False)

    def recognise(self, samples: Samples) -> str:
        decoder = self._decoder
        decoder.set_cmn(self._initial_cmn)
        raw = samples.astype("<i2").tobytes()
        decoder.start_utt()
        for start in range(0, len(raw), 2 * _CHUNK):
            decoder.process_raw(raw[start : start + 2 * _CHUNK], False, False)
        decoder.end_utt()
        hyp = decoder.hyp()
        return str(hyp.hypstr) if hyp is not None else ""


def to_16k(samples: Samples, rate: int) -> Samples:
    """int16 mono samples resampled to 16 kHz (soxr HQ)."""
    if rate == _RATE or len(samples) == 0:
        return samples
    import soxr

    resampled: Samples = soxr.resample(samples, rate, _RATE)
    return resampled


def make_recognizer(name: str) -> Recognizer | None:
    """The recogniser called `name` (one of `RECOGNIZERS`); None for the deterministic placeholder text."""
    if name == "placeholder":
        return None
    if name == "pocketsphinx":
        return PocketsphinxRecognizer()
    raise ValueError(f"unknown recognizer {name!r}; expected one of {', '.join(RECOGNIZERS)}")
