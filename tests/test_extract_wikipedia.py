"""Wikipedia extractor: golden checks on the real dump excerpts in data/sample/wikipedia and
hostile / synthetic dumps (namespaces, redirects, disambiguation, markup, damage, bombs)."""

import bz2
import collections
import itertools
import pathlib

import mwparserfromhell
import pytest

import numpy as np

from ingest import safeio
from ingest.cited_urls import CitedUrlWriter, cited_url_files, cited_urls, contains, load_range, normalise_url, partitions, url_hash
from ingest.extract import ExtractStage
from ingest.wikipedia import (
    DumpReader,
    WikipediaExtractor,
    is_disambiguation,
    make_extractor,
    strip_comments_and_refs,
    strip_layout,
)

SAMPLE = pathlib.Path(__file__).resolve().parents[1] / "data" / "sample" / "wikipedia"
ENWIKI = SAMPLE / "enwiki-20160501-pages-articles-sample.xml.bz2"
BGWIKI = SAMPLE / "bgwiki-20170410-pages-articles-sample.xml.bz2"

HEAD = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="{lang}">
  <siteinfo><sitename>Wikipedia</sitename><dbname>{lang}wiki</dbname>
    <namespaces><namespace key="0" case="first-letter" /><namespace key="6" case="first-letter">{file_ns}</namespace>
    <namespace key="14" case="first-letter">{cat_ns}</namespace></namespaces></siteinfo>
"""


def page(title, text, ns=0, page_id=1, redirect=False):
    redirect_tag = f'<redirect title="{title}x" />' if redirect else ""
    return f"""  <page><title>{title}</title><ns>{ns}</ns><id>{page_id}</id>{redirect_tag}
    <revision><id>{page_id}00</id><timestamp>2022-06-01T00:00:00Z</timestamp>
      <text bytes="{len(text)}" xml:space="preserve">{text}</text></revision></page>
"""


def dump(tmp_path, name, pages, lang="de", file_ns="Datei", cat_ns="Kategorie", compress=True, close=True):
    xml = HEAD.format(lang=lang, file_ns=file_ns, cat_ns=cat_ns) + "".join(pages) + ("</mediawiki>\n" if close else "")
    path = tmp_path / name
    path.write_bytes(bz2.compress(xml.encode()) if compress else xml.encode())
    return path


ARTICLE = (
    "{{Infobox Fluss|Name=Rhein|Länge=1233}}\n"
    "'''Der Rhein''' ist ein [[Strom (Gewässer)|Strom]] in [[Mitteleuropa]].<ref>Quelle {{cite|x}}</ref>"
    "<ref name=\"b\" /> Er mündet in die [[Nordsee]]. <!-- versteckter Kommentar -->\n"
    "[[Datei:Rhein.jpg|mini|Der Rhein bei [[Basel]]]]\n"
    "== Verlauf ==\n"
    "Siehe [https://example.org/rhein die Karte] und [https://example.org/raw].\n"
    "* Alpenrhein\n* Hochrhein &amp; Oberrhein\n"
    '{| class="wikitable"\n| Zelle A || Zelle B\n|}\n'
    "[[Kategorie:Fluss in Europa]]\n[[en:Rhine]]\n"
).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_synthetic_dump_markup_and_accounting(tmp_path):
    pages = [
        page("Rhein", ARTICLE, page_id=1),
        page("Kategorie:Flüsse", "[[Rhein]]", ns=14, page_id=2),
        page("Rhine", "#WEITERLEITUNG [[Rhein]]", page_id=3, redirect=True),
        page("Bank", "'''Bank''' steht für:\n* [[Bank (Möbel)]]\n{{Begriffsklärung}}", page_id=4),
        page("Leer", "{{Baustelle}}&lt;!-- nichts --&gt;", page_id=5),
    ]
    docs = list(make_extractor({"languages": ["de", "en"]})(dump(tmp_path, "dewiki-20220601-pages-articles.xml.bz2", pages)))
    assert [d.metadata.get("reason", "kept") for d in docs] == ["kept", "namespace:14", "redirect", "disambiguation", "empty"]
    assert [d.id for d in docs] == ["dewiki/1", "dewiki/2", "dewiki/3", "dewiki/4", "dewiki/5"]
    rhein = docs[0]
    assert rhein.text.splitlines() == [
        "Der Rhein ist ein Strom in Mitteleuropa. Er mündet in die Nordsee.",
        "",
        "Verlauf",
        "Siehe die Karte und .",
        "Alpenrhein",
        "Hochrhein & Oberrhein",
    ]
    assert rhein.metadata == {
        "title": "Rhein", "language": "de", "page_id": 1, "revision_id": 100,
        "timestamp": "2022-06-01T00:00:00Z", "url": "https://de.wikipedia.org/wiki/Rhein",
    }  # fmt: skip


def test_language_from_file_name_or_siteinfo(tmp_path):
    pages = [page("Seine", "La '''Seine''' est un fleuve.", page_id=7)]
    (doc,) = WikipediaExtractor(languages=["en"])(dump(tmp_path, "frwiki-20220601-pages-articles.xml.bz2", pages, lang="fr"))
    assert doc.id == "frwiki-20220601-pages-articles.xml.bz2" and doc.metadata["reason"] == "language:fr"
    unnamed = dump(tmp_path, "sample-dump.xml.bz2", pages, lang="fr")
    (doc,) = WikipediaExtractor(languages=["en"])(unnamed)
    assert doc.metadata["reason"] == "language:fr"
    (doc,) = WikipediaExtractor(languages=["fr"])(unnamed)
    assert doc.text == "La Seine est un fleuve." and doc.metadata["language"] == "fr" and doc.id == "frwiki/7"


def test_truncated_bz2_and_broken_xml_keep_earlier_pages(tmp_path):
    # > 1 bz2 block (900 kB), so a cut near the end leaves a whole block to decode
    pages = [page(f"Seite {i}", f"Text der Seite {i}, Absatz {{}}. " * 300, page_id=i) for i in range(1, 100)]
    pages = [p.format(*range(300)) for p in pages]
    blob = dump(tmp_path, "dewiki-a.xml.bz2", pages).read_bytes()
    cut = tmp_path / "dewiki-cut.xml.bz2"
    cut.write_bytes(blob[:-500])
    docs = list(WikipediaExtractor()(cut))
    assert docs[-1].metadata["reason"] == "truncated:bz2" and docs[-1].id == "dewiki-cut.xml.bz2"
    assert len(docs) > 2 and all("reason" not in d.metadata for d in docs[:-1])
    broken = pages[:3] + ["  <page><title>Kaputt</title><ns>0</ns></revision>\n"] + pages[3:5]
    docs = list(WikipediaExtractor()(dump(tmp_path, "dewiki-b.xml.bz2", broken)))
    assert [d.metadata.get("reason", "kept") for d in docs] == ["kept"] * 3 + ["corrupt:xml"]
    docs = list(WikipediaExtractor()(dump(tmp_path, "dewiki-c.xml", pages[:2], compress=False, close=False)))
    assert docs[-1].metadata["reason"] == "corrupt:xml" and len(docs) == 3  # unclosed document


def test_entity_bomb_is_refused(tmp_path):
    lol = "<!DOCTYPE mediawiki [<!ENTITY a \"aaaaaaaaaa\">" + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8)
    ) + "]>\n"
    xml = lol + HEAD.format(lang="de", file_ns="Datei", cat_ns="Kategorie") + page("Bombe", "&i;") + "</mediawiki>"
    path = tmp_path / "dewiki-bomb.xml"
    path.write_text(xml)
    (doc,) = WikipediaExtractor()(path)
    assert doc.metadata["reason"] == "corrupt:xml"


def test_oversized_page_is_too_large(tmp_path):
    pages = [page("Klein", "kurz", page_id=1), page("Groß", "x" * 5000, page_id=2), page("Danach", "auch kurz", page_id=3)]
    docs = list(WikipediaExtractor(max_record_bytes=1000)(dump(tmp_path, "dewiki-big.xml.bz2", pages)))
    assert [d.metadata.get("reason", "kept") for d in docs] == ["kept", "too_large", "kept"]
    bomb = tmp_path / "dewiki-bomb.xml.bz2"
    bomb.write_bytes(bz2.compress(b"<mediawiki>" + b" " * (4 << 20)))
    assert bomb.stat().st_size < 4096
    (doc,) = WikipediaExtractor(max_expanded_bytes=1 << 20)(bomb)
    assert doc.metadata["reason"] == "too_large"


# -- golden: real dump excerpts -------------------------------------------------------------


def test_golden_enwiki_first_records():
    docs = list(itertools.islice(WikipediaExtractor()(ENWIKI), 20))
    assert collections.Counter(d.metadata.get("reason", "kept") for d in docs) == {"redirect": 17, "kept": 3}
    anarchism = docs[1]
    assert anarchism.id == "enwiki/12" and anarchism.metadata["title"] == "Anarchism"
    assert anarchism.metadata["timestamp"] == "2016-04-22T10:19:33Z"
    assert anarchism.text.startswith("Anarchism is a political philosophy that advocates self-governed societies")
    for markup in ("{{", "}}", "[[", "]]", "<ref", "</ref>", "'''", "thumb|", "Category:", "<!--", "&amp;"):
        assert markup not in anarchism.text, markup
    assert "\nEtymology and terminology\n" in anarchism.text  # heading kept as a plain line


def test_golden_enwiki_pages_and_disambiguation():
    with safeio.open_path(ENWIKI) as stream:
        pages = list(DumpReader(safeio.DEFAULT_MAX_RECORD).pages(stream))
    assert len(pages) == 206 and sum(p.redirect for p in pages) == 100
    wikitext = {p.title: "".join(p.text_parts) for p in pages if p.ns == "0" and not p.redirect}
    disamb = ["Austin (disambiguation)", "Aberdeen (disambiguation)", "Alien", "Ada", "Aa River"]
    articles = ["Albedo", "Alabama", "Achilles"]
    assert all(is_disambiguation(mwparserfromhell.parse(wikitext[t])) for t in disamb)
    assert not any(is_disambiguation(mwparserfromhell.parse(wikitext[t])) for t in articles)


def test_golden_bgwiki_localized_namespaces():
    docs = list(WikipediaExtractor(languages=["bg"])(BGWIKI))
    assert [d.metadata.get("reason", "kept") for d in docs] == ["kept", "namespace:4", "namespace:4"]
    text = docs[0].text
    assert docs[0].id == "bgwiki/558" and docs[0].metadata["language"] == "bg"
    assert text.startswith("Григорианският календар (понякога наричан и Грегориански календар")
    assert "File:" not in text and "Gregory XIII.jpg" not in text and "Категория" not in text


def test_params():
    with pytest.raises(ValueError, match="language: unknown parameter"):
        ExtractStage.check_params({"language": ["en"]}, source="wikipedia")
    assert make_extractor({"languages": ["en"]}).languages == {"en"}


def test_strip_comments_and_refs_is_exact_and_linear():
    text = "a<!-- c -->b<ref name=x/>c<REF>r {{t}}</ref >d<ref>unclosed e<!-- open"
    assert strip_comments_and_refs(text) == "abcd<ref>unclosed e"
    hostile = "<ref>a</ref>" + "<ref>x" * 200_000 + "<ref" * 200_000  # quadratic for a naive regex
    assert strip_comments_and_refs(hostile) == "<ref>x" * 200_000 + "<ref" * 200_000


# ---- tables, files, galleries (issue 14: leaks in enwiki/595 and enwiki/677) ------------------------------

def _sample_articles(*page_ids):
    return {d.id: d.text for d in WikipediaExtractor()(ENWIKI) if d.id in {f"enwiki/{i}" for i in page_ids}}


def test_sample_pages_leak_no_table_or_file_markup():
    texts = _sample_articles(595, 677, 303, 624)
    assert len(texts) == 4
    for doc_id, text in texts.items():
        for markup in ("bgcolor", "[[File:", "thumb|", "{|", "|}", "|-", "[[", "]]", "{{", "colspan", "wikitable"):
            assert markup not in text, (doc_id, markup)
    agassi, ambiguity = texts["enwiki/595"], texts["enwiki/677"]
    # the prose around the singles timeline table (Andre Agassi) stays, the table's cells go
    assert "which will relocate from its campus inside a church.\n\nCareer statistics\n\nSingles timeline overview\n\nGrand Slam Finals\n" in agassi
    assert "By winning the 1999 French Open, Agassi completed a men's singles Career Grand Slam." in agassi
    assert "1992 Wimbledon Championships" not in agassi and "afeeee" not in agassi
    # the prose around the parse-tree figure (Ambiguity) stays, its caption goes
    assert "ambiguous in one context and unambiguous in another.\n\nLinguistic forms\n\nThe lexical ambiguity of a word" in ambiguity
    assert "Structural analysis" not in ambiguity and "Pepe vio" not in ambiguity
    # Alabama's religion table goes; in Alaska a construct the parser could not close swallowed the Economy section
    assert "Religious affiliation in Alabama" not in texts["enwiki/303"]
    assert "\nEconomy\n\nThe 2007 gross state product was $44.9 billion" in texts["enwiki/624"]


def test_no_sample_article_leaks_layout_markup():
    docs = [d for path in (ENWIKI, BGWIKI) for d in WikipediaExtractor()(path) if not d.metadata.get("reason")]
    assert len(docs) == 99
    for doc in docs:
        for markup in ("[[", "]]", "{{", "}}", "{|", "|}", "\n|-", "thumb|", "bgcolor", "__TOC__", "<gallery"):
            assert markup not in doc.text, (doc.id, markup)


def test_strip_layout_tables_files_galleries():
    hidden = {"file", "image", "category", "datei"}
    text = (
        "Intro.\n{| class=wikitable\n|-\n| a || b {| not a table\n|\n :{| nested\n|x\n|}\n|}} after\n"
        "[[File:A.svg|thumb|Caption with [[link]] and '''bold'' [[Image:B.png|20px]]]] text "
        "[[:File:C.svg|a visible link]] [[Datei:D.jpg|mini|x]] [[Category:X]]\n"
        "<gallery mode=packed>\nFile:E.jpg|caption\n</gallery>More. __NOTOC__ __init__ keeps\n"
        "[[File:unclosed [[ok]] end"
    )
    assert strip_layout(text, hidden) == (
        "Intro.\n} after\n text [[:File:C.svg|a visible link]]  \nMore.  __init__ keeps\n[[File:unclosed [[ok]] end"
    )
    assert strip_layout("a\n{| unclosed\n| cell\nrest", hidden) == "a\n"  # runs to the end, as MediaWiki renders it
    assert strip_layout("x <gallery>unclosed y", hidden) == "x <gallery>unclosed y"


def test_strip_layout_is_linear_on_hostile_text():
    import time

    for hostile in ("[[File:" * 300_000, "]]" * 500_000 + "[[" * 500_000, "\n{|" * 300_000, "<gallery>" * 200_000,
                    "[[File:x|" * 100_000 + "]]" * 100_000):
        start = time.perf_counter()
        strip_layout(hostile, {"file"})
        assert time.perf_counter() - start < 5, hostile[:20]


# ---- cited URLs (issue 14: positives of the Wikipedia-reference classifier) ------------------------------

@pytest.mark.parametrize("url, key", [
    ("https://www.Example.ORG/a/b/?q=1#frag", "example.org/a/b?q=1"),
    ("http://example.org:80/a/", "example.org/a"),
    ("https://example.org:443", "example.org"),
    ("//example.org/", "example.org"),
    ("http://user:pw@Example.org:8080/A?", "example.org:8080/A"),
    ("http://example.org/caf\u00e9 x", "example.org/caf%C3%A9%20x"),
    ("http://example.org/%7euser/%2f%e2%82%ac", "example.org/~user/%2F%E2%82%AC"),
    ("http://B\u00fccher.de/x", "xn--bcher-kva.de/x"),
    ("https://web.archive.org/web/20200101000000/http://www.example.org/a/", "example.org/a"),
    ("https://web.archive.org/web/2020id_/example.org/b", "example.org/b"),
    ("https://en.wikipedia.org/wiki/X", None),
    ("https://commons.wikimedia.org/x", None),
    ("ftp://example.org/a", None),
    ("mailto:a@example.org", None),
    ("http:///nohost", None),
])
def test_normalise_url(url, key):
    assert normalise_url(url) == key


def test_cited_urls_in_wikitext():
    wikitext = (
        "A.<ref>{{cite web |url=https://example.org/a |title=T |archive-url=https://web.archive.org/web/2020/https://example.org/a}}</ref> "
        "[http://example.org/b Story], (see http://example.org/c). [//example.org/d x] ''[http://example.org/e]'' "
        "http://example.org/f''italic'' <ref>http://example.org/g?x=1&amp;y=2</ref>"
        "<!-- [http://example.org/hidden] --> [https://de.wikipedia.org/wiki/Y] {{URL|http://example.org/h}} "
        "(http://example.org/i_(j)) mailto:x@example.org"
    )
    assert cited_urls(wikitext) == ["example.org/a", "example.org/b", "example.org/c", "example.org/d", "example.org/e",
                                    "example.org/f", "example.org/g?x=1&y=2", "example.org/h", "example.org/i_(j)"]
    assert cited_urls("a <!-- http://example.org/never closed") == []
    assert cited_urls("http://x" * 2000) == []  # one run of URL characters longer than MAX_URL_CHARS
    assert len(cited_urls(" ".join(f"http://e.org/{i}" for i in range(20_000)))) == 10_000  # MAX_URLS_PER_PAGE


def test_cited_urls_is_linear_on_hostile_text():
    import time

    for hostile in ("<!--" * 300_000, "http://" * 300_000, "[//" * 300_000, "http://a.b " * 300_000 + "<!--"):
        start = time.perf_counter()
        cited_urls(hostile)
        assert time.perf_counter() - start < 5, hostile[:20]


def test_cited_url_writer_parts_and_ranges(tmp_path):
    keys = [f"example.org/{i}" for i in range(1000)]
    writer = CitedUrlWriter(tmp_path / "cited_urls", rank=3, buffer=300)
    writer.add(keys[:600])
    writer.add(keys[400:])  # overlaps: deduplicated when read
    writer.close()
    files = cited_url_files(tmp_path)
    assert [f.name for f in files] == ["00003_000.npy", "00003_001.npy"] and writer.written == 1200
    for f in files:
        arr = np.load(f)
        assert arr.dtype == np.uint64 and (arr[1:] > arr[:-1]).all()
    everything = load_range(files)
    assert len(everything) == 1000 and set(everything.tolist()) == {url_hash(k) for k in keys}
    ranges = [load_range(files, lo, hi) for lo, hi in partitions(7)]
    assert np.array_equal(np.concatenate(ranges), everything)
    assert contains(everything, np.array([url_hash("example.org/5"), url_hash("nope")], dtype=np.uint64)).tolist() == [True, False]
    CitedUrlWriter(tmp_path / "cited_urls", rank=3).close()  # a rerun of task 3 removes what the earlier attempt wrote
    assert cited_url_files(tmp_path) == []


def test_extract_stage_writes_cited_urls_per_task(tmp_path):
    from pipeline.standalone import run_standalone
    from storage.layout import stage_folder_problem

    raw = tmp_path / "raw"
    raw.mkdir()
    dump(raw, "dewiki-20220601-pages-articles.xml.bz2", [page("Rhein", ARTICLE, page_id=1)])
    dump(raw, "enwiki-20220601-pages-articles.xml.bz2", [
        page("A", "x [http://example.org/en y] z", page_id=1),
        page("B", "#REDIRECT [[A]] [http://example.org/redirect]", page_id=2, redirect=True),
    ], lang="en", file_ns="File", cat_ns="Category")
    out = tmp_path / "extract" / "wikipedia"
    stats = run_standalone("extract", raw, out, {"languages": ["de", "en"]}, source="wikipedia", workers=2)
    assert stats["docs_out"] == 2 and stage_folder_problem(out) is None
    files = cited_url_files(out)
    assert [f.name for f in files] == ["00000_000.npy", "00001_000.npy"]
    assert sorted(load_range(files).tolist()) == sorted(url_hash(k) for k in ("example.org/rhein", "example.org/raw", "example.org/en"))
    (out / "cited_urls" / "notes.txt").write_text("mine")
    assert "cited_urls/'notes.txt'" in stage_folder_problem(out)  # only hash files belong there
    off = tmp_path / "off"
    run_standalone("extract", raw, off, {"cited_urls": False}, source="wikipedia", workers=1)
    assert cited_url_files(off) == []
