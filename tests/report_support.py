"""Helpers shared by the report tests: the CLI, stage folders written with the project's own writer,
and the rendered page read back as tables and images."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

from datatrove.data import Document

from pipeline import accounting
from pipeline.documents import ParquetShardWriter
from storage.atomic import atomic_write_json

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "pipeline", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def write_stage(root: Path, stage: str, source: str, docs: list[Document]) -> dict:
    """Write a stage folder with the project's writer and record its accounting in stats.json."""
    account = root / ".work" / stage / source / "accounting"
    accounting.write_task_record(account, "in", 0, {"docs_in": len(docs), "bytes_in": sum(len(d.text.encode()) for d in docs)})
    list(ParquetShardWriter(root / stage / source, account_dir=account, stage=stage).run(iter(docs), rank=0))
    record = accounting.summarise(account, 1)
    record.update({"seconds": 0.1, "tasks": 1, "params": {}})
    atomic_write_json(root / stage / source / "stats.json", record)
    accounting.merge_into_stats(root / "report" / "stats.json", stage, source, record)
    return record


class Tables(HTMLParser):
    """Collects every table as rows of cell text, and every <img>."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self._cell = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(text: str) -> Tables:
    p = Tables()
    p.feed(text)
    return p


def section(page: str, anchor: str) -> str:
    start = page.index(f'id="{anchor}"')
    nxt = page.find("<h2 ", start + 1)
    return page[start: nxt if nxt > 0 else len(page)]
