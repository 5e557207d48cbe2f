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
    sniff_unicode(head) -> (encoding, bom_len) | None                    # UTF-16/32 by BOM or NUL pattern
    decode_unicode(data, encoding) -> (text, n_errors)                   # the same for UTF-16/32
    TranscodeToUtf8(stream, encoding, skip)                              # UTF-16/32 stream read as UTF-8
    replace_surrogates(text) -> (text, n)                                # lone surrogates -> U+FFFD
    reason_for(exc) -> str                                               # exception -> exclusion reason
Exceptions: SafeIOError(reason) with subclasses CorruptInput(fmt), TruncatedInput(fmt),
TooLarge(what), Unreadable(detail); ``info`` says what was lost (for the excluded record).
bz2 and xz are decoded stream by stream (``_MultiStreamReader``): a damaged later stream is an
error, not the end of the file.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import pathlib
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
_XZ_MEMLIMIT = 512 * MiB

_MAGICS = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
_ZSTD_ERRORS: tuple[type[BaseException], ...] = (_zstd.ZstdError,) if _zstd else ()
_CODEC_ERRORS = (zlib.error, gzip.BadGzipFile, lzma.LZMAError) + _ZSTD_ERRORS


class SafeIOError(Exception):
    """An input problem that maps to one exclusion reason (``self.reason``). ``info`` holds what the
    excluded record should say about the loss (JSON values, e.g. ``compressed_bytes_lost``)."""

    def __init__(self, reason: str, detail: str = "", info: dict | None = None):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.info = dict(info or {})


class CorruptInput(SafeIOError):
    def __init__(self, fmt: str, detail: str = "", info: dict | None = None):
        super().__init__(f"corrupt:{fmt}", detail, info)
        self.fmt = fmt


class TruncatedInput(SafeIOError):
    def __init__(self, fmt: str, detail: str = "", info: dict | None = None):
        super().__init__(f"truncated:{fmt}", detail, info)
        self.fmt = fmt


class TooLarge(SafeIOError):
    def __init__(self, detail: str = "", info: dict | None = None):
        super().__init__("too_large", detail, info)


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


class _MultiStreamReader(io.RawIOBase):
    """bz2 / xz decoded stream by stream, each damage reported.

    Why not ``BZ2File``/``LZMAFile``: after the first stream they take anything they cannot decode
    for trailing garbage and return end-of-file, so a multi-stream file (pbzip2 books, Wikipedia's
    multistream dumps, xz written in blocks) with a damaged later stream was silently cut short.
    Here every stream after the first must decode too: a damaged one is ``CorruptInput`` and one
    that stops early ``TruncatedInput``, both carrying in ``info`` what is lost (the damaged stream's
    number, the streams decoded before it, the compressed bytes from its start to the end of the
    file, the bytes decoded so far). NUL padding between or after streams (xz stream padding, tape
    blocks) is skipped. Reading stops at the damage: what follows is not resynchronised (a record
    cut by the damage could not be told from a whole one)."""

    def __init__(self, raw: BinaryIO, fmt: str):
        super().__init__()
        self._raw = raw
        self.fmt = fmt
        self._dec = None
        self._pending = b""  # compressed bytes read but not yet given to a decompressor
        self._stream_start = 0  # compressed offset at which the current stream began
        self._fed = 0  # compressed bytes given to the current decompressor
        self._streams = 0  # streams decoded completely
        self._decoded = 0  # decompressed bytes handed out
        self._done = False

    def readable(self) -> bool:
        return True

    def _new(self):
        if self.fmt == "bz2":
            return bz2.BZ2Decompressor()
        # xz -9 needs ~65 MiB to decode; a header declaring a dictionary of GBs is refused (corrupt:xz)
        return lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=_XZ_MEMLIMIT)

    def _fill(self) -> bool:
        if not self._pending:
            self._pending = self._raw.read(_CHUNK)
        return bool(self._pending)

    def readinto(self, buf) -> int:
        while not self._done:
            if self._dec is not None and self._dec.eof:
                unused = self._dec.unused_data
                self._stream_start += self._fed - len(unused)
                self._pending = unused + self._pending
                self._streams += 1
                self._dec = None
            if self._dec is None:
                if not self._fill():
                    self._done = True
                    break
                padding = len(self._pending) - len(self._pending.lstrip(b"\0"))
                if padding and self._streams:
                    self._stream_start += padding
                    self._pending = self._pending[padding:]
                    continue
                self._dec, self._fed = self._new(), 0
            data = b""
            if self._dec.needs_input:
                if not self._fill():
                    raise self._loss(TruncatedInput, "stream ends before its end-of-stream marker")
                data, self._pending = self._pending, b""
                self._fed += len(data)
            try:
                out = self._dec.decompress(data, len(buf))
            except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
                raise self._loss(CorruptInput, str(exc) or type(exc).__name__) from None
            if out:
                n = len(out)
                buf[:n] = out
                self._decoded += n
                return n
        return 0

    def _loss(self, cls, detail: str) -> SafeIOError:
        lost = self._compressed_rest()
        info = {"damaged_stream": self._streams + 1, "streams_decoded": self._streams,
                "compressed_bytes_lost": lost, "bytes_decoded": self._decoded}
        where = f"stream {self._streams + 1} (at compressed byte {self._stream_start})"
        self._done = True
        return cls(self.fmt, f"{detail} in {where}; {lost} compressed bytes from there to the end not decoded", info)

    def _compressed_rest(self) -> int:
        """Compressed bytes from the damaged stream's start to the end of the input."""
        held = self._fed + len(self._pending)
        try:
            return held + os.fstat(self._raw.fileno()).st_size - self._raw.tell()
        except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
            pass
        rest = 0
        try:
            while chunk := self._raw.read(_CHUNK):
                rest += len(chunk)
        except Exception:  # the count is informative; an unreadable tail leaves it a lower bound
            pass
        return held + rest

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._raw.close()
        super().close()


def _decompressor(fmt: str, raw: BinaryIO) -> BinaryIO:
    if fmt == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # multi-member (per-record WARC.gz) aware
    if fmt in ("bz2", "xz"):
        return _MultiStreamReader(raw, fmt)  # multi-stream, every stream checked
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
