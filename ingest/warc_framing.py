"""WARC record framing, checked before FastWARC parses a record (``ingest.commoncrawl``).

Why: a WARC record's extent is whatever its ``Content-Length`` says, and FastWARC trusts it. A value
300 bytes too long kept a document polluted with the next record's ``WARC/1.0`` headers (and lost
that record); a value of 10^15 swallowed every record after it without a trace. Here each record is
cut out of the (decompressed) stream and its boundary is checked: the block must be followed by the
``\\r\\n\\r\\n`` separator, the next ``WARC/`` header or the end of the file, and must match its
``WARC-Block-Digest`` where it has one. Only then is the record handed to FastWARC (which parses the
WARC and HTTP headers as before).

When the boundary is wrong, the record is excluded (``corrupt:warc``) and reading resumes at the
first ``WARC/1.x`` header line found after the record's own header, so the records behind it are
still read and counted. Bytes that are not a record (leading junk, the tail of a record whose
``Content-Length`` is too short) become one ``corrupt:warc`` record each with their size; blank or
NUL padding is ignored. A record too large to hold (``Content-Length`` over ``max_record``) is
streamed through, never held; if its boundary then proves wrong, the file is read again up to the
first header inside it (at most ``MAX_REREADS`` times per file, then the rest of the file is one
exclusion). A file that simply ends inside a record is left to FastWARC (``truncated:warc``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

from ingest.safeio import CorruptInput, SafeIOError

CHUNK = 1 << 20
MAX_HEADER_BYTES = 1 << 20  # a WARC header (CommonCrawl's: ~1 KB)
HEAD_BYTES = 1 << 20  # of a block too large to hold: its HTTP headers, for FastWARC to classify the record
MAX_REREADS = 8
_VERSION = re.compile(rb"WARC/\d+\.\d+\r?\n")
_HEADER_START = re.compile(rb"\nWARC/1\.[01]\r?\n")  # where a record can begin (after its "\n")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_BLANK = b" \t\r\n\0"


@dataclass
class Framed:
    """One piece of the stream. ``kind``: ``record`` (sound: ``data`` is its header and block, the
    block cut to ``HEAD_BYTES`` when ``oversized``), ``broken`` (a record excluded as ``reason``) or
    ``junk`` (``size`` bytes that are no record)."""

    kind: str
    offset: int
    data: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # lower-case name -> value
    reason: str = "corrupt:warc"
    detail: str = ""
    size: int = 0
    oversized: bool = False


class _Reader:
    """A forward reader over the decompressed stream with look-ahead; a read error is kept until
    everything before it has been handed over (``error``)."""

    def __init__(self, stream: BinaryIO, offset: int = 0):
        self.stream = stream
        self.read = getattr(stream, "read1", stream.read)
        self.buf = bytearray()
        self.pos = 0  # index in buf of the current offset
        self.offset = offset
        self.eof = False
        self.error: SafeIOError | None = None

    def avail(self) -> int:
        return len(self.buf) - self.pos

    def _more(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.read(CHUNK)
        except SafeIOError as exc:
            self.error, self.eof = exc, True
            return False
        if not data:
            self.eof = True
            return False
        if self.pos >= CHUNK and self.pos * 2 >= len(self.buf):
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += data
        return True

    def ensure(self, n: int) -> bool:
        while self.avail() < n and self._more():
            pass
        return self.avail() >= n

    def take(self, n: int) -> bytes:
        n = min(n, self.avail())
        data = bytes(self.buf[self.pos : self.pos + n])
        self.skip(n)
        return data

    def skip(self, n: int) -> None:
        n = min(n, self.avail())
        self.pos += n
        self.offset += n

    def search(self, regex: re.Pattern, start: int, end: int) -> int | None:
        """Offset (from the current position) of the first match in [start, end) of what is held."""
        m = regex.search(self.buf, self.pos + start, min(len(self.buf), self.pos + end))
        return None if m is None else m.start() - self.pos

    def skip_to_header(self) -> tuple[int, bool]:
        """Skip to the next line that starts a WARC header (or to the end), holding at most a chunk:
        (bytes skipped, whether any of them was not blank/NUL)."""
        skipped, solid = 0, False
        while True:
            at = self.search(_HEADER_START, 0, self.avail())
            n = self.avail() if at is None else at + 1
            if at is None and not self.eof:
                n = max(0, n - 16)  # a header line may straddle the next read
            solid = solid or bool(bytes(self.buf[self.pos : self.pos + n]).strip(_BLANK))
            self.skip(n)
            skipped += n
            if at is not None or (self.eof and not self.avail()):
                return skipped, solid
            self._more()


def _parse_header(r: _Reader) -> tuple[int, dict[str, str]] | None:
    """(header length, fields) when a WARC header starts at the current position, else None."""
    r.ensure(16)
    if not _VERSION.match(r.buf, r.pos, min(len(r.buf), r.pos + 16)):
        return None
    while True:
        m = _HEADER_END.search(r.buf, r.pos, min(len(r.buf), r.pos + MAX_HEADER_BYTES))
        if m is not None:
            break
        if r.avail() >= MAX_HEADER_BYTES or not r._more():
            return None
    length = m.end() - r.pos
    fields: dict[str, str] = {}
    last = None
    for line in bytes(r.buf[r.pos : m.start()]).decode("utf-8", "replace").splitlines()[1:]:
        if line[:1] in (" ", "\t") and last:  # folded continuation line
            fields[last] += " " + line.strip()
        elif ":" in line:
            name, value = line.split(":", 1)
            last = name.strip().lower()
            if last not in fields:
                fields[last] = value.strip()
            elif last == "content-length" and fields[last] != value.strip():
                fields[last] = "conflicting values"  # two lengths: the extent is unknown
    return length, fields


def _content_length(fields: dict[str, str]) -> int | None:
    value = fields.get("content-length", "")
    return int(value) if value.isdigit() else None


def _boundary(r: _Reader, end: int) -> int | None:
    """Length of the separator after a block ending at ``end`` when the boundary is sound: CRLFs
    then the next ``WARC/`` header or the end of the file (or the standard ``\\r\\n\\r\\n``,
    whatever follows). None when the block runs into something else."""
    r.ensure(end + 64)
    after = bytes(r.buf[r.pos + end : r.pos + end + 64])
    if after.startswith(b"\r\n\r\n"):
        return 4
    run = len(after) - len(after.lstrip(b"\r\n"))
    rest = after[run:]
    if rest.startswith(b"WARC/") or not rest:  # blank up to the end: padding, skipped after
        return run
    return None


def digest_matches(value: str, block: bytes) -> bool | None:
    """Whether ``block`` matches a ``WARC-Block-Digest`` value (``sha1:BASE32`` as CommonCrawl and
    warcio write it; hex accepted too); None when the algorithm is unknown."""
    algorithm, _, expected = value.partition(":")
    try:
        actual = hashlib.new(algorithm.strip().lower().replace("-", ""), block).digest()
    except (ValueError, TypeError):
        return None
    expected = expected.strip()
    if expected.lower() == actual.hex():
        return True
    try:
        padded = expected.upper() + "=" * (-len(expected) % 8)
        return base64.b32decode(padded) == actual
    except (binascii.Error, ValueError):
        return False


def frame(stream: BinaryIO, max_record: int, reopen: Callable[[], BinaryIO]) -> Iterator[Framed]:
    """The records of a decompressed WARC stream, framing checked (see the module docstring).
    ``reopen()`` gives the stream again from its start (to resume inside a skipped oversized block).
    A read error (``SafeIOError``) is raised after everything before it was yielded."""
    r = _Reader(stream)
    rereads = 0
    yielded = False
    while True:
        if not r.ensure(1):
            if r.error:
                raise r.error
            return
        start = r.offset
        header = _parse_header(r)
        if header is None:
            if r.error:  # bytes cut short by a damaged stream: part of the damaged rest
                raise r.error
            size, solid = r.skip_to_header()
            if r.error and not r.avail():
                raise r.error
            if solid:
                if not yielded and r.eof and not r.avail():
                    raise CorruptInput("warc", "no WARC record header found")
                yielded = True
                yield Framed("junk", start, size=size, detail=f"{size} bytes that are not a WARC record")
            continue
        yielded = True
        hlen, fields = header
        length = _content_length(fields)
        if length is None:
            r.skip(hlen)
            size, _ = r.skip_to_header()
            yield Framed("broken", start, headers=fields, size=hlen + size,
                         detail=f"no valid Content-Length ({fields.get('content-length', 'missing')!r})")
            continue
        if length > max_record:
            piece = yield from _oversized(r, start, hlen, length, fields)
            if piece is not None:  # resume at a header inside the block: read the file again
                rereads += 1
                if rereads > MAX_REREADS:
                    raise CorruptInput("warc", f"more than {MAX_REREADS} records with a broken Content-Length",
                                       {"resume_offset": piece})
                r = _Reader(reopen())
                while r.offset < piece and r.ensure(1):
                    r.skip(min(r.avail(), piece - r.offset))
                if r.offset < piece and r.error:
                    raise r.error
            continue
        end = hlen + length
        if not r.ensure(end):
            if r.error:
                raise r.error  # the rest of the stream is damaged: one record for it (the caller)
            at = r.search(_HEADER_START, hlen, r.avail())
            if at is None:  # the file ends inside this record: FastWARC says truncated:warc
                yield Framed("record", start, r.take(r.avail()), fields)
                continue
            r.skip(at + 1)
            yield Framed("broken", start, headers=fields, size=at + 1,
                         detail=f"Content-Length {length} runs past the end of the file, over the next record")
            continue
        sep = _boundary(r, end)
        if sep is not None:
            data = r.take(end + sep)
            expected = fields.get("warc-block-digest")
            if expected and digest_matches(expected, data[hlen:end]) is False:
                yield Framed("broken", start, headers=fields, size=len(data), detail="WARC-Block-Digest mismatch")
            else:
                yield Framed("record", start, data, fields)
            continue
        at = r.search(_HEADER_START, hlen, end + 64)
        if at is not None:  # Content-Length too long: the next record starts inside the block
            r.skip(at + 1)
            yield Framed("broken", start, headers=fields, size=at + 1,
                         detail=f"Content-Length {length} does not end at a record boundary (next record at +{at + 1})")
            continue
        r.skip(end)  # Content-Length too short: the rest of the block up to the next record
        size, _ = r.skip_to_header()
        yield Framed("broken", start, headers=fields, size=end + size,
                     detail=f"Content-Length {length} ends inside the block ({size} bytes more before the next record)")


def _oversized(r: _Reader, start: int, hlen: int, length: int, fields: dict[str, str]):
    """Stream through a block too large to hold. Yields the record (its head only) or its
    exclusion; returns the offset to resume at when the boundary is wrong and a header was seen
    inside the block (the caller reads the file again up to it), else None."""
    r.ensure(hlen + min(length, HEAD_BYTES))
    head = bytes(r.buf[r.pos : r.pos + hlen + min(length, HEAD_BYTES, r.avail() - hlen)])
    r.skip(hlen)
    first_header = None
    left = length
    tail = b""  # the end of the previous piece: a header line may straddle two reads
    while left > 0 and r.ensure(1):
        n = min(left, r.avail())
        if first_header is None:
            piece = tail + bytes(r.buf[r.pos : r.pos + n])
            m = _HEADER_START.search(piece)
            if m is not None:
                first_header = r.offset - len(tail) + m.start() + 1
            tail = piece[-16:]
        r.skip(n)
        left -= n
    if left > 0:  # the file ends inside the block
        if r.error:
            raise r.error
        if first_header is None:
            yield Framed("record", start, head, fields, oversized=True)
            return None
        yield Framed("broken", start, headers=fields, size=r.offset - start,
                     detail=f"Content-Length {length} runs past the end of the file, over the next record")
        return first_header
    sep = _boundary(r, 0)
    if sep is not None:
        r.skip(sep)
        yield Framed("record", start, head, fields, oversized=True)
        return None
    if first_header is not None:
        yield Framed("broken", start, headers=fields, size=first_header - start,
                     detail=f"Content-Length {length} runs into the next record")
        return first_header
    size, _ = r.skip_to_header()
    yield Framed("broken", start, headers=fields, size=hlen + length + size,
                 detail=f"Content-Length {length} ends inside the block")
    return None
