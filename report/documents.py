"""The report's sections on documents: the funnel, languages, score histograms, near-duplicate clusters
and sample documents of every document stage.

Why together: they all read the same two things — exact counts from stats.json and bounded scans of the
stage folders (report/scan.py) — and show a signal once, at the stage that produced it, which is where
a filter's decision can be judged.
"""

from __future__ import annotations

import json
from typing import Any

from report import plots
from report.gather import RunData
from report.html import details, esc, figure, grid, human_bytes, num, pct, table
from report.scan import FolderScan, label_counts

LANGUAGE_KEY = "language"


def _reasons(excluded: dict[str, int], top: int | None = None) -> str:
    items = sorted(excluded.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = items[:top] if top else items
    text = ", ".join(f"<code>{esc(r)}</code> {n:,}" for r, n in shown)
    if top and len(items) > top:
        text += f", … {len(items) - top} more"
    return text or "—"


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
                pct(rec.get("docs_out", 0), rec.get("docs_in", 0)), human_bytes(rec.get("bytes_in")),
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

