"""The Parquet document format every stage reads and writes, as datatrove steps.

One row per document: ``id``, ``text``, ``source`` (strings) and ``metadata`` (a JSON object as a
string, so that per-stage scores of any shape accumulate without schema drift between shards).
Kept documents go to ``<out>/NNNNN.parquet``, excluded ones (``metadata["reason"]`` set) to
``<out>/excluded/NNNNN.parquet``. Files are written under a temporary name and renamed when the task
finishes, so a killed task never leaves a half-written shard that a later stage would read.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from pipeline import accounting
from storage.atomic import temp_sibling
from storage.layout import EXCLUDED

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("text", pa.string()),
        pa.field("source", pa.string()),
        pa.field("metadata", pa.string()),
    ]
)
EXCLUDED_DIR = EXCLUDED  # the on-disk name, from storage.layout
ROWS_PER_GROUP = 2000


def shard_name(rank: int) -> str:
    return f"{rank:05d}.parquet"


def list_shards(folder: str | Path) -> list[Path]:
    """Kept-document shards of a stage folder, in rank order."""
    folder = Path(folder)
    return sorted(p for p in folder.glob("*.parquet") if p.is_file())


def is_excluded(doc: Document) -> bool:
    return bool(doc.metadata.get("reason"))


def exclude(doc: Document, reason: str, stage: str) -> Document:
    """Mark a document excluded; the writer routes it to excluded/ and accounts its reason."""
    doc.metadata["reason"] = reason
    doc.metadata["excluded_by"] = stage
    return doc


def iter_parquet_documents(path: str | Path, columns: list[str] | None = None) -> Iterator[Document]:
    """Read one shard as Documents (metadata decoded, ``source`` placed into metadata)."""
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=1024):
        rows = batch.to_pydict()
        for i in range(batch.num_rows):
            meta = json.loads(rows["metadata"][i] or "{}")
            meta["source"] = rows["source"][i]
            yield Document(text=rows["text"][i], id=rows["id"][i], metadata=meta)


def read_documents(folder: str | Path, excluded: bool = False) -> Iterator[Document]:
    """All documents of a stage folder (kept, or the excluded ones) in shard order."""
    folder = Path(folder) / EXCLUDED_DIR if excluded else Path(folder)
    for shard in list_shards(folder):
        yield from iter_parquet_documents(shard)


def _utf8_bytes(texts: pa.Array) -> int:
    if len(texts) == 0:
        return 0
    return int(pc.sum(pc.binary_length(pc.cast(texts, pa.binary()))).as_py() or 0)


class ShardError(ValueError):
    """An input file that is not a document shard; str() is one line naming the file."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


_STRING_TYPES = (pa.string(), pa.large_string(), pa.null())  # null: a column with no value at all


def open_shard(path: str | Path) -> pq.ParquetFile:
    """``path`` opened as a document shard: a Parquet file whose ``id``, ``text``, ``source`` and
    ``metadata`` columns are strings (other columns are ignored). Raises ``ShardError`` naming the file."""
    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as e:
        raise ShardError(f"{path}: not a Parquet file ({_first_line(e)})") from None
    for name in SCHEMA.names:
        if name not in schema.names:
            raise ShardError(f"{path}: not a document shard: no column {name!r} (need {', '.join(SCHEMA.names)}, as strings)")
        if schema.field(name).type not in _STRING_TYPES:
            raise ShardError(f"{path}: not a document shard: column {name!r} is {schema.field(name).type}, not a string")
    return pf


def _metadata(raw: str | None) -> dict | None:
    """The metadata JSON object of a row ({} when null or empty); None when it is not a JSON object."""
    if not raw:
        return {}
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return meta if isinstance(meta, dict) else None


class ParquetShardReader(PipelineStep):
    """Reads input shards, task ``rank`` taking ``files[rank::world_size]``.

    With ``account_dir`` set it records docs_in/bytes_in for the task, the left side of the
    accounting identity checked when the stage ends.

    A row that cannot be a document is passed on excluded (``metadata["reason"]``), so that every
    pass sees the same documents and the writer counts it: null ``text`` -> ``corrupt:null_text``
    (text ""), null ``id`` -> ``corrupt:null_id`` (id ``<shard>#<row>``), ``metadata`` that is not a
    JSON object -> ``corrupt:metadata`` (read only when ``metadata=True``). A file that is not a
    document shard raises ``ShardError`` naming it.
    """

    name = "📖 llamix parquet reader"
    type = "📖 - READER"

    def __init__(self, files: Iterable[str | Path], account_dir: str | Path | None = None, metadata: bool = True, stage: str = ""):
        super().__init__()
        self.files = [str(f) for f in files]
        self.account_dir = str(account_dir) if account_dir else None
        self.metadata = metadata
        self.stage = stage

    def _documents(self, path: str, rows: dict, first_row: int) -> Iterator[Document]:
        texts, ids, sources, metas = rows["text"], rows["id"], rows["source"], rows["metadata"]
        for i in range(len(texts)):
            text, doc_id, reason = texts[i], ids[i], None
            meta = _metadata(metas[i]) if self.metadata else {}
            if text is None:
                text, reason = "", "corrupt:null_text"
            elif doc_id is None:
                reason = "corrupt:null_id"
            elif meta is None:
                reason = "corrupt:metadata"
            if doc_id is None:
                doc_id = f"{Path(path).name}#{first_row + i}"
            meta = {} if meta is None else meta
            meta["source"] = sources[i]
            doc = Document(text=text, id=doc_id, metadata=meta)
            yield exclude(doc, reason, self.stage or "reader") if reason else doc

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        docs_in = bytes_in = 0
        for path in self.files[rank::world_size]:
            pf = open_shard(path)
            batches = pf.iter_batches(batch_size=1024, columns=SCHEMA.names)
            row = 0
            while True:
                try:
                    batch = next(batches, None)
                except (pa.ArrowException, OSError) as e:  # damage past the footer
                    raise ShardError(f"{path}: unreadable after row {row} ({_first_line(e)})") from None
                if batch is None:
                    break
                bytes_in += _utf8_bytes(batch.column("text"))
                docs_in += batch.num_rows
                self.stat_update("documents", value=batch.num_rows)
                yield from self._documents(path, batch.to_pydict(), row)
                row += batch.num_rows
        if self.account_dir:
            accounting.write_task_record(self.account_dir, "in", rank, {"docs_in": docs_in, "bytes_in": bytes_in})


class _ShardFile:
    """A Parquet file written under a temporary name, renamed into place by ``commit``."""

    def __init__(self, final: Path):
        self.final = final
        self.tmp = temp_sibling(final)  # streamed into, renamed by commit()
        self.rows: list[dict] = []
        self.writer: pq.ParquetWriter | None = None

    def add(self, row: dict):
        self.rows.append(row)
        if len(self.rows) >= ROWS_PER_GROUP:
            self.flush()

    def flush(self):
        if self.writer is None:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.tmp, SCHEMA, compression="zstd")
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=SCHEMA))
            self.rows = []

    def commit(self):
        self.flush()
        self.writer.close()
        os.replace(self.tmp, self.final)

    def abort(self):
        if self.writer is not None:
            self.writer.close()
        self.tmp.unlink(missing_ok=True)


def document_row(doc: Document) -> dict:
    meta = dict(doc.metadata)
    source = meta.pop("source", "")
    return {"id": str(doc.id), "text": doc.text, "source": source, "metadata": json.dumps(meta, ensure_ascii=False, default=str)}


class ParquetShardWriter(PipelineStep):
    """Writes kept and excluded documents of task ``rank`` and records the task's right-hand side of
    the accounting identity (docs_out, excluded by reason, bytes)."""

    name = "💽 llamix parquet writer"
    type = "💽 - WRITER"

    def __init__(self, output_dir: str | Path, account_dir: str | Path | None = None, stage: str = "", write_excluded: bool = True):
        super().__init__()
        self.output_dir = str(output_dir)
        self.account_dir = str(account_dir) if account_dir else None
        self.stage = stage
        self.write_excluded = write_excluded

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        start = time.monotonic()
        out = Path(self.output_dir)
        for folder in (out, out / EXCLUDED_DIR):  # temporaries of an earlier, killed attempt at this task
            for stale in folder.glob(f".{shard_name(rank)}.*.tmp"):
                stale.unlink(missing_ok=True)
        kept = _ShardFile(out / shard_name(rank))
        dropped = _ShardFile(out / EXCLUDED_DIR / shard_name(rank))
        record = accounting.empty_out_record()
        try:
            for doc in data or ():
                row = document_row(doc)
                nbytes = len(doc.text.encode("utf-8", "surrogatepass"))
                reason = doc.metadata.get("reason")
                if reason:
                    accounting.add_exclusion(record, str(reason), nbytes)
                    self.stat_update("excluded", f"excluded_{accounting.reason_key(str(reason))}")
                    if self.write_excluded:
                        dropped.add(row)
                else:
                    record["docs_out"] += 1
                    record["bytes_out"] += nbytes
                    self.stat_update("kept")
                    kept.add(row)
            kept.commit()
            if dropped.rows or dropped.writer is not None:
                dropped.commit()
            else:
                dropped.final.unlink(missing_ok=True)
        except BaseException:
            kept.abort()
            dropped.abort()
            raise
        record["task_seconds"] = time.monotonic() - start
        if self.account_dir:
            accounting.write_task_record(self.account_dir, "out", rank, record)
        return
        yield  # a generator step that yields nothing: the writer ends the pipeline
