"""``python -m pipeline inspect PATH``: print documents from a stage folder, a Parquet shard or a token shard.

Why: a filter is judged by reading what it kept and removed, and a token shard by reading it back as
text. PATH is a stage folder (its kept shards; ``--excluded`` or ``--reason`` reads ``excluded/``), one
``.parquet`` file, one ``.ds`` token shard, or a folder of them (``tokens/<source>``). Token shards are
decoded with the run's tokenizer: that of the output tree holding PATH (``storage.layout.Layout.containing``),
or ``--tokenizer``. Parquet is read in record batches, so ``--limit`` stops early on any corpus size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow.parquet as pq

from pipeline.documents import list_shards
from storage.checksum import sha256_file
from storage.layout import EXCLUDED, Layout
from tokenizer import shards as token_format
from tokenizer.spm import load_tokenizer


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline inspect", description=__doc__.split("\n")[0])
    p.add_argument("path", help="stage folder, .parquet shard, .ds token shard, or a folder of token shards")
    p.add_argument("--source", default=None, help="only documents of this source")
    p.add_argument("--reason", default=None, help="only excluded documents whose reason starts with this (reads excluded/)")
    p.add_argument("--id", action="append", default=None, help="only this document id (repeatable; for .ds: the document index)")
    p.add_argument("--limit", type=int, default=10, help="documents to print (0: all)")
    p.add_argument("--excluded", action="store_true", help="read the folder's excluded/ documents")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--max-chars", type=int, default=1000, help="characters of text shown per document (0: all)")
    p.add_argument("--tokenizer", default=None, help="tokenizer.model for .ds shards (default: found upward from PATH)")
    return p


# ---- Parquet documents --------------------------------------------------------------------------
def parquet_files(path: Path, excluded: bool) -> list[Path]:
    if path.is_file():
        return [path]
    folder = path / EXCLUDED if excluded and path.name != EXCLUDED else path  # excluded/ given directly
    return list_shards(folder) if folder.is_dir() else []


def iter_parquet(files: list[Path], source: str | None, reason: str | None, ids: set[str] | None) -> Iterator[dict[str, Any]]:
    """Matching rows as dicts (metadata decoded); filters on id/source are applied per batch first."""
    for path in files:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=512):
            rows = batch.to_pydict()
            for i in range(batch.num_rows):
                if ids is not None and rows["id"][i] not in ids:
                    continue
                if source is not None and rows["source"][i] != source:
                    continue
                try:
                    meta = json.loads(rows["metadata"][i] or "{}")
                except json.JSONDecodeError:
                    meta = {"unparsed_metadata": rows["metadata"][i]}
                if reason is not None and not str(meta.get("reason") or "").startswith(reason):
                    continue
                yield {"id": rows["id"][i], "source": rows["source"][i], "metadata": meta, "text": rows["text"][i] or "",
                       "file": str(path)}


# ---- token shards -------------------------------------------------------------------------------
def find_tokenizer(path: Path) -> Path | None:
    """The tokenizer of the output tree that holds ``path``, when there is one."""
    tree = Layout.containing(path)
    return tree.tokenizer_model if tree and tree.tokenizer_model.is_file() else None


def token_shards(path: Path) -> list[Path]:
    return [path] if path.is_file() else token_format.list_shards(path)


def iter_token_docs(shards: list[Path], sp, tokenizer: Path, source: str | None, ids: set[str] | None, warn) -> Iterator[dict[str, Any]]:
    tok_sha = None
    for path in shards:
        try:
            shard = token_format.open_shard(path)
            ends = shard.document_ends()
        except (OSError, ValueError) as e:  # ValueError: ShardError, a sidecar that is not JSON
            raise ValueError(f"{path}: not a readable token shard ({e})") from None
        meta = shard.meta
        if source is not None and meta.get("source") != source:
            continue
        if meta.get("tokenizer_sha256"):
            tok_sha = tok_sha or sha256_file(tokenizer)
            if meta["tokenizer_sha256"] != tok_sha:
                warn(f"warning: {path.name} was written with a different tokenizer (sha256 {meta['tokenizer_sha256'][:12]}…)")
        eos = meta.get("eos_id", sp.eos_id())
        start = 0
        for i, end in enumerate(ends.tolist()):
            if ids is None or str(i) in ids:
                doc = shard.tokens[start:end]
                body = doc[:-1] if len(doc) and int(doc[-1]) == eos else doc
                yield {"id": str(i), "source": meta.get("source", ""), "tokens": int(len(doc)), "file": str(path),
                       "text": sp.decode([int(t) for t in np.asarray(body)])}
            start = end


# ---- output -------------------------------------------------------------------------------------
def _cut(text: str, max_chars: int) -> str:
    return text if not max_chars or len(text) <= max_chars else text[:max_chars] + f" … [{len(text) - max_chars:,} more chars]"


def format_doc(doc: dict[str, Any], max_chars: int, as_json: bool) -> str:
    shown = dict(doc, text=_cut(doc["text"], max_chars))
    if as_json:
        return json.dumps(shown, ensure_ascii=False, default=str)
    head = f"── {doc['id']}  [{doc['source']}]"
    if "tokens" in doc:
        head += f"  {doc['tokens']} tokens  {Path(doc['file']).name}"
    meta = doc.get("metadata") or {}
    if meta.get("reason"):
        head += f"  reason={meta['reason']}"
    lines = [head]
    if meta:
        lines.append("   " + " ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in meta.items() if k != "reason"))
    lines.append(shown["text"])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = Path(args.path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    ids = set(args.id) if args.id else None
    is_tokens = path.suffix == ".ds" or (path.is_dir() and any(path.glob("*.ds")) and not any(path.glob("*.parquet")))
    if is_tokens:
        if args.excluded or args.reason is not None:
            raise ValueError(f"{path}: --excluded and --reason apply to Parquet documents; token shards hold kept documents only")
        tok = Path(args.tokenizer) if args.tokenizer else find_tokenizer(path)
        if tok is None:
            raise FileNotFoundError(f"{path}: no tokenizer found (no output tree with "
                                    f"{Layout(Path()).tokenizer_model} above it); pass --tokenizer")
        docs = iter_token_docs(token_shards(path), load_tokenizer(tok), tok, args.source, ids, lambda m: print(m, file=sys.stderr))
    else:
        if path.is_file() and path.suffix != ".parquet":
            raise ValueError(f"{path}: not a .parquet or .ds file")
        files = parquet_files(path, args.excluded or args.reason is not None)
        if not files:
            where = path / EXCLUDED if (args.excluded or args.reason) and path.name != EXCLUDED else path
            raise FileNotFoundError(f"{where}: no .parquet shards")
        docs = iter_parquet(files, args.source, args.reason, ids)
    shown = 0
    try:
        for doc in docs:
            print(format_doc(doc, args.max_chars, args.json))
            shown += 1
            if args.limit and shown >= args.limit:
                break
        sys.stdout.flush()
    except BrokenPipeError:  # `inspect ... | head`: the reader left, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    if not shown:
        print("no matching documents", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
