"""Document constructors shared by the per-source extractors.

Why: the extraction contract says every input record becomes exactly one Document, kept or
excluded-with-a-reason, and that a wholly unreadable file becomes one excluded record plus a
one-line warning. Building those Documents in one place keeps ids, reasons and metadata uniform
across sources.
"""

from __future__ import annotations

import pathlib

from datatrove.data import Document
from loguru import logger

from ingest.safeio import DEFAULT_MAX_EXPANDED, DEFAULT_MAX_RECORD, reason_for


def kept(doc_id: str, text: str, **metadata) -> Document:
    """A document the extractor keeps (metadata must be JSON-serialisable)."""
    return Document(text=text, id=doc_id, metadata=metadata)


def excluded(doc_id: str, reason: str, text: str = "", **metadata) -> Document:
    """A record accounted for but not kept; the extract stage routes it to `excluded/`."""
    metadata["reason"] = reason
    return Document(text=text, id=doc_id, metadata=metadata)


def unreadable(path: pathlib.Path, exc: BaseException, source: str, **metadata) -> Document:
    """The whole of `path` (or its unread remainder) could not be read: one excluded record
    with id = the file name, and one warning line (no traceback). What the error knows about the
    loss (``SafeIOError.info``: compressed bytes lost, damaged stream...) goes into the metadata."""
    reason = reason_for(exc)
    detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
    logger.warning(f"{source}: {path.name}: excluded ({reason}): {detail}")
    return excluded(path.name, reason, error=str(exc)[:500], **{**getattr(exc, "info", {}), **metadata})


def construct(cls, params: dict | None, source: str):
    """Instantiate an extractor from extract-stage params (checked when the manifest loads:
    ``ExtractStage.SOURCE_PARAMS``)."""
    return cls(**(params or {}))


def is_input_file(path: pathlib.Path, suffixes: tuple[str, ...]) -> bool:
    """A regular file (symlinks are never followed) whose name ends with one of `suffixes`."""
    return path.is_file() and not path.is_symlink() and path.name.endswith(suffixes)


class FileExtractor:
    """Base of the one-file-per-input extractors: the size caps every one takes as extract
    params (`max_record_bytes`: one record/line/page/book, expanded; `max_expanded_bytes`: one
    whole decompressed file) and `accepts` by file-name suffix."""

    suffixes: tuple[str, ...] = ()

    def __init__(self, max_record_bytes: int = DEFAULT_MAX_RECORD, max_expanded_bytes: int = DEFAULT_MAX_EXPANDED):
        self.max_record_bytes = int(max_record_bytes)
        self.max_expanded_bytes = int(max_expanded_bytes)

    def accepts(self, path: pathlib.Path) -> bool:
        return is_input_file(pathlib.Path(path), self.suffixes)
