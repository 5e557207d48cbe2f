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
This module reads tar and zip and picks the reader by file name; ``ingest.sevenzip`` reads 7z, and
``ingest.archive_members`` defines the members, caps and reasons all of them share.
"""

from __future__ import annotations

import pathlib
import stat
import tarfile
import zipfile
from typing import BinaryIO, Iterator

from ingest.archive_members import (
    CORRUPT_ERRORS, ArchiveLimits, Budget, Member, Select, safe_member_name, select_all,
)
from ingest.safeio import SafeIOError, TooLarge, open_path
from ingest.sevenzip import iter_7z

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ZIP_SUFFIXES = (".zip",)
SEVENZIP_SUFFIXES = (".7z",)


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


def iter_archive(
    path: pathlib.Path, limits: ArchiveLimits | None = None, select: Select | None = None
) -> Iterator[Member]:
    """Every member of the archive at ``path``, in archive order; see the module docstring.

    ``select(name)`` (default: all) picks the safely named plain files the caller wants; the others
    are skipped without being decompressed where the format allows (zip, 7z) and are not yielded.
    Unsafe members and archive-level problems are always yielded.
    """
    limits = limits or ArchiveLimits()
    select = select or select_all
    fmt = archive_format(path)
    if fmt == "tar":
        yield from _iter_tar(path, limits, select)
    elif fmt == "zip":
        yield from _iter_zip(path, limits, select)
    elif fmt == "7z":
        yield from iter_7z(path, limits, select)
    else:
        yield Member("", reason="not_archive", detail=path.name)


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
    select = select or select_all
    budget = Budget(limits)
    try:
        tar = tarfile.open(fileobj=stream, mode="r|")
    except (SafeIOError, *CORRUPT_ERRORS) as exc:
        yield _tar_failure(exc)
        return
    members = iter(tar)
    while True:
        try:
            info = next(members)
        except StopIteration:
            break
        except (SafeIOError, *CORRUPT_ERRORS) as exc:
            yield _tar_failure(exc)
            return
        if info.isdir():
            continue
        name = safe_member_name(info.name)
        if name is None or not info.isreg():
            kind = "link" if (info.issym() or info.islnk()) else "special" if not info.isreg() else "name"
            yield Member(info.name, reason="unsafe_path", detail=kind)
            continue
        refused = budget.charge(name, info.size)  # skipped members count too: a forward stream inflates them
        if refused is not None and refused.reason == "bomb":
            yield refused
            return
        if not select(name):
            continue
        if refused is not None:
            yield refused
            continue
        yield Member(name, size=info.size, opener=lambda info=info: tar.extractfile(info),
                     cap=limits.max_member_bytes, fmt="tar")
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
    budget = Budget(limits)
    try:
        archive = zipfile.ZipFile(path)
        infos = archive.infolist()
    except CORRUPT_ERRORS as exc:
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
            refused = budget.charge(name, info.file_size)
            if refused is not None:
                yield refused
                if refused.reason == "bomb":
                    return
                continue
            # ZipExtFile never returns more than the declared size and checks the CRC at the end.
            yield Member(name, size=info.file_size, opener=lambda info=info: archive.open(info),
                         cap=limits.max_member_bytes, fmt="zip")
