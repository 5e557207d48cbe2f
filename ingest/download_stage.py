"""The ``download`` stage: the manifest's inputs for the profile -> ``out/<profile>/download/<source>/``.

Manifest input entries, besides what ``ingest.download.expand_items`` understands (URLs, local paths,
globs, folders, ``{url: ...paths.gz, base_url, max_files}``), may be templates expanded here:
``{url_template: ".../{lang}wiki-...", lang_list: [..]}``, ``{url_template: ".../{site}.7z",
site_list: largest28 | [..]}``, ``{url_template: "...{00000..01023}..."}`` (a numbered range) and
``{url_list: URL-or-path}`` (a text file of URLs, one a line). Every input file is accounted as a
document: downloaded (kept) or failed with its reason.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from loguru import logger

from pipeline import accounting
from ingest.download import DownloadItem, download_all, expand_items, summarize
from pipeline.manifest import REPO_ROOT
from pipeline.params import Int, List, Number
from pipeline.stages import Stage, StageIO

_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_PASSTHROUGH = ("sha256", "name", "base_url", "max_files")
_SITE_FILES = {"stackoverflow.com": "stackoverflow.com-Posts"}


def _expand_template(entry: dict[str, Any]) -> list[Any]:
    template = entry["url_template"]
    if "lang_list" in entry:
        return [template.format(lang=x) for x in entry["lang_list"]]
    if "site_list" in entry:
        sites = entry["site_list"]
        if sites == "largest28":
            from ingest.stackexchange import LARGEST_SITES

            sites = LARGEST_SITES
        # the dump ships Stack Overflow split by table; its questions and answers are in -Posts.7z
        return [template.format(site=_SITE_FILES.get(x, x)) for x in sites]
    m = _RANGE.search(template)
    if m:
        lo, hi, width = int(m.group(1)), int(m.group(2)), len(m.group(1))
        urls = [template[: m.start()] + str(i).zfill(width) + template[m.end() :] for i in range(lo, hi + 1)]
        return urls[: entry["max_files"]] if entry.get("max_files") else urls
    return [template]


def normalise_entries(entries: list[Any], max_files: int | None = None) -> list[Any]:
    """Manifest input entries -> entries ``expand_items`` accepts (strings or {url, ...} dicts)."""
    out: list[Any] = []
    for entry in entries:
        if isinstance(entry, str):
            out.append(entry)
            continue
        if not isinstance(entry, dict):
            raise ValueError(f"download entry must be a string or a mapping, got {entry!r}")
        if "url_template" in entry:
            out.extend(_expand_template(entry))
        elif "paths" in entry:
            spec = {"url": entry["paths"], **{k: entry[k] for k in _PASSTHROUGH if k in entry}}
            if max_files and "max_files" not in spec:
                spec["max_files"] = max_files
            out.append(spec)
        elif "url_list" in entry:
            out.append({"url_list": entry["url_list"]})
        elif "url" in entry:
            scheme = entry["url"].split("://", 1)[0] if "://" in entry["url"] else ""
            if scheme not in ("", "file", "http", "https"):
                raise ValueError(
                    f"download entry {entry['url']!r}: {scheme}:// is not fetched by llamix; copy it with the "
                    f"provider's tool (e.g. `aws s3 sync --request-payer requester`) and list the local folder instead"
                )
            out.append({k: v for k, v in entry.items() if k in ("url", *_PASSTHROUGH)})
        else:
            raise ValueError(f"download entry {entry!r}: needs url, paths, url_list or url_template")
    return out


class DownloadStage(Stage):
    name = "download"
    PARAMS = {
        "inputs": List("download entries", nonempty=True),  # instead of the source's inputs (entries checked when expanded)
        "max_files": Int(0, nullable=True),  # of each path list / URL list / numbered template
        "max_concurrency": Int(1),
        "retries": Int(0),
        "backoff": Number(0),
        "timeout": Number(above=0),
    }

    def tasks(self, io: StageIO) -> int:
        return 1

    @staticmethod
    def _root(io: StageIO) -> Path:
        """Relative input paths are relative to the manifest's folder (the repo for the default one)."""
        return io.manifest.path.parent if io.manifest else REPO_ROOT

    def _items(self, io: StageIO, entries: list[Any]) -> list[DownloadItem]:
        items: list[DownloadItem] = []
        plain = []
        for entry in entries:
            if isinstance(entry, dict) and "url_list" in entry:
                lst = download_all(expand_items([entry["url_list"]], self._root(io)), io.work_dir / "lists", progress=False)[0]
                if not lst.ok:
                    raise RuntimeError(f"download: URL list {entry['url_list']}: {lst.reason}")
                urls = [u.strip() for u in lst.path.read_text().splitlines() if u.strip() and not u.startswith("#")]
                plain.extend(urls[: self.params["max_files"]] if self.params.get("max_files") else urls)
            else:
                plain.append(entry)
        items.extend(expand_items(plain, self._root(io), retries=int(self.params.get("retries", 5))))
        return items

    def run(self, io: StageIO) -> None:
        source = io.manifest.sources[io.source] if io.manifest else None
        entries = list(self.params.get("inputs") or (source.inputs if source else []))
        if not entries:
            raise ValueError(f"download/{io.source}: no inputs for this profile")
        items = self._items(io, normalise_entries(entries, self.params.get("max_files")))
        results = download_all(
            items,
            io.output_dir,
            max_concurrency=int(self.params.get("max_concurrency", 4)),
            retries=int(self.params.get("retries", 5)),
            backoff=float(self.params.get("backoff", 0.5)),
            timeout=float(self.params.get("timeout", 60)),
        )
        summary = summarize(results)
        for r in results:
            if not r.ok:
                logger.warning(f"download/{io.source}: {r.item.url}: {r.reason}")
        if summary["ok"] == 0:
            raise RuntimeError(f"download/{io.source}: all {summary['in']} inputs failed (first: {results[0].reason})")
        # sizes of the files, not bytes moved by this call: a resumed run must report the same totals
        ok_bytes = sum(r.path.stat().st_size for r in results if r.ok and r.path)
        accounting.write_task_record(io.account_dir, "in", 0, {"docs_in": summary["in"], "bytes_in": ok_bytes})
        record = accounting.empty_out_record()
        record.update({"docs_out": summary["ok"], "bytes_out": ok_bytes})
        transfer = {"bytes_transferred": summary["bytes"], "resumed": summary["resumed"], "downloaded": summary["downloaded"]}
        accounting.atomic_write_json(io.work_dir / "transfer.json", transfer)
        for r in results:
            if not r.ok:
                accounting.add_exclusion(record, (r.reason or "unknown").split(":", 1)[0], 0)
        accounting.write_task_record(io.account_dir, "out", 0, record)
