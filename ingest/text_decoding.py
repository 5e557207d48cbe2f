"""Text decoding of raw inputs: UTF-8 with every invalid sequence counted, byte-order marks sniffed,
UTF-16/32 streams transcoded to UTF-8, lone surrogates replaced.

Why a module of its own: every extractor decodes bytes it got from ``safeio`` the same way, and the counts
(``utf8_errors``, ``surrogates``) are metadata users filter on; one implementation keeps them comparable
across sources.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import re
from typing import BinaryIO

_CHUNK = 1 << 20


def decode_utf8(data: bytes | memoryview) -> tuple[str, int]:
    """Decode UTF-8, replacing each invalid sequence with U+FFFD exactly as errors="replace"
    would, and return how many replacements were made (0 for valid input: the fast path)."""
    text, _used, errors = _decode_counting(codecs.utf_8_decode, data, True)
    return text, errors


def _decode_counting(decode, data: bytes | memoryview, final: bool) -> tuple[str, int, int]:
    """``decode`` (a ``codecs.*_decode`` function) with each invalid sequence replaced by U+FFFD
    and counted: (text, bytes consumed, replacements). Linear: each retry starts after an error."""
    try:
        text, used = decode(data, "strict", final)
        return text, used, 0
    except UnicodeDecodeError:
        pass
    view = memoryview(data)
    parts: list[str] = []
    errors = 0
    pos = 0
    while True:
        try:
            text, used = decode(view[pos:], "strict", final)
            parts.append(text)
            return "".join(parts), pos + used, errors
        except UnicodeDecodeError as exc:
            parts.append(decode(view[pos : pos + exc.start], "strict", True)[0])
            parts.append("\ufffd")
            errors += 1
            pos += exc.end


# Byte-order marks, longest first (the UTF-32-LE mark begins with the UTF-16-LE one).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_DECODERS = {"utf-8": codecs.utf_8_decode, "utf-16-le": codecs.utf_16_le_decode, "utf-16-be": codecs.utf_16_be_decode,
             "utf-32-le": codecs.utf_32_le_decode, "utf-32-be": codecs.utf_32_be_decode}  # fmt: skip


def sniff_unicode(head: bytes) -> tuple[str, int] | None:
    """(encoding, length of its byte-order mark) when ``head`` (a file's first bytes, a few KB) is
    UTF-16/32 text: by byte-order mark, else by the NUL pattern of mostly-ASCII UTF-16/32 without a
    mark (``<\\0?\\0`` of an XML declaration, or nearly every other byte NUL). None for anything
    else, UTF-8 included (with or without its mark: callers decode UTF-8 already)."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return (encoding, len(bom)) if encoding != "utf-8" else None
    for pattern, encoding in ((b"<\0\0\0", "utf-32-le"), (b"\0\0\0<", "utf-32-be"),
                              (b"<\0?\0", "utf-16-le"), (b"\0<\0?", "utf-16-be")):
        if head.startswith(pattern):
            return encoding, 0
    sample = head[: len(head) // 4 * 4]
    if len(sample) < 64:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) >= 0.9 * len(odd) and even.count(0) <= 0.1 * len(even):
        return ("utf-32-le" if sample[2::4].count(0) >= 0.9 * len(sample[2::4]) else "utf-16-le"), 0
    if even.count(0) >= 0.9 * len(even) and odd.count(0) <= 0.1 * len(odd):
        return ("utf-32-be" if sample[1::4].count(0) >= 0.9 * len(sample[1::4]) else "utf-16-be"), 0
    return None


def decode_unicode(data: bytes | memoryview, encoding: str) -> tuple[str, int]:
    """Decode UTF-8/16/32 (``encoding`` as ``sniff_unicode`` names it; the mark already cut off),
    invalid sequences replaced by U+FFFD and counted, as ``decode_utf8`` does for UTF-8."""
    text, _used, errors = _decode_counting(_DECODERS[encoding], data, True)
    return text, errors


class TranscodeToUtf8(io.RawIOBase):
    """A UTF-16/32 byte stream read as UTF-8, for readers that split lines or parse UTF-8 (the
    StackExchange Posts.xml reader). Each invalid sequence becomes one byte 0xFF, which is never
    valid UTF-8: the reader's own UTF-8 decoding replaces it and counts it, once."""

    def __init__(self, stream: BinaryIO, encoding: str, skip: int = 0):
        super().__init__()
        self._stream = stream
        self._decode = _DECODERS[encoding]
        self._skip = skip  # the byte-order mark
        self._held = b""  # an incomplete code unit / surrogate pair carried to the next chunk
        self._out = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        while not self._out and not self._eof:
            chunk = self._stream.read(_CHUNK)
            if self._skip:
                cut = min(self._skip, len(chunk))
                chunk, self._skip = chunk[cut:], self._skip - cut
                if not chunk and self._skip:
                    continue
            data = self._held + chunk
            self._eof = not chunk
            parts: list[bytes] = []
            pos = 0
            while True:
                try:
                    text, used = self._decode(memoryview(data)[pos:], "strict", self._eof)
                    parts.append(text.encode("utf-8"))
                    pos += used
                    break
                except UnicodeDecodeError as exc:
                    good = self._decode(memoryview(data)[pos : pos + exc.start], "strict", True)[0]
                    parts.append(good.encode("utf-8"))
                    parts.append(b"\xff")
                    pos += exc.end
            self._held = data[pos:]
            self._out = b"".join(parts)
        n = min(len(buf), len(self._out))
        buf[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.close()
        super().close()


_SURROGATES = re.compile("[\ud800-\udfff]")


def replace_surrogates(text: str) -> tuple[str, int]:
    """Replace lone UTF-16 surrogates (e.g. from JSON `\\ud800` escapes), which cannot be
    written as UTF-8, with U+FFFD; return the text and how many were replaced."""
    if not _SURROGATES.search(text):
        return text, 0
    return _SURROGATES.subn("\ufffd", text)
