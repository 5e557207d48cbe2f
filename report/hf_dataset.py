"""``python -m pipeline export-hf OUT_DIR``: a built corpus as a Hugging Face dataset folder.

Why: people load corpora with ``datasets.load_dataset`` and read them on the Hub; this writes the kept
documents of a build in that shape, with a dataset card (report/hf_card.py), so nobody has to learn the
output tree to use the data::

    OUT_DIR/README.md                                       card: YAML front matter (configs, licences, ...)
    OUT_DIR/data/<source>/train-00000-of-000NN.parquet      one config per source, shards <= --max-shard-mb

Columns: ``id``, ``text``, ``source``, then every known metadata key the source's documents carry as a
typed column (``KNOWN_METADATA``: language, language_score, perplexity, url, licence, ...; a value of
another type becomes null), and ``metadata``, the raw JSON string with every key, known or not.

Which documents: ``--stage tokenize`` (the default) exports, per source, the output of the stage before
tokenize (the text that was tokenized); ``--stage S`` exports S's output for the sources that run S.
Only complete stage folders (``_SUCCESS``) are read, and each source's row count must equal stats.json's
``docs_out``, so an export never silently differs from the build's accounting.

Memory is bounded: shards are read one record batch at a time (a row group at most), metadata keys are
found with a vectorised substring scan, and output shards are cut by size as they are written. The
whole folder is assembled in a hidden sibling and renamed into place (storage.atomic.atomic_dir), so
OUT_DIR is the old export or the new one, never half of one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.documents import list_shards
from pipeline.manifest import DEFAULT_MANIFEST, Manifest, load
from storage.atomic import atomic_dir, atomic_write_text
from storage.layout import Layout

DATA_DIR = "data"
SPLIT = "train"
DEFAULT_MAX_SHARD_MB = 500
BATCH_ROWS = 512
COUNTED_KEYS = ("language", "licence")  # value counts kept for the card (language tags, licences)
MAX_COUNTED_VALUES = 1000

_STR, _INT, _FLOAT, _BOOL = pa.string(), pa.int64(), pa.float64(), pa.bool_()
# metadata key -> (column type, what it is); the keys the extract/filter/dedup stages write
KNOWN_METADATA: dict[str, tuple[pa.DataType, str]] = {
    "url": (_STR, "URL the document was taken from"),
    "title": (_STR, "page or book title"),
    "timestamp": (_STR, "crawl or revision time (as the source gives it)"),
    "date": (_STR, "WARC date of the capture"),
    "language": (_STR, "language code (fastText langid or the source's own; for github the programming language)"),
    "language_score": (_FLOAT, "fastText language-id confidence"),
    "perplexity": (_FLOAT, "KenLM perplexity under the Wikipedia language model (CCNet)"),
    "perplexity_bucket": (_STR, "CCNet bucket: head, middle or tail"),
    "perplexity_cutoffs": (pa.list_(_FLOAT), "the language's perplexity bucket boundaries"),
    "wikiref_score": (_FLOAT, "probability of being Wikipedia-reference-like (fastText classifier)"),
    "minhash_cluster": (_STR, "id of the near-duplicate cluster the document represents"),
    "minhash_cluster_size": (_INT, "documents in that cluster"),
    "duplicate_of": (_STR, "id of the document this one duplicates"),
    "containment": (_FLOAT, "largest n-gram containment in another book"),
    "warc_record_id": (_STR, "WARC-Record-ID"),
    "warc_file": (_STR, "WARC/WET file the record came from"),
    "content_type": (_STR, "HTTP content type"),
    "charset": (_STR, "character set the page was decoded with"),
    "extractor": (_STR, "HTML-to-text extractor"),
    "lines_removed": (_INT, "lines removed by line-level deduplication"),
    "chars_removed": (_INT, "characters removed by line-level deduplication"),
    "c4_lines_in": (_INT, "lines before the C4 line filters"),
    "c4_lines_kept": (_INT, "lines after the C4 line filters"),
    "repo": (_STR, "GitHub repository"),
    "path": (_STR, "file path in the repository"),
    "licence": (_STR, "repository licence (SPDX id)"),
    "size": (_INT, "file size in bytes"),
    "header_stripped": (_BOOL, "whether a licence header was removed"),
    "utf8_errors": (_INT, "invalid UTF-8 sequences replaced while decoding"),
    "code_max_line_length": (_INT, "longest line"),
    "code_mean_line_length": (_FLOAT, "mean line length"),
    "code_alnum_fraction": (_FLOAT, "fraction of alphanumeric characters"),
    "code_alpha_per_token": (_FLOAT, "alphabetic characters per token"),
    "page_id": (_INT, "Wikipedia page id"),
    "revision_id": (_INT, "Wikipedia revision id"),
    "author": (_STR, "book author"),
    "pg_ebook": (_INT, "Project Gutenberg ebook number"),
    "pg_markers": (_BOOL, "whether Project Gutenberg start/end markers were found and removed"),
    "file": (_STR, "input file name"),
    "paper_id": (_STR, "arXiv identifier"),
    "files": (_INT, "files in the paper's source archive"),
    "main_file": (_STR, "the paper's main .tex file"),
    "includes": (_INT, "\\input/\\include files inlined"),
    "macros_defined": (_INT, "user macros defined"),
    "macros_expanded": (_INT, "user macro uses expanded"),
    "site": (_STR, "StackExchange site"),
    "question_id": (_INT, "question id on the site"),
    "score": (_INT, "question score"),
    "answer_scores": (pa.list_(_INT), "scores of the answers, in document order"),
    "answer_ids": (pa.list_(_INT), "answer ids, in document order"),
    "tags": (pa.list_(_STR), "question tags"),
    "accepted_answer_id": (_INT, "the accepted answer's id"),
}
BASE_COLUMNS = [("id", _STR), ("text", _STR), ("source", _STR)]


class ExportError(ValueError):
    """A problem the user can fix (a missing or incomplete build, a bad flag); str() is one line."""


# ---- what to export -----------------------------------------------------------------------------
@dataclass
class SourcePlan:
    source: str
    stage: str          # the stage whose kept documents are exported
    folder: Path


@dataclass
class SourceResult:
    source: str
    stage: str
    rows: int = 0
    bytes: int = 0
    shards: list[str] = field(default_factory=list)
    columns: list[tuple[str, pa.DataType]] = field(default_factory=list)
    counts: dict[str, Counter] = field(default_factory=lambda: {k: Counter() for k in COUNTED_KEYS})


def exported_stage(manifest: Manifest, source: str, stage: str) -> str | None:
    """The stage whose output is exported for ``source`` (None: the source does not run ``stage``)."""
    names = manifest.sources[source].stage_names()
    if stage not in names:
        return None
    if stage == "tokenize":
        return manifest.sources[source].previous("tokenize")
    return stage


def plan(manifest: Manifest, build: Layout, stage: str, sources: list[str] | None) -> tuple[list[SourcePlan], list[str]]:
    """(what to export, notes about sources left out)."""
    if stage == "download":
        raise ExportError("--stage download holds raw upstream files, not documents; pick a later stage")
    chosen = sources or list(manifest.sources)
    unknown = [s for s in chosen if s not in manifest.sources]
    if unknown:
        raise ExportError(f"--sources: unknown source(s) {', '.join(unknown)} "
                          f"(manifest has: {', '.join(manifest.sources)})")
    plans, notes = [], []
    for source in chosen:
        exp = exported_stage(manifest, source, stage)
        if exp is None or exp == "download":
            why = f"does not run {stage}" if exp is None else f"has no document stage before {stage}"
            if sources:
                raise ExportError(f"{source} {why}")
            notes.append(f"{source}: skipped, it {why}")
            continue
        folder = build.stage_dir(exp, source)
        if not Layout.success_marker(folder).exists():
            state = "is incomplete (no _SUCCESS)" if folder.exists() else "does not exist"
            if sources:
                raise ExportError(f"{folder} {state}: build it first (python -m pipeline run)")
            notes.append(f"{source}: skipped, {folder} {state}")
            continue
        plans.append(SourcePlan(source, exp, folder))
    if not plans:
        raise ExportError(f"nothing to export from {build.root} at --stage {stage}"
                          + (f" ({'; '.join(notes)})" if notes else ""))
    return plans, notes


# ---- metadata columns ---------------------------------------------------------------------------
def present_keys(shards: list[Path]) -> list[str]:
    """Known metadata keys that occur in these shards, found by a literal substring scan of the JSON column
    (no parsing, and a key found once is not searched again; a key that only occurs inside a string value
    gives an all-null column, which is harmless)."""
    found: set[str] = set()
    for path in shards:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4 * BATCH_ROWS, columns=["metadata"]):
            col = batch.column(0)
            for key in KNOWN_METADATA:
                if key not in found and pc.any(pc.match_substring(col, f'"{key}":')).as_py():
                    found.add(key)
        if len(found) == len(KNOWN_METADATA):
            break
    return [k for k in KNOWN_METADATA if k in found]


def _coerce(value, typ: pa.DataType):
    """``value`` as a ``typ`` column value, or None when it does not fit (the raw JSON keeps it)."""
    if value is None:
        return None
    if pa.types.is_list(typ):
        if not isinstance(value, list):
            return None
        items = [_coerce(v, typ.value_type) for v in value]
        return None if any(i is None for i, v in zip(items, value) if v is not None) else items
    if typ == _STR:
        return value if isinstance(value, str) else None
    if typ == _BOOL:
        return value if isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if typ == _INT:
        return int(value) if abs(value) < 2**63 and float(value).is_integer() else None
    return float(value)


def schema_for(keys: list[str]) -> pa.Schema:
    return pa.schema(BASE_COLUMNS + [(k, KNOWN_METADATA[k][0]) for k in keys] + [("metadata", _STR)])


def convert(batch: pa.RecordBatch, keys: list[str], schema: pa.Schema) -> pa.Table:
    metas = [json.loads(m) if m else {} for m in batch.column("metadata").to_pylist()]
    columns = [batch.column(name) for name, _ in BASE_COLUMNS]
    for key in keys:
        typ = KNOWN_METADATA[key][0]
        columns.append(pa.array([_coerce(m.get(key), typ) for m in metas], type=typ))
    columns.append(batch.column("metadata"))
    return pa.Table.from_arrays(columns, schema=schema)


# ---- shards of at most max_bytes ----------------------------------------------------------------
class ShardRoller:
    """Writes tables into ``train-NNNNN`` shards, starting a new one before a batch could push the current
    one past ``max_bytes``. The bytes already written are exact (the sink's position after each row
    group); a batch's size is bounded by its uncompressed bytes, so a shard never passes the limit
    unless one document alone does. Shards are renamed ``train-NNNNN-of-MMMMM.parquet`` by ``finish``."""

    def __init__(self, folder: Path, schema: pa.Schema, max_bytes: int):
        self.folder, self.schema, self.max_bytes = folder, schema, max_bytes
        self.reserve = max(4096, max_bytes // 50)  # the footer (row-group and column metadata)
        self.parts: list[Path] = []
        self.sink = self.writer = None

    def _open(self) -> None:
        self._close()
        path = self.folder / f".{SPLIT}-{len(self.parts):05d}.parquet.part"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.parts.append(path)
        self.sink = pa.OSFile(str(path), "wb")
        self.writer = pq.ParquetWriter(self.sink, self.schema, compression="zstd")
        self.rows_in_shard = 0

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.sink.close()
            self.writer = self.sink = None

    def write(self, table: pa.Table, row_bytes: list[int]) -> None:
        start = 0
        while start < table.num_rows:
            if self.writer is None:
                self._open()
            room = self.max_bytes - self.reserve - self.sink.tell()
            end, size = start, 0
            while end < table.num_rows and size + row_bytes[end] <= room:
                size += row_bytes[end]
                end += 1
            if end == start:
                if self.rows_in_shard:  # the next document does not fit: a new shard
                    self._open()
                    continue
                end = start + 1  # one document larger than the limit: a shard of its own
            self.writer.write_table(table.slice(start, end - start))
            self.rows_in_shard += end - start
            start = end

    def finish(self) -> list[Path]:
        if not self.parts:  # no documents: one empty shard, so that the config still loads
            self._open()
        self._close()
        n = len(self.parts)
        final = []
        for i, part in enumerate(self.parts):
            target = self.folder / f"{SPLIT}-{i:05d}-of-{n:05d}.parquet"
            part.rename(target)
            final.append(target)
        return final


def _row_bytes(batch: pa.RecordBatch) -> list[int]:
    """An upper bound of each row's share of a shard: text, metadata twice (raw and typed), overhead."""
    text = pc.fill_null(pc.binary_length(pc.cast(batch.column("text"), pa.binary())), 0)
    meta = pc.fill_null(pc.binary_length(pc.cast(batch.column("metadata"), pa.binary())), 0)
    ids = pc.fill_null(pc.binary_length(pc.cast(batch.column("id"), pa.binary())), 0)
    return pc.add(pc.add(text, pc.multiply(meta, 2)), pc.add(ids, 64)).to_pylist()


def export_source(p: SourcePlan, dest: Path, max_bytes: int) -> SourceResult:
    shards = list_shards(p.folder)
    keys = present_keys(shards)
    schema = schema_for(keys)
    result = SourceResult(p.source, p.stage, columns=[(f.name, f.type) for f in schema])
    roller = ShardRoller(dest / DATA_DIR / p.source, schema, max_bytes)
    counted = [k for k in COUNTED_KEYS if k in keys]
    for path in shards:
        batches = pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=["id", "text", "source", "metadata"])
        for batch in batches:
            table = convert(batch, keys, schema)
            roller.write(table, _row_bytes(batch))
            result.rows += batch.num_rows
            for key in counted:
                counter = result.counts[key]
                for value, n in zip(*_value_counts(table.column(key))):
                    if value in counter or len(counter) < MAX_COUNTED_VALUES:
                        counter[value] += n
    for shard in roller.finish():
        result.shards.append(shard.relative_to(dest).as_posix())
        result.bytes += shard.stat().st_size
    return result


def _value_counts(column: pa.ChunkedArray) -> tuple[list, list]:
    vc = pc.value_counts(column.drop_null())
    return vc.field("values").to_pylist(), vc.field("counts").to_pylist()


# ---- the export ---------------------------------------------------------------------------------
def check_counts(results: list[SourceResult], stats: dict) -> None:
    for r in results:
        record = stats.get("stages", {}).get(r.stage, {}).get(r.source)
        if record is not None and record.get("docs_out") != r.rows:
            raise ExportError(f"{r.stage}/{r.source}: stats.json records {record.get('docs_out')} kept documents "
                              f"but the folder holds {r.rows}: the build changed after its accounting; rerun it")


def export(out_dir: str | Path, manifest: Manifest, build: Layout, stage: str = "tokenize",
           sources: list[str] | None = None, max_shard_mb: float = DEFAULT_MAX_SHARD_MB,
           force: bool = False, log=print) -> list[SourceResult]:
    from report.hf_card import render_card

    out_dir = Path(out_dir).resolve()
    if max_shard_mb <= 0:
        raise ExportError(f"--max-shard-mb must be positive, got {max_shard_mb}")
    if not build.root.is_dir():
        raise ExportError(f"{build.root}: no build here (python -m pipeline run, or --from PATH)")
    root = build.root.resolve()
    if out_dir == root or out_dir in root.parents:
        raise ExportError(f"{out_dir} holds the build {root}: export somewhere else")
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} is a file, not a folder")
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise ExportError(f"{out_dir} exists and is not empty; pass --force to replace it")
    plans, notes = plan(manifest, build, stage, sources)
    for note in notes:
        log(f"export-hf: {note}")
    stats = json.loads(build.stats_path.read_text()) if build.stats_path.is_file() else {}
    max_bytes = int(max_shard_mb * 1_000_000)
    with atomic_dir(out_dir) as tmp:
        results = []
        for p in plans:
            r = export_source(p, tmp, max_bytes)
            log(f"export-hf: {p.source}: {r.rows} documents from {p.stage}/ -> {len(r.shards)} shard(s), "
                f"{r.bytes / 1e6:.1f} MB, {len(r.columns) - 4} typed metadata columns")
            results.append(r)
        check_counts(results, stats)
        meanings = {key: meaning for key, (_, meaning) in KNOWN_METADATA.items()}
        atomic_write_text(tmp / "README.md", render_card(results, manifest, build, stage, stats, meanings))
    log(f"export-hf: wrote {out_dir} ({sum(r.rows for r in results)} documents, {len(results)} configs)")
    return results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline export-hf",
                                description="Write the kept documents of a build as a Hugging Face dataset folder.")
    p.add_argument("out_dir", metavar="OUT_DIR", help="destination folder of the dataset (README.md + data/)")
    p.add_argument("--from", dest="build", default=None, metavar="BUILD",
                   help="the build to read, an out/<profile> folder (default: the manifest's out_dir/<profile>)")
    p.add_argument("--manifest", default=None, help="data_manifest.yaml the build was made with (default: the repo's)")
    p.add_argument("--profile", default=None,
                   help="manifest profile (default: the --from folder's name when it is a profile, "
                        "else the manifest's default)")
    p.add_argument("--stage", default="tokenize",
                   help="export this stage's kept documents; tokenize (default) = the stage before tokenize, per source")
    p.add_argument("--sources", default=None, help="comma-separated sources (default: every source that has the stage)")
    p.add_argument("--max-shard-mb", type=float, default=DEFAULT_MAX_SHARD_MB, help="largest Parquet shard (MB)")
    p.add_argument("--force", action="store_true", help="replace OUT_DIR when it is not empty")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    manifest_path = Path(args.manifest) if args.manifest else DEFAULT_MANIFEST
    profile = args.profile
    if profile is None and args.build:
        import yaml

        raw = yaml.safe_load(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
        name = Path(args.build).resolve().name
        profile = name if name in ((raw or {}).get("profiles") or {}) else None
    manifest = load(manifest_path, profile=profile, check_paths=False)
    build = Layout(Path(args.build)) if args.build else Layout(manifest.out_root)
    sources = [s for s in args.sources.split(",") if s] if args.sources else None
    try:
        export(args.out_dir, manifest, build, stage=args.stage, sources=sources, max_shard_mb=args.max_shard_mb,
               force=args.force)
    except ExportError as e:
        print(f"export-hf: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
