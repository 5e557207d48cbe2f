"""The LLaMA tokenizer: its SentencePiece settings, how it is trained, and the one way it is opened.

Why one module: the pipeline trains it, the tokenize stage, the trainer, generation, the HF export and
``inspect`` all open it; they must agree on the settings and fail the same clear way on a bad file.
Standard library, sentencepiece and ``storage`` only, so the trainer can import it on a GPU box.

Settings (LLaMA): SentencePiece BPE, numbers split into digits, byte fallback for characters outside the
vocabulary, identity normalisation (the text is not rewritten), UNK=0, BOS=1, EOS=2, no padding id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import sentencepiece

from storage.atomic import atomic_prefix
from storage.checksum import sha256_file
from storage.layout import TOKENIZER_FILE

VOCAB_FILE = "tokenizer.vocab"


class TokenizerError(ValueError):
    """The tokenizer file is missing or is not a SentencePiece model."""


def llama_settings(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """SentencePiece trainer settings; ``params`` may change the vocabulary size and the few knobs below,
    never the special ids or the normalisation (shards and the model depend on those)."""
    p = params or {}
    return {
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


def train_tokenizer(sentences: Sequence[str], out_dir: str | os.PathLike, params: Mapping[str, Any] | None = None,
                    *, num_threads: int = 1) -> dict[str, Any]:
    """Train on ``sentences`` and write ``tokenizer.model`` and ``tokenizer.vocab`` into ``out_dir``
    (built under a temporary prefix, then renamed). Returns {settings, vocab_size, sha256, sentences}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = llama_settings(params)
    with atomic_prefix(out / TOKENIZER_FILE, {".model": out / TOKENIZER_FILE, ".vocab": out / VOCAB_FILE}) as prefix:
        sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_prefix=str(prefix),
                                                 num_threads=num_threads, minloglevel=2, **settings)
        strip_build_paths(Path(f"{prefix}.model"))
    model = out / TOKENIZER_FILE
    return {"settings": settings, "vocab_size": load_tokenizer(model).get_piece_size(),
            "sha256": sha256_file(model), "sentences": len(sentences)}


def strip_build_paths(model_file: Path) -> None:
    """The model records where it was trained (trainer_spec.model_prefix) and with how many threads;
    drop both so the same text gives the same bytes in any output folder on any machine."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    proto.trainer_spec.model_prefix = "tokenizer"
    proto.trainer_spec.ClearField("num_threads")
    model_file.write_bytes(proto.SerializeToString())


def load_tokenizer(path: str | os.PathLike) -> sentencepiece.SentencePieceProcessor:
    """Open a SentencePiece model; a missing or unreadable file is one line of ``TokenizerError``."""
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(f"tokenizer not found: {path}")
    sp = sentencepiece.SentencePieceProcessor()
    try:
        sp.Load(str(path))
    except (OSError, RuntimeError) as e:
        lines = str(e).strip().splitlines() or [type(e).__name__]
        raise TokenizerError(f"cannot load tokenizer {path}: {lines[0]}") from None
    return sp
