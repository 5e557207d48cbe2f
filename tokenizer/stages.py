"""Pipeline adapters of the tokenizer room: the ``tokenizer`` model stage and the ``tokenize`` stage.

Why here and not in ``tokenizer.spm`` / ``tokenizer.shards``: those two are read by the trainer and must not
import datatrove or the pipeline; this module only feeds them pipeline documents and does the accounting.

``tokenizer``: trains the LLaMA tokenizer (``tokenizer.spm``) on lines drawn from every source in
proportion to the mixture weights, so that no source's script or style is under-represented in the merges.
``tokenize``: encodes each source's documents in batches into token shards (``tokenizer.shards``).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Iterator

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from pipeline import accounting
from pipeline.documents import read_documents
from pipeline.params import Bool, Choice, Int, Number
from pipeline.stages import ModelStage, Stage, StageIO
from storage.atomic import atomic_write_json
from storage.checksum import sha256_file
from storage.layout import TOKENIZER_SUMMARY, Layout
from tokenizer.shards import ShardWriter


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

    def requires(self, manifest) -> list[tuple[str, str]]:
        needs = []
        for name, spec in manifest.sources.items():
            if "tokenize" in spec.stage_names():
                prev = spec.previous("tokenize")
                if prev:
                    needs.append((name, prev))
        return needs

    def build(self, io: StageIO, inputs: dict[str, list[Path]]) -> dict[str, Any]:
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
        from tokenizer.spm import train_tokenizer  # SentencePiece only when the stage runs, not when a manifest loads

        summary = train_tokenizer(sentences, io.output_dir, p, num_threads=int(p.get("num_threads", os.cpu_count() or 1)))
        summary.update(seed=seed, sources=per_source)
        atomic_write_json(io.output_dir / TOKENIZER_SUMMARY, summary)
        return summary


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
        from tokenizer.spm import load_tokenizer

        sp = load_tokenizer(self.tokenizer_path)
        writer = ShardWriter(self.output_dir, rank, source=self.source, vocab_size=sp.get_piece_size(),
                             eos_id=sp.eos_id(), bos_id=sp.bos_id(), tokenizer_sha256=sha256_file(self.tokenizer_path),
                             add_bos=self.bos, max_tokens_per_shard=self.max_tokens_per_shard)
        record = accounting.empty_out_record()

        def encode(docs):
            live = [d for d in docs if d.text and not d.metadata.get("reason")]
            for d in docs:  # excluded on the way in (a corrupt row: ``corrupt:null_text``), or empty
                if not d.text or d.metadata.get("reason"):
                    nbytes = len(d.text.encode("utf-8", "surrogatepass")) if d.text else 0
                    accounting.add_exclusion(record, str(d.metadata.get("reason") or "empty"), nbytes)
            if not live:
                return
            ids = sp.encode([d.text for d in live], num_threads=self.num_threads)
            # counters per batch: per-document stat updates cost ~10% of the encode itself
            self.stat_update("documents", value=len(live))
            self.stat_update("tokens", value=sum(len(t) + 1 for t in ids))
            writer.add_batch(ids)
            record["docs_out"] += len(live)
            record["bytes_out"] += sum(len(d.text.encode("utf-8", "surrogatepass")) for d in live)

        batch: list = []
        for doc in data or ():
            batch.append(doc)
            if len(batch) >= self.batch_size:
                encode(batch)
                batch = []
        if batch:
            encode(batch)
        writer.close()
        record["tokens"] = writer.tokens_written
        accounting.write_task_record(self.account_dir, "out", rank, record)
        return
        yield


class TokenizeStage(Stage):
    name = "tokenize"
    PARAMS = {"batch_size": Int(1), "max_tokens_per_shard": Int(1), "num_threads": Int(1), "bos": Bool()}
    requires_models = ("tokenizer",)

    def run(self, io: StageIO) -> None:
        tokenizer = Layout(io.out_root).tokenizer_model
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
