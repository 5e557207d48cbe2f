"""What every archive reader in ``ingest`` hands out: a :class:`Member`, and the caps it is read under.

Why a module of its own: tar/zip (``ingest.archives``) and 7z (``ingest.sevenzip``) read members in
very different ways, but must exclude the same things with the same reasons — unsafe names, members
over ``max_member_bytes``, archives expanding past ``max_total_bytes`` — and hand out members that read
the same way (a capped stream whose corruption is a ``MemberError`` with a stable reason).
"""

from __future__ import annotations

import io
import lzma
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Callable

from ingest.safeio import SafeIOError, TooLarge, open_stream, read_capped

DEFAULT_MAX_MEMBER_BYTES = 64 << 20
DEFAULT_MAX_TOTAL_BYTES = 4 << 30

# Errors the stdlib / py7zr raise for truncated or corrupt compressed data.
CORRUPT_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError,
)

Select = Callable[[str], bool]  # picks members by their (safe) name


def select_all(_name: str) -> bool:
    return True


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
    opener: Callable[[], BinaryIO] | None = field(default=None, repr=False)  # set on readable members
    cap: int = DEFAULT_MAX_MEMBER_BYTES  # bytes one read may return
    fmt: str = "archive"  # the archive format, for corrupt:<fmt> reasons

    def open(self) -> BinaryIO:
        """A binary stream of the member; reading raises ``TooLarge`` past the per-member cap and
        ``MemberError('corrupt:<fmt>')`` on truncated or corrupt data (both ``SafeIOError``)."""
        if self.reason or self.opener is None:
            raise MemberError(self.reason or "unreadable", self.detail)
        try:
            raw = self.opener()
        except CORRUPT_ERRORS as exc:
            raise MemberError(f"corrupt:{self.fmt}", str(exc)) from None
        return open_stream(io.BufferedReader(_MemberErrors(raw, self.fmt)), max_expanded=self.cap, fmt="raw")

    def read(self) -> bytes:
        """The whole member (at most the per-member cap), or a ``SafeIOError``."""
        with self.open() as stream:
            return read_capped(stream, self.cap)


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
        except (SafeIOError, *CORRUPT_ERRORS) as exc:  # truncated / corrupt compressed stream
            raise MemberError(f"corrupt:{self.fmt}", str(exc)) from None
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._raw.close()
        except Exception:  # closing a broken stream must not mask the real error
            pass
        super().close()


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


class Budget:
    """Running total of (declared or real) expanded bytes across an archive."""

    def __init__(self, limits: ArchiveLimits):
        self.limits, self.used = limits, 0

    def charge(self, name: str, size: int) -> Member | None:
        """Charge ``size`` for member ``name``: None when it fits, else the excluded member to yield,
        ``too_large`` for this member or ``bomb`` (named "": the archive) when the total is over its cap."""
        self.used += max(size, 0)
        if self.used > self.limits.max_total_bytes:
            return bomb(self.limits)
        if size > self.limits.max_member_bytes:
            return Member(name, size=size, reason="too_large", detail=f"{size} bytes")
        return None


def bomb(limits: ArchiveLimits) -> Member:
    """The record for the rest of an archive that expands past ``max_total_bytes``."""
    return Member("", reason="bomb", detail=f"archive expands past {limits.max_total_bytes} bytes")
