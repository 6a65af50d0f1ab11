"""WAV header, streaming writer and reader."""

from __future__ import annotations

import io
import wave

import pytest

from worker.audio.wav import WAVE_FORMAT_MULAW, WavWriter, read_wav, wav_header


def test_header_matches_stdlib_wave() -> None:
    blob = wav_header(sample_rate=16000, channels=2, n_frames=3) + b"\x00" * 12
    with wave.open(io.BytesIO(blob)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (16000, 2, 2, 3)


def test_writer_fixes_sizes_on_close() -> None:
    buf = io.BytesIO()
    with WavWriter(buf, sample_rate=24000, channels=2) as writer:
        writer.write(b"\x01\x00\x02\x00" * 10)
        writer.write(b"\x03\x00\x04\x00" * 5)
        assert writer.n_frames == 15
    info = read_wav(buf.getvalue())
    assert (info.sample_rate, info.channels, info.n_frames) == (24000, 2, 15)
    with wave.open(io.BytesIO(buf.getvalue())) as w:
        assert w.getnframes() == 15


def test_writer_rejects_partial_frames_and_use_after_close() -> None:
    writer = WavWriter(
        io.BytesIO(), sample_rate=8000, channels=1, sample_width=1, format_tag=WAVE_FORMAT_MULAW
    )
    with pytest.raises(ValueError, match="whole number"):
        WavWriter(io.BytesIO(), sample_rate=8000, channels=2).write(b"\x00\x00")
    writer.close()
    writer.close()
    with pytest.raises(RuntimeError):
        writer.write(b"\xff")


def test_reader_rejects_non_wav() -> None:
    with pytest.raises(ValueError, match="RIFF"):
        read_wav(b"hello")
