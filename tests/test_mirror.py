"""Mirrors, --max-files, bucket listings and S3 (ingest/mirror.py, ingest/listings.py, ingest/s3.py and
their use in ingest/download*.py), against real servers on 127.0.0.1: an http.server serving a mirror
folder (tests/mirror_support.py) and moto's S3 server. The whole full profile through a mirror is
tests/test_full_mirror.py."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
from pathlib import Path

import pytest

from ingest import s3
from ingest.download import DownloadError, DownloadItem, download_all, summarize
from ingest.download_entries import manifest_items, normalise_entries
from ingest.listings import arxiv_manifest_items, gcs_listing_items
from ingest.mirror import Mirror, MirrorError
from mirror_support import MirrorServer, local_name

FAST = dict(backoff=0.0, timeout=10, progress=False)


@pytest.fixture
def no_aws(monkeypatch):
    """No credentials anywhere boto3 looks, and never the instance-metadata address (only 127.0.0.1)."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(s3, "_clients", {})


def _put(root: Path, url: str, data: bytes) -> Path:
    path = root / local_name(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---- the mapping ---------------------------------------------------------------------------------
def test_mirror_maps_upstream_urls_to_its_layout(tmp_path):
    http = Mirror.from_setting("http://cache.example:8080/mirror/")
    assert http.locate("https://data.commoncrawl.org/crawl-data/CC-MAIN-2017-13/wet.paths.gz") == \
        "http://cache.example:8080/mirror/data.commoncrawl.org/crawl-data/CC-MAIN-2017-13/wet.paths.gz"
    assert http.locate("https://storage.googleapis.com/storage/v1/b/deepmind-gutenberg/o?prefix=train/&pageToken=a%3D") == \
        "http://cache.example:8080/mirror/storage.googleapis.com/storage/v1/b/deepmind-gutenberg/o?prefix=train/&pageToken=a%3D"
    assert http.locate("s3://arxiv/src/arXiv src.tar") == "http://cache.example:8080/mirror/s3/arxiv/src/arXiv%20src.tar"
    assert http.locate("data/sample/c4/x.json.gz") == "data/sample/c4/x.json.gz"  # local inputs are never mirrored
    assert http.locate("file:///x/y") == "file:///x/y"

    local = Mirror.from_setting(str(tmp_path))
    assert local.is_local
    assert local.locate("https://storage.googleapis.com/storage/v1/b/deepmind-gutenberg/o?prefix=train/") == \
        str(tmp_path / "storage.googleapis.com/storage/v1/b/deepmind-gutenberg/o?prefix=train%2F")
    assert local.locate("https://h.org/a%20b/c.txt") == str(tmp_path / "h.org/a b/c.txt")
    assert local.locate("s3://arxiv/src/arXiv_src_0001_001.tar") == str(tmp_path / "s3/arxiv/src/arXiv_src_0001_001.tar")
    assert Mirror.from_setting(tmp_path.as_uri()).base == str(tmp_path.resolve())
    assert local.locate("s3://b/k?v=1#x") == str(tmp_path / "s3/b/k?v=1#x")  # a key's ? and # are its own
    assert http.locate("s3://b/k?v=1#x") == "http://cache.example:8080/mirror/s3/b/k%3Fv%3D1%23x"
    assert s3.split("s3://b/k?v=1#x") == ("b", "k?v=1#x")

    for url in ("https://h/../etc/passwd", "https://h/a/%2e%2e/b", "https://h/a%2Fb", "s3://b/../k"):
        with pytest.raises(MirrorError, match="cannot be mapped"):
            local.locate(url)
    assert Mirror().locate("s3://arxiv/src/x.tar") == "s3://arxiv/src/x.tar"
    assert not Mirror.from_setting("  ")
    for bad, message in (("ftp://h/x", "not ftp://"), (str(tmp_path / "none"), "no such folder"),
                         ("http://h/x?y=1", "without a query")):
        with pytest.raises(MirrorError, match=message) as info:
            Mirror.from_setting(bad)
        assert "\n" not in str(info.value)


def test_mirror_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMIX_MIRROR", str(tmp_path))
    assert Mirror.from_env().base == str(tmp_path.resolve())
    monkeypatch.delenv("LLAMIX_MIRROR")
    assert not Mirror.from_env()


# ---- --max-files on every kind of entry ------------------------------------------------------------
def test_max_files_caps_templates_language_and_site_lists():
    c4 = {"url_template": "https://huggingface.co/datasets/allenai/c4/resolve/main/en/c4-train.{00000..01023}-of-01024.json.gz"}
    assert len(normalise_entries([c4])) == 1024
    assert normalise_entries([c4], max_files=2) == [
        "https://huggingface.co/datasets/allenai/c4/resolve/main/en/c4-train.00000-of-01024.json.gz",
        "https://huggingface.co/datasets/allenai/c4/resolve/main/en/c4-train.00001-of-01024.json.gz"]
    assert len(normalise_entries([{**c4, "max_files": 3}], max_files=5)) == 3  # the smaller cap wins
    wiki = {"lang_list": ["bg", "ca", "cs"], "url_template": "https://archive.org/download/{lang}wiki-20220701/{lang}wiki.xml.bz2"}
    assert normalise_entries([wiki], max_files=1) == ["https://archive.org/download/bgwiki-20220701/bgwiki.xml.bz2"]
    se = {"site_list": "largest28", "url_template": "https://archive.org/download/stackexchange/{site}.7z"}
    assert len(normalise_entries([se])) == 28
    assert normalise_entries([se], max_files=2) == ["https://archive.org/download/stackexchange/stackoverflow.com-Posts.7z",
                                                    "https://archive.org/download/stackexchange/math.stackexchange.com.7z"]
    assert normalise_entries([{"paths": "https://h/wet.paths.gz"}], max_files=4) == [{"url": "https://h/wet.paths.gz", "max_files": 4}]
    assert normalise_entries([{"url_list": "https://h/u.txt"}], max_files=4) == [{"url_list": "https://h/u.txt", "max_files": 4}]
    for entry, message in (({"url_list": "x", "lang_list": []}, "unknown key"), ({"gcs_listing": "https://h/"}, "gs://"),
                           ({"url": "gs://b/p/"}, "gcs_listing"), ({"url": "s3://arxiv/src/"}, "arxiv_manifest"),
                           ({"url_template": "https://h/{lang}", "lang_list": "en"}, "list of names"),
                           ({"url_template": "https://h/{nope}", "site_list": ["a"]}, "cannot fill")):
        with pytest.raises(ValueError, match=message) as info:
            normalise_entries([entry])
        assert "\n" not in str(info.value)


def test_mirror_serves_path_lists_url_lists_and_listings_with_max_files(tmp_path, no_aws):
    root = tmp_path / "mirror"
    wets = [f"crawl-data/CC-X/segments/1/wet/CC-X-0000{i}.warc.wet.gz" for i in range(3)]
    _put(root, "https://data.commoncrawl.org/crawl-data/CC-X/wet.paths.gz", gzip.compress("\n".join(wets).encode()))
    for w in wets:
        _put(root, "https://data.commoncrawl.org/" + w, w.encode())
    urls = [f"https://data.together.xyz/rp/github/f{i}.jsonl" for i in range(3)]
    _put(root, "https://data.together.xyz/rp/urls/github.txt", ("# RedPajama\n" + "\n".join(urls) + "\n").encode())
    for u in urls:
        _put(root, u, u.encode())
    entries = [{"paths": "https://data.commoncrawl.org/crawl-data/CC-X/wet.paths.gz", "base_url": "https://data.commoncrawl.org/"},
               {"url_list": "https://data.together.xyz/rp/urls/github.txt"}]
    with MirrorServer(root) as server:
        items = manifest_items(entries, tmp_path, tmp_path / "lists", max_files=2, mirror=Mirror.from_setting(server.url))
        assert [i.url for i in items] == ["https://data.commoncrawl.org/" + w for w in wets[:2]] + urls[:2]
        results = download_all(items, tmp_path / "dl", mirror=Mirror.from_setting(server.url), **FAST)
        assert all(r.ok for r in results)
        done = json.loads((tmp_path / "dl/.done/f0.jsonl.done.json").read_text())
        assert done["url"] == urls[0] and done["via"] == f"{server.url}/data.together.xyz/rp/github/f0.jsonl"
        assert "/data.commoncrawl.org/crawl-data/CC-X/segments/1/wet/CC-X-00002.warc.wet.gz" not in server.requests
    # the same files from the folder itself: same items, nothing refetched (the sidecars name upstream URLs)
    local = Mirror.from_setting(str(root))
    again = manifest_items(entries, tmp_path, tmp_path / "lists2", max_files=2, mirror=local)
    assert again == items
    assert summarize(download_all(again, tmp_path / "dl", mirror=local, **FAST))["skipped_complete"] == 4

    # a remote URL list may only name remote files
    _put(root, "https://evil.example/list.txt", b"https://ok.example/a\n/etc/passwd\n")
    with pytest.raises(DownloadError, match="'/etc/passwd' is not an http"):
        manifest_items([{"url_list": "https://evil.example/list.txt"}], tmp_path, tmp_path / "lists3", mirror=local)


# ---- listings -------------------------------------------------------------------------------------
def _gcs_page(names: list[str], token: str | None) -> bytes:
    items = [{"name": n, "size": str(len(n)), "md5Hash": base64.b64encode(hashlib.md5(n.encode()).digest()).decode()} for n in names]
    return json.dumps({"kind": "storage#objects", "items": items, **({"nextPageToken": token} if token else {})}).encode()


def test_gcs_listing_is_paged_with_next_page_token(tmp_path):
    root = tmp_path / "mirror"
    api = "https://storage.googleapis.com/storage/v1/b/deepmind-gutenberg/o?prefix=train/"
    _put(root, api, _gcs_page(["train/", "train/10.txt", "train/100.txt"], "tok/1="))
    _put(root, api + "&pageToken=tok%2F1%3D", _gcs_page(["train/1000.txt"], "tok2"))
    _put(root, api + "&pageToken=tok2", _gcs_page(["train/1001.txt"], None))
    for n in ("train/10.txt", "train/100.txt", "train/1000.txt", "train/1001.txt"):
        _put(root, f"https://storage.googleapis.com/deepmind-gutenberg/{n}", n.encode())
    entry = [{"gcs_listing": "gs://deepmind-gutenberg/train/"}]
    with MirrorServer(root) as server:
        mirror = Mirror.from_setting(server.url)
        items = manifest_items(entry, tmp_path, tmp_path / "lists", mirror=mirror)
        assert [i.url.rsplit("/", 1)[1] for i in items] == ["10.txt", "100.txt", "1000.txt", "1001.txt"]
        assert items[0] == DownloadItem("https://storage.googleapis.com/deepmind-gutenberg/train/10.txt",
                                        md5=hashlib.md5(b"train/10.txt").hexdigest(), size=12)
        assert sum("pageToken" in r for r in server.requests) == 2
        server.requests.clear()
        assert len(manifest_items(entry, tmp_path, tmp_path / "lists", max_files=2, mirror=mirror)) == 2
        assert server.requests == ["/storage.googleapis.com/storage/v1/b/deepmind-gutenberg/o?prefix=train/"]
        results = download_all(items, tmp_path / "books", mirror=mirror, **FAST)
        assert all(r.ok for r in results) and (tmp_path / "books/1001.txt").read_bytes() == b"train/1001.txt"

    pages = {"a": _gcs_page(["p/x"], "t"), "t": _gcs_page(["p/y"], "t")}
    with pytest.raises(DownloadError, match="repeats an earlier page"):
        gcs_listing_items("gs://b/p/", lambda url: pages["t" if "pageToken" in url else "a"])
    with pytest.raises(DownloadError, match="not JSON"):
        gcs_listing_items("gs://b/p/", lambda url: b"<html>")
    with pytest.raises(DownloadError, match="cannot fetch GCS listing .*404"):
        with MirrorServer(root) as server:
            manifest_items([{"gcs_listing": "gs://nobucket/x/"}], tmp_path, tmp_path / "l", mirror=Mirror.from_setting(server.url), retries=0)


ARXIV_XML = b"""<?xml version='1.0' encoding='UTF-8'?>
<arXivSRC>
  <file><content_md5sum>aa</content_md5sum><filename>src/arXiv_src_0001_001.tar</filename>
    <md5sum>949ae880fbaf4649a02a91512f2a5b5e</md5sum><num_items>2364</num_items><size>225605507</size><yymm>0001</yymm></file>
  <file><filename>src/arXiv_src_0001_002.tar</filename><md5sum>0123456789abcdef0123456789abcdef</md5sum><size>42</size></file>
</arXivSRC>
"""


def test_arxiv_manifest_lists_tars_with_size_and_md5():
    items = arxiv_manifest_items("s3://arxiv/src/arXiv_src_manifest.xml", ARXIV_XML)
    assert items == [DownloadItem("s3://arxiv/src/arXiv_src_0001_001.tar", md5="949ae880fbaf4649a02a91512f2a5b5e", size=225605507),
                     DownloadItem("s3://arxiv/src/arXiv_src_0001_002.tar", md5="0123456789abcdef0123456789abcdef", size=42)]
    assert len(arxiv_manifest_items("s3://arxiv/src/arXiv_src_manifest.xml", ARXIV_XML, limit=1)) == 1
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><arXivSRC>&b;</arXivSRC>'
    for raw, message in ((bomb, "entity declarations"), (b"<arXivSRC><file><filename>src/x.tar</filename></file></arXivSRC>", "no <size>"),
                         (b"<arXivSRC></arXivSRC>", "lists no <file>"), (b"not xml", "not valid XML"),
                         (b"<a><file><filename>../x.tar</filename><size>1</size><md5sum>x</md5sum></file></a>", "unexpected filename")):
        with pytest.raises(DownloadError, match=message):
            arxiv_manifest_items("s3://arxiv/src/arXiv_src_manifest.xml", raw)


def test_listed_size_and_md5_are_checked_and_name_the_file(tmp_path):
    src = tmp_path / "arXiv_src_0001_001.tar"
    src.write_bytes(b"tar bytes")
    good = hashlib.md5(b"tar bytes").hexdigest()
    results = download_all([DownloadItem(str(src), md5="0" * 32, name="a.tar"), DownloadItem(str(src), size=3, name="b.tar"),
                            DownloadItem(str(src), sha256="1" * 64, name="c.tar"), DownloadItem(str(src), md5=good, size=9, name="d.tar")],
                           tmp_path / "dl", **FAST)
    assert results[0].reason.startswith("checksum: md5 mismatch for a.tar: expected 000")
    assert results[1].reason.startswith("checksum: size mismatch for b.tar: expected 3 bytes, got 9")
    assert results[2].reason.startswith("checksum: sha256 mismatch for c.tar")
    assert results[3].ok and json.loads((tmp_path / "dl/.done/d.tar.done.json").read_text())["md5"] == good
    assert not (tmp_path / "dl/a.tar").exists() and not list((tmp_path / "dl").glob("*.part"))
    with pytest.raises(ValueError, match="invalid md5"):
        DownloadItem("s3://b/k", md5="xyz")


# ---- S3 through boto3, against moto's S3 server ------------------------------------------------------
@pytest.fixture
def moto_s3(no_aws, monkeypatch):
    server_mod = pytest.importorskip("moto.server")
    import boto3

    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for k, v in dict(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_ENDPOINT_URL_S3=endpoint).items():
        monkeypatch.setenv(k, v)
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket="arxiv")
    client.put_bucket_request_payment(Bucket="arxiv", RequestPaymentConfiguration={"Payer": "Requester"})
    yield client
    server.stop()


def test_s3_objects_are_read_requester_pays_and_resumed(moto_s3, tmp_path):
    tar = os.urandom(3 << 20)
    moto_s3.put_object(Bucket="arxiv", Key="src/arXiv_src_manifest.xml", Body=(
        "<arXivSRC><file><filename>src/arXiv_src_9901_001.tar</filename>"
        f"<md5sum>{hashlib.md5(tar).hexdigest()}</md5sum><size>{len(tar)}</size></file></arXivSRC>").encode())
    moto_s3.put_object(Bucket="arxiv", Key="src/arXiv_src_9901_001.tar", Body=tar)
    items = manifest_items([{"arxiv_manifest": "s3://arxiv/src/arXiv_src_manifest.xml"}], tmp_path, tmp_path / "lists")
    assert items == [DownloadItem("s3://arxiv/src/arXiv_src_9901_001.tar", md5=hashlib.md5(tar).hexdigest(), size=len(tar))]
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / "arXiv_src_9901_001.tar.part").write_bytes(tar[: 1 << 20])  # left by a killed run
    [r] = download_all(items, dest, **FAST)
    assert r.ok and r.resumed and r.bytes == len(tar) - (1 << 20), r
    assert (dest / "arXiv_src_9901_001.tar").read_bytes() == tar

    [missing] = download_all([DownloadItem("s3://arxiv/src/nope.tar")], dest, **FAST)
    assert missing.reason.startswith("not_found: S3 NoSuchKey") and "s3://arxiv/src/nope.tar" in missing.reason
    # a part that already holds every byte (killed before the rename) is verified, not fetched again
    again = tmp_path / "again"
    again.mkdir()
    (again / "arXiv_src_9901_001.tar.part").write_bytes(tar)
    [r] = download_all(items, again, **FAST)
    assert r.ok and r.bytes == 0 and (again / "arXiv_src_9901_001.tar").read_bytes() == tar


def test_s3_server_unreachable_is_retried_then_one_line(no_aws, monkeypatch, tmp_path):
    pytest.importorskip("boto3")
    for k, v in dict(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_ENDPOINT_URL_S3="http://127.0.0.1:9").items():
        monkeypatch.setenv(k, v)
    [r] = download_all([DownloadItem("s3://arxiv/src/x.tar")], tmp_path, retries=1, **FAST)
    assert r.reason.startswith("network: ") and "gave up after 2 attempts" in r.reason and r.attempts == 2


def test_s3_without_credentials_is_one_line_naming_the_variables(no_aws, tmp_path):
    pytest.importorskip("boto3")
    [r] = download_all([DownloadItem("s3://arxiv/src/arXiv_src_0001_001.tar")], tmp_path, retries=3, **FAST)
    assert r.reason.startswith("credentials: ") and "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in r.reason
    assert r.attempts == 1 and "\n" not in r.reason
    with pytest.raises(DownloadError, match="AWS_ACCESS_KEY_ID") as info:
        manifest_items([{"arxiv_manifest": "s3://arxiv/src/arXiv_src_manifest.xml"}], tmp_path, tmp_path / "lists")
    assert "\n" not in str(info.value)
    # through a mirror, s3:// needs no credentials at all
    root = tmp_path / "mirror"
    _put(root, "s3://arxiv/src/arXiv_src_manifest.xml", ARXIV_XML)
    assert len(manifest_items([{"arxiv_manifest": "s3://arxiv/src/arXiv_src_manifest.xml"}], tmp_path, tmp_path / "l2",
                              mirror=Mirror.from_setting(str(root)))) == 2


# ---- the command line ---------------------------------------------------------------------------------
def test_cli_mirror_and_max_files(tmp_path, monkeypatch, capsys):
    from ops.drill import drill_manifest
    from pipeline.__main__ import main
    from pipeline.manifest import load
    from pipeline.runner import SelectionError, check_download_caps

    manifest = drill_manifest(tmp_path / "m.yaml", tmp_path / "out", profile="full")
    assert main(["run", "--manifest", str(manifest), "--profile", "full", "--mirror", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    monkeypatch.setenv("LLAMIX_MIRROR", "ftp://x")
    assert main(["run", "--manifest", str(manifest), "--profile", "full"]) == 2
    assert "not ftp://" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--max-files", "0"])

    m = load(manifest, profile="full")
    m.cap_downloads(1)
    assert {s.stage("download").params["max_files"] for s in m.sources.values()} == {1}
    done = tmp_path / "out/full/download/c4"
    done.mkdir(parents=True)
    (done / "_SUCCESS").write_text(json.dumps({"params": {"max_files": 1}}))
    check_download_caps(m, None)  # the same trial again: fine
    with pytest.raises(SelectionError, match=r"holds a trial download \(--max-files 1\) and this run asks for every file"):
        check_download_caps(load(manifest, profile="full"), ["c4"])
