"""The Wikipedia-reference classifier: real fastText training on real text, held-out evaluation,
determinism, and the filtering stage."""

from __future__ import annotations

import pytest

from filters.wikiref import MODEL_FILE, WikirefTrainStage, page_chunks
from filters_support import SAMPLE, crawl_pages, make_doc, outputs, wiki_articles, write_docs
from pipeline.executors import make_executor
from pipeline.stages import StageIO
from pipeline.standalone import run_standalone

N_WIKI = 60
PARAMS = {
    "positive": [{"source": "wikipedia", "after": "extract"}, {"source": "books", "after": "extract"}],
    "negative": {"source": "commoncrawl", "after": "langid"},
    "dim": 32, "epochs": 25, "lr": 0.5, "wordNgrams": 2, "bucket": 100_000, "heldout_fraction": 0.2,
    "seed": 0, "max_examples": 5000, "positive_chunk_chars": 3000, "negative_chunk_chars": 2000, "max_chunks_per_doc": 10,
}


def unseen_crawl_pages() -> list[str]:
    return [p for i, p in enumerate(crawl_pages()) if i % 4 == 0]


def train(root, params=PARAMS):
    wiki = write_docs(root / "extract" / "wikipedia", [make_doc(f"w{i}", t, "wikipedia") for i, t in enumerate(wiki_articles(80)[:N_WIKI])])
    books = write_docs(root / "extract" / "books", [make_doc(n, (SAMPLE / "books" / n).read_text(encoding="utf-8"), "books") for n in ("alice.txt", "botchan.txt")])
    seen = [p for i, p in enumerate(crawl_pages()) if i % 4 != 0]
    cc = write_docs(root / "langid" / "commoncrawl", [make_doc(f"cc{i}", t) for i, t in enumerate(seen)])
    stage = WikirefTrainStage(params)
    assert stage.requires(None) == [("wikipedia", "extract"), ("books", "extract"), ("commoncrawl", "langid")]
    io = StageIO("wikiref_train", "*", stage.params, None, root / "models" / "wikiref_train", root / ".work" / "wikiref_train", root, make_executor("local", 1))
    return stage.build(io, {"wikipedia": [wiki], "books": [books], "commoncrawl": [cc]})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("profile")
    return root, train(root)


def test_heldout_split_is_separated_well_above_chance(trained):
    _, summary = trained
    ex = summary["examples"]
    assert ex["positive_heldout"] >= 10 and ex["negative_heldout"] >= 10
    assert ex["positive_heldout"] == ex["negative_heldout"]  # balanced: chance is 0.5
    held = summary["heldout"]
    assert held["accuracy"] >= 0.85, summary
    assert held["precision"] >= 0.8 and held["recall"] >= 0.8, summary


def test_training_is_deterministic_for_a_seed(trained, tmp_path):
    root, summary = trained
    again = train(tmp_path)
    assert again["heldout"] == summary["heldout"] and again["examples"] == summary["examples"]
    assert (tmp_path / "models" / "wikiref_train" / MODEL_FILE).read_bytes() == (root / "models" / "wikiref_train" / MODEL_FILE).read_bytes()


def test_stage_keeps_unseen_articles_and_drops_unseen_crawl_pages(trained, tmp_path):
    root, _ = trained
    articles = [page_chunks(t, 3000)[0] for t in wiki_articles(80)[N_WIKI:]]
    pages = unseen_crawl_pages()
    docs = [make_doc(f"article{i}", t) for i, t in enumerate(articles)] + [make_doc(f"page{i}", t) for i, t in enumerate(pages)]
    write_docs(tmp_path / "in", docs, shards=2)
    stats = run_standalone("wikiref", tmp_path / "in", tmp_path / "out", {"threshold": 0.25}, models_root=root, workers=2)
    kept, excluded = outputs(tmp_path / "out")
    assert sum(i.startswith("article") for i in kept) >= 0.8 * len(articles)
    assert sum(i.startswith("page") for i in excluded) >= 0.7 * len(pages)
    for doc in excluded.values():
        score = doc.metadata["wikiref_score"]
        assert score < 0.25 and doc.metadata["reason"] == f"wikiref:{score:.2f}"
    assert all(d.metadata["wikiref_score"] >= 0.25 for d in kept.values())
    assert stats["docs_in"] == len(docs) and set(stats["excluded"]) == {"wikiref"}


def test_too_few_examples_is_one_line(tmp_path):
    (tmp_path / "w").mkdir()
    write_docs(tmp_path / "w", [make_doc("a", "one article only", "wikipedia")])
    write_docs(tmp_path / "c", [make_doc("b", "one page only")])
    stage = WikirefTrainStage({"positive": [{"source": "wikipedia", "after": "extract"}]})
    io = StageIO("wikiref_train", "*", stage.params, None, tmp_path / "m", tmp_path / "work", tmp_path, make_executor("local", 1))
    with pytest.raises(ValueError, match="too few positive examples"):
        stage.build(io, {"wikipedia": [tmp_path / "w"], "commoncrawl": [tmp_path / "c"]})


def test_page_chunks_cut_at_paragraphs():
    text = "\n".join(f"paragraph {i} " + "word " * 50 for i in range(20))
    chunks = page_chunks(text, 1000)
    assert all(len(c) >= 1000 for c in chunks[:-1]) and "\n".join(chunks) in text
    assert page_chunks("short", 1000) == ["short"]


# ---- positives from Wikipedia's references (LLaMA's recipe) --------------------------------------------

def _dump(folder, articles: list[tuple[str, str]], redirect_text: str = "") -> None:
    """A tiny enwiki export: (title, wikitext) articles, and a redirect whose links must not count."""
    from xml.sax.saxutils import escape

    pages = [
        f"<page><title>{t}</title><ns>0</ns><id>{i + 1}</id><revision><id>{i + 100}</id>"
        f"<timestamp>2022-06-01T00:00:00Z</timestamp><text>{escape(w)}</text></revision></page>"
        for i, (t, w) in enumerate(articles)
    ]
    if redirect_text:
        pages.append(f"<page><title>R</title><ns>0</ns><id>999</id><redirect title=\"A\" /><revision><id>9</id>"
                     f"<text>{escape(redirect_text)}</text></revision></page>")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "enwiki-20220601-pages-articles.xml").write_text(
        "<mediawiki><siteinfo><dbname>enwiki</dbname></siteinfo>" + "".join(pages) + "</mediawiki>", encoding="utf-8")


N_CITED_SITES = 24


@pytest.fixture(scope="module")
def cited_profile(tmp_path_factory):
    """Wikipedia articles citing URLs in every form, extracted by the real extract stage (which writes
    cited_urls/), and a crawl of Parquet pages of which 28 carry a cited URL (written differently)."""
    from filters_support import book_paragraphs

    root = tmp_path_factory.mktemp("cited")
    citing = "\n".join(f"* [https://site{j}.org/report/{j} Report {j}]" for j in range(N_CITED_SITES))
    _dump(root / "raw", [
        ("A", "'''A''' is a letter.<ref>{{cite web |url=https://www.Example.ORG/news/a/ |title=A "
              "|archive-url=https://web.archive.org/web/20200101000000/http://example.org/news/a}}</ref> "
              "It is [http://example.org/news/b#top story B], <ref>http://EXAMPLE.org:80/news/c</ref>.\n" + citing),
        ("B", "'''B''' <!-- [http://example.org/news/hidden hidden] --> see [https://en.wikipedia.org/wiki/C C] "
              "and {{cite news |url=http://example.org/news/a |title=again}}."),
    ], redirect_text="#REDIRECT [[A]] [http://example.org/news/redirected x]")
    run_standalone("extract", root / "raw", root / "extract" / "wikipedia", {}, source="wikipedia", workers=1)
    texts = book_paragraphs("botchan.txt")
    random_pages = [p for i, p in enumerate(crawl_pages()) if i % 4 != 0]
    cited_urls = ([f"http://www.site{j}.org/report/{j}/" for j in range(N_CITED_SITES)]
                  + ["https://example.org/news/a", "https://example.org/news/b", "https://example.org/news/c/"])
    pages = [make_doc(f"cited{k}", texts[k], url=u) for k, u in enumerate(cited_urls)]
    pages.append(make_doc("cited_again", texts[40], url="https://example.org/news/a#comments"))  # a second capture
    pages += [make_doc("hidden", texts[41], url="https://example.org/news/hidden"),  # only in a comment
              make_doc("redirected", texts[42], url="https://example.org/news/redirected"),  # only on a redirect page
              make_doc("wiki", texts[43], url="https://en.wikipedia.org/wiki/C"),  # Wikipedia itself
              make_doc("nourl", texts[44])]
    pages += [make_doc(f"random{i}", t, url=f"https://random{i}.example.com/page") for i, t in enumerate(random_pages)]
    write_docs(root / "langid" / "commoncrawl", pages, shards=3)
    write_docs(root / "extract" / "books", [make_doc(f"w{i}", t, "books") for i, t in enumerate(wiki_articles(80)[:N_WIKI])])
    return root, len(pages) - 28


def train_on_references(root, tmp_path, **params):
    params = {**PARAMS, "positive": [{"source": "books", "after": "extract"}], "min_reference_positives": 20, **params}
    stage = WikirefTrainStage(params)
    assert stage.requires(None) == [("books", "extract"), ("commoncrawl", "langid"), ("wikipedia", "extract")]
    io = StageIO("wikiref_train", "*", stage.params, None, tmp_path / "models" / "wikiref_train", tmp_path / ".work", tmp_path, make_executor("local", 1))
    return stage.build(io, {"books": [root / "extract" / "books"], "commoncrawl": [root / "langid" / "commoncrawl"],
                            "wikipedia": [root / "extract" / "wikipedia"]})


def test_positives_are_the_crawl_pages_wikipedia_cites(cited_profile, tmp_path):
    root, n_uncited = cited_profile
    summary = train_on_references(root, tmp_path)
    origin = summary["positives"]
    assert origin["used"] == "references" and "fallback" not in origin
    # every cited page, the second capture included; not the commented-out, redirect-page or Wikipedia links
    assert origin["pages_cited"] == 28 and origin["from_references"] == 28 and origin["from_proxy"] == 0
    assert origin["reference_urls"] == N_CITED_SITES + 3  # example.org/news/a|b|c, site0..23 (distinct, normalised)
    assert origin["pages_scanned"] == n_uncited + 28
    assert origin["negative_documents"] == n_uncited  # cited pages are never negatives
    ex = summary["examples"]
    assert ex["positive_train"] + ex["positive_heldout"] <= 28 and ex["positive_heldout"] >= 1


def test_reference_partitions_find_the_same_pages(cited_profile, tmp_path):
    root, _ = cited_profile
    one = train_on_references(root, tmp_path / "one")["positives"]
    three = train_on_references(root, tmp_path / "three", reference_partitions=3)["positives"]
    assert {k: one[k] for k in ("pages_cited", "reference_urls", "pages_scanned", "from_references")} == \
           {k: three[k] for k in ("pages_cited", "reference_urls", "pages_scanned", "from_references")}


def test_too_few_cited_pages_fall_back_to_the_proxy_and_say_so(cited_profile, tmp_path):
    from loguru import logger

    root, _ = cited_profile
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING")
    try:
        summary = train_on_references(root, tmp_path, min_reference_positives=29)
    finally:
        logger.remove(sink)
    origin = summary["positives"]
    assert origin["used"] == "proxy" and origin["from_references"] == 0 and origin["from_proxy"] == N_WIKI
    assert origin["pages_cited"] == 28
    assert "only 28 of" in origin["fallback"] and "min_reference_positives 29" in origin["fallback"]
    assert "the positives are the proxy (books after extract)" in origin["fallback"]
    assert any("wikiref_train: only 28 of" in line for line in lines)


def test_the_sample_falls_back_to_the_proxy(tmp_path):
    """The sample's 99 articles cite ~4,500 URLs; none is among its crawl's pages: the proxy, said so."""
    for source in ("wikipedia", "commoncrawl", "books"):
        run_standalone("extract", SAMPLE / source, tmp_path / "extract" / source, {}, source=source, workers=2)
    params = {**PARAMS, "negative": {"source": "commoncrawl", "after": "extract"}, "max_examples": 2000}
    stage = WikirefTrainStage(params)
    assert stage.params["positives"] == "references" and stage.params["min_reference_positives"] == 1000
    assert stage.params["reference_pages"] == {"source": "commoncrawl", "after": "extract"}  # the negatives'
    io = StageIO("wikiref_train", "*", stage.params, None, tmp_path / "m", tmp_path / "w", tmp_path, make_executor("local", 1))
    summary = stage.build(io, {s: [tmp_path / "extract" / s] for s in ("wikipedia", "books", "commoncrawl")})
    origin = summary["positives"]
    assert origin["used"] == "proxy" and origin["from_references"] == 0 and origin["pages_cited"] == 0
    assert origin["reference_urls"] > 4000 and origin["pages_scanned"] > 40
    assert origin["fallback"].startswith(f"only 0 of {origin['pages_scanned']} pages of commoncrawl after extract are cited")
    assert summary["heldout"]["accuracy"] >= 0.8


def test_reference_params_are_declared():
    from pipeline.params import ParamError

    with pytest.raises(ParamError, match="positives: expected one of references, proxy"):
        WikirefTrainStage({"positives": "wikipedia"})
    with pytest.raises(ParamError, match="reference_pages"):
        WikirefTrainStage({"reference_pages": [{"source": "commoncrawl", "after": "langid"}]})
    proxy = WikirefTrainStage({"positives": "proxy", "positive": [{"source": "books", "after": "extract"}]})
    assert proxy.requires(None) == [("books", "extract"), ("commoncrawl", "langid")]  # no references read
