"""HTML building blocks for the report: escaped tables, collapsible sections, the page shell.

Everything user-supplied (document text, ids, metadata, reasons) goes through ``esc``; the page has
no external resources (inline CSS, images as data URIs), so it renders identically offline. A few lines
of inline script record on <body> how many images decoded and whether any script error happened, which
is what the headless-browser test reads back (and harmless for a person).
"""

from __future__ import annotations

import html
import json
from typing import Any, Iterable, Sequence

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1240px;
 padding:0 18px 40px;color:#222;background:#fff}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:2px solid #2a9d8f;padding-bottom:3px}
h3{font-size:15px;margin:16px 0 6px}nav{position:sticky;top:0;background:#f6f8f8;padding:6px 8px;border-bottom:1px solid #ddd;
 z-index:2;font-size:13px}nav a{margin-right:12px;color:#1d6f66;text-decoration:none}
.muted{color:#666;font-size:12px}.warn{background:#fff4e5;border-left:4px solid #e76f51;padding:6px 10px;margin:8px 0}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}th,td{border:1px solid #ddd;padding:3px 7px;vertical-align:top}
th{background:#eef4f3;text-align:left;position:sticky;top:30px}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.total td{font-weight:600;background:#fafafa}
details{margin:6px 0;border:1px solid #e3e3e3;border-radius:4px;padding:4px 10px}details>summary{cursor:pointer;font-weight:600;padding:2px 0}
.grid{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}.grid figure{margin:0}.grid img,.plot{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:12px;color:#555;max-width:480px}
.doc{border-left:3px solid #2a9d8f;margin:6px 0 10px;padding:2px 10px;background:#fbfbfb}.doc.x{border-left-color:#e76f51}
.doc pre{white-space:pre-wrap;word-break:break-word;font:12px/1.35 ui-monospace,Menlo,Consolas,monospace;margin:4px 0;max-height:260px;overflow:auto}
.doc .meta{font-size:11px;color:#555;word-break:break-all}code{font-size:12px}
"""

SCRIPT = """
window.addEventListener('error', function () {
  document.body.setAttribute('data-js-errors', String(1 + Number(document.body.getAttribute('data-js-errors') || 0)));
});
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-images-loaded', String(ok));
});
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def num(value: Any, digits: int = 0) -> str:
    """Numbers for tables: thousands separators, '—' for missing."""
    if value is None or value == "":
        return "—"
    if isinstance(value, float) and not digits and not value.is_integer():
        digits = 2
    try:
        return f"{value:,.{digits}f}"
    except (TypeError, ValueError):
        return esc(value)


def pct(a: float, b: float) -> str:
    """``a`` as a percentage of ``b``, '—' when ``b`` is 0."""
    return f"{100.0 * a / b:.1f}%" if b else "—"


def human_bytes(n: float | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return str(n)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = (),
          total: Sequence[Any] | None = None, cls: str = "") -> str:
    """A table; cells are HTML already (call ``esc``/``num`` first), columns in ``numeric`` right-aligned."""
    numeric = set(numeric)
    out = [f'<table class="{esc(cls)}"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead><tbody>"]
    for row in list(rows) + ([total] if total else []):
        klass = ' class="total"' if total is not None and row is total else ""
        cells = "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        out.append(f"<tr{klass}>{cells}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def details(summary: str, body: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{summary}</summary>{body}</details>"


def figure(uri: str, caption: str = "", alt: str = "") -> str:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{esc(alt or caption)}">{cap}</figure>'


def grid(items: Sequence[str]) -> str:
    return f'<div class="grid">{"".join(items)}</div>' if items else ""


def pre_json(obj: Any) -> str:
    return f"<pre>{esc(json.dumps(obj, indent=1, sort_keys=True, default=str))}</pre>"


def page(title: str, nav: Sequence[tuple[str, str]], body: str) -> str:
    links = "".join(f'<a href="#{esc(anchor)}">{esc(label)}</a>' for anchor, label in nav)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><nav>{links}</nav>{body}<script>{SCRIPT}</script></body></html>\n"
    )
