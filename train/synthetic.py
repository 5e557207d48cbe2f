"""Format-exact token shards from text already on the machine, for tests and demos of the trainer.

Why: the trainer must be testable (and demonstrable) without running the data pipeline and without
the network. The Python standard library's own source files are real text that every machine with
Python has; they are split into documents, dealt to the manifest's source names, tokenized with a
freshly trained tokenizer with the pipeline's own LLaMA settings (`tokenizer.spm`) and written by the
pipeline's own shard writer (`tokenizer.shards`), next to a `data_manifest.yaml` carrying LLaMA's weights.

    python -m train.synthetic --out DIR [--vocab 1024] [--max-bytes 4000000]
"""
from __future__ import annotations

import argparse
import sysconfig
import zlib
from pathlib import Path

import yaml

from storage.checksum import sha256_file
from storage.layout import TOKENIZER_FILE
from tokenizer.shards import write_shard
from tokenizer.spm import load_tokenizer, train_tokenizer

# LLaMA Table 1: sampling proportion (%) and epochs.
LLAMA_MIXTURE = {
    "commoncrawl": (67.0, 1.10), "c4": (15.0, 1.06), "github": (4.5, 0.64), "wikipedia": (4.5, 2.45),
    "books": (4.5, 2.23), "arxiv": (2.5, 1.06), "stackexchange": (2.0, 1.03),
}


def stdlib_documents(max_bytes: int, min_chars: int = 200) -> list[str]:
    """Source files of the standard library (sorted, deterministic), up to max_bytes in total."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs, total = [], 0
    for path in sorted(root.glob("*.py")) + sorted(root.glob("*/*.py")):
        if "test" in path.parts[-2:] or path.name.startswith("test"):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if len(text) < min_chars:
            continue
        docs.append(text)
        total += len(text)
        if total >= max_bytes:
            break
    return docs


def stdlib_tokenizer(docs: list[str], out_dir: Path, vocab_size: int) -> Path:
    """The LLaMA tokenizer trained on the documents' non-blank lines; returns its tokenizer.model."""
    lines = [line for d in docs for line in d.splitlines() if line.strip()]
    train_tokenizer(lines, out_dir, {"vocab_size": vocab_size, "character_coverage": 1.0})
    return Path(out_dir) / TOKENIZER_FILE


def build(out: str | Path, vocab_size: int = 1024, max_bytes: int = 4_000_000,
          mixture: dict[str, tuple[float, float]] | None = None, docs_per_shard: int = 64) -> dict:
    """Write tokenizer, token shards and manifest under `out`; returns paths and counts."""
    out = Path(out)
    mixture = mixture or LLAMA_MIXTURE
    docs = stdlib_documents(max_bytes)
    model_path = stdlib_tokenizer(docs, out / "tokenizer", vocab_size)
    sp = load_tokenizer(model_path)
    sha = sha256_file(model_path)
    names = sorted(mixture)
    by_source: dict[str, list[list[int]]] = {n: [] for n in names}
    for text in docs:  # deal documents to sources by a stable hash of their content
        by_source[names[zlib.crc32(text.encode()) % len(names)]].append(sp.encode(text))
    counts = {}
    for name, ids in by_source.items():
        for k in range(0, len(ids), docs_per_shard):
            write_shard(out / "tokens" / name, ids[k:k + docs_per_shard], rank=k // docs_per_shard, source=name,
                        vocab_size=sp.vocab_size(), eos_id=sp.eos_id(), bos_id=sp.bos_id(), tokenizer_sha256=sha)
        counts[name] = sum(len(i) + 1 for i in ids)
    manifest = out / "data_manifest.yaml"
    manifest.write_text(yaml.safe_dump({"sources": {n: {"weight": w, "epochs": e} for n, (w, e) in mixture.items()}}))
    return {"tokenizer": str(model_path), "tokens_dir": str(out / "tokens"), "manifest": str(manifest),
            "tokens": counts}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m train.synthetic", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--max-bytes", type=int, default=4_000_000)
    args = ap.parse_args(argv)
    info = build(args.out, args.vocab, args.max_bytes)
    print(yaml.safe_dump(info, sort_keys=False))


if __name__ == "__main__":
    main()
