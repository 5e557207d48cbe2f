"""Safe, in-memory iteration over the members of tar / tar.gz / tar.bz2 / tar.xz / zip / 7z archives.

Why: source dumps (GitHub repositories, arXiv source bundles, StackExchange `.7z`) are hostile input.
Nothing here ever extracts to disk: members are read as streams, names are only ever *labels*, and
every member that is not a plain, safely named, reasonably sized file becomes an excluded entry with
a stable reason instead of an exception:

- ``unsafe_path``  absolute names, ``..`` components, NUL bytes, symlinks, hardlinks, devices, FIFOs
- ``too_large``    one member larger than ``max_member_bytes`` (declared, or found while reading)
- ``bomb``         the archive expands past ``max_total_bytes`` in total; the rest is not read
- ``encrypted``    password-protected zip / 7z members
- ``corrupt:<fmt>`` truncated or corrupt archive (``tar``, ``zip``, ``7z``); the rest is not read

Usage::

    for m in iter_archive(path, ArchiveLimits()):
        if m.reason:             # excluded member (or, with m.name == "", the archive itself)
            ...
        else:
            data = m.read()      # may raise SafeIOError -> exclude with its .reason
            # or: with m.open() as stream: ...   (for huge members such as Posts.xml)

Members are only valid until the iterator advances (tar and 7z are read as one forward stream).
"""

from __future__ import annotations

import io
import lzma
import pathlib
import queue
import stat
import tarfile
import threading
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

from ingest.safeio import SafeIOError, TooLarge, open_path, open_stream, read_capped

DEFAULT_MAX_MEMBER_BYTES = 64 << 20
DEFAULT_MAX_TOTAL_BYTES = 4 << 30

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ZIP_SUFFIXES = (".zip",)
SEVENZIP_SUFFIXES = (".7z",)

# Errors the stdlib / py7zr raise for truncated or corrupt compressed data.
_CORRUPT_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError,
)


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on expansion. ``max_member_bytes`` bounds one member, ``max_total_bytes`` the archive."""

    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES



class MemberError(SafeIOError):
    """Reading a member failed; ``reason`` is the stable exclusion reason (corrupt:tar, bomb...)."""


@dataclass
class Member:
    """One archive entry. ``reason`` set => excluded (``name == ""`` means the archive as a whole)."""

    name: str
    size: int | None = None
    reason: str | None = None
    detail: str = ""
    _open: Callable[[], BinaryIO] | None = field(default=None, repr=False)
    _cap: int = DEFAULT_MAX_MEMBER_BYTES
    _fmt: str = "archive"

    def open(self) -> BinaryIO:
        """A binary stream of the member; reading raises ``TooLarge`` past the per-member cap and
        ``MemberError('corrupt:<fmt>')`` on truncated or corrupt data (both ``SafeIOError``)."""
        if self.reason or self._open is None:
            raise MemberError(self.reason or "unreadable", self.detail)
        try:
            raw = self._open()
        except _CORRUPT_ERRORS as exc:
            raise MemberError(f"corrupt:{self._fmt}", str(exc)) from None
        return open_stream(io.BufferedReader(_MemberErrors(raw, self._fmt)), max_expanded=self._cap, fmt="raw")

    def read(self) -> bytes:
        """The whole member (at most the per-member cap), or a ``SafeIOError``."""
        with self.open() as stream:
            return read_capped(stream, self._cap)


class _MemberErrors(io.RawIOBase):
    """Translates the archive libraries' exceptions into ``MemberError('corrupt:<fmt>')``."""

    def __init__(self, raw: BinaryIO, fmt: str):
        super().__init__()
        self._raw, self._fmt = raw, fmt

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        try:
            data = self._raw.read(len(buf))
        except MemberError:
            raise
        except TooLarge as exc:  # the whole decompressed stream ran past the archive cap
            raise MemberError("bomb", exc.detail) from None
        except (SafeIOError, *_CORRUPT_ERRORS) as exc:  # truncated / corrupt compressed stream
            raise MemberError(f"corrupt:{self._fmt}", str(exc)) from None
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._raw.close()
        except Exception:  # closing a broken stream must not mask the real error
            pass
        super().close()


def archive_format(path: pathlib.Path) -> str | None:
    """``tar`` / ``zip`` / ``7z`` from the file name, or None when it is not an archive we read."""
    name = path.name.lower()
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    if name.endswith(ZIP_SUFFIXES):
        return "zip"
    if name.endswith(SEVENZIP_SUFFIXES):
        return "7z"
    return None


def archive_stem(path: pathlib.Path) -> str:
    """The archive name without its archive suffix: ``repo.tar.gz`` -> ``repo``."""
    name = path.name
    for suffix in sorted(TAR_SUFFIXES + ZIP_SUFFIXES + SEVENZIP_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def safe_member_name(name: str) -> str | None:
    """Normalised relative posix name, or None when the name is absolute, escapes, or has NULs."""
    if not name or "\x00" in name:
        return None
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return "/".join(parts)


Select = Callable[[str], bool]


def _all(_name: str) -> bool:
    return True


def iter_archive(
    path: pathlib.Path, limits: ArchiveLimits | None = None, select: Select | None = None
) -> Iterator[Member]:
    """Every member of the archive at ``path``, in archive order; see the module docstring.

    ``select(name)`` (default: all) picks the safely named plain files the caller wants; the others
    are skipped without being decompressed where the format allows (zip, 7z) and are not yielded.
    Unsafe members and archive-level problems are always yielded.
    """
    limits = limits or ArchiveLimits()
    select = select or _all
    fmt = archive_format(path)
    if fmt == "tar":
        yield from _iter_tar(path, limits, select)
    elif fmt == "zip":
        yield from _iter_zip(path, limits, select)
    elif fmt == "7z":
        yield from _iter_7z(path, limits, select)
    else:
        yield Member("", reason="not_archive", detail=path.name)


class _Budget:
    """Running total of (declared or real) expanded bytes across an archive."""

    def __init__(self, limits: ArchiveLimits):
        self.limits, self.used = limits, 0

    def admit(self, size: int) -> str | None:
        """Charge ``size``; returns 'too_large' / 'bomb' when the member or archive is over its cap."""
        self.used += max(size, 0)
        if self.used > self.limits.max_total_bytes:
            return "bomb"
        if size > self.limits.max_member_bytes:
            return "too_large"
        return None


def _bomb(limits: ArchiveLimits) -> Member:
    return Member("", reason="bomb", detail=f"archive expands past {limits.max_total_bytes} bytes")


# --------------------------------------------------------------------------------------------- tar
def _iter_tar(path: pathlib.Path, limits: ArchiveLimits, select: Select) -> Iterator[Member]:
    # safeio decompresses (gz/bz2/xz/zstd by magic) and raises on a truncated or corrupt stream,
    # which tarfile's own stream mode would take for a clean end; "r|" reads it forward only.
    try:
        with open_path(path, max_expanded=limits.max_total_bytes + _TAR_SLACK) as stream:
            yield from iter_tar_stream(stream, limits, select)
    except SafeIOError as exc:  # opening failed (unreadable file)
        yield Member("", reason="corrupt:tar", detail=str(exc))


_TAR_SLACK = 1 << 20  # headers and padding on top of the members' declared sizes


def _tar_failure(exc: BaseException) -> Member:
    if isinstance(exc, TooLarge):
        return Member("", reason="bomb", detail=str(exc))
    return Member("", reason="corrupt:tar", detail=str(exc))


def iter_tar_stream(stream: BinaryIO, limits: ArchiveLimits, select: Select | None = None) -> Iterator[Member]:
    """Members of an (already decompressed) tar stream, e.g. a tar nested inside another archive."""
    select = select or _all
    budget = _Budget(limits)
    try:
        tar = tarfile.open(fileobj=stream, mode="r|")
    except (SafeIOError, *_CORRUPT_ERRORS) as exc:
        yield _tar_failure(exc)
        return
    members = iter(tar)
    while True:
        try:
            info = next(members)
        except StopIteration:
            break
        except (SafeIOError, *_CORRUPT_ERRORS) as exc:
            yield _tar_failure(exc)
            return
        if info.isdir():
            continue
        name = safe_member_name(info.name)
        if name is None or not info.isreg():
            kind = "link" if (info.issym() or info.islnk()) else "special" if not info.isreg() else "name"
            yield Member(info.name, reason="unsafe_path", detail=kind)
            continue
        over = budget.admit(info.size)  # skipped members count too: a forward stream inflates them
        if over == "bomb":
            yield _bomb(limits)
            return
        if not select(name):
            continue
        if over:
            yield Member(name, size=info.size, reason=over, detail=f"{info.size} bytes")
            continue
        yield Member(name, size=info.size, _open=lambda info=info: tar.extractfile(info),
                     _cap=limits.max_member_bytes, _fmt="tar")
    try:  # tarfile stops at the end-of-archive blocks: the compressed stream must still end cleanly
        while stream.read(1 << 20):
            pass
    except SafeIOError as exc:
        yield _tar_failure(exc)


# --------------------------------------------------------------------------------------------- zip
def _zip_is_link_or_special(info: zipfile.ZipInfo) -> bool:
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip records no unix file type
    return kind not in (0, stat.S_IFREG, stat.S_IFDIR)


def _iter_zip(path: pathlib.Path, limits: ArchiveLimits, select: Select) -> Iterator[Member]:
    budget = _Budget(limits)
    try:
        archive = zipfile.ZipFile(path)
        infos = archive.infolist()
    except _CORRUPT_ERRORS as exc:
        yield Member("", reason="corrupt:zip", detail=str(exc))
        return
    with archive:
        for info in infos:
            if info.is_dir():
                continue
            name = safe_member_name(info.filename)
            if name is None or _zip_is_link_or_special(info):
                yield Member(info.filename, reason="unsafe_path")
                continue
            if not select(name):
                continue
            if info.flag_bits & 0x1:
                yield Member(name, reason="encrypted")
                continue
            over = budget.admit(info.file_size)
            if over == "bomb":
                yield _bomb(limits)
                return
            if over:
                yield Member(name, size=info.file_size, reason=over, detail=f"{info.file_size} bytes")
                continue
            # ZipExtFile never returns more than the declared size and checks the CRC at the end.
            yield Member(name, size=info.file_size, _open=lambda info=info: archive.open(info),
                         _cap=limits.max_member_bytes, _fmt="zip")


# ---------------------------------------------------------------------------------------------- 7z
_END = object()


class _Cancelled(Exception):
    pass


class _SevenZipPump:
    """Runs py7zr's push-style extraction in a thread and hands members out as pull streams.

    py7zr writes decompressed bytes into writer objects we provide, in blocks of up to 128 MB (its
    own buffer, a quarter of free memory at most); we cut them into ``CHUNK_BYTES`` slices on a
    queue of ``QUEUE_CHUNKS``, so memory holds one py7zr block plus 16 MiB whatever the member size.
    """

    QUEUE_CHUNKS = 16
    CHUNK_BYTES = 1 << 20

    def __init__(self, archive, targets: list[str], limits: ArchiveLimits):
        import py7zr.io  # local: only 7z inputs need py7zr

        self.queue: queue.Queue = queue.Queue(maxsize=self.QUEUE_CHUNKS)
        self.cancel = threading.Event()
        pump = self

        class Writer(py7zr.io.Py7zIO):
            def __init__(self):
                self._size = 0
                pump._put(("start", None))

            def write(self, s) -> int:
                view = memoryview(s)
                for k in range(0, len(view), pump.CHUNK_BYTES):  # py7zr hands over up to 128 MB
                    pump._put(("data", bytes(view[k : k + pump.CHUNK_BYTES])))
                self._size += len(view)
                return len(view)

            def read(self, size=None) -> bytes:
                return b""

            def seek(self, offset, whence=0) -> int:
                return 0

            def flush(self) -> None:
                pass

            def size(self) -> int:
                return self._size

            def close(self) -> None:
                pump._put(("end", None))

        class Factory(py7zr.io.WriterFactory):
            def create(self, filename):
                return Writer()

        def run():
            try:
                archive.extract(targets=targets, factory=Factory())
                self._put(("done", None))
            except _Cancelled:
                pass
            except Exception as exc:  # corrupt data, CRC error, bomb: reported to the consumer
                self._put(("error", exc), force=True)

        self.thread = threading.Thread(target=run, name="7z-pump", daemon=True)
        self.thread.start()

    def _put(self, item, force: bool = False) -> None:
        while True:
            if self.cancel.is_set() and not force:
                raise _Cancelled()
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if force and self.cancel.is_set():
                    return

    def get(self):
        while True:
            try:
                return self.queue.get(timeout=0.1)
            except queue.Empty:
                if not self.thread.is_alive() and self.queue.empty():
                    return ("error", EOFError("7z extraction ended early"))

    def close(self) -> None:
        self.cancel.set()
        while self.thread.is_alive():
            try:
                self.queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self.thread.join()


def _7z_reason(exc) -> str:
    return "bomb" if type(exc).__name__ == "DecompressionBombError" else "corrupt:7z"


class _PumpStream(io.RawIOBase):
    """The bytes of the current 7z member, pulled from the pump until its 'end' event."""

    def __init__(self, pump: _SevenZipPump):
        self._pump, self._pending, self.finished = pump, b"", False

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        while not self._pending and not self.finished:
            kind, value = self._pump.get()
            if kind == "data":
                self._pending = value
            elif kind == "end":
                self.finished = True
            else:
                self.finished = True
                raise MemberError(_7z_reason(value), str(value))
        n = min(len(buf), len(self._pending))
        buf[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def drain(self) -> None:
        while not self.finished:
            self._pending = b""
            self.readinto(bytearray(1 << 16))


def _iter_7z(path: pathlib.Path, limits: ArchiveLimits, select: Select) -> Iterator[Member]:
    try:
        import py7zr
    except ImportError:  # pragma: no cover - py7zr is a declared dependency
        yield Member("", reason="corrupt:7z", detail="py7zr is not installed")
        return
    budget = _Budget(limits)
    try:
        archive = py7zr.SevenZipFile(path, mode="r", max_extract_size=limits.max_total_bytes)
        infos = list(archive.files)
    except Exception as exc:  # py7zr raises its own and stdlib errors for bad headers
        yield Member("", reason="corrupt:7z", detail=str(exc))
        return
    with archive:
        if archive.needs_password():
            yield Member("", reason="encrypted")
            return
        plan: list[Member] = []
        targets: list[str] = []
        bombed = False
        for f in infos:
            if f.is_directory:
                continue
            name = safe_member_name(f.filename)
            if name is None or f.is_symlink or f.is_junction or f.is_socket or not f.is_file:
                plan.append(Member(f.filename, reason="unsafe_path"))
                continue
            if not select(name):
                continue
            size = int(f.uncompressed or 0)
            over = budget.admit(size)
            if over == "bomb":
                bombed = True
                break
            if over:
                plan.append(Member(name, size=size, reason=over, detail=f"{size} bytes"))
                continue
            plan.append(Member(name, size=size, _cap=limits.max_member_bytes, _fmt="7z"))
            targets.append(f.filename)
        if not targets:
            yield from plan
            if bombed:
                yield _bomb(limits)
            return
        pump = _SevenZipPump(archive, targets, limits)
        try:
            for member in plan:
                if member.reason:
                    yield member
                    continue
                kind, value = pump.get()
                if kind != "start":
                    yield Member(member.name, reason=_7z_reason(value), detail=str(value))
                    return
                stream = _PumpStream(pump)
                member._open = lambda stream=stream: stream
                yield member
                try:
                    stream.drain()
                except MemberError as exc:
                    yield Member("", reason=exc.reason, detail=exc.detail)
                    return
            if bombed:
                yield _bomb(limits)
        finally:
            pump.close()
