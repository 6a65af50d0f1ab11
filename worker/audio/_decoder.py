"""The decoder thread: sniff, open with PyAV (spooling non-faststart MP4), decode, convert, hand off."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Literal

import av
import numpy as np
import numpy.typing as npt

from worker.audio import _sniff
from worker.audio._bridge import ChunkReader, Closed, Outbox
from worker.audio.convert import MAX_CHANNELS, Converter
from worker.audio.formats import AudioFormat, InputFacts
from worker.errors import UnsupportedAudio

__all__ = ["BATCH_MS", "Decoder", "Failed", "Finished", "Item", "Opened"]

_log = logging.getLogger("worker.audio.decode")

MIN_RATE_HZ = 4000
MAX_RATE_HZ = 384_000
#: FFmpeg probing reads this much before the first packet; small keeps time-to-first-frame low.
PROBE_BYTES = 65_536
#: Bytes we may buffer looking for an MP4 `moov` box before we give up and spool.
MP4_SNIFF_LIMIT = 1 << 20
#: Decoded audio is converted and handed off in blocks of about this much input (at most half the
#: lookahead): one soxr/numpy pass and one `Outbox.put` per block instead of per PyAV frame. A pending
#: block is also handed off before the thread may block on input, before a failure and at the end.
BATCH_MS = 250
#: Corrupt packets tolerated (each adds nothing but a warning) before the input is rejected.
MAX_PACKET_ERRORS = 50


@dataclass(frozen=True, slots=True)
class Opened:
    facts: InputFacts


@dataclass(frozen=True, slots=True)
class Finished:
    decoded_duration_s: float
    warnings: list[str]


@dataclass(frozen=True, slots=True)
class Failed:
    error: BaseException


Item = bytes | Opened | Finished | Failed


class Decoder:
    """Runs in the decoder thread: sniff, open with PyAV (spooling non-faststart MP4), decode, convert."""

    def __init__(
        self,
        reader: ChunkReader,
        outbox: Outbox[Item],
        *,
        target: AudioFormat,
        channel: Literal["mix"] | int,
        max_s: float,
        batch_ms: int = BATCH_MS,
    ) -> None:
        self._reader = reader
        self._outbox = outbox
        self._target = target
        self._channel = channel
        self._max_s = max_s
        self._warnings: list[str] = []
        self._kind: str | None = None
        self._decoded_s = 0.0
        self._batch_ms = max(1, batch_ms)
        self._converter: Converter | None = None
        # Decoded but not yet converted audio, each ``(channels, n)``, and its sample count.
        self._pending: list[npt.NDArray[Any]] = []
        self._pending_samples = 0

    def run(self) -> None:
        try:
            self._run()
        except Closed:
            return
        except Exception as exc:
            error: BaseException = self._reader.error or _translate(exc, self._kind)
            with contextlib.suppress(Closed):
                self._deliver_before_failure()
                self._outbox.put(Failed(error))

    def read(self, n: int = -1) -> bytes:
        """PyAV's read callback: hands off the pending block first when the next read may block."""
        if not self._reader.buffered:
            self._convert_pending()
        return self._reader.read(n)

    def _run(self) -> None:
        head = self._reader.peek(_sniff.SNIFF_BYTES)
        if not head:
            raise UnsupportedAudio("input is empty (0 bytes)")
        kind = self._kind = _sniff.container_kind(head)
        with self._open_container(kind) as container:
            if not container.streams.audio:
                raise UnsupportedAudio(f"the {kind or container.format.name} input has no audio stream")
            stream = container.streams.audio[0]
            facts = self._facts(kind, head, container, stream)
            self._outbox.put(Opened(facts))
            self._decode(container, stream, facts)

    @contextlib.contextmanager
    def _open_container(self, kind: str | None) -> Iterator[Any]:
        if kind == "mp4" and not _mp4_streamable(self._reader):
            with tempfile.TemporaryFile(prefix="vlw-spool-") as spool:
                _spool(self._reader, spool)
                _log.info(
                    "mp4 index (moov) follows the audio: spooled %d bytes to decode", self._reader.bytes_read
                )
                with av.open(spool, mode="r") as container:
                    yield container
            return
        with av.open(
            _ReadOnly(self), mode="r", buffer_size=4096, options={"probesize": str(PROBE_BYTES)}
        ) as c:
            yield c

    def _facts(self, kind: str | None, head: bytes, container: Any, stream: Any) -> InputFacts:
        ctx = stream.codec_context
        rate, channels = int(ctx.sample_rate or 0), int(ctx.channels or 0)
        declared = _sniff.declared_duration_s(kind, head)
        if declared is None and container.duration:
            declared = container.duration / 1_000_000
        name = kind or str(container.format.name)
        if not 1 <= channels <= MAX_CHANNELS:
            raise UnsupportedAudio(
                f"{name} input declares {channels} channels; 1-{MAX_CHANNELS} are supported"
            )
        if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
            raise UnsupportedAudio(
                f"{name} input declares {rate} Hz; sample rates {MIN_RATE_HZ}-{MAX_RATE_HZ} Hz are supported"
            )
        if declared is not None and declared > self._max_s:
            raise UnsupportedAudio(
                f"{name} input declares {declared:.0f} s; the limit is {self._max_s:.0f} s"
            )
        if self._channel != "mix" and self._channel >= channels:
            raise UnsupportedAudio(
                f"channel {self._channel} requested but the input has {channels} channel(s)"
            )
        return InputFacts(
            container=name,
            codec=str(ctx.name),
            sample_rate=rate,
            channels=channels,
            declared_duration_s=declared,
        )

    def _decode(self, container: Any, stream: Any, facts: InputFacts) -> None:
        samples = 0
        for frame in self._frames(container, stream):
            data = _planar(frame)
            converter = self._converter
            if converter is None or (frame.sample_rate, data.shape[0]) != (
                converter.in_rate,
                converter.in_channels,
            ):
                if converter is not None:
                    self._end_segment(converter, samples)
                    self._warnings.append(f"audio format changed mid-stream at {self._decoded_s:.2f} s")
                    samples = 0
                converter = self._converter = self._new_converter(frame.sample_rate, data.shape[0])
            samples += data.shape[1]
            if self._decoded_s + samples / converter.in_rate > self._max_s:
                raise UnsupportedAudio(
                    f"{facts.container} input is longer than the limit of {self._max_s:.0f} s"
                )
            self._pending.append(data)
            self._pending_samples += data.shape[1]
            if self._pending_samples * 1000 >= self._batch_ms * converter.in_rate:
                self._convert_pending()
        converter = self._converter
        if converter is None or (samples == 0 and self._decoded_s == 0):
            raise UnsupportedAudio(_empty_detail(facts))
        self._end_segment(converter, samples)
        self._outbox.put(
            Finished(self._decoded_s, self._warnings + _early_end_warning(facts, self._decoded_s))
        )

    def _end_segment(self, converter: Converter, samples: int) -> None:
        """Hand off the rest of one input format (`samples` long): the pending block, the resampler tail."""
        self._convert_pending()
        self._emit(converter.flush())
        self._decoded_s += samples / converter.in_rate

    def _convert_pending(self) -> None:
        """Convert and hand off the pending block (one converter pass, one put)."""
        if not self._pending:
            return
        assert self._converter is not None
        pending, self._pending, self._pending_samples = self._pending, [], 0
        block = pending[0] if len(pending) == 1 else np.concatenate(pending, axis=1)
        self._emit(self._converter.push(block.T))

    def _deliver_before_failure(self) -> None:
        """Audio decoded before a failure reaches the consumer before the failure does."""
        try:
            self._convert_pending()
        except Closed:
            raise
        except Exception:  # the failure being reported is the one that matters
            _log.debug("could not convert the audio decoded before a failure", exc_info=True)

    def _new_converter(self, rate: int, channels: int) -> Converter:
        if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ or not 1 <= channels <= MAX_CHANNELS:
            raise UnsupportedAudio(f"decoded audio has {channels} channels at {rate} Hz; not supported")
        channel = self._channel if channels > 1 else "mix"
        if channel != "mix" and channel >= channels:
            raise UnsupportedAudio(f"channel {channel} requested but the audio has {channels} channel(s)")
        return Converter(rate, channels, target=self._target, channel=channel)

    def _frames(self, container: Any, stream: Any) -> Iterator[Any]:
        """Decoded frames; corrupt packets and a broken container tail become warnings, not failures."""
        errors = 0
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as exc:
                if self._decoded_s == 0 and errors == 0 and not self._warnings:
                    raise
                self._warnings.append(f"container error, stopped reading: {_ffmpeg_message(exc)}")
                return
            try:
                yield from packet.decode()
            except av.error.FFmpegError as exc:
                errors += 1
                if errors > MAX_PACKET_ERRORS:
                    raise UnsupportedAudio(f"more than {MAX_PACKET_ERRORS} corrupt packets") from exc
                if errors == 1:
                    self._warnings.append(f"skipped corrupt packet(s): {_ffmpeg_message(exc)}")

    def _emit(self, data: bytes) -> None:
        if data:
            self._outbox.put(data, len(data))


def _mp4_streamable(reader: ChunkReader) -> bool:
    size = _sniff.SNIFF_BYTES
    while True:
        head = reader.peek(size)
        verdict = _sniff.mp4_moov_first(head)
        if verdict is not None:
            return verdict
        if len(head) < size or size >= MP4_SNIFF_LIMIT:
            return False
        size *= 4


def _spool(reader: ChunkReader, spool: IO[bytes]) -> None:
    while chunk := reader.read(-1):
        spool.write(chunk)
    spool.seek(0)


class _ReadOnly:
    """The file object PyAV reads from: only `read` (no `seek`), so PyAV treats the input as a stream."""

    def __init__(self, decoder: Decoder) -> None:
        self.read = decoder.read


def _planar(frame: Any) -> npt.NDArray[Any]:
    """A PyAV audio frame as a ``(n_channels, n_samples)`` array (a view for packed formats), native type."""
    data: npt.NDArray[Any] = frame.to_ndarray()
    if frame.format.is_planar:
        return data
    return data.reshape(-1, len(frame.layout.channels)).T


def _translate(exc: Exception, kind: str | None) -> BaseException:
    if not isinstance(exc, av.error.FFmpegError):
        return exc
    what = f"the {kind} input" if kind else "input in an unrecognised format"
    return UnsupportedAudio(f"cannot decode {what}: {_ffmpeg_message(exc)}")


def _ffmpeg_message(exc: Exception) -> str:
    return str(getattr(exc, "strerror", None) or exc)


def _empty_detail(facts: InputFacts) -> str:
    claim = f" (the header claims {facts.declared_duration_s:.2f} s)" if facts.declared_duration_s else ""
    return f"no audio samples decoded from the {facts.container}/{facts.codec} input{claim}"


def _early_end_warning(facts: InputFacts, decoded_s: float) -> list[str]:
    declared = facts.declared_duration_s
    if declared is None or decoded_s >= declared - max(0.25, 0.02 * declared):
        return []
    return [f"input ended early: decoded {decoded_s:.2f} s of the {declared:.2f} s the header declares"]
