"""The ``code_quality`` stage: RedPajama v1's GitHub file heuristics (LLaMA: "low-quality files removed
by line length and proportion of alphanumeric characters").

Why these four: minified bundles, generated tables and data blobs dominate raw GitHub by bytes and
teach a language model nothing; they show up as very long lines, long mean lines, few alphanumeric
characters, or few letters per token (hex dumps, base64, number arrays).

Tokens for ``alpha_per_token``: RedPajama counted tokens of a GPT-NeoX BPE tokenizer, which cannot be
downloaded here; we count the pre-tokens of the same byte-level regex split (``tokenizers``'
``ByteLevel`` pre-tokenizer). BPE never merges across pre-tokens, so this is a lower bound on the BPE
count and the ratio an upper bound: the rule is slightly more lenient than RedPajama's (documented in
docs/filters.md).
"""

from __future__ import annotations

import re

from datatrove.data import Document

from filters.base import LlamixFilter
from pipeline.params import Number
from pipeline.stages import DocumentStage, StageIO

NON_ALNUM = re.compile(r"[\W_]+")
NON_ALPHA = re.compile(r"[\W\d_]+")


def code_signals(text: str, pre_tokenizer) -> dict[str, float]:
    """The four RedPajama signals of one file."""
    line_lengths = [len(line) for line in text.splitlines()] or [0]
    n_chars = max(len(text), 1)
    n_tokens = max(len(pre_tokenizer.pre_tokenize_str(text)), 1)
    return {
        "code_max_line_length": max(line_lengths),
        "code_mean_line_length": round(sum(line_lengths) / len(line_lengths), 3),
        "code_alnum_fraction": round(len(NON_ALNUM.sub("", text)) / n_chars, 4),
        "code_alpha_per_token": round(len(NON_ALPHA.sub("", text)) / n_tokens, 4),
    }


class CodeQualityFilter(LlamixFilter):
    name = "🧑‍💻 llamix code quality"

    def __init__(self, max_line_length: float = 1000, max_mean_line_length: float = 100,
                 min_alnum_fraction: float = 0.25, min_alpha_per_token: float = 1.5, stage: str = "code_quality"):
        super().__init__(stage=stage)
        self.max_line_length = max_line_length
        self.max_mean_line_length = max_mean_line_length
        self.min_alnum_fraction = min_alnum_fraction
        self.min_alpha_per_token = min_alpha_per_token
        self._pre_tokenizer = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_pre_tokenizer"] = None
        return state

    @property
    def pre_tokenizer(self):
        if self._pre_tokenizer is None:
            from tokenizers.pre_tokenizers import ByteLevel

            self._pre_tokenizer = ByteLevel(add_prefix_space=False, use_regex=True)
        return self._pre_tokenizer

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if not doc.text.strip():
            return False, "code:empty"
        signals = code_signals(doc.text, self.pre_tokenizer)
        doc.metadata.update(signals)
        if signals["code_max_line_length"] > self.max_line_length:
            return False, "code:max_line_length"
        if signals["code_mean_line_length"] > self.max_mean_line_length:
            return False, "code:mean_line_length"
        if signals["code_alnum_fraction"] < self.min_alnum_fraction:
            return False, "code:alnum_fraction"
        if signals["code_alpha_per_token"] < self.min_alpha_per_token:
            return False, "code:alpha_per_token"
        return True


class CodeQualityStage(DocumentStage):
    name = "code_quality"
    PARAMS = {  # RedPajama v1's thresholds
        "max_line_length": Number(0, default=1000),
        "max_mean_line_length": Number(0, default=100),
        "min_alnum_fraction": Number(0, 1, default=0.25),
        "min_alpha_per_token": Number(0, default=1.5),
    }

    def steps(self, io: StageIO):
        return [CodeQualityFilter(**self.params, stage=io.stage)]
