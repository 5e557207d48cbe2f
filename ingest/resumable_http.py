"""Resumable HTTP GETs and the retry policy around them (the network half of ``ingest.download``).

Why: everything HTTP-specific lives here — error classification (a 404 is permanent, a 503 or a dropped
connection is worth retrying), exponential backoff with jitter honouring ``Retry-After``, and resuming a
partial file with ``Range``/``If-Range`` (206 appends; 200 means the server ignored the range, so the part
is rewritten; 416 means the part already holds every byte). Failures are raised as
:class:`PermanentFailure` (its ``str()`` is the one-line ``kind: detail`` reason) or
:class:`TransientFailure`, which :func:`retrying` retries.

A per-read ``timeout`` does not bound a transfer: a server that trickles a byte every few seconds
never trips it. So each file also has a ``deadline`` for all its attempts together: a
:class:`Deadline` watchdog shuts the transfer's sockets down when it passes (even in the middle of
reading the response headers), and the retry loop gives up with ``deadline: ...``.
"""

from __future__ import annotations

import http.client
import logging
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
DEFAULT_DEADLINE_S = 6 * 3600.0  # one file, all attempts: a 20 GB dump at ~1 MB/s; a rerun resumes the part
LIST_DEADLINE_S = 600.0  # a path list (a few MB)
MAX_BACKOFF_S = 60.0
USER_AGENT = "llamix-download/1.0"
PERMANENT_HTTP_KIND = {401: "permission_denied", 403: "permission_denied", 404: "not_found", 410: "gone"}


class PermanentFailure(Exception):
    """A failure retrying cannot fix; ``str()`` is the one-line ``kind: detail`` reason."""


class TransientFailure(Exception):
    """A failure worth retrying (dropped connection, timeout, 5xx, 429)."""

    def __init__(self, message: str, retry_after: float | None = None, kind: str = "network"):
        super().__init__(message)
        self.retry_after = retry_after
        self.kind = kind  # the reason kind reported if retries run out


@dataclass
class TransferState:
    """What one item's attempts have learnt so far (shared across its retries)."""

    attempts: int = 0
    received: int = 0
    resumed: bool = False
    validator: str | None = None
    deadline: Deadline | None = None


class Deadline:
    """The wall-clock limit of one file's transfer (all attempts). While active (``with``), a timer
    shuts down every socket the transfer opened once the limit passes, so a blocked read returns
    at once; ``check`` raises ``PermanentFailure('deadline: ...')`` after it."""

    def __init__(self, seconds: float | None, what: str):
        self.seconds = seconds
        self.what = what
        self.at = None if seconds is None else time.monotonic() + seconds
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._fired = False
        self._timer: threading.Timer | None = None

    def __enter__(self) -> Deadline:
        if self.at is not None:
            self._timer = threading.Timer(max(0.0, self.at - time.monotonic()), self._fire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._socks.clear()

    def remaining(self) -> float:
        return float("inf") if self.at is None else self.at - time.monotonic()

    def passed(self) -> bool:
        return self._fired or self.remaining() <= 0

    def check(self) -> None:
        if self.passed():
            raise PermanentFailure(f"deadline: {self.what} not complete after {self.seconds:g} s "
                                   f"(the download deadline; a rerun resumes it)")

    def register(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            fired = self._fired
        if fired:
            _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self._fired = True
            socks = list(self._socks)
        for sock in socks:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _watched(http_class, deadline: Deadline):
    """``http_class`` whose sockets ``deadline`` can shut down."""

    class Watched(http_class):
        def connect(self):
            super().connect()
            deadline.register(self.sock)

    return Watched


def _opener(deadline: Deadline | None):
    if deadline is None or deadline.at is None:
        return None

    class HTTP(urllib.request.HTTPHandler):
        def do_open(self, http_class, req, **kw):
            return super().do_open(_watched(http_class, deadline), req, **kw)

    class HTTPS(urllib.request.HTTPSHandler):
        def do_open(self, http_class, req, **kw):
            return super().do_open(_watched(http_class, deadline), req, **kw)

    return urllib.request.build_opener(HTTP(), HTTPS())


class Progress(Protocol):
    """Where transferred bytes are reported (``ingest.download``'s progress bar)."""

    def add_total(self, n: int) -> None: ...

    def update(self, n: int) -> None: ...


def fetch_bytes(url: str, max_bytes: int, *, retries: int = 5, backoff: float = 0.5, timeout: float = 60,
                deadline: float | None = LIST_DEADLINE_S) -> bytes:
    """A small resource (a path list) in memory, with the same retry policy (and a deadline) as
    downloads; more than ``max_bytes`` is a ``PermanentFailure`` (``too_large``)."""
    state = TransferState(deadline=Deadline(deadline, url))

    def attempt() -> bytes:
        with open_http(url, {}, timeout, state.deadline) as resp:
            try:
                data = resp.read(max_bytes + 1)
            except (OSError, http.client.HTTPException) as e:
                raise TransientFailure(f"read failed: {describe(e)}") from None
        if len(data) > max_bytes:
            raise PermanentFailure(f"too_large: more than {max_bytes >> 20} MiB")
        return data

    with state.deadline:
        return retrying(attempt, state, retries, backoff, url)


def retrying(action: Callable, state: TransferState, retries: int, backoff: float, what: str):
    """Run ``action`` until it succeeds, raises ``PermanentFailure``, or transient failures exceed
    ``retries`` or outlast ``state.deadline``."""
    while True:
        if state.deadline is not None:
            state.deadline.check()
        state.attempts += 1
        try:
            return action()
        except TransientFailure as e:
            if state.deadline is not None:
                state.deadline.check()  # a socket shut by the watchdog fails as a lost connection
            if state.attempts > retries:
                raise PermanentFailure(f"{e.kind}: {e} for {what} (gave up after {state.attempts} attempts)") from None
            delay = min(MAX_BACKOFF_S, backoff * 2 ** (state.attempts - 1)) * random.uniform(0.5, 1.0)
            if e.retry_after is not None:
                delay = max(delay, min(MAX_BACKOFF_S, e.retry_after))
            if state.deadline is not None:
                delay = max(0.0, min(delay, state.deadline.remaining()))
            log.info("download: %s for %s; retry %d/%d in %.2fs", e, what, state.attempts, retries, delay)
            time.sleep(delay)


def open_http(url: str, headers: dict, timeout: float, deadline: Deadline | None = None) -> http.client.HTTPResponse:
    """Open a GET; classify errors into PermanentFailure (4xx like 404/410/403) or TransientFailure.
    Under a ``deadline``, its watchdog can shut the connection down (while headers trickle in too)."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers})
    opener = _opener(deadline)
    if deadline is not None:
        timeout = max(0.001, min(timeout, deadline.remaining()))
    try:
        if opener is None:
            return urllib.request.urlopen(req, timeout=timeout)
        return opener.open(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        detail = f"HTTP {e.code} {e.reason} for {url}"
        if e.code == 429 or e.code >= 500:
            retry_after = e.headers.get("Retry-After", "") if e.headers else ""
            raise TransientFailure(detail, float(retry_after) if retry_after.isdigit() else None) from None
        if e.code == 416 and "Range" in headers:
            raise  # our part is at least as long as the file; the caller decides
        raise PermanentFailure(f"{PERMANENT_HTTP_KIND.get(e.code, 'http_error')}: {detail}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        raise TransientFailure(describe(reason)) from None


def resume_get(url: str, part: Path, state: TransferState, timeout: float, bar: Progress) -> None:
    """One GET of ``url`` into ``part``: resumes it with Range when it holds bytes; raises on failure."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if state.validator:
            headers["If-Range"] = state.validator
    try:
        resp = open_http(url, headers, timeout, state.deadline)
    except urllib.error.HTTPError as e:  # 416: our part is as long as (or longer than) the file
        total = content_range(e.headers.get("Content-Range") if e.headers else None)[2]
        if total == offset:
            state.resumed = True
            return  # the part already holds every byte (e.g. killed before the rename); verify it
        part.unlink(missing_ok=True)
        raise TransientFailure(f"HTTP 416 for a range from byte {offset}; starting over") from None
    with resp:
        if resp.status == 206:
            start, _, _ = content_range(resp.headers.get("Content-Range"))
            if start != offset:
                part.unlink(missing_ok=True)
                raise TransientFailure(f"server resumed at byte {start}, expected {offset}; starting over")
        else:  # 200 (server ignored or refused the range): rewrite from the start
            if offset:
                log.info("download: %s ignored Range; restarting from byte 0", url)
            offset = 0
        state.resumed = offset > 0
        etag = resp.headers.get("ETag")
        state.validator = etag if etag and not etag.startswith("W/") else resp.headers.get("Last-Modified")
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        bar.add_total(expected or 0)
        append_body(resp.read1, part, offset, expected, state, bar, lost=(OSError, http.client.HTTPException))


def append_body(read_chunk, part: Path, offset: int, expected: int | None, state: TransferState, bar: Progress,
                lost: type[BaseException] | tuple[type[BaseException], ...]) -> None:
    """Stream a response body into ``part`` (appended when resuming from ``offset``), for HTTP and S3
    alike: counts bytes into ``state`` and the progress bar, honours the transfer's deadline, and raises
    ``TransientFailure`` when the connection drops (``read_chunk`` raises one of ``lost``) or the body ends
    before ``expected`` bytes. ``read_chunk(n)`` returns what has arrived: a stall keeps the part."""
    got = 0

    def give_back() -> None:  # the bar counted bytes that will not come
        bar.add_total(got - (expected or got))

    with open(part, "ab" if offset else "wb") as f:
        while True:
            try:
                chunk = read_chunk(CHUNK_BYTES)
            except lost as e:
                give_back()
                raise TransientFailure(f"connection lost after byte {offset + got}: {describe(e)}") from None
            if not chunk:
                break
            f.write(chunk)
            got += len(chunk)
            state.received += len(chunk)
            bar.update(len(chunk))
            if state.deadline is not None and state.deadline.passed():
                give_back()
                state.deadline.check()
    if state.deadline is not None and state.deadline.passed():  # its watchdog may have cut the body short
        give_back()
        state.deadline.check()
    if expected is not None and got < expected:
        give_back()
        raise TransientFailure(f"connection closed after byte {offset + got} of {offset + expected}")


def content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """Parse ``bytes START-END/TOTAL`` or ``bytes */TOTAL`` into (start, end, total)."""
    m = re.match(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", value or "")
    if not m:
        return None, None, None
    start, end, total = (int(g) if g and g != "*" else None for g in m.groups())
    return start, end, total


def describe(e: BaseException | str) -> str:
    """A short one-line text of an error (an OSError's strerror without its errno and path)."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__
