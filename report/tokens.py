"""The report's sections on tokens: the mixture (corpus, targets, and what the latest run really drew)
and the per-shard table.

Why the mixture table separates what happened from what-ifs: the manifest gives each source a target
weight and an epoch cap, and the training loader stops drawing a source when it reaches its cap, after
which the remaining sources fill the batches. So "weight × tokens trained / tokens in shards" is not
what a run did (it can say 100 epochs of a source the loader capped at 1.1). What a run did is in its
summary.json (``mixture``: per source the tokens, share and epochs the loader realised, written by
train/mixture.py's ``MixtureLoader.realised``), and that is what the main table shows; the figures for a
hypothetical run over every token of the corpus are in a second, labelled table.
"""

from __future__ import annotations

import math
from typing import Any

from report import plots
from report.gather import RunData, TrainingRun
from report.html import details, esc, figure, grid, num, pct, table


def mixture_rows(data: RunData) -> tuple[list[dict[str, Any]], int]:
    """The corpus against the manifest: per source its tokens, share, target weight and epochs, and
    two hypotheticals: the epochs a run over all the corpus's tokens at the target weights implies
    (weight × total / tokens) and the largest budget before the source exceeds its manifest (LLaMA's)
    epochs (epochs × tokens / weight)."""
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


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def capped(realised: dict[str, Any]) -> bool:
    """Whether the loader stopped drawing this source because it reached its epoch cap: the windows it
    drew reach floor(max_epochs × training windows), with training windows = windows / epochs (the
    loader's own rule, train/mixture.py)."""
    windows, epochs, cap = (_number(realised.get(k)) for k in ("windows", "epochs", "max_epochs"))
    if windows is None or epochs is None or cap is None or epochs <= 0:
        return False
    n_train = round(windows / epochs)
    return n_train > 0 and windows >= math.floor(cap * n_train)


def realised_rows(run: TrainingRun, sources: list[str]) -> dict[str, dict[str, Any]]:
    """Per source, what ``run`` drew (summary.json ``mixture``), with a note on why it differs from its
    target: capped at its epochs, or not drawn at all."""
    mix = run.mixture
    out = {}
    for source in list(sources) + [s for s in mix if s not in sources]:
        m = mix.get(source)
        if m is None:
            out[source] = {"tokens": None, "share": None, "epochs": None, "target": None,
                           "note": "not drawn (no shards or weight 0)"}
            continue
        note = f"capped at {num(_number(m.get('max_epochs')), 2)} epochs" if capped(m) else ""
        out[source] = {"tokens": _number(m.get("tokens")), "share": _number(m.get("share")),
                       "epochs": _number(m.get("epochs")), "target": _number(m.get("target")), "note": note}
    return out


def _share(fraction: float | None) -> str:
    return f"{100 * fraction:.1f}%" if fraction is not None else "—"


def section_mixture(data: RunData) -> str:
    rows, total = mixture_rows(data)
    out = ['<h2 id="mixture">Token mixture</h2>']
    if not total:
        out.append("<p>No token shards yet (<code>tokens/&lt;source&gt;/*.ds</code>).</p>")
        return "".join(out)
    run = data.latest_run_with_mixture()
    realised = realised_rows(run, [r["source"] for r in rows]) if run else {}
    trained = sum(r["tokens"] or 0 for r in realised.values())
    out.append('<p class="muted">Tokens and share of the token shards against the manifest\'s target weight and '
               "epochs" + (f"; then what training run <code>{esc(run.name)}</code> (the latest one) really drew, from its "
                           "<code>summary.json</code>. The loader renormalises the weights over the sources it can draw "
                           "(<i>run target share</i>), stops drawing a source at its epoch cap and fills the batches from "
                           "the others, so a source's realised share can be far from its target."
                           if run else ".") + "</p>")
    headers = ["source", "tokens in shards", "share of shards", "target weight", "manifest epochs"]
    if run:
        headers += [f"trained tokens ({run.name})", "trained share", "run target share", "trained epochs", "note"]
    body = []
    for r in rows:
        cells = [esc(r["source"]), num(r["tokens"]), pct(r["tokens"], total),
                 f"{100 * r['weight']:.1f}%" if r["weight"] is not None else "—", num(r["epochs"], 2)]
        if run:
            q = realised[r["source"]]
            cells += [num(q["tokens"]), _share(q["share"]), _share(q["target"]), num(q["epochs"], 3), esc(q["note"])]
        body.append(cells)
    if run:  # a source in the run but no longer in the corpus/manifest
        for source in (s for s in realised if s not in {r["source"] for r in rows}):
            q = realised[source]
            body.append([esc(source), "—", "—", "—", "—", num(q["tokens"]), _share(q["share"]), _share(q["target"]),
                         num(q["epochs"], 3), esc(q["note"])])
    totals = ["total", num(total), "100%", "", ""] + ([num(trained), "100%", "", "", ""] if run else [])
    out.append(table(headers, body, numeric=tuple(range(1, len(headers) - (1 if run else 0))), total=totals))
    if run:
        hit = [s for s, q in realised.items() if q["note"].startswith("capped")]
        if hit:
            out.append(f"<p>Run <code>{esc(run.name)}</code> trained {num(trained)} tokens; "
                       f"{esc(', '.join(hit))} reached {'its' if len(hit) == 1 else 'their'} epoch cap, so the other "
                       "sources' shares exceed their targets.</p>")
    elif data.runs:
        out.append('<p class="muted">No training run\'s <code>summary.json</code> records a realised mixture '
                   "(<code>mixture</code>), so only the corpus is shown.</p>")
    out.append(_hypothetical(rows, total))
    missing = [r["source"] for r in rows if r["weight"] and not r["tokens"]]
    if missing:
        out.append(f'<p class="warn">No tokens for {esc(", ".join(missing))}: a run with the manifest weights cannot sample '
                   "them (the loader renormalises or stops).</p>")
    if data.manifest:
        labels = [r["source"] for r in rows]
        series = {"share of shards": [100 * (r["share"] or 0) for r in rows],
                  "target weight": [100 * (r["weight"] or 0) for r in rows]}
        colours = ("#264653", "#e9c46a")
        if run:
            series[f"trained share ({run.name})"] = [100 * (realised[s]["share"] or 0) for s in labels]
            colours += ("#2a9d8f",)
        uri = plots.bars("realised share vs target weight", labels, series, ylabel="% of tokens", colours=colours)
        out.append(grid([figure(uri, "per source: % of the corpus's tokens" + (", % of the run's training tokens" if run else "")
                                + " vs the manifest's sampling proportion")]))
    return "".join(out)


def _hypothetical(rows: list[dict[str, Any]], total: int) -> str:
    """What-if figures, kept apart from what any run did: a run over every token of the corpus at the
    target weights, and the largest budget within every source's manifest epochs."""
    body = [[esc(r["source"]), num(r["target"]), num(r["epochs_implied"], 2), num(r["budget"])] for r in rows]
    text = (f"<p class='muted'>Hypothetical, not a run: a run over all {num(total)} tokens of the shards at the target "
            "weights would take <i>weight × total</i> tokens of each source and repeat it <i>epochs at total</i> times; "
            "<i>budget within manifest epochs</i> is the largest run before the source exceeds its manifest epochs.</p>")
    text += table(["source", "hypothetical: weight × total", "hypothetical: epochs at total",
                   "hypothetical: budget within manifest epochs"], body, numeric=(1, 2, 3))
    bounded = [r for r in rows if r["budget"] and r["weight"] and r["tokens"]]
    if bounded:
        binding = min(bounded, key=lambda r: r["budget"])
        text += (f"<p>Largest training budget with every source that has tokens within its manifest epochs: "
                 f"<b>{num(binding['budget'])}</b> tokens (bound by <code>{esc(binding['source'])}</code>).</p>")
    return details(f"Hypothetical: a run over all {num(total)} tokens at the target weights", text, open_=True)


def section_shards(data: RunData) -> str:
    out = ['<h2 id="shards">Token shards</h2><p class="muted">Read as the trainer reads them (<code>tokenizer.shards</code>): '
           "document ends from <code>.ds.index</code>, counts from the JSON sidecars; lengths are in tokens including EOS; "
           "bytes per token is the tokenize task's UTF-8 bytes over its tokens.</p>"]
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
