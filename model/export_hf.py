"""Export a checkpoint to the Hugging Face `LlamaForCausalLM` layout (safetensors + config + tokenizer).

Our attention applies rotary embeddings to interleaved pairs (Meta's layout); transformers rotates the two
halves of each head instead. Reordering the output rows of wq and wk inside every head from
(0a, 0b, 1a, 1b, ...) to (0a, 1a, ..., 0b, 1b, ...) makes the two layouts compute identical attention,
which is the permutation transformers' convert_llama_weights_to_hf applies to Meta's weights.

    python -m model.export_hf --checkpoint CKPT --out DIR [--tokenizer tokenizer.model]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from model.config import ModelConfig
from model.weights import CheckpointError, load_model
from storage.atomic import atomic_dir
from storage.layout import TOKENIZER_FILE
from tokenizer.spm import load_tokenizer

_LAYER_KEYS = {
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
_TOP_KEYS = {"tok_embeddings.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}


def interleaved_to_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder q/k projection rows [n_heads * head_dim, dim] from interleaved pairs to rotate-half."""
    rows, cols = w.shape
    return w.view(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def to_hf_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in state.items():
        if name in _TOP_KEYS:
            out[_TOP_KEYS[name]] = tensor
            continue
        _, idx, rest = name.split(".", 2)  # layers.{i}.<rest>
        if rest == "attention.wq.weight":
            tensor = interleaved_to_half(tensor, cfg.n_heads)
        elif rest == "attention.wk.weight":
            tensor = interleaved_to_half(tensor, cfg.kv_heads)
        out[f"model.layers.{idx}.{_LAYER_KEYS[rest]}"] = tensor
    return {k: v.contiguous() for k, v in out.items()}


_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}


def write_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """The safetensors format written directly (model/ depends on torch only): u64 little-endian header
    size, a JSON header of dtype/shape/byte offsets padded to 8 bytes, then the raw little-endian data."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, t in tensors.items():
        size = t.numel() * t.element_size()
        header[name] = {"dtype": _SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for t in tensors.values():
            f.write(t.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes())


def hf_config(cfg: ModelConfig, dtype: str, bos_id: int = 1, eos_id: int = 2) -> dict:
    """LlamaConfig fields; rope_theta is written both top-level (transformers < 5) and in rope_parameters."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.hidden_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "rope_scaling": None,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "initializer_range": 0.02,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": None,
        "torch_dtype": dtype,
        "dtype": dtype,
    }


def _tokenizer_files(sp, tokenizer: Path, out: Path, max_len: int) -> tuple[int, int]:
    """Copy the SentencePiece model and describe it for LlamaTokenizer; returns (bos_id, eos_id)."""
    shutil.copyfile(tokenizer, out / TOKENIZER_FILE)
    special = {name: sp.IdToPiece(i) for name, i in
               (("unk_token", sp.unk_id()), ("bos_token", sp.bos_id()), ("eos_token", sp.eos_id())) if i >= 0}
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer",
        **special,
        "pad_token": None,
        "add_bos_token": True,
        "add_eos_token": False,
        "legacy": False,
        "model_max_length": max_len,
        "clean_up_tokenization_spaces": False,
    }, indent=2))
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    return sp.bos_id(), sp.eos_id()


def export(ckpt_dir: str | Path, out_dir: str | Path, tokenizer: str | Path | None = None,
           dtype: torch.dtype = torch.float32) -> Path:
    model, cfg = load_model(ckpt_dir)
    sp = load_tokenizer(tokenizer) if tokenizer is not None else None  # a bad file fails before anything is written
    dtype_name = str(dtype).removeprefix("torch.")
    state = {k: v.to(dtype) for k, v in to_hf_state_dict(model.state_dict(), cfg).items()}
    with atomic_dir(out_dir) as tmp:
        bos_id, eos_id = (1, 2) if sp is None else _tokenizer_files(sp, Path(tokenizer), tmp, cfg.max_seq_len)
        write_safetensors(state, tmp / "model.safetensors", metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(hf_config(cfg, dtype_name, bos_id, eos_id), indent=2))
        (tmp / "generation_config.json").write_text(json.dumps(
            {"bos_token_id": bos_id, "eos_token_id": eos_id, "do_sample": True, "temperature": 0.6, "top_p": 0.9,
             "max_length": cfg.max_seq_len}, indent=2))
    return Path(out_dir)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizer", default=None, help="SentencePiece tokenizer.model to ship with the export")
    ap.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    args = ap.parse_args(argv)
    try:
        out = export(args.checkpoint, args.out, args.tokenizer, getattr(torch, args.dtype))
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
