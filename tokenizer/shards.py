"""Token shard format (datatrove DocumentTokenizer layout) as the trainer sees it.

Why a module of its own: the loader, the evaluator and the tests all need to find, check and
memory-map the same `<name>.ds` / `.ds.index` / `.json` triples; keeping the format knowledge in
one place means a layout change touches one file.

Layout: `<name>.ds` raw little-endian uint16 tokens (uint32 when vocab > 65,536) with EOS after each
document, `<name>.ds.index` little-endian uint64 end offset (in tokens) of each document,
`<name>.json` sidecar {"source","documents","tokens","dtype","vocab_size","eos_id",
"tokenizer_sha256","content_sha256"}.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class ShardError(ValueError):
    """A token shard is missing a piece or contradicts its sidecar."""


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")


@dataclass(frozen=True)
class Shard:
    path: Path          # the .ds file
    tokens: np.ndarray  # read-only memmap (or empty array for an empty shard)
    meta: dict          # sidecar contents ({} when absent)

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def index_path(self) -> Path:
        return Path(f"{self.path}.index")

    def document_ends(self) -> np.ndarray:
        """End offset (in tokens, exclusive) of each document: a read-only memmap of ``.ds.index``."""
        p = self.index_path
        if not p.exists() or p.stat().st_size < 8:
            return np.zeros(0, dtype="<u8")
        return np.memmap(p, dtype="<u8", mode="r")


def list_shards(folder: str | os.PathLike) -> list[Path]:
    """The `.ds` files of one source folder, in sorted (deterministic) order."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(".ds"))


def open_shard(path: str | os.PathLike) -> Shard:
    """Memory-map one shard, checking its size against the sidecar and the index."""
    path = Path(path)
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    if "dtype" in meta:
        dtype = np.dtype(meta["dtype"]).newbyteorder("<")
    elif "vocab_size" in meta:
        dtype = token_dtype(int(meta["vocab_size"]))
    else:
        dtype = np.dtype("<u2")
    size = path.stat().st_size
    if size % dtype.itemsize:
        raise ShardError(f"{path}: {size} bytes is not a whole number of {dtype.name} tokens")
    n = size // dtype.itemsize
    if "tokens" in meta and int(meta["tokens"]) != n:
        raise ShardError(f"{path}: sidecar says {meta['tokens']} tokens, file holds {n}")
    index = Path(str(path) + ".index")
    if index.exists() and index.stat().st_size >= 8:
        last_end = int(np.fromfile(index, dtype="<u8", count=1, offset=index.stat().st_size - 8)[0])
        if last_end != n:
            raise ShardError(f"{path}: index ends at token {last_end}, file holds {n}")
    tokens = np.memmap(path, dtype=dtype, mode="r") if n else np.zeros(0, dtype=dtype)
    return Shard(path=path, tokens=tokens, meta=meta)


def write_shard(folder: str | os.PathLike, name: str, documents: list[list[int]], *, source: str,
                vocab_size: int, eos_id: int, tokenizer_sha256: str = "") -> Path:
    """Write documents (token id lists, EOS appended here) in the shared shard layout.

    The pipeline's tokenize stage is the production writer; this one exists so tests and demos can
    build format-exact shards without the pipeline (train/ must not import it).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(vocab_size)
    parts = [np.asarray(list(d) + [eos_id], dtype=dtype) for d in documents]
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    ends = np.cumsum([len(p) for p in parts], dtype="<u8")
    ds = folder / f"{name}.ds"
    flat.tofile(ds)
    ends.astype("<u8").tofile(str(ds) + ".index")
    meta = {"source": source, "documents": len(parts), "tokens": int(flat.shape[0]),
            "dtype": dtype.name, "vocab_size": vocab_size, "eos_id": eos_id,
            "tokenizer_sha256": tokenizer_sha256,
            "content_sha256": hashlib.sha256(flat.tobytes()).hexdigest()}
    (folder / f"{name}.json").write_text(json.dumps(meta, indent=1))
    return ds


class TokenStream:
    """All shards of one source seen as one contiguous token array (shards in sorted order)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.shards = [open_shard(p) for p in list_shards(self.folder)]
        self.shards = [s for s in self.shards if s.n_tokens]
        sizes = [s.n_tokens for s in self.shards]
        self.starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
        self.n_tokens = int(self.starts[-1])

    def vocab_sizes(self) -> set[int]:
        return {int(s.meta["vocab_size"]) for s in self.shards if "vocab_size" in s.meta}

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start+length) as int64, crossing shard boundaries when needed."""
        if start < 0 or start + length > self.n_tokens:
            raise IndexError(f"{self.folder}: tokens [{start}, {start + length}) outside 0..{self.n_tokens}")
        out = np.empty(length, dtype=np.int64)
        pos, filled = start, 0
        i = int(np.searchsorted(self.starts, start, side="right")) - 1
        while filled < length:
            shard = self.shards[i]
            offset = pos - int(self.starts[i])
            take = min(length - filled, shard.n_tokens - offset)
            out[filled:filled + take] = shard.tokens[offset:offset + take]
            filled += take
            pos += take
            i += 1
        return out
