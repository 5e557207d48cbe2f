"""``python -m pipeline export-hf`` on a real (small) build, checked the way a user would use the result.

The build: the real runner on four sources of data/sample (wikipedia, github, c4, stackexchange) into
tmp (~15 s). The export is then loaded with ``datasets.load_dataset`` offline, in a fresh process whose
HF_HOME is inside tmp, config by config: row counts must equal stats.json's kept counts, the typed
metadata columns must agree with the raw JSON, shards must respect the size limit. The card is parsed
with huggingface_hub's ``DatasetCard``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ops.drill import drill_manifest
from pipeline.__main__ import main as cli
from pipeline.manifest import load

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["wikipedia", "github", "c4", "stackexchange"]
# the stage whose kept documents --stage tokenize exports (the one before tokenize)
BEFORE_TOKENIZE = {"wikipedia": "extract", "github": "exactdedup", "c4": "minhash", "stackexchange": "extract"}

LOAD = r"""
import json, sys
import datasets
out = {}
for name in datasets.get_dataset_config_names(sys.argv[1]):
    ds = datasets.load_dataset(sys.argv[1], name=name, split="train")
    out[name] = {"rows": ds.num_rows, "features": {k: repr(v) for k, v in ds.features.items()},
                 "records": ds.remove_columns("text").to_list(), "text_chars": sum(len(t) for t in ds["text"])}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    root = tmp_path_factory.mktemp("hfbuild")
    manifest = drill_manifest(root / "manifest.yaml", root / "out", sources=SOURCES)
    run = subprocess.run([sys.executable, "-m", "pipeline", "run", "--manifest", str(manifest), "--workers", "2"],
                         cwd=REPO, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert run.returncode == 0, run.stderr[-3000:]
    out = root / "out" / "sample"
    return {"manifest": manifest, "out": out, "stats": json.loads((out / "report" / "stats.json").read_text())}


def _load_offline(folder: Path, tmp: Path) -> dict:
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", HF_HOME=str(tmp / "hf_home"),
               PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-c", LOAD, str(folder)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_export_loads_offline_with_datasets_and_matches_the_build(build, tmp_path, capsys):
    dest = tmp_path / "dataset"
    assert cli(["export-hf", str(dest), "--manifest", str(build["manifest"]), "--max-shard-mb", "0.5"]) == 0
    loaded = _load_offline(dest, tmp_path)
    assert list(loaded) == SOURCES  # one config per source, manifest order
    stats = build["stats"]["stages"]
    for source, data in loaded.items():
        # every kept document of the stage before tokenize, no more, no less
        assert data["rows"] == stats[BEFORE_TOKENIZE[source]][source]["docs_out"] == stats["tokenize"][source]["docs_in"]
        assert {"id", "text", "source", "metadata"} <= data["features"].keys()
        assert len({r["id"] for r in data["records"]}) == data["rows"] and data["text_chars"] > 0
        typed = [k for k in data["features"] if k not in ("id", "text", "source", "metadata")]
        assert typed, source
        for record in data["records"]:
            assert record["source"] == source
            meta = json.loads(record["metadata"])
            for key in typed:  # a typed column holds the JSON value (null where the key is absent)
                assert record[key] == meta.get(key), (source, key)
    assert "Value('float64')" in loaded["c4"]["features"]["language_score"]
    assert "Value('int64')" in loaded["wikipedia"]["features"]["page_id"]
    assert "List(Value('int64'))" in loaded["stackexchange"]["features"]["answer_scores"]
    assert {r["language"] for r in loaded["c4"]["records"]} == {"en"}

    wiki_shards = sorted((dest / "data" / "wikipedia").iterdir())
    assert len(wiki_shards) > 1  # ~3 MB of text at 0.5 MB per shard
    n = len(wiki_shards)
    assert [p.name for p in wiki_shards] == [f"train-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
    assert all(p.stat().st_size <= 500_000 for p in wiki_shards)
    assert not [p for p in dest.rglob(".*")]  # no temporaries left
    again = tmp_path / "again"  # the same build exports to the same bytes (no timestamps, stable order)
    assert cli(["export-hf", str(again), "--manifest", str(build["manifest"]), "--max-shard-mb", "0.5"]) == 0
    files = sorted(p.relative_to(dest) for p in dest.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((dest / f).read_bytes() == (again / f).read_bytes() for f in files)

    from huggingface_hub import DatasetCard

    card = DatasetCard.load(dest / "README.md")
    meta = card.data.to_dict()
    assert [c["config_name"] for c in meta["configs"]] == SOURCES
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "data/wikipedia/train-*.parquet"}]
    assert {"odc-by", "cc-by-sa-3.0", "cc-by-sa-4.0"} <= set(meta["license"])
    github = set(meta["license"]) - {"odc-by", "cc-by-sa-3.0", "cc-by-sa-4.0"}  # the kept repository licences
    assert set() < github <= {"mit", "apache-2.0", "bsd-2-clause", "bsd-3-clause"}
    assert "en" in meta["language"] and "code" in meta["language"]
    assert meta["size_categories"] == ["n<1K"] and meta["task_categories"] == ["text-generation"]
    body = card.text
    tokens = stats["tokenize"]["wikipedia"]["tokens"]
    assert f"| wikipedia | {loaded['wikipedia']['rows']:,} | {tokens:,} |" in body  # mixture table
    wiki = load(build["manifest"], check_paths=False).sources["wikipedia"]
    assert f"| {wiki.weight:g} | {wiki.epochs:g} |" in body and wiki.epochs == 2.45  # target weight and epochs
    for reason, n in stats["extract"]["wikipedia"]["excluded"].items():
        assert f"{reason} ({n:,})" in body  # the funnel's removal reasons
    assert "| split_digits | true |" in body and "| vocab_size |" in body  # tokenizer settings
    assert build["manifest"].read_text().rstrip("\n") in body  # the exact manifest
    assert "llamix 0.1" in body


def test_stage_flag_sources_and_refusals(build, tmp_path, capsys):
    m = ["--manifest", str(build["manifest"])]
    stats = build["stats"]["stages"]
    dest = tmp_path / "extract"
    assert cli(["export-hf", str(dest), "--from", str(build["out"]), "--stage", "extract",
                "--sources", "github,wikipedia", *m]) == 0
    assert sorted(p.name for p in (dest / "data").iterdir()) == ["github", "wikipedia"]
    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in (dest / "data" / "github").iterdir())
    assert rows == stats["extract"]["github"]["docs_out"] > stats["exactdedup"]["github"]["docs_out"]

    # a stage only some sources run: the others are left out with a note
    only = tmp_path / "langid"
    assert cli(["export-hf", str(only), "--stage", "langid", *m]) == 0
    assert [p.name for p in (only / "data").iterdir()] == ["c4"]
    assert "wikipedia: skipped, it does not run langid" in capsys.readouterr().out

    capsys.readouterr()
    assert cli(["export-hf", str(tmp_path / "x"), "--stage", "download", *m]) == 2
    assert cli(["export-hf", str(tmp_path / "y"), "--stage", "langid", "--sources", "github", *m]) == 2
    assert cli(["export-hf", str(build["out"]), "--force", *m]) == 2  # would replace the build itself
    assert cli(["export-hf", str(dest), *m]) == 2  # not empty, no --force
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(line.startswith("export-hf: error: ") for line in err), err
    assert "raw upstream files" in err[0] and "github does not run langid" in err[1]
    assert "holds the build" in err[2] and "pass --force" in err[3]

    # accounting that disagrees with the folder fails the export, and the old export stays whole
    stats_path = build["out"] / "report" / "stats.json"
    original = stats_path.read_text()
    tampered = json.loads(original)
    tampered["stages"]["extract"]["wikipedia"]["docs_out"] += 1
    before = (dest / "README.md").read_text()
    try:
        stats_path.write_text(json.dumps(tampered))
        assert cli(["export-hf", str(dest), "--stage", "extract", "--force", *m]) == 2
    finally:
        stats_path.write_text(original)
    assert "stats.json records" in capsys.readouterr().err
    assert (dest / "README.md").read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    # an incomplete stage folder is not exported
    marker = build["out"] / "extract" / "wikipedia" / "_SUCCESS"
    shutil.move(marker, tmp_path / "_SUCCESS")
    try:
        assert cli(["export-hf", str(tmp_path / "z"), "--stage", "extract", "--sources", "wikipedia", *m]) == 2
    finally:
        shutil.move(tmp_path / "_SUCCESS", marker)
    assert "incomplete (no _SUCCESS)" in capsys.readouterr().err
    assert cli(["export-hf", str(dest), "--stage", "extract", "--force", *m]) == 0
