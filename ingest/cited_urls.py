"""The web pages Wikipedia cites: found in wikitext, normalised, hashed, written per extract task.

Why: LLaMA's CommonCrawl quality classifier separates "pages used as references in Wikipedia" from
random pages. While the extract stage reads Wikipedia, every kept article's external links — ``[http…
title]``, bare URLs (``url=`` of citation templates, ``<ref>http…</ref>``) — are normalised
(``normalise_url``) and hashed to 64 bits (``url_hash``); each extract task writes them as sorted,
deduplicated ``uint64`` arrays ``cited_urls/NNNNN_PPP.npy`` beside its shards (``CitedUrlWriter``,
at most ``buffer`` hashes in memory). The ``wikiref_train`` model stage then matches the URLs of the
crawl's pages against them, one range of the hash space at a time (``load_range``): 8 bytes per
distinct cited URL and range, never the URLs themselves.

64-bit hashes: with n = 10^8 distinct cited URLs, a random page matches by accident with probability
n / 2^64 ≈ 5·10^-12.
"""

from __future__ import annotations

import hashlib
import html
import re
from array import array
from pathlib import Path
from typing import Iterable
from urllib.parse import quote

import numpy as np

from storage.atomic import atomic_open
from storage.layout import Layout

MAX_URL_CHARS = 2048  # a longer "URL" is skipped
MAX_URLS_PER_PAGE = 10_000  # hostile pages cannot flood the set
HASH_SPACE = 1 << 64
# Wikimedia's own sites: links to them are Wikipedia pointing at itself, not a page it cites (and crawled
# Wikipedia pages as positives would teach the classifier "looks like Wikipedia", the proxy's flaw).
WIKIMEDIA_HOSTS = ("wikipedia.org", "wikimedia.org", "wikidata.org", "wiktionary.org", "wikisource.org",
                   "wikiquote.org", "wikibooks.org", "wikinews.org", "wikiversity.org", "wikivoyage.org",
                   "wikimediafoundation.org", "mediawiki.org", "toolforge.org", "wmflabs.org")  # fmt: skip

# A URL as MediaWiki links it (its EXT_LINK_URL_CLASS, less `|{}` which end a template argument);
# protocol-relative `//host` only right after `[` or `=` (`[//host x]`, `url=//host`).
_URL_OR_COMMENT = re.compile(r"<!--|(?:\bhttps?:|(?<=[\[=]))//[^\s\[\]<>\"{}|\x00-\x1f\x7f\ufffd]+", re.I)
_SCHEME = re.compile(r"(?:https?:)?//", re.I)
_TRAILING = ".,;:!?'\"*"  # punctuation after a free URL is the sentence's, not the URL's (as MediaWiki)
_WAYBACK = re.compile(r"(?:web\.)?archive\.org/web/\d+[a-z_]*/(.+)", re.I)
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SAFE = "!#$%&'()*+,/:;=?@[]~"  # left as they are by quote(): reserved characters and escapes
_PORT = re.compile(r":(\d*)$")


def _escape(part: str) -> str:
    """Percent-encoding made canonical: non-ASCII and spaces encoded (UTF-8), escapes upper-case,
    escaped unreserved characters (``%7E``, ``%41``) decoded."""
    part = quote(part, safe=_SAFE)

    def one(m: re.Match) -> str:
        char = chr(int(m.group(0)[1:], 16))
        return char if char in _UNRESERVED else m.group(0).upper()

    return _ESCAPE.sub(one, part) if "%" in part else part


def normalise_url(url: str) -> str | None:
    """The key a cited URL and a crawled page's URL are matched on, or None when ``url`` is not an
    http(s) URL (or a link to a Wikimedia site). Rules (docs/filters.md):

    * scheme dropped (``http``, ``https`` and ``//`` alike: sites moved to https since they were cited);
    * user info and fragment (``#…``) dropped; host lower-cased, a trailing dot, a leading ``www.`` and
      the default ports 80/443 removed; a non-ASCII host in IDNA (``xn--…``);
    * path and query kept in case, percent-encoding canonical (``_escape``); trailing ``/`` of the path
      removed (``example.org/a/`` = ``example.org/a``, ``example.org/`` = ``example.org``); an empty
      query (``?``) removed; the query is not reordered;
    * a Wayback Machine copy (``web.archive.org/web/<time>/<url>``) stands for the page it archived.
    """
    url = url.strip()
    scheme = _SCHEME.match(url)
    if not scheme:
        return None
    rest = url[scheme.end() :].split("#", 1)[0]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    host = authority.rsplit("@", 1)[-1]
    port = _PORT.search(host) if not host.endswith("]") else None
    if port:
        host = host[: port.start()]
    host = host.lower().rstrip(".")
    if not host or any(c in host for c in " %\\"):
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            pass
    host = host.removeprefix("www.")
    if port and port.group(1) not in ("", "80", "443"):
        host = f"{host}:{port.group(1)}"
    if any(host == h or host.endswith("." + h) for h in WIKIMEDIA_HOSTS):
        return None
    path, _, query = tail.partition("?")
    key = f"{host}{_escape(path).rstrip('/')}"
    if query:
        key += f"?{_escape(query)}"
    wayback = _WAYBACK.fullmatch(key)
    if wayback:
        original = wayback.group(1)
        return normalise_url(original if _SCHEME.match(original) else f"http://{original}")
    return key


def url_hash(key: str) -> int:
    """64-bit hash of a normalised URL (blake2b: stable across processes and machines)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "replace"), digest_size=8).digest(), "little")


def _clean_free_url(url: str) -> str:
    if "&" in url:  # MediaWiki decodes entities in URLs (&amp; in a query string)
        url = re.split(r"\s", html.unescape(url), maxsplit=1)[0]
    url = url.split("''", 1)[0]  # bold/italic quotes right after a link
    url = url.rstrip(_TRAILING)
    excess, end = url.count(")") - url.count("("), len(url)  # "(see http://x.org/a)": the sentence's ")"
    while excess > 0 and end and url[end - 1] in _TRAILING + ")":
        excess -= url[end - 1] == ")"
        end -= 1
    return url[:end].rstrip(_TRAILING)


def cited_urls(wikitext: str) -> list[str]:
    """The normalised URLs a page links to outside Wikimedia (``[http… title]``, bare URLs in citation
    templates' ``url=`` and in ``<ref>``s), deduplicated, in order of appearance; links inside
    ``<!-- comments -->`` are not cited. One linear scan; at most ``MAX_URLS_PER_PAGE``."""
    found: dict[str, None] = {}
    pos = 0
    while len(found) < MAX_URLS_PER_PAGE and (match := _URL_OR_COMMENT.search(wikitext, pos)):
        token = match.group(0)
        if token == "<!--":
            end = wikitext.find("-->", match.end())
            if end < 0:
                break
            pos = end + 3
            continue
        pos = match.end()
        if len(token) > MAX_URL_CHARS:
            continue
        key = normalise_url(_clean_free_url(token))
        if key is not None:
            found.setdefault(key, None)
    return list(found)


def cited_url_files(stage_dir: str | Path) -> list[Path]:
    """The hash files of a stage folder (``<stage>/<source>/cited_urls/NNNNN_PPP.npy``), sorted."""
    folder = Layout.cited_urls_dir(stage_dir)
    return sorted(p for p in folder.glob("*.npy") if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []


class CitedUrlWriter:
    """One extract task's cited URLs: hashes buffered in memory (8 bytes each, at most ``buffer`` of
    them), each full buffer written sorted and deduplicated as ``<folder>/<rank>_<part>.npy``. A rerun
    of the task first removes the files an earlier attempt left."""

    def __init__(self, folder: str | Path, rank: int, buffer: int = 1 << 22):
        self.folder = Path(folder)
        self.rank = rank
        self.buffer = max(1, int(buffer))
        self.hashes = array("Q")
        self.parts = 0
        self.written = 0  # hashes written (distinct within each part)
        for old in self.folder.glob(f"{rank:05d}_*.npy") if self.folder.is_dir() else []:
            old.unlink()

    def add(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.hashes.append(url_hash(key))
        if len(self.hashes) >= self.buffer:
            self.flush()

    def flush(self) -> None:
        if not self.hashes:
            return
        unique = np.unique(np.frombuffer(self.hashes, dtype=np.uint64))
        self.hashes = array("Q")
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_open(self.folder / f"{self.rank:05d}_{self.parts:03d}.npy") as f:
            np.save(f, unique.astype("<u8"), allow_pickle=False)
        self.parts += 1
        self.written += len(unique)

    close = flush


def partitions(count: int) -> list[tuple[int, int]]:
    """``count`` consecutive ranges [lo, hi) covering the 64-bit hash space."""
    bounds = [HASH_SPACE * i // count for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def load_range(files: Iterable[Path], lo: int = 0, hi: int = HASH_SPACE) -> np.ndarray:
    """The distinct hashes in [lo, hi) of sorted hash files, as one sorted ``uint64`` array (each file
    memory-mapped: only the range is read)."""
    pieces = []
    for path in files:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        if arr.dtype != np.uint64 or arr.ndim != 1:
            raise ValueError(f"{path}: not a cited-URL hash file (expected a 1-d uint64 array, got {arr.dtype} {arr.shape})")
        start = int(np.searchsorted(arr, np.uint64(lo), side="left")) if lo else 0
        end = int(np.searchsorted(arr, np.uint64(hi), side="left")) if hi < HASH_SPACE else len(arr)
        if end > start:
            pieces.append(np.array(arr[start:end]))
    return np.unique(np.concatenate(pieces)) if pieces else np.empty(0, dtype=np.uint64)


def contains(sorted_set: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Membership of each of ``hashes`` in a sorted ``uint64`` array (a boolean mask)."""
    if not len(sorted_set) or not len(hashes):
        return np.zeros(len(hashes), dtype=bool)
    idx = np.searchsorted(sorted_set, hashes).clip(max=len(sorted_set) - 1)
    return sorted_set[idx] == hashes
