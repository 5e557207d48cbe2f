"""CCNet's perplexity filter: a real SentencePiece + 5-gram KenLM (lmplz) trained on real Wikipedia."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filters.kenlm_model import LanguageModel, available_languages
from filters.normalize import ASCII_DELETE, ASCII_TABLE, _normalize_unicode, normalize
from filters.perplexity import SCORE_SCHEMA, LMStage, bucket_of, compute_cutoffs, score_file
from filters_support import apt_messages, book_paragraphs, make_doc, outputs, wiki_articles, write_docs
from pipeline.executors import make_executor
from pipeline.stages import StageIO
from pipeline.standalone import run_standalone

N_TRAIN = 60  # articles the LM is trained on; the next N_HELD are held out
N_HELD = 20


def wiki(start: int, stop: int) -> tuple[str, ...]:
    return wiki_articles(N_TRAIN + N_HELD)[start:stop]


def held_out_paragraphs(n: int = 10) -> list[str]:
    """The first long paragraph (>= 40 words: prose, not a list) of held-out articles."""
    out = []
    for article in wiki(N_TRAIN, N_TRAIN + N_HELD):
        long = [line for line in article.split("\n") if len(line.split()) >= 40]
        out.extend(long[:1])
    assert len(out) >= n
    return out[:n]


def test_normalize_is_ccnet_like():
    assert normalize("Élève “Naïve” — 2023 café…\u200b\x07") == 'eleve "naive"  -  0000 cafe...'
    assert normalize("ＡＢＣ１２，Straße") == "abc00,straße"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aZ 9\n\t`.\x07") + list("éÉüÜßçøΔжЖ“”—…０１ＡＢ\u200b\u0301\u00a0") + ["\U0001d173"]), max_size=80))
def test_sparse_and_dense_unicode_paths_agree(text):
    """normalize() takes a per-run path for mostly-ASCII text and a whole-text path otherwise; both
    must give what the whole-text Unicode steps give."""
    ascii_done = text.encode("utf-8").translate(ASCII_TABLE, ASCII_DELETE).decode("utf-8")
    assert normalize(text) == _normalize_unicode(ascii_done).strip()


@pytest.fixture(scope="module")
def lm_root(tmp_path_factory):
    """Train the lm model stage once (as the runner would) on the sample's English Wikipedia."""
    root = tmp_path_factory.mktemp("profile")
    # the last 10 articles and 3 German pages carry no language label: lid.176 assigns them
    docs = [make_doc(f"w{i}", t, "wikipedia", **({"language": "en"} if i < N_TRAIN - 10 else {})) for i, t in enumerate(wiki(0, N_TRAIN))]
    german = apt_messages("de")
    docs += [make_doc(f"de{i}", " ".join(p[1] for p in german[i * 20:(i + 1) * 20]), "wikipedia") for i in range(3)]
    folder = write_docs(root / "extract" / "wikipedia", docs)
    stage = LMStage({"languages": ["en", "de"], "order": 5, "sp_vocab_size": 2000, "min_docs": 20})
    io = StageIO("lm", "*", stage.params, None, root / "models" / "lm", root / ".work" / "lm", root, make_executor("local", 1))
    summary = stage.build(io, {"wikipedia": [folder]})
    return root, summary


@pytest.mark.slow  # trains SentencePiece + lmplz once (~15 s of CPU)
def test_lm_stage_builds_a_model_per_language_with_enough_data(lm_root):
    root, summary = lm_root
    assert available_languages(root / "models" / "lm") == ["en"]
    assert summary["languages"]["en"]["documents"] == N_TRAIN and summary["languages"]["en"]["model_bytes"] > 10_000
    assert summary["skipped"]["de"].startswith("only 3 documents")
    assert not list((root / ".work" / "lm").glob("*.arpa"))  # the ARPA intermediate is removed


@pytest.mark.slow  # trains SentencePiece + lmplz once (~15 s of CPU)
def test_real_prose_scores_far_below_shuffled_words_and_boilerplate(lm_root):
    root, _ = lm_root
    model = LanguageModel.from_dir(root / "models" / "lm", "en")
    rng = random.Random(0)
    prose = held_out_paragraphs() + book_paragraphs()[100:105]
    shuffled = []
    for text in prose:
        words = text.split()
        rng.shuffle(words)
        shuffled.append(" ".join(words))
    ratios = sorted(model.perplexity(bad) / model.perplexity(good) for good, bad in zip(prose, shuffled))
    assert ratios[0] > 1.3 and ratios[len(ratios) // 2] > 2.0, ratios
    boilerplate = "\n".join(["Home | About us | Contact | Login | Register | Cart (0) | FAQ | Sitemap"] * 5 + ["Copyright 2020 All rights reserved. Powered by WordPress. Terms | Privacy"] * 3)
    assert max(model.perplexity(t) for t in prose) < model.perplexity(boilerplate)
    assert model.perplexity("") is None


@pytest.mark.slow  # trains SentencePiece + lmplz once (~15 s of CPU)
def test_perplexity_stage_buckets_by_percentile(lm_root, tmp_path):
    root, _ = lm_root
    texts = [t[:2500] for t in wiki(N_TRAIN, N_TRAIN + 10)]
    docs = [make_doc(f"p{i}", t, language="en") for i, t in enumerate(texts)]
    docs.append(make_doc("short", "A short line of text.", language="en"))
    docs.append(make_doc("german", texts[0], language="de"))  # no German LM: kept, bucket null
    write_docs(tmp_path / "in", docs, shards=3)
    params = {"head": 30, "tail": 60, "keep": ["head", "middle"], "min_length": 300}
    stats = run_standalone("perplexity", tmp_path / "in", tmp_path / "out", params, models_root=root, workers=2)
    kept, excluded = outputs(tmp_path / "out")
    assert excluded["short"].metadata["reason"] == "perplexity:too_short"
    assert kept["german"].metadata["perplexity_bucket"] is None
    scored = {**kept, **excluded}
    scored = {i: d for i, d in scored.items() if i.startswith("p")}
    buckets = {b: sorted(d.metadata["perplexity"] for d in scored.values() if d.metadata["perplexity_bucket"] == b) for b in ("head", "middle", "tail")}
    assert [len(buckets[b]) for b in ("head", "middle", "tail")] == [3, 3, 4]
    assert buckets["head"][-1] < buckets["middle"][0] <= buckets["middle"][-1] < buckets["tail"][0]
    assert all(excluded[i].metadata["reason"] == "perplexity:tail" for i, d in scored.items() if d.metadata["perplexity_bucket"] == "tail")
    summary = json.loads((tmp_path / "out" / "perplexity.json").read_text())
    assert summary["scored"] == {"en": 10} and summary["status"]["no_lm"] == 1 and summary["status"]["too_short"] == 1
    assert stats["docs_in"] == 12 and stats["docs_out"] == 7 and stats["excluded"] == {"perplexity:tail": 4, "perplexity:too_short": 1}


def test_histogram_cutoffs_match_exact_percentiles(tmp_path):
    rng = np.random.default_rng(0)
    values = 10 ** rng.uniform(1, 4, 10_001)
    for rank in range(3):
        part = values[rank::3]
        n = len(part)
        pq.write_table(pa.table({"id": [str(i) for i in range(n)], "status": ["scored"] * n, "language": ["en"] * n, "perplexity": part}, schema=SCORE_SCHEMA), score_file(tmp_path, rank))
    summary = compute_cutoffs(tmp_path, 3, 30, 60)
    assert summary["scored"] == {"en": 10_001} and summary["status"] == {"scored": 10_001}
    assert np.allclose(summary["cutoffs"]["en"], np.percentile(values, [30, 60]), rtol=3e-4)
    buckets = [bucket_of(v, summary["cutoffs"]["en"]) for v in values]
    assert abs(buckets.count("head") / len(values) - 0.30) < 1e-3 and abs(buckets.count("tail") / len(values) - 0.40) < 1e-3


def test_bucket_edges():
    assert [bucket_of(p, [10.0, 20.0]) for p in (5, 10, 15, 20, 25)] == ["head", "head", "middle", "middle", "tail"]


def test_missing_lm_is_one_line(tmp_path):
    write_docs(tmp_path / "in", [make_doc("a", "x" * 400, language="en")])
    with pytest.raises(FileNotFoundError, match="no language model"):
        run_standalone("perplexity", tmp_path / "in", tmp_path / "out", {}, models_root=tmp_path / "nowhere", workers=1)


@pytest.mark.slow  # trains SentencePiece + lmplz once (~15 s of CPU)
def test_interrupted_stage_resumes_without_rescoring(lm_root, tmp_path):
    """A stage killed during its final pass reruns only the unfinished task, from the saved scores."""
    root, _ = lm_root
    docs = [make_doc(f"p{i}", t[:2000], language="en") for i, t in enumerate(wiki(N_TRAIN, N_TRAIN + 6))]
    write_docs(tmp_path / "in", docs, shards=2)
    out = tmp_path / "out"
    first = run_standalone("perplexity", tmp_path / "in", out, {"min_length": 300}, models_root=root, workers=2)
    before = {d.id: d.metadata for d in [*outputs(out)[0].values(), *outputs(out)[1].values()]}
    scores = sorted((out / ".work" / "scores").glob("*.parquet"))
    stamps = [p.stat().st_mtime_ns for p in scores]
    # simulate a kill of task 0 in the final pass: no _SUCCESS, no completion marker, no shard
    (out / "_SUCCESS").unlink()
    (out / ".work" / "passes" / "main" / "completions" / "00000").unlink()
    (out / "00000.parquet").unlink(missing_ok=True)
    (out / "excluded" / "00000.parquet").unlink(missing_ok=True)
    second = run_standalone("perplexity", tmp_path / "in", out, {"min_length": 300}, models_root=root, workers=2)
    after = {d.id: d.metadata for d in [*outputs(out)[0].values(), *outputs(out)[1].values()]}
    assert after == before and len(after) == 6
    assert [p.stat().st_mtime_ns for p in scores] == stamps  # the scoring pass was not redone
    assert {k: second[k] for k in ("docs_in", "docs_out", "excluded")} == {k: first[k] for k in ("docs_in", "docs_out", "excluded")}
