"""A CCNet language model: SentencePiece + KenLM n-gram per language; training (lmplz) and scoring.

Why: CCNet ranks web pages by the perplexity of a 5-gram model trained on Wikipedia; low perplexity
means "reads like Wikipedia". Text is normalised (``filters.normalize``) and split into SentencePiece
pieces on both sides. A document's score comes from its lines (paragraphs): log10-probabilities summed
over lines, each line counting its pieces plus the end-of-sentence token, and
perplexity = 10 ** (-sum / tokens).

Files, per language ``xx`` under ``out/<profile>/models/lm/``: ``xx.sp.model`` and ``xx.bin`` (KenLM
binary built by ``build_binary`` from the ARPA file that ``lmplz`` writes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from filters.normalize import normalize
from storage.atomic import atomic_path, atomic_prefix

KENLM_BIN_ENV = "LLAMIX_KENLM_BIN"


class KenLMToolMissing(FileNotFoundError):
    """One-line error: lmplz/build_binary are not installed."""


def kenlm_tool(name: str) -> str:
    """Path of ``lmplz``/``build_binary``: $LLAMIX_KENLM_BIN, the virtualenv's bin/, then PATH."""
    folders = [os.environ.get(KENLM_BIN_ENV), str(Path(sys.prefix) / "bin"), str(Path(__file__).resolve().parent.parent / ".venv" / "bin")]
    for folder in folders:
        if folder and (Path(folder) / name).is_file() and os.access(Path(folder) / name, os.X_OK):
            return str(Path(folder) / name)
    found = shutil.which(name)
    if found:
        return found
    raise KenLMToolMissing(f"KenLM's {name} not found: `make setup` builds it (tools/build_kenlm.sh), or set {KENLM_BIN_ENV}")


def model_files(models_dir: str | Path, lang: str) -> tuple[Path, Path]:
    """(SentencePiece model, KenLM binary) of one language."""
    models_dir = Path(models_dir)
    return models_dir / f"{lang}.sp.model", models_dir / f"{lang}.bin"


def available_languages(models_dir: str | Path) -> list[str]:
    models_dir = Path(models_dir)
    return sorted(p.name[: -len(".sp.model")] for p in models_dir.glob("*.sp.model") if model_files(models_dir, p.name[: -len(".sp.model")])[1].is_file())


def normalized_lines(text: str) -> list[str]:
    """The non-empty normalised lines (CCNet paragraphs) of a document."""
    return [stripped for line in normalize(text).split("\n") if (stripped := line.strip())]


class LanguageModel:
    """SentencePiece + KenLM scorer of one language (loaded lazily: neither object pickles)."""

    def __init__(self, sp_path: str | Path, lm_path: str | Path):
        self.sp_path, self.lm_path = str(sp_path), str(lm_path)
        self._sp = self._lm = None

    @classmethod
    def from_dir(cls, models_dir: str | Path, lang: str) -> "LanguageModel":
        return cls(*model_files(models_dir, lang))

    def __getstate__(self):
        return {"sp_path": self.sp_path, "lm_path": self.lm_path, "_sp": None, "_lm": None}

    def pieces(self, lines: list[str]) -> list[str]:
        """Each line as space-separated SentencePiece pieces (the tokens KenLM sees)."""
        if self._sp is None:
            import sentencepiece as spm

            self._sp = spm.SentencePieceProcessor(model_file=self.sp_path)
        # one thread: SentencePiece's pool costs more than it saves on a document's few lines, and
        # the stage's parallelism is its tasks
        return [" ".join(p) for p in self._sp.encode(lines, out_type=str, num_threads=1)] if lines else []

    def log_score(self, text: str) -> tuple[float, int]:
        """(sum of log10 P over lines, number of tokens incl. one </s> per line)."""
        if self._lm is None:
            import kenlm

            self._lm = kenlm.Model(self.lm_path)
        total, n_tokens = 0.0, 0
        score = self._lm.score
        for line in self.pieces(normalized_lines(text)):
            total += score(line)
            n_tokens += line.count(" ") + 2
        return total, n_tokens

    def perplexity(self, text: str) -> float | None:
        total, n_tokens = self.log_score(text)
        return round(10.0 ** (-total / n_tokens), 2) if n_tokens else None


def train_sentencepiece(text_file: Path, model_path: Path, vocab_size: int, max_sentences: int = 2_000_000) -> None:
    """Unigram SentencePiece on a file of normalised lines (sampling at most ``max_sentences``),
    written under a temporary name then renamed (``storage.atomic``)."""
    import sentencepiece as spm

    from tokenizer.spm import strip_build_paths

    with atomic_prefix(model_path, {".model": model_path}) as prefix:
        spm.SentencePieceTrainer.train(
            input=str(text_file),
            model_prefix=str(prefix),
            vocab_size=vocab_size,
            hard_vocab_limit=False,  # small corpora (the sample) cannot always fill the vocabulary
            character_coverage=0.9999,
            input_sentence_size=max_sentences,
            shuffle_input_sentence=True,
            num_threads=1,
            minloglevel=2,
        )
        strip_build_paths(Path(f"{prefix}.model"))  # same text, same bytes, whatever the output folder


def run_tool(cmd: list[str], stdin=None, stdout=None) -> None:
    done = subprocess.run(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, text=False)
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{Path(cmd[0]).name} failed (exit {done.returncode}): {tail[0]}")


def train_kenlm(pieces_file: Path, binary_path: Path, order: int, work_dir: Path, memory: str = "20%") -> int:
    """lmplz (modified Kneser-Ney, ARPA) then build_binary; returns the ARPA size in bytes."""
    arpa = work_dir / f"{binary_path.stem}.arpa"
    lmplz, build_binary = kenlm_tool("lmplz"), kenlm_tool("build_binary")
    with open(pieces_file, "rb") as src, open(arpa, "wb") as dst:
        # --discount_fallback: small corpora lack the count-of-counts that Kneser-Ney discounts need
        run_tool([lmplz, "-o", str(order), "-S", memory, "-T", str(work_dir), "--discount_fallback"], stdin=src, stdout=dst)
    with atomic_path(binary_path) as tmp:
        run_tool([build_binary, str(arpa), str(tmp)], stdout=subprocess.DEVNULL)
    size = arpa.stat().st_size
    arpa.unlink()
    return size
