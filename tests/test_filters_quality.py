"""C4 and Gopher heuristics (datatrove's implementations) wrapped to mark instead of drop."""

from __future__ import annotations

import pytest

from filters.quality import QualityFilter, rule_sets_from_params
from filters_support import book_paragraphs, make_doc, outputs, write_docs
from pipeline.standalone import run_standalone

SHORT_PAGE = "The cat sat on the mat.\nIt was a warm day.\nBirds sang in the old tree.\nA dog barked far away.\nThen the cat went to sleep."
STOP_WORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}


def good_page() -> str:
    """Six real paragraphs of a Project Gutenberg novel, one per line (C4 keeps them all)."""
    return "\n".join(book_paragraphs()[20:26])


def without_stop_words(text: str) -> str:
    return " ".join(w for w in text.split(" ") if w.lower().strip(".,;:!?\"'") not in STOP_WORDS)


BROKEN = {
    "c4:lorem_ipsum": lambda t: t + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.",
    "c4:curly_bracket": lambda t: t + "\nThe set {a, b} has two members, as the text explains.",
    "c4:too_few_sentences": lambda t: t.split(". ")[0] + ".",
    "gopher:short_doc": lambda t: SHORT_PAGE,
    "gopher:too_many_hashes": lambda t: "\n".join("#tag #news #today #life #love " * 6 + line for line in t.split("\n")),
    "gopher:enough_stop_words": without_stop_words,
    "gopher_rep:dup_line_frac": lambda t: "\n".join([t.split("\n")[0]] * 4 + t.split("\n")[1:3]),
}


@pytest.fixture(scope="module")
def quality():
    return QualityFilter(rule_sets_from_params({}))


def test_real_prose_is_kept(quality):
    doc = make_doc("good", good_page())
    assert quality.filter(doc) is True
    assert doc.metadata["c4_lines_in"] == doc.metadata["c4_lines_kept"] == 6


@pytest.mark.parametrize("reason", sorted(BROKEN))
def test_each_rule_excludes_the_page_built_to_break_it(quality, reason):
    doc = make_doc(reason, BROKEN[reason](good_page()))
    assert quality.filter(doc) == (False, reason)


def test_c4_line_cleaning_rewrites_kept_pages(quality):
    nav = "Home | Docs | Download\nEnable JavaScript to use this site.\nRead our privacy policy before you continue."
    doc = make_doc("nav", nav + "\n" + good_page())
    assert quality.filter(doc) is True
    assert doc.text == good_page()
    assert (doc.metadata["c4_lines_in"], doc.metadata["c4_lines_kept"]) == (9, 6)


def test_rule_sets_can_be_disabled_or_tuned():
    page = BROKEN["gopher:short_doc"](good_page())
    assert QualityFilter(rule_sets_from_params({"gopher_quality": False})).filter(make_doc("a", page)) is True
    tuned = rule_sets_from_params({"c4": {"min_num_sentences": 100}})
    assert QualityFilter(tuned).filter(make_doc("b", good_page())) == (False, "c4:too_few_sentences")
    with pytest.raises(ValueError, match="c4"):
        rule_sets_from_params({"c4": {"no_such_option": 1}})


def test_stage_marks_and_accounts(tmp_path):
    docs = [make_doc("good", good_page(), source="c4"), make_doc("empty", "   ", source="c4")]
    docs += [make_doc(reason, fn(good_page()), source="c4") for reason, fn in BROKEN.items()]
    write_docs(tmp_path / "in", docs, shards=2)
    stats = run_standalone("quality", tmp_path / "in", tmp_path / "out", {"c4": True, "gopher_quality": True, "gopher_repetition": True}, workers=2)
    kept, excluded = outputs(tmp_path / "out")
    assert set(kept) == {"good"}
    assert {i: d.metadata["reason"] for i, d in excluded.items()} == {"empty": "quality:empty", **{r: r for r in BROKEN}}
    assert all(d.metadata["excluded_by"] == "quality" for d in excluded.values())
    assert stats["docs_in"] == len(docs) == stats["docs_out"] + sum(stats["excluded"].values())
