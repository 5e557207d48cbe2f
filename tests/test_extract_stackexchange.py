"""StackExchange extractor: grouping answers under questions, score order, HTML removal, hostile
dumps. Golden tests run on data/sample/stackexchange (real Python-FAQ text in the Posts.xml schema)."""

import os
import pathlib
import xml.sax.saxutils as su
import zlib

import py7zr
import pytest

from ingest.stackexchange import LARGEST_SITES, make_extractor, site_name

SAMPLE = pathlib.Path(__file__).resolve().parent.parent / "data" / "sample" / "stackexchange"
needs_sample = pytest.mark.skipif(not SAMPLE.exists(), reason="data/sample/stackexchange not present")


def _docs(path, **params):
    return list(make_extractor(params)(path))


def _row(**attrs) -> str:
    return "  <row " + " ".join(f'{k}={su.quoteattr(str(v))}' for k, v in attrs.items()) + " />\n"


def _site(tmp_path, rows: list[str], name="demo.stackexchange.com", head="", tail="</posts>\n"):
    folder = tmp_path / name
    folder.mkdir()
    xml = '<?xml version="1.0" encoding="utf-8"?>\n<posts>\n' + head + "".join(rows) + tail
    (folder / "Posts.xml").write_text(xml, encoding="utf-8")
    return folder


def _q(i, title="T", body="<p>Q</p>", score=1, **kw):
    return _row(Id=i, PostTypeId=1, Score=score, CreationDate=f"2020-01-{i:02d}T00:00:00.000",
                Title=title, Body=body, Tags="<python><faq>", **kw)


def _a(i, parent, score, body="<p>A</p>", day=1):
    return _row(Id=i, PostTypeId=2, ParentId=parent, Score=score, CreationDate=f"2020-02-{day:02d}T00:00:00.000",
                Body=body)


@needs_sample
@pytest.mark.parametrize("entry, questions", [("python.stackexchange.com", 109),
                                              ("softwareengineering.stackexchange.com.7z", 42)])
def test_sample_sites(entry, questions, tmp_path):
    docs = _docs(SAMPLE / entry, work_dir=str(tmp_path))
    assert len(docs) == questions and all("reason" not in d.metadata for d in docs)
    assert not list(tmp_path.iterdir())  # the SQLite scratch file is removed
    for d in docs:
        scores = d.metadata["answer_scores"]
        assert scores == sorted(scores, reverse=True)
        assert "<p>" not in d.text and "&lt;" not in d.text
    multi = [d for d in docs if len(d.metadata["answer_scores"]) > 1]
    assert multi and all(d.metadata["accepted_answer_id"] in d.metadata["answer_ids"] for d in multi)
    assert docs[0].metadata["site"] == entry.removesuffix(".7z") and docs[0].metadata["tags"][0] == "python"


@needs_sample
def test_sample_answer_order_in_text():
    docs = {d.metadata["question_id"]: d for d in _docs(SAMPLE / "python.stackexchange.com")}
    doc = next(d for d in docs.values() if len(d.metadata["answer_scores"]) > 1 and
               d.metadata["answer_ids"] != sorted(d.metadata["answer_ids"]))  # reordering mattered
    title = doc.text.split("\n\n")[0]
    assert doc.metadata["answer_scores"][0] > doc.metadata["answer_scores"][-1]
    assert title.strip() and doc.text.startswith(title)


def test_grouping_order_orphans_and_other_types(tmp_path):
    site = _site(tmp_path, [
        _a(11, 1, 5, "<p>five</p>"),                      # answer before its question
        _q(1, "How?", "<p>Question <b>body</b></p><pre><code>x = 1\nprint(x)\n</code></pre>", AcceptedAnswerId=12),
        _a(12, 1, 9, "<p>nine</p>"),
        _a(13, 1, 5, "<p>five, later</p>", day=3),
        _a(14, 1, 5, "<p>five, earlier</p>", day=2),      # tie on score: creation date decides
        _a(20, 999, 3, "<p>lost</p>"),                     # question not in the dump
        _row(Id=30, PostTypeId=5, Body="tag wiki"),
        _row(PostTypeId=1, Title="no id"),
        _q(2, "Unanswered", "<p>Anyone?</p>", score=-2),
    ])
    docs = _docs(site)
    assert [(d.id, d.metadata.get("reason")) for d in docs] == [
        ("demo.stackexchange.com/30", "post_type:5"), ("demo.stackexchange.com/row:?", "bad_row"),
        ("demo.stackexchange.com/1", None), ("demo.stackexchange.com/2", None),
        ("demo.stackexchange.com/20", "orphan_answer"),
    ]
    q = docs[2]
    assert q.text == "How?\n\nQuestion body\n\nx = 1\nprint(x)\n\nnine\n\nfive\n\nfive, earlier\n\nfive, later\n"
    assert q.metadata["answer_scores"] == [9, 5, 5, 5] and q.metadata["answer_ids"] == [12, 11, 14, 13]
    assert q.metadata["accepted_answer_id"] == 12 and q.metadata["tags"] == ["python", "faq"]
    assert docs[3].metadata["answer_scores"] == [] and docs[3].metadata["score"] == -2


def test_invalid_utf8_and_entities(tmp_path):
    folder = _site(tmp_path, [_q(1, "Caf&amp;e", "<p>ok</p>")])
    raw = (folder / "Posts.xml").read_bytes().replace(b"ok", b"o\xffk")
    (folder / "Posts.xml").write_bytes(raw)
    (doc,) = _docs(folder)
    assert doc.metadata["utf8_errors"] == 1 and "o\ufffdk" in doc.text


def test_corrupt_xml_midway_keeps_what_was_read(tmp_path):
    site = _site(tmp_path, [_q(1), _a(2, 1, 1), "  <row Id=\"3\" PostTypeId=\"1\" <<broken\n", _q(4)])
    docs = _docs(site)
    assert [(d.id, d.metadata.get("reason")) for d in docs] == [
        ("demo.stackexchange.com/Posts.xml#rest", "corrupt:xml"), ("demo.stackexchange.com/1", None)]


def test_huge_line_is_counted_and_skipped(tmp_path):
    site = _site(tmp_path, [_q(1), _row(Id=2, PostTypeId=1, Title="big", Body="x" * 50_000), _q(3)])
    docs = _docs(site, max_record_bytes=10_000)
    assert [(d.id, d.metadata.get("reason")) for d in docs] == [
        ("demo.stackexchange.com/line:4", "too_large"), ("demo.stackexchange.com/1", None),
        ("demo.stackexchange.com/3", None)]


def test_multi_gigabyte_sparse_posts_file(tmp_path):
    folder = tmp_path / "sparse.stackexchange.com"
    folder.mkdir()
    with open(folder / "Posts.xml", "wb") as f:
        f.write(b'<?xml version="1.0" encoding="utf-8"?>\n<posts>\n' + _q(1).encode())
        f.truncate(4 << 30)  # a 4 GiB line of NULs without using disk
    docs = _docs(folder, max_record_bytes=1 << 20, max_expanded_bytes=32 << 20)
    assert [(d.id, d.metadata.get("reason")) for d in docs] == [
        ("sparse.stackexchange.com/Posts.xml#rest", "too_large"), ("sparse.stackexchange.com/1", None)]


def _seven(path, members):
    with py7zr.SevenZipFile(path, "w") as z:
        for name, data in members:
            z.writestr(data, name)
    return path


def _seven_with_traversal(path, posts: bytes):
    """py7zr refuses to write '../' names, so write 'zz/Posts.xml' with a plain (unencoded) header,
    rename it to '../Posts.xml' in place and fix the two header CRCs, as a hostile tool would."""
    with py7zr.SevenZipFile(path, "w") as z:
        z.set_encoded_header_mode(False)
        z.writestr(posts, "Posts.xml")
        z.writestr(b"evil", "zz/Posts.xml")
    blob = bytearray(path.read_bytes())
    offset, size = (int.from_bytes(blob[12 + k * 8: 20 + k * 8], "little") for k in (0, 1))
    start = 32 + offset
    header = bytes(blob[start: start + size]).replace("zz/Posts".encode("utf-16-le"), "../Posts".encode("utf-16-le"))
    blob[start: start + size] = header
    blob[28:32] = zlib.crc32(header).to_bytes(4, "little")
    blob[8:12] = zlib.crc32(bytes(blob[12:32])).to_bytes(4, "little")
    path.write_bytes(bytes(blob))
    return path


def test_7z_dump_variants(tmp_path):
    posts = ('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n' + _q(1) + _a(2, 1, 3) + "</posts>\n").encode()
    so = _seven(tmp_path / "stackoverflow.com-Posts.7z", [("Posts.xml", posts)])
    assert site_name(so) == "stackoverflow.com"
    assert [d.id for d in _docs(so)] == ["stackoverflow.com/1"]
    full = _seven(tmp_path / "demo.stackexchange.com.7z", [("Users.xml", b"<users/>"), ("Posts.xml", posts)])
    assert [d.id for d in _docs(full)] == ["demo.stackexchange.com/1"]
    evil = _seven_with_traversal(tmp_path / "evil.stackexchange.com.7z", posts)
    assert [(d.id, d.metadata.get("reason")) for d in _docs(evil)] == [
        ("evil.stackexchange.com/../Posts.xml", "unsafe_path"), ("evil.stackexchange.com/1", None)]
    assert not (tmp_path / "Posts.xml").exists()
    none = _seven(tmp_path / "empty.stackexchange.com.7z", [("Users.xml", b"<users/>")])
    assert [(d.id, d.metadata["reason"]) for d in _docs(none)] == [("empty.stackexchange.com.7z", "no_posts")]
    blob = full.read_bytes()
    (tmp_path / "cut.stackexchange.com.7z").write_bytes(blob[: len(blob) // 2])
    assert [(d.id, d.metadata["reason"]) for d in _docs(tmp_path / "cut.stackexchange.com.7z")] == [
        ("cut.stackexchange.com.7z", "corrupt:7z")]


def test_accepts_and_site_filter(tmp_path):
    folder = _site(tmp_path, [_q(1)])
    assert make_extractor({}).accepts(folder)
    assert not make_extractor({}).accepts(tmp_path / "nothing")
    assert not make_extractor({"sites": ["math.stackexchange.com"]}).accepts(folder)
    assert len(LARGEST_SITES) == 28 and len(set(LARGEST_SITES)) == 28 and LARGEST_SITES[0] == "stackoverflow.com"
    assert os.path.exists(folder / "Posts.xml")


def test_entity_expansion_bomb_is_refused(tmp_path):
    """A 'billion laughs' DTD: expat's amplification limit stops it; one corrupt:xml record."""
    ents = "".join(f'<!ENTITY l{i} "' + f"&l{i - 1};" * 10 + '">' for i in range(1, 10))
    folder = tmp_path / "lol.stackexchange.com"
    folder.mkdir()
    (folder / "Posts.xml").write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE posts [<!ENTITY l0 "lol">{ents}]>\n<posts>\n'
        '  <row Id="1" PostTypeId="1" Title="&l9;" Body="b" />\n</posts>\n')
    assert [(d.id, d.metadata["reason"]) for d in _docs(folder)] == [("lol.stackexchange.com/Posts.xml#rest", "corrupt:xml")]
