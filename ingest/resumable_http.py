"""Resumable HTTP GETs and the retry policy around them (the network half of ``ingest.download``).

Why: everything HTTP-specific lives here — error classification (a 404 is permanent, a 503 or a dropped
connection is worth retrying), exponential backoff with jitter honouring ``Retry-After``, and resuming a
partial file with ``Range``/``If-Range`` (206 appends; 200 means the server ignored the range, so the part
is rewritten; 416 means the part already holds every byte). Failures are raised as
:class:`PermanentFailure` (its ``str()`` is the one-line ``kind: detail`` reason) or
:class:`TransientFailure`, which :func:`retrying` retries.
"""

from __future__ import annotations

import http.client
import logging
import random
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
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


class Progress(Protocol):
    """Where transferred bytes are reported (``ingest.download``'s progress bar)."""

    def add_total(self, n: int) -> None: ...

    def update(self, n: int) -> None: ...


def fetch_bytes(url: str, max_bytes: int, *, retries: int = 5, backoff: float = 0.5, timeout: float = 60) -> bytes:
    """A small resource (a path list) in memory, with the same retry policy as downloads; more than
    ``max_bytes`` is a ``PermanentFailure`` (``too_large``)."""

    def attempt() -> bytes:
        with open_http(url, {}, timeout) as resp:
            try:
                data = resp.read(max_bytes + 1)
            except (OSError, http.client.HTTPException) as e:
                raise TransientFailure(f"read failed: {describe(e)}") from None
        if len(data) > max_bytes:
            raise PermanentFailure(f"too_large: more than {max_bytes >> 20} MiB")
        return data

    return retrying(attempt, TransferState(), retries, backoff, url)


def retrying(action: Callable, state: TransferState, retries: int, backoff: float, what: str):
    """Run ``action`` until it succeeds, raises ``PermanentFailure``, or transient failures exceed ``retries``."""
    while True:
        state.attempts += 1
        try:
            return action()
        except TransientFailure as e:
            if state.attempts > retries:
                raise PermanentFailure(f"{e.kind}: {e} for {what} (gave up after {state.attempts} attempts)") from None
            delay = min(MAX_BACKOFF_S, backoff * 2 ** (state.attempts - 1)) * random.uniform(0.5, 1.0)
            if e.retry_after is not None:
                delay = max(delay, min(MAX_BACKOFF_S, e.retry_after))
            log.info("download: %s for %s; retry %d/%d in %.2fs", e, what, state.attempts, retries, delay)
            time.sleep(delay)


def open_http(url: str, headers: dict, timeout: float) -> http.client.HTTPResponse:
    """Open a GET; classify errors into PermanentFailure (4xx like 404/410/403) or TransientFailure."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers})
    try:
        return urllib.request.urlopen(req, timeout=timeout)
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
        resp = open_http(url, headers, timeout)
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
        got = 0
        with open(part, "ab" if offset else "wb") as f:
            while True:
                try:
                    chunk = resp.read1(CHUNK_BYTES)  # returns what has arrived: a stall keeps it
                except (OSError, http.client.HTTPException) as e:
                    bar.add_total(got - (expected or got))
                    raise TransientFailure(f"connection lost after byte {offset + got}: {describe(e)}") from None
                if not chunk:
                    break
                f.write(chunk)
                got += len(chunk)
                state.received += len(chunk)
                bar.update(len(chunk))
        if expected is not None and got < expected:
            bar.add_total(got - expected)
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
