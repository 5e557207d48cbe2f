"""The sample corpus is byte-identical to the one recorded before the code was reorganised.

Code may move between rooms; what it builds must not change. tests/data/sample_corpus_digest.json was
recorded with ``python tools/corpus_digest.py out/sample --write ...`` from a ``make corpus`` build; this
test builds the whole sample profile into a temporary folder and compares every token shard, the
tokenizer and model files, every Parquet shard's rows and the per-stage counts of stats.json. When a
change is *meant* to change the corpus, rerecord the digest in the same commit and say why.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DIGEST = REPO / "tests" / "data" / "sample_corpus_digest.json"


@pytest.mark.slow
def test_sample_corpus_matches_recorded_digest(tmp_path):
    from filters.lid_model import LidModelMissing, lid_model_path
    from ops.drill import compare_fingerprints, corpus_fingerprint, drill_manifest

    try:
        lid_model_path()
    except LidModelMissing as e:
        pytest.skip(f"{e} (run `make setup`)")
    manifest = drill_manifest(tmp_path / "manifest.yaml", tmp_path / "out")
    p = subprocess.run([sys.executable, "-m", "pipeline", "run", "--manifest", str(manifest), "--workers", "2"],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    diffs = compare_fingerprints(json.loads(DIGEST.read_text()), corpus_fingerprint(tmp_path / "out" / "sample"))
    assert not diffs, "\n".join(diffs[:40])
