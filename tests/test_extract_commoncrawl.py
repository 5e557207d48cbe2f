"""CommonCrawl extractor: golden checks on real captures in data/sample/commoncrawl and
hostile WARCs built with warcio (an independent WARC writer)."""

import collections
import gzip
import io
import json
import pathlib

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from ingest.commoncrawl import CommonCrawlExtractor, make_extractor
from ingest.extract import ExtractStage

SAMPLE = pathlib.Path(__file__).resolve().parents[1] / "data" / "sample" / "commoncrawl"
ARTICLE = (
    "<html><head><title>T</title><style>p{color:red}</style></head><body>"
    "<nav><a href='/'>Home</a> | <a href='/x'>Menu</a></nav>"
    "<article><h1>Tidal power</h1><p>{}</p></article>"
    "<footer>Copyright footer</footer><script>var x = 1;</script></body></html>"
)
PARAGRAPH = "Tidal power converts the energy of tides into electricity. " * 8


def _reasons(docs):
    return collections.Counter(d.metadata.get("reason", "kept") for d in docs)


def _response(writer, url, body: bytes, status="200 OK", ctype="text/html; charset=utf-8", extra=()):
    headers = StatusAndHeaders(status, [("Content-Type", ctype), *extra], protocol="HTTP/1.1")
    writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers))


def build_warc(path: pathlib.Path, compress: bool = True) -> pathlib.Path:
    with open(path, "wb") as out:
        w = WARCWriter(out, gzip=compress)
        w.write_record(w.create_warcinfo_record(path.name, {"software": "test"}))
        req = StatusAndHeaders("GET / HTTP/1.1", [("Host", "a.example")], is_http_request=True)
        w.write_record(w.create_warc_record("http://a.example/", "request", http_headers=req))
        _response(w, "http://a.example/", ARTICLE.replace("{}", PARAGRAPH).encode())
        _response(w, "http://a.example/missing", b"<html>not here</html>", status="404 Not Found")
        _response(w, "http://a.example/logo.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, ctype="image/png")
        cyr = "<html><body><p>Приливна енергия е енергия от приливите.</p></body></html>"
        _response(w, "http://b.example/bg", cyr.encode("cp1251"), ctype="text/html; charset=windows-1251")
        _response(w, "http://c.example/bad", b"<html><body><p>caf\xe9 cr\xe8me is \xff good</p></body></html>")
        _response(w, "http://d.example/gz", gzip.compress(ARTICLE.replace("{}", "Compressed body text.").encode()),
                  extra=[("Content-Encoding", "gzip")])
        _response(w, "http://e.example/empty", b"<html><body><script>only()</script></body></html>")
        meta = w.create_warc_record("http://a.example/", "metadata", payload=io.BytesIO(b"fetchTimeMs: 12\n"),
                                    warc_content_type="application/warc-fields")
        w.write_record(meta)
    return path


def test_every_record_accounted_with_reasons(tmp_path):
    docs = list(make_extractor({"extractor": "resiliparse"})(build_warc(tmp_path / "t.warc.gz")))
    assert _reasons(docs) == {
        "kept": 4, "warc:warcinfo": 1, "warc:request": 1, "warc:metadata": 1,
        "http:404": 1, "not_html": 1, "empty": 1,
    }  # fmt: skip
    assert len({d.id for d in docs}) == len(docs)
    kept = {d.metadata["url"]: d for d in docs if "reason" not in d.metadata}
    article = kept["http://a.example/"]
    assert "Tidal power converts the energy" in article.text
    assert "var x" not in article.text and "color:red" not in article.text and "Copyright footer" not in article.text
    assert article.id.startswith("<urn:uuid:") and article.metadata["warc_record_id"] == article.id
    assert article.metadata["extractor"] == "resiliparse" and article.metadata["content_type"] == "text/html"
    assert article.metadata["date"] and article.metadata["warc_file"] == "t.warc.gz"
    assert "Приливна енергия" in kept["http://b.example/bg"].text
    assert kept["http://b.example/bg"].metadata["charset"] == "cp1251"
    bad = kept["http://c.example/bad"]
    assert bad.metadata["utf8_errors"] == 3 and "\ufffd" in bad.text
    assert "Compressed body text." in kept["http://d.example/gz"].text
    json.dumps([d.metadata for d in docs])  # metadata is JSON-serialisable


def test_trafilatura_is_selectable(tmp_path):
    docs = list(CommonCrawlExtractor(extractor="trafilatura")(build_warc(tmp_path / "t.warc.gz")))
    article = next(d for d in docs if d.metadata.get("url") == "http://a.example/" and "reason" not in d.metadata)
    assert article.metadata["extractor"] == "trafilatura"
    assert "Tidal power converts the energy" in article.text and "var x" not in article.text


def test_unknown_param_and_extractor_are_one_line_errors():
    with pytest.raises(ValueError, match="extracter: unknown parameter"):
        ExtractStage.check_params({"extracter": "resiliparse"}, source="commoncrawl")
    with pytest.raises(ValueError, match="extractor: expected one of resiliparse, trafilatura"):
        ExtractStage.check_params({"extractor": "lynx"}, source="commoncrawl")


def test_truncated_gzip_keeps_earlier_records(tmp_path):
    full = build_warc(tmp_path / "full.warc.gz").read_bytes()
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(full[: int(len(full) * 0.6)])
    docs = list(CommonCrawlExtractor()(cut))
    assert docs[-1].id == "cut.warc.gz" and docs[-1].metadata["reason"] == "truncated:gzip"
    assert docs[-1].metadata["records_before"] == len(docs) - 1 >= 3
    assert any("reason" not in d.metadata for d in docs)


def test_corrupt_gzip_is_counted(tmp_path):
    data = bytearray(build_warc(tmp_path / "full.warc.gz").read_bytes())
    for i in range(len(data) // 2, len(data) - 50, 13):
        data[i] ^= 0xA5
    bad = tmp_path / "bad.warc.gz"
    bad.write_bytes(bytes(data))
    docs = list(CommonCrawlExtractor()(bad))
    assert docs[-1].metadata["reason"] in ("corrupt:gzip", "truncated:gzip", "corrupt:warc")


def test_truncated_record_body_in_plain_warc(tmp_path):
    full = build_warc(tmp_path / "full.warc", compress=False).read_bytes()
    cut_at = full.index(PARAGRAPH.encode()) + 100  # inside the first HTML response's body
    cut = tmp_path / "cut.warc"
    cut.write_bytes(full[:cut_at])
    docs = list(CommonCrawlExtractor()(cut))
    assert [d.metadata.get("reason") for d in docs] == ["warc:warcinfo", "warc:request", "truncated:warc"]


def test_not_a_warc_is_corrupt_warc(tmp_path):
    junk = tmp_path / "junk.warc"
    junk.write_bytes(b"this is not a WARC file\n" * 100)
    (doc,) = CommonCrawlExtractor()(junk)
    assert doc.metadata["reason"] == "corrupt:warc" and doc.id == "junk.warc"


def test_oversized_record_and_bomb_are_too_large(tmp_path):
    path = build_warc(tmp_path / "t.warc.gz")
    docs = list(CommonCrawlExtractor(max_record_bytes=220)(path))
    too_large = {d.metadata["url"] for d in docs if d.metadata.get("reason") == "too_large"}
    assert too_large == {"http://a.example/", "http://d.example/gz"}  # d: 195 B gzip, 264 B expanded
    bomb = tmp_path / "bomb.warc.gz"
    with open(bomb, "wb") as out:
        w = WARCWriter(out, gzip=True)
        _response(w, "http://z.example/", b"<html>" + b" " * (4 << 20) + b"</html>")
    assert bomb.stat().st_size < 64 << 10
    (doc,) = CommonCrawlExtractor(max_expanded_bytes=1 << 20)(bomb)
    assert doc.metadata["reason"] == "too_large"


def test_accepts_only_warc_and_wet(tmp_path):
    ex = CommonCrawlExtractor()
    for name, ok in [("a.warc.gz", True), ("a.warc.wet.gz", True), ("a.warc", True), ("a.arc.gz", False), ("a.txt", False)]:
        (tmp_path / name).write_bytes(b"")
        assert ex.accepts(tmp_path / name) is ok
    assert not ex.accepts(tmp_path)


# -- golden: real captures ------------------------------------------------------------------


def test_golden_iana_warc():
    docs = list(CommonCrawlExtractor()(SAMPLE / "iana.warc.gz"))
    assert len(docs) == 343  # every WARC record of the real iana.org crawl
    reasons = _reasons(docs)
    assert reasons == {
        "warc:request": 171, "warc:revisit": 123, "not_html": 28, "kept": 16, "http:302": 4, "warc:warcinfo": 1,
    }  # fmt: skip
    home = next(d for d in docs if d.metadata.get("url") == "http://www.iana.org/" and "reason" not in d.metadata)
    assert home.text.startswith("Internet Assigned Numbers Authority")
    assert "The Internet Assigned Numbers Authority (IANA) is responsible for the global coordination" in home.text
    assert "<" not in home.text[:2000]
    assert home.metadata["date"] == "2014-01-26T20:06:24Z" and home.metadata["charset"] == "utf-8"


def test_golden_wet_matches_warc_pages():
    wet = [d for d in CommonCrawlExtractor()(SAMPLE / "docs-web.warc.wet.gz") if "reason" not in d.metadata]
    warc = [d for d in CommonCrawlExtractor()(SAMPLE / "docs-web.warc.gz") if "reason" not in d.metadata]
    assert wet and all(d.metadata["extractor"] == "wet" for d in wet)
    assert {d.metadata["url"] for d in warc} <= {d.metadata["url"] for d in wet}
    page = "https://docs.python.org/3.11/library/asyncio-stream.html"
    wet_text = next(d.text for d in wet if d.metadata["url"] == page)
    warc_text = next(d.text for d in warc if d.metadata["url"] == page)
    assert "Streams are high-level async/await-ready primitives" in wet_text
    assert "Streams are high-level async/await-ready primitives" in warc_text
    assert len(warc_text) < len(wet_text)  # main-content extraction drops the navigation WET keeps


def test_file_without_records_is_one_exclusion(tmp_path):
    path = tmp_path / "none.warc.gz"
    path.write_bytes(b"")
    (doc,) = CommonCrawlExtractor()(path)
    assert doc.id == "none.warc.gz" and doc.metadata["reason"] == "empty_file"
