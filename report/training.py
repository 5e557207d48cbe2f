"""The report's sections on models: training runs, the scaling-law fit, model artefacts.

Why apart from the corpus sections: these read what train/ and scaling/ wrote (``train/<run>/``, the
sweep's files in ``report/``, ``stats.json`` ``models``), not the pipeline's stage folders.
"""

from __future__ import annotations

import json

from report import plots
from report.gather import SUMMARY_FILE, RunData
from report.html import details, esc, figure, grid, num, pre_json
from scaling import SCALING_JSON, SCALING_PNG


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
            text += details(SUMMARY_FILE, pre_json(run.summary))
        out.append(f"<h3>{esc(run.name)}</h3>" + text + grid(figs))
    return "".join(out)


def section_scaling(data: RunData) -> str:
    out = ['<h2 id="scaling">Scaling law</h2>']
    png, js = data.layout.report_dir / SCALING_PNG, data.layout.report_dir / SCALING_JSON
    if not png.exists() and not js.exists():
        out.append(f"<p>No scaling-law fit yet (<code>report/{SCALING_PNG}</code>, <code>{SCALING_JSON}</code>, "
                   "written by <code>python -m scaling.sweep</code>).</p>")
        return "".join(out)
    if png.exists():
        out.append(f'<img class="plot" src="{plots.png_file_uri(png)}" alt="scaling-law plot">')
    if js.exists():
        try:
            out.append(details(SCALING_JSON, pre_json(json.loads(js.read_text()))))
        except json.JSONDecodeError:
            out.append(f'<p class="warn">{SCALING_JSON} is not valid JSON.</p>')
    return "".join(out)


def positives_note(origin: dict) -> str:
    """Where a classifier's positives came from (``wikiref_train``'s ``summary["positives"]``), in words:
    how many from Wikipedia's references, and a warning when it fell back to the proxy."""
    if origin.get("requested") == "proxy":
        return f"<p>Positives: {num(origin.get('from_proxy'))} documents of the proxy (<code>positives: proxy</code>).</p>"
    line = (f"<p>Positives: {num(origin.get('from_references'))} pages cited by Wikipedia "
            f"({num(origin.get('pages_cited'))} of the {num(origin.get('pages_scanned'))} pages of "
            f"{esc(origin.get('reference_pages', '?'))} carry one of {num(origin.get('reference_urls'))} distinct cited URLs)")
    if origin.get("used") != "references":
        line += f"; {num(origin.get('from_proxy'))} documents of the proxy"
    line += ".</p>"
    if origin.get("fallback"):
        line += f'<p class="warn">Fell back to the proxy positives: {esc(origin["fallback"])}.</p>'
    return line


def section_models(data: RunData) -> str:
    models = data.stats.get("models") or {}
    out = ['<h2 id="models">Models</h2>']
    if not models:
        out.append("<p>No model stage has run.</p>")
    for name, summary in sorted(models.items()):
        secs = summary.get("seconds") if isinstance(summary, dict) else None
        origin = summary.get("positives") if isinstance(summary, dict) else None
        note = positives_note(origin) if isinstance(origin, dict) else ""
        out.append(f"<h3>{esc(name)}</h3>{note}" if note else "")
        out.append(details(f"{esc(name)} <span class='muted'>{num(secs, 1)} s</span>", pre_json(summary)))
    return "".join(out)

