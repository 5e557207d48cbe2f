"""Books extraction: Project Gutenberg plain-text eBooks (one book per file).

Why: LLaMA's Books share is Project Gutenberg plus Books3; Books3 was taken down and is no longer
distributed, so only PG is built (PG-19 for the full profile). A PG file wraps the book in a
header (title/author/licence preamble) and a long licence footer; both would be repeated verbatim
across thousands of books, so they are cut at PG's START/END markers (all the historical
variants), keeping title, author, language and ebook number as metadata. A file without markers
(e.g. PG-19, which ships already stripped) is kept whole with `pg_markers: false`.
"""

from __future__ import annotations

import pathlib
import re
from typing import Iterator

from datatrove.data import Document

from ingest import safeio, text_decoding
from ingest.records import FileExtractor, construct, excluded, kept, unreadable

SOURCE = "books"
SUFFIXES = (".txt", ".txt.gz", ".txt.bz2", ".txt.xz", ".txt.zst")

_START = re.compile(
    r"^[ \t]*\*{0,3}[ \t]*START OF (?:THIS|THE) PROJECT GUTENBERG E-?(?:BOOK|TEXT)\b.*$"
    r"|^[ \t]*\*{3}[ \t]*START OF THE PROJECT GUTENBERG\b.*$"
    r"|^[ \t]*\*END\*THE SMALL PRINT\b.*$",
    re.I | re.M,
)
_END = re.compile(
    r"^[ \t]*\*{0,3}[ \t]*END OF (?:THIS|THE) PROJECT GUTENBERG E-?(?:BOOK|TEXT)\b.*$"
    r"|^[ \t]*\*{3}[ \t]*END OF THE PROJECT GUTENBERG\b.*$"
    r"|^[ \t]*End of (?:the |this )?Project Gutenberg(?:'s|’s)?\b.*$",
    re.I | re.M,
)
_END_IN_TAIL = re.compile(r"End of (?:the |this )?Project Gutenberg(?:'s|’s)?\b", re.I)
_TAIL_CHARS = 400
_HEADER_FIELD = re.compile(r"^(Title|Author|Language):[ \t]*(.+(?:\n[ \t]+\S.*)*)", re.M)
_EBOOK_NUMBER = re.compile(r"\[E(?:-?Book|Text) #(\d+)\]|\bE(?:-?Book|Text) #(\d+)|should be named (\d+)[\w.-]*\.(?:txt|zip)", re.I)
_CREDIT_LEAD = r"\A\s*(?:Produced by|E-text prepared by|Transcribed by|This etext was prepared by)[^\n]*"
# A short credit paragraph (<= 3 lines, then a blank line); if the file has no paragraph breaks,
# only the credit line itself.
_CREDITS = re.compile(_CREDIT_LEAD + r"(?:\n[^\n]*\S[^\n]*){0,2}\n[ \t]*\n|" + _CREDIT_LEAD + r"\n", re.I)
_CHARSET = re.compile(rb"^Character set encoding:[ \t]*([A-Za-z0-9_.:-]+)", re.M | re.I)
_HEADER_SCAN_CHARS = 100_000  # title/author lines live in the first few KB of a PG file


def split_gutenberg(text: str) -> tuple[str, str, str, bool]:
    """Split into (header, body, footer, markers_found). The body begins after the last start
    marker that precedes the first end marker, and ends at that end marker; the credit line
    ("Produced by …") that opens most PG bodies is dropped."""
    starts = list(_START.finditer(text))
    first_start = starts[0].end() if starts else 0
    end_match = _END.search(text, first_start)
    if starts:
        before_end = [m for m in starts if end_match is None or m.end() <= end_match.start()]
        start = before_end[-1].end() if before_end else starts[0].end()
    else:
        start = 0
    end = end_match.start() if end_match else len(text)
    if not starts and not end_match:
        return "", text, "", False
    body = _CREDITS.sub("", text[start:end], count=1)
    tail = _END_IN_TAIL.search(body, max(0, len(body) - _TAIL_CHARS))  # reflowed "End of …" line
    if tail:
        body = body[: tail.start()]
    return text[:start], body, text[end:], True


def header_fields(header: str, footer: str, file_stem: str) -> dict:
    """title / author / language / pg_ebook from the PG header (ebook number also from the
    footer's "should be named NNNN.txt" or a numeric file name, as in PG-19)."""
    meta: dict = {"title": None, "author": None, "language": None, "pg_ebook": None}
    for name, value in _HEADER_FIELD.findall(header[:_HEADER_SCAN_CHARS]):
        key = name.lower()
        if meta[key] is None:
            meta[key] = re.sub(r"\s+", " ", value).strip()
    number = _EBOOK_NUMBER.search(header[:_HEADER_SCAN_CHARS]) or _EBOOK_NUMBER.search(footer[:_HEADER_SCAN_CHARS])
    if number:
        meta["pg_ebook"] = int(next(g for g in number.groups() if g))
    elif file_stem.isdigit():
        meta["pg_ebook"] = int(file_stem)
    return meta


def decode_book(data: bytes) -> tuple[str, int]:
    """UTF-16/32 when a byte-order mark (or the NUL pattern of BOM-less UTF-16) says so, else
    UTF-8 (errors replaced and counted), unless that fails and the PG header declares another
    charset ("Character set encoding: ISO-8859-1", common in older eBooks)."""
    sniffed = text_decoding.sniff_unicode(data[:4096])
    if sniffed is not None:
        encoding, bom = sniffed
        return text_decoding.decode_unicode(memoryview(data)[bom:], encoding)
    text, errors = text_decoding.decode_utf8(data)
    if errors:
        declared = _CHARSET.search(data[:_HEADER_SCAN_CHARS])
        if declared:
            try:
                return data.decode(declared.group(1).decode("ascii")), 0
            except (LookupError, UnicodeDecodeError):
                pass
    return text, errors


class BooksExtractor(FileExtractor):
    """Extractor (see ingest/extract.py contract) for Project Gutenberg `.txt` books."""

    suffixes = SUFFIXES

    def __call__(self, path: pathlib.Path) -> Iterator[Document]:
        path = pathlib.Path(path)
        stem = path.name.split(".txt")[0]
        try:
            with safeio.open_path(path, self.max_expanded_bytes) as stream:
                data = safeio.read_capped(stream, self.max_record_bytes)
        except safeio.SafeIOError as exc:
            yield unreadable(path, exc, SOURCE, file=path.name)
            return
        text, utf8_errors = decode_book(data)
        if text.count("\0") > len(text) // 100:  # not text (UTF-16 without its mark is decoded above)
            yield excluded(stem, "binary", file=path.name, nul_chars=text.count("\0"))
            return
        text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
        header, body, footer, markers = split_gutenberg(text)
        meta = header_fields(header, footer, stem)
        meta["pg_markers"] = markers
        meta["file"] = path.name
        if utf8_errors:
            meta["utf8_errors"] = utf8_errors
        sniffed = text_decoding.sniff_unicode(data[:4096])
        if sniffed is not None:
            meta["encoding"] = sniffed[0]
        body = body.strip()
        if not body:
            yield excluded(stem, "empty", **meta)
            return
        yield kept(stem, body, **meta)


def make_extractor(params: dict | None = None) -> BooksExtractor:
    return construct(BooksExtractor, params, SOURCE)
