"""Compact LLaMA trainer: mixture loader, loop, checkpoints, DDP/FSDP2, held-out evaluation.

Imports only torch, numpy, pyyaml, sentencepiece and the standard library (never the data pipeline):
it consumes the pipeline's token shards through their file format alone.
"""
