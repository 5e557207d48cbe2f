"""The staged runner: manifest validation, accounting identity, kill -9 and rerun, skip on rerun."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline import accounting
from pipeline.manifest import DEFAULT_MANIFEST, ManifestError, load, parse

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def _raw() -> dict:
    return yaml.safe_load(DEFAULT_MANIFEST.read_text())


def _error(raw) -> str:
    with pytest.raises(ManifestError) as e:
        parse(raw, path=DEFAULT_MANIFEST)
    return str(e.value)


# ---- manifest validation ----------------------------------------------------------------------
def test_default_manifest_loads_with_table1_mixture():
    m = load()
    assert m.profile == "sample"
    assert set(m.sources) == {"commoncrawl", "c4", "github", "wikipedia", "books", "arxiv", "stackexchange"}
    assert m.sources["commoncrawl"].weight == pytest.approx(0.67)
    assert m.sources["wikipedia"].epochs == pytest.approx(2.45)
    assert m.sources["books"].epochs == pytest.approx(2.23)
    assert sum(m.weights().values()) == pytest.approx(1.0)
    # profile params override stage parameters
    assert m.models["tokenizer"]["vocab_size"] == 4000
    assert load(profile="full", check_paths=False).models["tokenizer"]["vocab_size"] == 32000


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r["sources"].__setitem__("reddit", r["sources"]["c4"]), "sources.reddit: unknown source"),
        (lambda r: r["sources"]["c4"]["stages"].append("sharpen"), "sources.c4.stages[6]: unknown stage 'sharpen'"),
        (lambda r: r["sources"]["c4"].__setitem__("weight", 0.5), "sampling proportions must sum to 1"),
        (lambda r: r["sources"]["books"].__setitem__("epochs", -1), "sources.books.epochs: must be positive"),
        (lambda r: r["sources"]["c4"].__setitem__("weight", "lots"), "sources.c4.weight: must be int/float"),
        (lambda r: r["sources"]["c4"]["inputs"].__setitem__("sample", ["data/sample/nowhere/*.gz"]), "matches no file"),
        (lambda r: r["sources"]["arxiv"].pop("stages"), "sources.arxiv.stages: missing"),
        (lambda r: r["sources"]["github"]["inputs"].pop("sample"), "sources.github.inputs.sample: missing"),
        (lambda r: r.__setitem__("colour", "blue"), "colour: unknown top-level key"),
        (lambda r: r["executor"].__setitem__("name", "k8s"), "executor.name: must be one of"),
        (lambda r: r["sources"]["c4"]["stages"].append({"tokenizer": {}}), "model stage"),
    ],
)
def test_bad_manifest_gives_one_line_naming_the_key(mutate, expected):
    raw = _raw()
    mutate(raw)
    msg = _error(raw)
    assert expected in msg
    assert "\n" not in msg


def test_bad_manifest_cli_exit_code_2_and_one_line(tmp_path):
    bad = _manifest(tmp_path, tmp_path / "out")
    raw = yaml.safe_load(bad.read_text())
    raw["sources"]["c4"]["weight"] = 0.9
    bad.write_text(yaml.safe_dump(raw))
    p = subprocess.run([PY, "-m", "pipeline", "run", "--manifest", str(bad)], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 2
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "sum to 1" in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_invalid_yaml_is_one_line(tmp_path):
    bad = tmp_path / "m.yaml"
    bad.write_text("sources: [unclosed\n")
    p = subprocess.run([PY, "-m", "pipeline", "run", "--manifest", str(bad)], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 2 and "invalid YAML" in p.stderr and "Traceback" not in p.stderr


# ---- accounting -------------------------------------------------------------------------------
def test_reason_keys_group_scores_but_keep_labels():
    assert accounting.reason_key("wikiref:0.12") == "wikiref"
    assert accounting.reason_key("langid:fr") == "langid:fr"
    assert accounting.reason_key("perplexity:tail") == "perplexity:tail"


def test_summarise_detects_a_lost_document(tmp_path):
    accounting.write_task_record(tmp_path, "in", 0, {"docs_in": 5, "bytes_in": 50})
    rec = accounting.empty_out_record()
    rec["docs_out"] = 3
    accounting.add_exclusion(rec, "langid:fr", 10)
    accounting.write_task_record(tmp_path, "out", 0, rec)
    with pytest.raises(accounting.AccountingError, match=r"\+1 unaccounted"):
        accounting.summarise(tmp_path, 1)
    accounting.add_exclusion(rec, "langid:de", 10)
    accounting.write_task_record(tmp_path, "out", 0, rec)
    assert accounting.summarise(tmp_path, 1)["docs_excluded"] == 2
    with pytest.raises(accounting.AccountingError, match="task 1 left no"):
        accounting.summarise(tmp_path, 2)


# ---- end to end on the sample: identity, kill -9, rerun ---------------------------------------
SOURCES = "github,stackexchange,c4"


def _manifest(tmp_path: Path, out: Path) -> Path:
    raw = _raw()
    raw["out_dir"] = str(out)
    for spec in raw["sources"].values():
        spec["inputs"]["sample"] = [str(REPO / p) for p in spec["inputs"]["sample"]]
    path = tmp_path / f"manifest-{out.name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _run(manifest: Path, extra: list[str] = (), **kw) -> subprocess.Popen:
    cmd = [PY, "-m", "pipeline", "run", "--manifest", str(manifest), "--sources", SOURCES, "--stages", "extract", *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, **kw)


def _contents(stage_dir: Path) -> dict[str, list[tuple]]:
    out = {}
    for sub in ("", "excluded"):
        for f in sorted((stage_dir / sub).glob("*.parquet")):
            t = pq.read_table(f).to_pylist()
            out[f"{sub}/{f.name}"] = [(r["id"], r["text"], r["source"], r["metadata"]) for r in t]
    return out


@pytest.mark.slow
def test_kill9_and_rerun_gives_identical_output_and_balanced_stats(tmp_path):
    clean_out, killed_out = tmp_path / "clean", tmp_path / "killed"
    clean = _run(_manifest(tmp_path, clean_out))
    log = clean.communicate(timeout=300)[0]
    assert clean.returncode == 0, log

    rng = random.Random(1234)
    manifest = _manifest(tmp_path, killed_out)
    kills = 0
    for _ in range(4):
        p = _run(manifest)
        time.sleep(rng.uniform(0.3, 2.5))
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            kills += 1
        p.communicate()
    final = _run(manifest)
    log = final.communicate(timeout=300)[0]
    assert final.returncode == 0, log
    assert kills >= 1

    for source in SOURCES.split(","):
        a, b = clean_out / "sample" / "extract" / source, killed_out / "sample" / "extract" / source
        assert _contents(a) == _contents(b), source
        assert not list(b.rglob("*.tmp")), "temporary files left behind"
    sa = json.loads((clean_out / "sample/report/stats.json").read_text())["stages"]
    sb = json.loads((killed_out / "sample/report/stats.json").read_text())["stages"]
    for stage, per_source in sa.items():
        for source, rec in per_source.items():
            other = sb[stage][source]
            for key in ("docs_in", "docs_out", "excluded", "bytes_in", "bytes_out"):
                assert rec[key] == other[key], (stage, source, key)
            assert rec["docs_in"] == rec["docs_out"] + sum(rec["excluded"].values())
            assert rec["docs_out"] > 0

    # a complete stage is skipped on rerun: nothing is rewritten
    mtimes = {f: f.stat().st_mtime_ns for f in (killed_out / "sample/extract").rglob("*.parquet")}
    again = _run(manifest)
    again.communicate(timeout=120)
    assert again.returncode == 0
    assert {f: f.stat().st_mtime_ns for f in (killed_out / "sample/extract").rglob("*.parquet")} == mtimes


def test_stage_command_rejects_missing_input_in_one_line(tmp_path):
    p = subprocess.run(
        [PY, "-m", "pipeline", "stage", "langid", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o")],
        cwd=REPO, capture_output=True, text=True,
    )
    assert p.returncode == 2 and "no such folder" in p.stderr and "Traceback" not in p.stderr
