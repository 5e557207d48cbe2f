"""StackExchange extractor: one document per question, from a site's ``Posts.xml``.

Why: LLaMA kept the 28 largest StackExchange sites, removed HTML tags and sorted each question's
answers by score, highest first. A question's answers may come before or after it in the dump, so
the rows are grouped through a small SQLite table instead of in a dict the size of the site.

Input (top-level entries of the download folder): a folder ``<site>/`` holding ``Posts.xml``, or
the dump's ``<site>.7z`` (also ``stackoverflow.com-Posts.7z``), whose ``Posts.xml`` is streamed out
of the archive (``archives``) without being extracted.

Document: title, blank line, question body, then each answer (blank-line separated) sorted by score
descending, ties by creation date then id. HTML -> text by resiliparse, keeping ``<pre>``/``<code>``
text and line breaks. Excluded records: ``orphan_answer`` (its question is not in the dump),
``post_type:<n>`` (tag wikis, moderator nominations...), ``bad_row`` (a row without a usable Id or
PostTypeId), ``too_large`` (a row longer than ``max_record_bytes``; a Posts.xml expanding past
``max_expanded_bytes`` ends with a ``too_large`` record for the rest, as does more than
``max_record_bytes`` without a complete row), ``empty``; an unreadable file, a ``Posts.xml`` that
stops parsing or one with a DTD becomes one record for the rest (``corrupt:xml``...).

Memory: rows are read line by line (the dump writes one ``<row/>`` per line; a line is capped) and
fed to expat, which keeps nothing between rows (``ingest.xmlfeed``: no DTD, so no entity expands;
an unfinished token is neither re-scanned per line nor unbounded); question and answer rows go to
SQLite, on disk under ``params["work_dir"]`` when the stage gives one (it is removed afterwards),
otherwise in memory (then memory grows with the site: fine for samples and small sites only).
A UTF-16/32 ``Posts.xml`` (byte-order mark, or ``<?xml`` in UTF-16) is read as UTF-8.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import re
import sqlite3
import tempfile
from typing import BinaryIO, Iterator
from xml.parsers import expat

from datatrove.data import Document
from loguru import logger
from resiliparse.extract.html2text import extract_plain_text

from ingest.archive_members import ArchiveLimits, MemberError
from ingest.archives import archive_format, archive_stem, iter_archive
from ingest.records import construct, excluded, kept, unreadable
from ingest.safeio import DEFAULT_MAX_RECORD, SafeIOError, TooLarge, iter_lines, open_path
from ingest.text_decoding import TranscodeToUtf8, decode_utf8, sniff_unicode
from ingest.xmlfeed import ExpatFeeder, refusing_parser

SOURCE = "stackexchange"
NEEDS_WORK_DIR = True  # the extract stage passes params["work_dir"] (a scratch folder in the output)
POSTS_FILE = "Posts.xml"
DEFAULT_MAX_POSTS_BYTES = 1 << 40  # one Posts.xml, expanded (stackoverflow.com's is ~100 GB)

# The 28 largest StackExchange sites by the size of their dump archive (archive.org item
# "stackexchange", dumps of 2022-06 .. 2023-03; stackoverflow.com counted by its -Posts.7z). Ranked
# from the item's file listing as remembered by the author, not re-measured offline: the order of
# the last few entries is approximate. LLaMA (Touvron et al. 2023) kept "the 28 largest websites".
LARGEST_SITES: tuple[str, ...] = (
    "stackoverflow.com",
    "math.stackexchange.com",
    "superuser.com",
    "askubuntu.com",
    "serverfault.com",
    "ru.stackoverflow.com",
    "unix.stackexchange.com",
    "tex.stackexchange.com",
    "physics.stackexchange.com",
    "electronics.stackexchange.com",
    "stats.stackexchange.com",
    "english.stackexchange.com",
    "mathoverflow.net",
    "apple.stackexchange.com",
    "gis.stackexchange.com",
    "pt.stackoverflow.com",
    "codereview.stackexchange.com",
    "salesforce.stackexchange.com",
    "es.stackoverflow.com",
    "gaming.stackexchange.com",
    "ell.stackexchange.com",
    "softwareengineering.stackexchange.com",
    "scifi.stackexchange.com",
    "magento.stackexchange.com",
    "wordpress.stackexchange.com",
    "dba.stackexchange.com",
    "sharepoint.stackexchange.com",
    "mathematica.stackexchange.com",
)

_TAGS = re.compile(r"[^<>|]+")
_SCHEMA = """
CREATE TABLE questions (id INTEGER PRIMARY KEY, score INTEGER, created TEXT, title TEXT, body TEXT,
                        tags TEXT, accepted INTEGER, utf8_errors INTEGER);
CREATE TABLE answers (id INTEGER PRIMARY KEY, parent INTEGER, score INTEGER, created TEXT, body TEXT,
                      utf8_errors INTEGER);
CREATE INDEX answers_parent ON answers (parent, score DESC, created, id);
"""
_BATCH = 2000


def site_name(path: pathlib.Path) -> str:
    """``math.stackexchange.com.7z`` -> ``math.stackexchange.com``; ``stackoverflow.com-Posts.7z``
    -> ``stackoverflow.com``; a folder's own name otherwise."""
    name = archive_stem(path) if archive_format(path) else path.name
    return name.removesuffix("-Posts")


def html_to_text(html: str) -> str:
    """Visible text of a post body, code blocks and paragraph breaks kept."""
    if "<" not in html and "&" not in html:
        return html.strip()
    return extract_plain_text(html, preserve_formatting=True, main_content=False, links=False,
                              alt_texts=False, list_bullets=True).strip()


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class _PostStore:
    """Question and answer rows of one site, grouped by question through SQLite."""

    def __init__(self, work_dir: str | None):
        self._dir = tempfile.TemporaryDirectory(dir=work_dir, prefix="se-") if work_dir else None
        self.db = sqlite3.connect(f"{self._dir.name}/posts.sqlite" if self._dir else ":memory:")
        self.db.executescript(_SCHEMA)
        self._questions: list[tuple] = []
        self._answers: list[tuple] = []

    def add_question(self, row: tuple) -> None:
        self._questions.append(row)
        if len(self._questions) >= _BATCH:
            self.flush()

    def add_answer(self, row: tuple) -> None:
        self._answers.append(row)
        if len(self._answers) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        # OR REPLACE: a repeated Id (never in a sound dump) keeps its last row, deterministically.
        self.db.executemany("INSERT OR REPLACE INTO questions VALUES (?,?,?,?,?,?,?,?)", self._questions)
        self.db.executemany("INSERT OR REPLACE INTO answers VALUES (?,?,?,?,?,?)", self._answers)
        self._questions.clear()
        self._answers.clear()

    def questions(self) -> Iterator[tuple]:
        self.flush()
        yield from self.db.execute("SELECT * FROM questions ORDER BY id")

    def answers(self, question_id: int) -> list[tuple]:
        return self.db.execute(
            "SELECT id, score, body, utf8_errors FROM answers WHERE parent = ? ORDER BY score DESC, created, id",
            (question_id,),
        ).fetchall()

    def orphans(self) -> Iterator[tuple]:
        yield from self.db.execute(
            "SELECT id, parent FROM answers a WHERE NOT EXISTS (SELECT 1 FROM questions q WHERE q.id = a.parent)"
            " ORDER BY id"
        )

    def close(self) -> None:
        self.db.close()
        if self._dir:
            self._dir.cleanup()


class StackExchangeExtractor:
    """Extractor (see ingest/extract.py contract) for StackExchange sites: ``<site>/Posts.xml`` or ``.7z``."""

    def __init__(
        self,
        sites: list[str] | None = None,
        work_dir: str | None = None,
        max_record_bytes: int = DEFAULT_MAX_RECORD,
        max_expanded_bytes: int = DEFAULT_MAX_POSTS_BYTES,
    ):
        self.max_record = int(max_record_bytes)
        self.max_posts = int(max_expanded_bytes)
        self.limits = ArchiveLimits(max_member_bytes=self.max_posts, max_total_bytes=self.max_posts)
        self.work_dir = work_dir
        self.sites = set(sites) if sites else None

    def accepts(self, path: pathlib.Path) -> bool:
        if path.is_symlink():  # never followed
            return False
        if path.is_dir():
            ok = (path / POSTS_FILE).is_file() and not (path / POSTS_FILE).is_symlink()
        else:
            ok = path.is_file() and archive_format(path) == "7z"
        return ok and (self.sites is None or site_name(path) in self.sites)

    def __call__(self, path: pathlib.Path) -> Iterator[Document]:
        path = pathlib.Path(path)
        site = site_name(path)
        store, skipped = _PostStore(self.work_dir), []
        try:
            with self._posts_stream(path, skipped) as stream:
                if stream is not None:
                    yield from self._load(stream, site, store, path)
            for member in skipped:
                yield excluded(f"{site}/{member.name}", member.reason, site=site)
            if stream is None:
                yield unreadable(path, MemberError("no_posts", f"no {POSTS_FILE}"), SOURCE, site=site)
                return
            yield from self._documents(site, store)
        except SafeIOError as exc:  # the archive/file could not be opened at all
            yield unreadable(path, exc, SOURCE, site=site)
        finally:
            store.close()

    @contextlib.contextmanager
    def _posts_stream(self, path: pathlib.Path, skipped: list) -> Iterator[BinaryIO | None]:
        """The Posts.xml stream (None if absent); unsafe archive members are appended to ``skipped``."""
        if path.is_dir():
            with open_path(path / POSTS_FILE, max_expanded=self.max_posts) as stream:
                yield stream
            return
        members = iter_archive(path, self.limits, select=lambda n: n.rsplit("/", 1)[-1] == POSTS_FILE)
        posts = None
        try:
            for m in members:
                if m.reason and not m.name:  # corrupt archive / bomb: nothing usable (after Posts.xml:
                    if posts is None:        # the archive's own trailer, already reported while reading)
                        raise MemberError(m.reason, m.detail)
                    continue
                if m.reason:  # an unsafe member name: accounted for, never read
                    skipped.append(m)
                elif posts is None:
                    posts = m
                    with m.open() as stream:
                        yield stream
                else:
                    m.reason = "duplicate_posts"
                    skipped.append(m)
            if posts is None:
                yield None
        finally:
            members.close()

    def _load(self, stream: BinaryIO, site: str, store: _PostStore, path: pathlib.Path) -> Iterator[Document]:
        """Parse rows into ``store``; yields the rows that are excluded outright.

        Bounded: lines are capped (``too_large``); expat is fed so that an unfinished token (a
        32 MB comment) is not re-scanned on every line and cannot grow past the cap
        (``ingest.xmlfeed``); text between rows is never kept; more than ``max_record_bytes`` (plus
        1 MiB) without a complete row ends the file (``too_large`` for the rest); a DTD is refused
        (``corrupt:xml``), so no entity can expand. UTF-16/32 files are read as UTF-8."""
        parser = refusing_parser(POSTS_FILE)
        cap = self.max_record + (1 << 20)
        feeder = ExpatFeeder(parser, cap, POSTS_FILE)
        open_rows: list[dict | None] = []
        finished: list[dict] = []

        def start(name, attrs):
            open_rows.append(attrs if name == "row" else None)

        def end(_name):
            attrs = open_rows.pop() if open_rows else None
            if attrs is not None:
                finished.append(attrs)

        parser.StartElementHandler = start
        parser.EndElementHandler = end
        errors = 0  # UTF-8 errors not yet given to a row: the next row to complete gets them
        since_row = 0  # bytes fed since the last complete row
        try:
            sniffed = sniff_unicode(stream.peek(4096)[:4096] if hasattr(stream, "peek") else b"")
            if sniffed is not None:
                stream = io.BufferedReader(TranscodeToUtf8(stream, *sniffed), 1 << 20)
            for line in iter_lines(stream, self.max_record):
                if line.too_large:
                    yield excluded(f"{site}/line:{line.number}", "too_large", site=site, size=line.size)
                    continue
                text, line_errors = decode_utf8(line.data)
                errors += line_errors
                feeder.feed(text.encode("utf-8") if line_errors else line.data)
                since_row += line.size
                if finished:
                    since_row = 0
                    for attrs in finished:
                        doc = self._row(attrs, errors, site, store)
                        errors = 0
                        if doc is not None:
                            yield doc
                    finished.clear()
                elif since_row > cap:
                    raise TooLarge(f"more than {cap} bytes of {POSTS_FILE} without a complete row",
                                   {"bytes_without_row": since_row})
            feeder.flush(final=True)
            for attrs in finished:
                doc = self._row(attrs, errors, site, store)
                errors = 0
                if doc is not None:
                    yield doc
        except expat.ExpatError as exc:
            yield self._rest(path, site, "corrupt:xml", str(exc))
        except SafeIOError as exc:
            yield self._rest(path, site, exc.reason, exc.detail, exc.info)

    def _rest(self, path: pathlib.Path, site: str, reason: str, detail: str, info: dict | None = None) -> Document:
        """One record for the unread remainder of a Posts.xml; what was read still becomes documents."""
        logger.warning(f"{SOURCE}: {path.name}: rest of {POSTS_FILE} excluded ({reason}): {detail}")
        return excluded(f"{site}/{POSTS_FILE}#rest", reason, site=site, error=detail[:500], **(info or {}))

    def _row(self, row: dict, errors: int, site: str, store: _PostStore) -> Document | None:
        post_id, post_type = _int(row.get("Id")), _int(row.get("PostTypeId"))
        if post_id is None or post_type is None:
            return excluded(f"{site}/row:{row.get('Id', '?')}", "bad_row", site=site)
        score, created, body = _int(row.get("Score")) or 0, row.get("CreationDate", ""), row.get("Body", "")
        if post_type == 1:
            tags = "\t".join(_TAGS.findall(row.get("Tags", "")))
            store.add_question((post_id, score, created, row.get("Title", ""), body, tags,
                                _int(row.get("AcceptedAnswerId")), errors))
            return None
        if post_type == 2:
            store.add_answer((post_id, _int(row.get("ParentId")), score, created, body, errors))
            return None
        return excluded(f"{site}/{post_id}", f"post_type:{post_type}", site=site)

    def _documents(self, site: str, store: _PostStore) -> Iterator[Document]:
        for qid, score, _created, title, body, tags, accepted, errors in store.questions():
            answers = store.answers(qid)
            parts = [title.strip(), html_to_text(body)] + [html_to_text(a[2]) for a in answers]
            meta = {
                "site": site, "question_id": qid, "score": score, "answer_scores": [a[1] for a in answers],
                "answer_ids": [a[0] for a in answers], "tags": tags.split("\t") if tags else [],
                "accepted_answer_id": accepted, "utf8_errors": errors + sum(a[3] for a in answers),
            }
            text = "\n\n".join(p for p in parts if p)
            if not text.strip():
                yield excluded(f"{site}/{qid}", "empty", **meta)
            else:
                yield kept(f"{site}/{qid}", text + "\n", **meta)
        for answer_id, parent in store.orphans():
            yield excluded(f"{site}/{answer_id}", "orphan_answer", site=site, parent_id=parent)


def make_extractor(params: dict | None = None) -> StackExchangeExtractor:
    """From the manifest's extract params, e.g. {sites: [...]}; the stage adds work_dir."""
    return construct(StackExchangeExtractor, params, SOURCE)
