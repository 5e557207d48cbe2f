"""C4 extraction: the published `c4-*.json(.gz)` files, one JSON object per line.

Why: LLaMA took C4 as released (already HTML-stripped and lightly filtered), so extraction is
only parsing: each line {"text", "timestamp", "url"} becomes one document. Lines are read with a
size cap (a runaway line is `too_large`, not an out-of-memory), undecodable bytes are replaced
and counted, and a line that is not a JSON object with a string `text` is `bad_json` — the
rest of the file goes on. Blank lines are not records and are not counted; a file with no
record at all is one `empty_file` exclusion.
"""

from __future__ import annotations

import json
import pathlib
from typing import Iterator

from datatrove.data import Document

from ingest import safeio, text_decoding
from ingest.records import FileExtractor, construct, excluded, kept, unreadable

SOURCE = "c4"
SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz", ".json.zst", ".jsonl.zst", ".json.xz", ".jsonl.xz", ".json.bz2",
            ".jsonl.bz2")


def _file_stem(name: str) -> str:
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


class C4Extractor(FileExtractor):
    """Extractor (see ingest/extract.py contract) for C4 JSON-lines files."""

    suffixes = SUFFIXES

    def __call__(self, path: pathlib.Path) -> Iterator[Document]:
        path = pathlib.Path(path)
        stem = _file_stem(path.name)
        seen = 0
        try:
            with safeio.open_path(path, self.max_expanded_bytes) as stream:
                for line in safeio.iter_lines(stream, self.max_record_bytes):
                    if not line.too_large and not line.data.strip():
                        continue
                    seen += 1
                    yield self._line_to_document(f"{stem}/{line.number}", line)
        except safeio.SafeIOError as exc:
            yield unreadable(path, exc, SOURCE, file=path.name, records_before=seen)
        else:
            if not seen:  # a file with no record at all is still accounted for
                yield excluded(path.name, "empty_file", file=path.name)

    @staticmethod
    def _line_to_document(doc_id: str, line: safeio.Line) -> Document:
        if line.too_large:
            return excluded(doc_id, "too_large", size=line.size)
        raw, utf8_errors = text_decoding.decode_utf8(line.data)
        meta = {"utf8_errors": utf8_errors} if utf8_errors else {}
        try:
            record = json.loads(raw)
        except ValueError:
            return excluded(doc_id, "bad_json", **meta)
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            return excluded(doc_id, "bad_json", **meta)
        meta["url"] = record.get("url") if isinstance(record.get("url"), str) else None
        meta["timestamp"] = record.get("timestamp") if isinstance(record.get("timestamp"), str) else None
        text, surrogates = text_decoding.replace_surrogates(record["text"].strip())
        if surrogates:
            meta["utf8_errors"] = meta.get("utf8_errors", 0) + surrogates
        if not text:
            return excluded(doc_id, "empty", **meta)
        return kept(doc_id, text, **meta)


def make_extractor(params: dict | None = None) -> C4Extractor:
    return construct(C4Extractor, params, SOURCE)
