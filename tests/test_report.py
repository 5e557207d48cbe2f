"""The report on small hand-made run folders: empty sources, damaged inputs, one-line errors, and the
rules that place decision lines on histograms. The full run is in test_report_run.py (slow)."""

from __future__ import annotations

import json
import re

from datatrove.data import Document

from tests.report_support import cli, parse, section, write_stage


def test_report_over_run_with_an_empty_source_renders(tmp_path, capsys):
    root = tmp_path / "sample"
    write_stage(root, "extract", "books", [])
    write_stage(root, "extract", "github", [Document(text="print('hi')\n", id="r/a.py", metadata={"source": "github", "size": 12})])
    from report import build as report

    assert report.main([str(root)]) == 0
    page = (root / "report" / "index.html").read_text()
    funnel = parse(section(page, "funnel")).tables
    books = next(t for t in funnel[1:] if t[1][0] == "extract" and t[1][1] == "0")
    assert books[1][2] == "0"
    assert "No token shards yet" in page and "No training run yet" in page
    assert re.search(r"^books\s+1\s+0\s+0\s", capsys.readouterr().out, re.M)


def test_damaged_inputs_are_named_not_fatal(tmp_path, capsys):
    root = tmp_path / "sample"
    write_stage(root, "extract", "github", [Document(text=f"x = {i}\n", id=f"r/{i}.py", metadata={"source": "github", "size": i})
                                             for i in range(5)])
    (root / "extract" / "github" / "00001.parquet").write_bytes(b"PAR1 this is not parquet")
    run_dir = root / "train" / "killed"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 5.0}\n{"step": 2, "loss": 4.0}\n{"step": 3, "lo')
    (run_dir / "summary.json").write_text("{not json")
    from report import build as report

    assert report.main([str(root)]) == 0
    err = capsys.readouterr().err
    assert "00001.parquet: not a readable Parquet file, skipped" in err and "summary.json: not valid JSON" in err
    page = (root / "report" / "index.html").read_text()
    assert "00001.parquet: not a readable Parquet file" in page
    assert "2 logged steps; last step 2" in section(page, "training")
    assert "kept — 5 documents" in section(page, "samples")


def test_report_errors_are_one_line(tmp_path):
    p = cli("report", str(tmp_path / "missing"))
    assert p.returncode == 2 and "no such run folder" in p.stderr and "Traceback" not in p.stderr
    (tmp_path / "empty").mkdir()
    p = cli("report", str(tmp_path / "empty"))
    assert p.returncode == 2 and "no report/stats.json" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    (tmp_path / "empty" / "report").mkdir()
    (tmp_path / "empty" / "report" / "stats.json").write_text('{"stages": {')
    p = cli("report", str(tmp_path / "empty"))
    assert p.returncode == 2 and "stats.json: not valid JSON" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_limit_lines_come_from_the_stage_parameter_that_bounds_the_signal():
    from report.documents import _limit_param

    params = {"max_line_length": 1000, "max_mean_line_length": 100, "min_alnum_fraction": 0.25, "enabled": True}
    assert _limit_param("code_max_line_length", params) == "max_line_length"
    assert _limit_param("code_mean_line_length", params) == "max_mean_line_length"
    assert _limit_param("code_alnum_fraction", params) == "min_alnum_fraction"
    assert _limit_param("size", params) is None


def test_perplexity_cutoffs_are_drawn_from_the_stage_summary(tmp_path):
    from report.documents import _lines_for
    from report.gather import RunData
    from report.scan import FolderScan

    folder = tmp_path / "perplexity" / "commoncrawl"
    folder.mkdir(parents=True)
    (folder / "perplexity.json").write_text(json.dumps({"percentiles": [30, 60], "cutoffs": {"en": [210.5, 480.25]}}))
    data = RunData(tmp_path, "sample", {"stages": {"wikiref": {"commoncrawl": {"params": {"threshold": 0.25}}}}}, None)
    assert _lines_for(data, FolderScan("perplexity", "commoncrawl", folder), "perplexity") == [("en p30", 210.5), ("en p60", 480.25)]
    assert _lines_for(data, FolderScan("wikiref", "commoncrawl", tmp_path), "wikiref_score") == [("threshold 0.25", 0.25)]


def test_plots_take_any_metadata_text_literally():
    import base64

    from report import plots

    uris = [
        # balanced dollars around invalid math make matplotlib's mathtext raise unless taken literally
        plots.histogram("key $a_b^$", [1.0, 2.0, 2.5], [9.0], [(r"$\frac{$", 3.0)]),
        plots.bars("langs", ["$a_b^$", "a_b", "{}"], {"kept$": [1, 2, 3], "excluded": [0, 1, 0]}, stacked=True),
        plots.curves("$loss", {"eval $a_b^$": ([1, 2], [3.0, 2.0])}, "step", "loss"),
    ]
    for uri in uris:
        assert base64.b64decode(uri.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_sampled_scans_are_labelled_on_the_page(tmp_path):
    root = tmp_path / "sample"
    docs = [Document(text="word " * (i + 1), id=f"d{i}", metadata={"source": "c4", "language_score": i / 100}) for i in range(60)]
    docs += [Document(text="x", id=f"x{i}", metadata={"source": "c4", "language_score": 0.1, "reason": "langid:low_score",
                                                      "excluded_by": "langid"}) for i in range(30)]
    write_stage(root, "langid", "c4", docs)
    from report import build as report

    assert report.main([str(root), "--max-rows", "20", "--samples", "2"]) == 0
    page = (root / "report" / "index.html").read_text()
    assert "(scanned 20 of 60 kept and 20 of 30 excluded)" in page
    samples = section(page, "samples")
    assert "kept — 60 documents" in samples and "excluded: <code>langid:low_score</code> — 30 documents" in samples
    assert samples.count('<div class="doc x">') == 2 and samples.count('<div class="doc">') == 2


def test_capped_follows_the_loader_s_epoch_cap():
    """The loader caps a source at floor(max_epochs × training windows) draws (train/mixture.py)."""
    from report.tokens import capped

    n_train = 29  # the sample's CommonCrawl at seq 256: 30 windows, 1 held out
    assert capped({"windows": 31, "epochs": 31 / n_train, "max_epochs": 1.1})  # floor(1.1 × 29) = 31
    assert not capped({"windows": 30, "epochs": 30 / n_train, "max_epochs": 1.1})
    assert not capped({"windows": 0, "epochs": 0.0, "max_epochs": 1.1}) and not capped({})


def test_token_shards_are_read_as_the_trainer_reads_them(tmp_path):
    """Shard rows come from tokenizer.shards.open_shard: document lengths from .ds.index, and a shard the
    trainer would refuse (index and file disagree) is named with its problem, not given numbers."""
    from report.gather import gather
    from storage.layout import Layout
    from tokenizer.shards import write_shard

    layout = Layout(tmp_path / "sample")
    write_stage(layout.root, "extract", "github", [])
    folder = layout.tokens_dir("github")
    write_shard(folder, [[5, 6, 7], [8]], rank=0, source="github", vocab_size=100, eos_id=2)
    bad = write_shard(folder, [[5, 6], [7, 8, 9]], rank=1, source="github", vocab_size=100, eos_id=2)
    with open(f"{bad}.index", "r+b") as f:  # the last document's end no longer matches the tokens
        f.truncate(8)
    data = gather(layout.root)
    good, broken = data.shards["github"]
    assert (good.documents, good.tokens, good.mean_len, good.max_len, good.problem) == (2, 6, 3.0, 4, None)
    assert broken.problem.startswith("unreadable:") and "index ends at token 3" in broken.problem


def test_models_section_says_where_the_wikiref_positives_came_from(tmp_path):
    """The Wikipedia-reference classifier's positives: how many came from pages Wikipedia cites, and a
    warning when it fell back to the proxy (the sample)."""
    from report import build as report

    root = tmp_path / "sample"
    write_stage(root, "extract", "books", [])
    fallback = {"requested": "references", "used": "proxy", "from_references": 0, "from_proxy": 120, "pages_cited": 0,
                "pages_scanned": 65, "reference_urls": 4467, "reference_pages": "commoncrawl after langid",
                "fallback": "only 0 of 65 pages of commoncrawl after langid are cited by Wikipedia (4,467 distinct cited URLs), "
                            "fewer than min_reference_positives 1,000: the positives are the proxy (wikipedia after extract, books after extract)"}
    stats = json.loads((root / "report" / "stats.json").read_text())  # written by write_stage
    stats["models"] = {"wikiref_train": {"positives": fallback, "seconds": 1.0}, "lm": {"seconds": 2.0}}
    (root / "report" / "stats.json").write_text(json.dumps(stats))
    assert report.main([str(root)]) == 0
    models = section((root / "report" / "index.html").read_text(), "models")
    assert "Positives: 0 pages cited by Wikipedia (0 of the 65 pages of commoncrawl after langid carry one of 4,467 distinct cited URLs); 120 documents of the proxy." in models
    assert '<p class="warn">Fell back to the proxy positives: only 0 of 65 pages' in models

    used = {**fallback, "used": "references", "from_references": 5000, "from_proxy": 0, "pages_cited": 81234, "pages_scanned": 10 ** 6}
    del used["fallback"]
    stats["models"]["wikiref_train"]["positives"] = used
    (root / "report" / "stats.json").write_text(json.dumps(stats))
    assert report.main([str(root)]) == 0
    models = section((root / "report" / "index.html").read_text(), "models")
    assert "Positives: 5,000 pages cited by Wikipedia (81,234 of the 1,000,000 pages" in models and "warn" not in models
