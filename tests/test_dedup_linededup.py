"""CCNet line dedup on the real CommonCrawl sample: repeated lines go, first occurrences stay."""

from __future__ import annotations

import pytest

from dedup.hashing import line_hasher, normalize_line
from tests.dedup_support import doc, extracted, outcome, run


@pytest.fixture(scope="module")
def cc_docs():
    return extracted("commoncrawl", "*.warc.gz", {"extractor": "resiliparse"})


def test_normal_form():
    assert normalize_line("  Hello,\tWORLD  2023 “quoted” ") == normalize_line('hello, world 1999 "quoted"')
    assert normalize_line("Café") == normalize_line("cafe")
    assert normalize_line("Hello world") != normalize_line("Hello, world")
    for kind in ("sha1_64", "xxh64"):
        h = line_hasher(kind)
        assert h("abc") == h("abc") and h("abc") != h("abd") and 0 <= h("abc") < 2**64
    with pytest.raises(ValueError, match="hash"):
        line_hasher("md5")


def test_repeated_lines_removed_first_kept(cc_docs, tmp_path):
    record = run("linededup", cc_docs, tmp_path, shards=3, min_length=100)
    kept, dropped = outcome(tmp_path / "out")
    assert record["docs_in"] == len(cc_docs) == len(kept) + len(dropped)
    assert set(record["excluded"]) <= {"dup:line_empty", "dup:too_short"}
    # the byte-identical example.com captures: the first keeps its text, the later ones lose every line
    example = [d for d in cc_docs if "example" in str(d.metadata.get("url", ""))]
    assert len(example) >= 5
    first = example[0]
    assert first.id in kept or dropped[first.id].metadata["lines_removed"] == 0
    for d in example[1:]:
        assert d.id in dropped and dropped[d.id].metadata["reason"] == "dup:line_empty"
        assert dropped[d.id].metadata["lines_removed"] > 0
        assert dropped[d.id].text == d.text  # excluded: kept whole, for inspection
    # no normalised line survives twice in the kept output, and every surviving line is a first
    seen = set()
    for d in kept.values():
        for line in d.text.split("\n"):
            norm = normalize_line(line)
            if norm:
                assert norm not in seen, line
                seen.add(norm)
        original = next(o for o in cc_docs if o.id == d.id)
        assert d.metadata["chars_removed"] == len(original.text) - len(d.text)
    assert sum(d.metadata["lines_removed"] for d in kept.values()) > 100  # shared IANA / docs navigation


def test_invariant_to_sharding_and_digits(tmp_path):
    para = "The quick brown fox jumps over the lazy dog while the cat watches from the old wooden fence."
    docs = [
        doc(f"Header line\n{para}\nUnique text number one, long enough to keep the document alive.", "a"),
        doc(f"HEADER   line\n{para.upper()}\nSecond page has its own sentence that nobody else repeats.", "b"),
        doc("Header line 2024\nThis page is long enough to stay in the corpus.", "c"),
        doc("Header line 1999\n\n", "d"),
        doc(para, "e"),
        doc("", "f"),
    ]
    outs = []
    for shards in (1, 2, 4):
        run("linededup", docs, tmp_path / str(shards), shards=shards, min_length=40)
        kept, dropped = outcome(tmp_path / str(shards) / "out")
        outs.append(({i: d.text for i, d in kept.items()}, {i: d.metadata["reason"] for i, d in dropped.items()}))
    assert outs[0] == outs[1] == outs[2]
    kept, dropped = outs[0]
    assert kept["a"] == f"Header line\n{para}\nUnique text number one, long enough to keep the document alive."
    assert kept["b"] == "Second page has its own sentence that nobody else repeats."
    assert kept["c"] == "Header line 2024\nThis page is long enough to stay in the corpus."
    # d: "header line 0000" was first seen in c (digits -> 0); e: its one line is in a
    assert dropped == {"d": "dup:line_empty", "e": "dup:line_empty", "f": "dup:line_empty"}
