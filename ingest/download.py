"""Download stage: bring manifest sources (http(s)://, file://, local paths) under out/<profile>/download/.

Why: every later stage reads local files, so this is the only stage that touches the network, and it
has to be the robust one. Transfers stream into ``NAME.part`` and are renamed only once complete and
verified (sha256 when the manifest gives one), so a half-written file is never passed on. Dropped
connections are retried with exponential backoff + jitter and resumed with an HTTP Range request
(206 appends; 200 means the server ignored the range, so the part is discarded and rewritten).
A ``.done/NAME.done.json`` sidecar (kept in a hidden tree beside the downloads, so that a repository
folder contains only the repository's files) records url/size/sha256 of each finished file, so a rerun downloads
nothing. Names derived from URLs or manifests are sanitised and never resolve outside ``dest_dir``.
Every item ends as exactly one :class:`DownloadResult` (ok, or failed with a one-line ``reason`` of
the form ``kind: detail``), so the stage accounts for every input (see :func:`summarize`).
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import http.client
import io
import json
import logging
import os
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from tqdm import tqdm

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
PART_SUFFIX = ".part"
DONE_SUFFIX = ".done.json"
MAX_BACKOFF_S = 60.0
MAX_LIST_BYTES = 256 << 20  # a path list (CommonCrawl's wet.paths.gz: ~10 MB unpacked) beyond this is bogus
USER_AGENT = "llamix-download/1.0"
ENTRY_KEYS = frozenset({"url", "sha256", "name", "base_url", "max_files"})
PERMANENT_HTTP_KIND = {401: "permission_denied", 403: "permission_denied", 404: "not_found", 410: "gone"}
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class DownloadError(RuntimeError):
    """A one-line, user-facing failure (e.g. a path list that cannot be fetched)."""


@dataclass
class DownloadItem:
    """One file to fetch. ``name`` is the destination file name or sub-path inside ``dest_dir``
    (default: the last component of the URL path)."""

    url: str
    sha256: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.sha256 is not None:
            digest = self.sha256.strip().lower().removeprefix("sha256:")
            if not _SHA256_RE.match(digest):
                raise ValueError(f"invalid sha256 {self.sha256!r} for {self.url}: expected 64 hex digits")
            self.sha256 = digest


@dataclass
class DownloadResult:
    """Outcome of one item. ``bytes`` counts bytes transferred by this call (0 when the file was
    already complete); ``attempts`` is the number of requests/copies made (0 when skipped)."""

    item: DownloadItem
    path: Path | None
    ok: bool
    reason: str | None
    bytes: int
    resumed: bool
    attempts: int


class _Permanent(Exception):
    """A failure retrying cannot fix; ``str()`` is the one-line ``kind: detail`` reason."""


class _Transient(Exception):
    """A failure worth retrying (dropped connection, timeout, 5xx, 429)."""

    def __init__(self, message: str, retry_after: float | None = None, kind: str = "network"):
        super().__init__(message)
        self.retry_after = retry_after
        self.kind = kind  # the reason kind reported if retries run out


@dataclass
class _Transfer:
    """What one item's attempts have learnt so far (shared across its retries)."""

    attempts: int = 0
    received: int = 0
    resumed: bool = False
    validator: str | None = None


class _Progress:
    """One thread-safe tqdm bar over all files; its total grows as sizes become known."""

    def __init__(self, enabled: bool, n_files: int):
        self._lock = threading.Lock()
        self._bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, mininterval=0.5,
                         desc=f"download ({n_files} files)", disable=not enabled)

    def add_total(self, n: int) -> None:
        with self._lock:
            self._bar.total += n
            self._bar.refresh()

    def update(self, n: int) -> None:
        with self._lock:
            self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


# ----------------------------------------------------------------------------------------------
# manifest entries -> items


def expand_items(entries: Iterable[str | dict], repo_root: Path, *, retries: int = 5,
                 backoff: float = 0.5, timeout: float = 60) -> list[DownloadItem]:
    """Turn manifest ``download`` entries into concrete items.

    An entry is a URL/path string or a dict ``{url, sha256?, name?, base_url?, max_files?}``:
    - ``http(s)://...``: one item;
    - ``*.paths.gz`` / ``*.paths`` (URL or local): a list of relative paths (CommonCrawl's
      ``wet.paths.gz``) joined to ``base_url`` (default: the list's own origin), first ``max_files``;
    - local path relative to ``repo_root`` or ``file://`` URL: a file, a glob (``data/x/*.gz``) or a
      directory (all regular files, recursively, under ``name`` or the directory's own name).
    A local path that matches nothing stays an item and fails at download as ``not_found``.
    Malformed entries raise ``ValueError`` with a one-line message.
    """
    items: list[DownloadItem] = []
    for entry in entries:
        spec = _entry_spec(entry)
        url = spec["url"]
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if _is_path_list(url):
            items.extend(_expand_path_list(spec, repo_root, retries, backoff, timeout))
        elif scheme in ("http", "https"):
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


def _local_path(url: str, repo_root: Path | None = None) -> Path:
    if url.lower().startswith("file:"):
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
    else:
        path = Path(url)
    if not path.is_absolute() and repo_root is not None:
        path = Path(repo_root) / path
    return path


def _expand_path_list(spec: dict, repo_root: Path, retries: int, backoff: float,
                      timeout: float) -> list[DownloadItem]:
    url = spec["url"]
    if spec.get("sha256") or spec.get("name"):
        raise ValueError(f"sha256/name cannot apply to the many files of path list {url!r}")
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    base = spec.get("base_url")
    if scheme in ("http", "https"):
        raw = _fetch_small(url, retries, backoff, timeout)
        base = base or "{0.scheme}://{0.netloc}/".format(urllib.parse.urlsplit(url))
    else:
        path = _local_path(url, repo_root)
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise DownloadError(f"cannot read path list {path}: {e.strerror or e}") from None
    paths = _list_lines(raw, spec.get("max_files"), url)
    items = []
    for p in paths:
        if _is_http(p):
            items.append(DownloadItem(p))
        elif not base:
            raise ValueError(f"path list {url!r} holds relative paths: give it a base_url")
        else:
            items.append(DownloadItem(base.rstrip("/") + "/" + p.lstrip("/")))
    return items


def _list_lines(raw: bytes, limit: int | None, url: str) -> list[str]:
    """The first ``limit`` non-blank, non-# lines of a (gzipped) list, reading no more than needed and
    never more than MAX_LIST_BYTES decompressed (a gzip bomb is an error, not an out-of-memory)."""
    stream = gzip.GzipFile(fileobj=io.BytesIO(raw)) if raw[:2] == b"\x1f\x8b" else io.BytesIO(raw)
    lines: list[str] = []
    seen = 0
    try:
        while limit is None or len(lines) < limit:
            line = stream.readline(1 << 16)
            if not line:
                return lines
            seen += len(line)
            if seen > MAX_LIST_BYTES:
                raise DownloadError(f"path list {url} is larger than {MAX_LIST_BYTES >> 20} MiB decompressed")
            text = line.decode("utf-8").strip()
            if text and not text.startswith("#"):
                lines.append(text)
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DownloadError(f"path list {url} is not valid (gzipped) UTF-8 text: {e}") from None
    return lines


def _fetch_small(url: str, retries: int, backoff: float, timeout: float) -> bytes:
    """Fetch a small resource (a path list) into memory, with the same retry policy as downloads."""

    def attempt() -> bytes:
        with _open_http(url, {}, timeout) as resp:
            try:
                data = resp.read(MAX_LIST_BYTES + 1)
            except (OSError, http.client.HTTPException) as e:
                raise _Transient(f"read failed: {_describe(e)}") from None
        if len(data) > MAX_LIST_BYTES:
            raise _Permanent(f"too_large: more than {MAX_LIST_BYTES >> 20} MiB")
        return data

    try:
        return _retrying(attempt, _Transfer(), retries, backoff, url)
    except _Permanent as e:
        raise DownloadError(f"cannot fetch path list {url}: {e}") from None


def _expand_local(spec: dict, repo_root: Path) -> list[DownloadItem]:
    url, name, sha = spec["url"], spec.get("name"), spec.get("sha256")
    path = _local_path(url, repo_root).absolute()
    if glob.has_magic(str(path)):
        matches = [Path(m) for m in sorted(glob.glob(str(path), recursive=True))]
        if not matches:
            return [DownloadItem(path.as_uri(), sha, name)]  # fails later as not_found, counted
        if sha:
            raise ValueError(f"sha256 cannot apply to the many files of glob {url!r}")
        items = []
        for m in matches:
            sub = f"{name}/{m.name}" if name else m.name
            items.extend(_dir_items(m, sub) if m.is_dir() else [DownloadItem(m.as_uri(), None, sub)])
        return items
    if path.is_dir():
        if sha:
            raise ValueError(f"sha256 cannot apply to directory {url!r}")
        return _dir_items(path, name or path.name)
    return [DownloadItem(path.as_uri(), sha, name)]


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


# ----------------------------------------------------------------------------------------------
# items -> files


def download_all(items: Iterable[DownloadItem], dest_dir: Path, *, max_concurrency: int = 4,
                 retries: int = 5, backoff: float = 0.5, timeout: float = 60,
                 progress: bool = True) -> list[DownloadResult]:
    """Fetch every item into ``dest_dir`` with at most ``max_concurrency`` transfers at once.

    ``retries`` is the number of extra attempts after the first for transient failures (so at most
    ``retries + 1`` requests per file); the wait before retry k is ``backoff * 2**(k-1)`` seconds
    (capped at 60 s) times a random jitter in [0.5, 1]. Returns one result per item, in input order.
    """
    items = list(items)
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
    if retries < 0 or backoff < 0:
        raise ValueError("retries and backoff must be >= 0")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)

    results: list[DownloadResult | None] = [None] * len(items)
    targets: dict[Path, int] = {}
    todo: list[tuple[int, Path]] = []
    for i, item in enumerate(items):
        try:
            target = _safe_target(dest_dir, _dest_name(item))
        except _Permanent as e:
            results[i] = _failed(item, str(e), _Transfer())
            continue
        if target in targets:
            first = items[targets[target]].url
            results[i] = _failed(item, f"duplicate_name: {target.relative_to(dest_dir)} is also the "
                                       f"destination of {first}", _Transfer())
            continue
        targets[target] = i
        if _is_complete(item, target, _sidecar(dest_dir, target)):
            results[i] = DownloadResult(item, target, True, None, 0, False, 0)
        else:
            todo.append((i, target))

    bar = _Progress(progress, len(items))
    bar.add_total(sum(_local_size(items[i]) for i, _ in todo))  # http sizes join as responses arrive
    try:
        with ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="download") as pool:
            futures = {i: pool.submit(_download_one, items[i], target, retries, backoff, timeout, bar,
                                      _sidecar(dest_dir, target))
                       for i, target in todo}
            for i, fut in futures.items():
                results[i] = fut.result()
    finally:
        bar.close()
    return results  # type: ignore[return-value]


def summarize(results: list[DownloadResult]) -> dict:
    """Stage accounting: ``in == ok + sum(excluded.values())``; excluded keyed by reason kind."""
    excluded: dict[str, int] = {}
    for r in results:
        if not r.ok:
            kind = (r.reason or "unknown").split(":", 1)[0]
            excluded[kind] = excluded.get(kind, 0) + 1
    ok = [r for r in results if r.ok]
    return {
        "in": len(results),
        "ok": len(ok),
        "downloaded": sum(1 for r in ok if r.attempts > 0),
        "skipped_complete": sum(1 for r in ok if r.attempts == 0),
        "resumed": sum(1 for r in ok if r.resumed),
        "bytes": sum(r.bytes for r in results),
        "excluded": excluded,
    }


def _download_one(item: DownloadItem, target: Path, retries: int, backoff: float, timeout: float,
                  bar: _Progress, sidecar: Path) -> DownloadResult:
    state = _Transfer()
    part = target.with_name(target.name + PART_SUFFIX)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if _is_http(item.url):
            def attempt() -> str:
                _http_attempt(item, part, state, timeout, bar)
                return _verify(item, part, state)
            digest = _retrying(attempt, state, retries, backoff, item.url)
        else:
            _copy_local(item, part, state, bar)
            digest = _verify(item, part, state)
        _commit(item, part, target, digest, sidecar)
        return DownloadResult(item, target, True, None, state.received, state.resumed, state.attempts)
    except _Permanent as e:
        if not str(e).startswith("network:"):  # keep a part only where a later run can resume it
            part.unlink(missing_ok=True)
        return _failed(item, str(e), state)
    except OSError as e:  # local disk trouble: full disk, permissions on dest_dir, ...
        return _failed(item, f"local_io: {_describe(e)} while writing {target}", state)
    except Exception as e:  # one bad item must not sink the batch; keep it counted and one line
        return _failed(item, f"error: {type(e).__name__}: {e}", state)


def _failed(item: DownloadItem, reason: str, state: _Transfer) -> DownloadResult:
    reason = " ".join(reason.split())  # guarantee one line
    log.info("download failed: %s", reason)  # the caller reports results; avoid a second copy at WARNING
    return DownloadResult(item, None, False, reason, state.received, state.resumed, state.attempts)


def _retrying(action: Callable, state: _Transfer, retries: int, backoff: float, what: str):
    """Run ``action`` until it succeeds, raises ``_Permanent``, or transient failures exceed ``retries``."""
    while True:
        state.attempts += 1
        try:
            return action()
        except _Transient as e:
            if state.attempts > retries:
                raise _Permanent(f"{e.kind}: {e} for {what} (gave up after {state.attempts} attempts)") from None
            delay = min(MAX_BACKOFF_S, backoff * 2 ** (state.attempts - 1)) * random.uniform(0.5, 1.0)
            if e.retry_after is not None:
                delay = max(delay, min(MAX_BACKOFF_S, e.retry_after))
            log.info("download: %s for %s; retry %d/%d in %.2fs", e, what, state.attempts, retries, delay)
            time.sleep(delay)


def _open_http(url: str, headers: dict, timeout: float) -> http.client.HTTPResponse:
    """Open a GET; classify errors into _Permanent (4xx like 404/410/403) or _Transient."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers})
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        detail = f"HTTP {e.code} {e.reason} for {url}"
        if e.code == 429 or e.code >= 500:
            retry_after = e.headers.get("Retry-After", "") if e.headers else ""
            raise _Transient(detail, float(retry_after) if retry_after.isdigit() else None) from None
        if e.code == 416 and "Range" in headers:
            raise  # our part is at least as long as the file; the caller decides
        raise _Permanent(f"{PERMANENT_HTTP_KIND.get(e.code, 'http_error')}: {detail}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        raise _Transient(_describe(reason)) from None


def _http_attempt(item: DownloadItem, part: Path, state: _Transfer, timeout: float, bar: _Progress) -> None:
    """One GET into ``part``: resumes it with Range when it holds bytes; raises on failure."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if state.validator:
            headers["If-Range"] = state.validator
    try:
        resp = _open_http(item.url, headers, timeout)
    except urllib.error.HTTPError as e:  # 416: our part is as long as (or longer than) the file
        total = _content_range(e.headers.get("Content-Range") if e.headers else None)[2]
        if total == offset:
            state.resumed = True
            return  # the part already holds every byte (e.g. killed before the rename); verify it
        part.unlink(missing_ok=True)
        raise _Transient(f"HTTP 416 for a range from byte {offset}; starting over") from None
    with resp:
        if resp.status == 206:
            start, _, _ = _content_range(resp.headers.get("Content-Range"))
            if start != offset:
                part.unlink(missing_ok=True)
                raise _Transient(f"server resumed at byte {start}, expected {offset}; starting over")
        else:  # 200 (server ignored or refused the range): rewrite from the start
            if offset:
                log.info("download: %s ignored Range; restarting from byte 0", item.url)
            offset = 0
        state.resumed = offset > 0
        etag = resp.headers.get("ETag")
        state.validator = etag if etag and not etag.startswith("W/") else resp.headers.get("Last-Modified")
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        bar.add_total(expected or 0)
        got = 0
        with open(part, "ab" if offset else "wb") as f:
            while True:
                try:
                    chunk = resp.read1(CHUNK_BYTES)  # returns what has arrived: a stall keeps it
                except (OSError, http.client.HTTPException) as e:
                    bar.add_total(got - (expected or got))
                    raise _Transient(f"connection lost after byte {offset + got}: {_describe(e)}") from None
                if not chunk:
                    break
                f.write(chunk)
                got += len(chunk)
                state.received += len(chunk)
                bar.update(len(chunk))
        if expected is not None and got < expected:
            bar.add_total(got - expected)
            raise _Transient(f"connection closed after byte {offset + got} of {offset + expected}")


def _copy_local(item: DownloadItem, part: Path, state: _Transfer, bar: _Progress) -> None:
    """Stream a local file (plain path or file:// URL) into ``part``; local errors are not retried."""
    src = _local_path(item.url)
    state.attempts += 1
    if not src.exists():
        raise _Permanent(f"not_found: no such file {src}")
    if not src.is_file():
        raise _Permanent(f"not_found: {src} is not a regular file")
    try:
        fin = open(src, "rb")
    except PermissionError:
        raise _Permanent(f"permission_denied: cannot read {src}") from None
    with fin, open(part, "wb") as fout:
        while chunk := fin.read(CHUNK_BYTES):
            fout.write(chunk)
            state.received += len(chunk)
            bar.update(len(chunk))


def _verify(item: DownloadItem, part: Path, state: _Transfer) -> str:
    """sha256 of ``part``, checked against the manifest's. A mismatch deletes the part: corrupt bytes
    are never passed on. It fails for good, unless the part was resumed (its head may come from an
    older version of the file), in which case one clean download from byte 0 is worth a retry."""
    digest = _sha256_file(part)
    if item.sha256 and digest != item.sha256:
        part.unlink(missing_ok=True)
        detail = f"sha256 mismatch for {item.url}: expected {item.sha256}, got {digest}"
        if state.resumed:
            state.resumed = False
            raise _Transient(detail + " (resumed file; starting over)", kind="checksum")
        raise _Permanent(f"checksum: {detail}")
    return digest


DONE_DIR = ".done"


def _sidecar(dest_dir: Path, target: Path) -> Path:
    """Where the ``.done.json`` record of ``target`` lives: a hidden mirror tree under ``dest_dir``."""
    rel = target.relative_to(dest_dir)
    return dest_dir / DONE_DIR / rel.parent / (rel.name + DONE_SUFFIX)


def _commit(item: DownloadItem, part: Path, target: Path, digest: str, sidecar_path: Path) -> None:
    """Rename the verified ``part`` into place, then record it in the ``.done.json`` sidecar."""
    size = part.stat().st_size
    os.replace(part, target)
    sidecar = {"url": item.url, "size": size, "sha256": digest}
    sidecar_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = sidecar_path.with_name(sidecar_path.name + ".tmp")
    tmp.write_text(json.dumps(sidecar, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, sidecar_path)


def _is_complete(item: DownloadItem, target: Path, sidecar_path: Path) -> bool:
    """True when ``target`` was finished by an earlier run for the same url (and sha256, if given)."""
    try:
        done = json.loads(sidecar_path.read_text(encoding="utf-8"))
        return (done["url"] == item.url and target.is_file() and target.stat().st_size == done["size"]
                and (item.sha256 is None or item.sha256 == done["sha256"]))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _is_http(url: str) -> bool:
    return urllib.parse.urlsplit(url).scheme.lower() in ("http", "https")


def _local_size(item: DownloadItem) -> int:
    """Size of a local source (0 for http items or unreadable paths: those report their own errors)."""
    if _is_http(item.url):
        return 0
    try:
        return _local_path(item.url).stat().st_size
    except OSError:
        return 0


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def _dest_name(item: DownloadItem) -> str:
    """The manifest's name, else the URL's last path component (percent-decoded, separators replaced)."""
    if item.name is not None:
        return item.name
    last = urllib.parse.urlsplit(item.url).path.rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"[/\\\x00-\x1f]", "_", urllib.parse.unquote(last))
    if name in ("", ".", ".."):
        name = "download-" + hashlib.sha256(item.url.encode()).hexdigest()[:16]
    return name


def _safe_target(dest_dir: Path, name: str) -> Path:
    """``dest_dir/name`` if it stays inside ``dest_dir`` (no '..', absolute paths or symlink escapes)."""
    unsafe = f"unsafe_name: {name!r} would escape {dest_dir}"
    if not name or re.search(r"[\x00-\x1f]", name) or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise _Permanent(unsafe)
    parts = re.split(r"[/\\]", name)
    if ".." in parts:
        raise _Permanent(unsafe)
    parts = [p for p in parts if p not in ("", ".")]
    if not parts or parts[-1].endswith((PART_SUFFIX, DONE_SUFFIX, DONE_SUFFIX + ".tmp")):
        raise _Permanent(f"unsafe_name: {name!r} is empty or uses a reserved suffix")
    target = dest_dir.joinpath(*parts)
    if not target.resolve().is_relative_to(dest_dir.resolve()):
        raise _Permanent(unsafe)
    return target


def _content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """Parse ``bytes START-END/TOTAL`` or ``bytes */TOTAL`` into (start, end, total)."""
    m = re.match(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", value or "")
    if not m:
        return None, None, None
    start, end, total = (int(g) if g and g != "*" else None for g in m.groups())
    return start, end, total


def _describe(e: BaseException | str) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__
