"""7z archives as a forward stream of members (``ingest.archives`` dispatches ``.7z`` files here).

Why a module of its own: py7zr only *pushes* decompressed bytes (blocks of up to 128 MB) into writer
objects, while every extractor *pulls* members one at a time as streams. A background thread runs the
extraction and cuts what it pushes into 1 MiB slices on a bounded queue, so a 100 GB ``Posts.xml`` is
read with one py7zr block plus 16 MiB in memory, never buffered whole; py7zr's ``max_extract_size`` is
the bomb cap. Members carry the same reasons as tar and zip members (``ingest.archive_members``).
"""

from __future__ import annotations

import io
import pathlib
import queue
import threading
from typing import Iterator

from ingest.archive_members import ArchiveLimits, Budget, Member, MemberError, Select, bomb, safe_member_name


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

    def __init__(self, archive, targets: list[str]):
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


def iter_7z(path: pathlib.Path, limits: ArchiveLimits, select: Select) -> Iterator[Member]:
    """The members of the 7z archive at ``path`` that ``select`` picks, plus every unsafe or refused one."""
    try:
        import py7zr
    except ImportError:  # pragma: no cover - py7zr is a declared dependency
        yield Member("", reason="corrupt:7z", detail="py7zr is not installed")
        return
    budget = Budget(limits)
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
            refused = budget.charge(name, size)
            if refused is not None and refused.reason == "bomb":
                bombed = True
                break
            if refused is not None:
                plan.append(refused)
                continue
            plan.append(Member(name, size=size, cap=limits.max_member_bytes, fmt="7z"))  # opened by the pump
            targets.append(f.filename)
        if not targets:
            yield from plan
            if bombed:
                yield bomb(limits)
            return
        pump = _SevenZipPump(archive, targets)
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
                member.opener = lambda stream=stream: stream
                yield member
                try:
                    stream.drain()
                except MemberError as exc:
                    yield Member("", reason=exc.reason, detail=exc.detail)
                    return
            if bombed:
                yield bomb(limits)
        finally:
            pump.close()
