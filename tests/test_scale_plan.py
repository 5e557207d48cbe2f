"""`pipeline plan`: the sizing arithmetic (volumes walked back through the stages, tasks, disk, memory,
core-hours from RESULTS.md lines) on a manifest whose numbers are easy to check by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ops import sizing as P
from pipeline.manifest import load, parse
from ops.drill import drill_manifest

REPO = Path(__file__).resolve().parent.parent

RESULTS = """
## someone's section
throughput: langid any 2000 docs/s
throughput: langid commoncrawl 1000 docs/s baseline (a raw figure: loses to nothing for its own key)
throughput: minhash * 7.0 MB/s baseline
throughput: minhash * 2.0 MB/s
throughput: tokenize * 1 MB/s
`throughput: <stage> <source|*> <value> <docs/s|MB/s>` (the format line itself is not a figure)
"""


def test_parse_throughputs_prefers_measured_and_reads_any_as_star():
    t = P.parse_throughputs(RESULTS)
    assert t[("langid", "*")].value == 2000 and t[("langid", "*")].unit == "docs/s"
    assert t[("langid", "commoncrawl")].baseline
    assert t[("minhash", "*")].value == 2.0 and not t[("minhash", "*")].baseline  # measured beats baseline, either order
    assert len(t) == 4
    assert t[("tokenize", "*")].core_hours(docs=0, nbytes=3.6e9) == pytest.approx(1.0)  # 3.6 GB at 1 MB/s = 1 h
    assert t[("langid", "*")].core_hours(docs=7.2e6, nbytes=0) == pytest.approx(1.0)


def test_parse_size():
    assert P.parse_size("3.3 TB") == 3.3e12
    assert P.parse_size("783 GB") == 783e9
    assert P.parse_size("2 GiB") == 2 * 2**30
    with pytest.raises(ValueError, match="cannot read size"):
        P.parse_size("lots")


def _manifest(tmp_path, disk="100 GB", params=None):
    import yaml

    path = drill_manifest(tmp_path / "m.yaml", tmp_path / "out", ["commoncrawl", "github"], params or {})
    raw = yaml.safe_load(path.read_text())
    raw["sources"]["commoncrawl"]["disk"] = disk
    raw["sources"]["github"]["disk"] = "10 GB"
    raw["resources"] = {"default": {"cpus_per_task": 1, "mem_per_cpu_gb": 2}, "stages": {"linededup": {"mem_per_cpu_gb": 1}}}
    return parse(raw, profile="sample", path=path)


def test_volumes_tasks_disk_memory_and_core_hours(tmp_path):
    m = _manifest(tmp_path)
    rows = {(r.source, r.stage): r for r in P.plan(m, P.parse_throughputs(RESULTS), task_bytes=10e9)}
    cc = lambda stage: rows[("commoncrawl", stage)]  # noqa: E731
    # tokenize gets the manifest's disk; each earlier stage's input is its output / the bytes it keeps
    assert cc("tokenize").bytes_in == pytest.approx(100e9)
    assert cc("minhash").bytes_in == pytest.approx(100e9 / P.KEEP["minhash"])
    assert cc("wikiref").bytes_in == pytest.approx(cc("minhash").bytes_in / P.KEEP["wikiref"])
    expected_text = 100e9 / (P.KEEP["minhash"] * P.KEEP["wikiref"] * P.KEEP["perplexity"] * P.KEEP["langid"] * P.KEEP["linededup"])
    assert cc("extract").bytes_in == pytest.approx(expected_text)
    assert cc("download").disk == pytest.approx(expected_text * P.RAW_PER_TEXT["commoncrawl"])
    # one task per 10 GB of extracted text, for every document stage; the extra passes of dedup
    tasks = -(-expected_text // 10e9)
    assert cc("extract").passes == {"main": tasks}
    assert cc("linededup").passes == {"hash": tasks, "first": 16, "main": tasks}  # prefix_bits 4 in the manifest
    assert cc("minhash").passes == {"signatures": tasks, "buckets": 14, "clusters": 1, "main": tasks}
    # disk: documents as Parquet, tokens as uint16 + an 8-byte index entry per document
    assert cc("langid").disk == pytest.approx(cc("langid").bytes_in * P.PARQUET_RATIO)
    docs = 100e9 / P.DOC_BYTES["commoncrawl"]
    assert cc("tokenize").docs_in == pytest.approx(docs)
    assert cc("tokenize").disk == pytest.approx(100e9 / P.BYTES_PER_TOKEN * 2 + docs * 8)
    # memory of line dedup's partition task against its 1 GiB allocation
    lines = cc("linededup").bytes_in / P.AVG_LINE_BYTES
    assert cc("linededup").memory == pytest.approx(lines / 16 * 20 * P.SORT_FACTOR)
    assert cc("linededup").mem_limit == 2**30
    # core-hours: commoncrawl langid has its own (baseline) line, github falls back to `any`
    assert cc("langid").core_hours == pytest.approx(cc("langid").docs_in / 1000 / 3600)
    assert cc("tokenize").core_hours == pytest.approx(100e9 / 1e6 / 3600)
    assert cc("perplexity").core_hours is None and cc("perplexity").throughput == "no figure"
    gh = rows[("github", "exactdedup")]
    assert gh.passes["first"] == 4 and gh.memory == pytest.approx(gh.docs_in / 4 * 24 * P.SORT_FACTOR)


def test_explicit_extract_tasks_param_wins(tmp_path):
    m = _manifest(tmp_path, params={"extract": {"tasks": 7}})
    rows = P.plan(m, {}, task_bytes=1e9)
    assert {r.passes.get("main") for r in rows if r.source == "github" and r.stage != "download"} == {7}


def test_cli_full_profile_prints_every_source_and_flags_memory():
    p = subprocess.run([sys.executable, "-m", "pipeline", "plan", "--profile", "full"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    for source in load(profile="full", check_paths=False).sources:
        assert f"\n{source:<14}tokenize" in p.stdout
    assert "core-hours" in p.stdout and "total" in p.stdout
    assert "(!) linededup/commoncrawl" in p.stdout  # a global line set per 16 partitions cannot fit 4 GB
