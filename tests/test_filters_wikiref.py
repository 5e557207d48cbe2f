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
