"""Exact file dedup (GitHub sample's vendored copies) and book containment dedup (two editions)."""

from __future__ import annotations

import pytest

from dedup.exactdedup import content_hash, normalize_code
from tests.dedup_support import SAMPLE, doc, extracted, outcome, run


def test_vendored_copies_end_up_once(tmp_path):
    docs = extracted("github")
    names = [d.id for d in docs]
    assert "msgpack-python/msgpack/fallback.py" in names and "pip/src/pip/_vendor/msgpack/fallback.py" in names
    # a whitespace-only variant (CRLF, trailing spaces, extra blank lines) and a one-character edit
    six = next(d for d in docs if d.id.endswith("six.py"))
    docs.append(doc("\n\n" + six.text.replace("\n", "  \r\n") + "\n\n", "variant/six.py", "github"))
    docs.append(doc(six.text.replace("import", "import ", 1), "edited/six.py", "github"))
    record = run("exactdedup", docs, tmp_path, shards=3)
    kept, dropped = outcome(tmp_path / "out")
    assert record["excluded"] == {"dup:exact": 6}
    for name in ("__init__.py", "exceptions.py", "ext.py", "fallback.py"):
        a, b = f"msgpack-python/msgpack/{name}", f"pip/src/pip/_vendor/msgpack/{name}"
        first, second = sorted([a, b], key=names.index)
        assert first in kept and dropped[second].metadata["duplicate_of"] == first
    util = sorted(["pygments/pygments/util.py", "pip/src/pip/_vendor/pygments/util.py"], key=names.index)
    assert util[0] in kept and dropped[util[1]].metadata == {**dropped[util[1]].metadata, "duplicate_of": util[0], "reason": "dup:exact"}
    assert dropped["variant/six.py"].metadata["duplicate_of"] == six.id
    assert "edited/six.py" in kept
    # the same decision with one task
    run("exactdedup", docs, tmp_path / "one", shards=1, workers=1)
    assert sorted(outcome(tmp_path / "one" / "out")[0]) == sorted(kept)


def test_code_normal_form_keeps_indentation():
    assert normalize_code("a\r\n  b  \r\n") == "a\n  b"
    assert content_hash("def f():\n    return 1\n") != content_hash("def f():\n  return 1\n")


@pytest.fixture(scope="module")
def books():
    if (SAMPLE / "books" / "botchan-60col.txt").exists():
        return extracted("books", "*.txt")
    pytest.skip("data/sample/books has no second edition")


def test_the_two_editions_end_up_once(books, tmp_path):
    assert {d.id for d in books} >= {"botchan", "botchan-60col", "alice"}
    record = run("bookdedup", books, tmp_path, shards=len(books))
    kept, dropped = outcome(tmp_path / "out")
    assert record["excluded"] == {"dup:book": 1}
    editions = {d.id: len(d.text) for d in books if d.id.startswith("botchan")}
    longer = max(editions, key=lambda i: (editions[i], -[d.id for d in books].index(i)))
    shorter = next(i for i in editions if i != longer)
    assert longer in kept and "alice" in kept
    assert dropped[shorter].metadata["duplicate_of"] == longer
    assert dropped[shorter].metadata["containment"] > 0.99


def test_containment_not_jaccard(books, tmp_path):
    """A book inside an anthology is contained in it (Jaccard is only ~0.1); a book sharing half
    its text with another is not removed."""
    botchan = next(d for d in books if d.id == "botchan").text
    alice = next(d for d in books if d.id == "alice").text
    words = botchan.split(" ")
    half = " ".join(words[: len(words) // 2])
    docs = [
        doc(alice, "alice", "books"),
        doc(half + " " + alice, "anthology", "books"),  # alice inside a longer book
        doc(" ".join(words[len(words) // 4 :]), "three-quarters", "books"),  # 1/3 of it is in the anthology
    ]
    run("bookdedup", docs, tmp_path, shards=2, threshold=0.9)
    kept, dropped = outcome(tmp_path / "out")
    assert set(dropped) == {"alice"} and dropped["alice"].metadata["duplicate_of"] == "anthology"
    assert set(kept) == {"anthology", "three-quarters"}
    assert dropped["alice"].metadata["containment"] > 0.99
    assert kept["three-quarters"].metadata["containment"] < 0.9  # 0.0 when LSH found no candidate
