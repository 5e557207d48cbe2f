"""The ``langid`` stage: fastText lid.176 language identification, CCNet style.

Why: LLaMA keeps English CommonCrawl and C4 pages using CCNet's fastText linear classifier; CCNet keeps
a page when its top language score is at least 0.5. Every document gets ``metadata.language`` and
``metadata.language_score`` (kept or not), so a corpus can be re-thresholded without re-running.

Predictions are batched (fastText ``predict`` on a list of texts), newlines replaced by spaces because
fastText reads one example per line.
"""

from __future__ import annotations

from pathlib import Path

from datatrove.data import Document

from filters.fasttext_filter import FastTextFilter, load_fasttext, one_line  # noqa: F401 (re-exported)
from filters.lid_model import lid_model_path
from pipeline.params import Fraction, Int, Languages
from pipeline.stages import DocumentStage, StageIO

LABEL_PREFIX = "__label__"


def predict_languages(model, texts: list[str]) -> list[tuple[str | None, float]]:
    """Top language and its score (clamped to 1: the quantised model can exceed it slightly)."""
    labels, scores = model.predict([one_line(t) for t in texts], k=1)
    out: list[tuple[str | None, float]] = []
    for label, score in zip(labels, scores):
        if len(label) == 0:
            out.append((None, 0.0))
        else:
            out.append((label[0][len(LABEL_PREFIX):], min(float(score[0]), 1.0)))
    return out


class LangIdFilter(FastTextFilter):
    """Keeps a document when its top language is one of ``languages`` with score >= ``threshold``.

    Reasons: ``langid:low_score`` when the top score is below the threshold (the language itself is
    then unreliable), else ``langid:<lang>`` for a confidently identified unwanted language.
    """

    name = "🌐 llamix langid"

    def __init__(self, languages: list[str], threshold: float = 0.5, model_path: str | Path | None = None,
                 stage: str = "langid", batch_size: int = 512):
        super().__init__(model_path or lid_model_path(), stage=stage, batch_size=batch_size)
        self.languages = frozenset(languages)
        self.threshold = float(threshold)

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        results: list[bool | tuple[bool, str]] = []
        for doc, (lang, score) in zip(batch, predict_languages(self.model, [d.text for d in batch])):
            score = round(score, 4)  # decide on the stored value, so re-thresholding metadata agrees
            doc.metadata["language"] = lang
            doc.metadata["language_score"] = score
            if lang is None or score < self.threshold:
                results.append((False, "langid:low_score"))
            elif lang not in self.languages:
                results.append((False, f"langid:{lang}"))
            else:
                results.append(True)
        return results


class LangIdStage(DocumentStage):
    name = "langid"
    PARAMS = {
        "languages": Languages(["en"]),  # kept languages (lid.176 codes)
        "threshold": Fraction(0.5),  # CCNet: top-language score >= 0.5
        "batch_size": Int(1, default=512),  # texts per fastText predict call
    }

    def steps(self, io: StageIO):
        p = self.params
        return [
            LangIdFilter(
                languages=p["languages"],
                threshold=p["threshold"],
                model_path=lid_model_path(),  # resolved here so a missing model fails before any task starts
                stage=io.stage,
                batch_size=p["batch_size"],
            )
        ]
