"""Smoke tests of the bench scripts at a tiny size: generated inputs are real-text WET files the
extractor accepts, and bench/scale.py measures every stage of the chain from the executor's usage records."""

import json
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.corpus import page, write_wet_corpus  # noqa: E402


def test_generated_wet_is_deterministic_and_extracts(tmp_path):
    from ingest.commoncrawl import make_extractor

    files = write_wet_corpus(tmp_path / "commoncrawl", 250, 100, seed=3, workers=1)
    assert [p.name for p in files] == ["gen-00000.warc.wet.gz", "gen-00001.warc.wet.gz", "gen-00002.warc.wet.gz"]
    docs = [d for p in files for d in make_extractor({})(p)]
    reasons = Counter(d.metadata.get("reason") for d in docs)
    assert reasons == {None: 250, "warc:warcinfo": 3}  # every page a kept conversion record, digests valid
    assert page(3, 17) == page(3, 17) and page(3, 17) != page(4, 17)
    langs = Counter(page(3, i)[1] for i in range(400))
    assert langs["en"] > 300 and len(langs) > 2  # mostly English, some non-English pages for langid
    again = write_wet_corpus(tmp_path / "again", 250, 100, seed=3, workers=1)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in files]


@pytest.mark.slow
def test_scale_quick_measures_every_stage(tmp_path):
    from bench import scale

    assert scale.main(["--quick", "--out", str(tmp_path / "scale")]) == 0
    result = json.loads((tmp_path / "scale" / "scale.json").read_text())
    for run in result["runs"].values():
        for stage in scale.CHAIN:
            m = run["stages"][stage]
            assert m["tasks"] > 0 and m["cpu_seconds"] > 0 and m["peak_task_rss_bytes"] > 10 * 2**20, stage
            assert m["docs_in"] >= m["docs_out"] > 0, stage
    big = result["runs"]["4000"]["stages"]
    assert big["extract"]["docs_out"] == 4000
    assert big["langid"]["docs_out"] < big["langid"]["docs_in"]  # non-English pages excluded
    assert big["minhash"]["docs_out"] < big["minhash"]["docs_in"]  # near-duplicate pages clustered
    assert (tmp_path / "scale" / "scale.md").read_text().count("\n|") >= 8
