"""CommonCrawl extraction: WARC (HTML responses -> main text) and WET (already plain text).

Why: CCNet, which LLaMA used for CommonCrawl, starts from WET text; our sample profile ships
real WARC captures, so both are read. FastWARC parses the records (fast, streaming); the bytes it
sees come through `safeio` so truncated/corrupt gzip and decompression bombs become counted
exclusions instead of the silent early stop FastWARC shows on damaged files. HTML becomes text
with Resiliparse's main-content extraction (default, ~12x faster) or Trafilatura.

Every WARC record is accounted for: kept responses/conversions, and excluded records with
reasons `warc:<type>` (request, metadata, warcinfo, revisit, ...), `http:<code>`, `not_html`,
`not_http`, `empty`, `too_large`, `truncated:warc`, `extract_error`, `corrupt:<enc>`. Records are
cut out of the stream by `ingest.warc_framing`, which checks each one's Content-Length and
WARC-Block-Digest (`corrupt:warc` when wrong) and resumes at the next record, so a lying
Content-Length can neither pollute a document nor hide the records after it.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import pathlib
from typing import Iterator

from datatrove.data import Document
from fastwarc.warc import ArchiveIterator, WarcRecord, WarcRecordType
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import bytes_to_str, detect_encoding

from ingest import safeio, text_decoding
from ingest.records import FileExtractor, construct, excluded, kept, unreadable
from ingest.warc_framing import Framed, frame

SOURCE = "commoncrawl"
SUFFIXES = (".warc", ".warc.gz", ".warc.zst", ".wet", ".wet.gz", ".wet.zst")  # not ARC: FastWARC reads WARC only
HTML_TYPES = ("text/html", "application/xhtml+xml")
EXTRACTORS = ("resiliparse", "trafilatura")
CONTENT_ENCODINGS = ("gzip", "x-gzip", "deflate", "br", "zstd")


def _html_to_text_resiliparse(html: str, url: str | None, main_content: bool) -> str:
    return extract_plain_text(html, main_content=main_content, alt_texts=False)


def _html_to_text_trafilatura(html: str, url: str | None, main_content: bool) -> str:
    import trafilatura  # imported lazily: slow to import and only needed when selected

    return trafilatura.extract(html, url=url, include_comments=not main_content) or ""


_HTML_TO_TEXT = {"resiliparse": _html_to_text_resiliparse, "trafilatura": _html_to_text_trafilatura}


def decode_html(body: bytes, declared_charset: str | None) -> tuple[str, str, int]:
    """Bytes -> (text, charset used, utf8 replacement count). The HTTP-declared charset wins
    when Python knows it; otherwise the <meta> tag, then uchardet (Resiliparse)."""
    charset = None
    if declared_charset:
        try:
            charset = codecs.lookup(declared_charset).name
        except LookupError:
            charset = None
    if charset is None:
        charset = codecs.lookup(detect_encoding(body, from_html_meta=True) or "utf-8").name
    if charset == "utf-8":
        text, errors = text_decoding.decode_utf8(body)
        return text, charset, errors
    return bytes_to_str(body, charset, errors="replace"), charset, 0


class CommonCrawlExtractor(FileExtractor):
    """Extractor (see ingest/extract.py contract) for `*.warc[.gz]` and `*.wet[.gz]` files."""

    suffixes = SUFFIXES

    def __init__(
        self,
        extractor: str = "resiliparse",
        main_content: bool = True,
        max_record_bytes: int = safeio.DEFAULT_MAX_RECORD,
        max_expanded_bytes: int = safeio.DEFAULT_MAX_EXPANDED,
    ):
        self.extractor = extractor
        self.main_content = main_content
        super().__init__(max_record_bytes, max_expanded_bytes)
        self._to_text = _HTML_TO_TEXT[extractor]

    def __call__(self, path: pathlib.Path) -> Iterator[Document]:
        path = pathlib.Path(path)
        seen = 0
        try:
            with contextlib.ExitStack() as streams:
                def reopen():
                    return streams.enter_context(safeio.open_path(path, self.max_expanded_bytes))

                for piece in frame(reopen(), self.max_record_bytes, reopen):
                    seen += 1
                    yield self._piece_to_document(piece, path.name)
        except safeio.SafeIOError as exc:
            yield unreadable(path, exc, SOURCE, warc_file=path.name, records_before=seen)
        except OSError as exc:  # FastWARC reports unparseable WARC structure as OSError
            yield unreadable(
                path, safeio.CorruptInput("warc", str(exc)), SOURCE, warc_file=path.name, records_before=seen
            )
        else:
            if not seen:  # a file with no record at all is still accounted for
                yield excluded(path.name, "empty_file", warc_file=path.name)

    # -- one record -------------------------------------------------------------------------
    def _piece_to_document(self, piece: Framed, warc_file: str) -> Document:
        """A sound record parsed by FastWARC, or the exclusion of a broken one / of junk bytes."""
        if piece.kind == "record":
            try:
                record = next(iter(ArchiveIterator(io.BytesIO(piece.data), record_types=WarcRecordType.any_type,
                                                   parse_http=True, stream_detect=False, fsspec_args=False)), None)
            except OSError as exc:  # FastWARC reports an unparseable header as OSError
                record, piece = None, Framed("broken", piece.offset, headers=piece.headers, detail=str(exc))
            if record is not None:
                return self._record_to_document(record, warc_file, piece.offset)
            if piece.kind == "record":
                piece = Framed("broken", piece.offset, headers=piece.headers, detail="FastWARC read no record")
        if piece.kind == "junk":
            return excluded(f"{warc_file}#{piece.offset}", piece.reason, warc_file=warc_file, offset=piece.offset,
                            skipped_bytes=piece.size, error=piece.detail)
        record_id = piece.headers.get("warc-record-id")
        return excluded(record_id or f"{warc_file}#{piece.offset}", piece.reason,
                        url=piece.headers.get("warc-target-uri"), date=piece.headers.get("warc-date"),
                        warc_record_id=record_id, warc_file=warc_file, offset=piece.offset, skipped_bytes=piece.size,
                        error=piece.detail)

    def _record_to_document(self, record: WarcRecord, warc_file: str, offset: int) -> Document:
        meta = {
            "url": record.headers.get("WARC-Target-URI"),
            "date": record.headers.get("WARC-Date"),
            "warc_record_id": record.record_id,
            "warc_file": warc_file,
        }
        doc_id = record.record_id or f"{warc_file}#{offset}"
        rtype = record.record_type
        if rtype == WarcRecordType.conversion:
            meta["content_type"] = record.headers.get("Content-Type")
            meta["extractor"] = "wet"
            if record.headers.get("WARC-Identified-Content-Language"):  # CC's CLD2 guess, since 2018
                meta["cc_languages"] = record.headers.get("WARC-Identified-Content-Language")
            return self._wet_document(record, doc_id, meta)
        if rtype != WarcRecordType.response:
            return excluded(doc_id, f"warc:{rtype}", **meta)
        if not record.is_http:
            return excluded(doc_id, "not_http", **meta)
        status = record.http_headers.status_code
        meta["content_type"] = record.http_content_type
        if status != 200:  # None: a status line FastWARC could not parse
            return excluded(doc_id, f"http:{status or 'unparsed'}", **meta)
        if (record.http_content_type or "").lower() not in HTML_TYPES:
            return excluded(doc_id, "not_html", **meta)
        body, reason = self._read_body(record)
        if reason:
            return excluded(doc_id, reason, **meta)
        body, reason = self._content_decode(body, record.http_headers.get("Content-Encoding"))
        if reason:
            return excluded(doc_id, reason, **meta)
        html, meta["charset"], utf8_errors = decode_html(body, record.http_charset)
        meta["extractor"] = self.extractor
        try:
            text = self._to_text(html, meta["url"], self.main_content)
        except Exception as exc:  # a parser failure excludes this page only
            return excluded(doc_id, "extract_error", error=str(exc)[:200], **meta)
        return self._finish(doc_id, text, utf8_errors, meta)

    def _wet_document(self, record: WarcRecord, doc_id: str, meta: dict) -> Document:
        body, reason = self._read_body(record)
        if reason:
            return excluded(doc_id, reason, **meta)
        text, utf8_errors = text_decoding.decode_utf8(body)
        return self._finish(doc_id, text, utf8_errors, meta)

    @staticmethod
    def _finish(doc_id: str, text: str, utf8_errors: int, meta: dict) -> Document:
        if utf8_errors:
            meta["utf8_errors"] = utf8_errors
        text = text.strip()
        if not text:
            return excluded(doc_id, "empty", **meta)
        return kept(doc_id, text, **meta)

    def _read_body(self, record: WarcRecord) -> tuple[bytes, str | None]:
        """Payload bytes, or a reason: `too_large` (never read into memory), `truncated:warc`."""
        expected = record.content_length
        if expected > self.max_record_bytes:
            return b"", "too_large"
        body = record.reader.read(self.max_record_bytes + 1)
        if len(body) > self.max_record_bytes:
            return b"", "too_large"
        if len(body) < expected:
            return b"", "truncated:warc"
        return body, None

    def _content_decode(self, body: bytes, encoding: str | None) -> tuple[bytes, str | None]:
        """Undo an HTTP Content-Encoding left in the capture (CommonCrawl stores bodies decoded,
        other crawlers may not). Only gzip/zstd by magic are decoded; others pass through."""
        if not encoding or encoding.strip().lower() not in CONTENT_ENCODINGS:
            return body, None
        if safeio.detect_format(body[:6]) not in ("gzip", "zstd"):
            return body, None
        try:
            stream = safeio.open_stream(io.BytesIO(body), max_expanded=self.max_record_bytes)
            return safeio.read_capped(stream, self.max_record_bytes), None
        except safeio.SafeIOError as exc:
            return b"", exc.reason


def make_extractor(params: dict | None = None) -> CommonCrawlExtractor:
    """Build from the manifest's extract-stage params, e.g. {extractor: resiliparse}."""
    return construct(CommonCrawlExtractor, params, SOURCE)
