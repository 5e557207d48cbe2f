"""The dataset card (README.md) of a Hugging Face export (report/hf_dataset.py).

YAML front matter the Hub and ``datasets`` read: one ``configs`` entry per source with its data_files,
the licences of the exported sources, language tags (observed languages where the source records them),
size and task categories. The body: how to load it, the licence of each source, the columns, the
mixture (tokens, share, target weight, epochs), the funnel per source with removal reasons from
stats.json, the tokenizer's settings, and how it was built (llamix version, the manifest verbatim).
Nothing time-dependent is written, so exporting the same build twice gives the same card.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import subprocess

import yaml

from pipeline.manifest import REPO_ROOT, Manifest
from report.html import human_bytes
from storage.layout import Layout

# source -> (Hub licence ids, what applies) ; github's ids are the repository licences actually kept
LICENCES: dict[str, tuple[list[str], str]] = {
    "commoncrawl": (["other"], "Common Crawl Terms of Use (https://commoncrawl.org/terms-of-use); each page "
                               "remains its publisher's work"),
    "c4": (["odc-by"], "ODC-By 1.0, as AllenAI released C4 (allenai/c4); Common Crawl's Terms of Use also apply"),
    "github": ([], "the licence of each file's repository (column `licence`); the extract stage keeps only these"),
    "wikipedia": (["cc-by-sa-3.0"], "CC BY-SA 3.0 and GFDL (Wikipedia text of the 2022 dumps; CC BY-SA 4.0 "
                                    "for later revisions); attribution: the page's `url`"),
    "books": (["other"], "public domain in the United States (Project Gutenberg texts, via PG-19); check "
                         "local law elsewhere"),
    "arxiv": (["other"], "per paper: arXiv's non-exclusive distribution licence or the CC licence the authors "
                         "chose; see https://arxiv.org/abs/<paper_id>"),
    "stackexchange": (["cc-by-sa-4.0"], "CC BY-SA (2.5, 3.0 or 4.0 by the post's date), as Stack Exchange "
                                        "publishes its data dumps; attribution: site and question id"),
}
# SPDX ids (as the github extract stage writes them) that are also Hub licence ids
HUB_LICENCE_IDS = {"mit", "apache-2.0", "bsd-2-clause", "bsd-3-clause", "isc", "unlicense", "cc0-1.0", "mpl-2.0",
                   "gpl-2.0", "gpl-3.0", "lgpl-2.1", "lgpl-3.0", "agpl-3.0", "bsl-1.0", "artistic-2.0", "wtfpl"}
# natural language of sources whose documents carry no language code (github's `language` is a programming language)
FIXED_LANGUAGES = {"github": ["code"], "arxiv": ["en"], "stackexchange": ["en"]}
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}$")
SIZE_CATEGORIES = [(1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"), (1e6, "100K<n<1M"), (1e7, "1M<n<10M"),
                   (1e8, "10M<n<100M"), (1e9, "100M<n<1B"), (1e10, "1B<n<10B"), (1e11, "10B<n<100B"),
                   (1e12, "100B<n<1T")]
MAX_REASONS = 12


def licences(result, manifest: Manifest) -> list[str]:
    """Hub licence ids of one exported source."""
    ids, _ = LICENCES.get(result.source, (["other"], ""))
    if result.source != "github":
        return ids
    kept = set(result.counts["licence"])
    if not kept:
        kept = set(_kept_github_licences(manifest))
    return sorted({k if k in HUB_LICENCE_IDS else "other" for k in kept}) or ["other"]


def _kept_github_licences(manifest: Manifest) -> list[str]:
    spec = manifest.sources.get("github")
    try:
        configured = spec.stage("extract").params.get("licences") if spec else None
    except KeyError:
        configured = None
    if configured:
        return list(configured)
    from ingest.github import KEPT_LICENCES

    return sorted(KEPT_LICENCES)


def languages(result) -> list[str]:
    if result.source in FIXED_LANGUAGES:
        return FIXED_LANGUAGES[result.source]
    codes = [v for v, _ in result.counts["language"].most_common() if isinstance(v, str) and LANGUAGE_CODE.match(v)]
    return codes or ["en"]


def size_category(rows: int) -> str:
    for bound, name in SIZE_CATEGORIES:
        if rows < bound:
            return name
    return "n>1T"


def front_matter(results, manifest: Manifest) -> dict:
    langs = sorted({code for r in results for code in languages(r)})
    natural = [c for c in langs if c != "code"]
    ids = sorted({i for r in results for i in licences(r, manifest)})
    meta = {
        "pretty_name": f"llamix {manifest.profile} corpus",
        "license": ids,
    }
    if "other" in ids:
        meta["license_name"] = "per-source"
        meta["license_details"] = "Each config (source) has its own licence or terms: see the Licences section."
    meta.update({
        "language": langs,
        "multilinguality": "multilingual" if len(natural) > 1 else "monolingual",
        "annotations_creators": ["no-annotation"],
        "language_creators": ["found"],
        "source_datasets": ["original"],
        "size_categories": [size_category(sum(r.rows for r in results))],
        "task_categories": ["text-generation"],
        "task_ids": ["language-modeling"],
        "tags": ["llamix", "pretraining", "llama"],
        "configs": [{"config_name": r.source,
                     "data_files": [{"split": "train", "path": f"data/{r.source}/train-*.parquet"}]}
                    for r in results],
    })
    return meta


# ---- body ---------------------------------------------------------------------------------------
def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _num(n) -> str:
    return "—" if n is None else f"{n:,}"


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.2f} %"


def mixture_section(results, manifest: Manifest, stats: dict) -> list[str]:
    tok = stats.get("stages", {}).get("tokenize", {})
    tokens = {s: (tok.get(s) or {}).get("tokens") for s in manifest.sources}
    total = sum(t for t in tokens.values() if t) or None
    exported = {r.source: r for r in results}
    rows = []
    for name, spec in manifest.sources.items():
        t = tokens[name]
        rows.append([name if name in exported else f"{name} (not exported)",
                     _num(exported[name].rows) if name in exported else "—", _num(t),
                     _pct(t / total) if t and total else "—", f"{spec.weight:g}", f"{spec.epochs:g}",
                     _num(round(t * spec.epochs)) if t else "—"])
    return ["## Mixture", "",
            "Tokens are the build's token shards (stats.json, tokenize stage). *Target weight* is the sampling "
            "proportion of the manifest (LLaMA's Table 1) and *epochs* how many passes a LLaMA-style run makes "
            "over the source, so *tokens × epochs* is what training would see.", "",
            *_table(["source", "documents", "tokens", "share of tokens", "target weight", "epochs",
                     "tokens × epochs"], rows)]


def funnel_section(results, manifest: Manifest, stats: dict) -> list[str]:
    out = ["## Funnel", "", "Documents in and kept at every stage, with the reasons documents were removed "
           "(exact counts from the build's `report/stats.json`).", ""]
    stages = stats.get("stages", {})
    for r in results:
        rows = []
        for stage in manifest.sources[r.source].stage_names():
            rec = stages.get(stage, {}).get(r.source)
            if rec is None:
                continue
            reasons = sorted((rec.get("excluded") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
            text = ", ".join(f"{k} ({v:,})" for k, v in reasons[:MAX_REASONS])
            if len(reasons) > MAX_REASONS:
                text += f", … {len(reasons) - MAX_REASONS} more"
            label = stage + (" (files)" if stage == "download" else "") + (" ← exported" if stage == r.stage else "")
            rows.append([label, _num(rec.get("docs_in")),
                         _num(rec.get("docs_out")), _num(rec.get("docs_excluded")), text or "—"])
        out += [f"### {r.source}", ""] + (_table(["stage", "in", "kept", "removed", "removal reasons"], rows)
                                          if rows else ["No accounting recorded.", ""])
    return out


def tokenizer_section(build: Layout) -> list[str]:
    out = ["## Tokenizer", ""]
    if not build.tokenizer_summary.is_file():
        return out + ["No tokenizer was trained in this build.", ""]
    summary = json.loads(build.tokenizer_summary.read_text())
    settings = summary.get("settings", {})
    out += [f"SentencePiece, trained on this build (`tokenizer/tokenizer.model`, sha256 `{summary.get('sha256', '?')}`) "
            f"from {_num(summary.get('sentences'))} sampled sentences, seed {summary.get('seed', '?')}.", ""]
    return out + _table(["setting", "value"], [[k, json.dumps(v)] for k, v in sorted(settings.items())])


def _type_name(typ) -> str:
    import pyarrow as pa

    if pa.types.is_list(typ):
        return f"list of {_type_name(typ.value_type)}"
    return {"double": "float64", "bool": "bool"}.get(str(typ), str(typ))


def columns_section(results, meanings: dict[str, str]) -> list[str]:
    """The typed columns per config, and what each known metadata key means (``meanings``)."""
    out = ["## Columns", "",
           "Every config has `id`, `text`, `source` and `metadata` (the document's metadata as a JSON string, "
           "every key). Metadata keys the source's documents carry are also typed columns (null where a "
           "document lacks the key or its value has another type):", ""]
    rows = [[r.source, ", ".join(f"`{name}` ({_type_name(typ)})" for name, typ in r.columns[3:-1]) or "—"]
            for r in results]
    out += _table(["config", "typed metadata columns"], rows)
    used = [k for k in meanings if any(k == name for r in results for name, _ in r.columns)]
    return out + _table(["column", "meaning"], [[f"`{k}`", meanings[k]] for k in used])


def llamix_version() -> str:
    try:
        version = importlib.metadata.version("llamix")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    try:
        git = ["git", "-C", str(REPO_ROOT)]
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip()
        if commit and subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                     text=True, timeout=30).stdout.strip():
            commit += ", with uncommitted changes"
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version} (git {commit})" if commit else version


def build_section(results, manifest: Manifest, stage: str) -> list[str]:
    text = manifest.path.read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return ["## How it was built", "",
            f"- llamix {llamix_version()}, profile `{manifest.profile}`",
            f"- built with `python -m pipeline run --manifest {manifest.path.name} --profile {manifest.profile}`",
            f"- exported with `python -m pipeline export-hf OUT_DIR --profile {manifest.profile} --stage {stage}`: "
            + ", ".join(f"{r.source} from `{r.stage}/`" for r in results),
            f"- the manifest, verbatim (`{manifest.path.name}`, sha256 `{digest}`):", "",
            "```yaml", text.rstrip("\n"), "```", ""]


def render_card(results, manifest: Manifest, build: Layout, stage: str, stats: dict,
                meanings: dict[str, str]) -> str:
    """The dataset card; ``meanings`` describes the typed metadata columns (from the exporter)."""
    meta = yaml.safe_dump(front_matter(results, manifest), sort_keys=False, allow_unicode=True)
    first = results[0].source
    body = [f"# llamix {manifest.profile} corpus", "",
            f"A LLaMA-style pre-training corpus built by llamix from the `{manifest.profile}` "
            f"profile: {sum(r.rows for r in results):,} documents in {len(results)} configs, one per source "
            f"({', '.join(r.source for r in results)}).", "",
            "```python", "from datasets import load_dataset", "",
            f'ds = load_dataset("path/to/this/folder", name="{first}", split="train")', "```", "",
            *_table(["config", "documents", "from stage", "shards", "size"],
                    [[r.source, _num(r.rows), f"`{r.stage}/`", len(r.shards), human_bytes(r.bytes)]
                     for r in results]),
            "## Licences", "", "Each source keeps its own licence or terms:", "",
            *_table(["config", "licence ids", "terms"],
                    [[r.source, ", ".join(licences(r, manifest)), LICENCES.get(r.source, ([], "unknown"))[1]]
                     for r in results]),
            *columns_section(results, meanings),
            *mixture_section(results, manifest, stats),
            *funnel_section(results, manifest, stats),
            *tokenizer_section(build),
            *build_section(results, manifest, stage)]
    return f"---\n{meta}---\n\n" + "\n".join(body)
