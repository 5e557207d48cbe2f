"""The report and inspect commands on a real run folder built from data/sample (slow: ~30 s to build).

The run: the real runner extracts github, stackexchange and c4 and runs code_quality (github) and langid
(c4); the real minhash stage runs on c4 (plus near-copies of three pages, so that clusters exist); a real
tokenizer is trained on the output and the real tokenize stage writes token shards for github and
stackexchange (c4 deliberately has none). A training run's metrics.jsonl (written with
train.metrics.MetricsLog), the planner's scaling plot and a source with zero documents complete it. The
page is then opened in headless Chromium, as a person would: it must load without script errors and
every plot must decode.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from datatrove.data import Document

from pipeline import accounting
from pipeline.documents import ParquetShardWriter, read_documents
from pipeline.manifest import DEFAULT_MANIFEST, load
from pipeline.standalone import run_standalone
from tests.report_support import REPO, cli, parse, section, write_stage

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"


def _manifest(tmp: Path, out: Path) -> Path:
    raw = yaml.safe_load(DEFAULT_MANIFEST.read_text())
    raw["out_dir"] = str(out)
    for spec in raw["sources"].values():
        spec["inputs"]["sample"] = [str(REPO / p) for p in spec["inputs"]["sample"]]
    path = tmp / "manifest.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _minhash_folder(root: Path) -> None:
    """The real minhash stage on c4's langid output plus near-copies of three of its pages (one word
    changed per copy, and one copy that starts with markup), so that it finds clusters of at least 4, 3 and 2."""
    docs = list(read_documents(root / "langid" / "c4"))
    originals = [d for d in docs if 2000 < len(d.text) < 12000][:3]
    assert len(originals) == 3
    copies = []
    for n_copies, d in zip((3, 2, 1), originals):
        for k in range(n_copies):
            words = d.text.split(" ")
            words[len(words) // 2 + k] = f"changed{k}"
            text = " ".join(words)
            if n_copies == 1:
                text = HOSTILE + " " + text
            copies.append(Document(text=text, id=f"{d.id}/copy{k}" + ("<b>" if n_copies == 1 else ""), metadata=dict(d.metadata)))
    src = root / "minhash_input" / "c4"
    list(ParquetShardWriter(src).run(iter(docs), rank=0))
    list(ParquetShardWriter(src).run(iter(copies), rank=1))
    rec = run_standalone("minhash", src, root / "minhash" / "c4", params={"bands": 14, "rows": 8, "ngram": 5, "seed": 1},
                         source="c4", models_root=root, workers=2)
    assert rec["excluded"].get("dup:minhash", 0) >= 6, rec
    accounting.merge_into_stats(root / "report" / "stats.json", "minhash", "c4", rec)


def _training_run(root: Path, manifest: Path) -> None:
    from train.metrics import MetricsLog

    log = MetricsLog(root / "train" / "tiny", enabled=True, resume_step=None)
    for step in range(1, 41):
        log.write({"step": step, "loss": 8.0 / (1 + 0.1 * step), "lr": 1e-3 * min(1, step / 10), "tokens": step * 4096,
                   "tokens_per_s": 50_000 + 100 * step})
        if step % 10 == 0:
            log.write({"step": step, "eval": {"github": 7.0 / (1 + 0.1 * step), "stackexchange": 7.5 / (1 + 0.1 * step)}})
    log.close()
    mixture = _realised_mixture(root, manifest)
    tokens = sum(m["tokens"] for m in mixture.values())
    (root / "train" / "tiny" / "summary.json").write_text(json.dumps(
        {"run": "tiny", "steps": 40, "stop_reason": "max_steps", "tokens": tokens, "final_loss": 1.6, "mixture": mixture}))
    # an earlier run (its name sorts last, its summary is older): the mixture table must not show it
    early = root / "train" / "zz-early"
    early.mkdir(parents=True)
    (early / "metrics.jsonl").write_text("")
    (early / "summary.json").write_text(json.dumps({"run": "zz-early", "tokens": 99, "mixture": {
        "github": {"tokens": 99, "windows": 1, "share": 1.0, "target": 1.0, "epochs": 9.0, "max_epochs": 0.64}}}))
    old = (root / "train" / "tiny" / "summary.json").stat().st_mtime - 3600
    os.utime(early / "summary.json", (old, old))


def _realised_mixture(root: Path, manifest: Path) -> dict:
    """What train/loop.py writes as summary.json's ``mixture``: the real loader over the run's shards,
    drawn until github reaches its epoch cap and then up to half as many draws again (all of them
    stackexchange's, short of its own cap), so one source is capped and the shares are off target."""
    import warnings

    from train.mixture import MixtureLoader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sources without shards are skipped, with a warning
        loader = MixtureLoader(root / "tokens", manifest, seq_len=64, eval_fraction=0.02, seed=3)
    while loader.consumed["github"] < loader.cap["github"]:
        loader.consumed[loader.plan_sources(1)[0][0]] += 1
        loader.draw += 1
    for _ in range(min(loader.draw // 2, loader.cap["stackexchange"] - loader.consumed["stackexchange"] - 1)):
        loader.consumed[loader.plan_sources(1)[0][0]] += 1
        loader.draw += 1
    return loader.realised()


def _scaling(root: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.loglog([1e6, 1e7, 1e8], [4.0, 3.5, 3.1])
    fig.savefig(root / "report" / "scaling.png")
    plt.close(fig)
    (root / "report" / "scaling.json").write_text(json.dumps({"law": "chinchilla", "E": 1.69}))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    from filters.lid_model import LidModelMissing, lid_model_path

    try:
        lid_model_path()
    except LidModelMissing as e:
        pytest.skip(f"{e} (run `make setup`)")
    tmp = tmp_path_factory.mktemp("report")
    manifest = _manifest(tmp, tmp / "out")
    p = cli("run", "--manifest", str(manifest), "--sources", "github,stackexchange,c4",
             "--stages", "extract,code_quality,langid", "--workers", "2")
    assert p.returncode == 0, p.stdout + p.stderr
    root = tmp / "out" / "sample"

    from pipeline.executors import make_executor
    from pipeline.stages import StageIO
    from tokenizer.stages import TokenizerStage

    m = load(manifest, check_paths=False)
    io = StageIO("tokenizer", "*", {}, None, root / "tokenizer", root / ".work" / "tokenizer", root,
                 make_executor("local", 1), manifest=m)
    inputs = {"github": [root / "code_quality" / "github"], "stackexchange": [root / "extract" / "stackexchange"]}
    TokenizerStage({"vocab_size": 600, "max_sentences": 20000, "seed": 0, "num_threads": 1}).build(io, inputs)
    for source, folder in inputs.items():
        rec = run_standalone("tokenize", folder[0], root / "tokens" / source, params={"max_tokens_per_shard": 40_000},
                             source=source, models_root=root, workers=2)
        accounting.merge_into_stats(root / "report" / "stats.json", "tokenize", source, rec)
    write_stage(root, "extract", "arxiv", [])  # a source whose extract kept nothing
    _minhash_folder(root)
    _training_run(root, manifest)
    _scaling(root)
    report = cli("report", str(root), "--manifest", str(manifest), "--samples", "10")
    assert report.returncode == 0, report.stdout + report.stderr
    return {"root": root, "manifest": manifest, "stdout": report.stdout, "stderr": report.stderr,
            "html": (root / "report" / "index.html").read_text(encoding="utf-8"),
            "stats": json.loads((root / "report" / "stats.json").read_text())}


# ---- the report ---------------------------------------------------------------------------------
def test_funnel_tables_match_stats_json(run):
    stats, page = run["stats"], run["html"]
    funnel = parse(section(page, "funnel"))
    by_stage = {}
    for t in funnel.tables[1:]:
        for row in t[1:]:
            by_stage.setdefault(row[0], []).append(row)
    for stage, source in (("extract", "github"), ("code_quality", "github"), ("langid", "c4"), ("extract", "stackexchange")):
        rec = stats["stages"][stage][source]
        rows = [r for r in by_stage[stage] if r[1] == f"{rec['docs_in']:,}" and r[2] == f"{rec['docs_out']:,}"]
        assert rows, f"{stage}/{source} {rec['docs_in']} in / {rec['docs_out']} out not in the funnel"
        for reason, n in rec["excluded"].items():
            assert any(f"{reason} {n:,}" in r[-1] for r in rows), (stage, reason, rows)
    # the langid stage really excluded something on the sample, and the page names the reason
    assert stats["stages"]["langid"]["c4"]["docs_excluded"] > 0 or stats["stages"]["extract"]["github"]["docs_excluded"] > 0


def test_terminal_summary_lists_every_source(run):
    out = run["stdout"]
    assert "index.html" in out.splitlines()[-1]
    for source in ("commoncrawl", "c4", "github", "stackexchange", "arxiv", "books"):
        assert re.search(rf"^{source}\s", out, re.M), out
    gh = run["stats"]["stages"]["code_quality"]["github"]["docs_out"]
    line = next(line for line in out.splitlines() if line.startswith("github"))
    assert f" {gh:,} " in line and "4.5%" in line
    assert "Traceback" not in run["stderr"]
    assert (run["root"] / ".work" / "matplotlib").is_dir()  # matplotlib's cache stays inside the run folder


def test_signals_histograms_for_scores_with_thresholds(run):
    page = run["html"]
    signals = section(page, "signals")
    for key in ("language_score", "code_alnum_fraction", "code_mean_line_length"):
        assert re.search(rf"<figcaption>{key} at \w+: \d", signals), key
    figs = parse(signals).images
    assert len(figs) >= 5 and all(img["src"].startswith("data:image/png;base64,") for img in figs)
    langs = section(page, "languages")
    assert "c4" in langs and re.search(r"<td>en</td>", langs)


def test_mixture_and_shards_from_token_sidecars(run):
    root = run["root"]
    tokens = {s: sum(json.loads(p.read_text())["tokens"] for p in (root / "tokens" / s).glob("*.json") if p.name != "stats.json")
              for s in ("github", "stackexchange")}
    total = sum(tokens.values())
    mix, hypothetical = parse(section(run["html"], "mixture")).tables[:2]
    rows = {r[0]: r for r in mix[1:]}
    assert rows["github"][1] == f"{tokens['github']:,}" and rows["total"][1] == f"{total:,}"
    assert rows["c4"][1] == "0" and "No tokens for" in run["html"] and "c4" in section(run["html"], "mixture")
    # what-ifs are in their own table, labelled: epochs at total = weight × total / tokens
    assert all(h.startswith("hypothetical: ") for h in hypothetical[0][1:])
    what_if = {r[0]: r for r in hypothetical[1:]}
    assert what_if["github"][2] == f"{0.045 * total / tokens['github']:,.2f}"
    shards = parse(section(run["html"], "shards")).tables
    names = {r[0] for t in shards for r in t[1:]}
    assert {p.name for p in (root / "tokens" / "github").glob("*.ds")} <= names


def test_mixture_shows_what_the_latest_run_really_drew(run):
    """The run's realised mixture (summary.json, as the loader counted it) beside the targets, not
    weight × trained tokens / shard tokens (which claimed ~100 epochs for a source capped at ~1)."""
    summary = json.loads((run["root"] / "train" / "tiny" / "summary.json").read_text())
    realised, trained = summary["mixture"], summary["tokens"]
    mix = parse(section(run["html"], "mixture")).tables[0]
    header, rows = mix[0], {r[0]: r for r in mix[1:]}
    assert header[3:10] == ["target weight", "manifest epochs", "trained tokens (tiny)", "trained share", "run target share",
                            "trained epochs", "note"]
    gh, se = realised["github"], realised["stackexchange"]
    assert gh["epochs"] == pytest.approx(0.64, abs=0.02) and gh["share"] < gh["target"] - 0.05  # github capped, shares skewed
    for source, m in (("github", gh), ("stackexchange", se)):
        assert rows[source][5:9] == [f"{m['tokens']:,}", f"{100 * m['share']:.1f}%", f"{100 * m['target']:.1f}%",
                                     f"{m['epochs']:,.3f}"], rows[source]
    assert rows["github"][3:5] == ["4.5%", "0.64"] and rows["github"][9] == "capped at 0.64 epochs"
    assert rows["stackexchange"][9] == "" and rows["c4"][9].startswith("not drawn")
    assert rows["total"][5] == f"{trained:,}"
    assert "zz-early" not in section(run["html"], "mixture") and "epochs in run" not in run["html"]
    assert "github reached its epoch cap" in section(run["html"], "mixture")


def test_clusters_samples_and_escaping(run):
    page = run["html"]
    clusters = section(page, "clusters")
    docs = list(read_documents(run["root"] / "minhash" / "c4")) + list(read_documents(run["root"] / "minhash" / "c4", excluded=True))
    expected = {}
    for d in docs:
        expected.setdefault(d.metadata["minhash_cluster"], []).append(d)
    by_size = {}
    for members in expected.values():
        by_size[len(members)] = by_size.get(len(members), 0) + 1
    assert max(by_size) >= 4 and sum(n for k, n in by_size.items() if k > 1) >= 3, by_size  # our copies (+ the sample's own)
    sizes = {r[0]: r[1] for t in parse(clusters).tables for r in t[1:]}
    assert sizes == {f"{k:,}": f"{v:,}" for k, v in by_size.items()}
    biggest = max(expected.values(), key=len)
    assert f"cluster {html.escape(biggest[0].metadata['minhash_cluster'])} — {len(biggest)} documents" in clusters
    samples = section(page, "samples")
    assert "excluded: <code>dup:minhash</code>" in samples and "excluded: <code>licence:gpl-2.0</code>" in samples
    assert HOSTILE not in page and html.escape(HOSTILE) in page
    assert "copy0&lt;b&gt;" in page


def test_training_scaling_and_models_sections(run):
    page = run["html"]
    training = section(page, "training")
    assert len(parse(training).images) == 3 and "tiny" in training
    scaling = section(page, "scaling")
    assert parse(scaling).images[0]["src"].startswith("data:image/png;base64,") and "chinchilla" in scaling
    assert "No model stage" in section(page, "models")  # the tokenizer was trained outside the runner


def _chromium(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", "--disable-sync", f"--user-data-dir={tmp / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_page_renders_in_headless_chromium(run, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is not installed: apt-get install -y chromium")
    url = (run["root"] / "report" / "index.html").as_uri()
    dom = _chromium(["--virtual-time-budget=10000", "--dump-dom", url], tmp_path).stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body))
    assert "data-js-errors" not in attrs, attrs
    n_images = len(parse(run["html"]).images)
    assert n_images >= 10
    assert attrs.get("data-images") == str(n_images) and attrs.get("data-images-loaded") == str(n_images), attrs
    assert "pwned" not in dom.split("<body")[0]
    shot = tmp_path / "report.png"
    _chromium(["--screenshot=" + str(shot), "--window-size=1280,2000", url], tmp_path)
    assert shot.exists() and shot.stat().st_size > 50_000  # a blank 1280x2000 PNG is a few kB


# ---- inspect ------------------------------------------------------------------------------------
def _inspect(*args: str) -> subprocess.CompletedProcess:
    """The inspect command in this process (its CLI wrapper is exercised by the error cases)."""
    import contextlib
    import io

    from report import inspect

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = inspect.main(list(args))
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def _json_lines(p: subprocess.CompletedProcess) -> list[dict]:
    assert p.returncode == 0, p.stderr
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def test_inspect_filters_parquet_documents(run):
    root = run["root"]
    kept = list(read_documents(root / "extract" / "github"))
    docs = _json_lines(_inspect(str(root / "extract" / "github"), "--json", "--limit", "3"))
    assert [d["id"] for d in docs] == [d.id for d in kept[:3]]
    target = kept[4]
    one = _json_lines(_inspect(str(root / "extract" / "github"), "--json", "--id", target.id, "--max-chars", "0"))
    assert len(one) == 1 and one[0]["text"] == target.text and one[0]["metadata"]["repo"] == target.metadata["repo"]
    short = _json_lines(_inspect(str(root / "extract" / "github"), "--json", "--id", target.id, "--max-chars", "40"))
    assert short[0]["text"].startswith(target.text[:40]) and len(short[0]["text"]) < len(target.text)
    excluded = list(read_documents(root / "extract" / "github", excluded=True))
    gpl = [d.id for d in excluded if d.metadata["reason"].startswith("licence:gpl")]
    got = _json_lines(_inspect(str(root / "extract" / "github"), "--reason", "licence:gpl", "--json", "--limit", "0"))
    assert [d["id"] for d in got] == gpl and gpl
    allx = _json_lines(_inspect(str(root / "extract" / "github"), "--excluded", "--json", "--limit", "0"))
    assert len(allx) == len(excluded)
    none = _inspect(str(root / "minhash" / "c4"), "--source", "github")
    assert none.returncode == 0 and none.stdout == "" and "no matching documents" in none.stderr
    text = _inspect(str(root / "minhash" / "c4" / "excluded" / "00000.parquet"), "--limit", "1")
    assert text.returncode == 0 and text.stdout.startswith("── ") and "reason=dup:minhash" in text.stdout


def test_inspect_decodes_token_shards(run, tmp_path):
    import sentencepiece as spm

    root = run["root"]
    sp = spm.SentencePieceProcessor(model_file=str(root / "tokenizer" / "tokenizer.model"))
    source_docs = list(read_documents(root / "extract" / "stackexchange"))
    shards = sorted((root / "tokens" / "stackexchange").glob("*.ds"))
    got = _json_lines(_inspect(str(shards[0]), "--json", "--limit", "3", "--max-chars", "0"))
    assert [d["text"] for d in got] == [sp.decode(sp.encode(d.text)) for d in source_docs[:3]]
    assert all(d["source"] == "stackexchange" and d["tokens"] > 1 for d in got)
    folder = _json_lines(_inspect(str(root / "tokens" / "stackexchange"), "--json", "--limit", "0"))
    assert len(folder) == len(source_docs)
    idx = _json_lines(_inspect(str(shards[0]), "--json", "--id", "2", "--max-chars", "0"))
    assert idx == [got[2]]
    lonely = tmp_path / "x.ds"
    for suffix in ("", ".index"):
        shutil.copy(f"{shards[0]}{suffix}", f"{lonely}{suffix}")
    shutil.copy(shards[0].with_suffix(".json"), lonely.with_suffix(".json"))
    p = cli("inspect", str(lonely))
    assert p.returncode == 2 and "no tokenizer found" in p.stderr and "Traceback" not in p.stderr
    with pytest.raises(ValueError, match="apply to Parquet documents"):
        _inspect(str(shards[0]), "--reason", "dup")
    p = _inspect(str(lonely), "--tokenizer", str(root / "tokenizer" / "tokenizer.model"), "--limit", "1", "--json")
    assert _json_lines(p)[0]["text"] == got[0]["text"]


def test_scans_are_bounded_and_say_so(run):
    from report.scan import FolderScanner

    folder = run["root"] / "extract" / "stackexchange"
    full = FolderScanner(max_rows=None).scan("extract", "stackexchange", folder)
    assert full.scanned == full.rows and full.rows["kept"] == 151 and not full.sampled
    small = FolderScanner(max_rows=10, max_values=7, samples_per_reason=2).scan("extract", "stackexchange", folder)
    assert small.sampled and 0 < small.scanned["kept"] <= 10 and small.rows["kept"] == 151
    assert len(small.values("score", "kept")) <= 7 and len([s for s in small.kept_samples.items if s]) == 2


def test_shard_bytes_per_token_is_the_writing_task_s(run):
    root = run["root"]
    github_table = parse(section(run["html"], "shards")).tables[0]  # sources in folder order: github first
    shards = {r[0]: r for r in github_table[1:]}
    records = sorted((root / "tokens" / "github" / ".work" / "accounting").glob("out-*.json"))
    ratios = set()
    for rec_path in records:
        rec = json.loads(rec_path.read_text())
        if rec.get("tokens"):
            rank = int(rec_path.stem.split("-")[1])
            ratios.add(f"{rec['bytes_out'] / rec['tokens']:,.2f}")
            assert shards[f"{rank:05d}_000.ds"][5] == f"{rec['bytes_out'] / rec['tokens']:,.2f}"
    assert len(ratios) > 1  # per task, not one figure for the whole source
