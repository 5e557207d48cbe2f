"""A mirror of the full profile's upstream files, built from the embedded sample (data/sample/) re-laid
into each upstream's real format and layout, and an HTTP server on 127.0.0.1 that serves it.

The layout is the one ``ingest.mirror`` reads (``BASE/HOST/PATH``, ``BASE/s3/BUCKET/KEY``, a query kept
after ``?`` with ``/`` written ``%2F``), so the same folder is a local-folder mirror and, served by
:class:`MirrorServer`, an HTTP one. What each upstream looks like:

- CommonCrawl: ``data.commoncrawl.org/crawl-data/CC-MAIN-<dump>/wet.paths.gz`` for the manifest's five
  dumps, each listing three WET paths ``crawl-data/CC-MAIN-<dump>/segments/<segment>/wet/CC-MAIN-<ts>-0000N-
  <host>.warc.wet.gz``; the first of each exists: a warcinfo record, then ``conversion`` records (one gzip
  member each), the sample's WET records and the text of the sample WARCs' HTML responses.
- C4: ``huggingface.co/datasets/allenai/c4/resolve/main/en/c4-train.00000-of-01024.json.gz`` (the
  sample file, which is in C4's format already).
- GitHub: RedPajama's ``data.together.xyz/redpajama-data-1T/v1.0.0/urls/github.txt`` naming two
  ``github/filtered_<md5>.sampled.jsonl`` files; the first holds every sample repository's files as
  RedPajama rows (``text`` + ``meta`` with ``repo_name``, ``path``, ``license``...).
- Wikipedia: ``archive.org/download/{en,bg}wiki-20220701/{en,bg}wiki-20220701-pages-articles-multistream.xml.bz2``,
  the sample dumps re-compressed as multistream bz2 (a stream for the header, one per 100 pages, one for the end).
- Books: the GCS JSON listing ``storage.googleapis.com/storage/v1/b/deepmind-gutenberg/o?prefix=train%2F``
  (two pages, ``nextPageToken``) and ``storage.googleapis.com/deepmind-gutenberg/train/<n>.txt``.
- arXiv: ``s3/arxiv/src/arXiv_src_manifest.xml`` listing two bulk tars (size, md5), and the first,
  ``s3/arxiv/src/arXiv_src_1501_001.tar``: ``1501/1501.0000N.gz`` members, gzipped ``.tex`` files or a
  gzipped tar of a paper's sources.
- StackExchange: ``archive.org/download/stackexchange/stackoverflow.com-Posts.7z`` holding ``Posts.xml``.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import hashlib
import io
import json
import re
import tarfile
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"
GITHUB_LIST = "https://data.together.xyz/redpajama-data-1T/v1.0.0/urls/github.txt"
PG19_PAGE_TOKEN = "CgtyYWluLzExLnR4dA=="  # as opaque as GCS's own


def local_name(url: str) -> Path:
    """The path of ``url`` inside a mirror folder (relative), as ``ingest.mirror`` maps it."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        rel = ["s3", parts.netloc, *parts.path.lstrip("/").split("/")]
    else:
        rel = [parts.netloc, *[unquote(c) for c in parts.path.lstrip("/").split("/")]]
    if parts.query:
        rel[-1] += "?" + parts.query.replace("/", "%2F")
    return Path(*rel)


def _put(root: Path, url: str, data: bytes) -> Path:
    path = root / local_name(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def full_inputs() -> dict:
    return yaml.safe_load((REPO / "data_manifest.yaml").read_text())["sources"]


# ---- CommonCrawl -----------------------------------------------------------------------------
def _warc_record(headers: list[tuple[str, str]], body: bytes) -> bytes:
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + f"Content-Length: {len(body)}\r\n\r\n"
    return gzip.compress(head.encode() + body + b"\r\n\r\n", mtime=0)


def _sha1_b32(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def _sample_conversions() -> list[tuple[str, str, str, bytes]]:
    """(uri, date, refers-to, text) of every page of the sample: its WET records, and the text of its
    WARCs' HTML 200 responses (as CommonCrawl's WET has it: the whole page as plain text)."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    out = []
    with open(SAMPLE / "commoncrawl" / "docs-web.warc.wet.gz", "rb") as f:
        for r in ArchiveIterator(f, record_types=WarcRecordType.conversion, parse_http=False):
            out.append((r.headers["WARC-Target-URI"], r.headers["WARC-Date"], r.headers["WARC-Refers-To"], r.reader.read()))
    for name in ("iana.warc.gz", "example-com.warc.gz"):
        with open(SAMPLE / "commoncrawl" / name, "rb") as f:
            for r in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
                if r.http_headers is None or r.http_headers.status_code != 200:
                    continue
                if "html" not in (r.http_headers.get("Content-Type") or ""):
                    continue
                body = r.reader.read()
                text = extract_plain_text(bytes_to_str(body, detect_encoding(body)), main_content=False).strip()
                if text:
                    out.append((r.headers["WARC-Target-URI"], r.headers["WARC-Date"], r.record_id, text.encode()))
    return out


def _wet_file(name: str, records: list[tuple[str, str, str, bytes]]) -> bytes:
    info = b"Software-Info: llamix tests/mirror_support.py\r\nExtracted-Date: Mon, 20 Mar 2017 00:00:00 GMT\r\n"
    blob = [_warc_record([("WARC-Type", "warcinfo"), ("WARC-Date", "2017-03-30T00:00:00Z"), ("WARC-Filename", name),
                          ("WARC-Record-ID", f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, name)}>"),
                          ("Content-Type", "application/warc-fields")], info)]
    for uri, date, refers, text in records:
        rid = uuid.uuid5(uuid.NAMESPACE_URL, f"{name} {uri} {date}")
        blob.append(_warc_record([("WARC-Type", "conversion"), ("WARC-Target-URI", uri), ("WARC-Date", date),
                                  ("WARC-Record-ID", f"<urn:uuid:{rid}>"), ("WARC-Refers-To", refers),
                                  ("WARC-Block-Digest", _sha1_b32(text)), ("Content-Type", "text/plain")], text))
    return b"".join(blob)


def _commoncrawl(root: Path) -> dict:
    conversions = _sample_conversions()
    entries = full_inputs()["commoncrawl"]["inputs"]["full"]
    files = {}
    for i, entry in enumerate(entries):
        dump = re.search(r"CC-MAIN-\d{4}-\d{2}", entry["paths"]).group(0)
        segment = f"14902181863{i}3.38"
        paths = [f"crawl-data/{dump}/segments/{segment}/wet/CC-MAIN-2017032221294{i}-0000{n}-ip-10-233-31-227.ec2.internal.warc.wet.gz"
                 for n in range(3)]
        _put(root, entry["paths"], gzip.compress(("\n".join(paths) + "\n").encode(), mtime=0))
        url = entry["base_url"] + paths[0]
        _put(root, url, _wet_file(paths[0].rsplit("/", 1)[1], conversions[i :: len(entries)]))
        files[url] = len(conversions[i :: len(entries)])
    return files


# ---- C4, GitHub ----------------------------------------------------------------------------------
def _c4(root: Path) -> None:
    url = full_inputs()["c4"]["inputs"]["full"][0]["url_template"].replace("{00000..01023}", "00000")
    _put(root, url, (SAMPLE / "c4" / "c4-train.00000-of-01024.json.gz").read_bytes())


def _repo_files() -> dict[str, list[tuple[str, bytes]]]:
    repos: dict[str, list[tuple[str, bytes]]] = {}
    for entry in sorted((SAMPLE / "github").iterdir()):
        if entry.is_dir():
            repos[entry.name] = [(p.relative_to(entry).as_posix(), p.read_bytes()) for p in sorted(entry.rglob("*")) if p.is_file()]
        else:  # markupsafe.tar.gz: one top folder
            with tarfile.open(entry) as tar:
                members = [m for m in tar.getmembers() if m.isfile()]
                repos[entry.name.split(".")[0]] = [(m.name.split("/", 1)[1], tar.extractfile(m).read()) for m in members]
    return repos


def _github(root: Path) -> int:
    from ingest.github import detect_licence

    rows = []
    for repo, files in _repo_files().items():
        texts = [data.decode("utf-8", "replace") for path, data in files
                 if "/" not in path and re.match(r"(?i)(licen[cs]e|copying)", path)]
        licence = detect_licence(texts[0]) if texts else "none"
        for path, data in files:
            text = data.decode("utf-8", "replace")
            lines = text.splitlines() or [""]
            rows.append({"text": text, "meta": {
                "content_hash": hashlib.md5(data).hexdigest(), "timestamp": "", "source": "github",
                "line_count": len(lines), "max_line_length": max(map(len, lines)),
                "avg_line_length": len(text) / len(lines), "alnum_prop": sum(c.isalnum() for c in text) / max(1, len(text)),
                "repo_name": f"sample/{repo}", "id": hashlib.sha1(f"{repo}/{path}".encode()).hexdigest(),
                "size": len(data), "binary": False, "copies": 1, "ref": "refs/heads/main", "path": path,
                "mode": "33188", "license": licence, "language": [], "symlink_target": ""}})
    jsonl = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    base = GITHUB_LIST.rsplit("/urls/", 1)[0] + "/github/"
    names = [f"filtered_{hashlib.md5(jsonl).hexdigest()}.sampled.jsonl", f"filtered_{hashlib.md5(b'2').hexdigest()}.sampled.jsonl"]
    _put(root, GITHUB_LIST, "".join(base + n + "\n" for n in names).encode())
    _put(root, base + names[0], jsonl)
    return len(rows)


# ---- Wikipedia, books ------------------------------------------------------------------------
def multistream(xml_bz2: bytes, pages_per_stream: int = 100) -> bytes:
    """A dump re-laid as ``-multistream.xml.bz2`` is: concatenated bz2 streams, the first holding the
    header up to ``</siteinfo>``, then one per ``pages_per_stream`` pages, the last ``</mediawiki>``."""
    xml = bz2.decompress(xml_bz2)
    first = xml.index(b"<page>")
    last = xml.rindex(b"</page>") + len(b"</page>\n")
    starts = [m.start() for m in re.finditer(rb"  <page>", xml[first - 2 : last])]
    cuts = [first - 2 + starts[i] for i in range(0, len(starts), pages_per_stream)] + [last]
    chunks = [xml[: cuts[0]]] + [xml[a:b] for a, b in zip(cuts, cuts[1:])] + [xml[last:]]
    assert b"".join(chunks) == xml
    return b"".join(bz2.compress(c) for c in chunks)


def _wikipedia(root: Path) -> None:
    entries = full_inputs()["wikipedia"]["inputs"]["full"]
    _put(root, entries[0]["url"], multistream((SAMPLE / "wikipedia" / "enwiki-20160501-pages-articles-sample.xml.bz2").read_bytes()))
    bg = entries[1]["url_template"].format(lang=entries[1]["lang_list"][0])
    assert entries[1]["lang_list"][0] == "bg"
    _put(root, bg, multistream((SAMPLE / "wikipedia" / "bgwiki-20170410-pages-articles-sample.xml.bz2").read_bytes()))


def _gcs_object(name: str, data: bytes) -> dict:
    return {"kind": "storage#object", "id": f"deepmind-gutenberg/{name}/1549907800523839",
            "selfLink": f"https://www.googleapis.com/storage/v1/b/deepmind-gutenberg/o/{name.replace('/', '%2F')}",
            "mediaLink": f"https://storage.googleapis.com/download/storage/v1/b/deepmind-gutenberg/o/{name.replace('/', '%2F')}?generation=1549907800523839&alt=media",
            "name": name, "bucket": "deepmind-gutenberg", "generation": "1549907800523839", "metageneration": "1",
            "contentType": "text/plain", "storageClass": "STANDARD", "size": str(len(data)),
            "md5Hash": base64.b64encode(hashlib.md5(data).digest()).decode(), "crc32c": "AAAAAA==", "etag": "CL/UzqSv3eACEAE=",
            "timeCreated": "2019-02-11T17:56:40.523Z", "updated": "2019-02-11T17:56:40.523Z"}


def _books(root: Path) -> list[str]:
    books = {"train/11.txt": SAMPLE / "books" / "alice.txt", "train/8867.txt": SAMPLE / "books" / "botchan.txt",
             "train/8868.txt": SAMPLE / "books" / "botchan-60col.txt"}
    objs = [_gcs_object(name, path.read_bytes()) for name, path in books.items()]
    for name, path in books.items():
        _put(root, f"https://storage.googleapis.com/deepmind-gutenberg/{name}", path.read_bytes())
    api = "https://storage.googleapis.com/storage/v1/b/deepmind-gutenberg/o?prefix=train/"
    _put(root, api, json.dumps({"kind": "storage#objects", "nextPageToken": PG19_PAGE_TOKEN, "items": objs[:1]}).encode())
    _put(root, api + "&pageToken=" + PG19_PAGE_TOKEN.replace("=", "%3D"), json.dumps({"kind": "storage#objects", "items": objs[1:]}).encode())
    return list(books)


# ---- arXiv, StackExchange ----------------------------------------------------------------------
def arxiv_bulk_tar() -> bytes:
    """``1501/1501.0000N.gz`` papers: gzipped single .tex files, and one gzipped tar of sources."""
    members = []
    for n, name in enumerate(("encguide.tex", "technote.tex", "testmath.tex"), 1):
        members.append((f"1501/1501.0000{n}.gz", gzip.compress((SAMPLE / "arxiv" / name).read_bytes(), mtime=0)))
    members.append(("1501/1501.00004.gz", (SAMPLE / "arxiv" / "clsguide.tar.gz").read_bytes()))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1421366400, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def arxiv_manifest(tars: list[tuple[str, bytes]]) -> bytes:
    files = "".join(
        f"  <file>\n    <content_md5sum>{hashlib.md5(data[:512]).hexdigest()}</content_md5sum>\n"
        f"    <filename>src/{name}</filename>\n    <first_item>1501.00001</first_item>\n"
        f"    <last_item>1501.00004</last_item>\n    <md5sum>{hashlib.md5(data).hexdigest()}</md5sum>\n"
        f"    <num_items>4</num_items>\n    <seq_num>{i}</seq_num>\n    <size>{len(data)}</size>\n"
        f"    <timestamp>2015-02-03 12:08:38</timestamp>\n    <yymm>1501</yymm>\n  </file>\n"
        for i, (name, data) in enumerate(tars, 1))
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<arXivSRC>\n{files}</arXivSRC>\n'.encode()


def arxiv_objects() -> dict[str, bytes]:
    """``KEY -> bytes`` of the arxiv bucket (the manifest and the first bulk tar)."""
    tar = arxiv_bulk_tar()
    second = b"not fetched with --max-files 1"
    return {"src/arXiv_src_manifest.xml": arxiv_manifest([("arXiv_src_1501_001.tar", tar), ("arXiv_src_1501_002.tar", second)]),
            "src/arXiv_src_1501_001.tar": tar}


def _arxiv(root: Path) -> None:
    for key, data in arxiv_objects().items():
        _put(root, f"s3://arxiv/{key}", data)


def _stackexchange(root: Path) -> None:
    import py7zr

    with tempfile.TemporaryDirectory() as tmp:
        with py7zr.SevenZipFile(SAMPLE / "stackexchange" / "softwareengineering.stackexchange.com.7z") as z:
            z.extract(path=tmp, targets=["Posts.xml"])
        posts = (Path(tmp) / "Posts.xml").read_bytes()
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w") as z:
        z.writestr(posts, "Posts.xml")
    entry = full_inputs()["stackexchange"]["inputs"]["full"][0]
    _put(root, entry["url_template"].format(site="stackoverflow.com-Posts"), buf.getvalue())


def build_mirror(root: Path) -> dict:
    """Lay out the whole mirror under ``root``; returns what was laid (for the test's checks)."""
    root.mkdir(parents=True, exist_ok=True)
    info = {"commoncrawl": _commoncrawl(root), "github_rows": _github(root), "books": _books(root)}
    _c4(root)
    _wikipedia(root)
    _arxiv(root)
    _stackexchange(root)
    return info


# ---- the HTTP side -------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        parts = urlsplit(self.path)
        components = [unquote(c) for c in parts.path.lstrip("/").split("/")]
        if any(c in ("", ".", "..") for c in components):
            return self.send_error(400)
        if parts.query:
            components[-1] += "?" + parts.query.replace("/", "%2F")
        path = self.server.root.joinpath(*components)
        self.server.requests.append(self.path)
        if not path.is_file():
            return self.send_error(404)
        data = path.read_bytes()
        start = 0
        m = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        if m and int(m.group(1)) < len(data):
            start = int(m.group(1))
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        self.wfile.write(data[start:])


class MirrorServer:
    """``root`` served over HTTP on 127.0.0.1 (a thread), as ``with MirrorServer(root) as url:``."""

    def __init__(self, root: Path):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.root = Path(root)
        self.httpd.requests = []
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests

    def __enter__(self) -> "MirrorServer":
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
