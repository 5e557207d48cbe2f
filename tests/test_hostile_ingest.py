"""Hostile raw inputs, round two (issue #16): each case builds its own hostile file (bombs on the fly,
compressed to KB) and checks the outcome — a counted exclusion with the right reason, or one clear
line — with memory bounded (the extraction runs in a child process under RLIMIT_AS) and time bounded.
docs/sources.md, "Hostile input", lists every case and its outcome.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import socket
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GiB = 1 << 30
MiB = 1 << 20


# -- the harness: one child process per hostile file -----------------------------------------------


def bounded(snippet: str, *, mem: int = GiB, timeout: float = 60) -> dict:
    """Run ``snippet`` (which sets ``result``) in a child python under an address-space limit of
    ``mem`` bytes; returns {"result", "maxrss_mb" (its peak resident memory), "seconds"}. A
    MemoryError, a crash or a timeout fails the test."""
    code = textwrap.dedent(f"""
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({mem}, {mem}))
        """) + textwrap.dedent(snippet) + textwrap.dedent("""
        # this process's own peak (VmHWM; ru_maxrss would include the forking pytest's)
        hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
        json.dump({"result": result, "maxrss_mb": hwm // 1024}, sys.stdout)
        """)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    out["seconds"] = seconds
    out["stderr"] = proc.stderr
    return out


def extract(source: str, path: Path, params: dict | None = None, **limits) -> tuple[list[dict], dict]:
    """Every record the source's extractor makes of ``path`` (id, metadata, text head, flags), in a
    bounded child; and the run's figures."""
    out = bounded(f"""
        import importlib, pathlib
        ex = importlib.import_module("ingest.{source}").make_extractor({params or {}!r})
        result = [{{"id": d.id, "meta": d.metadata, "text": d.text[:300], "len": len(d.text),
                    "nul": "\\0" in d.text, "warc": "WARC/1." in d.text}} for d in ex(pathlib.Path({str(path)!r}))]
        """, **limits)
    return out["result"], out


def reasons(docs: list[dict]) -> list:
    return [d["meta"].get("reason") for d in docs]


def gzip_repeat(piece: bytes, times: int, head: bytes = b"", tail: bytes = b"") -> bytes:
    """gzip of head + piece * times + tail as a multi-member file, compressing ``piece`` once: a
    stream of hundreds of MB costs KB and milliseconds."""
    one = gzip.compress(piece, 6)
    return gzip.compress(head) + one * times + gzip.compress(tail)


def damage(stream: bytes) -> bytes:
    """A compressed stream with bytes in its middle flipped."""
    data = bytearray(stream)
    for i in range(len(data) // 3, len(data) // 2):
        data[i] ^= 0x5A
    return bytes(data)


# -- 2. multi-stream compressed files ---------------------------------------------------------------


def test_book_with_a_damaged_second_bz2_stream_is_excluded_not_truncated(tmp_path):
    chapters = [(f"Chapter {i}. " + "It was a dark and stormy night. " * 2000 + "\n").encode() for i in range(3)]
    streams = [bz2.compress(c) for c in chapters]
    path = tmp_path / "1342.txt.bz2"
    path.write_bytes(streams[0] + damage(streams[1]) + streams[2])
    docs, run = extract("books", path)
    assert len(docs) == 1 and docs[0]["meta"]["reason"] == "corrupt:bz2"
    meta = docs[0]["meta"]
    assert meta["damaged_stream"] == 2 and meta["streams_decoded"] == 1
    assert meta["compressed_bytes_lost"] == len(streams[1]) + len(streams[2])
    assert run["seconds"] < 30
    path.write_bytes(b"".join(streams))  # the same book, intact: all three streams are read
    (doc,) = extract("books", path)[0]
    assert "reason" not in doc["meta"] and doc["len"] == len(b"".join(chapters).strip())


def test_c4_xz_with_a_damaged_stream_records_the_lost_remainder(tmp_path):
    def lines(k):
        return "".join(json.dumps({"text": f"document {k * 50 + i} " + "words " * 50, "url": "u"}) + "\n"
                       for i in range(50)).encode()

    streams = [lzma.compress(lines(k)) for k in range(3)]
    path = tmp_path / "c4-train.00000-of-01024.json.xz"
    path.write_bytes(streams[0] + damage(streams[1]) + streams[2])
    docs, _ = extract("c4", path)
    assert reasons(docs) == [None] * 50 + ["corrupt:xz"]  # every line of stream 1; one record for the rest
    rest = docs[-1]["meta"]
    assert docs[-1]["id"] == path.name and rest["records_before"] == 50
    assert rest["damaged_stream"] == 2 and rest["compressed_bytes_lost"] == len(streams[1]) + len(streams[2])
    path.write_bytes(b"".join(streams))
    assert reasons(extract("c4", path)[0]) == [None] * 150


def test_wikipedia_multistream_with_a_damaged_stream_is_corrupt_bz2(tmp_path):
    from test_extract_wikipedia import HEAD, page

    head = HEAD.format(lang="en", file_ns="File", cat_ns="Category")
    pages = [page(f"Page {i}", f"Article {i} text. " * 200, page_id=i + 1) for i in range(9)]
    streams = [bz2.compress(head.encode())] + [bz2.compress("".join(pages[k:k + 3]).encode()) for k in (0, 3, 6)]
    streams.append(bz2.compress(b"</mediawiki>\n"))
    path = tmp_path / "enwiki-20240101-pages-articles-multistream.xml.bz2"
    path.write_bytes(streams[0] + streams[1] + damage(streams[2]) + streams[3] + streams[4])
    docs, _ = extract("wikipedia", path)
    assert reasons(docs) == [None, None, None, "corrupt:bz2"]
    assert docs[-1]["meta"]["damaged_stream"] == 3 and docs[-1]["meta"]["records_before"] == 3


# -- 3. StackExchange Posts.xml ---------------------------------------------------------------------


def _posts(tmp_path, name: str, data: bytes) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "Posts.xml").write_bytes(data)  # compressed by magic: a gzip Posts.xml is read as XML
    return folder


POSTS_HEAD = b'<?xml version="1.0" encoding="utf-8"?>\n<posts>\n'


def _question(i: int, body: str = "&lt;p&gt;Question&lt;/p&gt;") -> bytes:
    return (f'  <row Id="{i}" PostTypeId="1" Score="1" CreationDate="2020-01-01T00:00:00.000" Title="Q{i}" '
            f'Body="{body}" Tags="&lt;x&gt;" />\n').encode()


def test_posts_with_a_32mb_multiline_comment_is_read_in_linear_time(tmp_path):
    comment = b"<!-- " + b"c" * 95 + b"\n"
    data = gzip_repeat(comment[5:] * 10_000, 34, head=POSTS_HEAD + _question(1) + b"<!--",
                       tail=b" -->\n" + _question(2) + b"</posts>\n")  # 32 MB of comment lines, ~40 KB
    assert len(data) < 200_000
    docs, run = extract("stackexchange", _posts(tmp_path, "comment.stackexchange.com", data), mem=GiB)
    assert [d["id"] for d in docs] == ["comment.stackexchange.com/1", "comment.stackexchange.com/2"]
    assert reasons(docs) == [None, None] and run["seconds"] < 20


def test_posts_with_endless_text_between_rows_stops_with_too_large(tmp_path):
    text = (b"t" * 99 + b"\n") * 100_000  # 10 MB of text between rows, repeated: 1.5 GB expanded
    data = gzip_repeat(text, 150, head=POSTS_HEAD + _question(1), tail=_question(2) + b"</posts>\n")
    assert len(data) < 8_000_000
    docs, run = extract("stackexchange", _posts(tmp_path, "text.stackexchange.com", data),
                        {"max_record_bytes": 16 * MiB}, mem=GiB)
    assert [(d["id"], d["meta"].get("reason")) for d in docs] == [
        ("text.stackexchange.com/Posts.xml#rest", "too_large"), ("text.stackexchange.com/1", None)]
    assert docs[0]["meta"]["bytes_without_row"] > 16 * MiB
    assert run["maxrss_mb"] < 600 and run["seconds"] < 30


def test_posts_with_a_dtd_entity_is_refused(tmp_path):
    entity = b"&lt;p&gt;" + b"boom " * 200_000  # 1 MB, used 40 times in one Body
    data = (b'<?xml version="1.0"?>\n<!DOCTYPE posts [<!ENTITY e "' + entity + b'">]>\n<posts>\n'
            + _question(1, "&e;" * 40) + b"</posts>\n")
    docs, run = extract("stackexchange", _posts(tmp_path, "dtd.stackexchange.com", gzip.compress(data)), mem=GiB)
    assert [(d["id"], d["meta"].get("reason")) for d in docs] == [
        ("dtd.stackexchange.com/Posts.xml#rest", "corrupt:xml")]
    assert "DTD" in docs[0]["meta"]["error"] and run["maxrss_mb"] < 300


def test_utf16_posts_with_its_xml_declaration_is_read(tmp_path):
    xml = ('<?xml version="1.0" encoding="utf-16"?>\n<posts>\n'
           '  <row Id="1" PostTypeId="1" Score="3" Title="Ünïcode" Body="&lt;p&gt;naïve café 😀&lt;/p&gt;" />\n'
           '  <row Id="2" PostTypeId="2" ParentId="1" Score="1" Body="&lt;p&gt;réponse&lt;/p&gt;" />\n</posts>\n')
    for encoding in ("utf-16", "utf-16-be"):  # with its byte-order mark, and without one
        name = f"{encoding}.stackexchange.com"
        docs, _ = extract("stackexchange", _posts(tmp_path, name, xml.encode(encoding)))
        assert [(d["id"], d["meta"].get("reason")) for d in docs] == [(f"{name}/1", None)]
        assert docs[0]["text"] == "Ünïcode\n\nnaïve café 😀\n\nréponse\n"
        assert docs[0]["meta"]["utf8_errors"] == 0


# -- 4. Wikipedia comments ---------------------------------------------------------------------------


def _wiki_with_comment(path: Path, comment_mb: int) -> Path:
    from test_extract_wikipedia import HEAD, page

    head = (HEAD.format(lang="en", file_ns="File", cat_ns="Category") + page("A", "Alpha text.", page_id=1)).encode()
    tail = (" -->\n" + page("B", "Beta text.", page_id=2) + "</mediawiki>\n").encode()
    path.write_bytes(gzip_repeat(b"x" * 1023 + b"\n", comment_mb * 1024, head=head + b"<!--", tail=tail))
    return path


def test_wikipedia_comment_is_linear_and_bounded(tmp_path):
    docs, run = extract("wikipedia", _wiki_with_comment(tmp_path / "enwiki-a.xml.gz", 32), mem=GiB)
    assert [(d["id"], d["meta"].get("reason")) for d in docs] == [("enwiki/1", None), ("enwiki/2", None)]
    assert run["seconds"] < 15
    # past the page cap, a comment is refused: the rest of the dump is one too_large record
    docs, run = extract("wikipedia", _wiki_with_comment(tmp_path / "enwiki-b.xml.gz", 200),
                        {"max_record_bytes": 16 * MiB}, mem=GiB)
    assert [(d["id"], d["meta"].get("reason")) for d in docs] == [("enwiki/1", None), ("enwiki-b.xml.gz", "too_large")]
    assert run["maxrss_mb"] < 400 and run["seconds"] < 15


# -- 5. memory amplification -------------------------------------------------------------------------


def test_arxiv_paper_of_many_huge_members_is_capped(tmp_path):
    """24 members of 60 MiB (1.4 GiB) in a few MB of tar.gz: the paper's total is capped."""
    member = b"% filler line of a hostile paper\n" * (60 * MiB // 33)
    one = gzip.compress(member, 6)
    parts = []
    for i in range(24):
        info = tarfile.TarInfo(f"part{i}.tex")
        info.size = len(member)
        header = info.tobuf(tarfile.GNU_FORMAT)
        pad = b"\0" * (-len(member) % 512)
        parts.append(gzip.compress(header) + one + gzip.compress(pad))
    path = tmp_path / "2401.00001.tar.gz"
    path.write_bytes(b"".join(parts) + gzip.compress(b"\0" * 1024))
    assert path.stat().st_size < 8 * MiB
    docs, run = extract("arxiv", path, mem=GiB)
    assert [(d["id"], d["meta"].get("reason")) for d in docs] == [("2401.00001", "paper_too_large")]
    assert docs[0]["meta"]["bytes_read"] <= docs[0]["meta"]["max_paper_bytes"]
    assert run["maxrss_mb"] < 700 and run["seconds"] < 30


def test_path_list_of_50m_short_lines_is_one_line_error(tmp_path):
    (tmp_path / "wet.paths.gz").write_bytes(gzip_repeat(b"a\n" * 500_000, 100))  # 50 M lines, ~100 KB
    assert (tmp_path / "wet.paths.gz").stat().st_size < 200_000
    out = bounded(f"""
        from pathlib import Path
        from ingest.download import DownloadError
        from ingest.download_entries import expand_items
        try:
            expand_items([{{"url": "wet.paths.gz", "base_url": "http://h/"}}], Path({str(tmp_path)!r}))
            result = None
        except DownloadError as e:
            result = str(e)
        """, mem=GiB)
    assert out["result"] is not None and "\n" not in out["result"]
    assert out["result"].startswith("path list wet.paths.gz has more than 1,000,000 lines")
    assert out["seconds"] < 20


# -- 7. WARC framing -----------------------------------------------------------------------------------


def _warc(n: int = 5, compress: bool = False) -> bytes:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    out = io.BytesIO()
    w = WARCWriter(out, gzip=compress)
    for i in range(n):
        body = (f"<html><body><article><h1>Page {i}</h1><p>Page {i}: "
                + "a sentence of ordinary text. " * 30 + "</p></article></body></html>").encode()
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        w.write_record(w.create_warc_record(f"http://x.example/{i}", "response", payload=io.BytesIO(body),
                                            http_headers=http))
    return out.getvalue()


def _with_content_length(data: bytes, record: int, change) -> bytes:
    """``data`` with the ``record``-th WARC Content-Length replaced by ``change(old)``."""
    pos = -1
    for _ in range(record + 1):
        pos = data.index(b"\r\nContent-Length: ", pos + 1)
    start = pos + len(b"\r\nContent-Length: ")
    end = data.index(b"\r\n", start)
    return data[:start] + str(change(int(data[start:end]))).encode() + data[end:]


@pytest.mark.parametrize("case, change", [("300 too long", lambda n: n + 300), ("10^15", lambda n: 10**15),
                                          ("30 too short", lambda n: n - 30)])
@pytest.mark.parametrize("compress", [False, True])
def test_warc_with_a_lying_content_length_counts_every_record(tmp_path, case, change, compress):
    data = _warc()
    if compress:  # per-record gzip members, as CommonCrawl writes them
        members, pos = [], 0
        for k in range(5):
            nxt = data.find(b"WARC/1.0\r\n", pos + 1)
            members.append(data[pos:] if nxt < 0 else data[pos:nxt])
            pos = nxt
        members[1] = _with_content_length(members[1], 0, change)
        blob = b"".join(gzip.compress(m) for m in members)
    else:
        blob = _with_content_length(data, 1, change)
    path = tmp_path / ("cc.warc.gz" if compress else "cc.warc")
    path.write_bytes(blob)
    docs, run = extract("commoncrawl", path, mem=GiB)
    assert [(d["meta"].get("url"), d["meta"].get("reason")) for d in docs] == [
        ("http://x.example/0", None), ("http://x.example/1", "corrupt:warc"), ("http://x.example/2", None),
        ("http://x.example/3", None), ("http://x.example/4", None)]  # all five counted, in or out
    assert not any(d["warc"] for d in docs)  # no document carries another record's headers
    assert run["seconds"] < 20


def test_warc_block_digest_mismatch_and_leading_junk(tmp_path):
    data = _warc().replace(b"Page 2: a sentence", b"Page 2: A sentence")  # a flipped byte, framing intact
    path = tmp_path / "flip.warc"
    path.write_bytes(b"junk before the first record\r\n" + data)
    docs, _ = extract("commoncrawl", path)
    assert reasons(docs) == ["corrupt:warc", None, None, "corrupt:warc", None, None]
    assert docs[0]["meta"]["skipped_bytes"] == 30 and docs[0]["id"] == "flip.warc#0"
    assert docs[3]["meta"]["error"] == "WARC-Block-Digest mismatch" and docs[3]["meta"]["url"] == "http://x.example/2"


def test_warc_with_many_lying_oversized_records_is_bounded(tmp_path):
    data = _warc(12)
    for k in range(12):  # every record claims 10 GB: each would need the file read again
        data = _with_content_length(data, k, lambda n: 10 << 30)
    path = tmp_path / "liar.warc"
    path.write_bytes(data)
    docs, run = extract("commoncrawl", path, mem=GiB)
    assert reasons(docs) == ["corrupt:warc"] * 9 + ["corrupt:warc"]  # 9 re-reads, then the rest in one
    assert docs[-1]["id"] == "liar.warc" and "broken Content-Length" in docs[-1]["meta"]["error"]
    assert run["seconds"] < 20


# -- 8. smaller cases ------------------------------------------------------------------------------------


def test_utf16_book_is_decoded_and_a_binary_one_excluded(tmp_path):
    book = "Title: Emma\nAuthor: Jane Austen\n\n*** START OF THE PROJECT GUTENBERG EBOOK EMMA ***\n" \
           "Emma Woodhouse, handsome, clever, and rich — naïve.\n*** END OF THE PROJECT GUTENBERG EBOOK EMMA ***\n"
    for name, data in [("bom.txt", book.encode("utf-16")), ("be.txt.gz", gzip.compress(book.encode("utf-16-be"))),
                       ("nobom.txt", book.encode("utf-16-le"))]:
        (doc,) = extract("books", _write(tmp_path / name, data))[0]
        assert "reason" not in doc["meta"] and not doc["nul"]
        assert doc["text"] == "Emma Woodhouse, handsome, clever, and rich — naïve."
        assert doc["meta"]["title"] == "Emma" and doc["meta"]["encoding"].startswith("utf-16")
    (doc,) = extract("books", _write(tmp_path / "blob.txt", os.urandom(3000) + b"\0" * 3000))[0]
    assert doc["meta"]["reason"] == "binary"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_download_glob_does_not_follow_symlinks(tmp_path):
    from ingest.download import download_all, summarize
    from ingest.download_entries import expand_items

    repo = tmp_path / "repo"
    src = repo / "data" / "books"
    src.mkdir(parents=True)
    (src / "a.txt").write_text("a book\n")
    (src / "passwd.txt").symlink_to("/etc/passwd")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    (src / "sub").symlink_to(outside)  # a folder link: its files are reached through it
    items = expand_items(["data/books/**/*.txt"], repo)
    assert [i.name for i in items] == ["a.txt"]
    dest = tmp_path / "out" / "download" / "books"
    results = download_all(items, dest, progress=False)
    assert summarize(results)["ok"] == 1
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == ["a.txt"]
    assert not any("root:" in p.read_text(errors="replace") for p in dest.rglob("*") if p.is_file())


class _Trickle(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        try:
            if self.path == "/headers":  # the status line and headers, a byte every 0.2 s
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 200:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
                return
            self.send_response(200)
            self.send_header("Content-Length", "200")
            self.end_headers()
            for _ in range(200):  # a byte every 0.1 s: never idle for `timeout`, done after 20 s
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass


@pytest.fixture
def trickle_server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("path", ["/body.bin", "/headers"])
def test_trickling_server_is_cut_off_by_the_deadline(trickle_server, tmp_path, path):
    from ingest.download import DownloadItem, download_all

    start = time.monotonic()
    [r] = download_all([DownloadItem(trickle_server + path)], tmp_path, timeout=3, deadline=1.5, backoff=0,
                       progress=False)
    seconds = time.monotonic() - start
    assert not r.ok and r.reason.startswith("deadline: ") and "\n" not in r.reason
    assert seconds < 6  # the trickle would hold it 20 s
    assert not (tmp_path / path.lstrip("/")).exists()  # only a resumable .part may stay


def test_deadline_is_a_download_stage_param():
    from ingest.download_stage import DownloadStage

    assert DownloadStage.check_params({"deadline": 30}, source="books")["deadline"] == 30
    with pytest.raises(ValueError, match="deadline"):
        DownloadStage.check_params({"deadline": 0}, source="books")


def test_socket_module_is_untouched():
    """The deadline watchdog works per connection: no global socket default is changed."""
    assert socket.getdefaulttimeout() is None
