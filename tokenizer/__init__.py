"""The LLaMA tokenizer and the token-shard format (numpy + sentencepiece only), and the pipeline stages that use them."""
