"""arXiv extractor: one document per paper, read from however its LaTeX sources are packed.

Why: LLaMA trained on arXiv LaTeX. Input is a ``.tex`` file (or ``.tex.gz``), a ``.tar[.gz]``/``.zip`` of
one paper's sources, or an arXiv bulk tar (``arXiv_src_*.tar``, or any tar whose first file is ``*.gz``)
holding ``<id>.gz`` papers (each a gzipped tar of sources or a gzipped ``.tex``; ``<id>.pdf`` ->
``no_source``); all read in memory (``archives``), never extracted. This module finds each paper's
files and accounts for every member; what is kept of the text is decided by ``ingest.latex_cleaning``.
"""

from __future__ import annotations

import io
import pathlib
from dataclasses import dataclass
from typing import Iterator

from datatrove.data import Document
from loguru import logger

from ingest.archive_members import DEFAULT_MAX_MEMBER_BYTES, DEFAULT_MAX_TOTAL_BYTES, ArchiveLimits, MemberError
from ingest.archives import archive_format, archive_stem, iter_archive, iter_tar_stream
from ingest.latex_cleaning import PaperExcluded, clean_paper
from ingest.records import construct, excluded, kept, unreadable
from ingest.safeio import SafeIOError, TooLarge, open_path, open_stream, read_capped
from ingest.text_decoding import decode_utf8

SOURCE = "arxiv"
TEX_SUFFIXES = (".tex", ".ltx")
SOURCE_SUFFIXES = TEX_SUFFIXES + (".sty",)  # a paper's own .sty files can define its macros
DEFAULT_MAX_INCLUDE_DEPTH = 16
DEFAULT_MAX_EXPANSION_PASSES = 10
# all of one paper's .tex/.sty sources together (real papers: well under 10 MB); what a paper holds in
# memory while it is cleaned, whatever the archive cap (4 GiB) would let its members add up to
DEFAULT_MAX_PAPER_BYTES = 128 << 20


@dataclass
class Paper:
    paper_id: str
    files: dict[str, str]  # file name in the paper -> its decoded text
    utf8_errors: int = 0
    size: int = 0  # bytes of its sources read so far


class _PaperTooLarge(Exception):
    """The paper's sources add up to more than ``max_paper_bytes``."""


BULK_PREFIX = "arXiv_src_"


def _tex_file(name: str) -> bool:
    return name.lower().endswith(SOURCE_SUFFIXES)


def _paper_or_source_file(name: str) -> bool:
    """Members worth reading: ``.tex``/``.sty`` sources, and a bulk tar's ``.gz`` / ``.pdf`` papers."""
    return name.lower().endswith(SOURCE_SUFFIXES + (".gz", ".pdf"))


def paper_id_of(path: pathlib.Path) -> str:
    """``2101.00001.tar.gz`` / ``2101.00001.tex(.gz)`` -> ``2101.00001`` (arXiv ids contain dots)."""
    if archive_format(path):
        return archive_stem(path)
    name = path.name.removesuffix(".gz")
    for suffix in TEX_SUFFIXES:
        name = name.removesuffix(suffix)
    return name


class ArxivExtractor:
    """Extractor (see ingest/extract.py contract) for arXiv papers: .tex files, one paper's archive, bulk tars."""

    def __init__(
        self,
        max_record_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
        max_expanded_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
        max_include_depth: int = DEFAULT_MAX_INCLUDE_DEPTH,
        max_expansion_passes: int = DEFAULT_MAX_EXPANSION_PASSES,
        max_paper_bytes: int = DEFAULT_MAX_PAPER_BYTES,
    ):
        self.limits = ArchiveLimits(int(max_record_bytes), int(max_expanded_bytes))
        self.max_include_depth = int(max_include_depth)
        self.max_passes = int(max_expansion_passes)
        self.max_paper_bytes = int(max_paper_bytes)

    def accepts(self, path: pathlib.Path) -> bool:
        name = path.name.lower()
        return (path.is_file() and not path.is_symlink()
                and (name.endswith(TEX_SUFFIXES + tuple(s + ".gz" for s in TEX_SUFFIXES))
                     or archive_format(path) in ("tar", "zip")))

    def __call__(self, path: pathlib.Path) -> Iterator[Document]:
        path = pathlib.Path(path)
        if archive_format(path):
            yield from self._from_archive(path)
            return
        paper = Paper(paper_id_of(path), {})
        try:
            with open_path(path, max_expanded=self.limits.max_member_bytes) as stream:
                self._add(paper, path.name.removesuffix(".gz"), read_capped(stream, self.limits.max_member_bytes))
        except SafeIOError as exc:
            yield unreadable(path, exc, SOURCE, paper_id=paper.paper_id)
            return
        except _PaperTooLarge:
            yield self._too_large(paper)
            return
        yield self.convert(paper)

    def _from_archive(self, path: pathlib.Path) -> Iterator[Document]:
        """One paper's sources, or an arXiv bulk tar (``arXiv_src_*.tar``) of ``<id>.gz`` papers."""
        paper = Paper(paper_id_of(path), {})
        members = iter_archive(path, self.limits, select=_paper_or_source_file)
        bulk = None
        try:
            for m in members:
                if m.name and not m.reason and bulk is None:
                    bulk = path.name.startswith(BULK_PREFIX) or m.name.lower().endswith(".gz")
                if bulk and m.name:
                    yield from self._bulk_member(m)
                    continue
                if not m.name:
                    yield from self._unreadable_rest(path, paper, m)
                    if not paper.files:
                        return
                    break
                if m.name.lower().endswith(SOURCE_SUFFIXES) or m.reason:
                    yield from self._collect(paper, m)
        except _PaperTooLarge:  # the rest of the archive is this paper: not read
            yield self._too_large(paper)
            return
        finally:
            members.close()
        if not bulk:
            yield self.convert(paper)

    def _too_large(self, paper: Paper) -> Document:
        logger.warning(f"arxiv: {paper.paper_id}: excluded (paper_too_large): "
                       f"sources over {self.max_paper_bytes} bytes")
        return excluded(paper.paper_id, "paper_too_large", paper_id=paper.paper_id, files_read=len(paper.files),
                        bytes_read=paper.size, max_paper_bytes=self.max_paper_bytes)

    def _collect(self, paper: Paper, m) -> Iterator[Document]:
        """Add one ``.tex`` member to ``paper``; yields it as excluded when it is unusable. Raises
        ``_PaperTooLarge`` once the paper's sources pass ``max_paper_bytes`` (read no further)."""
        if m.reason:
            yield excluded(f"{paper.paper_id}/{m.name}", m.reason, paper_id=paper.paper_id)
            return
        room = self.max_paper_bytes - paper.size
        try:
            with m.open() as stream:
                data = stream.read(min(m.cap, room) + 1)
                if len(data) > m.cap:
                    raise TooLarge(f"more than {m.cap} bytes")
        except SafeIOError as exc:
            yield excluded(f"{paper.paper_id}/{m.name}", exc.reason, paper_id=paper.paper_id)
            return
        self._add(paper, m.name, data)

    def _unreadable_rest(self, path: pathlib.Path, paper: Paper, failure) -> Iterator[Document]:
        if not paper.files:  # nothing read: the whole file is one excluded record
            yield unreadable(path, MemberError(failure.reason, failure.detail), SOURCE, paper_id=paper.paper_id)
        else:  # the readable part may still hold the paper; one record for the rest
            yield excluded(f"{paper.paper_id}/#rest", failure.reason, paper_id=paper.paper_id)

    def _bulk_member(self, m) -> Iterator[Document]:
        """A member of a bulk tar: ``<yymm>/<id>.gz`` is a gzipped tar of sources or a gzipped
        ``.tex``; ``<id>.pdf`` is a paper without sources."""
        paper_id = m.name.rsplit("/", 1)[-1]
        for suffix in (".gz", ".pdf"):
            paper_id = paper_id.removesuffix(suffix)
        if m.reason:
            yield excluded(m.name, m.reason, paper_id=paper_id)
            return
        if not m.name.lower().endswith(".gz"):
            yield excluded(paper_id, "no_source" if m.name.lower().endswith(".pdf") else "not_paper", paper_id=paper_id)
            return
        paper = Paper(paper_id, {})
        try:
            with m.open() as packed, open_stream(packed, max_expanded=self.limits.max_member_bytes) as stream:
                data = read_capped(stream, self.limits.max_member_bytes)
        except SafeIOError as exc:
            yield excluded(paper_id, exc.reason, paper_id=paper_id)
            return
        try:
            if data[257:262] == b"ustar":  # a tar of the paper's sources
                for inner in iter_tar_stream(io.BytesIO(data), self.limits, select=_tex_file):
                    if not inner.name:
                        yield from self._unreadable_rest(pathlib.Path(paper_id), paper, inner)
                        if not paper.files:
                            return
                        break
                    yield from self._collect(paper, inner)
            else:
                self._add(paper, f"{paper_id}.tex", data)
        except _PaperTooLarge:
            yield self._too_large(paper)
            return
        yield self.convert(paper)

    def _add(self, paper: Paper, name: str, data: bytes) -> None:
        if paper.size + len(data) > self.max_paper_bytes:
            raise _PaperTooLarge()
        paper.size += len(data)
        text, errors = decode_utf8(data)
        paper.files[name] = text
        paper.utf8_errors += errors

    def convert(self, paper: Paper) -> Document:
        """The paper's cleaned text, or an excluded record saying why there is none."""
        meta = {"paper_id": paper.paper_id, "files": len(paper.files), "utf8_errors": paper.utf8_errors}
        try:
            text = clean_paper(paper.files, meta, max_include_depth=self.max_include_depth,
                               max_chars=self.limits.max_member_bytes, max_passes=self.max_passes)
        except PaperExcluded as exc:
            if exc.reason == "include_loop":
                logger.warning(f"arxiv: {paper.paper_id}: excluded (include_loop): {exc.detail}")
            return excluded(paper.paper_id, exc.reason, detail=exc.detail[:200], **meta)
        if not text.strip():
            return excluded(paper.paper_id, "empty", **meta)
        return kept(paper.paper_id, text, **meta)


def make_extractor(params: dict | None = None) -> ArxivExtractor:
    """From the manifest's extract params, e.g. {max_include_depth: 16}."""
    return construct(ArxivExtractor, params, SOURCE)
