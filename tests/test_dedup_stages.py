"""All four dedup stages: empty input balances, bad parameters are one clear error."""

from __future__ import annotations

import pytest

from pipeline.standalone import run_standalone

STAGES = ("linededup", "minhash", "bookdedup", "exactdedup")


@pytest.mark.parametrize("stage", STAGES)
def test_empty_input(stage, tmp_path):
    (tmp_path / "in").mkdir()
    record = run_standalone(stage, tmp_path / "in", tmp_path / "out", workers=1)
    assert (record["docs_in"], record["docs_out"], record["excluded"]) == (0, 0, {})


@pytest.mark.parametrize(
    "stage, params, message",
    [
        ("linededup", {"hash": "md5"}, "hash: expected one of sha1_64, xxh64"),
        ("linededup", {"prefix_bits": 40}, "prefix_bits: expected an integer in [0, 12]"),
        ("minhash", {"bands": 0}, "bands: expected an integer"),
        ("minhash", {"verify_threshold": 1.5}, "minhash.verify_threshold: expected a number in [0, 1], got 1.5"),
        ("bookdedup", {"threshold": "high"}, "bookdedup.threshold: expected a number in [0, 1], got 'high'"),
        ("bookdedup", {"treshold": 0.8}, "bookdedup.treshold: unknown parameter (known: threshold, candidate_threshold,"),
        ("exactdedup", {"prefix_bits": -1}, "prefix_bits: expected an integer"),
    ],
)
def test_bad_parameters(stage, params, message, tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(ValueError) as err:
        run_standalone(stage, tmp_path / "in", tmp_path / "out", params, workers=1)
    assert message in str(err.value) and "\n" not in str(err.value)
