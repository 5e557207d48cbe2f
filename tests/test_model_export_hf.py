"""HF export: transformers' LlamaForCausalLM loaded from our export computes our logits (fp32, 1e-4),
its tokenizer encodes like our SentencePiece model, and both CLIs (export, generate) work end to end."""

import argparse
import inspect
import json
import pathlib
import textwrap

import pytest
import sentencepiece as spm
import torch

from model import export_hf, generate
from model.weights import save_model
from model.config import get_config
from model.export_hf import interleaved_to_half
from model.llama import Llama

transformers = pytest.importorskip("transformers")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A small BPE SentencePiece model trained on real English prose (stdlib docstrings)."""
    text = "\n".join(inspect.getdoc(obj) or "" for mod in (argparse, json, pathlib, textwrap)
                     for _, obj in inspect.getmembers(mod) if inspect.isclass(obj) or inspect.isfunction(obj))
    prefix = tmp_path_factory.mktemp("tok") / "sp"
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text.splitlines()), model_prefix=str(prefix),
                                   vocab_size=500, model_type="bpe", byte_fallback=True, split_digits=True,
                                   minloglevel=2)
    return prefix.with_suffix(".model")


def checkpoint(tmp_path, vocab=500, **kw):
    torch.manual_seed(0)
    cfg = get_config("tiny", vocab_size=vocab, n_layers=2, max_seq_len=64, **kw)
    model = Llama(cfg).eval()
    save_model(model, cfg, tmp_path / "ckpt")
    return model, tmp_path / "ckpt"


def hf_logits(path, tokens):
    hf = transformers.LlamaForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        return hf(tokens).logits


@pytest.mark.parametrize("kv_heads", [None, 2])
def test_transformers_reproduces_our_logits(tmp_path, kv_heads):
    model, ckpt = checkpoint(tmp_path, n_kv_heads=kv_heads)
    export_hf.export(ckpt, tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["tie_word_embeddings"] is False and config["rms_norm_eps"] == 1e-6
    assert config["rope_theta"] == config["rope_parameters"]["rope_theta"] == 10000.0
    tokens = torch.randint(0, 500, (2, 48))
    with torch.no_grad():
        ours, _ = model(tokens)
    torch.testing.assert_close(hf_logits(tmp_path / "hf", tokens), ours, atol=1e-4, rtol=0)


def test_safetensors_writer_is_read_back_by_the_reference_library(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    tensors = {"a": torch.randn(3, 5), "b": torch.randn(7).to(torch.bfloat16), "c": torch.arange(6.0).view(2, 3).t()}
    export_hf.write_safetensors(tensors, tmp_path / "x.safetensors", metadata={"format": "pt"})
    back = safetensors_torch.load_file(tmp_path / "x.safetensors")
    assert back.keys() == tensors.keys()
    for k, t in tensors.items():
        assert back[k].dtype == t.dtype and torch.equal(back[k], t)


def test_rope_permutation_is_needed_and_invertible():
    w = torch.arange(2 * 8 * 3, dtype=torch.float32).view(16, 3)  # 2 heads of head_dim 8
    p = interleaved_to_half(w, 2)
    assert not torch.equal(p, w)
    assert torch.equal(p[:4], w[0:8:2]) and torch.equal(p[4:8], w[1:8:2])  # head 0: even rows, then odd
    assert sorted(p[:, 0].tolist()) == sorted(w[:, 0].tolist())


def test_export_cli_with_tokenizer_then_autotokenizer_and_generate_cli(tmp_path, tokenizer, capsys):
    model, ckpt = checkpoint(tmp_path)
    assert export_hf.main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "hf"), "--tokenizer", str(tokenizer)]) == 0
    files = sorted(p.name for p in (tmp_path / "hf").iterdir())
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.model",
            "tokenizer_config.json"} <= set(files)
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    text = "Return a parser for the command line, with 42 options."
    assert tok(text).input_ids == [sp.bos_id()] + sp.encode(text)
    assert tok.decode(tok(text).input_ids, skip_special_tokens=True) == text

    capsys.readouterr()
    args = ["--checkpoint", str(ckpt), "--tokenizer", str(tokenizer), "--prompt", "The parser",
            "--max-new-tokens", "8", "--temperature", "0"]
    assert generate.main(args) == 0
    out = capsys.readouterr().out.strip()
    # a generated document starts after EOS, as documents do in the token shards
    prompt = sp.encode("The parser")
    expected = generate.generate(model, [sp.eos_id()] + prompt, 8, eos_id=sp.eos_id())
    assert out == sp.decode(prompt + list(expected))


def test_clis_report_bad_input_in_one_line(tmp_path, tokenizer, capsys):
    _, ckpt = checkpoint(tmp_path)
    assert export_hf.main(["--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "hf")]) == 2
    assert export_hf.main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "hf"), "--tokenizer", str(ckpt / "model.pt")]) == 2
    assert not (tmp_path / "hf").exists()  # nothing half-written
    _, small_ckpt = checkpoint(tmp_path / "s", vocab=100)
    assert generate.main(["--checkpoint", str(small_ckpt), "--tokenizer", str(tokenizer), "--prompt", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err), err
    assert "not a checkpoint" in err[0] and "tokenizer" in err[1] and "500 pieces" in err[2]
