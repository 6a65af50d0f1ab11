"""open_frames: every fixture through a non-seekable chunk stream, bad inputs, stalls and cancellation."""

from __future__ import annotations

import asyncio
import io
import re
import struct
import threading
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from worker.audio import AudioFormat, Converter, FrameStream, g711_to_pcm16, open_frames
from worker.errors import InputTooLarge, UnsupportedAudio

AUDIO = Path("/work/shared/audio")
FORMATS = [
    AudioFormat("pcm16", 24000),
    AudioFormat("pcm16", 16000),
    AudioFormat("pcm16", 8000),
    AudioFormat("g711_ulaw", 8000),
    AudioFormat("g711_alaw", 8000),
]
PCM24 = FORMATS[0]


def index_durations() -> dict[str, float]:
    """File → duration (s) from INDEX.md (the first number of the duration column)."""
    out: dict[str, float] = {}
    for line in (AUDIO / "INDEX.md").read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 6 and re.fullmatch(r"[\w/.]+\.\w+", cells[1]):
            match = re.match(r"[\d.]+", cells[5])
            if match:
                out[cells[1]] = float(match.group())
    return out


DURATIONS = index_durations()
GOOD = sorted(name for name in DURATIONS if not name.startswith(("bad/", "quirks/")))
BAD = sorted(p.name for p in (AUDIO / "bad").iterdir())


async def chunked(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    """A non-seekable network-like body: small chunks, yielding to the loop between them."""
    for start in range(0, len(data), size):
        await asyncio.sleep(0)
        yield data[start : start + size]


async def decode_all(
    data: bytes, target: AudioFormat = PCM24, **kw: object
) -> tuple[list[bytes], FrameStream]:
    async with open_frames(chunked(data), target=target, **kw) as stream:  # type: ignore[arg-type]
        frames = [frame async for frame in stream]
    return frames, stream


async def drain(stream: FrameStream) -> int:
    """Iterate `stream` to the end under `async with`; returns the frame count."""
    async with stream:
        return sum([1 async for _ in stream])


def decoder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "audio-decode"]


def pcm(frames: list[bytes], fmt: AudioFormat) -> np.ndarray:
    data = b"".join(frames)
    if fmt.encoding != "pcm16":
        data = g711_to_pcm16(data, fmt.encoding)
    return np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768


def encode_with_pyav(fmt: str, codec: str, *, rate: int, seconds: float, channels: int = 2) -> bytes:
    """A short 440 Hz tone encoded in memory (for containers we have no fixture for)."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as container:
        layout = "stereo" if channels == 2 else "mono"
        stream: Any = container.add_stream(codec, rate=rate)
        stream.layout = layout
        t = np.arange(int(rate * seconds)) / rate
        tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
        packed = np.repeat(tone, channels).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
        frame.rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buf.getvalue()


def wav_bytes(samples: np.ndarray, *, rate: int, width: int = 2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(samples.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("target", FORMATS, ids=lambda f: f"{f.encoding}{f.sample_rate}")
@pytest.mark.parametrize("name", GOOD)
async def test_good_fixture_decodes_to_expected_duration(name: str, target: AudioFormat) -> None:
    frames, stream = await decode_all((AUDIO / name).read_bytes(), target)
    assert {len(f) for f in frames} == {target.frame_bytes(20)}
    assert stream.facts.decoded_duration_s == pytest.approx(DURATIONS[name], abs=0.05)
    assert len(frames) * 0.020 == pytest.approx(DURATIONS[name], abs=0.05)
    assert stream.facts.warnings == []
    assert not decoder_threads()


@pytest.mark.parametrize("target", FORMATS, ids=lambda f: f"{f.encoding}{f.sample_rate}")
async def test_speech_lands_where_index_says(target: AudioFormat) -> None:
    frames, _ = await decode_all((AUDIO / "booking_48k_stereo.m4a").read_bytes(), target)
    audio = pcm(frames, target)
    rate = target.sample_rate
    assert np.abs(audio[: int(0.4 * rate)]).max() < 0.01  # lead-in silence (codec noise allowed)
    assert np.abs(audio[int(0.6 * rate) : int(3.4 * rate)]).max() > 0.2


async def test_pcm16_passthrough_is_bit_exact() -> None:
    data = (AUDIO / "hello_24k_mono.wav").read_bytes()
    frames, _ = await decode_all(data)
    body = b"".join(frames)
    source = data[44:]
    assert body[: len(source)] == source
    assert set(body[len(source) :]) <= {0}


@pytest.mark.parametrize("name", BAD)
async def test_bad_inputs_are_unsupported_with_a_detail(name: str) -> None:
    with pytest.raises(UnsupportedAudio) as info:
        await decode_all((AUDIO / "bad" / name).read_bytes())
    assert len(info.value.detail) > 15
    assert not decoder_threads()


async def test_truncated_mp3_succeeds_with_warning() -> None:
    frames, stream = await decode_all((AUDIO / "quirks/truncated.mp3").read_bytes())
    assert stream.facts.decoded_duration_s == pytest.approx(1.80, abs=0.05)
    assert stream.facts.declared_duration_s == pytest.approx(4.58, abs=0.05)
    assert len(frames) * 0.020 == pytest.approx(1.80, abs=0.05)
    assert any("1.80" in w and "4.58" in w for w in stream.facts.warnings), stream.facts.warnings


async def test_wrong_extension_is_sniffed_by_content() -> None:
    frames, stream = await decode_all((AUDIO / "quirks/wrong_extension.mp3").read_bytes())
    assert stream.facts.container == "flac"
    assert len(frames) * 0.020 == pytest.approx(4.55, abs=0.05)


@pytest.mark.parametrize(
    ("fmt", "codec", "rate", "container"),
    [("aiff", "pcm_s16be", 22050, "aiff"), ("webm", "libopus", 48000, "webm")],
)
async def test_synthetic_containers(fmt: str, codec: str, rate: int, container: str) -> None:
    frames, stream = await decode_all(encode_with_pyav(fmt, codec, rate=rate, seconds=1.5), FORMATS[3])
    assert stream.facts.container == container
    assert len(frames) * 0.020 == pytest.approx(1.5, abs=0.05)
    assert np.abs(pcm(frames, FORMATS[3])[2000:10000]).max() == pytest.approx(0.3, abs=0.05)


async def test_8bit_wav() -> None:
    tone = (0.5 * np.sin(2 * np.pi * 300 * np.arange(11025) / 11025) * 127 + 128).astype(np.uint8)
    frames, stream = await decode_all(wav_bytes(tone.reshape(-1, 1), rate=11025, width=1))
    assert stream.facts.codec == "pcm_u8"
    assert len(frames) == 50
    assert np.abs(pcm(frames, PCM24)).max() == pytest.approx(0.5, abs=0.02)


async def test_six_channels_mix_and_index_selection() -> None:
    levels = np.array([0.0, 0.1, 0.2, 0.4, 0.0, 0.0])
    samples = (np.ones((16000, 6)) * levels * 32767).astype(np.int16)
    data = wav_bytes(samples, rate=16000)
    picked, stream = await decode_all(data, FORMATS[1], channel=3)
    assert stream.facts.channels == 6
    assert np.median(pcm(picked, FORMATS[1])) == pytest.approx(0.4, abs=0.001)
    mixed, _ = await decode_all(data, FORMATS[1])
    assert np.median(pcm(mixed, FORMATS[1])) == pytest.approx(levels.mean(), abs=0.001)
    with pytest.raises(UnsupportedAudio, match="channel 6"):
        await decode_all(data, channel=6)


def absurd_wav(*, channels: int, rate: int) -> bytes:
    block = channels * 2
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, 16)
    body = b"\x00" * block * 100
    return (
        b"RIFF"
        + struct.pack("<I", 36 + len(body))
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + (b"data" + struct.pack("<I", len(body)) + body)
    )


@pytest.mark.parametrize(
    ("channels", "rate", "match"),
    [(16, 24000, "channels"), (1, 1000, "Hz"), (1, 768_000, "Hz")],
)
async def test_absurd_headers_are_unsupported(channels: int, rate: int, match: str) -> None:
    with pytest.raises(UnsupportedAudio, match=match):
        await decode_all(absurd_wav(channels=channels, rate=rate))


async def test_duration_over_limit_declared_or_decoded() -> None:
    with pytest.raises(UnsupportedAudio, match="limit"):
        await decode_all((AUDIO / "hello_24k_mono.wav").read_bytes(), max_duration_s=1.0)
    with pytest.raises(UnsupportedAudio, match="limit"):  # ogg declares nothing: caught while decoding
        await decode_all((AUDIO / "booking_48k_stereo.ogg").read_bytes(), max_duration_s=1.0)


async def test_stalled_input_times_out_as_unsupported() -> None:
    never = asyncio.Event()
    data = (AUDIO / "booking_48k_stereo.mp3").read_bytes()

    async def stalls() -> AsyncIterator[bytes]:
        yield data[:8192]
        await never.wait()

    with pytest.raises(UnsupportedAudio, match="stalled"):
        await drain(open_frames(stalls(), target=PCM24, decode_timeout_s=0.5))
    assert not decoder_threads()


async def test_source_errors_surface_unchanged() -> None:
    data = (AUDIO / "caller_3turns_16k.wav").read_bytes()

    async def too_big() -> AsyncIterator[bytes]:
        yield data[:65536]
        raise InputTooLarge("input exceeds 64 KiB")

    with pytest.raises(InputTooLarge):
        await drain(open_frames(too_big(), target=PCM24))
    assert not decoder_threads()


async def test_cancel_while_producer_blocked_on_full_queue() -> None:
    got_first = asyncio.Event()
    data = (AUDIO / "caller_3turns_16k.wav").read_bytes()

    async def consume() -> None:
        async with open_frames(chunked(data), target=PCM24, lookahead_ms=100) as stream:
            async for _ in stream:
                got_first.set()
                await asyncio.Event().wait()  # a consumer that stops reading

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not decoder_threads()


async def test_cancel_while_thread_waits_for_input() -> None:
    data = (AUDIO / "caller_3turns_16k.wav").read_bytes()
    served_all = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield data[:100_000]
        served_all.set()
        await asyncio.Event().wait()

    async def consume() -> None:
        async with open_frames(slow(), target=PCM24) as stream:
            async for _ in stream:
                pass

    task = asyncio.create_task(consume())
    await asyncio.wait_for(served_all.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not decoder_threads()


async def test_decoder_runs_at_most_lookahead_ahead() -> None:
    data = (AUDIO / "caller_3turns_16k.wav").read_bytes()  # 512 KB, 16 s
    pulled = 0
    too_far = asyncio.Event()

    async def counting() -> AsyncIterator[bytes]:
        nonlocal pulled
        async for chunk in chunked(data):
            pulled += len(chunk)
            if pulled > 200_000:
                too_far.set()
            yield chunk

    async with open_frames(counting(), target=PCM24, lookahead_ms=200) as stream:
        await anext(stream)
        # Nothing to wait for if bounded: the flag must stay unset while we idle.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(too_far.wait(), 0.3)
        assert pulled < 200_000
    assert not decoder_threads()


async def test_facts_before_first_frame_and_reuse_after_close() -> None:
    stream = open_frames(chunked((AUDIO / "hello_24k_mono.wav").read_bytes()), target=PCM24)
    with pytest.raises(RuntimeError, match="first frame"):
        _ = stream.facts
    async with stream:
        await anext(stream)
        assert stream.facts.sample_rate == 24000
    with pytest.raises(RuntimeError, match="aclose"):
        await anext(stream)
    await stream.aclose()


SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def per_frame_reference(data: bytes, target: AudioFormat) -> bytes:
    """What the decoder produced before it batched: one `Converter.push` per decoded PyAV frame."""
    out: list[bytes] = []
    converter: Converter | None = None
    container: Any
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(audio=0):
            array = frame.to_ndarray()
            channels = len(frame.layout.channels)
            samples = array.T if frame.format.is_planar else array.reshape(-1, channels)
            converter = converter or Converter(frame.sample_rate, channels, target=target)
            out.append(converter.push(samples))
    assert converter is not None
    return b"".join(out) + converter.flush()


@pytest.mark.parametrize("name", ["booking_48k_stereo.mp3", "weather_44k1_stereo.wav", "call_3turns_16k.wav"])
@pytest.mark.parametrize("target", [PCM24, AudioFormat("g711_ulaw", 8000)], ids=["pcm24", "ulaw8"])
async def test_block_conversion_matches_per_frame_conversion(name: str, target: AudioFormat) -> None:
    data = (SAMPLES / name).read_bytes()
    async with open_frames(chunked(data, 65536), target=target) as stream:
        got = b"".join([frame async for frame in stream])
    expected = per_frame_reference(data, target)
    assert got[: len(expected)] == expected
    assert got[len(expected) :] == target.silence(len(got) - len(expected))  # the last frame's padding


async def test_audio_so_far_is_delivered_while_the_input_stalls() -> None:
    data = (SAMPLES / "booking_48k_stereo.mp3").read_bytes()  # 128 kbit/s CBR, 4.58 s
    first_ms = 4580 * 60_000 / len(data)
    more = asyncio.Event()

    async def stalls_after_first_chunk() -> AsyncIterator[bytes]:
        yield data[:60_000]
        await more.wait()
        yield data[60_000:]

    async def frames_before_more(stream: FrameStream) -> int:
        count = 0
        async for _ in stream:
            count += 1
            if count * 20 >= first_ms - 100:  # all of the first chunk but FFmpeg's read-ahead
                return count
        return count

    async with open_frames(stalls_after_first_chunk(), target=PCM24) as stream:
        # Decoded audio must not wait in the decoder for a block to fill while the input stalls.
        await asyncio.wait_for(frames_before_more(stream), 10)
        more.set()


async def test_audio_decoded_before_a_source_error_comes_first() -> None:
    data = (SAMPLES / "call_3turns_16k.wav").read_bytes()
    frames = 0

    async def fails_after_first_chunk() -> AsyncIterator[bytes]:
        yield data[:100_000]
        raise InputTooLarge("input exceeds 100 kB")

    async def count_frames() -> None:
        nonlocal frames
        async with open_frames(fails_after_first_chunk(), target=PCM24) as stream:
            async for _ in stream:
                frames += 1

    with pytest.raises(InputTooLarge):
        await count_frames()
    assert frames * 20 >= (100_000 - 44) // 32 - 120
