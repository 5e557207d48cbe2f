"""``python -m pipeline report [out/<profile>]``: what the pipeline did, before anyone spends GPU time.

Writes ``out/<profile>/report/index.html`` (one self-contained file: inline CSS, plots as base64 PNG, see
report/plots.py for why matplotlib) and prints the funnel per source in the terminal.

Sections: the funnel per source and stage with removal reasons (exact, from report/stats.json); the
language distribution; histograms of every numeric metadata signal, kept vs excluded, at the stage that
produced it (with perplexity cutoffs and score thresholds drawn in); near-duplicate clusters; the realised
token mixture against the manifest's weights and epochs; a per-shard token table; sample documents, kept
and excluded per reason; training curves of every run; the scaling-law plot; model summaries.

Counts in the funnel are exact. Distributions and samples come from bounded scans (report_scan.py):
reservoirs of fixed size, so a report over a full corpus needs no more memory than over the sample.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from report import plots
from report.html import details, esc, figure, grid, human_bytes, num, page, pre_json, table
from report.scan import FolderScan, FolderScanner, label_counts

TOKENS_DIR = "tokens"
LANGUAGE_KEY = "language"


# ---- gathering ----------------------------------------------------------------------------------
@dataclass
class ShardInfo:
    source: str
    name: str
    documents: int
    tokens: int
    mean_len: float | None
    max_len: int | None
    bytes_per_token: float | None
    vocab_size: int | None
    problem: str | None = None


@dataclass
class Run:
    name: str
    records: list[dict]
    summary: dict | None


@dataclass
class RunData:
    root: Path
    profile: str
    stats: dict[str, Any]
    manifest: Any | None
    notes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    stages: dict[str, list[str]] = field(default_factory=dict)  # source -> stages present, in order
    scans: dict[tuple[str, str], FolderScan] = field(default_factory=dict)
    shards: dict[str, list[ShardInfo]] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)

    def record(self, stage: str, source: str) -> dict[str, Any] | None:
        return self.stats.get("stages", {}).get(stage, {}).get(source)

    def tokens(self, source: str) -> int:
        return sum(s.tokens for s in self.shards.get(source, []))

    def bytes_per_token(self, source: str) -> float | None:
        rec = self.record("tokenize", source)
        if rec and rec.get("tokens"):
            return rec.get("bytes_out", 0) / rec["tokens"]
        return None

    def weight(self, source: str) -> float | None:
        return self.manifest.sources[source].weight if self.manifest and source in self.manifest.sources else None

    def epochs(self, source: str) -> float | None:
        return self.manifest.sources[source].epochs if self.manifest and source in self.manifest.sources else None


def _load_manifest(path: str | None, profile: str | None, root: Path, notes: list[str]):
    from pipeline.manifest import ManifestError, load

    try:
        if profile is None:  # the run folder out/<profile> names its profile, if the manifest has it
            manifest = load(path, check_paths=False)
            if root.name != manifest.profile and root.name in (manifest.raw.get("profiles") or {}):
                manifest = load(path, profile=root.name, check_paths=False)
            return manifest
        return load(path, profile=profile, check_paths=False)
    except ManifestError as e:
        if path:
            raise
        notes.append(f"no manifest ({e}): mixture targets and stage order are unavailable")
        return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _stats(root: Path, notes: list[str]) -> dict[str, Any]:
    """report/stats.json, completed from the stage folders' own stats.json where it lacks a record."""
    path = root / "report" / "stats.json"
    stats = _read_json(path) if path.exists() else {"version": 1, "stages": {}}
    if not path.exists():
        notes.append(f"{path} is missing: counts were read from the stage folders")
    from pipeline.registry import STAGES

    for stage in STAGES:
        folder = root / (TOKENS_DIR if stage == "tokenize" else stage)
        for rec_path in sorted(folder.glob("*/stats.json")) if folder.is_dir() else []:
            source = rec_path.parent.name
            if source not in stats.setdefault("stages", {}).get(stage, {}):
                try:
                    stats["stages"].setdefault(stage, {})[source] = json.loads(rec_path.read_text())
                except json.JSONDecodeError:
                    notes.append(f"{rec_path}: unreadable, skipped")
    return stats


def _order(data: RunData) -> None:
    from pipeline.registry import STAGES

    in_stats: dict[str, list[str]] = {}
    for stage, by_source in data.stats.get("stages", {}).items():
        for source in by_source:
            in_stats.setdefault(source, []).append(stage)
    manifest_sources = list(data.manifest.sources) if data.manifest else []
    data.sources = manifest_sources + sorted(s for s in in_stats if s not in manifest_sources)
    canonical = list(STAGES)
    for source in data.sources:
        present = in_stats.get(source, [])
        order = data.manifest.sources[source].stage_names() if data.manifest and source in data.manifest.sources else []
        rank = {s: i for i, s in enumerate(order)}
        data.stages[source] = sorted(present, key=lambda s: (rank.get(s, len(order)), canonical.index(s) if s in canonical else 99, s))


def _scan_folders(data: RunData, scanner: FolderScanner) -> None:
    for source in data.sources:
        for stage in data.stages[source]:
            folder = data.root / stage / source
            if stage == "tokenize" or not folder.is_dir():
                continue
            if not any(folder.glob("*.parquet")) and not any((folder / "excluded").glob("*.parquet")):
                continue
            scan = data.scans[(stage, source)] = scanner.scan(stage, source, folder)
            data.notes += scan.problems


def _task_bytes_per_token(root: Path, source: str) -> dict[int, float]:
    """Exact bytes/token per tokenize task, from its accounting record (bytes and tokens it wrote)."""
    out = {}
    for path in sorted((root / TOKENS_DIR / source / ".work" / "accounting").glob("out-*.json")):
        try:
            rec = json.loads(path.read_text())
            rank = int(path.stem.split("-")[1])
        except (ValueError, IndexError, json.JSONDecodeError):
            continue
        if rec.get("tokens"):
            out[rank] = rec.get("bytes_out", 0) / rec["tokens"]
    return out


def _token_shards(data: RunData) -> None:
    base = data.root / TOKENS_DIR
    for folder in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        source = folder.name
        per_task = _task_bytes_per_token(data.root, source)
        fallback = data.bytes_per_token(source)
        infos = []
        for ds in sorted(folder.glob("*.ds")):
            sidecar = ds.with_suffix(".json")
            problem = None
            try:
                meta = json.loads(sidecar.read_text())
                ends = np.fromfile(f"{ds}.index", dtype="<u8")
            except (OSError, json.JSONDecodeError, ValueError) as e:
                infos.append(ShardInfo(source, ds.name, 0, 0, None, None, None, None, problem=f"unreadable: {e}"))
                continue
            lengths = np.diff(np.concatenate([[0], ends.astype(np.int64)])) if len(ends) else np.zeros(0, np.int64)
            if len(ends) != meta.get("documents") or (len(ends) and int(ends[-1]) != meta.get("tokens")):
                problem = "index does not match the sidecar"
            try:
                rank = int(ds.stem.split("_")[0])
            except ValueError:
                rank = -1
            infos.append(ShardInfo(
                source, ds.name, int(meta.get("documents", len(ends))), int(meta.get("tokens", 0)),
                float(lengths.mean()) if len(lengths) else None, int(lengths.max()) if len(lengths) else None,
                per_task.get(rank, fallback), meta.get("vocab_size"), problem,
            ))
        data.shards[source] = infos
        if source not in data.sources:
            data.sources.append(source)
            data.stages.setdefault(source, [])


def _read_jsonl(path: Path) -> list[dict]:
    """metrics.jsonl records (train/metrics.py's format), skipping a last line cut short by a kill.
    Read here rather than with train.metrics so that the report does not import torch."""
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


def _runs(data: RunData) -> None:
    base = data.root / "train"
    for run_dir in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        metrics = run_dir / "metrics.jsonl"
        if not metrics.exists():
            continue
        records = _read_jsonl(metrics)
        summary_path = run_dir / "summary.json"
        summary = None
        if summary_path.exists():
            try:
                summary = _read_json(summary_path)
            except ValueError as e:
                data.notes.append(str(e))
        data.runs.append(Run(run_dir.name, records, summary))


def gather(root: Path, manifest_path: str | None = None, profile: str | None = None,
           scanner: FolderScanner | None = None) -> RunData:
    notes: list[str] = []
    manifest = _load_manifest(manifest_path, profile, root, notes)
    data = RunData(root, profile or (manifest.profile if manifest else root.name), _stats(root, notes), manifest, notes)
    _order(data)
    _scan_folders(data, scanner or FolderScanner())
    _token_shards(data)
    _runs(data)
    return data


# ---- sections -----------------------------------------------------------------------------------
def _reasons(excluded: dict[str, int], top: int | None = None) -> str:
    items = sorted(excluded.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = items[:top] if top else items
    text = ", ".join(f"<code>{esc(r)}</code> {n:,}" for r, n in shown)
    if top and len(items) > top:
        text += f", … {len(items) - top} more"
    return text or "—"


def _pct(a: float, b: float) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "—"


def funnel_rows(data: RunData, source: str) -> list[dict[str, Any]]:
    rows = []
    bpt = data.bytes_per_token(source)
    for stage in data.stages.get(source, []):
        rec = data.record(stage, source) or {}
        tokens = rec.get("tokens")
        estimate = None
        if tokens is None and bpt and stage != "download":  # download's bytes are raw files, not text
            estimate = round(rec.get("bytes_out", 0) / bpt)
        rows.append({"stage": stage, "rec": rec, "tokens": tokens, "estimate": estimate})
    return rows


def source_ends(data: RunData, source: str) -> tuple[int | None, dict[str, Any], list[dict[str, Any]]]:
    """(documents extracted, the last document stage's record, the document stages' funnel rows):
    the two ends of a source's funnel, skipping download (files) and tokenize (no documents out)."""
    doc_rows = [r for r in funnel_rows(data, source) if r["stage"] not in ("download", "tokenize")]
    if not doc_rows:
        return None, {}, []
    first = doc_rows[0]["rec"]
    extracted = first.get("docs_out") if doc_rows[0]["stage"] == "extract" else first.get("docs_in")
    return extracted, doc_rows[-1]["rec"], doc_rows


def section_funnel(data: RunData) -> str:
    out = ['<h2 id="funnel">Funnel</h2><p class="muted">Exact counts from report/stats.json. Each stage '
           "accounts for every document: in = kept + excluded. <code>download</code> counts files, <code>extract</code> files or "
           "records in and documents out; tokens of the kept text before <code>tokenize</code> are estimated (≈) from the "
           "source's measured bytes per token.</p>"]
    overview = []
    for source in data.sources:
        extracted, last, _ = source_ends(data, source)
        overview.append([
            f'<a href="#funnel-{esc(source)}">{esc(source)}</a>', esc(" → ".join(data.stages.get(source, [])) or "not run"),
            num(extracted), num(last.get("docs_out")), human_bytes(last.get("bytes_out")), num(data.tokens(source) or None),
        ])
    out.append(table(["source", "stages", "documents extracted", "documents kept", "bytes kept", "tokens"],
                     overview, numeric=(2, 3, 4, 5)))
    for source in data.sources:
        rows = funnel_rows(data, source)
        body = []
        for r in rows:
            rec = r["rec"]
            tok = num(r["tokens"]) if r["tokens"] is not None else (f"≈{num(r['estimate'])}" if r["estimate"] is not None else "—")
            body.append([
                esc(r["stage"]), num(rec.get("docs_in")), num(rec.get("docs_out")), num(rec.get("docs_excluded")),
                _pct(rec.get("docs_out", 0), rec.get("docs_in", 0)), human_bytes(rec.get("bytes_in")),
                human_bytes(rec.get("bytes_out")), tok, num(rec.get("seconds"), 1), _reasons(rec.get("excluded") or {}),
            ])
        if not rows:
            body.append(["—", "", "", "", "", "", "", "", "", "this source has not been run"])
        out.append(f'<h3 id="funnel-{esc(source)}">{esc(source)}</h3>')
        out.append(table(["stage", "docs in", "kept", "excluded", "kept %", "bytes in", "bytes kept", "tokens kept", "seconds", "removal reasons"],
                         body, numeric=(1, 2, 3, 4, 5, 6, 7, 8), cls="funnel"))
    return "".join(out)


def _owned_keys(data: RunData, source: str) -> list[tuple[FolderScan, list[str], list[str]]]:
    """Per scanned stage of ``source``: the numeric and label keys that first appear there (the stage
    that produced them), so each signal is shown once, where it was used to decide."""
    seen: set[str] = set()
    out = []
    for stage in data.stages.get(source, []):
        scan = data.scans.get((stage, source))
        if scan is None:
            continue
        numeric = sorted(k for k in scan.numeric if k not in seen)
        labels = sorted(k for k in scan.labels if k not in seen)
        seen |= scan.keys_seen
        out.append((scan, numeric, labels))
    return out


def _lines_for(data: RunData, scan: FolderScan, key: str) -> list[tuple[str, float]]:
    """Decision lines to draw on a score's histogram: perplexity cutoffs (perplexity.json or metadata)
    and the stage's ``threshold`` parameter on its ``*_score``."""
    lines: list[tuple[str, float]] = []
    rec = data.record(scan.stage, scan.source) or {}
    params = rec.get("params") or {}
    summary_path = scan.folder / f"{key}.json"
    if summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text())
            pcts = summary.get("percentiles") or ["", ""]
            for lang, cuts in sorted((summary.get("cutoffs") or {}).items())[:3]:
                for p, c in zip(pcts, cuts):
                    lines.append((f"{lang} p{p:g}" if isinstance(p, (int, float)) else str(lang), float(c)))
        except (json.JSONDecodeError, TypeError, ValueError):
            pass
    if not lines and key in scan.cutoff_lines:
        lines += [(f"cutoff {i + 1}", c) for i, c in enumerate(scan.cutoff_lines[key])]
    threshold = params.get("threshold")
    if key.endswith("_score") and isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
        lines.append((f"threshold {threshold:g}", float(threshold)))
    limit = _limit_param(key, params)
    if limit:
        lines.append((f"{limit} {params[limit]:g}", float(params[limit])))
    return lines


def _limit_param(key: str, params: dict[str, Any]) -> str | None:
    """The stage parameter that bounds ``key``: ``max_line_length`` for ``code_max_line_length``,
    ``min_alnum_fraction`` for ``code_alnum_fraction``; the longest matching name wins, so
    ``max_mean_line_length`` (not ``max_line_length``) bounds ``code_mean_line_length``."""
    best, best_len = None, 0
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        names = [name] + ([name[4:]] if name.startswith(("min_", "max_")) else [])
        for n in names:
            if (key == n or key.endswith("_" + n)) and len(n) > best_len:
                best, best_len = name, len(n)
    return best


def _sampled_note(scan: FolderScan) -> str:
    if not scan.sampled:
        return ""
    return (f" (scanned {scan.scanned['kept']:,} of {scan.rows['kept']:,} kept and "
            f"{scan.scanned['excluded']:,} of {scan.rows['excluded']:,} excluded)")


def section_languages(data: RunData) -> str:
    out = ['<h2 id="languages">Languages</h2><p class="muted"><code>metadata.language</code> where a stage set it '
           "(langid for web text, extract for Wikipedia; code files carry their programming language).</p>"]
    found = False
    for source in data.sources:
        for scan, _, labels in _owned_keys(data, source):
            if LANGUAGE_KEY not in labels:
                continue
            counts = label_counts(scan, LANGUAGE_KEY)
            if not counts:
                continue
            found = True
            langs = sorted(set(counts["kept"]) | set(counts["excluded"]), key=lambda lang: -(counts["kept"][lang] + counts["excluded"][lang]))
            top = langs[:20]
            rows = [[esc(lang), num(counts["kept"][lang]), num(counts["excluded"][lang])] for lang in top]
            total = sum(counts["kept"].values()) + sum(counts["excluded"].values())
            img = plots.bars(f"{source} — language at {scan.stage}", top,
                             {"kept": [counts["kept"][lang] for lang in top], "excluded": [counts["excluded"][lang] for lang in top]},
                             ylabel="documents", stacked=True)
            out.append(f"<h3>{esc(source)} <span class='muted'>at {esc(scan.stage)}, {total:,} documents{esc(_sampled_note(scan))}</span></h3>")
            out.append(grid([figure(img, f"{source}: documents per language (top {len(top)} of {len(langs)})"),
                             table(["language", "kept", "excluded"], rows, numeric=(1, 2))]))
            break
    if not found:
        out.append("<p>No stage has labelled languages yet.</p>")
    return "".join(out)


def section_signals(data: RunData) -> str:
    out = ['<h2 id="signals">Scores and signals</h2><p class="muted">Every numeric metadata key, at the stage that '
           "produced it, kept (green) vs excluded (red) at that stage; dashed lines are the stage's thresholds and cutoffs. "
           "Identifiers (<code>*_id</code>) are skipped.</p>"]
    any_plot = False
    for source in data.sources:
        figs, constants, label_tables = [], [], []
        for scan, numeric, labels in _owned_keys(data, source):
            for key in numeric:
                kept, excl = scan.values(key, "kept"), scan.values(key, "excluded")
                if len(set(kept) | set(excl)) < 2:
                    constants.append(f"<code>{esc(key)}</code> = {num((kept or excl or [None])[0])} at {esc(scan.stage)}")
                    continue
                lines = _lines_for(data, scan, key)
                uri = plots.histogram(f"{source} · {scan.stage} · {key}", kept, excl, lines)
                caption = f"{key} at {scan.stage}: {len(kept):,} kept, {len(excl):,} excluded values" + _sampled_note(scan)
                figs.append(figure(uri, caption))
            for key in labels:
                counts = label_counts(scan, key)
                if key == LANGUAGE_KEY or not counts:
                    continue
                values = sorted(set(counts["kept"]) | set(counts["excluded"]), key=lambda v: -(counts["kept"][v] + counts["excluded"][v]))
                if len(values) > 30:
                    continue
                rows = [[esc(v), num(counts["kept"][v]), num(counts["excluded"][v])] for v in values]
                label_tables.append(f"<div><h3>{esc(key)} <span class='muted'>at {esc(scan.stage)}</span></h3>"
                                    + table([key, "kept", "excluded"], rows, numeric=(1, 2)) + "</div>")
        if not (figs or constants or label_tables):
            continue
        any_plot = any_plot or bool(figs)
        body = grid(figs)
        if constants:
            body += "<p class='muted'>Constant: " + "; ".join(constants) + "</p>"
        if label_tables:
            body += details("labels", grid(label_tables))
        out.append(details(f"{esc(source)} — {len(figs)} plot{'' if len(figs) == 1 else 's'}", body, open_=True))
    if len(out) == 1:
        out.append("<p>No numeric signals in the stage folders.</p>")
    return "".join(out)


def _doc_html(sample, excluded: bool) -> str:
    meta = ", ".join(f"{esc(k)}={esc(json.dumps(v, ensure_ascii=False, default=str))}" for k, v in sample.metadata.items())
    return (f'<div class="doc{" x" if excluded else ""}"><div><b>{esc(sample.id)}</b> '
            f'<span class="muted">{sample.chars:,} chars</span></div><div class="meta">{meta}</div>'
            f"<pre>{esc(sample.text)}</pre></div>")


def _size_bins(hist: dict[int, int]) -> dict[str, int]:
    """Cluster sizes for a bar plot: one bar per size when there are few, else powers of two."""
    if len(hist) <= 20:
        return {str(k): v for k, v in hist.items()}
    bins: dict[str, int] = {}
    for size, n in hist.items():
        lo = 1 << (max(size, 1).bit_length() - 1)
        label = str(lo) if lo == 1 else f"{lo}–{2 * lo - 1}"
        bins[label] = bins.get(label, 0) + n
    return bins


def section_clusters(data: RunData) -> str:
    out = ['<h2 id="clusters">Near-duplicate clusters</h2>']
    found = False
    for (stage, source), scan in data.scans.items():
        keys = sorted(scan.clusters)
        if any(k.endswith("_cluster") for k in keys):  # duplicate_of then only repeats what the cluster id says
            keys = [k for k in keys if k.endswith("_cluster")]
        for key in keys:
            stats = scan.clusters[key]
            found = True
            hist = stats.size_histogram()
            parts = [f"<p>{stats.documents:,} documents carry <code>{esc(key)}</code> at {esc(stage)}; "
                     f"{stats.excluded:,} of them were excluded as duplicates.{esc(_sampled_note(scan))}"
                     + (" Cluster sizes are partial: too many clusters to count." if stats.truncated else "") + "</p>"]
            if hist:
                binned = _size_bins(hist)
                uri = plots.bars(f"{source} · {stage} · clusters by size", list(binned), {"clusters": list(binned.values())},
                                 ylabel="clusters", log_y=max(hist.values()) > 50)
                parts.append(grid([figure(uri, "number of clusters of each size (size 1: no near-duplicate)"),
                                   table(["cluster size", "clusters"], [[num(s), num(n)] for s, n in list(hist.items())[:40]],
                                         numeric=(0, 1))]))
            examples = stats.largest_examples(5)
            for cluster, size, members in examples:
                docs = "".join(_doc_html(m, bool(m.metadata.get("reason"))) for m in members)
                parts.append(details(f"cluster {esc(cluster)} — {size:,} documents, {len(members)} shown", docs))
            out.append(f"<h3>{esc(source)} · {esc(stage)}</h3>" + "".join(parts))
    if not found:
        out.append("<p>No cluster labels (<code>*_cluster</code>, <code>duplicate_of</code>) in the stage folders yet.</p>")
    return "".join(out)


def mixture_rows(data: RunData) -> tuple[list[dict[str, Any]], int]:
    """Realised token mixture vs the manifest: per source its tokens, share, target weight, the epochs a
    run over all the corpus's tokens implies (weight × total / tokens) and the largest budget before the
    source exceeds the manifest's (LLaMA's) epochs (epochs × tokens / weight)."""
    total = sum(data.tokens(s) for s in data.sources)
    rows = []
    for source in data.sources:
        tokens, w, ep = data.tokens(source), data.weight(source), data.epochs(source)
        rows.append({
            "source": source, "tokens": tokens, "share": tokens / total if total else None, "weight": w,
            "target": round(w * total) if w is not None else None,
            "epochs_implied": (w * total / tokens) if (w is not None and tokens) else None,
            "epochs": ep, "budget": round(ep * tokens / w) if (w and ep is not None) else None,
        })
    return rows, total


def section_mixture(data: RunData) -> str:
    rows, total = mixture_rows(data)
    out = ['<h2 id="mixture">Token mixture</h2>']
    if not total:
        out.append("<p>No token shards yet (<code>tokens/&lt;source&gt;/*.ds</code>).</p>")
        return "".join(out)
    run = next((r for r in reversed(data.runs) if r.summary and r.summary.get("tokens")), None)
    headers = ["source", "tokens", "share", "target weight", "weight × total", "epochs at total", "manifest epochs",
               "budget at manifest epochs"]
    if run:
        headers.append(f"epochs in run {run.name}")
    body = []
    for r in rows:
        cells = [esc(r["source"]), num(r["tokens"]), _pct(r["tokens"], total),
                 f"{100 * r['weight']:.1f}%" if r["weight"] is not None else "—", num(r["target"]),
                 num(r["epochs_implied"], 2), num(r["epochs"], 2), num(r["budget"])]
        if run:
            cells.append(num(r["weight"] * run.summary["tokens"] / r["tokens"], 3) if r["weight"] is not None and r["tokens"] else "—")
        body.append(cells)
    out.append(table(headers, body, numeric=tuple(range(1, len(headers))), total=["total", num(total), "100%", "", "", "", "", ""] + ([""] if run else [])))
    bounded = [r for r in rows if r["budget"] and r["weight"] and r["tokens"]]
    if bounded:
        binding = min(bounded, key=lambda r: r["budget"])
        out.append(f"<p>Largest training budget with every source that has tokens within its manifest epochs: "
                   f"<b>{num(binding['budget'])}</b> tokens (bound by <code>{esc(binding['source'])}</code>). A run over all "
                   f"{num(total)} tokens at the manifest weights repeats each source <i>epochs at total</i> times.</p>")
    missing = [r["source"] for r in rows if r["weight"] and not r["tokens"]]
    if missing:
        out.append(f'<p class="warn">No tokens for {esc(", ".join(missing))}: a run with the manifest weights cannot sample '
                   "them (the loader renormalises or stops).</p>")
    if data.manifest:
        labels = [r["source"] for r in rows]
        uri = plots.bars("realised share vs target weight", labels,
                         {"realised share": [100 * (r["share"] or 0) for r in rows], "target weight": [100 * (r["weight"] or 0) for r in rows]},
                         ylabel="% of tokens", colours=("#264653", "#e9c46a"))
        out.append(grid([figure(uri, "per source: % of the corpus's tokens vs the manifest's sampling proportion")]))
    return "".join(out)


def section_shards(data: RunData) -> str:
    out = ['<h2 id="shards">Token shards</h2><p class="muted">From the <code>.ds.index</code> offsets and JSON sidecars; '
           "lengths are in tokens including EOS; bytes per token is the tokenize task's UTF-8 bytes over its tokens.</p>"]
    if not any(data.shards.values()):
        out.append("<p>No token shards yet.</p>")
        return "".join(out)
    for source, infos in data.shards.items():
        rows = [[esc(s.name), num(s.documents), num(s.tokens), num(s.mean_len, 1), num(s.max_len), num(s.bytes_per_token, 2),
                 num(s.vocab_size), esc(s.problem or "")] for s in infos]
        tokens, docs = sum(s.tokens for s in infos), sum(s.documents for s in infos)
        total = ["total", num(docs), num(tokens), num(tokens / docs, 1) if docs else "—",
                 num(max((s.max_len or 0) for s in infos) if infos else None), num(data.bytes_per_token(source), 2), "", ""]
        out.append(details(f"{esc(source)} — {len(infos)} shards, {tokens:,} tokens",
                           table(["shard", "documents", "tokens", "mean doc", "max doc", "bytes/token", "vocab", "problem"],
                                 rows, numeric=(1, 2, 3, 4, 5, 6), total=total), open_=len(data.shards) <= 3))
    return "".join(out)


def section_samples(data: RunData) -> str:
    out = ['<h2 id="samples">Sample documents</h2><p class="muted">Uniform samples (reservoir) of kept documents and of '
           "the excluded documents for each reason, truncated; read what a filter removed before trusting it.</p>"]
    if not data.scans:
        out.append("<p>No stage folders with documents.</p>")
    for source in data.sources:
        parts = []
        for stage in data.stages.get(source, []):
            scan = data.scans.get((stage, source))
            if scan is None:
                continue
            inner = []
            kept = [s for s in scan.kept_samples.items if s is not None] if scan.kept_samples else []
            mean = scan.chars_total / scan.scanned["kept"] if scan.scanned["kept"] else None
            inner.append(details(f"kept — {scan.rows['kept']:,} documents (mean {num(round(mean) if mean is not None else None)} chars, max {num(scan.chars_max)})",
                                 "".join(_doc_html(s, False) for s in kept) or "<p>none</p>"))
            exact = (data.record(stage, source) or {}).get("excluded") or {}
            for reason, res in sorted(scan.excluded_samples.items(), key=lambda kv: -scan.reason_counts[kv[0]]):
                docs = [s for s in res.items if s is not None]
                count = exact.get(reason, scan.reason_counts[reason])
                inner.append(details(f"excluded: <code>{esc(reason)}</code> — {count:,} documents",
                                     "".join(_doc_html(s, True) for s in docs)))
            parts.append(details(f"{esc(stage)} <span class='muted'>{scan.rows['kept']:,} kept, {scan.rows['excluded']:,} excluded</span>",
                                 "".join(inner)))
        if parts:
            out.append(f"<h3>{esc(source)}</h3>" + "".join(parts))
    return "".join(out)


def _series(records: list[dict], key: str) -> tuple[list[float], list[float]]:
    pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float)) and "step" in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def section_training(data: RunData) -> str:
    out = ['<h2 id="training">Training</h2>']
    if not data.runs:
        out.append("<p>No training run yet (<code>train/&lt;run&gt;/metrics.jsonl</code>).</p>")
        return "".join(out)
    for run in data.runs:
        figs = []
        loss = _series(run.records, "loss")
        evals: dict[str, tuple[list, list]] = {}
        for r in run.records:
            for source, value in (r.get("eval") or {}).items() if isinstance(r.get("eval"), dict) else ():
                if isinstance(value, (int, float)):
                    xs, ys = evals.setdefault(f"eval {source}", ([], []))
                    xs.append(r.get("step", 0))
                    ys.append(value)
        if loss[0] or evals:
            series = ({"train loss": loss} if loss[0] else {}) | evals
            figs.append(figure(plots.curves(f"{run.name}: loss", series, "step", "loss"), "training loss and held-out loss per source"))
        tps = _series(run.records, "tokens_per_s")
        if tps[0]:
            figs.append(figure(plots.curves(f"{run.name}: throughput", {"tokens/s": tps}, "step", "tokens/s"), "tokens per second"))
        lr = _series(run.records, "lr")
        if lr[0]:
            figs.append(figure(plots.curves(f"{run.name}: learning rate", {"lr": lr}, "step", "lr"), "learning-rate schedule"))
        last = next((r for r in reversed(run.records) if "loss" in r), {})
        text = f"<p>{len(loss[0]):,} logged steps; last step {num(last.get('step'))}, loss {num(last.get('loss'), 4)}.</p>"
        if run.summary:
            if run.summary.get("stop_reason"):
                text += f"<p>Stopped: {esc(run.summary['stop_reason'])}.</p>"
            text += details("summary.json", pre_json(run.summary))
        out.append(f"<h3>{esc(run.name)}</h3>" + text + grid(figs))
    return "".join(out)


def section_scaling(data: RunData) -> str:
    out = ['<h2 id="scaling">Scaling law</h2>']
    png, js = data.root / "report" / "scaling.png", data.root / "report" / "scaling.json"
    if not png.exists() and not js.exists():
        out.append("<p>No scaling-law fit yet (<code>report/scaling.png</code>, <code>scaling.json</code>).</p>")
        return "".join(out)
    if png.exists():
        out.append(f'<img class="plot" src="{plots.png_file_uri(png)}" alt="scaling-law plot">')
    if js.exists():
        try:
            out.append(details("scaling.json", pre_json(json.loads(js.read_text()))))
        except json.JSONDecodeError:
            out.append('<p class="warn">scaling.json is not valid JSON.</p>')
    return "".join(out)


def section_models(data: RunData) -> str:
    models = data.stats.get("models") or {}
    out = ['<h2 id="models">Models</h2>']
    if not models:
        out.append("<p>No model stage has run.</p>")
    for name, summary in sorted(models.items()):
        secs = summary.get("seconds") if isinstance(summary, dict) else None
        out.append(details(f"{esc(name)} <span class='muted'>{num(secs, 1)} s</span>", pre_json(summary)))
    return "".join(out)


SECTIONS = (
    ("funnel", "Funnel", section_funnel),
    ("languages", "Languages", section_languages),
    ("signals", "Signals", section_signals),
    ("clusters", "Duplicates", section_clusters),
    ("mixture", "Mixture", section_mixture),
    ("shards", "Shards", section_shards),
    ("samples", "Samples", section_samples),
    ("training", "Training", section_training),
    ("scaling", "Scaling", section_scaling),
    ("models", "Models", section_models),
)


def render(data: RunData) -> str:
    head = [f"<h1>llamix report — {esc(data.profile)}</h1>",
            f'<p class="muted">{esc(data.root)}'
            + (f" · manifest {esc(data.manifest.path)}" if data.manifest else "") + "</p>"]
    head += [f'<p class="warn">{esc(n)}</p>' for n in data.notes]
    body = "".join(head) + "".join(fn(data) for _, _, fn in SECTIONS)
    return page(f"llamix report — {data.profile}", [(a, label) for a, label, _ in SECTIONS], body)


# ---- terminal -----------------------------------------------------------------------------------
def summary_table(data: RunData) -> str:
    """The funnel per source as fixed-width text: documents at each end, reasons, tokens, mixture."""
    rows, total = mixture_rows(data)
    by_source = {r["source"]: r for r in rows}
    header = f"{'source':<14} {'stages':>6} {'extracted':>9} {'kept':>9} {'kept%':>6} {'bytes kept':>11} {'tokens':>11} {'share':>6} {'target':>6}  top exclusions (all stages)"
    lines = [header, "-" * len(header)]
    for source in data.sources:
        docs_in, last, doc_rows = source_ends(data, source)
        reasons: dict[str, int] = {}
        for r in doc_rows:
            for reason, n in (r["rec"].get("excluded") or {}).items():
                reasons[reason] = reasons.get(reason, 0) + n
        top = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
        m = by_source[source]
        share = f"{100 * m['share']:.1f}%" if m["share"] is not None else "-"
        target = f"{100 * m['weight']:.1f}%" if m["weight"] is not None else "-"
        kept_pct = f"{100 * (last.get('docs_out') or 0) / docs_in:.0f}%" if docs_in else "-"
        lines.append(
            f"{source:<14} {len(data.stages.get(source, [])):>6} {_n(docs_in):>9} {_n(last.get('docs_out')):>9} {kept_pct:>6} "
            f"{human_bytes(last.get('bytes_out')) if last else '-':>11} {_n(m['tokens'] or None):>11} {share:>6} {target:>6}  {top}"
        )
    lines.append(f"{'total':<14} {'':>6} {'':>9} {'':>9} {'':>6} {'':>11} {_n(total or None):>11}")
    return "\n".join(lines)


def _n(value) -> str:
    return "-" if value is None else f"{value:,}"


# ---- CLI ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline report", description=__doc__.split("\n")[0])
    p.add_argument("run", nargs="?", default=None, help="the run folder out/<profile> (default: the manifest's, sample profile)")
    p.add_argument("--manifest", default=None, help="data_manifest.yaml for weights, epochs and stage order (default: the repo's)")
    p.add_argument("--profile", default=None, help="manifest profile (default: the run folder's name)")
    p.add_argument("--samples", type=int, default=3, help="sample documents kept per stage and per exclusion reason")
    p.add_argument("--max-chars", type=int, default=600, help="characters shown per sample document")
    p.add_argument("--max-rows", type=int, default=200_000, help="rows scanned per stage folder side (0: all)")
    p.add_argument("--max-values", type=int, default=20_000, help="values kept per histogram (reservoir)")
    return p


def write_report(root: Path, args: argparse.Namespace) -> tuple[Path, RunData]:
    scanner = FolderScanner(samples_per_reason=max(0, args.samples), max_values=max(10, args.max_values),
                            max_chars=max(20, args.max_chars), max_rows=args.max_rows or None)
    data = gather(root, args.manifest, args.profile, scanner)
    with plots.config_dir(root):
        html = render(data)
    out = root / "report" / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".index.html.{os.getpid()}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out, data


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.run is None:
        from pipeline.manifest import load

        root = load(args.manifest, profile=args.profile, check_paths=False).out_root
    else:
        root = Path(args.run)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run folder (build one with `python -m pipeline run`)")
    if not (root / "report" / "stats.json").exists() and not any(next(p.glob("*/stats.json"), None) for p in root.iterdir() if p.is_dir()):
        raise FileNotFoundError(f"{root}: no report/stats.json and no stage output (is this an out/<profile> folder?)")
    out, data = write_report(root.resolve(), args)
    for note in data.notes:
        print(f"warning: {note}", file=sys.stderr)
    print(summary_table(data))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
