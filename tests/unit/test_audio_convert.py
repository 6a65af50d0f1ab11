"""Converter, G.711 codecs and the AudioFormat value object."""

from __future__ import annotations

import audioop
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.audio.convert import Converter, g711_to_pcm16, pcm16_to_g711, to_float32
from worker.audio.formats import AudioFormat

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)
PCM24 = AudioFormat("pcm16", 24000)


@pytest.fixture(autouse=True)
def _quiet_audioop() -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.mark.parametrize(
    ("encoding", "reference"), [("g711_ulaw", audioop.lin2ulaw), ("g711_alaw", audioop.lin2alaw)]
)
def test_g711_encoder_bit_exact_with_audioop_for_all_inputs(encoding: str, reference: object) -> None:
    assert callable(reference)
    assert pcm16_to_g711(ALL_INT16, encoding) == reference(ALL_INT16.astype("<i2").tobytes(), 2)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("encoding", "reference"), [("g711_ulaw", audioop.ulaw2lin), ("g711_alaw", audioop.alaw2lin)]
)
def test_g711_decoder_bit_exact_with_audioop(encoding: str, reference: object) -> None:
    assert callable(reference)
    codes = bytes(range(256))
    assert g711_to_pcm16(codes, encoding) == reference(codes, 2)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fmt", "frame_bytes", "silence_byte"),
    [
        (AudioFormat("pcm16", 24000), 960, 0x00),
        (AudioFormat("pcm16", 16000), 640, 0x00),
        (AudioFormat("pcm16", 8000), 320, 0x00),
        (AudioFormat("g711_ulaw", 8000), 160, 0xFF),
        (AudioFormat("g711_alaw", 8000), 160, 0xD5),
    ],
)
def test_audio_format_sizes_and_silence(fmt: AudioFormat, frame_bytes: int, silence_byte: int) -> None:
    assert fmt.frame_bytes(20) == frame_bytes
    assert fmt.silence(3) == bytes([silence_byte]) * 3


def test_silence_decodes_to_zero() -> None:
    for fmt in (AudioFormat("g711_ulaw", 8000), AudioFormat("g711_alaw", 8000)):
        pcm = np.frombuffer(g711_to_pcm16(fmt.silence(4), fmt.encoding), dtype="<i2")
        assert np.abs(pcm).max() <= 8


@pytest.mark.parametrize(("encoding", "rate"), [("pcm16", 44100), ("g711_ulaw", 16000), ("opus", 8000)])
def test_audio_format_rejects_invalid(encoding: str, rate: int) -> None:
    with pytest.raises(ValueError, match=r"rate|encoding"):
        AudioFormat(encoding, rate)  # type: ignore[arg-type]


def test_passthrough_is_exact_and_mix_is_mean() -> None:
    left = np.array([100, -200, 32767, -32768], dtype=np.int16)
    right = np.array([300, -200, 32767, -32768], dtype=np.int16)
    conv = Converter(24000, 2, target=PCM24, channel="mix")
    out = conv.push(np.stack([left, right], axis=1)) + conv.flush()
    assert np.frombuffer(out, dtype="<i2").tolist() == [200, -200, 32767, -32768]
    pick = Converter(24000, 2, target=PCM24, channel=1)
    assert np.frombuffer(pick.push(np.stack([left, right], axis=1)), dtype="<i2").tolist() == right.tolist()


def test_channel_selection_validated() -> None:
    with pytest.raises(ValueError, match="channel 2"):
        Converter(24000, 2, target=PCM24, channel=2)


def test_resample_length_and_g711_output() -> None:
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(48000) / 48000)).astype(np.float32)
    conv = Converter(48000, 1, target=AudioFormat("g711_ulaw", 8000))
    out = conv.push(tone) + conv.flush()
    assert len(out) == 8000
    pcm = np.frombuffer(g711_to_pcm16(out, "g711_ulaw"), dtype="<i2").astype(np.float64) / 32768
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    assert np.abs(pcm[200:-200] - expected[200:-200]).max() < 0.03


def _split(data: np.ndarray, cuts: list[int]) -> list[np.ndarray]:
    edges = sorted({min(c, len(data)) for c in cuts})
    return np.split(data, edges)


@settings(max_examples=40, deadline=None)
@given(
    rate=st.sampled_from([8000, 16000, 22050, 24000, 44100, 48000]),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_chunking_does_not_change_output(rate: int, cuts: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = (rng.standard_normal((4000, 2)) * 3000).astype(np.int16)
    whole = Converter(rate, 2, target=PCM24)
    one = whole.push(data) + whole.flush()
    pieces = Converter(rate, 2, target=PCM24)
    many = b"".join(pieces.push(part) for part in _split(data, cuts)) + pieces.flush()
    a, b = np.frombuffer(one, dtype="<i2"), np.frombuffer(many, dtype="<i2")
    assert len(a) == len(b)
    if rate == 24000:
        assert one == many
    else:
        assert np.abs(a.astype(np.int32) - b.astype(np.int32)).max() <= 2


def _float64_route(samples: np.ndarray) -> np.ndarray:
    """The reference scaling: exact quotient in float64, rounded once to float32."""
    half = float(1 << (samples.dtype.itemsize * 8 - 1))
    offset = half if samples.dtype.kind == "u" else 0.0
    return ((samples.astype(np.float64) - offset) / half).astype(np.float32)


@settings(max_examples=30, deadline=None)
@given(
    dtype=st.sampled_from([np.uint8, np.int16, np.int32]),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_float32_scaling_equals_the_float64_route_bit_for_bit(dtype: type, seed: int) -> None:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    samples = rng.integers(info.min, info.max, size=5000, endpoint=True, dtype=dtype)
    samples[:2] = [info.min, info.max]
    assert to_float32(samples).tobytes() == _float64_route(samples).tobytes()


@pytest.mark.parametrize("channels", [2, 3, 6])
@pytest.mark.parametrize("layout", ["packed", "planar"])
def test_mix_is_the_float32_mean_whatever_the_memory_layout(channels: int, layout: str) -> None:
    rng = np.random.default_rng(channels)
    planes = (rng.standard_normal((channels, 3000)) * 0.3).astype(np.float32)
    samples = planes.T if layout == "planar" else np.ascontiguousarray(planes.T)  # (n, channels) either way
    mean = np.ascontiguousarray(planes.T).mean(axis=1, dtype=np.float32)
    expected = np.clip(np.rint(mean * 32768.0), -32768, 32767).astype("<i2").tobytes()
    assert Converter(24000, channels, target=PCM24).push(samples) == expected
