"""`pipeline plan`: the sizing arithmetic (volumes walked back through the stages, tasks sized by data, disk,
memory per task, core-hours from RESULTS.md lines, a finished build replanned from its stats) on a manifest
whose numbers are easy to check by hand."""

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
throughput: extract * 50 docs/s steady (20,000 docs, 2 workers)
throughput: extract * 900 docs/s (the tiny sample: start-up dominated)
throughput: download * 80 MB/s steady (127.0.0.1, 64 MB)
`throughput: <stage> <source|*> <value> <docs/s|MB/s>` (the format line itself is not a figure)
"""


def test_parse_throughputs_prefers_measured_and_reads_any_as_star():
    t = P.parse_throughputs(RESULTS)
    assert t[("langid", "*")].value == 2000 and t[("langid", "*")].unit == "docs/s"
    assert t[("langid", "commoncrawl")].baseline
    assert t[("minhash", "*")].value == 2.0 and not t[("minhash", "*")].baseline  # measured beats baseline, either order
    assert len(t) == 6
    assert t[("extract", "*")].value == 50 and t[("extract", "*")].steady  # steady beats an earlier-or-later plain line
    assert t[("download", "*")].core_hours(docs=0, nbytes=80e6 * 3600) == pytest.approx(1.0)
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
    rows = {(r.source, r.stage): r for r in P.plan(m, P.parse_throughputs(RESULTS))}
    cc = lambda stage: rows[("commoncrawl", stage)]  # noqa: E731
    # tokenize gets the manifest's disk; each earlier stage's input is its output / the bytes it keeps
    assert cc("tokenize").bytes_in == pytest.approx(100e9)
    assert cc("minhash").bytes_in == pytest.approx(100e9 / P.KEEP["minhash"])
    assert cc("wikiref").bytes_in == pytest.approx(cc("minhash").bytes_in / P.KEEP["wikiref"])
    text = 100e9 / (P.KEEP["minhash"] * P.KEEP["wikiref"] * P.KEEP["perplexity"] * P.KEEP["langid"] * P.KEEP["linededup"])
    raw = text * P.RAW_PER_TEXT["commoncrawl"]
    assert cc("linededup").bytes_in == pytest.approx(text)
    assert cc("extract").bytes_in == pytest.approx(raw) and cc("extract").disk == pytest.approx(text * P.PARQUET_RATIO)
    assert cc("download").disk == pytest.approx(raw)
    # tasks sized by data: one extract task per raw file, 16 files per download task, one task per shard after
    files = -(-raw // P.FILE_BYTES["commoncrawl"])
    assert cc("download").passes == {"main": -(-files // 16)} and cc("download").docs_in == files
    assert cc("extract").passes == {"main": files} and cc("extract").tasks_set_by.startswith("one per raw file")
    for stage in ("langid", "wikiref", "tokenize"):
        assert cc(stage).passes == {"main": files}
    assert cc("perplexity").passes == {"score": files, "main": files}
    gh = rows[("github", "exactdedup")]
    gh_files = -(-10e9 / P.KEEP["exactdedup"] / P.KEEP["code_quality"] * P.RAW_PER_TEXT["github"] // P.FILE_BYTES["github"])
    assert gh.passes == {"hash": gh_files, "first": 4, "main": gh_files}
    # disk: documents as Parquet, tokens as uint16 + an 8-byte index entry per document
    assert cc("langid").disk == pytest.approx(cc("langid").bytes_in * P.PARQUET_RATIO)
    docs = 100e9 / P.DOC_BYTES["commoncrawl"]
    assert cc("tokenize").docs_in == pytest.approx(docs)
    assert cc("tokenize").disk == pytest.approx(100e9 / P.BYTES_PER_TOKEN * 2 + docs * 8)
    # memory per task = process + models loaded + the largest pass: its records, plus the document buffers
    # when it reads the input shards
    for r in rows.values():
        passes = [(r.io if name in P.DOC_PASSES else 0) + r.pass_memory.get(name, 0) for name in r.passes]
        if r.source == "*":  # a model build: its largest phase
            passes = list(r.pass_memory.values())
        assert r.memory == pytest.approx(P.PROCESS_BASELINE + r.loads + max(passes))
    assert cc("langid").loads == P.LID_MODEL_BYTES and cc("extract").loads == 0
    per_task = cc("langid").docs_in / files
    assert cc("langid").io == pytest.approx(P.PARQUET_READ_RSS + min(1024, per_task) * 4000 * P.READ_COPIES
                                            + P.PARQUET_WRITE_RSS + min(2000, per_task) * 4000 * P.WRITE_COPIES)
    assert gh.pass_memory == {"first": pytest.approx(gh.docs_in / 4 * 24 * P.SORT_FACTOR)}  # exactdedup: no hook, the default
    assert cc("linededup").mem_limit == 2**30
    # core-hours: commoncrawl langid has its own (baseline) line, github falls back to `any`
    assert cc("langid").core_hours == pytest.approx(cc("langid").docs_in / 1000 / 3600)
    assert cc("tokenize").core_hours == pytest.approx(100e9 / 1e6 / 3600)
    assert cc("download").core_hours == pytest.approx(raw / 80e6 / 3600)
    assert cc("perplexity").core_hours is None and cc("perplexity").throughput == "no figure"


def test_default_sizing_is_the_dedup_partition_arithmetic():
    lines = 1.6e12 / P.AVG_LINE_BYTES
    s = P.default_sizing("linededup", {"prefix_bits": 4}, shards=10, docs=4e8, nbytes=1.6e12)
    assert s == {"passes": {"hash": 10, "first": 16, "main": 10}, "memory": {"first": pytest.approx(lines / 16 * 20 * P.SORT_FACTOR)}}
    assert P.default_sizing("langid", {}, shards=7, docs=1, nbytes=1) == {"passes": {"main": 7}, "memory": {}}
    assert P.default_sizing("download", {"files_per_task": 5}, shards=11, docs=11, nbytes=1)["passes"] == {"main": 3}
    assert P.default_sizing("extract", {"task_mb": 300}, shards=10, docs=1, nbytes=1e9)["passes"] == {"main": 4}
    assert P.default_sizing("extract", {"task_mb": 1}, shards=10, docs=1, nbytes=1e9)["passes"] == {"main": 10}  # never more than files


def test_a_stage_sizing_hook_is_what_the_plan_uses(tmp_path, monkeypatch):
    """A stage that knows its passes says so; the plan takes its pass counts and memory as they are."""
    real = P.stage_class

    class HookedLangId:
        @classmethod
        def sizing(cls, params, *, shards, docs, nbytes):
            return {"passes": {"scan": 3, "main": shards}, "memory": {"scan": docs * 100.0}}

    monkeypatch.setattr(P, "stage_class", lambda name: HookedLangId if name == "langid" else real(name))
    rows = {(r.source, r.stage): r for r in P.plan(_manifest(tmp_path), {})}
    r = rows[("commoncrawl", "langid")]
    assert r.passes == {"scan": 3, "main": rows[("commoncrawl", "extract")].passes["main"]}
    assert r.pass_memory == {"scan": pytest.approx(r.docs_in * 100)}
    assert r.memory == pytest.approx(P.PROCESS_BASELINE + P.LID_MODEL_BYTES + r.docs_in * 100)  # "scan" reads no shard
    assert r.flagged and r.memory > 2 * 2**30  # 100 bytes a document cannot fit the 2 GiB allocation


def test_explicit_task_params_win(tmp_path):
    m = _manifest(tmp_path, params={"extract": {"tasks": 2}})  # fewer than github's raw files (extract never runs an empty task)
    rows = P.plan(m, {})
    assert {r.passes.get("main") for r in rows if r.source == "github" and r.stage not in ("download",)} == {2}
    gh = {r.stage: r for r in rows if r.source == "github"}
    assert gh["extract"].tasks_set_by == "extract.tasks" and gh["download"].tasks_set_by.startswith("download.files_per_task")
    # --task-gb overrides every extract count: one task per 1 GB of extracted text
    rows = P.plan(m, {}, task_bytes=1e9)
    gh = {r.stage: r for r in rows if r.source == "github"}
    tasks = -(-10e9 / P.KEEP["exactdedup"] / P.KEEP["code_quality"] // 1e9)  # 14.8 GB of text
    assert gh["extract"].passes == {"main": tasks} and gh["tokenize"].passes == {"main": tasks}
    assert gh["extract"].tasks_set_by == "--task-gb 1"


def test_model_builds_are_rows_with_their_resources(tmp_path):
    m = _manifest(tmp_path, params={"tokenizer": {"max_sentences": 1000}})
    models = {r.stage: r for r in P.plan(m, {}) if r.source == "*"}
    assert set(models) == {"lm", "wikiref_train", "tokenizer"}  # perplexity, wikiref and tokenize need them
    tok = models["tokenizer"]
    assert tok.passes == {"build": 1} and tok.docs_in == 1000
    assert tok.memory == pytest.approx(P.PROCESS_BASELINE + 1000 * (P.AVG_LINE_BYTES + P.PY_STR_OVERHEAD)
                                       + 1000 * P.AVG_LINE_BYTES * P.SPM_TRAIN_BYTES_PER_TEXT_BYTE)
    assert P.lmplz_bytes("20%", 10e9) == pytest.approx(2e9)
    assert P.lmplz_bytes("8G", 0) == 8 * 2**30 and P.lmplz_bytes("100", 0) == 100 * 2**10
    assert models["lm"].memory >= P.PROCESS_BASELINE + P.lmplz_bytes("20%", models["lm"].mem_limit)


def test_replan_takes_counts_from_a_builds_stats(tmp_path):
    m = _manifest(tmp_path)
    stats = {"stages": {
        "download": {"github": {"docs_in": 40, "bytes_in": 4e9, "tasks": 3}},
        "extract": {"github": {"docs_in": 2e6, "bytes_in": 4e9, "bytes_out": 9e9, "files": 40, "tasks": 40}},
        "code_quality": {"github": {"docs_in": 1.9e6, "bytes_in": 9e9, "tasks": 40}},
        "perplexity": {"commoncrawl": {"docs_in": 1e5, "bytes_in": 4e8, "tasks": 5}},
    }, "models": {"lm": {"languages": {"en": {"model_bytes": 3e9, "documents": 98}}}}}
    rows = {(r.source, r.stage): r for r in P.replan(m, stats, P.parse_throughputs(RESULTS))}
    assert set(rows) == {("github", "download"), ("github", "extract"), ("github", "code_quality"), ("commoncrawl", "perplexity"), ("*", "lm")}
    cq = rows[("github", "code_quality")]
    assert (cq.docs_in, cq.bytes_in, cq.passes) == (1.9e6, 9e9, {"main": 40})
    assert rows[("github", "extract")].passes == {"main": 40} and rows[("github", "download")].passes == {"main": 3}
    ppl = rows[("commoncrawl", "perplexity")]
    assert ppl.passes == {"score": 5, "main": 5} and ppl.loads >= 3e9  # the built KenLM model, not the estimate
    assert ppl.core_hours is None
    assert rows[("*", "lm")].docs_in == 98 and rows[("*", "lm")].disk == pytest.approx(3e9 + m.model_params("lm")["sp_vocab_size"] * P.SP_BYTES_PER_PIECE)
    path = tmp_path / "stats.json"
    path.write_text(__import__("json").dumps(stats))
    p = subprocess.run([sys.executable, "-m", "pipeline", "plan", "--manifest", str(m.path), "--profile", "sample", "--stats", str(path), "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = {(r["source"], r["stage"]): r for r in __import__("json").loads(p.stdout)}
    for key in ("source", "stage", "passes", "docs_in", "bytes_in", "memory", "core_hours"):
        assert key in out[("github", "code_quality")]
    assert out[("github", "code_quality")]["docs_in"] == 1.9e6


def test_flags_name_the_task_and_what_to_change(capsys):
    row = lambda stage, memory, limit: P.Row("c4", stage, {"main": 1}, 1, 1, 1, memory, limit, None, "no figure")  # noqa: E731
    P.print_plan([row("langid", 1e9, 2**31), row("quality", 3e9, 2**31), row("tokenize", 20e9, 64 * 2**30)], "x")
    out = capsys.readouterr().out
    assert "(!) langid" not in out
    assert "(!) quality/c4: 3.0 GB per task exceeds its Slurm allocation 2.1 GB" in out
    assert "(!) tokenize/c4: 20.0 GB per task is over the 16.0 GB ceiling of one task" in out


def test_cli_full_profile_prints_every_source_and_sizes_every_task():
    """The full profile's plan: every source and model build, and no task over its allocation or 16 GB,
    except stages still without a ``sizing`` hook (the default arithmetic keeps one partition's
    worth of a whole source in one task)."""
    p = subprocess.run([sys.executable, "-m", "pipeline", "plan", "--profile", "full"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    for source in load(profile="full", check_paths=False).sources:
        assert f"\n{source:<14}tokenize" in p.stdout
    for model in ("lm", "wikiref_train", "tokenizer"):
        assert f"\n{'*':<14}{model}" in p.stdout
    assert "core-hours" in p.stdout and "total" in p.stdout and "tasks set by" in p.stdout
    flagged = [line.split()[1].split("/")[0] for line in p.stdout.splitlines() if line.strip().startswith("(!)")]
    assert all(not hasattr(P.stage_class(stage), "sizing") for stage in flagged), flagged
