"""The token-shard format: one writer, one reader, for the tokenize stage, the trainer and the tests.

Why one module: the tokenize stage writes shards, the trainer, ``train.eval``, ``inspect`` and the report
read them, and tests build them by hand; keeping the format here means a layout change touches one file
and every writer produces the same bytes. Standard library, numpy and ``storage`` only.

Layout (datatrove's ``DocumentTokenizer``, so nanotron and datatrove's own dataset reader read it), per
shard ``NNNNN_PPP`` (writing task, part):

- ``NNNNN_PPP.ds``: raw little-endian uint16 token ids (uint32 when the vocabulary exceeds 65,536), EOS
  after each document (BOS before it when asked);
- ``NNNNN_PPP.ds.index``: little-endian uint64 end offset (in tokens) of each document;
- ``NNNNN_PPP.json``: sidecar {source, documents, tokens, dtype, vocab_size, bos_id, eos_id,
  tokenizer_sha256, content_sha256, crc32}.

Each file is written to a temporary sibling and renamed into place, the sidecar last: a shard whose
sidecar exists is complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from storage.atomic import atomic_write_bytes, atomic_write_json


class ShardError(ValueError):
    """A token shard is missing a piece or contradicts its sidecar."""


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 ids while the vocabulary fits (half the disk and memory of uint32), uint32 beyond."""
    return np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")


def index_path(ds: str | os.PathLike) -> Path:
    """``<name>.ds.index`` of ``<name>.ds``."""
    return Path(f"{ds}.index")


@dataclass(frozen=True)
class Shard:
    """One shard as read by ``open_shard``: its tokens memory-mapped, its sidecar, its document ends."""

    path: Path          # the .ds file
    tokens: np.ndarray  # read-only memmap (or empty array for an empty shard)
    meta: dict          # sidecar contents ({} when absent)

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    def document_ends(self) -> np.ndarray:
        """End offset (in tokens, exclusive) of each document: a read-only memmap of ``.ds.index``."""
        p = index_path(self.path)
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
    index = index_path(path)
    if index.exists() and index.stat().st_size >= 8:
        last_end = int(np.fromfile(index, dtype="<u8", count=1, offset=index.stat().st_size - 8)[0])
        if last_end != n:
            raise ShardError(f"{path}: index ends at token {last_end}, file holds {n}")
    tokens = np.memmap(path, dtype=dtype, mode="r") if n else np.zeros(0, dtype=dtype)
    return Shard(path=path, tokens=tokens, meta=meta)


def shard_name(rank: int, part: int) -> str:
    """``NNNNN_PPP``: writing task ``rank``'s ``part``-th shard (the sorted order is the stream order)."""
    return f"{rank:05d}_{part:03d}"


class ShardWriter:
    """Documents (lists of token ids) in, shards ``<rank>_<part>.ds`` (+ ``.ds.index``, ``.json``) out.

    EOS is appended to each document (and BOS put before it when ``add_bos``). A shard is closed once
    it holds ``max_tokens_per_shard`` tokens or more (after the document that crossed it); ``close()``
    writes the rest, or one empty shard when nothing was written, so every task leaves a shard. Opening
    a writer removes the rank's earlier shards: a rerun of a task replaces all of its parts.
    """

    def __init__(self, folder: str | os.PathLike, rank: int = 0, *, source: str, vocab_size: int, eos_id: int,
                 bos_id: int = -1, tokenizer_sha256: str = "", add_bos: bool = False,
                 max_tokens_per_shard: int | None = None):
        self.folder, self.rank = Path(folder), rank
        self.dtype = token_dtype(vocab_size)
        self.eos_id, self.bos_id, self.add_bos = eos_id, bos_id, add_bos
        self.max_tokens = max_tokens_per_shard
        self.meta = {"source": source, "vocab_size": vocab_size, "eos_id": eos_id, "bos_id": bos_id,
                     "tokenizer_sha256": tokenizer_sha256}
        self.written: list[Path] = []
        self.tokens_written = 0
        self._part, self._chunks, self._ends, self._n = 0, [], [], 0
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(f"{rank:05d}_*"):
            stale.unlink()

    def add_batch(self, documents: Sequence[Sequence[int]]) -> None:
        """Append documents; their ids are gathered into one array per batch, not one per document."""
        pending: list[int] = []
        for ids in documents:
            if self.add_bos:
                pending.append(self.bos_id)
            pending.extend(ids)
            pending.append(self.eos_id)
            self._n += len(ids) + 1 + self.add_bos
            self._ends.append(self._n)
            if self.max_tokens is not None and self._n >= self.max_tokens:
                self._chunks.append(np.array(pending, dtype=self.dtype))
                self._flush()
                pending = []
        if pending:
            self._chunks.append(np.array(pending, dtype=self.dtype))

    def close(self) -> list[Path]:
        """Write the open shard (an empty one when the task wrote none); returns the ``.ds`` paths."""
        if self._chunks or self._part == 0:
            self._flush()
        return self.written

    def _flush(self) -> None:
        ds = self.folder / f"{shard_name(self.rank, self._part)}.ds"
        tokens = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=self.dtype)
        data = tokens.astype(self.dtype, copy=False).tobytes()
        atomic_write_bytes(ds, data)
        atomic_write_bytes(index_path(ds), np.asarray(self._ends, dtype="<u8").tobytes())
        atomic_write_json(ds.with_suffix(".json"), {
            **self.meta, "documents": len(self._ends), "tokens": int(len(tokens)), "dtype": self.dtype.name,
            "content_sha256": hashlib.sha256(data).hexdigest(), "crc32": zlib.crc32(data)})
        self.written.append(ds)
        self.tokens_written += int(len(tokens))
        self._part, self._chunks, self._ends, self._n = self._part + 1, [], [], 0


def write_shard(folder: str | os.PathLike, documents: Sequence[Sequence[int]], *, rank: int = 0, source: str,
                vocab_size: int, eos_id: int, bos_id: int = -1, tokenizer_sha256: str = "") -> Path:
    """All ``documents`` as the one shard ``<rank>_000.ds`` (tests and ``train.synthetic``)."""
    writer = ShardWriter(folder, rank, source=source, vocab_size=vocab_size, eos_id=eos_id, bos_id=bos_id,
                         tokenizer_sha256=tokenizer_sha256)
    writer.add_batch(documents)
    return writer.close()[0]


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
