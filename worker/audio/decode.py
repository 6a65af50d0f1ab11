"""Streaming decode: any supported input bytes → fixed-size frames in the session format, in one thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import Literal, Self

from worker.audio._bridge import ChunkReader, Outbox
from worker.audio._decoder import BATCH_MS, Decoder, Finished, Item, Opened
from worker.audio.formats import AudioFormat, InputFacts
from worker.errors import UnsupportedAudio

__all__ = ["FrameStream", "open_frames"]

_log = logging.getLogger(__name__)

#: How long `aclose` waits for the decoder thread to notice it was closed.
JOIN_TIMEOUT_S = 5.0


def open_frames(
    chunks: AsyncIterator[bytes],
    *,
    target: AudioFormat,
    channel: Literal["mix"] | int = "mix",
    frame_ms: int = 20,
    lookahead_ms: int = 2000,
    max_duration_s: float = 4 * 3600,
    decode_timeout_s: float = 30.0,
) -> FrameStream:
    """Decode `chunks` (a whole audio file, streamed) into `frame_ms` frames of `target` audio.

    Args:
        chunks: the input's bytes in order; read on demand, one chunk in flight. The caller owns it.
        target: wire format of the frames.
        channel: ``"mix"`` (mean of all channels) or a 0-based channel index.
        frame_ms: frame duration; every frame is exactly ``target.frame_bytes(frame_ms)`` bytes, the last
            one padded with silence.
        lookahead_ms: how much converted audio the decoder may run ahead of the consumer.
        max_duration_s: longer inputs (declared or decoded) are rejected.
        decode_timeout_s: no input and no output for this long → `UnsupportedAudio` (never a hang).

    Iterating raises `UnsupportedAudio` for undecodable, empty or absurd input; errors raised by `chunks`
    (e.g. `InputTooLarge`, `Transient`) surface unchanged. Use as ``async with open_frames(...) as frames``.
    """
    return FrameStream(
        chunks,
        target=target,
        channel=channel,
        frame_ms=frame_ms,
        lookahead_ms=lookahead_ms,
        max_duration_s=max_duration_s,
        decode_timeout_s=decode_timeout_s,
    )


class FrameStream:
    """Async iterator of fixed-size frames fed by one decoder thread; see `open_frames`.

    `facts` is available once the first frame is out and final after exhaustion. `aclose()` (also run by
    ``async with``) stops the thread promptly, whether it waits for input or for queue space; it is safe to
    call twice. A closed stream raises `RuntimeError` when iterated.
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        target: AudioFormat,
        channel: Literal["mix"] | int,
        frame_ms: int,
        lookahead_ms: int,
        max_duration_s: float,
        decode_timeout_s: float,
    ) -> None:
        if lookahead_ms < frame_ms or decode_timeout_s <= 0 or max_duration_s <= 0:
            raise ValueError("need lookahead_ms >= frame_ms, decode_timeout_s > 0 and max_duration_s > 0")
        self.target = target
        self.frame_bytes = target.frame_bytes(frame_ms)
        self._chunks = chunks
        self._channel = channel
        self._max_duration_s = max_duration_s
        self._decode_timeout_s = decode_timeout_s
        self._lookahead_ms = lookahead_ms
        self._capacity = lookahead_ms * target.bytes_per_ms
        self._facts: InputFacts | None = None
        self._pending = bytearray()
        self._frames_out = 0
        self._received_bytes = 0
        self._finished = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._outbox: Outbox[Item] | None = None
        self._reader: ChunkReader | None = None
        self._thread_done = asyncio.Event()

    def __repr__(self) -> str:
        return f"<FrameStream {self.target.encoding}/{self.target.sample_rate} frames_out={self._frames_out}>"

    @property
    def facts(self) -> InputFacts:
        """What the decoder found; raises `RuntimeError` before the first frame."""
        if self._facts is None:
            raise RuntimeError("FrameStream.facts is available once the first frame is out")
        return self._facts

    async def __aenter__(self) -> Self:
        self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise RuntimeError("FrameStream used after aclose()")
        self._start()
        while len(self._pending) < self.frame_bytes and not self._finished:
            self._accept(await self._next_item())
        if not self._pending:
            raise StopAsyncIteration
        if len(self._pending) < self.frame_bytes:
            self._pending += self.target.silence(self.frame_bytes - len(self._pending))
        frame = bytes(self._pending[: self.frame_bytes])
        del self._pending[: self.frame_bytes]
        self._frames_out += 1
        return frame

    async def aclose(self) -> None:
        """Stop the decoder thread and wait (bounded) for it to exit."""
        if self._closed:
            return
        self._closed = True
        if self._outbox is not None:
            self._outbox.close()
        if self._reader is not None:
            self._reader.close()
        if self._thread is not None and self._thread.is_alive():
            try:
                await asyncio.wait_for(self._thread_done.wait(), JOIN_TIMEOUT_S)
            except TimeoutError:
                _log.warning("audio decoder thread did not stop within %.1f s; leaving it", JOIN_TIMEOUT_S)
                return
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)  # it has signalled its exit: this returns at once

    def _start(self) -> None:
        if self._thread is not None:
            return
        loop = asyncio.get_running_loop()
        self._outbox = Outbox(loop=loop, capacity=self._capacity)
        self._reader = ChunkReader(self._chunks, loop=loop, on_progress=self._outbox.progress)
        decoder = Decoder(
            self._reader,
            self._outbox,
            target=self.target,
            channel=self._channel,
            max_s=self._max_duration_s,
            batch_ms=min(BATCH_MS, self._lookahead_ms // 2),
        )
        self._thread = threading.Thread(target=self._thread_main, args=(decoder, loop), name="audio-decode")
        self._thread.daemon = True
        self._thread.start()

    def _thread_main(self, decoder: Decoder, loop: asyncio.AbstractEventLoop) -> None:
        try:
            decoder.run()
        finally:
            with contextlib.suppress(RuntimeError):  # loop already closed: nobody is waiting
                loop.call_soon_threadsafe(self._thread_done.set)

    async def _next_item(self) -> Item:
        assert self._outbox is not None
        try:
            return await self._outbox.get(idle_timeout_s=self._decode_timeout_s)
        except TimeoutError:
            self._finished = True
            raise UnsupportedAudio(
                f"no audio decoded and no input received for {self._decode_timeout_s:g} s "
                "(input stalled or decoder stuck)"
            ) from None

    def _accept(self, item: Item) -> None:
        if isinstance(item, bytes):
            self._pending += item
            self._received_bytes += len(item)
            if self._facts is not None:  # a running estimate; the exact input figure comes with Finished
                self._facts.decoded_duration_s = self.target.duration_ms(self._received_bytes) / 1000.0
        elif isinstance(item, Opened):
            self._facts = item.facts
        elif isinstance(item, Finished):
            self._finished = True
            assert self._facts is not None
            self._facts.decoded_duration_s = item.decoded_duration_s
            self._facts.warnings.extend(item.warnings)
        else:
            self._finished = True
            raise item.error
