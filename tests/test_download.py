"""ingest.download, ingest.resumable_http and ingest.download_entries against a real HTTP server on
127.0.0.1 (http.server in a thread, real bytes).

The server misbehaves on request: drops the connection half-way, ignores Range, answers 404/503,
serves bytes that do not match the manifest's sha256, holds requests to measure concurrency.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ingest import download_entries, resumable_http
from ingest.download import DownloadError, DownloadItem, download_all, summarize
from ingest.download_entries import expand_items

BODY = os.urandom(300_000)
SHA = hashlib.sha256(BODY).hexdigest()
FAST = dict(backoff=0.0, timeout=10, progress=False)


class Site:
    """What the server serves (path -> bytes), how it misbehaves (path -> rule), what it saw."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.rules: dict[str, str] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Condition()
        self.inflight = 0
        self.peak = 0
        self.limit = 0

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        site: Site = self.server.site
        path, rng = self.path, self.headers.get("Range")
        with site.lock:
            site.requests.append((path, rng))
            n = site.count(path)
        rule = site.rules.get(path, "normal")
        body = site.files.get(path)
        if rule.startswith("status:"):
            return self.send_error(int(rule.split(":")[1]))
        if rule.startswith("redirect:"):
            self.send_response(302)
            self.send_header("Location", rule.split(":", 1)[1])
            self.send_header("Content-Length", "0")
            return self.end_headers()
        if rule == "flaky" and n <= 2:
            return self.send_error(503)
        if rule == "busy" and n == 1:
            self.send_response(503)
            self.send_header("Retry-After", "3")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        if body is None:
            return self.send_error(404)
        start = 0
        if rng and rule != "ignore_range":
            start = int(re.match(r"bytes=(\d+)-$", rng).group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                return self.end_headers()
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("ETag", '"v1"')
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        payload = body[start:]
        if rule == "trickle":  # 10 kB every 20 ms, so a client can be killed mid-transfer
            for i in range(0, len(payload), 10_000):
                self.wfile.write(payload[i : i + 10_000])
                self.wfile.flush()
                time.sleep(0.02)
            return
        if rule == "stall_first" and n == 1:
            self.wfile.write(payload[:1000])
            self.wfile.flush()
            time.sleep(1.5)  # longer than the client's read timeout
            self.close_connection = True
            return
        if rule in ("drop_first", "ignore_range") and n == 1:
            self.wfile.write(payload[: len(payload) // 2])  # then hang up mid-body
            self.close_connection = True
            return
        if rule == "hold":
            with site.lock:
                site.inflight += 1
                site.peak = max(site.peak, site.inflight)
                site.lock.notify_all()
                # stay in flight until more than `limit` requests are (a breach) or 0.3 s pass
                site.lock.wait_for(lambda: site.inflight > site.limit, timeout=0.3)
            try:
                self.wfile.write(payload)
            finally:
                with site.lock:
                    site.inflight -= 1
            return
        self.wfile.write(payload)


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    site = Site()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.site = site
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    site.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield site
    httpd.shutdown()
    httpd.server_close()


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.rglob("*") if p.name.endswith((".part", ".tmp")))


def test_plain_download_writes_file_and_sidecar(server, tmp_path):
    server.files["/data/a.bin"] = BODY
    [r] = download_all([DownloadItem(f"{server.url}/data/a.bin", SHA)], tmp_path / "dl", **FAST)
    assert r.ok and r.reason is None and r.attempts == 1 and not r.resumed
    assert r.path == tmp_path / "dl" / "a.bin" and r.path.read_bytes() == BODY and r.bytes == len(BODY)
    done = json.loads((tmp_path / "dl" / ".done" / "a.bin.done.json").read_text())
    assert done == {"url": f"{server.url}/data/a.bin", "size": len(BODY), "sha256": SHA}
    assert _leftovers(tmp_path) == []


def test_dropped_connection_is_resumed_with_range(server, tmp_path):
    server.files["/big.bin"] = BODY
    server.rules["/big.bin"] = "drop_first"
    [r] = download_all([DownloadItem(f"{server.url}/big.bin", SHA)], tmp_path, **FAST)
    assert r.ok and r.resumed and r.attempts == 2
    assert r.path.read_bytes() == BODY
    assert server.requests == [("/big.bin", None), ("/big.bin", f"bytes={len(BODY) // 2}-")]
    assert r.bytes == len(BODY)  # half, then the other half: nothing fetched twice


def test_run_that_gives_up_keeps_its_part_for_the_next_run(server, tmp_path):
    server.files["/big.bin"] = BODY
    server.rules["/big.bin"] = "drop_first"
    item = DownloadItem(f"{server.url}/big.bin", SHA)
    [first] = download_all([item], tmp_path, retries=0, **FAST)
    half = len(BODY) // 2
    assert not first.ok and first.reason.startswith(f"network: connection closed after byte {half} of {len(BODY)}")
    assert (tmp_path / "big.bin.part").read_bytes() == BODY[:half] and not (tmp_path / "big.bin").exists()
    [second] = download_all([item], tmp_path, retries=0, **FAST)
    assert second.ok and second.resumed and second.bytes == len(BODY) - half
    assert (tmp_path / "big.bin").read_bytes() == BODY


def test_redirect_is_followed_and_named_after_the_manifest_url(server, tmp_path):
    server.files["/mirror/real.bin"] = BODY
    server.rules["/latest.bin"] = "redirect:/mirror/real.bin"
    [r] = download_all([DownloadItem(f"{server.url}/latest.bin", SHA)], tmp_path, **FAST)
    assert r.ok and r.path == tmp_path / "latest.bin" and r.path.read_bytes() == BODY


def test_process_killed_mid_transfer_resumes_on_rerun(server, tmp_path):
    server.files["/slow.bin"] = BODY
    server.rules["/slow.bin"] = "trickle"
    item = DownloadItem(f"{server.url}/slow.bin", SHA)
    code = ("import sys; from pathlib import Path; from ingest.download import DownloadItem, download_all; "
            f"download_all([DownloadItem({item.url!r}, {SHA!r})], Path(sys.argv[1]), progress=False)")
    repo = Path(__file__).resolve().parent.parent
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=repo,
                             env={**os.environ, "PYTHONPATH": str(repo)})
    part = tmp_path / "slow.bin.part"
    deadline = time.monotonic() + 20
    while not (part.exists() and part.stat().st_size >= 50_000) and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    kept = part.stat().st_size
    assert 50_000 <= kept < len(BODY) and not (tmp_path / "slow.bin").exists()

    [r] = download_all([item], tmp_path, **FAST)
    assert r.ok and r.resumed and r.bytes == len(BODY) - kept
    assert server.requests[-1] == ("/slow.bin", f"bytes={kept}-") and r.path.read_bytes() == BODY


def test_part_left_by_an_interrupted_run_is_resumed(server, tmp_path):
    server.files["/big.bin"] = BODY
    (tmp_path / "big.bin.part").write_bytes(BODY[:100_000])
    [r] = download_all([DownloadItem(f"{server.url}/big.bin", SHA)], tmp_path, **FAST)
    assert r.ok and r.resumed and r.bytes == len(BODY) - 100_000
    assert server.requests == [("/big.bin", "bytes=100000-")]
    assert (tmp_path / "big.bin").read_bytes() == BODY and _leftovers(tmp_path) == []


def test_complete_part_answered_416_is_verified_not_refetched(server, tmp_path):
    server.files["/big.bin"] = BODY
    (tmp_path / "big.bin.part").write_bytes(BODY)  # killed after the last byte, before the rename
    [r] = download_all([DownloadItem(f"{server.url}/big.bin", SHA)], tmp_path, **FAST)
    assert r.ok and r.bytes == 0 and (tmp_path / "big.bin").read_bytes() == BODY


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.files["/big.bin"] = BODY
    server.rules["/big.bin"] = "ignore_range"
    [r] = download_all([DownloadItem(f"{server.url}/big.bin", SHA)], tmp_path, **FAST)
    assert r.ok and not r.resumed and r.attempts == 2
    assert server.requests[1] == ("/big.bin", f"bytes={len(BODY) // 2}-")  # asked, got 200 instead
    assert (tmp_path / "big.bin").read_bytes() == BODY  # not half + whole


def test_wrong_bytes_fail_the_checksum_and_leave_nothing(server, tmp_path):
    server.files["/evil.bin"] = BODY[:-1] + b"X"
    [r] = download_all([DownloadItem(f"{server.url}/evil.bin", SHA)], tmp_path, **FAST)
    assert not r.ok and r.path is None and r.attempts == 1
    assert r.reason.startswith("checksum: sha256 mismatch") and SHA in r.reason and "\n" not in r.reason
    assert list(tmp_path.iterdir()) == []


def test_resumed_part_with_stale_head_is_redownloaded_from_scratch(server, tmp_path):
    server.files["/big.bin"] = BODY
    (tmp_path / "big.bin.part").write_bytes(b"\0" * 1000)  # an older version of the file
    [r] = download_all([DownloadItem(f"{server.url}/big.bin", SHA)], tmp_path, **FAST)
    assert r.ok and not r.resumed and r.attempts == 2
    assert [rng for _, rng in server.requests] == ["bytes=1000-", None]
    assert (tmp_path / "big.bin").read_bytes() == BODY


@pytest.mark.parametrize("code,kind", [(404, "not_found"), (410, "gone"), (403, "permission_denied")])
def test_client_errors_fail_fast_with_one_line(server, tmp_path, code, kind):
    server.rules["/x.gz"] = f"status:{code}"
    (tmp_path / "x.gz.part").write_bytes(b"stale head")  # useless once the file is gone
    [r] = download_all([DownloadItem(f"{server.url}/x.gz")], tmp_path, retries=5, **FAST)
    assert not r.ok and r.attempts == 1 and server.count("/x.gz") == 1
    assert r.reason.startswith(f"{kind}: HTTP {code} ") and r.reason.endswith(f" for {server.url}/x.gz")
    assert "\n" not in r.reason and list(tmp_path.iterdir()) == []


def test_transient_errors_are_retried_then_bounded(server, tmp_path):
    server.files["/flaky.bin"] = BODY
    server.rules["/flaky.bin"] = "flaky"  # 503, 503, then 200
    [ok] = download_all([DownloadItem(f"{server.url}/flaky.bin")], tmp_path / "a", retries=2, **FAST)
    assert ok.ok and ok.attempts == 3 and ok.path.read_bytes() == BODY

    server.rules["/down.bin"] = "status:503"
    [bad] = download_all([DownloadItem(f"{server.url}/down.bin")], tmp_path / "b", retries=2, **FAST)
    assert not bad.ok and bad.attempts == 3 and server.count("/down.bin") == 3
    assert bad.reason.startswith("network: HTTP 503") and "gave up after 3 attempts" in bad.reason

    [refused] = download_all([DownloadItem("http://127.0.0.1:9/nothing")], tmp_path / "c", retries=1, **FAST)
    assert not refused.ok and refused.attempts == 2 and refused.reason.startswith("network: ")


def test_concurrency_is_bounded(server, tmp_path):
    server.limit = 2  # each request stays in flight until a third joins it (or 0.3 s pass)
    items = []
    for i in range(6):
        server.files[f"/c{i}"] = BODY[: 10_000 + i]
        server.rules[f"/c{i}"] = "hold"
        items.append(DownloadItem(f"{server.url}/c{i}"))
    results = download_all(items, tmp_path, max_concurrency=2, **FAST)
    assert all(r.ok for r in results) and [r.bytes for r in results] == [10_000 + i for i in range(6)]
    assert server.peak == 2  # never more than the bound, and the bound was actually used


def test_rerun_downloads_nothing_but_refetches_changed_files(server, tmp_path):
    (tmp_path / "local.txt").write_text("local bytes\n")
    server.files["/a.bin"] = BODY
    server.files["/b.bin"] = BODY[:1000]
    items = [DownloadItem(f"{server.url}/a.bin", SHA), DownloadItem(f"{server.url}/b.bin"),
             DownloadItem((tmp_path / "local.txt").as_uri())]
    dest = tmp_path / "dl"
    first = download_all(items, dest, **FAST)
    assert all(r.ok and r.attempts == 1 for r in first)
    seen = len(server.requests)
    again = download_all(items, dest, **FAST)
    assert len(server.requests) == seen
    assert [(r.ok, r.attempts, r.bytes) for r in again] == [(True, 0, 0)] * 3
    assert summarize(again)["skipped_complete"] == 3

    (dest / "b.bin").write_bytes(b"truncated")  # size no longer matches the sidecar
    third = download_all(items, dest, **FAST)
    assert [r.attempts for r in third] == [0, 1, 0] and (dest / "b.bin").read_bytes() == BODY[:1000]


def test_local_glob_directory_and_file_url_are_copied(tmp_path):
    repo = tmp_path / "repo"
    (repo / "data/sample/c4").mkdir(parents=True)
    for n in ("a", "b"):
        (repo / f"data/sample/c4/{n}.json.gz").write_bytes(gzip.compress(n.encode() * 100))
    (repo / "data/sample/c4/skip.txt").write_text("not matched")
    proj = repo / "data/sample/github/proj"
    (proj / "src").mkdir(parents=True)
    (proj / "README.md").write_text("# proj\n")
    (proj / "src/main.py").write_text("print('hi')\n")
    (proj / "link.py").symlink_to("/etc/hostname")  # never followed out of the tree
    single = tmp_path / "elsewhere" / "single file.txt"
    single.parent.mkdir()
    single.write_bytes(BODY)

    items = expand_items(["data/sample/c4/*.json.gz", "data/sample/github/proj",
                          {"url": single.as_uri(), "sha256": SHA, "name": "books/single.txt"},
                          "data/sample/missing.txt", "data/sample/none/*.gz"], repo)
    names = [i.name for i in items]
    assert names == ["a.json.gz", "b.json.gz", "proj/README.md", "proj/src/main.py", "books/single.txt", None, None]

    dest = tmp_path / "out/sample/download/mixed"
    results = download_all(items, dest, **FAST)
    assert [r.ok for r in results] == [True] * 5 + [False] * 2
    assert (dest / "proj/src/main.py").read_text() == "print('hi')\n"
    assert (dest / "books/single.txt").read_bytes() == BODY
    assert gzip.decompress((dest / "b.json.gz").read_bytes()) == b"b" * 100
    assert not (dest / "proj/link.py").exists()
    assert results[5].reason.startswith("not_found: no such file") and "missing.txt" in results[5].reason
    assert results[6].reason.startswith("not_found: ")
    stats = summarize(results)
    assert stats["in"] == stats["ok"] + sum(stats["excluded"].values()) and stats["excluded"] == {"not_found": 2}


def test_hostile_names_cannot_escape(server, tmp_path):
    server.files["/..%2F..%2Fescape.txt"] = b"payload"
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "link").symlink_to(outside)
    bad_names = ["../x", "/abs/x", "a/../../x", "link/x", "..\\x", "x.part", "a\nb"]
    items = [DownloadItem(f"{server.url}/..%2F..%2Fescape.txt")]
    items += [DownloadItem(f"{server.url}/..%2F..%2Fescape.txt", name=n) for n in bad_names]
    results = download_all(items, dest, **FAST)
    assert results[0].ok and results[0].path.parent == dest and results[0].path.read_bytes() == b"payload"
    assert all(not r.ok and r.reason.startswith("unsafe_name: ") and r.attempts == 0 for r in results[1:])
    assert list(outside.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["dest", "outside"]
    assert server.count("/..%2F..%2Fescape.txt") == 1


def test_duplicate_destinations_are_counted_not_overwritten(server, tmp_path):
    server.files["/one/f.bin"] = b"one"
    server.files["/two/f.bin"] = b"two"
    results = download_all([DownloadItem(f"{server.url}/one/f.bin"), DownloadItem(f"{server.url}/two/f.bin")],
                           tmp_path, **FAST)
    assert results[0].ok and (tmp_path / "f.bin").read_bytes() == b"one"
    assert not results[1].ok and results[1].reason.startswith("duplicate_name: f.bin")


def test_path_list_expands_to_file_urls(server, tmp_path, monkeypatch):
    lines = ["crawl-data/CC-X/segments/1/wet/CC-X-00000.warc.wet.gz",
             "crawl-data/CC-X/segments/1/wet/CC-X-00001.warc.wet.gz",
             "crawl-data/CC-X/segments/2/wet/CC-X-00002.warc.wet.gz"]
    server.files["/crawl-data/CC-X/wet.paths.gz"] = gzip.compress(("\n".join(lines) + "\n").encode())
    for i, line in enumerate(lines):
        server.files["/mirror/" + line] = b"WARC %d" % i
    entry = {"url": f"{server.url}/crawl-data/CC-X/wet.paths.gz", "base_url": f"{server.url}/mirror", "max_files": 2}
    items = expand_items([entry], tmp_path)
    assert [i.url for i in items] == [f"{server.url}/mirror/{line}" for line in lines[:2]]
    results = download_all(items, tmp_path / "cc", **FAST)
    assert [r.path.name for r in results] == ["CC-X-00000.warc.wet.gz", "CC-X-00001.warc.wet.gz"]
    assert (tmp_path / "cc/CC-X-00001.warc.wet.gz").read_bytes() == b"WARC 1"

    with pytest.raises(DownloadError, match=r"^cannot fetch path list .*: not_found: HTTP 404") as info:
        expand_items([f"{server.url}/gone/wet.paths.gz"], tmp_path, retries=3, backoff=0.0)
    assert "\n" not in str(info.value) and server.count("/gone/wet.paths.gz") == 1

    (tmp_path / "local.paths").write_text("\n".join(lines) + "\n")  # plain local list, default base = none
    with pytest.raises(ValueError, match="give it a base_url"):
        expand_items(["local.paths"], tmp_path)

    monkeypatch.setattr(download_entries, "MAX_LIST_BYTES", 1 << 20)  # the real cap is 256 MiB
    (tmp_path / "bomb.paths.gz").write_bytes(gzip.compress(b"crawl-data/x.gz\n" * 70_000))  # 1.1 MiB
    with pytest.raises(DownloadError, match="larger than 1 MiB decompressed"):
        expand_items([{"url": "bomb.paths.gz", "base_url": "http://h/"}], tmp_path)
    (tmp_path / "bad.paths.gz").write_bytes(b"\x1f\x8b not gzip")
    with pytest.raises(DownloadError, match="not valid"):
        expand_items([{"url": "bad.paths.gz", "base_url": "http://h/"}], tmp_path)


@pytest.mark.parametrize("entry,message", [
    ({"url": "http://h/x", "sha265": "00"}, "unknown key"),
    ({"url": "http://h/x", "sha256": "abc"}, "invalid sha256"),
    ({"name": "x"}, "has no 'url'"),
    ({"url": "ftp://h/x"}, "unsupported URL scheme"),
    ({"url": "http://h/x", "max_files": 3}, "only apply to"),
])
def test_bad_entries_raise_one_line(entry, message, tmp_path):
    with pytest.raises(ValueError, match=message) as info:
        expand_items([entry], tmp_path)
    assert "\n" not in str(info.value)


def test_backoff_doubles_with_jitter_and_honours_retry_after(server, tmp_path, monkeypatch):
    slept = []
    monkeypatch.setattr(resumable_http.time, "sleep", slept.append)
    server.rules["/down.bin"] = "status:500"
    [r] = download_all([DownloadItem(f"{server.url}/down.bin")], tmp_path, retries=3, backoff=0.5,
                       timeout=10, progress=False)
    assert r.attempts == 4 and len(slept) == 3
    for k, delay in enumerate(slept):  # backoff * 2**k, times a jitter in [0.5, 1]
        assert 0.5 * 2**k * 0.5 <= delay <= 0.5 * 2**k

    slept.clear()
    server.files["/busy.bin"] = BODY
    server.rules["/busy.bin"] = "busy"  # 503 + Retry-After: 3, then 200
    [r] = download_all([DownloadItem(f"{server.url}/busy.bin")], tmp_path, retries=3, backoff=0.01,
                       timeout=10, progress=False)
    assert r.ok and r.attempts == 2 and slept == [3.0]


def test_stalled_transfer_times_out_and_resumes(server, tmp_path):
    server.files["/slow.bin"] = BODY
    server.rules["/slow.bin"] = "stall_first"
    [r] = download_all([DownloadItem(f"{server.url}/slow.bin", SHA)], tmp_path, backoff=0.0, timeout=0.3,
                       progress=False)
    assert r.ok and r.resumed and r.attempts == 2 and server.requests[1] == ("/slow.bin", "bytes=1000-")
    assert (tmp_path / "slow.bin").read_bytes() == BODY


def test_progress_bar_counts_total_bytes(server, tmp_path, capsys):
    server.files["/a.bin"] = BODY
    server.files["/b.bin"] = BODY[:5000]
    (tmp_path / "local.bin").write_bytes(BODY[:20_000])
    items = [DownloadItem(f"{server.url}/a.bin"), DownloadItem(f"{server.url}/b.bin"),
             DownloadItem((tmp_path / "local.bin").as_uri())]
    results = download_all(items, tmp_path / "dl", backoff=0.0, progress=True)
    assert all(r.ok for r in results)
    final = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert final.startswith("download (3 files): 100%") and "317k/317k" in final
