"""Reading ``s3://BUCKET/KEY`` objects with boto3: requester pays, credentials from the environment.

Why: arXiv's LaTeX sources are in the requester-pays bucket ``s3://arxiv/src/`` (the transfer is billed
to the reader's AWS account), so nothing anonymous reads them: every request says
``RequestPayer=requester`` and is signed with the user's credentials, found where boto3 looks for them
(``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` [/ ``AWS_SESSION_TOKEN``], ``AWS_PROFILE`` and the
shared credentials file, or a role the machine has). Without any, the first S3 read fails with one
line naming the variables. boto3's own ``AWS_ENDPOINT_URL_S3`` (or ``AWS_ENDPOINT_URL``) points it at
another S3 API server (a test's moto, an S3-compatible store); the region defaults to ``us-east-1``
(the arXiv bucket's). A mirror (``ingest.mirror``) needs none of this: it maps ``s3://`` to plain files.

Failures are classified as in ``ingest.resumable_http`` (``PermanentFailure``: missing object, denied,
no credentials; ``TransientFailure``: throttling, 5xx, dropped connections), and an interrupted object
is resumed with ``Range`` guarded by ``IfMatch`` on its ETag, as HTTP downloads are.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ingest.resumable_http import PermanentFailure, Progress, TransferState, TransientFailure, append_body

CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
DEFAULT_REGION = "us-east-1"
_PERMANENT = {"NoSuchKey": "not_found", "NoSuchBucket": "not_found", "NotFound": "not_found", "404": "not_found",
              "AccessDenied": "permission_denied", "403": "permission_denied", "AllAccessDisabled": "permission_denied",
              "InvalidAccessKeyId": "credentials", "SignatureDoesNotMatch": "credentials",
              "ExpiredToken": "credentials", "InvalidToken": "credentials"}
_clients: dict[tuple[int, float], object] = {}
_lock = threading.Lock()


class MissingCredentials(PermanentFailure):
    """No AWS credentials anywhere boto3 looks; ``str()`` is the one line shown to the user."""


def split(url: str) -> tuple[str, str]:
    """``s3://BUCKET/KEY`` -> ``(BUCKET, KEY)``; the key is everything after the bucket, as written
    (``?`` and ``#`` are characters of a key, not a query or a fragment)."""
    rest = url[5:] if url[:5].lower() == "s3://" else ""
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise ValueError(f"{url!r}: expected s3://BUCKET/KEY")
    return bucket, key


def missing_credentials_message(url: str) -> str:
    return (f"credentials: {url} is in a requester-pays S3 bucket and no AWS credentials were found: set "
            f"{' and '.join(CREDENTIAL_VARS)} (or AWS_PROFILE), or read it from a mirror with --mirror / LLAMIX_MIRROR")


def client(url: str, timeout: float = 60):
    """One boto3 S3 client per process and timeout (clients are thread-safe; sessions are not), made
    after checking that credentials exist. Retries are ours (``resumable_http.retrying``), not boto3's."""
    key = (os.getpid(), float(timeout))
    with _lock:
        if key in _clients:
            return _clients[key]
        try:
            import boto3
            from botocore.config import Config
        except ImportError:  # pragma: no cover - boto3 is a dependency
            raise PermanentFailure("error: reading s3:// needs boto3 (pip install boto3), or use --mirror") from None
        try:
            session = boto3.session.Session()
            credentials = session.get_credentials()
        except Exception as e:  # e.g. AWS_PROFILE naming a profile that does not exist
            raise MissingCredentials(f"credentials: {url}: {type(e).__name__}: {e}") from None
        if credentials is None:
            raise MissingCredentials(missing_credentials_message(url))
        config = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=timeout,
                        read_timeout=timeout, max_pool_connections=64)
        _clients[key] = session.client("s3", region_name=session.region_name or DEFAULT_REGION, config=config)
        return _clients[key]


def _classify(e: BaseException, url: str) -> Exception:
    """A boto3/botocore error -> ``PermanentFailure`` or ``TransientFailure`` with a one-line reason."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if isinstance(e, NoCredentialsError):
        return MissingCredentials(missing_credentials_message(url))
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        detail = f"S3 {code or status} {err.get('Message', '')}".strip() + f" for {url}"
        if code in ("SlowDown", "Throttling", "RequestTimeout", "InternalError", "ServiceUnavailable") or status >= 500 or status == 429:
            return TransientFailure(detail)
        kind = _PERMANENT.get(code) or _PERMANENT.get(str(status)) or "http_error"
        if kind == "permission_denied":
            detail += " (a requester-pays bucket: the credentials must be allowed to read it and to pay)"
        return PermanentFailure(f"{kind}: {detail}")
    if isinstance(e, (BotoCoreError, OSError)):
        return TransientFailure(f"{type(e).__name__}: {e}")
    return PermanentFailure(f"error: {type(e).__name__}: {e} for {url}")


def _error_code(e: BaseException) -> str:
    response = getattr(e, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _get(url: str, timeout: float, **extra):
    """``get_object`` (requester pays); a failure raised as it came (classified by the caller)."""
    bucket, key = split(url)
    return client(url, timeout).get_object(Bucket=bucket, Key=key, RequestPayer="requester", **extra)


def _size(url: str, timeout: float) -> int:
    bucket, key = split(url)
    try:
        return int(client(url, timeout).head_object(Bucket=bucket, Key=key, RequestPayer="requester")["ContentLength"])
    except PermanentFailure:
        raise
    except Exception as e:
        raise _classify(e, url) from None


def resume_get(url: str, part: Path, state: TransferState, timeout: float, bar: Progress) -> None:
    """One GET of an S3 object into ``part``, resuming it with ``Range`` when it holds bytes (the
    ``resumable_http.resume_get`` of S3); raises ``PermanentFailure`` / ``TransientFailure``."""
    offset = part.stat().st_size if part.exists() else 0
    extra = {}
    if offset:
        extra["Range"] = f"bytes={offset}-"
        if state.validator:
            extra["IfMatch"] = state.validator
    try:
        resp = _get(url, timeout, **extra)
    except PermanentFailure:
        raise
    except Exception as e:
        code = _error_code(e)
        if offset and code == "InvalidRange":  # the part is as long as (or longer than) the object
            if _size(url, timeout) == offset:
                state.resumed = True
                return  # it already holds every byte (e.g. killed before the rename): verify it
            part.unlink(missing_ok=True)
            raise TransientFailure(f"invalid range from byte {offset} of {url}; starting over") from None
        if offset and code == "PreconditionFailed":  # the object changed since the part was started
            part.unlink(missing_ok=True)
            state.validator = None
            raise TransientFailure(f"{url} changed since the transfer started; starting over") from None
        raise _classify(e, url) from None
    state.resumed = bool(offset)
    etag = resp.get("ETag")
    state.validator = etag or state.validator
    expected = resp.get("ContentLength")
    bar.add_total(int(expected or 0))
    body = resp["Body"]
    try:  # botocore/urllib3 streaming errors (any exception while reading) are a dropped connection
        append_body(body.read, part, offset, int(expected) if expected is not None else None, state, bar, lost=Exception)
    finally:
        body.close()


def read_bytes(url: str, max_bytes: int, timeout: float = 60) -> bytes:
    """A small object (a listing) in memory; more than ``max_bytes`` is ``PermanentFailure`` (``too_large``)."""
    try:
        resp = _get(url, timeout)
    except PermanentFailure:
        raise
    except Exception as e:
        raise _classify(e, url) from None
    body = resp["Body"]
    try:
        data = body.read(max_bytes + 1)
    except Exception as e:
        raise TransientFailure(f"read failed: {type(e).__name__}: {e}") from None
    finally:
        body.close()
    if len(data) > max_bytes:
        raise PermanentFailure(f"too_large: {url} is more than {max_bytes >> 20} MiB")
    return data
