"""The LLaMA tokenizer (``tokenizer`` model stage) and token shards (``tokenize`` stage).

Tokenizer: SentencePiece BPE with LLaMA's settings — numbers split into digits, byte fallback for
characters outside the vocabulary, identity normalisation (the text is not rewritten), BOS=1, EOS=2,
UNK=0 — trained on lines drawn from every source in proportion to the mixture weights, so that no
source's script or style is under-represented in the merges.

Token shards: datatrove's ``DocumentTokenizer`` layout, so nanotron and datatrove's own dataset reader
read them: ``<name>.ds`` (little-endian uint16 ids, uint32 if the vocabulary exceeds 65,536, EOS after
each document), ``<name>.ds.index`` (uint64 end offset of each document, in tokens), plus a JSON sidecar
with counts and checksums. Files are renamed into place when complete, the sidecar last.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from pipeline import accounting
from pipeline.documents import read_documents
from pipeline.params import Bool, Choice, Int, Number
from pipeline.stages import ModelStage, Stage, StageIO

TOKENIZER_FILE = "tokenizer.model"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")


def _lines(folders: list[Path]) -> Iterator[str]:
    for folder in folders:
        for doc in read_documents(folder):
            for line in doc.text.split("\n"):
                line = line.strip()
                if line:
                    yield line


def sample_lines(folders: list[Path], target: int, seed: int, label: str) -> tuple[list[str], dict[str, int]]:
    """``target`` lines from the source: a uniform reservoir sample when there are more, otherwise all
    of them drawn again with replacement, so each source's share matches its mixture weight."""
    rng = random.Random(f"{seed}:{label}")
    reservoir: list[str] = []
    seen = 0
    for line in _lines(folders):
        seen += 1
        if len(reservoir) < target:
            reservoir.append(line)
        else:
            j = rng.randrange(seen)
            if j < target:
                reservoir[j] = line
    unique = len(reservoir)
    if 0 < unique < target:
        reservoir.extend(rng.choice(reservoir[:unique]) for _ in range(target - unique))
    return reservoir, {"lines_available": seen, "lines_unique": unique, "lines_used": len(reservoir)}


class TokenizerStage(ModelStage):
    name = "tokenizer"
    PARAMS = {
        "vocab_size": Int(1), "model_type": Choice(("bpe", "unigram", "char", "word")), "split_digits": Bool(),
        "byte_fallback": Bool(), "character_coverage": Number(hi=1, above=0), "max_sentences": Int(1),
        "max_sentence_length": Int(1), "num_threads": Int(1), "seed": Int(0),
    }
    output_subdir = "tokenizer"

    def requires(self, manifest) -> list[tuple[str, str]]:
        needs = []
        for name, spec in manifest.sources.items():
            if "tokenize" in spec.stage_names():
                prev = spec.previous("tokenize")
                if prev:
                    needs.append((name, prev))
        return needs

    def build(self, io: StageIO, inputs: dict[str, list[Path]]) -> dict[str, Any]:
        import sentencepiece as spm

        p = self.params
        seed = int(p.get("seed", 0))
        weights = io.manifest.weights() if io.manifest else {s: 1.0 for s in inputs}
        total_w = sum(weights[s] for s in inputs) or 1.0
        max_sentences = int(p.get("max_sentences", 1_000_000))
        sentences: list[str] = []
        per_source: dict[str, dict[str, int]] = {}
        for source in sorted(inputs):
            target = max(1, round(max_sentences * weights[source] / total_w))
            lines, info = sample_lines(inputs[source], target, seed, source)
            sentences.extend(lines)
            per_source[source] = info
        if not sentences:
            raise RuntimeError("tokenizer: no text to train on (are all sources empty?)")
        random.Random(seed).shuffle(sentences)

        out = io.output_dir
        out.mkdir(parents=True, exist_ok=True)
        prefix = out / ".tokenizer.tmp"
        settings = {
            "model_type": p.get("model_type", "bpe"),
            "vocab_size": int(p.get("vocab_size", 32000)),
            "split_digits": bool(p.get("split_digits", True)),
            "byte_fallback": bool(p.get("byte_fallback", True)),
            "character_coverage": float(p.get("character_coverage", 0.99995)),
            "normalization_rule_name": "identity",
            "remove_extra_whitespaces": False,
            "add_dummy_prefix": True,
            "allow_whitespace_only_pieces": True,
            "split_by_unicode_script": True,
            "max_sentence_length": int(p.get("max_sentence_length", 16384)),
            "unk_id": 0,
            "bos_id": 1,
            "eos_id": 2,
            "pad_id": -1,
            "shuffle_input_sentence": False,
            "hard_vocab_limit": False,
        }
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_prefix=str(prefix),
            num_threads=int(p.get("num_threads", os.cpu_count() or 1)),
            minloglevel=2,
            **settings,
        )
        strip_build_paths(Path(f"{prefix}.model"))
        os.replace(f"{prefix}.model", out / TOKENIZER_FILE)
        os.replace(f"{prefix}.vocab", out / "tokenizer.vocab")
        sp = spm.SentencePieceProcessor(model_file=str(out / TOKENIZER_FILE))
        summary = {
            "settings": settings,
            "vocab_size": sp.get_piece_size(),
            "sha256": sha256_file(out / TOKENIZER_FILE),
            "sentences": len(sentences),
            "seed": seed,
            "sources": per_source,
        }
        accounting.atomic_write_json(out / "tokenizer.json", summary)
        return summary


def strip_build_paths(model_file: Path) -> None:
    """The model records where it was trained (trainer_spec.model_prefix) and with how many threads;
    drop both so the same text gives the same bytes in any output folder on any machine."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    proto.trainer_spec.model_prefix = "tokenizer"
    proto.trainer_spec.ClearField("num_threads")
    model_file.write_bytes(proto.SerializeToString())


class TokenShardWriter(PipelineStep):
    """Encodes documents in batches and writes ``NNNNN_PPP.ds`` (+ ``.ds.index``, ``.json``) shards."""

    name = "🔢 llamix token shards"
    type = "🔢 - TOKENIZER"

    def __init__(self, output_dir: str, tokenizer_path: str, source: str, account_dir: str, *, batch_size: int = 256,
                 max_tokens_per_shard: int = 100_000_000, num_threads: int = 1, bos: bool = False):
        super().__init__()
        self.output_dir = output_dir
        self.tokenizer_path = tokenizer_path
        self.source = source
        self.account_dir = account_dir
        self.batch_size = batch_size
        self.max_tokens_per_shard = max_tokens_per_shard
        self.num_threads = num_threads
        self.bos = bos

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=self.tokenizer_path)
        self._sp_info = {
            "vocab_size": sp.get_piece_size(),
            "eos_id": sp.eos_id(),
            "bos_id": sp.bos_id(),
            "tokenizer_sha256": sha256_file(self.tokenizer_path),
        }
        self._dtype = token_dtype(sp.get_piece_size())
        out = Path(self.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(f"{rank:05d}_*"):  # a rerun of this task replaces all of its parts
            stale.unlink()
        record = accounting.empty_out_record()
        part, chunks, ends, n_tokens = 0, [], [], 0
        batch: list = []

        def encode(docs):
            nonlocal part, chunks, ends, n_tokens
            live = [d for d in docs if d.text]
            for d in docs:
                if not d.text:
                    accounting.add_exclusion(record, "empty", 0)
            ids = sp.encode([d.text for d in live], num_threads=self.num_threads) if live else []
            if live:  # counters per batch: per-document stat updates cost ~10% of the encode itself
                self.stat_update("documents", value=len(live))
                self.stat_update("tokens", value=sum(len(t) + 1 for t in ids))
            pending: list[int] = []  # this batch's tokens, turned into one array (not one per document)
            eos, bos = sp.eos_id(), sp.bos_id()
            for d, toks in zip(live, ids):
                if self.bos:
                    pending.append(bos)
                pending.extend(toks)
                pending.append(eos)
                n_tokens += len(toks) + 1 + self.bos
                ends.append(n_tokens)
                record["docs_out"] += 1
                record["bytes_out"] += len(d.text.encode("utf-8", "surrogatepass"))
                if n_tokens >= self.max_tokens_per_shard:
                    chunks.append(np.array(pending, dtype=self._dtype))
                    self._write(out, rank, part, chunks, ends)
                    part, chunks, ends, n_tokens, pending = part + 1, [], [], 0, []
            if pending:
                chunks.append(np.array(pending, dtype=self._dtype))

        for doc in data or ():
            batch.append(doc)
            if len(batch) >= self.batch_size:
                encode(batch)
                batch = []
        if batch:
            encode(batch)
        if chunks or part == 0:
            self._write(out, rank, part, chunks, ends)
        record["tokens"] = int(sum(json.loads(p.read_text())["tokens"] for p in out.glob(f"{rank:05d}_*.json")))
        accounting.write_task_record(self.account_dir, "out", rank, record)
        return
        yield

    def _write(self, out: Path, rank: int, part: int, chunks: list, ends: list) -> None:
        name = f"{rank:05d}_{part:03d}.ds"
        tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=self._dtype)
        data = tokens.astype(self._dtype, copy=False).tobytes()
        index = np.asarray(ends, dtype="<u8").tobytes()
        for fname, payload in ((name, data), (f"{name}.index", index)):
            tmp = out / f".{fname}.tmp"
            tmp.write_bytes(payload)
            os.replace(tmp, out / fname)
        sidecar = {
            "source": self.source,
            "documents": len(ends),
            "tokens": int(len(tokens)),
            "dtype": self._dtype.name,
            "content_sha256": hashlib.sha256(data).hexdigest(),
            "crc32": zlib.crc32(data),
            **self._sp_info,
        }
        accounting.atomic_write_json(out / name.replace(".ds", ".json"), sidecar)


class TokenizeStage(Stage):
    name = "tokenize"
    PARAMS = {"batch_size": Int(1), "max_tokens_per_shard": Int(1), "num_threads": Int(1), "bos": Bool()}
    output_subdir = "tokens"
    requires_models = ("tokenizer",)

    def run(self, io: StageIO) -> None:
        tokenizer = io.out_root / "tokenizer" / TOKENIZER_FILE
        if not tokenizer.exists():
            raise FileNotFoundError(f"tokenize: no tokenizer at {tokenizer} (run the tokenizer stage first)")
        writer = TokenShardWriter(
            str(io.output_dir),
            str(tokenizer),
            io.source,
            str(io.account_dir),
            batch_size=int(self.params.get("batch_size", 256)),
            max_tokens_per_shard=int(self.params.get("max_tokens_per_shard", 100_000_000)),
            num_threads=int(self.params.get("num_threads", 1)),
            bos=bool(self.params.get("bos", False)),
        )
        io.run_pass("main", [io.reader(account=True, metadata=False), writer], tasks=self.tasks(io))


def read_shard(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(tokens, document end offsets, sidecar) of one ``.ds`` shard."""
    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    tokens = np.fromfile(path, dtype=np.dtype(meta["dtype"]).newbyteorder("<"))
    ends = np.fromfile(f"{path}.index", dtype="<u8")
    return tokens, ends, meta
