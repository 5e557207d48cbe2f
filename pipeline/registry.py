"""Stage names and where their implementations live.

Names here are an interface: the manifest, the CLI and users' scripts spell them. Implementations are
imported lazily so that validating a manifest does not import fastText, KenLM or torch.
"""

from __future__ import annotations

import importlib

STAGES: dict[str, str] = {
    "download": "ingest.download_stage:DownloadStage",
    "extract": "ingest.extract:ExtractStage",
    "linededup": "dedup.linededup:LineDedupStage",
    "langid": "filters.langid:LangIdStage",
    "perplexity": "filters.perplexity:PerplexityStage",
    "wikiref": "filters.wikiref:WikirefStage",
    "quality": "filters.quality:QualityStage",
    "code_quality": "filters.code_quality:CodeQualityStage",
    "minhash": "dedup.minhash:MinhashStage",
    "bookdedup": "dedup.bookdedup:BookDedupStage",
    "exactdedup": "dedup.exactdedup:ExactDedupStage",
    "tokenize": "tokenizer.stages:TokenizeStage",
    # model stages: build an artefact once for the whole profile
    "lm": "filters.perplexity:LMStage",
    "wikiref_train": "filters.wikiref:WikirefTrainStage",
    "tokenizer": "tokenizer.stages:TokenizerStage",
}

MODEL_STAGES = frozenset({"lm", "wikiref_train", "tokenizer"})
# document stages whose input folder holds raw upstream files, not Parquet document shards
RAW_INPUT_STAGES = frozenset({"download", "extract"})


def stage_class(name: str):
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r} (known: {', '.join(sorted(STAGES))})")
    module, cls = STAGES[name].split(":")
    return getattr(importlib.import_module(module), cls)
