"""Content sniffing on an input's first bytes: container kind, declared duration, MP4 moov placement."""

from __future__ import annotations

import struct

__all__ = ["SNIFF_BYTES", "container_kind", "declared_duration_s", "mp4_moov_first"]

#: How many leading bytes we look at before handing the stream to the decoder.
SNIFF_BYTES = 4096

_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"fLaC", "flac"),
    (0, b"OggS", "ogg"),
    (0, b"ID3", "mp3"),
    (0, b"\x1a\x45\xdf\xa3", "webm"),
    (0, b".snd", "au"),
    (0, b"caff", "caf"),
    (4, b"ftyp", "mp4"),
)

# MPEG audio: (version bits) -> sample rates by index; layer III samples per frame by version.
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def container_kind(head: bytes) -> str | None:
    """Best guess of the container from magic bytes (never the file name); None if unknown."""
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if len(head) >= 12 and head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    for offset, magic, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "aac" if head[1] & 0x06 == 0 else "mp3"
    return None


def declared_duration_s(kind: str | None, head: bytes) -> float | None:
    """Duration the header claims, for formats whose claim PyAV cannot see on a non-seekable stream."""
    if kind == "wav":
        return _wav_duration(head)
    if kind == "mp3":
        return _mp3_xing_duration(head)
    return None


def _wav_duration(head: bytes) -> float | None:
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        cid, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if cid == b"fmt " and pos + 20 <= len(head):
            byte_rate = struct.unpack_from("<I", head, pos + 16)[0]
        elif cid == b"data":
            if byte_rate <= 0 or size in (0, 0xFFFFFFFF):
                return None
            return float(size) / byte_rate
        pos += 8 + size + (size & 1)
    return None


def _mp3_xing_duration(head: bytes) -> float | None:
    """Frames × samples-per-frame / rate from a Xing/Info header in the first MPEG layer III frame."""
    pos = 0
    if head[:3] == b"ID3" and len(head) >= 10:
        size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
        pos = 10 + size + (10 if head[5] & 0x10 else 0)
    if pos + 4 > len(head) or head[pos] != 0xFF or head[pos + 1] & 0xE0 != 0xE0:
        return None
    version, layer = (head[pos + 1] >> 3) & 0x3, (head[pos + 1] >> 1) & 0x3
    rate_index, mono = (head[pos + 2] >> 2) & 0x3, (head[pos + 3] >> 6) == 0x3
    if version not in _MPEG_RATES or layer != 1 or rate_index == 3:
        return None
    side_info = (17 if mono else 32) if version == 3 else (9 if mono else 17)
    tag = pos + 4 + side_info
    if head[tag : tag + 4] not in (b"Xing", b"Info") or tag + 12 > len(head):
        return None
    flags, frames = struct.unpack_from(">II", head, tag + 4)
    if not flags & 0x1 or frames == 0:
        return None
    samples_per_frame = 1152 if version == 3 else 576
    return float(frames * samples_per_frame / _MPEG_RATES[version][rate_index])


def mp4_moov_first(head: bytes) -> bool | None:
    """For an ISO-BMFF file: True if `moov`/`moof` precedes `mdat` (streamable), False if `mdat` comes
    first, None if `head` ends before either top-level box is reached."""
    pos = 0
    while pos + 8 <= len(head):
        size, box = struct.unpack_from(">I4s", head, pos)
        if box in (b"moov", b"moof"):
            return True
        if box == b"mdat":
            return False
        if size == 1 and pos + 16 <= len(head):
            size = struct.unpack_from(">Q", head, pos + 8)[0]
        if size < 8:
            return False
        pos += size
    return None
