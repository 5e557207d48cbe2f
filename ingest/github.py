"""GitHub extractor: one document per source file of a permissively licensed repository.

Why: LLaMA kept only Apache/BSD/MIT-licensed GitHub code and removed licence/copyright boilerplate
headers with regexes. Input is one repository per top-level entry of the download folder: a folder,
or a tar(.gz/.bz2/.xz)/zip/7z archive of it (read in memory via ``archives``, never extracted); or a
RedPajama-style ``.jsonl[.gz|.zst]`` of files (``text`` + ``meta.repo_name/path/license``), the
downloadable form of the BigQuery export LLaMA used.

Rules (documented in docs/sources.md):
- the licence comes from the repository's top-level LICENSE / LICENCE / COPYING[.md|.txt|.rst|-MIT...]
  files, recognised by the licence texts' characteristic phrases; every licence found must be one of
  ``KEPT_LICENCES``, otherwise each file of the repository is excluded as ``licence:<spdx-id>``
  (``licence:none`` without a licence file, ``licence:unknown`` when no text is recognised);
- files whose extension (or, for Dockerfile/Makefile..., whose name) is not in the allow-list are
  excluded as ``extension``; files with NUL bytes as ``binary``; empty files as ``empty``;
- a licence/copyright comment block at the very top of a file is removed (``header_stripped``).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from dataclasses import dataclass
from typing import Callable, Iterator

from datatrove.data import Document

from ingest.archive_members import DEFAULT_MAX_MEMBER_BYTES, DEFAULT_MAX_TOTAL_BYTES, ArchiveLimits, MemberError
from ingest.archives import archive_format, archive_stem, iter_archive
from ingest.records import construct, excluded, kept, unreadable
from ingest.safeio import SafeIOError, Unreadable, iter_lines, open_path, read_capped
from ingest.text_decoding import decode_utf8, replace_surrogates

SOURCE = "github"

# RedPajama-like allow-list: extension (lower-case, with dot) -> language.
LANGUAGES: dict[str, str] = {
    ".asm": "assembly", ".s": "assembly", ".bat": "batchfile", ".cmd": "batchfile",
    ".c": "c", ".h": "c", ".cs": "c#", ".cpp": "c++", ".hpp": "c++", ".cc": "c++", ".hh": "c++",
    ".cxx": "c++", ".hxx": "c++", ".c++": "c++", ".h++": "c++", ".cmake": "cmake", ".css": "css",
    ".scss": "css", ".dockerfile": "dockerfile", ".f": "fortran", ".f90": "fortran", ".f95": "fortran",
    ".f03": "fortran", ".f08": "fortran", ".f77": "fortran", ".for": "fortran", ".go": "go",
    ".hs": "haskell", ".html": "html", ".htm": "html", ".java": "java", ".js": "javascript",
    ".mjs": "javascript", ".jsx": "javascript", ".jl": "julia", ".kt": "kotlin", ".lua": "lua",
    ".md": "markdown", ".markdown": "markdown", ".m": "matlab", ".php": "php", ".pl": "perl",
    ".pm": "perl", ".ps1": "powershell", ".py": "python", ".pyx": "cython", ".r": "r", ".rb": "ruby",
    ".rs": "rust", ".rst": "restructuredtext", ".scala": "scala", ".sh": "shell", ".bash": "shell",
    ".zsh": "shell", ".sql": "sql", ".swift": "swift", ".tex": "tex", ".ts": "typescript",
    ".tsx": "typescript", ".vb": "visual basic", ".xml": "xml", ".yaml": "yaml", ".yml": "yaml",
    ".toml": "toml", ".json": "json", ".vue": "vue", ".dart": "dart", ".el": "emacs lisp",
    ".clj": "clojure", ".ex": "elixir", ".exs": "elixir", ".erl": "erlang", ".ml": "ocaml",
}
FILENAME_LANGUAGES: dict[str, str] = {"dockerfile": "dockerfile", "makefile": "makefile", "cmakelists.txt": "cmake"}

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst")
KEPT_LICENCES = frozenset({"mit", "bsd-2-clause", "bsd-3-clause", "apache-2.0"})
LICENCE_FILE = re.compile(r"^(?:licen[cs]e|copying)(?:[-._][\w.-]*)?$", re.IGNORECASE)
MAX_LICENCE_BYTES = 1 << 20

# Characteristic phrases of each licence text, matched on whitespace-collapsed lower-case text.
# Licence files often concatenate several texts (bundled code) or cite other licences (MPL-2.0 names
# the GPLs; the PSF text tells the GPL history): the licence whose phrase occurs *first* wins.
_GNU_NOTICE = r"(?:,?\s*as published by the free software foundation[;,]?\s*either)?\s*version"
_LICENCE_PHRASES: list[tuple[str, str]] = [
    ("agpl-3.0", r"gnu affero general public license" + _GNU_NOTICE + r" 3"),
    ("lgpl-3.0", r"gnu lesser general public license" + _GNU_NOTICE + r" 3"),
    ("lgpl-2.1", r"gnu lesser general public license" + _GNU_NOTICE + r" 2\.1"),
    ("lgpl-2.0", r"gnu library general public license" + _GNU_NOTICE + r" 2"),
    ("gpl-3.0", r"gnu general public license" + _GNU_NOTICE + r" 3"),
    ("gpl-2.0", r"gnu general public license" + _GNU_NOTICE + r" 2"),
    ("mpl-2.0", r"mozilla public license,?\s*(?:version|v\.?)\s*2\.0"),
    ("psf-2.0", r"python software foundation license"),
    ("apache-2.0", r"apache license,?\s*version 2\.0|version 2\.0, january 2004|^apache(?: license)?,? (?:version )?2\.0"),
    ("mit", r"permission is hereby granted, free of charge"),
    ("bsd", r"redistribution and use in source and binary forms"),
    ("isc", r"permission to use, copy, modify, and(?:/or)? distribute this software for any\s*purpose with or without fee"),
    ("unlicense", r"this is free and unencumbered software released into the public domain"),
]
_LICENCE_RE = [(spdx, re.compile(rx)) for spdx, rx in _LICENCE_PHRASES]
_BSD3_CLAUSE = re.compile(r"endorse or promote products|neither the name")


_DEP5 = re.compile(r"^Format:\s*https?://www\.debian\.org/doc/packaging-manuals/copyright-format/")
_DEP5_MAIN = re.compile(r"^Files:\s*\*\s*\n(?:[ \t].*\n|(?!License:)\S.*\n)*?License:\s*(\S+)", re.MULTILINE)
_DEP5_NAMES = {"expat": "mit", "mit": "mit", "bsd-2-clause": "bsd-2-clause", "bsd-3-clause": "bsd-3-clause",
               "apache-2.0": "apache-2.0", "gpl-2": "gpl-2.0", "gpl-3": "gpl-3.0", "lgpl-2": "lgpl-2.0",
               "lgpl-2.1": "lgpl-2.1", "lgpl-3": "lgpl-3.0", "agpl-3": "agpl-3.0", "mpl-2.0": "mpl-2.0",
               "psf-2": "psf-2.0", "isc": "isc"}


def _dep5_licence(text: str) -> str | None:
    """Debian machine-readable copyright files name the licence of ``Files: *`` explicitly (their
    other stanzas cover packaging files, often under the GPL): use that name."""
    if not _DEP5.match(text):
        return None
    m = _DEP5_MAIN.search(text)
    if m is None:
        return None
    name = m.group(1).lower().rstrip("+").removesuffix("-or-later").removesuffix("-only").removesuffix(".0")
    return _DEP5_NAMES.get(name, _DEP5_NAMES.get(name + ".0", "unknown"))


def detect_licence(text: str) -> str:
    """SPDX id (lower-case) of the licence text that comes first in ``text``, or ``unknown``."""
    dep5 = _dep5_licence(text)
    if dep5:
        return dep5
    flat = " ".join(text.lower().replace("\u201c", '"').replace("\u201d", '"').split())
    hits = [(m.start(), spdx) for spdx, rx in _LICENCE_RE if (m := rx.search(flat))]
    if not hits:
        return "unknown"
    start, spdx = min(hits)
    if spdx == "bsd":
        return "bsd-3-clause" if _BSD3_CLAUSE.search(flat, start, start + 3000) else "bsd-2-clause"
    return spdx


def repo_licence(texts: list[str], kept_licences=KEPT_LICENCES) -> str:
    """The repository's verdict: a kept id only if every licence file is kept, else the first other."""
    if not texts:
        return "none"
    found = [detect_licence(t) for t in texts]
    bad = [f for f in found if f not in kept_licences]
    return bad[0] if bad else found[0]


# ------------------------------------------------------------------------------ header stripping
_BOILERPLATE = re.compile(
    r"copyright|\(c\)|©|licen[cs]e|spdx-license-identifier|licensed under|permission is hereby granted"
    r"|all rights reserved",
    re.IGNORECASE,
)
_BLOCK_STYLES: dict[str, re.Pattern] = {
    "#": re.compile(r"(?:[ \t]*#(?![!])[^\n]*(?:\n|$))+"),
    "//": re.compile(r"(?:[ \t]*//[^\n]*(?:\n|$))+"),
    "--": re.compile(r"(?:[ \t]*--[^\n]*(?:\n|$))+"),
    "%": re.compile(r"(?:[ \t]*%[^\n]*(?:\n|$))+"),
    ";": re.compile(r"(?:[ \t]*;[^\n]*(?:\n|$))+"),
    "/*": re.compile(r"[ \t]*/\*.*?\*/[ \t]*(?:\n|$)", re.DOTALL),
    "<!--": re.compile(r"[ \t]*<!--.*?-->[ \t]*(?:\n|$)", re.DOTALL),
    '"""': re.compile(r'[ \t]*(?:[rRuU]?"""[\s\S]*?"""|[rRuU]?\'\'\'[\s\S]*?\'\'\')[ \t]*(?:\n|$)'),
}
_HASH = ("#",)
_C_LIKE = ("//", "/*")
_COMMENT_STYLES: dict[str, tuple[str, ...]] = {
    "python": ("#", '"""'), "cython": ("#", '"""'), "shell": _HASH, "perl": _HASH, "ruby": _HASH,
    "r": _HASH, "yaml": _HASH, "toml": _HASH, "cmake": _HASH, "makefile": _HASH, "dockerfile": _HASH,
    "powershell": ("#",), "julia": _HASH, "elixir": _HASH,
    "c": _C_LIKE, "c++": _C_LIKE, "c#": _C_LIKE, "java": _C_LIKE, "javascript": _C_LIKE,
    "typescript": _C_LIKE, "go": _C_LIKE, "rust": _C_LIKE, "scala": _C_LIKE, "kotlin": _C_LIKE,
    "swift": _C_LIKE, "dart": _C_LIKE, "php": ("//", "/*", "#"), "css": ("/*",),
    "html": ("<!--",), "xml": ("<!--",), "markdown": ("<!--",), "vue": ("<!--", "//", "/*"),
    "sql": ("--", "/*"), "lua": ("--",), "haskell": ("--",), "tex": ("%",), "matlab": ("%",),
    "erlang": ("%",), "emacs lisp": (";",), "clojure": (";",), "assembly": (";", "#", "//"),
}
_PREAMBLE = re.compile(r"(?:#![^\n]*\n|<\?php[ \t]*\n|<\?xml[^\n]*\?>[ \t]*\n)?")


def strip_licence_header(text: str, language: str) -> tuple[str, bool]:
    """Remove licence/copyright comment blocks at the top of a file (after a shebang / ``<?php`` /
    XML declaration, which are kept). Only blocks that mention licence boilerplate are removed, and
    only while such blocks follow each other from the top; the first ordinary comment stops it."""
    styles = [_BLOCK_STYLES[s] for s in _COMMENT_STYLES.get(language, ())]
    if not styles:
        return text, False
    preamble = _PREAMBLE.match(text).group(0)
    body, stripped = text[len(preamble):], False
    for _ in range(8):
        lead = len(body) - len(body.lstrip())
        for pattern in styles:
            m = pattern.match(body, lead)
            if m and m.end() > lead and _BOILERPLATE.search(m.group(0)):
                body, stripped = body[m.end():], True
                break
        else:
            break
    if stripped:
        body = body.lstrip("\n")
    return preamble + body, stripped


def language_of(path: str, extensions: dict[str, str]) -> str | None:
    name = path.rsplit("/", 1)[-1].lower()
    if name in FILENAME_LANGUAGES:
        return FILENAME_LANGUAGES[name]
    ext = os.path.splitext(name)[1]
    return extensions.get(ext)


# ------------------------------------------------------------------------------ repository files
@dataclass
class RepoFile:
    """A file of a repository: ``path`` relative to the repository root, ``reason`` if unusable."""

    path: str
    reason: str | None = None
    read: Callable[[], bytes] | None = None


def _walk_folder(root: pathlib.Path, cap: int) -> Iterator[RepoFile]:
    """Files under ``root`` in sorted order; symlinks and special files are reported, never followed."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d != ".git" and not os.path.islink(os.path.join(dirpath, d)))
        base = pathlib.Path(dirpath)
        links = [d for d in os.listdir(dirpath) if os.path.islink(os.path.join(dirpath, d))]
        for name in sorted(set(filenames) | set(links)):
            full = base / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink() or not full.is_file():
                yield RepoFile(rel, reason="unsafe_path")
                continue
            yield RepoFile(rel, read=lambda full=full: _read_file(full, cap))


def _read_file(path: pathlib.Path, cap: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return read_capped(f, cap)
    except OSError as exc:
        raise Unreadable(str(exc)) from None


def _read_licences(files: Iterator[RepoFile]) -> list[str]:
    texts = []
    for f in files:
        try:
            texts.append(decode_utf8(f.read()[:MAX_LICENCE_BYTES])[0])
        except SafeIOError:
            continue
    return texts


def _folder_licences(root: pathlib.Path, cap: int) -> list[str]:
    names = sorted(p for p in root.iterdir() if LICENCE_FILE.match(p.name) and p.is_file() and not p.is_symlink())
    return _read_licences(RepoFile(p.name, read=lambda p=p: _read_file(p, cap)) for p in names)


def _archive_survey(path: pathlib.Path, limits: ArchiveLimits) -> tuple[str, list[str]]:
    """One pass over an archive: its common top folder (GitHub archives wrap everything in
    ``<repo>-<sha>/``; '' if none) and the texts of the repository's top-level licence files."""
    tops: set[str] = set()

    def select(name: str) -> bool:
        tops.add(name.split("/", 1)[0] if "/" in name else "")
        return name.count("/") <= 1 and bool(LICENCE_FILE.match(name.rsplit("/", 1)[-1]))

    found: dict[str, str] = {}  # read while the stream is on the member (tar/7z are forward-only)
    for m in iter_archive(path, limits, select):
        texts = [] if m.reason else _read_licences([RepoFile(m.name, read=m.read)])
        if texts:
            found[m.name] = texts[0]
    prefix = f"{tops.pop()}/" if len(tops) == 1 and "" not in tops else ""
    return prefix, [text for name, text in found.items() if name.startswith(prefix) and "/" not in name[len(prefix):]]


class GithubExtractor:
    """Extractor (see ingest/extract.py contract) for repositories: folders, archives, RedPajama JSON lines."""

    def __init__(
        self,
        licences: list[str] | tuple[str, ...] = tuple(sorted(KEPT_LICENCES)),
        extensions: list[str] | None = None,
        strip_headers: bool = True,
        max_record_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
        max_expanded_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    ):
        self.limits = ArchiveLimits(int(max_record_bytes), int(max_expanded_bytes))
        self.extensions = (
            {e.lower() if e.startswith(".") else f".{e.lower()}": LANGUAGES.get(e.lower(), e.lower().lstrip("."))
             for e in extensions} if extensions else dict(LANGUAGES)
        )
        self.strip_headers = bool(strip_headers)
        self.kept_licences = frozenset(s.lower() for s in licences)

    def accepts(self, path: pathlib.Path) -> bool:
        if path.is_symlink():  # never followed
            return False
        return path.is_dir() or (path.is_file() and (archive_format(path) is not None or path.name.endswith(JSONL_SUFFIXES)))

    def __call__(self, path: pathlib.Path) -> Iterator[Document]:
        path = pathlib.Path(path)
        cap = self.limits.max_member_bytes
        if path.is_dir():
            repo, files = path.name, _walk_folder(path, cap)
            licence = repo_licence(_folder_licences(path, cap), self.kept_licences)
        elif archive_format(path):
            prefix, texts = _archive_survey(path, self.limits)
            repo, files, licence = archive_stem(path), self._archive_files(path, prefix), repo_licence(texts, self.kept_licences)
        elif path.name.endswith(JSONL_SUFFIXES):
            yield from self._from_jsonl(path)
            return
        else:
            yield unreadable(path, Unreadable("not a repository folder, archive or JSON-lines file"), SOURCE)
            return
        for f in files:
            yield self._document(repo, f, licence, path)

    def _archive_files(self, path: pathlib.Path, prefix: str) -> Iterator[RepoFile]:
        for m in iter_archive(path, self.limits):
            if not m.name:  # the archive itself is corrupt / a bomb from here on
                yield RepoFile("", reason=m.reason, read=None)
                return
            name = m.name[len(prefix):] if prefix and m.name.startswith(prefix) else m.name
            yield RepoFile(name, reason=m.reason, read=None if m.reason else m.read)

    def _document(self, repo: str, f: RepoFile, licence: str, path: pathlib.Path) -> Document:
        if not f.path:  # archive-level failure: one record for the unreadable rest
            return unreadable(path, MemberError(f.reason or "unreadable"), SOURCE, repo=repo)
        doc_id = f"{repo}/{f.path}"
        meta = {"repo": repo, "path": f.path, "licence": licence}
        if f.reason:
            return excluded(doc_id, f.reason, **meta)
        gate = self._gate(doc_id, f.path, licence, meta)
        if gate is not None:
            return gate
        try:
            data = f.read()
        except SafeIOError as exc:
            return excluded(doc_id, exc.reason, **meta)
        meta["size"] = len(data)
        if b"\x00" in data:
            return excluded(doc_id, "binary", **meta)
        text, errors = decode_utf8(data)
        return self._finish(doc_id, text, errors, meta)

    def _gate(self, doc_id: str, path: str, licence: str, meta: dict) -> Document | None:
        """Licence and extension rules; sets ``meta['language']``. None when the file may pass."""
        if licence not in self.kept_licences:
            return excluded(doc_id, f"licence:{licence}", **meta)
        if "/" not in path and LICENCE_FILE.match(path):
            return excluded(doc_id, "licence_file", **meta)  # the licence text itself is boilerplate
        meta["language"] = language_of(path, self.extensions)
        if meta["language"] is None:
            return excluded(doc_id, "extension", **meta)
        return None

    def _finish(self, doc_id: str, text: str, errors: int, meta: dict) -> Document:
        stripped = False
        if self.strip_headers:
            text, stripped = strip_licence_header(text, meta["language"])
        if not text.strip():
            return excluded(doc_id, "empty", header_stripped=stripped, **meta)
        return kept(doc_id, text, header_stripped=stripped, utf8_errors=errors, **meta)

    def _from_jsonl(self, path: pathlib.Path) -> Iterator[Document]:
        """RedPajama-style GitHub files: one JSON object per line, ``text`` plus ``meta`` with
        ``repo_name``, ``path``, ``license`` (the BigQuery export's licence, lower-case SPDX)."""
        stem = path.name.split(".")[0]
        try:
            with open_path(path, max_expanded=self.limits.max_total_bytes) as stream:
                for line in iter_lines(stream, self.limits.max_member_bytes):
                    if line.too_large or line.data.strip():
                        yield self._jsonl_record(f"{stem}/{line.number}", line)
        except SafeIOError as exc:
            yield unreadable(path, exc, SOURCE)

    def _jsonl_record(self, line_id: str, line) -> Document:
        if line.too_large:
            return excluded(line_id, "too_large", size=line.size)
        raw, errors = decode_utf8(line.data)
        try:
            record = json.loads(raw)
        except ValueError:
            return excluded(line_id, "bad_json", utf8_errors=errors)
        info = record.get("meta") if isinstance(record, dict) and isinstance(record.get("meta"), dict) else record
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) or not isinstance(info, dict):
            return excluded(line_id, "bad_json", utf8_errors=errors)
        repo, fpath = info.get("repo_name"), info.get("path")
        if not (isinstance(repo, str) and isinstance(fpath, str) and fpath):
            return excluded(line_id, "bad_json", utf8_errors=errors)
        doc_id, licence = f"{repo}/{fpath}", str(info.get("license") or "none").lower()
        meta = {"repo": repo, "path": fpath, "licence": licence}
        gate = self._gate(doc_id, fpath, licence, meta)
        if gate is not None:
            return gate
        text, surrogates = replace_surrogates(record["text"])
        meta["size"] = len(record["text"].encode("utf-8", "surrogatepass"))
        if "\x00" in text:
            return excluded(doc_id, "binary", **meta)
        return self._finish(doc_id, text, errors + surrogates, meta)


def make_extractor(params: dict | None = None) -> GithubExtractor:
    """From the manifest's extract params, e.g. {licences: [mit, ...], extensions: [.py, ...]}."""
    return construct(GithubExtractor, params, SOURCE)
