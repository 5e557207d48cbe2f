"""fastText models inside filters: quiet loading, one-line inputs, and lazy per-worker loading.

Why: fastText model objects do not pickle, and datatrove ships pipeline steps to worker processes;
a filter therefore keeps only the model's path and loads it on first use in the worker.
"""

from __future__ import annotations

from pathlib import Path

from filters.base import LlamixFilter


def load_fasttext(path: str | Path):
    """Load a fastText model quietly (the library prints a deprecation warning on every load)."""
    import fasttext

    fasttext.FastText.eprint = lambda *args, **kwargs: None
    return fasttext.load_model(str(path))


def one_line(text: str) -> str:
    """fastText predicts one example per line: newlines become spaces (other whitespace, "\r"
    included, already separates words for fastText)."""
    return text.replace("\n", " ")


class FastTextFilter(LlamixFilter):
    """A batched filter around one fastText model file, loaded lazily in the worker."""

    def __init__(self, model_path: str | Path, stage: str = "", batch_size: int = 512):
        super().__init__(stage=stage, batch_size=batch_size)
        self.model_path = str(model_path)
        self._model = None

    @property
    def model(self):
        if self._model is None:
            self._model = load_fasttext(self.model_path)
        return self._model

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_model"] = None
        return state

    def filter(self, doc):
        return self.filter_batch([doc])[0]
