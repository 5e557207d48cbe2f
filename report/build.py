"""``python -m pipeline report [out/<profile>]``: what the pipeline did, before anyone spends GPU time.

Writes ``out/<profile>/report/index.html`` (one self-contained file: inline CSS, plots as base64 PNG, see
report/plots.py for why matplotlib) and prints the funnel per source in the terminal.

Sections: the funnel per source and stage with removal reasons (exact, from report/stats.json); the
language distribution; histograms of every numeric metadata signal, kept vs excluded, at the stage that
produced it (with perplexity cutoffs and score thresholds drawn in); near-duplicate clusters; the token
mixture against the manifest's weights and epochs, with what the latest training run really drew; a
per-shard token table; sample documents, kept and excluded per reason; training curves of every run;
the scaling-law plot; model summaries.

Counts in the funnel are exact. Distributions and samples come from bounded scans (report/scan.py):
reservoirs of fixed size, so a report over a full corpus needs no more memory than over the sample.

This module is the entry point (CLI, page assembly, terminal summary); reading the output tree is
report/gather.py, the sections are report/documents.py, report/tokens.py and report/training.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from report import plots
from report.documents import (section_clusters, section_funnel, section_languages, section_samples,
                              section_signals, source_ends)
from report.gather import RunData, gather
from report.html import esc, human_bytes, page
from report.scan import FolderScanner
from report.tokens import mixture_rows, section_mixture, section_shards
from report.training import section_models, section_scaling, section_training
from storage.atomic import atomic_write_text
from storage.layout import STATS_FILE, Layout

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
    out = data.layout.report_html
    atomic_write_text(out, html)  # a browser reloading the page never sees half of it
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
    layout = Layout(root)
    if not layout.stats_path.exists() and not any(next(p.glob(f"*/{STATS_FILE}"), None) for p in root.iterdir() if p.is_dir()):
        raise FileNotFoundError(f"{root}: no report/{STATS_FILE} and no stage output (is this an out/<profile> folder?)")
    out, data = write_report(root.resolve(), args)
    for note in data.notes:
        print(f"warning: {note}", file=sys.stderr)
    print(summary_table(data))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
