"""The report's plots, as PNG data URIs to embed in one self-contained HTML file.

Why matplotlib (Agg backend): it is already a dependency (the planner's scaling plot), renders without a
display or a browser, and PNGs embedded as base64 make ``index.html`` a single file that opens offline on
any laptop, with no JavaScript charting library to ship or fetch from a CDN.

matplotlib keeps a font cache in its config folder; the report points it inside the run folder
(``.work/matplotlib``) unless ``MPLCONFIGDIR`` is set or matplotlib is already loaded in the process,
so ``python -m pipeline report`` writes nothing outside ``out/``.
"""

from __future__ import annotations

import base64
import contextlib
import io
import math
import os
import sys
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from storage.layout import Layout

KEPT, EXCLUDED = "#2a9d8f", "#e76f51"
LINE_COLOURS = ("#264653", "#8338ec", "#e9c46a", "#d62828", "#3a86ff")
FIGSIZE = (6.0, 2.6)
DPI = 80


@contextlib.contextmanager
def config_dir(run_root: Path) -> Iterator[None]:
    """Around the first plot: matplotlib's cache goes under the run folder, not $HOME. matplotlib reads
    MPLCONFIGDIR once, at import, so the variable is restored afterwards (callers in-process, such as
    tests, keep their environment)."""
    if "MPLCONFIGDIR" in os.environ or "matplotlib" in sys.modules:
        yield
        return
    path = Layout(run_root).scratch_dir / "matplotlib"
    path.mkdir(parents=True, exist_ok=True)
    os.environ["MPLCONFIGDIR"] = str(path)
    try:
        _pyplot()
        yield
    finally:
        del os.environ["MPLCONFIGDIR"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def to_data_uri(fig) -> str:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_file_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def plain(text: object) -> str:
    """Text as matplotlib shows it literally: metadata keys and labels may hold ``$``, which would
    otherwise start mathtext (and an unbalanced one fails the whole figure)."""
    return str(text).replace("$", r"\$")


def _bins(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """Histogram edges: one bin per integer for small integer ranges, log-spaced for wide positive
    ranges (perplexity spans orders of magnitude), else 40 equal bins. Returns (edges, log_x)."""
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        return np.array([lo - 0.5, hi + 0.5]), False
    if np.all(values == np.round(values)) and hi - lo <= 40:
        return np.arange(lo - 0.5, hi + 1.5), False
    if lo > 0 and hi / lo > 100:
        return np.logspace(math.log10(lo), math.log10(hi), 41), True
    return np.linspace(lo, hi, 41), False


def histogram(title: str, kept: Sequence[float], excluded: Sequence[float],
              lines: Sequence[tuple[str, float]] = ()) -> str:
    """Stacked histogram of a score for kept and excluded documents, with labelled vertical lines
    (thresholds, percentile cutoffs)."""
    plt = _pyplot()
    kept, excluded = np.asarray(kept, float), np.asarray(excluded, float)
    both = np.concatenate([kept, excluded])
    edges, log_x = _bins(both)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    # stepfilled: one polygon per series instead of a rectangle per bin, a third faster to draw
    ax.hist([kept, excluded], bins=edges, stacked=True, histtype="stepfilled", color=[KEPT, EXCLUDED],
            label=[f"kept ({len(kept):,})", f"excluded ({len(excluded):,})"])
    if log_x:
        ax.set_xscale("log")
    for i, (label, x) in enumerate(lines):
        ax.axvline(x, color=LINE_COLOURS[i % len(LINE_COLOURS)], linestyle="--", linewidth=1.2, label=plain(label))
    ax.set_title(plain(title), fontsize=10)
    ax.set_ylabel("documents", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=7, loc="best")
    return to_data_uri(fig)


def bars(title: str, labels: Sequence[str], series: dict[str, Sequence[float]], ylabel: str = "",
         colours: Sequence[str] = (KEPT, EXCLUDED), stacked: bool = False, log_y: bool = False) -> str:
    """Grouped (or stacked) vertical bars, one group per label."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(FIGSIZE[0], 0.45 * len(labels) + 2), FIGSIZE[1] + 0.4))
    x = np.arange(len(labels))
    n = len(series)
    width = 0.8 if stacked else 0.8 / max(1, n)
    bottom = np.zeros(len(labels))
    for i, (name, values) in enumerate(series.items()):
        values = np.asarray(values, float)
        colour = colours[i % len(colours)] if i < len(colours) else LINE_COLOURS[i % len(LINE_COLOURS)]
        if stacked:
            ax.bar(x, values, width, bottom=bottom, label=plain(name), color=colour)
            bottom += values
        else:
            ax.bar(x - 0.4 + width * (i + 0.5), values, width, label=plain(name), color=colour)
    ax.set_xticks(x)
    ax.set_xticklabels([plain(label) for label in labels], rotation=30 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center", fontsize=8)
    if log_y:
        ax.set_yscale("log")
    ax.set_title(plain(title), fontsize=10)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    if n > 1:
        ax.legend(fontsize=7)
    return to_data_uri(fig)


def curves(title: str, series: dict[str, tuple[Sequence[float], Sequence[float]]], xlabel: str, ylabel: str,
           log_y: bool = False) -> str:
    """Line plot of several (x, y) series (training loss, eval loss per source, tokens/s)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for i, (name, (xs, ys)) in enumerate(series.items()):
        ax.plot(xs, ys, label=plain(name), color=LINE_COLOURS[i % len(LINE_COLOURS)] if i < len(LINE_COLOURS) else None,
                marker="o" if len(xs) < 20 else None, markersize=3, linewidth=1.3)
    if log_y:
        ax.set_yscale("log")
    else:
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    ax.set_title(plain(title), fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    if len(series) > 1:
        ax.legend(fontsize=7)
    return to_data_uri(fig)
