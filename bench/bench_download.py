"""Throughput of ingest.download against the raw library calls it wraps, measured in the same run.

Why: the download stage adds a .part file, a sha256 pass, a sidecar and a progress bar on top of a
plain urllib read / file copy; this shows what that costs. A separate `python -m http.server` process
serves a random file over 127.0.0.1; everything lives in a temporary folder that is removed after.

    .venv/bin/python bench/bench_download.py [--mib 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ingest.download import DownloadItem, download_all  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="llamix-bench-download-") as tmp:
        root = Path(tmp)
        (root / "srv").mkdir()
        src = root / "srv" / "blob.bin"
        src.write_bytes(os.urandom(args.mib << 20))
        sha = hashlib.sha256(src.read_bytes()).hexdigest()
        port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                   "--directory", str(root / "srv")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/blob.bin"
        try:
            _wait_for(url)

            def raw_http():
                with urllib.request.urlopen(url) as resp, open(root / "raw.bin", "wb") as f:
                    shutil.copyfileobj(resp, f, 1 << 20)

            def raw_http_sha():  # the least a verified download must do: read, hash, write
                h = hashlib.sha256()
                with urllib.request.urlopen(url) as resp, open(root / "raw.bin", "wb") as f:
                    while chunk := resp.read(1 << 20):
                        h.update(chunk)
                        f.write(chunk)
                assert h.hexdigest() == sha

            def stage_http():
                shutil.rmtree(root / "dl", ignore_errors=True)
                [r] = download_all([DownloadItem(url, sha)], root / "dl", progress=False)
                assert r.ok, r.reason

            def raw_copy():
                shutil.copyfile(src, root / "copy.bin")

            def stage_copy():
                shutil.rmtree(root / "dlc", ignore_errors=True)
                [r] = download_all([DownloadItem(src.as_uri(), sha)], root / "dlc", progress=False)
                assert r.ok, r.reason

            rows = [("http  urllib read -> file", raw_http), ("http  urllib read+sha256 -> file", raw_http_sha),
                    ("http  download_all (+sha256)", stage_http),
                    ("local shutil.copyfile", raw_copy), ("local download_all (+sha256)", stage_copy)]
            secs = {name: _best(fn, args.repeats) for name, fn in rows}
        finally:
            server.terminate()
            server.wait()
    mib = args.mib
    print(f"{mib} MiB file, best of {args.repeats}")
    for name, s in secs.items():
        print(f"  {name:32s} {s:6.3f} s  {mib / s:8.1f} MiB/s")
    names = list(secs)
    print(f"  ratio http  download_all / urllib          = {secs[names[2]] / secs[names[0]]:.2f}x time")
    print(f"  ratio http  download_all / urllib+sha256   = {secs[names[2]] / secs[names[1]]:.2f}x time")
    print(f"  ratio local download_all / copyfile        = {secs[names[4]] / secs[names[3]]:.2f}x time")


if __name__ == "__main__":
    main()
