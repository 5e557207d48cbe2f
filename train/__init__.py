"""Compact LLaMA trainer: mixture loader, loop, checkpoints, DDP/FSDP2, held-out evaluation.

Imports only torch, numpy, pyyaml, sentencepiece, the standard library and the first-party model/,
tokenizer/ (shard format, tokenizer) and storage/ (paths, atomic writes) — never the data pipeline:
it consumes the pipeline's token shards through their file format alone, so it runs on a bare GPU box.
"""
