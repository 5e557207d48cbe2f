"""The ``quality`` stage: C4 and Gopher heuristics (LLaMA's C4 subset: "quality filtering by heuristics
such as presence of punctuation marks or the number of words and sentences in a webpage").

Why reuse datatrove's filters: they are the maintained reimplementations of C4's ``c4_utils`` and of
Gopher's Table A1 that FineWeb and others use, so numbers stay comparable with peers. We only wrap them
so that a rejected page is marked (``c4:<rule>``, ``gopher:<rule>``, ``gopher_rep:<rule>``) and kept in
``excluded/`` instead of dropped, and record the line counts of C4's line cleaning. Words are split with
spaCy's blank tokenizer (no model download). Every rule and threshold: docs/filters.md.
"""

from __future__ import annotations

import inspect
from typing import Any

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result

from filters.base import LlamixFilter
from pipeline.params import Options, ParamError, Text, shown
from pipeline.stages import DocumentStage, StageIO

# (params key, reason prefix, datatrove prefix its reasons carry) in the order they run: C4 first
# because it rewrites the page to its kept lines, and the Gopher rules judge what would be trained on.
RULE_SETS = (("c4", "c4", ""), ("gopher_quality", "gopher", "gopher_"), ("gopher_repetition", "gopher_rep", ""))


def filter_class(key: str) -> type[BaseFilter]:
    from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter

    return {"c4": C4QualityFilter, "gopher_quality": GopherQualityFilter, "gopher_repetition": GopherRepetitionFilter}[key]


def build_filter(key: str, options: dict[str, Any], language: str) -> BaseFilter:
    return filter_class(key)(language=language, **options)


def option_checker(key: str):
    """Checks a rule set's options against the datatrove filter's own keyword arguments: known names
    only, and a number (true/false) where the filter's default is a number (a bool)."""

    def check(options: dict[str, Any]) -> dict[str, Any]:
        signature = inspect.signature(filter_class(key)).parameters
        known = {n: p.default for n, p in signature.items() if n not in ("self", "language", "exclusion_writer")}
        for name, value in options.items():
            if name not in known:
                raise ParamError(str(name), f"unknown option (known: {', '.join(known)})")
            default = known[name]
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ParamError(name, f"expected true or false, got {shown(value)}")
            elif isinstance(default, (int, float)) and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ParamError(name, f"expected a number, got {shown(value)}")
        return options

    return check


class QualityFilter(LlamixFilter):
    """Runs the enabled rule sets in order; the first rule a page breaks is its reason."""

    name = "🥇 llamix quality (C4 + Gopher)"

    def __init__(self, rule_sets: dict[str, dict[str, Any]], language: str = "en", stage: str = "quality"):
        super().__init__(stage=stage)
        self.rule_sets = rule_sets
        self.language = language
        self._filters: list[tuple[str, str, BaseFilter]] | None = None

    @property
    def filters(self) -> list[tuple[str, str, BaseFilter]]:
        if self._filters is None:
            self._filters = [
                (prefix, strip, build_filter(key, self.rule_sets[key], self.language))
                for key, prefix, strip in RULE_SETS
                if key in self.rule_sets
            ]
        return self._filters

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_filters"] = None
        return state

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if not doc.text.strip():
            return False, "quality:empty"
        lines_in = len(doc.text.splitlines())
        for prefix, strip, rules in self.filters:
            keep, reason = get_filter_result(rules.filter(doc))
            if prefix == "c4":
                doc.metadata["c4_lines_in"] = lines_in
                doc.metadata["c4_lines_kept"] = len(doc.text.splitlines()) if keep else 0
            if not keep:
                return False, f"{prefix}:{(reason or 'rejected').removeprefix(strip)}"
        return True


def rule_sets_from_params(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The enabled rule sets and their options, from the stage's parameters (checked here)."""
    values = QualityStage.check_params(params)
    return {key: ({} if values[key] is True else dict(values[key])) for key, _, _ in RULE_SETS if values[key] is not False}


class QualityStage(DocumentStage):
    name = "quality"
    # ``c4: true`` enables a rule set with datatrove's defaults, ``false`` disables it, a mapping
    # overrides its options (e.g. ``c4: {min_num_sentences: 5}``)
    PARAMS = {
        "c4": Options(True, option_checker("c4")),
        "gopher_quality": Options(True, option_checker("gopher_quality")),
        "gopher_repetition": Options(True, option_checker("gopher_repetition")),
        "language": Text("en"),  # datatrove's word tokenizer language
    }

    @classmethod
    def check_together(cls, values: dict[str, Any]) -> None:
        if not any(values[key] is not False for key, _, _ in RULE_SETS):
            raise ParamError("", "every rule set is disabled (set c4, gopher_quality or gopher_repetition)")

    def steps(self, io: StageIO):
        return [QualityFilter(rule_sets_from_params(self.params), language=self.params["language"], stage=io.stage)]
