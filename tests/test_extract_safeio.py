"""Hostile-input behaviour of ingest.safeio (streams, caps, decoding)."""

import bz2
import gzip
import io
import lzma
import os

import pytest

from ingest import safeio, text_decoding

PAYLOAD = os.urandom(40_000).hex().encode() + b"\nsecond line\n"


def _compress(fmt: str, data: bytes) -> bytes:
    if fmt == "gzip":
        return gzip.compress(data)
    if fmt == "bz2":
        return bz2.compress(data)
    if fmt == "xz":
        return lzma.compress(data)
    return safeio._zstd.compress(data)


FORMATS = ["gzip", "bz2", "xz", "zstd"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_roundtrip_by_magic(fmt):
    blob = _compress(fmt, PAYLOAD)
    assert safeio.detect_format(blob[:6]) == fmt
    stream = safeio.open_stream(io.BytesIO(blob))
    assert safeio.stream_format(stream) == fmt
    assert stream.read() == PAYLOAD


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_stream_is_typed(fmt):
    blob = _compress(fmt, PAYLOAD)
    with pytest.raises(safeio.TruncatedInput) as info:
        safeio.open_stream(io.BytesIO(blob[: len(blob) // 2])).read()
    assert info.value.reason == f"truncated:{fmt}"


@pytest.mark.parametrize("fmt", ["gzip", "bz2", "xz"])
def test_corrupt_stream_is_typed(fmt):
    blob = bytearray(_compress(fmt, PAYLOAD))
    for i in range(40, len(blob) - 40, 97):
        blob[i] ^= 0x5A
    with pytest.raises(safeio.SafeIOError) as info:
        safeio.open_stream(io.BytesIO(bytes(blob))).read()
    assert info.value.reason in (f"corrupt:{fmt}", f"truncated:{fmt}")


def test_multi_member_gzip_reads_all_members():
    blob = gzip.compress(b"a\n") + gzip.compress(b"b\n")
    assert safeio.open_stream(io.BytesIO(blob)).read() == b"a\nb\n"


def test_decompression_bomb_hits_cap():
    bomb = gzip.compress(b"\0" * (8 * safeio.MiB))  # ~8 KB compressed
    stream = safeio.open_stream(io.BytesIO(bomb), max_expanded=safeio.MiB)
    with pytest.raises(safeio.TooLarge) as info:
        while stream.read(64 * 1024):
            pass
    assert info.value.reason == "too_large"


def test_non_peekable_source_keeps_magic_bytes():
    class NoPeek(io.RawIOBase):
        def __init__(self, data):
            self._b = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, buf):
            return self._b.readinto(buf)

    assert safeio.open_stream(NoPeek(gzip.compress(b"hello"))).read() == b"hello"


class Endless(io.RawIOBase):
    """A line of `n` bytes without building it in memory, then a short line."""

    def __init__(self, n: int):
        self.left = n
        self.tail = b"\nshort\n"

    def readable(self):
        return True

    def readinto(self, buf):
        if self.left:
            k = min(len(buf), self.left)
            buf[:k] = b"x" * k
            self.left -= k
            return k
        k = min(len(buf), len(self.tail))
        buf[:k] = self.tail[:k]
        self.tail = self.tail[k:]
        return k


def test_huge_line_is_skipped_not_loaded():
    huge = 3 * 1024 * safeio.MiB  # a 3 GiB line, streamed
    stream = io.BufferedReader(Endless(huge), safeio.MiB)
    lines = list(safeio.iter_lines(stream, max_line=1024))
    assert [ln.too_large for ln in lines] == [True, False]
    assert lines[0].size == huge + 1 and lines[0].data == b""
    assert lines[1].data == b"short\n" and lines[1].number == 2


def test_line_cap_counts_terminator():
    stream = io.BytesIO(b"abc\nabcd\n")
    lines = list(safeio.iter_lines(stream, max_line=4))
    assert [(ln.data, ln.too_large) for ln in lines] == [(b"abc\n", False), (b"", True)]


def test_read_capped():
    assert safeio.read_capped(io.BytesIO(b"12345"), 5) == b"12345"
    with pytest.raises(safeio.TooLarge):
        safeio.read_capped(io.BytesIO(b"123456"), 5)


def test_decode_utf8_counts_like_replace():
    bad = "héllo".encode() + b"\xff\xfe" + "wörld".encode() + b"\xe2\x82" + b"!"
    text, errors = text_decoding.decode_utf8(bad)
    assert text == bad.decode("utf-8", errors="replace")
    assert errors == text.count("\ufffd") == 3
    assert text_decoding.decode_utf8("ok \ufffd".encode()) == ("ok \ufffd", 0)


def test_open_path_missing_file_is_unreadable(tmp_path):
    with pytest.raises(safeio.Unreadable) as info:
        with safeio.open_path(tmp_path / "nope.gz"):
            pass
    assert info.value.reason == "unreadable"
    assert safeio.reason_for(info.value) == "unreadable"
