"""Text generation from a checkpoint: greedy or temperature + nucleus (top-p) sampling with a KV cache.

The KV cache makes each new token cost one attention row; `use_cache=False` re-runs the whole prefix
every step and exists as the reference the cache is tested against.

    python -m model.generate --checkpoint CKPT --tokenizer out/sample/tokenizer/tokenizer.model \
        --prompt "The history of" [--max-new-tokens 64 --temperature 0.6 --top-p 0.9 --seed 0]
"""

from __future__ import annotations

import argparse
import sys

import torch

from model.llama import Llama


def sample_next(logits: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Next token ids [B] from last-position logits [B, V]; temperature 0 means greedy (argmax)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Drop a token when the mass before it already reaches top_p; the most likely token always stays.
        before = sorted_probs.cumsum(dim=-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
        choice = torch.multinomial(sorted_probs, 1, generator=generator)
        return order.gather(-1, choice).squeeze(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model: Llama, prompt: list[int], max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
             eos_id: int | None = None, use_cache: bool = True, seed: int | None = None) -> list[int]:
    """The new token ids after `prompt` (stops at eos_id, included, or at the model's max_seq_len)."""
    if not prompt:
        raise ValueError("prompt must contain at least one token")
    limit = model.cfg.max_seq_len
    if len(prompt) >= limit:
        raise ValueError(f"prompt of {len(prompt)} tokens leaves no room under max_seq_len={limit}")
    max_new_tokens = min(max_new_tokens, limit - len(prompt))
    device = model.output.weight.device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    tokens = torch.tensor([prompt], dtype=torch.long, device=device)
    cache = model.init_kv_cache(1, len(prompt) + max_new_tokens) if use_cache else None
    new: list[int] = []
    pos = 0  # number of tokens already in the cache
    for _ in range(max_new_tokens):
        if use_cache:
            logits, _ = model(tokens[:, pos:], kv_cache=cache, start_pos=pos)
            pos = tokens.shape[1]
        else:
            logits, _ = model(tokens)
        nxt = sample_next(logits[:, -1], temperature, top_p, generator)
        new.append(int(nxt))
        if eos_id is not None and new[-1] == eos_id:
            break
        tokens = torch.cat([tokens, nxt.view(1, 1)], dim=1)
    return new


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="checkpoint directory (model.pt + config.json)")
    ap.add_argument("--tokenizer", required=True, help="SentencePiece tokenizer.model")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.6, help="0 = greedy")
    ap.add_argument("--top-p", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    from model.weights import CheckpointError, load_model
    from tokenizer.spm import load_tokenizer

    try:
        model, cfg = load_model(args.checkpoint, device=args.device)
        sp = load_tokenizer(args.tokenizer)  # a TokenizerError is a ValueError: one line, exit 2
        if sp.vocab_size() > cfg.vocab_size:
            raise ValueError(f"tokenizer has {sp.vocab_size()} pieces but the model only {cfg.vocab_size}")
        # token shards separate documents with EOS (no BOS), so a new document starts after an EOS
        start = sp.eos_id() if sp.eos_id() >= 0 else sp.bos_id()
        prompt = ([start] if start >= 0 else []) + sp.EncodeAsIds(args.prompt)
        new = generate(model, prompt, args.max_new_tokens, args.temperature, args.top_p,
                       eos_id=sp.eos_id() if sp.eos_id() >= 0 else None, seed=args.seed)
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # decode prompt and continuation together: decoding the new ids alone would drop the space between them
    print(sp.DecodeIds([t for t in prompt[1:] + list(new) if t < sp.vocab_size()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
