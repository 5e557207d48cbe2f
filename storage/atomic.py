"""Write-then-rename: a reader (or a resumed run) sees the old file or the new one, never half of one.

Every file llamix writes into an output folder goes through here: a temporary sibling named
``.<name>.<pid>.tmp`` (hidden, so listings and fingerprints skip it; the pid keeps two writers of the
same file apart) is written, flushed, and renamed onto the target in one ``os.replace``. If the writer
fails, the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


def temp_sibling(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds it is renamed onto ``path``.

    For writers that want a file name rather than a file object (``pq.write_table``, SentencePiece)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *, fsync: bool = False, **kwargs: Any) -> Iterator[IO]:
    """``open()`` for writing whose result appears under ``path`` only when the block succeeds."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1, sort_keys: bool = True,
                      fsync: bool = True) -> None:
    """JSON records (accounting, markers, sidecars); fsynced by default because a marker that outlives
    a crash while its data did not would make a resume skip lost work."""
    with atomic_open(path, "w", encoding="utf-8", fsync=fsync) as f:
        json.dump(obj, f, indent=indent, sort_keys=sort_keys)


@contextlib.contextmanager
def atomic_prefix(near: str | os.PathLike, outputs: dict[str, str | os.PathLike]) -> Iterator[Path]:
    """For tools that name their own output files ``<prefix><suffix>`` (SentencePiece writes
    ``<prefix>.model`` and ``<prefix>.vocab``): yield a temporary prefix beside ``near``; when the block
    succeeds each ``<prefix><suffix>`` of ``outputs`` ({suffix: target}) is renamed onto its target.
    Whatever the tool left under the prefix is removed either way."""
    near = Path(near)
    near.parent.mkdir(parents=True, exist_ok=True)
    prefix = temp_sibling(near).with_suffix("")
    try:
        yield prefix
        for suffix, target in outputs.items():
            os.replace(f"{prefix}{suffix}", target)
    finally:
        for leftover in prefix.parent.glob(f"{prefix.name}.*"):
            leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary sibling folder of ``target``; on success it replaces ``target`` (renaming
    an existing one aside first, then deleting it), so a checkpoint folder is whole or absent."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
