"""Safe streaming reads of untrusted raw inputs.

Why: every extractor reads files we did not produce (crawls, dumps, archives). A truncated
download, a flipped bit, a decompression bomb or a single multi-gigabyte line must become a
*counted exclusion* with a short stable reason, never a traceback and never unbounded memory.
This module is the one place that turns those failure modes into typed exceptions carrying that
reason (`corrupt:<fmt>`, `truncated:<fmt>`, `too_large`, `unreadable`).

API (stable; other extractors import it):
    open_stream(src, max_expanded=..., fmt=None) -> io.BufferedReader   # by magic: gzip/bz2/xz/zstd/raw
    open_path(path, max_expanded=...)            -> context manager yielding the same
    detect_format(head: bytes) -> str
    iter_lines(stream, max_line=...)             -> Iterator[Line]       # bounded line reading
    read_capped(stream, cap) -> bytes                                    # whole record, or TooLarge
    decode_utf8(data) -> (text, n_errors)                                # replacement + error count
    replace_surrogates(text) -> (text, n)                                # lone surrogates -> U+FFFD
    reason_for(exc) -> str                                               # exception -> exclusion reason
    IncrementalReader(stream)                 # forward-only, one chunk per read (for native parsers)
Exceptions: SafeIOError(reason) with subclasses CorruptInput(fmt), TruncatedInput(fmt),
TooLarge(what), Unreadable(detail).
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import gzip
import io
import lzma
import pathlib
import re
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

try:  # Python 3.14 ships compression.zstd; 3.11 has the backport.
    from compression import zstd as _zstd  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on interpreter version
    try:
        from backports import zstd as _zstd  # type: ignore[no-redef]
    except ImportError:  # pragma: no cover
        _zstd = None

MiB = 1 << 20
GiB = 1 << 30
DEFAULT_MAX_RECORD = 64 * MiB  # one record / line / archive member, expanded
DEFAULT_MAX_EXPANDED = 64 * GiB  # one whole decompressed stream (decompression-bomb cap)
_CHUNK = MiB

_MAGICS = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
_ZSTD_ERRORS: tuple[type[BaseException], ...] = (_zstd.ZstdError,) if _zstd else ()
_CODEC_ERRORS = (zlib.error, gzip.BadGzipFile, lzma.LZMAError) + _ZSTD_ERRORS


class SafeIOError(Exception):
    """An input problem that maps to one exclusion reason (``self.reason``)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class CorruptInput(SafeIOError):
    def __init__(self, fmt: str, detail: str = ""):
        super().__init__(f"corrupt:{fmt}", detail)
        self.fmt = fmt


class TruncatedInput(SafeIOError):
    def __init__(self, fmt: str, detail: str = ""):
        super().__init__(f"truncated:{fmt}", detail)
        self.fmt = fmt


class TooLarge(SafeIOError):
    def __init__(self, detail: str = ""):
        super().__init__("too_large", detail)


class Unreadable(SafeIOError):
    def __init__(self, detail: str = ""):
        super().__init__("unreadable", detail)


def reason_for(exc: BaseException) -> str:
    """Short stable exclusion reason for any exception raised while reading an input."""
    if isinstance(exc, SafeIOError):
        return exc.reason
    if isinstance(exc, EOFError):
        return "truncated"
    if isinstance(exc, _CODEC_ERRORS):
        return "corrupt"
    if isinstance(exc, MemoryError):
        return "too_large"
    if isinstance(exc, OSError):
        return "unreadable"
    return f"error:{type(exc).__name__}"


def detect_format(head: bytes) -> str:
    """Compression format from the first bytes: gzip, bz2, xz, zstd, or raw."""
    for magic, fmt in _MAGICS:
        if head.startswith(magic):
            return fmt
    return "raw"


class _CappedReader(io.RawIOBase):
    """Raw reader over a (de)compressing file object that enforces an expanded-size cap and
    translates codec/IO failures into SafeIOError subclasses."""

    def __init__(self, inner: BinaryIO, fmt: str, max_expanded: int):
        super().__init__()
        self._inner = inner
        self.fmt = fmt
        self.max_expanded = max_expanded
        self.expanded = 0
        self._read = getattr(inner, "read1", inner.read)

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        want = min(len(buf), self.max_expanded - self.expanded + 1)
        if want <= 0:
            raise TooLarge(f"{self.fmt} stream expands beyond {self.max_expanded} bytes")
        try:  # read1: one decompression step, so data before a damaged spot is never discarded
            data = self._read(want)
        except EOFError as exc:
            raise TruncatedInput(self.fmt, str(exc)) from None
        except _CODEC_ERRORS as exc:
            raise CorruptInput(self.fmt, str(exc)) from None
        except OSError as exc:
            if exc.errno is None:  # bz2/lzma report bad data as errno-less OSError
                raise CorruptInput(self.fmt, str(exc)) from None
            raise Unreadable(str(exc)) from None
        n = len(data)
        self.expanded += n
        if self.expanded > self.max_expanded:
            raise TooLarge(f"{self.fmt} stream expands beyond {self.max_expanded} bytes")
        buf[:n] = data
        return n

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._inner.close()
        super().close()


class _Prefixed(io.RawIOBase):
    """Re-attach already-read magic bytes in front of a non-peekable stream."""

    def __init__(self, head: bytes, rest: BinaryIO):
        super().__init__()
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def _decompressor(fmt: str, raw: BinaryIO) -> BinaryIO:
    if fmt == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # multi-member (per-record WARC.gz) aware
    if fmt == "bz2":
        return bz2.BZ2File(raw, mode="rb")  # multi-stream (pbzip2) aware
    if fmt == "xz":
        return lzma.LZMAFile(raw, mode="rb")
    if fmt == "zstd":
        if _zstd is None:
            raise CorruptInput("zstd", "no zstd decoder installed")
        return _zstd.ZstdFile(raw, mode="rb")
    return raw


def open_stream(
    src: BinaryIO, max_expanded: int = DEFAULT_MAX_EXPANDED, fmt: str | None = None
) -> io.BufferedReader:
    """Wrap a binary stream: decompress by magic (or `fmt`), cap the expanded size, map errors.

    The caller keeps ownership of `src` (closing the returned reader also closes it)."""
    if fmt is None:
        try:
            if hasattr(src, "peek"):
                head = src.peek(6)[:6]
            else:
                head = src.read(6)
                src = _Prefixed(head, src)  # type: ignore[assignment]
        except OSError as exc:
            raise Unreadable(str(exc)) from None
        fmt = detect_format(head)
    return io.BufferedReader(_CappedReader(_decompressor(fmt, src), fmt, max_expanded), _CHUNK)


@contextlib.contextmanager
def open_path(
    path: str | pathlib.Path, max_expanded: int = DEFAULT_MAX_EXPANDED
) -> Iterator[io.BufferedReader]:
    """Open a file on disk as a safe, decompressed, capped stream."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed via the wrapper below
    except OSError as exc:
        raise Unreadable(f"{path}: {exc.strerror or exc}") from None
    stream = None
    try:
        stream = open_stream(io.BufferedReader(raw, _CHUNK), max_expanded)
        yield stream
    finally:
        if stream is not None:
            stream.close()
        raw.close()


def stream_format(stream: io.BufferedReader) -> str:
    """Format detected by `open_stream` for a stream it returned (for reason strings)."""
    return getattr(stream.raw, "fmt", "raw")


@dataclass(frozen=True)
class Line:
    """One line from `iter_lines`. When `too_large`, `data` is empty and `size` is the full
    length of the skipped line (terminator included)."""

    number: int  # 1-based
    data: bytes
    size: int
    too_large: bool = False


def iter_lines(stream: BinaryIO, max_line: int = DEFAULT_MAX_RECORD) -> Iterator[Line]:
    """Yield lines (terminator included, counted in `max_line`) holding at most `max_line`
    bytes in memory; longer lines
    are skipped in bounded chunks and reported as `too_large` so the caller can count them."""
    number = 0
    while True:
        data = stream.readline(max_line + 1)
        if not data:
            return
        number += 1
        if len(data) <= max_line:
            yield Line(number, data, len(data))
            continue
        size = len(data)
        while not data.endswith(b"\n"):
            data = stream.readline(_CHUNK)
            if not data:
                break
            size += len(data)
        yield Line(number, b"", size, too_large=True)


def read_capped(stream: BinaryIO, cap: int = DEFAULT_MAX_RECORD) -> bytes:
    """Read a stream to its end, or raise TooLarge once more than `cap` bytes appear."""
    data = stream.read(cap + 1)
    if len(data) > cap:
        raise TooLarge(f"more than {cap} bytes")
    return data


def decode_utf8(data: bytes | memoryview) -> tuple[str, int]:
    """Decode UTF-8, replacing each invalid sequence with U+FFFD exactly as errors="replace"
    would, and return how many replacements were made (0 for valid input: the fast path)."""
    try:
        return codecs.utf_8_decode(data, "strict", True)[0], 0
    except UnicodeDecodeError:
        pass
    view = memoryview(data)
    parts: list[str] = []
    errors = 0
    pos = 0
    while True:
        try:
            parts.append(codecs.utf_8_decode(view[pos:], "strict", True)[0])
            return "".join(parts), errors
        except UnicodeDecodeError as exc:
            parts.append(codecs.utf_8_decode(view[pos : pos + exc.start], "strict", True)[0])
            parts.append("\ufffd")
            errors += 1
            pos += exc.end


class IncrementalReader(io.RawIOBase):
    """Forward-only view of a stream from `open_stream` for native parsers (e.g. FastWARC).

    Why: such parsers ask for big reads and want `tell()`. A buffered `read(n)` that hits a
    truncation discards everything it had gathered in that call, losing the intact records just
    before the damage. Serving at most one underlying chunk per call makes the error surface
    only after every good byte has been handed over."""

    def __init__(self, stream: io.BufferedReader):
        super().__init__()
        self._stream = stream
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True  # only the no-op seeks below; some native readers probe for tell()

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if (whence == io.SEEK_CUR and offset == 0) or (whence == io.SEEK_SET and offset == self._pos):
            return self._pos
        raise io.UnsupportedOperation("forward-only stream")

    def readinto(self, buf) -> int:
        n = self._stream.readinto1(buf)
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read1(size if size and size > 0 else _CHUNK)
        self._pos += len(data)
        return data


_SURROGATES = re.compile("[\ud800-\udfff]")


def replace_surrogates(text: str) -> tuple[str, int]:
    """Replace lone UTF-16 surrogates (e.g. from JSON `\\ud800` escapes), which cannot be
    written as UTF-8, with U+FFFD; return the text and how many were replaced."""
    if not _SURROGATES.search(text):
        return text, 0
    return _SURROGATES.subn("\ufffd", text)
