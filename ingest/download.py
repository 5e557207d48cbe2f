"""The download client: fetch items (http(s)://, file://, local paths) into a folder, resumably and verified.

Why: every later stage reads local files, so this is the only code that touches the network, and it
has to be the robust one. Transfers stream into ``NAME.part`` and are renamed only once complete and
verified (sha256 when the manifest gives one), so a half-written file is never passed on. Dropped
connections are retried and resumed (``ingest.resumable_http``). A ``.done/NAME.done.json`` sidecar
(kept in a hidden tree beside the downloads, so that a repository folder contains only the
repository's files) records url/size/sha256 of each finished file, so a rerun downloads nothing.
Names derived from URLs or manifests are sanitised and never resolve outside ``dest_dir``.
Every item ends as exactly one :class:`DownloadResult` (ok, or failed with a one-line ``reason`` of
the form ``kind: detail``), so the stage accounts for every input (see :func:`summarize`).
Which items a manifest's entries stand for is worked out in ``ingest.download_entries``.
An item is named by its upstream URL (http(s)://, s3://, a local path); where its bytes are read is
that URL, or its copy in a mirror (``ingest.mirror``): the name, the sidecar's ``url`` and everything
downstream are the same either way. ``s3://`` is read with boto3 (``ingest.s3``: requester pays).
Listings give an expected ``size`` and ``md5`` (arXiv's manifest, GCS), checked like a ``sha256``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

from ingest import s3
from ingest.mirror import Mirror, MirrorError, scheme_of
from ingest.resumable_http import (
    CHUNK_BYTES, DEFAULT_DEADLINE_S, Deadline, PermanentFailure, TransferState, TransientFailure, describe, fetch_bytes,
    resume_get, retrying,
)
from storage.atomic import atomic_write_json

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
DONE_SUFFIX = ".done.json"
DONE_DIR = ".done"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_MD5_RE = re.compile(r"^[0-9a-f]{32}$")


class DownloadError(RuntimeError):
    """A one-line, user-facing failure (e.g. a path list that cannot be fetched)."""


@dataclass
class DownloadItem:
    """One file to fetch. ``name`` is the destination file name or sub-path inside ``dest_dir``
    (default: the last component of the URL path). ``md5`` and ``size`` are what a listing says the
    file is (checked like ``sha256``)."""

    url: str
    sha256: str | None = None
    name: str | None = None
    md5: str | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        if self.sha256 is not None:
            digest = self.sha256.strip().lower().removeprefix("sha256:")
            if not _SHA256_RE.match(digest):
                raise ValueError(f"invalid sha256 {self.sha256!r} for {self.url}: expected 64 hex digits")
            self.sha256 = digest
        if self.md5 is not None:
            digest = self.md5.strip().lower()
            if not _MD5_RE.match(digest):
                raise ValueError(f"invalid md5 {self.md5!r} for {self.url}: expected 32 hex digits")
            self.md5 = digest
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0):
            raise ValueError(f"invalid size {self.size!r} for {self.url}: expected a byte count")


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


def download_all(items: Iterable[DownloadItem], dest_dir: Path, *, max_concurrency: int = 4,
                 retries: int = 5, backoff: float = 0.5, timeout: float = 60,
                 deadline: float | None = DEFAULT_DEADLINE_S, progress: bool = True,
                 mirror: Mirror | None = None) -> list[DownloadResult]:
    """Fetch every item into ``dest_dir`` with at most ``max_concurrency`` transfers at once, each
    read from its URL or, with a ``mirror``, from the mirror's copy of it.

    ``retries`` is the number of extra attempts after the first for transient failures (so at most
    ``retries + 1`` requests per file); the wait before retry k is ``backoff * 2**(k-1)`` seconds
    (capped at 60 s) times a random jitter in [0.5, 1]. ``timeout`` bounds each network wait,
    ``deadline`` each http file's transfer, all attempts together (``None``: no limit); a file past
    it fails as ``deadline: ...`` and keeps its part, which a rerun resumes. Returns one result per
    item, in input order.
    """
    items = list(items)
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
    if retries < 0 or backoff < 0:
        raise ValueError("retries and backoff must be >= 0")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)

    results: list[DownloadResult | None] = [None] * len(items)
    todo: list[tuple[int, Path]] = []
    for i, (item, (target, refused)) in enumerate(zip(items, place_items(items, dest_dir))):
        if refused:
            results[i] = failed_result(item, refused)
            continue
        if _is_complete(item, target, _sidecar(dest_dir, target)):
            results[i] = DownloadResult(item, target, True, None, 0, False, 0)
        else:
            todo.append((i, target))

    bar = _Progress(progress, len(items))
    mirror = mirror or Mirror()
    bar.add_total(sum(_local_size(items[i], mirror) for i, _ in todo))  # remote sizes join as responses arrive
    try:
        with ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="download") as pool:
            futures = {i: pool.submit(_download_one, items[i], target, retries, backoff, timeout, deadline, bar,
                                      _sidecar(dest_dir, target), mirror)
                       for i, target in todo}
            for i, fut in futures.items():
                results[i] = fut.result()
    finally:
        bar.close()
    return results  # type: ignore[return-value]


def place_items(items: list[DownloadItem], dest_dir: Path) -> list[tuple[Path | None, str | None]]:
    """Per item, its destination in ``dest_dir``, or why it has none (an unsafe name, or a destination an
    earlier item already has). Run over the whole list before it is shared out to tasks, so that two
    tasks never write the same file."""
    dest_dir = Path(dest_dir)
    placed: list[tuple[Path | None, str | None]] = []
    owner: dict[Path, str] = {}
    for item in items:
        try:
            target = _safe_target(dest_dir, dest_name(item))
        except PermanentFailure as e:
            placed.append((None, str(e)))
            continue
        if target in owner:
            placed.append((None, f"duplicate_name: {target.relative_to(dest_dir)} is also the destination of {owner[target]}"))
            continue
        owner[target] = item.url
        placed.append((target, None))
    return placed


def failed_result(item: DownloadItem, reason: str) -> DownloadResult:
    """The result of an item refused before any transfer (``place_items``)."""
    return _failed(item, reason, TransferState())


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
                  deadline: float | None, bar: _Progress, sidecar: Path, mirror: Mirror | None = None) -> DownloadResult:
    state = TransferState()
    part = target.with_name(target.name + PART_SUFFIX)
    try:
        try:
            where = (mirror or Mirror()).locate(item.url)
        except MirrorError as e:
            raise PermanentFailure(f"unsafe_name: {e}") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        scheme = scheme_of(where)
        if scheme in ("http", "https", "s3"):
            get = s3.resume_get if scheme == "s3" else resume_get

            def attempt() -> dict:
                get(where, part, state, timeout, bar)
                return _verify(item, part, state, where)
            with Deadline(deadline, where) as state.deadline:
                digests = retrying(attempt, state, retries, backoff, where)
        else:
            _copy_local(item, part, state, bar, where)
            digests = _verify(item, part, state, where)
        _commit(item, part, target, digests, sidecar, where)
        return DownloadResult(item, target, True, None, state.received, state.resumed, state.attempts)
    except PermanentFailure as e:
        if not str(e).startswith(("network:", "deadline:")):  # keep a part only where a later run can resume it
            part.unlink(missing_ok=True)
        return _failed(item, str(e), state)
    except OSError as e:  # local disk trouble: full disk, permissions on dest_dir, ...
        return _failed(item, f"local_io: {describe(e)} while writing {target}", state)
    except Exception as e:  # one bad item must not sink the batch; keep it counted and one line
        return _failed(item, f"error: {type(e).__name__}: {e}", state)


def _failed(item: DownloadItem, reason: str, state: TransferState) -> DownloadResult:
    reason = " ".join(reason.split())  # guarantee one line
    log.info("download failed: %s", reason)  # the caller reports results; avoid a second copy at WARNING
    return DownloadResult(item, None, False, reason, state.received, state.resumed, state.attempts)


def _copy_local(item: DownloadItem, part: Path, state: TransferState, bar: _Progress, where: str | None = None) -> None:
    """Stream a local file (plain path or file:// URL; ``where``: a folder mirror's copy) into ``part``;
    local errors are not retried."""
    src = local_path(where or item.url)
    state.attempts += 1
    if not src.exists():
        raise PermanentFailure(f"not_found: no such file {src}")
    if not src.is_file():
        raise PermanentFailure(f"not_found: {src} is not a regular file")
    try:
        fin = open(src, "rb")
    except PermissionError:
        raise PermanentFailure(f"permission_denied: cannot read {src}") from None
    with fin, open(part, "wb") as fout:
        while chunk := fin.read(CHUNK_BYTES):
            fout.write(chunk)
            state.received += len(chunk)
            bar.update(len(chunk))


def _verify(item: DownloadItem, part: Path, state: TransferState, where: str | None = None) -> dict:
    """sha256 (and md5 when a listing gave one) of ``part``, checked against the manifest's or the
    listing's, as is its size. A mismatch deletes the part: corrupt bytes are never passed on. It fails
    for good, unless the part was resumed (its head may come from an older version of the file), in
    which case one clean download from byte 0 is worth a retry. The reason names the file, its URL
    and, when it came from a mirror, the mirror's copy."""
    size = part.stat().st_size
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False) if item.md5 else None
    with open(part, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            sha.update(chunk)
            if md5 is not None:
                md5.update(chunk)
    digests = {"sha256": sha.hexdigest(), **({"md5": md5.hexdigest()} if md5 is not None else {})}
    problem = None
    if item.size is not None and size != item.size:
        problem = f"size mismatch for {dest_name(item)}: expected {item.size} bytes, got {size}"
    for kind in ("sha256", "md5"):
        expected = getattr(item, kind)
        if problem is None and expected and digests[kind] != expected:
            problem = f"{kind} mismatch for {dest_name(item)}: expected {expected}, got {digests[kind]}"
    if problem:
        part.unlink(missing_ok=True)
        detail = f"{problem} ({item.url}" + (f", read from {where})" if where and where != item.url else ")")
        if state.resumed:
            state.resumed = False
            raise TransientFailure(detail + " (resumed file; starting over)", kind="checksum")
        raise PermanentFailure(f"checksum: {detail}")
    return digests


def _sidecar(dest_dir: Path, target: Path) -> Path:
    """Where the ``.done.json`` record of ``target`` lives: a hidden mirror tree under ``dest_dir``."""
    rel = target.relative_to(dest_dir)
    return dest_dir / DONE_DIR / rel.parent / (rel.name + DONE_SUFFIX)


def _commit(item: DownloadItem, part: Path, target: Path, digests: dict, sidecar_path: Path,
            where: str | None = None) -> None:
    """Rename the verified ``part`` into place, then record it in the ``.done.json`` sidecar (the
    upstream URL; ``via``: the mirror's copy it was read from, if any)."""
    size = part.stat().st_size
    part.replace(target)  # the part is the write-then-rename temporary; its fixed name lets a rerun resume it
    record = {"url": item.url, "size": size, **digests}
    if where and where != item.url:
        record["via"] = where
    atomic_write_json(sidecar_path, record, sort_keys=False)


def _is_complete(item: DownloadItem, target: Path, sidecar_path: Path) -> bool:
    """True when ``target`` was finished by an earlier run for the same url (and sha256, md5 and size,
    if given), wherever its bytes were read from."""
    try:
        done = json.loads(sidecar_path.read_text(encoding="utf-8"))
        return (done["url"] == item.url and target.is_file() and target.stat().st_size == done["size"]
                and (item.sha256 is None or item.sha256 == done["sha256"])
                and (item.md5 is None or item.md5 == done.get("md5"))
                and (item.size is None or item.size == done["size"]))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def read_small(url: str, max_bytes: int, *, mirror: Mirror | None = None, repo_root: Path | None = None,
               retries: int = 5, backoff: float = 0.5, timeout: float = 60) -> bytes:
    """A small remote or local file (a path list, a listing page) in memory, read from ``url`` or its
    copy in ``mirror``, with the download retry policy. Raises ``PermanentFailure`` (one-line reason:
    ``not_found: ...``, ``too_large: ...``, ``credentials: ...``) when it cannot be had."""
    try:
        where = (mirror or Mirror()).locate(url)
    except MirrorError as e:
        raise PermanentFailure(f"unsafe_name: {e}") from None
    scheme = scheme_of(where)
    if scheme in ("http", "https"):
        return fetch_bytes(where, max_bytes, retries=retries, backoff=backoff, timeout=timeout)
    if scheme == "s3":
        return retrying(lambda: s3.read_bytes(where, max_bytes, timeout), TransferState(), retries, backoff, where)
    if scheme not in ("", "file"):
        raise PermanentFailure(f"unsupported: cannot read {scheme}:// ({url})")
    path = local_path(where, repo_root)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise PermanentFailure(f"not_found: no such file {path}") from None
    except OSError as e:
        raise PermanentFailure(f"unreadable: {path}: {describe(e)}") from None
    if len(data) > max_bytes:
        raise PermanentFailure(f"too_large: {path} is more than {max_bytes >> 20} MiB")
    return data


def is_http(url: str) -> bool:
    return urllib.parse.urlsplit(url).scheme.lower() in ("http", "https")


def local_path(url: str, repo_root: Path | None = None) -> Path:
    """The file a ``file://`` URL or a plain path names; a relative path is taken from ``repo_root``."""
    if url.lower().startswith("file:"):
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
    else:
        path = Path(url)
    if not path.is_absolute() and repo_root is not None:
        path = Path(repo_root) / path
    return path


def _local_size(item: DownloadItem, mirror: Mirror) -> int:
    """Size of a local source or mirror copy (0 for remote ones or unreadable paths: those report
    their own errors)."""
    try:
        where = mirror.locate(item.url)
    except MirrorError:
        return 0
    if scheme_of(where) not in ("", "file"):
        return 0
    try:
        return local_path(where).stat().st_size
    except OSError:
        return 0


def dest_name(item: DownloadItem) -> str:
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
        raise PermanentFailure(unsafe)
    parts = re.split(r"[/\\]", name)
    if ".." in parts:
        raise PermanentFailure(unsafe)
    parts = [p for p in parts if p not in ("", ".")]
    if not parts or parts[-1].endswith((PART_SUFFIX, DONE_SUFFIX, DONE_SUFFIX + ".tmp")):
        raise PermanentFailure(f"unsafe_name: {name!r} is empty or uses a reserved suffix")
    target = dest_dir.joinpath(*parts)
    if not target.resolve().is_relative_to(dest_dir.resolve()):
        raise PermanentFailure(unsafe)
    return target
