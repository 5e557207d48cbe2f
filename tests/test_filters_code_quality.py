"""RedPajama's four GitHub heuristics: each rule excludes a file built to break exactly it."""

from __future__ import annotations

import pytest

from filters.code_quality import CodeQualityFilter
from filters_support import SAMPLE, make_doc, outputs, write_docs
from pipeline.standalone import run_standalone

GOOD = (SAMPLE / "github" / "six" / "six.py").read_text(encoding="utf-8")
SIGNAL_OK = {
    "code_max_line_length": lambda v: v <= 1000,
    "code_mean_line_length": lambda v: v <= 100,
    "code_alnum_fraction": lambda v: v >= 0.25,
    "code_alpha_per_token": lambda v: v >= 1.5,
}
BROKEN = {
    # one 1,500-character line in otherwise ordinary code
    "max_line_length": GOOD + "\nNAMES = [" + ", ".join(f"'name_{i:04d}'" for i in range(110)) + "]\n",
    # long but wordy lines: every line ~140 characters
    "mean_line_length": "\n".join(("# " + "this comment line explains the behaviour of the function below in plain words " * 2)[:140] for _ in range(40)),
    # short words drowned in indentation whitespace
    "alnum_fraction": "\n".join(" " * 40 + "pass" for _ in range(60)),
    # a numeric data table: alphanumeric, but hardly any letters per token
    "alpha_per_token": "DATA = [\n" + "\n".join(", ".join(str(1000 + 7 * i + j) for j in range(8)) + "," for i in range(60)) + "\n]\n",
}


@pytest.mark.parametrize("rule", sorted(BROKEN))
def test_each_rule_excludes_the_file_built_to_break_it(rule):
    doc = make_doc(rule, BROKEN[rule], source="github")
    result = CodeQualityFilter().filter(doc)
    assert result == (False, f"code:{rule}")
    broken = [k for k, ok in SIGNAL_OK.items() if not ok(doc.metadata[k])]
    assert broken == [f"code_{rule}"], f"{rule} doc breaks {broken}"


def test_real_module_is_kept_with_its_signals():
    doc = make_doc("six", GOOD, source="github")
    assert CodeQualityFilter().filter(doc) is True
    assert all(ok(doc.metadata[k]) for k, ok in SIGNAL_OK.items())


def test_stage_on_the_real_github_sample(tmp_path):
    files = ["six/six.py", "underscore/underscore.js", "underscore/underscore-min.js", "idna/idna/core.py"]
    docs = [make_doc(f, (SAMPLE / "github" / f).read_text(encoding="utf-8"), source="github") for f in files]
    docs.append(make_doc("empty.py", "\n\n", source="github"))
    write_docs(tmp_path / "in", docs, shards=2)
    stats = run_standalone("code_quality", tmp_path / "in", tmp_path / "out", {"max_line_length": 1000}, workers=2)
    kept, excluded = outputs(tmp_path / "out")
    assert {"six/six.py", "underscore/underscore.js", "idna/idna/core.py"} <= set(kept)
    assert excluded["underscore/underscore-min.js"].metadata["reason"] == "code:max_line_length"
    assert excluded["underscore/underscore-min.js"].metadata["code_max_line_length"] > 10_000
    assert excluded["empty.py"].metadata["reason"] == "code:empty"
    assert stats["docs_in"] == 5 and stats["excluded"]["code:max_line_length"] == 1


def test_bad_threshold_is_one_line(tmp_path):
    write_docs(tmp_path / "in", [make_doc("a", "x = 1\n")])
    with pytest.raises(ValueError, match="max_line_length"):
        run_standalone("code_quality", tmp_path / "in", tmp_path / "out", {"max_line_length": "long"}, workers=1)
