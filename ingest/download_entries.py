"""What a source's manifest ``inputs`` stand for: the list of files to download.

Why: the manifest names inputs compactly — templates over languages, sites or numbered ranges, text
files of URLs, CommonCrawl-style ``*.paths.gz`` lists, bucket listings (arXiv's S3 manifest, a GCS
prefix: ``ingest.listings``), local globs and folders — and each form must become the same thing, a
list of :class:`~ingest.download.DownloadItem`, before anything is fetched. Lists and listings are
read from upstream or from the mirror (``ingest.mirror``); the URLs found in them are upstream URLs,
mapped to the mirror again when fetched. ``max_files`` (``--max-files``) keeps the first N files of
each entry that stands for several: a path list, a numbered template, a language or site list, a URL
list, a listing. Malformed entries fail here, with a one-line ``ValueError``, before any transfer starts.
"""

from __future__ import annotations

import glob
import gzip
import io
import logging
import re
import urllib.parse
from pathlib import Path
from typing import Any, BinaryIO, Iterable

from ingest.download import DownloadError, DownloadItem, download_all, local_path, read_small
from ingest.listings import arxiv_manifest_items, gcs_listing_items
from ingest.mirror import Mirror, scheme_of
from ingest.resumable_http import PermanentFailure

log = logging.getLogger(__name__)

MAX_LIST_BYTES = 256 << 20  # a path list (CommonCrawl's wet.paths.gz: ~10 MB unpacked) beyond this is bogus
MAX_LIST_LINES = 1_000_000  # ... and its lines (a crawl's wet.paths.gz: ~100,000): short lines add up in memory
ENTRY_KEYS = frozenset({"url", "sha256", "name", "base_url", "max_files"})
# entries that stand for several files, by their defining key -> the keys they may have
LIST_KINDS = {
    "url_template": {"url_template", "lang_list", "site_list", "max_files"},
    "paths": {"paths", "base_url", "max_files", "sha256", "name"},
    "url_list": {"url_list", "max_files"},
    "arxiv_manifest": {"arxiv_manifest", "max_files"},
    "gcs_listing": {"gcs_listing", "max_files"},
}
REMOTE_SCHEMES = ("http", "https", "s3")
_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_PASSTHROUGH = ("sha256", "name", "base_url", "max_files")
_SITE_FILES = {"stackoverflow.com": "stackoverflow.com-Posts"}


# ----------------------------------------------------------------------------------------------
# manifest inputs -> entries (templates, URL lists, listings)


def manifest_items(entries: list[Any], repo_root: Path, lists_dir: Path, *, max_files: int | None = None,
                   retries: int = 5, backoff: float = 0.5, timeout: float = 60,
                   mirror: Mirror | None = None) -> list[DownloadItem]:
    """A source's manifest inputs -> the items to download. ``{url_list: ...}`` files and arXiv
    manifests are fetched into ``lists_dir`` first (kept, so a rerun lists the same files); GCS
    listings are read page by page; ``max_files`` caps every entry that stands for several files."""
    mirror = mirror or Mirror()
    plain: list[Any] = []
    for entry in normalise_entries(entries, max_files):
        kind = next((k for k in ("url_list", "arxiv_manifest", "gcs_listing") if isinstance(entry, dict) and k in entry), None)
        if kind == "url_list":
            plain.extend(_url_list(entry["url_list"], repo_root, lists_dir, entry.get("max_files"), mirror, retries))
        elif kind == "arxiv_manifest":
            url = entry["arxiv_manifest"]
            path = _fetch_list(url, "arXiv manifest", repo_root, lists_dir, mirror, retries)
            if path.stat().st_size > MAX_LIST_BYTES:  # the real one is a few MB
                raise DownloadError(f"arXiv manifest {url} is larger than {MAX_LIST_BYTES >> 20} MiB")
            plain.extend(arxiv_manifest_items(url, path.read_bytes(), entry.get("max_files")))
        elif kind == "gcs_listing":
            def read(url: str) -> bytes:
                try:
                    return read_small(url, MAX_LIST_BYTES, mirror=mirror, retries=retries, backoff=backoff, timeout=timeout)
                except PermanentFailure as e:
                    raise DownloadError(f"cannot fetch GCS listing {url}: {e}") from None
            plain.extend(gcs_listing_items(entry["gcs_listing"], read, entry.get("max_files")))
        else:
            plain.append(entry)
    return expand_items(plain, repo_root, retries=retries, backoff=backoff, timeout=timeout, mirror=mirror)


def _fetch_list(url: str, what: str, repo_root: Path, lists_dir: Path, mirror: Mirror, retries: int) -> Path:
    """A list file (URL list, arXiv manifest) fetched like any download into ``lists_dir``."""
    lst = download_all(expand_items([url], repo_root), lists_dir, progress=False, mirror=mirror, retries=retries)[0]
    if not lst.ok:
        raise DownloadError(f"{what} {url}: {lst.reason}")
    return lst.path


def _url_list(url: str, repo_root: Path, lists_dir: Path, max_files: int | None, mirror: Mirror,
              retries: int = 5) -> list[str]:
    """The URLs of a text file of URLs (one a line, ``#`` comments), fetched like any download and read
    under the same caps as a path list. A list read from the network may only name remote files (never a
    path on this machine)."""
    path = _fetch_list(url, "URL list", repo_root, lists_dir, mirror, retries)
    try:
        with open(path, "rb") as f:
            urls = _list_lines(f, max_files or None, url, kind="URL list")
    except OSError as e:
        raise DownloadError(f"cannot read URL list {url}: {e.strerror or e}") from None
    if scheme_of(url) in REMOTE_SCHEMES:
        for u in urls:
            if scheme_of(u) not in REMOTE_SCHEMES:
                raise DownloadError(f"URL list {url}: {u[:200]!r} is not an http(s):// or s3:// URL")
    return urls


def _cap(entry: dict, max_files: int | None) -> int | None:
    """The smaller of the entry's own ``max_files`` and the stage's (0 or absent: no cap)."""
    own = entry.get("max_files")
    if own is not None and (not isinstance(own, int) or isinstance(own, bool) or own < 0):
        raise ValueError(f"max_files must be a non-negative integer in download entry {entry!r}")
    caps = [c for c in (own, max_files) if c]
    return min(caps) if caps else None


def _expand_template(entry: dict[str, Any], cap: int | None = None) -> list[Any]:
    """A ``url_template`` entry -> its URLs: one per language, per site, or per number of a
    ``{00..99}`` range; the first ``cap`` of them."""
    template = entry["url_template"]
    if not isinstance(template, str):
        raise ValueError(f"download entry {entry!r}: url_template must be a string")
    if "lang_list" in entry:
        urls = [_format(template, entry, lang=x) for x in _names(entry, "lang_list")]
    elif "site_list" in entry:
        sites = entry["site_list"]
        if sites == "largest28":
            from ingest.stackexchange import LARGEST_SITES

            sites = list(LARGEST_SITES)
        # the dump ships Stack Overflow split by table; its questions and answers are in -Posts.7z
        urls = [_format(template, entry, site=_SITE_FILES.get(x, x)) for x in _names({"site_list": sites}, "site_list")]
    else:
        m = _RANGE.search(template)
        if m:
            lo, hi, width = int(m.group(1)), int(m.group(2)), len(m.group(1))
            last = min(hi, lo + cap - 1) if cap else hi  # never build a million URLs to keep one
            urls = [template[: m.start()] + str(i).zfill(width) + template[m.end() :] for i in range(lo, last + 1)]
        else:
            urls = [template]
    return urls[:cap] if cap else urls


def _names(entry: dict, key: str) -> list[str]:
    names = entry[key]
    if not isinstance(names, list) or not all(isinstance(x, str) and x for x in names):
        raise ValueError(f"download entry: {key} must be a list of names or 'largest28', got {names!r}")
    return names


def _format(template: str, entry: dict, **values: str) -> str:
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"download entry {entry.get('url_template')!r}: cannot fill the template ({e})") from None


def normalise_entries(entries: list[Any], max_files: int | None = None) -> list[Any]:
    """Manifest input entries -> entries ``expand_items`` accepts (strings, {url, ...} dicts) and the
    listing entries ``manifest_items`` reads; ``max_files`` capping each entry of several files."""
    out: list[Any] = []
    for entry in entries:
        if isinstance(entry, str):
            out.append(entry)
            continue
        if not isinstance(entry, dict):
            raise ValueError(f"download entry must be a string or a mapping, got {entry!r}")
        kind = next((k for k in LIST_KINDS if k in entry), None)
        if kind is not None:
            unknown = sorted(set(entry) - LIST_KINDS[kind])
            if unknown:
                raise ValueError(f"unknown key(s) {unknown} in {kind} entry {entry!r}; allowed: {sorted(LIST_KINDS[kind])}")
            cap = _cap(entry, max_files)
        if kind == "url_template":
            out.extend(_expand_template(entry, cap))
        elif kind == "paths":
            spec = {"url": entry["paths"], **{k: entry[k] for k in _PASSTHROUGH if k in entry}}
            if cap:
                spec["max_files"] = cap
            out.append(spec)
        elif kind in ("url_list", "arxiv_manifest", "gcs_listing"):
            url = entry[kind]
            if not isinstance(url, str) or not url.strip():
                raise ValueError(f"download entry {entry!r}: {kind} must be a URL or a path")
            url = url.strip()
            if kind == "arxiv_manifest" and scheme_of(url) not in ("s3", "http", "https", "", "file"):
                raise ValueError(f"download entry {entry!r}: arxiv_manifest is an s3://, http(s):// URL or a path")
            if kind == "gcs_listing" and scheme_of(url) != "gs":
                raise ValueError(f"download entry {entry!r}: gcs_listing is a gs://BUCKET/PREFIX URL")
            out.append({kind: url, "max_files": cap})
        elif "url" in entry:
            url = entry["url"]
            scheme = scheme_of(url) if isinstance(url, str) else ""
            if scheme == "gs":
                raise ValueError(f"download entry {url!r}: list a gs:// bucket with {{gcs_listing: {url!r}}}")
            if scheme == "s3" and url.endswith("/"):
                raise ValueError(f"download entry {url!r}: an s3:// folder is not a file; name an object, or list "
                                 f"arXiv's bulk sources with {{arxiv_manifest: s3://arxiv/src/arXiv_src_manifest.xml}}")
            if scheme not in ("", "file", "http", "https", "s3"):
                raise ValueError(f"download entry {url!r}: {scheme}:// is not fetched by llamix (http(s)://, s3://, "
                                 "gs:// listings and local paths are)")
            out.append({k: v for k, v in entry.items() if k in ("url", *_PASSTHROUGH)})
        else:
            raise ValueError(f"download entry {entry!r}: needs url, paths, url_list, url_template, arxiv_manifest or gcs_listing")
    return out


# ----------------------------------------------------------------------------------------------
# entries -> items


def expand_items(entries: Iterable[str | dict | DownloadItem], repo_root: Path, *, retries: int = 5,
                 backoff: float = 0.5, timeout: float = 60, mirror: Mirror | None = None) -> list[DownloadItem]:
    """Turn manifest ``download`` entries into concrete items.

    An entry is a URL/path string, a dict ``{url, sha256?, name?, base_url?, max_files?}``, or an item
    already (from a listing):
    - ``http(s)://...``, ``s3://BUCKET/KEY``: one item;
    - ``*.paths.gz`` / ``*.paths`` (URL or local): a list of relative paths (CommonCrawl's
      ``wet.paths.gz``) joined to ``base_url`` (default: the list's own origin), first ``max_files``;
      read from ``mirror`` when one is given;
    - local path relative to ``repo_root`` or ``file://`` URL: a file, a glob (``data/x/*.gz``) or a
      directory (all regular files, recursively, under ``name`` or the directory's own name).
    A local path that matches nothing stays an item and fails at download as ``not_found``.
    Malformed entries raise ``ValueError`` with a one-line message.
    """
    items: list[DownloadItem] = []
    for entry in entries:
        if isinstance(entry, DownloadItem):
            items.append(entry)
            continue
        spec = _entry_spec(entry)
        url = spec["url"]
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if _is_path_list(url):
            items.extend(_expand_path_list(spec, repo_root, retries, backoff, timeout, mirror))
        elif scheme in REMOTE_SCHEMES:
            _reject_list_keys(spec)
            items.append(DownloadItem(url, spec.get("sha256"), spec.get("name")))
        elif scheme in ("", "file"):
            _reject_list_keys(spec)
            items.extend(_expand_local(spec, repo_root))
        else:
            raise ValueError(f"unsupported URL scheme {scheme!r} in download entry {url!r}")
    return items


def _entry_spec(entry: str | dict) -> dict:
    if isinstance(entry, str):
        entry = {"url": entry}
    if not isinstance(entry, dict):
        raise ValueError(f"download entry must be a string or a mapping, got {type(entry).__name__}")
    unknown = sorted(set(entry) - ENTRY_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in download entry {entry!r}; allowed: {sorted(ENTRY_KEYS)}")
    if not isinstance(entry.get("url"), str) or not entry["url"].strip():
        raise ValueError(f"download entry {entry!r} has no 'url'")
    max_files = entry.get("max_files")
    if max_files is not None and (not isinstance(max_files, int) or isinstance(max_files, bool) or max_files < 0):
        raise ValueError(f"max_files must be a non-negative integer in download entry {entry!r}")
    return {**entry, "url": entry["url"].strip()}


def _reject_list_keys(spec: dict) -> None:
    if "base_url" in spec or "max_files" in spec:
        raise ValueError(f"base_url/max_files only apply to *.paths(.gz) lists, not {spec['url']!r}")


def _is_path_list(url: str) -> bool:
    path = urllib.parse.urlsplit(url).path if "://" in url else url
    return path.endswith((".paths.gz", ".paths"))


def _expand_path_list(spec: dict, repo_root: Path, retries: int, backoff: float,
                      timeout: float, mirror: Mirror | None = None) -> list[DownloadItem]:
    url = spec["url"]
    if spec.get("sha256") or spec.get("name"):
        raise ValueError(f"sha256/name cannot apply to the many files of path list {url!r}")
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    base = spec.get("base_url")
    if scheme in REMOTE_SCHEMES:
        try:
            raw = read_small(url, MAX_LIST_BYTES, mirror=mirror, retries=retries, backoff=backoff, timeout=timeout)
        except PermanentFailure as e:
            raise DownloadError(f"cannot fetch path list {url}: {e}") from None
        if scheme != "s3":
            base = base or "{0.scheme}://{0.netloc}/".format(urllib.parse.urlsplit(url))
    else:
        path = local_path(url, repo_root)
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise DownloadError(f"cannot read path list {path}: {e.strerror or e}") from None
    paths = _list_lines(io.BytesIO(raw), spec.get("max_files"), url)
    items = []
    for p in paths:
        if scheme_of(p) in REMOTE_SCHEMES:
            items.append(DownloadItem(p))
        elif not base:
            raise ValueError(f"path list {url!r} holds relative paths: give it a base_url")
        else:
            items.append(DownloadItem(base.rstrip("/") + "/" + p.lstrip("/")))
    return items


def _list_lines(raw: BinaryIO, limit: int | None, url: str, kind: str = "path list") -> list[str]:
    """The first ``limit`` non-blank, non-# lines of a (gzipped) list, reading no more than needed and
    never more than MAX_LIST_BYTES decompressed nor MAX_LIST_LINES lines (a gzip bomb, or millions of
    short lines, is a one-line error naming the list, not an out-of-memory)."""
    raw = io.BufferedReader(raw) if not hasattr(raw, "peek") else raw
    stream = gzip.GzipFile(fileobj=raw) if raw.peek(2)[:2] == b"\x1f\x8b" else raw
    lines: list[str] = []
    seen = count = 0
    try:
        while limit is None or len(lines) < limit:
            line = stream.readline(1 << 16)
            if not line:
                return lines
            seen += len(line)
            count += 1
            if seen > MAX_LIST_BYTES:
                raise DownloadError(f"{kind} {url} is larger than {MAX_LIST_BYTES >> 20} MiB decompressed")
            if count > MAX_LIST_LINES:
                raise DownloadError(f"{kind} {url} has more than {MAX_LIST_LINES:,} lines (set max_files to read "
                                    f"only its first ones)")
            text = line.decode("utf-8").strip()
            if text and not text.startswith("#"):
                lines.append(text)
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DownloadError(f"{kind} {url} is not valid (gzipped) UTF-8 text: {e}") from None
    return lines


def _expand_local(spec: dict, repo_root: Path) -> list[DownloadItem]:
    url, name, sha = spec["url"], spec.get("name"), spec.get("sha256")
    path = local_path(url, repo_root).absolute()
    if glob.has_magic(str(path)):
        matches = [Path(m) for m in sorted(glob.glob(str(path), recursive=True))]
        if not matches:
            return [DownloadItem(path.as_uri(), sha, name)]  # fails later as not_found, counted
        if sha:
            raise ValueError(f"sha256 cannot apply to the many files of glob {url!r}")
        root = _glob_root(path)
        items = []
        for m in matches:
            if _leaves(m, root):
                continue
            sub = f"{name}/{m.name}" if name else m.name
            items.extend(_dir_items(m, sub) if m.is_dir() else [DownloadItem(m.as_uri(), None, sub)])
        return items
    if path.is_dir():
        if sha:
            raise ValueError(f"sha256 cannot apply to directory {url!r}")
        return _dir_items(path, name or path.name)
    return [DownloadItem(path.as_uri(), sha, name)]


def _glob_root(pattern: Path) -> Path:
    """The folder a glob searches: its components before the first one with a wildcard."""
    parts = pattern.parts
    for i, part in enumerate(parts):
        if glob.has_magic(part):
            return Path(*parts[:i])
    return pattern.parent


def _leaves(match: Path, root: Path) -> bool:
    """True (and logged) when a glob match is a symlink, or reached through one, so that copying it
    would follow a link: refused, as in folders and in extraction (a link to /etc/passwd must not
    end up in out/)."""
    inside = match.relative_to(root)
    for k in range(1, len(inside.parts) + 1):
        step = root.joinpath(*inside.parts[:k])
        if step.is_symlink():
            log.warning("download: skipping %s: %s is a symlink (symlinks are not followed)", match, step)
            return True
    return False


def _dir_items(directory: Path, prefix: str) -> list[DownloadItem]:
    """All regular files under ``directory`` (sorted), named ``prefix/<relative path>``.
    Symlinks are skipped (logged): following them could copy files from outside the source tree."""
    items = []
    for p in sorted(directory.rglob("*")):
        if p.is_symlink():
            log.warning("download: skipping symlink %s (symlinks are not followed)", p)
        elif p.is_file():
            items.append(DownloadItem(p.absolute().as_uri(), None, f"{prefix}/{p.relative_to(directory).as_posix()}"))
    return items
