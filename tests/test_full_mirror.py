"""The full profile as a user runs it, from a mirror of the real upstream layout of all seven sources.

``tests/mirror_support.py`` re-lays the embedded sample into each upstream's real format and layout (a
CommonCrawl ``wet.paths.gz`` and WET files of ``conversion`` records, C4 on Hugging Face, RedPajama's
GitHub URL list and JSONL, archive.org's Wikipedia and StackExchange dumps, PG-19's GCS JSON listing,
arXiv's S3 manifest and a bulk tar of ``<id>.gz`` papers) and serves it over HTTP on 127.0.0.1; the test
runs ``python -m pipeline run --profile full --mirror http://127.0.0.1:PORT --max-files 1`` through
``tokenize`` for every source and checks the accounting identity of every stage. The same files read
from a local-folder mirror (``LLAMIX_MIRROR``), and arXiv read from a real S3 API (moto's server on
127.0.0.1, with fake credentials and boto3's endpoint variable) extract to the same documents. Bad
mirrors get one line each, and what was fetched is kept for the rerun.

The manifest is the repository's, inputs and stages untouched; only the heavy model parameters of the
full profile (a 32,000-piece tokenizer, a 65,536-piece LM vocabulary...) are replaced by the sample
profile's, so that it runs in about a minute on two cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from mirror_support import REPO, MirrorServer, arxiv_objects, build_mirror, local_name

pytestmark = pytest.mark.slow

SOURCES = ("commoncrawl", "c4", "github", "wikipedia", "books", "arxiv", "stackexchange")
FILES_WITH_MAX_1 = {"commoncrawl": 5, "c4": 1, "github": 1, "wikipedia": 2, "books": 1, "arxiv": 1, "stackexchange": 1}


def _env(**extra: str) -> dict:
    """The user's environment without any AWS setting or mirror of ours, S3's instance-metadata lookup
    off (nothing may leave 127.0.0.1), no proxy for the local servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "LLAMIX_MIRROR"}
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/nonexistent/aws-config",
               AWS_SHARED_CREDENTIALS_FILE="/nonexistent/aws-credentials", no_proxy="127.0.0.1,localhost",
               NO_PROXY="127.0.0.1,localhost")
    env.update(extra)
    return env


def _run(manifest: Path, *args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "run", "--manifest", str(manifest), "--profile", "full",
                           "--workers", "2", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=env or _env())


def _manifest(path: Path, out: Path) -> Path:
    """The repository's manifest writing into ``out``; the full profile's inputs and stages as they are,
    its heavy model parameters replaced by the sample profile's."""
    from ops.drill import drill_manifest

    raw = yaml.safe_load((REPO / "data_manifest.yaml").read_text())
    light = {k: v for k, v in raw["profiles"]["sample"]["params"].items() if k != "download"}
    return drill_manifest(path, out, profile="full", params=light)


def _rows(folder: Path) -> list[tuple]:
    rows = []
    for shard in sorted(folder.glob("*.parquet")) + sorted(folder.glob("excluded/*.parquet")):
        t = pq.read_table(shard, columns=["id", "text", "metadata"]).to_pylist()
        rows += [(r["id"], r["text"], r["metadata"]) for r in t]
    return sorted(rows)


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.startswith(("failed:", "error:"))]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    from filters.lid_model import LidModelMissing, lid_model_path

    try:
        lid_model_path()
    except LidModelMissing as e:
        pytest.skip(f"{e} (run `make setup`)")
    root = tmp_path_factory.mktemp("mirror")
    info = build_mirror(root)
    return root, info


def test_full_profile_through_tokenize_from_an_http_mirror(mirror, tmp_path):
    root, info = mirror
    manifest = _manifest(tmp_path / "manifest.yaml", tmp_path / "out")
    with MirrorServer(root) as server:
        p = _run(manifest, "--mirror", server.url, "--max-files", "1")
        requests = list(server.requests)
    assert p.returncode == 0, p.stderr[-4000:]
    out = tmp_path / "out" / "full"
    stats = json.loads((out / "report" / "stats.json").read_text())

    # every stage of every source ran, with in == kept + excluded
    for source in SOURCES:
        spec_stages = [next(iter(s)) if isinstance(s, dict) else s
                       for s in yaml.safe_load((REPO / "data_manifest.yaml").read_text())["sources"][source]["stages"]]
        for stage in spec_stages:
            rec = stats["stages"][stage][source]
            assert rec["docs_in"] == rec["docs_out"] + sum(rec["excluded"].values()), (stage, source, rec)
        assert stats["stages"]["tokenize"][source]["docs_out"] > 0, source
        assert list((out / "tokens" / source).glob("*.ds")), source
        assert stats["stages"]["download"][source]["docs_out"] == FILES_WITH_MAX_1[source], source
        assert stats["stages"]["download"][source]["params"]["max_files"] == 1

    # the first file of each entry, and nothing more: no second WET, no second listing page, no second tar
    assert not any("-00001-" in r for r in requests), requests
    assert not any("pageToken" in r for r in requests)
    assert not any("arXiv_src_1501_002" in r for r in requests)
    assert "/s3/arxiv/src/arXiv_src_manifest.xml" in requests
    assert "/storage.googleapis.com/storage/v1/b/deepmind-gutenberg/o?prefix=train/" in requests

    # what is recorded is upstream's: sidecars name the upstream URL, documents carry upstream metadata
    sidecar = json.loads((out / "download" / "arxiv" / ".done" / "arXiv_src_1501_001.tar.done.json").read_text())
    assert sidecar["url"] == "s3://arxiv/src/arXiv_src_1501_001.tar" and sidecar["md5"]
    assert sidecar["via"] == f"{server.url}/s3/arxiv/src/arXiv_src_1501_001.tar"
    book = json.loads((out / "download" / "books" / ".done" / "11.txt.done.json").read_text())
    assert book["url"] == "https://storage.googleapis.com/deepmind-gutenberg/train/11.txt"
    assert "127.0.0.1" not in json.dumps(stats)
    cc = _rows(out / "extract" / "commoncrawl")
    assert sum(info["commoncrawl"].values()) + 5 == len(cc)  # + one warcinfo record per WET file
    meta = [json.loads(m) for _, _, m in cc]
    assert all("127.0.0.1" not in json.dumps(m) for m in meta)
    assert {m["warc_file"] for m in meta} == {url.rsplit("/", 1)[1] for url in info["commoncrawl"]}
    kept = [m for m in meta if not m.get("reason")]
    assert kept and all(m["extractor"] == "wet" and m["url"].startswith("http") for m in kept)
    arxiv_ids = {i for i, _, m in _rows(out / "extract" / "arxiv") if not json.loads(m).get("reason")}
    assert arxiv_ids and arxiv_ids <= {"1501.00001", "1501.00002", "1501.00003", "1501.00004"}
    assert {json.loads(m)["site"] for _, _, m in _rows(out / "extract" / "stackexchange")} == {"stackoverflow.com"}

    # a local-folder mirror (through LLAMIX_MIRROR) extracts the same documents
    other = _manifest(tmp_path / "manifest2.yaml", tmp_path / "out2")
    p = _run(other, "--max-files", "1", "--stages", "extract", env=_env(LLAMIX_MIRROR=str(root)))
    assert p.returncode == 0, p.stderr[-4000:]
    for source in SOURCES:
        assert _rows(tmp_path / "out2" / "full" / "extract" / source) == _rows(out / "extract" / source), source
    # a second run finds every stage complete and fetches nothing
    with MirrorServer(root) as server:
        p = _run(manifest, "--mirror", server.url, "--max-files", "1")
        assert p.returncode == 0 and server.requests == [], p.stderr[-2000:]
    # the trial build is not mistaken for the full one
    p = _run(manifest, "--mirror", str(root), "--sources", "c4")
    assert p.returncode == 2 and "--max-files 1" in _one_line(p.stderr)


def test_arxiv_from_a_real_s3_api_server(mirror, tmp_path):
    """Requester-pays S3 through boto3 against moto's S3 server: the same documents as from the mirror."""
    moto_server = pytest.importorskip("moto.server")
    import boto3

    root, _ = mirror
    creds = dict(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
        s3.create_bucket(Bucket="arxiv")
        s3.put_bucket_request_payment(Bucket="arxiv", RequestPaymentConfiguration={"Payer": "Requester"})
        for key, data in arxiv_objects().items():
            s3.put_object(Bucket="arxiv", Key=key, Body=data)
        manifest = _manifest(tmp_path / "manifest.yaml", tmp_path / "out")
        p = _run(manifest, "--sources", "arxiv", "--stages", "extract", "--max-files", "1",
                 env=_env(AWS_ENDPOINT_URL_S3=endpoint, **creds))
        assert p.returncode == 0, p.stderr[-4000:]
    finally:
        server.stop()
    out = tmp_path / "out" / "full"
    sidecar = json.loads((out / "download" / "arxiv" / ".done" / "arXiv_src_1501_001.tar.done.json").read_text())
    assert sidecar["url"] == "s3://arxiv/src/arXiv_src_1501_001.tar" and "via" not in sidecar

    mirrored = tmp_path / "mirrored.yaml"
    _manifest(mirrored, tmp_path / "out2")
    p = _run(mirrored, "--sources", "arxiv", "--stages", "extract", "--max-files", "1", "--mirror", str(root))
    assert p.returncode == 0, p.stderr[-4000:]
    assert _rows(out / "extract" / "arxiv") == _rows(tmp_path / "out2" / "full" / "extract" / "arxiv")
    assert (out / "download" / "arxiv" / "arXiv_src_1501_001.tar").read_bytes() == arxiv_objects()["src/arXiv_src_1501_001.tar"]


def test_bad_mirrors_get_one_line_each_and_keep_what_was_fetched(mirror, tmp_path):
    root, _ = mirror
    bad = tmp_path / "bad"
    shutil.copytree(root, bad)
    manifest = _manifest(tmp_path / "manifest.yaml", tmp_path / "out")
    c4_url = "https://huggingface.co/datasets/allenai/c4/resolve/main/en/c4-train.00000-of-01024.json.gz"
    c4_file = bad / local_name(c4_url)
    c4_bytes = c4_file.read_bytes()
    c4_file.unlink()
    tar_file = bad / local_name("s3://arxiv/src/arXiv_src_1501_001.tar")
    tar_bytes = tar_file.read_bytes()
    tar_file.write_bytes(tar_bytes[:-1] + b"!")  # same size, other bytes: only the md5 can tell

    with MirrorServer(bad) as server:
        # a 404 names the URL (the mirror's, and upstream's); the sources before it are kept
        p = _run(manifest, "--mirror", server.url, "--max-files", "1", "--sources", "commoncrawl,c4", "--stages", "download")
        line = _one_line(p.stderr)
        assert p.returncode == 1 and "404" in line and f"{server.url}/huggingface.co/datasets/allenai/c4/resolve" in line, line
        assert (tmp_path / "out" / "full" / "download" / "commoncrawl" / "_SUCCESS").exists()
        # a wrong md5 names the file
        p = _run(manifest, "--mirror", server.url, "--max-files", "1", "--sources", "arxiv", "--stages", "download")
        line = _one_line(p.stderr)
        assert p.returncode == 1 and "md5 mismatch for arXiv_src_1501_001.tar" in line, line
        assert not list((tmp_path / "out" / "full" / "download" / "arxiv").glob("arXiv_src_*"))  # bad bytes never kept

        # the mirror repaired, the rerun fetches only what it lacked
        c4_file.write_bytes(c4_bytes)
        tar_file.write_bytes(tar_bytes)
        server.requests.clear()
        p = _run(manifest, "--mirror", server.url, "--max-files", "1", "--sources", "commoncrawl,c4,arxiv", "--stages", "download")
        assert p.returncode == 0, p.stderr[-3000:]
        assert sorted(server.requests) == sorted([f"/{local_name(c4_url).as_posix()}",
                                                  "/s3/arxiv/src/arXiv_src_1501_001.tar"]), server.requests

    # real S3 without credentials: one line naming the variables, before any transfer
    shutil.rmtree(tmp_path / "out" / "full" / "download" / "arxiv")
    p = _run(manifest, "--sources", "arxiv", "--stages", "download", "--max-files", "1",
             env=_env(AWS_ENDPOINT_URL_S3="http://127.0.0.1:9"))
    line = _one_line(p.stderr)
    assert p.returncode == 1 and "AWS_ACCESS_KEY_ID" in line and "AWS_SECRET_ACCESS_KEY" in line, line

    # a mirror that is neither a URL nor a folder: exit 2 before anything runs
    p = _run(manifest, "--mirror", str(tmp_path / "nowhere"))
    assert p.returncode == 2 and "no such folder" in _one_line(p.stderr)
