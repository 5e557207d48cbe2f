"""The filter contract shared by every quality/language filter.

A datatrove ``BaseFilter`` drops what it rejects; llamix keeps every document flowing to the stage's
writer instead, marked with ``metadata["reason"]``, so excluded documents land in ``excluded/`` with
their scores (users re-threshold without re-running) and the accounting identity can be checked.
Subclasses implement ``filter(doc) -> bool | (False, reason)`` (or ``filter_batch``) exactly as in
datatrove, and write their scores into ``doc.metadata`` for kept and excluded documents alike.
"""

from __future__ import annotations

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result
from datatrove.utils.batching import batched

from pipeline.documents import exclude, is_excluded


class LlamixFilter(BaseFilter):
    """A datatrove filter that marks instead of dropping, and passes already-excluded docs through."""

    stage: str = ""

    def __init__(self, stage: str = "", batch_size: int = 1):
        super().__init__(exclusion_writer=None, batch_size=batch_size)
        self.stage = stage or self.stage

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for batch in batched(data, self.batch_size):
            excluded = [is_excluded(d) for d in batch]
            live = [d for d, ex in zip(batch, excluded) if not ex]
            with self.track_time("batch" if self.batch_size > 1 else None):
                results = iter(self.filter_batch(live) if live else [])
            dropped = 0
            for doc, already in zip(batch, excluded):
                if not already:
                    keep, reason = get_filter_result(next(results))
                    if not keep:
                        reason = reason or self.name or type(self).__name__
                        self.stat_update(f"dropped_{reason.split(':')[0]}")
                        exclude(doc, reason, self.stage)
                        dropped += 1
                yield doc
            # counters per batch, not per document: fastText answers in ~20 µs, bookkeeping must stay small
            if live:
                self.stat_update("total", value=len(live))
                self.stat_update("forwarded", value=len(live) - dropped)
                if dropped:
                    self.stat_update("dropped", value=dropped)
