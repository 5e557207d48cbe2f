"""The sample corpus is byte-identical to the one recorded before the code was reorganised.

Code may move between rooms; what it builds must not change. tests/data/sample_corpus_digest.json was
recorded with ``python tools/corpus_digest.py out/sample --write ...`` from a ``make corpus`` build; this
test builds the whole sample profile into a temporary folder (the ``built_sample`` fixture) and compares every token shard, the
tokenizer and model files, every Parquet shard's rows and the per-stage counts of stats.json. When a
change is *meant* to change the corpus, rerecord the digest in the same commit and say why.
"""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DIGEST = REPO / "tests" / "data" / "sample_corpus_digest.json"


@pytest.mark.slow
def test_sample_corpus_matches_recorded_digest(built_sample):
    from ops.drill import compare_fingerprints, corpus_fingerprint

    _manifest, out_root = built_sample
    diffs = compare_fingerprints(json.loads(DIGEST.read_text()), corpus_fingerprint(out_root))
    assert not diffs, "\n".join(diffs[:40])
