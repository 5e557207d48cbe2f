"""CCNet's language-model quality filter: the ``lm`` model stage and the ``perplexity`` document stage.

``lm`` trains, per language, a SentencePiece model and a KenLM n-gram (lmplz) on Wikipedia documents.
``perplexity`` scores every document, then splits each language's documents into head / middle / tail
at the ``head``-th and ``tail``-th percentiles of perplexity *on the corpus being filtered* (CCNet: 30 and
60) and keeps the buckets in ``keep`` (LLaMA/RedPajama: head and middle).

Percentiles need every score before any document can be bucketed, so the stage runs two passes: a
scoring pass writes one score file per task under ``io.work_dir/scores`` (atomic, so a killed pass
resumes), the cutoffs are computed from all of them, and the final pass (reader -> bucketer -> writer)
reads each task's scores back by position, without scoring twice.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from filters.kenlm_model import LanguageModel, available_languages, model_files, normalized_lines, train_kenlm, train_sentencepiece
from pipeline.documents import exclude, is_excluded, read_documents
from pipeline.params import Free, Int, Languages, Names, ParamError, Percentile, Text
from pipeline.stages import ModelStage, Stage, StageIO
from storage.atomic import atomic_path, atomic_write_json

BUCKETS = ("head", "middle", "tail")
SCORE_SCHEMA = pa.schema([("id", pa.string()), ("status", pa.string()), ("language", pa.string()), ("perplexity", pa.float64())])


def _memory_size(value: Any) -> str:
    """lmplz's ``-S``: a percentage of physical memory or a size with an optional unit suffix."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not re.fullmatch(r"\d+(\.\d+)?[%bKMGTPEkmgtpe]?", text):
        raise ValueError()
    return text


# ---- the lm model stage ------------------------------------------------------------------------
class LMStage(ModelStage):
    """Per-language SentencePiece + KenLM trained on ``source`` documents after stage ``after``."""

    name = "lm"
    PARAMS = {
        "source": Text("wikipedia"),  # the documents to train on: this source's output ...
        "after": Text("extract"),  # ... of this stage
        "languages": Languages(["en"]),  # one model per language
        "order": Int(2, 6, default=5),  # n-gram order (6: KenLM's default KENLM_MAX_ORDER)
        "sp_vocab_size": Int(1, default=65536),  # SentencePiece unigram vocabulary
        "max_docs": Int(1, default=200_000),  # documents per language at most
        "min_docs": Int(0, default=20),  # a language with fewer gets no model
        "lmplz_memory": Free("a memory size such as 20% or 8G", _memory_size, "20%"),  # lmplz -S
    }

    def requires(self, manifest) -> list[tuple[str, str]]:
        return [(self.params["source"], self.params["after"])]

    def _collect(self, inputs: dict[str, list[Path]], languages: list[str], work_dir: Path) -> dict[str, int]:
        """Write the normalised lines of up to ``max_docs`` documents per language to
        ``work_dir/<lang>.txt`` (streamed: memory stays flat however large the Wikipedia); returns
        the number of documents per language."""
        from filters.fasttext_filter import load_fasttext
        from filters.langid import predict_languages
        from filters.lid_model import lid_model_path

        max_docs = self.params["max_docs"]
        counts = {lang: 0 for lang in languages}
        files = {lang: open(work_dir / f"{lang}.txt", "w", encoding="utf-8") for lang in languages}
        lid = None
        try:
            for folder in inputs.get(self.params["source"], []):
                for doc in read_documents(folder):
                    lang = doc.metadata.get("language") or doc.metadata.get("lang")
                    if not lang or lang == "unknown":  # unlabelled (extract could not tell): lid.176 decides
                        lid = lid or load_fasttext(lid_model_path())
                        lang = predict_languages(lid, [doc.text])[0][0]
                    if lang in files and counts[lang] < max_docs:
                        files[lang].writelines(line + "\n" for line in normalized_lines(doc.text))
                        counts[lang] += 1
        finally:
            for f in files.values():
                f.close()
        return counts

    def build(self, io: StageIO, inputs: dict[str, list[Path]]) -> dict[str, Any]:
        p = self.params
        languages, order, vocab, min_docs = p["languages"], p["order"], p["sp_vocab_size"], p["min_docs"]
        io.output_dir.mkdir(parents=True, exist_ok=True)
        io.work_dir.mkdir(parents=True, exist_ok=True)
        summary: dict[str, Any] = {"languages": {}, "skipped": {}}
        counts = self._collect(inputs, languages, io.work_dir)
        for lang in languages:
            sp_path, lm_path = model_files(io.output_dir, lang)
            text_file = io.work_dir / f"{lang}.txt"
            if counts[lang] < min_docs:
                summary["skipped"][lang] = f"only {counts[lang]} documents (min_docs={min_docs})"
            elif not (sp_path.is_file() and lm_path.is_file()):  # a rerun after a kill skips finished languages
                train_sentencepiece(text_file, sp_path, vocab)
                pieces_file = io.work_dir / f"{lang}.pieces.txt"
                write_pieces(LanguageModel(sp_path, lm_path), text_file, pieces_file)
                train_kenlm(pieces_file, lm_path, order, io.work_dir, p["lmplz_memory"])
                pieces_file.unlink()
            if lm_path.is_file() and counts[lang] >= min_docs:
                summary["languages"][lang] = {"documents": counts[lang], "order": order, "sp_vocab_size": vocab, "model_bytes": lm_path.stat().st_size}
            text_file.unlink(missing_ok=True)
        return summary


def write_pieces(model: LanguageModel, text_file: Path, pieces_file: Path, batch: int = 10_000) -> None:
    """The KenLM training text: every normalised line as SentencePiece pieces, streamed in batches."""
    with open(text_file, encoding="utf-8") as src, open(pieces_file, "w", encoding="utf-8") as dst:
        lines: list[str] = []
        for line in src:
            lines.append(line.rstrip("\n"))
            if len(lines) >= batch:
                dst.writelines(p + "\n" for p in model.pieces(lines))
                lines = []
        dst.writelines(p + "\n" for p in model.pieces(lines))


# ---- the perplexity document stage --------------------------------------------------------------
def score_file(scores_dir: str | Path, rank: int) -> Path:
    return Path(scores_dir) / f"{rank:05d}.parquet"


class PerplexityScorer(PipelineStep):
    """Scoring pass: perplexity of every document of the task, written to one score file per task."""

    name = "📉 llamix perplexity scorer"
    type = "🔻 - FILTER"

    def __init__(self, models_dir: str | Path, scores_dir: str | Path, min_length: int):
        super().__init__()
        self.models = {lang: LanguageModel.from_dir(models_dir, lang) for lang in available_languages(models_dir)}
        self.scores_dir = str(scores_dir)
        self.min_length = min_length

    def score(self, doc) -> tuple[str, str | None, float | None]:
        lang = doc.metadata.get("language")
        if is_excluded(doc):
            return "excluded", lang, None
        if len(doc.text) < self.min_length:
            return "too_short", lang, None
        if lang not in self.models:
            return "no_lm", lang, None
        with self.track_time():
            ppl = self.models[lang].perplexity(doc.text)
        return ("scored", lang, ppl) if ppl is not None else ("too_short", lang, None)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        rows = {name: [] for name in SCORE_SCHEMA.names}
        for doc in data or ():
            status, lang, ppl = self.score(doc)
            self.stat_update(status)
            for name, value in zip(SCORE_SCHEMA.names, (str(doc.id), status, lang, ppl)):
                rows[name].append(value)
        with atomic_path(score_file(self.scores_dir, rank)) as tmp:
            pq.write_table(pa.table(rows, schema=SCORE_SCHEMA), tmp)
        return
        yield


# Percentiles from a histogram of log10(perplexity) over [1, 1e8] in steps of 1e-4 decades (a relative
# resolution of 0.023%): one pass over the score files, memory independent of the corpus size, and the
# same cutoffs whatever the task order.
LOG_EDGES = np.linspace(0.0, 8.0, 80_001)


def compute_cutoffs(scores_dir: str | Path, tasks: int, head: float, tail: float) -> dict[str, Any]:
    """Per-language cutoffs: the upper edge of the histogram bin holding the document at the ``head``
    (``tail``) percentile, so that at least head% (tail%) of the documents are at or below it; plus
    counts per status."""
    hists: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for rank in range(tasks):
        table = pq.read_table(score_file(scores_dir, rank), columns=["status", "language", "perplexity"]).to_pydict()
        by_lang: dict[str, list[float]] = {}
        for status, lang, ppl in zip(table["status"], table["language"], table["perplexity"]):
            counts[status] = counts.get(status, 0) + 1
            if status == "scored":
                by_lang.setdefault(lang, []).append(ppl)
        for lang, values in by_lang.items():
            logs = np.clip(np.log10(np.asarray(values, dtype=np.float64)), LOG_EDGES[0], LOG_EDGES[-1])
            hists[lang] = hists.get(lang, 0) + np.histogram(logs, bins=LOG_EDGES)[0]
    cutoffs = {}
    for lang, hist in hists.items():
        cumulative = np.cumsum(hist)
        edges = [LOG_EDGES[int(np.searchsorted(cumulative, q / 100 * cumulative[-1])) + 1] for q in (head, tail)]
        cutoffs[lang] = [float(10**e) for e in edges]
    return {"percentiles": [head, tail], "cutoffs": cutoffs, "scored": {k: int(v.sum()) for k, v in hists.items()}, "status": counts}


def bucket_of(perplexity: float, cutoffs: list[float]) -> str:
    if perplexity <= cutoffs[0]:
        return "head"
    return "middle" if perplexity <= cutoffs[1] else "tail"


class PerplexityBucketer(PipelineStep):
    """Final pass: attaches each document's perplexity and bucket; excludes tail and too-short docs."""

    name = "🪣 llamix perplexity buckets"
    type = "🔻 - FILTER"

    def __init__(self, scores_dir: str | Path, cutoffs: dict[str, list[float]], keep: list[str], stage: str = "perplexity"):
        super().__init__()
        self.scores_dir = str(scores_dir)
        self.cutoffs = cutoffs
        self.keep = frozenset(keep)
        self.stage = stage

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        scores = pq.read_table(score_file(self.scores_dir, rank)).to_pylist()
        n = 0
        for n, doc in enumerate(data or (), start=1):
            if n > len(scores) or scores[n - 1]["id"] != str(doc.id):
                raise RuntimeError(f"perplexity scores of task {rank} are out of step with its input at document {n} (rerun with --force)")
            row = scores[n - 1]
            if row["status"] == "excluded":
                yield doc
                continue
            doc.metadata["perplexity"] = row["perplexity"]
            cutoffs = self.cutoffs.get(row["language"])
            bucket = bucket_of(row["perplexity"], cutoffs) if row["status"] == "scored" and cutoffs else None
            doc.metadata["perplexity_bucket"] = bucket
            if bucket:
                doc.metadata["perplexity_cutoffs"] = cutoffs
            self.stat_update(bucket or row["status"])
            if row["status"] == "too_short":
                exclude(doc, "perplexity:too_short", self.stage)
            elif bucket is not None and bucket not in self.keep:
                exclude(doc, f"perplexity:{bucket}", self.stage)
            yield doc
        if n != len(scores):
            raise RuntimeError(f"perplexity scores of task {rank} list {len(scores)} documents, its input has {n}")


class PerplexityStage(Stage):
    name = "perplexity"
    requires_models = ("lm",)
    PARAMS = {
        "head": Percentile(30),  # CCNet's head / middle / tail cutoffs, per language
        "tail": Percentile(60),
        "keep": Names(BUCKETS, ["head", "middle"]),  # LLaMA/RedPajama: head and middle
        "min_length": Int(0, default=300),  # shorter documents are excluded unscored
    }

    @classmethod
    def check_together(cls, values: dict[str, Any]) -> None:
        if values["head"] > values["tail"]:
            raise ParamError("head", f"the head percentile ({values['head']:g}) is above the tail percentile ({values['tail']:g})")

    def run(self, io: StageIO) -> None:
        p = self.params
        head, tail, keep, min_length = p["head"], p["tail"], p["keep"], p["min_length"]
        models_dir = io.model_path("lm")
        if not available_languages(models_dir):
            raise FileNotFoundError(f"perplexity: no language model in {models_dir} (build it with --stages lm)")
        scores_dir = io.work_dir / "scores"
        tasks = self.tasks(io)
        io.run_pass("score", [io.reader(), PerplexityScorer(models_dir, scores_dir, min_length)], tasks=tasks)
        summary = compute_cutoffs(scores_dir, tasks, head, tail)
        summary["keep"] = keep
        atomic_write_json(io.output_dir / "perplexity.json", summary)
        io.run_pass("main", [io.reader(account=True), PerplexityBucketer(scores_dir, summary["cutoffs"], keep, io.stage), io.writer()], tasks=tasks)
