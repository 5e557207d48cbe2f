"""Bucket listings as download items: arXiv's source manifest (S3) and a GCS prefix (PG-19).

Why: two full-profile sources are published as buckets, not as files of URLs. Listing them here means
nothing has to be prepared by hand (no ``aws s3 ls``, no ``gsutil ls``), and the listing gives each
file's size and md5, which the download checks:

- ``{arxiv_manifest: "s3://arxiv/src/arXiv_src_manifest.xml"}``: the bucket's own XML manifest, one
  ``<file>`` per bulk tar with ``<filename>`` (``src/arXiv_src_YYMM_NNN.tar``, relative to the bucket),
  ``<size>`` and ``<md5sum>`` (of the tar; ``<content_md5sum>`` is not used), in the manifest's order
  (oldest first). The manifest itself is fetched like any download (kept for a rerun).
- ``{gcs_listing: "gs://BUCKET/PREFIX/"}``: Google Cloud Storage's public JSON API,
  ``https://storage.googleapis.com/storage/v1/b/BUCKET/o?prefix=PREFIX``, page after page while the
  answer has a ``nextPageToken`` (``&pageToken=...``), no gsutil and no credentials; each object
  (``name``, ``size``, base64 ``md5Hash``) becomes ``https://storage.googleapis.com/BUCKET/NAME``, in
  the API's (lexicographic) order; ``.../`` folder placeholders are skipped.

Both stop reading at ``limit`` files (``--max-files``). A malformed listing is one ``DownloadError`` line.
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
import xml.parsers.expat
from typing import Callable

from ingest.download import DownloadError, DownloadItem

GCS_API = "https://storage.googleapis.com/storage/v1/b/{bucket}/o"
GCS_OBJECT = "https://storage.googleapis.com/{bucket}/{name}"
MAX_PAGES = 100_000  # 100 million objects at the API's 1,000 a page: more is a server that never stops
_ARXIV_FIELDS = ("filename", "size", "md5sum")


def split_bucket_url(url: str, scheme: str) -> tuple[str, str]:
    """``gs://BUCKET/PREFIX`` -> ``(BUCKET, PREFIX)``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != scheme or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: expected {scheme}://BUCKET/PREFIX")
    return parts.netloc, parts.path.lstrip("/")


# ----------------------------------------------------------------------------------------------
# arXiv


def arxiv_manifest_items(manifest_url: str, raw: bytes, limit: int | None = None) -> list[DownloadItem]:
    """The bulk tars listed by arXiv's ``arXiv_src_manifest.xml`` (``raw``), as ``s3://`` items of the
    manifest's bucket with their size and md5; the first ``limit`` when given."""
    bucket = split_bucket_url(manifest_url, "s3")[0] if manifest_url.lower().startswith("s3://") else None
    root = f"s3://{bucket}/" if bucket else manifest_url.rsplit("/", 2)[0] + "/"  # .../src/manifest -> .../
    files = _parse_arxiv_manifest(raw, manifest_url)
    items = []
    for n, f in enumerate(files, 1):
        missing = [k for k in _ARXIV_FIELDS if not f.get(k)]
        if missing:
            raise DownloadError(f"arXiv manifest {manifest_url}: <file> #{n} has no <{missing[0]}>")
        name = f["filename"]
        if name.startswith("/") or ".." in name.split("/") or "\\" in name or not name.endswith(".tar"):
            raise DownloadError(f"arXiv manifest {manifest_url}: <file> #{n}: unexpected filename {name!r}")
        try:
            # an s3:// URL holds the key as it is (as the AWS tools write it); an http one, percent-encoded
            key = name if root.startswith("s3://") else urllib.parse.quote(name, safe="/~")
            items.append(DownloadItem(root + key, md5=f["md5sum"], size=int(f["size"])))
        except ValueError as e:
            raise DownloadError(f"arXiv manifest {manifest_url}: <file> #{n} ({name}): {e}") from None
        if limit and len(items) >= limit:
            break
    if not items:
        raise DownloadError(f"arXiv manifest {manifest_url}: lists no <file>")
    return items


def _parse_arxiv_manifest(raw: bytes, url: str) -> list[dict[str, str]]:
    """``<file>`` elements of the manifest as dicts of their child elements' text (expat; entity
    declarations refused, so an entity bomb cannot expand)."""
    files: list[dict[str, str]] = []
    path: list[str] = []
    text: list[str] = []

    def start(name, attrs):
        path.append(name)
        if name == "file":
            files.append({})
        text.clear()

    def end(name):
        if len(path) >= 2 and path[-2] == "file" and files:
            files[-1][name] = "".join(text).strip()
        path.pop()
        text.clear()

    def refuse_entity(*args):
        raise ValueError("entity declarations are not allowed")

    parser = xml.parsers.expat.ParserCreate()
    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = text.append
    parser.EntityDeclHandler = refuse_entity
    try:
        parser.Parse(raw, True)
    except (xml.parsers.expat.ExpatError, ValueError) as e:
        raise DownloadError(f"arXiv manifest {url} is not valid XML: {e}") from None
    return files


# ----------------------------------------------------------------------------------------------
# Google Cloud Storage


def gcs_listing_url(bucket: str, prefix: str, page_token: str | None = None) -> str:
    """The JSON API URL of one page of a listing (``?prefix=train/`` as written, the token encoded)."""
    query = "prefix=" + urllib.parse.quote(prefix, safe="/~")
    if page_token:
        query += "&pageToken=" + urllib.parse.quote(page_token, safe="~")
    return GCS_API.format(bucket=urllib.parse.quote(bucket, safe="")) + "?" + query


def gcs_listing_items(gs_url: str, read: Callable[[str], bytes], limit: int | None = None) -> list[DownloadItem]:
    """The objects under ``gs://BUCKET/PREFIX`` as https items with their size and md5, read page by
    page with ``read(url) -> bytes`` until there is no ``nextPageToken`` (or ``limit`` objects)."""
    bucket, prefix = split_bucket_url(gs_url, "gs")
    items: list[DownloadItem] = []
    token, seen = None, set()
    for _ in range(MAX_PAGES):
        url = gcs_listing_url(bucket, prefix, token)
        try:
            page = json.loads(read(url))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DownloadError(f"GCS listing {url} is not JSON: {e}") from None
        if not isinstance(page, dict) or not isinstance(page.get("items", []), list):
            raise DownloadError(f"GCS listing {url} is not a storage#objects answer")
        for obj in page.get("items", []):
            item = _gcs_item(obj, bucket, url)
            if item is None:
                continue
            items.append(item)
            if limit and len(items) >= limit:
                return items
        token = page.get("nextPageToken")
        if not token:
            return items
        if not isinstance(token, str) or token in seen:
            raise DownloadError(f"GCS listing {url}: nextPageToken {token!r} repeats an earlier page")
        seen.add(token)
    raise DownloadError(f"GCS listing of {gs_url}: more than {MAX_PAGES} pages")


def _gcs_item(obj: object, bucket: str, url: str) -> DownloadItem | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        raise DownloadError(f"GCS listing {url}: an item without a name")
    name = obj["name"]
    if name.endswith("/"):
        return None  # a "folder" placeholder object
    md5 = None
    if obj.get("md5Hash"):  # composite objects have none (crc32c only)
        try:
            md5 = base64.b64decode(obj["md5Hash"], validate=True).hex()
        except (binascii.Error, ValueError, TypeError):
            raise DownloadError(f"GCS listing {url}: {name}: md5Hash {obj['md5Hash']!r} is not base64") from None
    try:
        size = int(obj["size"]) if "size" in obj else None
        return DownloadItem(GCS_OBJECT.format(bucket=bucket, name=urllib.parse.quote(name, safe="/~")), md5=md5, size=size)
    except (ValueError, TypeError) as e:
        raise DownloadError(f"GCS listing {url}: {name}: {e}") from None
