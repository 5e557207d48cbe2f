"""Wikipedia extractor: golden checks on the real dump excerpts in data/sample/wikipedia and
hostile / synthetic dumps (namespaces, redirects, disambiguation, markup, damage, bombs)."""

import bz2
import collections
import itertools
import pathlib

import mwparserfromhell
import pytest

from ingest import safeio
from ingest.extract import ExtractStage
from ingest.wikipedia import (
    DumpReader,
    WikipediaExtractor,
    is_disambiguation,
    make_extractor,
    strip_comments_and_refs,
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
