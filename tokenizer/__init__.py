"""The tokenizer room: the LLaMA tokenizer (``spm``), the token-shard format (``shards``) — both numpy +
sentencepiece + stdlib only, so the trainer can use them — and their pipeline stages (``stages``)."""
