"""The Llama module: causality, loss semantics, GQA, meta-device init, and that it actually learns."""

import pytest
import torch

from model.config import get_config
from model.llama import Llama
from model.rope import apply_rotary, apply_rotary_real, rope_tables

VOCAB = 256


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**kw) -> Llama:
    torch.manual_seed(0)
    return Llama(get_config("tiny", vocab_size=VOCAB, max_seq_len=128, **kw))


@pytest.mark.parametrize("kv_heads", [None, 2])
def test_future_tokens_do_not_change_earlier_logits(kv_heads):
    model = tiny(n_kv_heads=kv_heads).eval()
    x = torch.randint(0, VOCAB, (2, 24))
    y = x.clone()
    y[:, 15:] = (y[:, 15:] + 7) % VOCAB
    with torch.no_grad():
        lx, _ = model(x)
        ly, _ = model(y)
    torch.testing.assert_close(lx[:, :15], ly[:, :15], atol=1e-5, rtol=0)
    assert (lx[:, 15:] - ly[:, 15:]).abs().max() > 1e-3  # and later ones do change


def test_loss_is_mean_cross_entropy_ignoring_minus_100_in_both_paths():
    model = tiny()
    x = torch.randint(0, VOCAB, (2, 16))
    t = torch.randint(0, VOCAB, (2, 16))
    t[0, :5] = -100
    logits, _ = model(x)
    keep = t != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], t[keep])
    expected.backward()
    ref_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with torch.no_grad():
        eval_logits, eval_loss = model(x, t)  # inference path: full logits + standard cross-entropy
    torch.testing.assert_close(eval_loss, expected)
    torch.testing.assert_close(eval_logits, logits)
    no_logits, loss = model(x, t)  # training path: chunked, logits never materialised
    assert no_logits is None
    torch.testing.assert_close(loss, expected)
    loss.backward()
    for p, ref in zip(model.parameters(), ref_grads):
        torch.testing.assert_close(p.grad, ref, atol=1e-6, rtol=1e-4)
    assert model(x)[1] is None


def test_rope_rotates_pairs_and_preserves_norm():
    cos, sin = rope_tables(8, 16)
    x = torch.randn(1, 16, 2, 8)
    out = apply_rotary(x, cos, sin)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(out[:, 0], x[:, 0])  # position 0 is not rotated
    torch.testing.assert_close(apply_rotary_real(x, cos, sin), out)  # the form used under torch.compile
    torch.testing.assert_close(out[0, 3, 1, :2], torch.stack((x[0, 3, 1, 0] * cos[3, 0] - x[0, 3, 1, 1] * sin[3, 0],
                                                              x[0, 3, 1, 0] * sin[3, 0] + x[0, 3, 1, 1] * cos[3, 0])))
    # relative property: <R_m q, R_n k> depends on m - n only
    q, k = torch.randn(8), torch.randn(8)
    rot = lambda v, p: apply_rotary(v.view(1, 1, 1, 8), cos[p:p + 1], sin[p:p + 1]).flatten()
    torch.testing.assert_close(rot(q, 5) @ rot(k, 3), rot(q, 12) @ rot(k, 10), atol=1e-5, rtol=1e-5)


def test_structure_no_biases_untied_and_named_for_sharding():
    model = tiny(n_kv_heads=3)
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
    assert model.output.weight.data_ptr() != model.tok_embeddings.weight.data_ptr()
    assert len(model.layers) == 4 and model.layers[0].attention.wk.weight.shape == (3 * 32, 192)
    assert not any("rope" in k for k in model.state_dict())  # rotary tables are non-persistent
    cfg = model.cfg
    assert model.flops_per_token(128) == 6 * (model.num_params(non_embedding=True) + cfg.vocab_size * cfg.dim) \
        + 12 * cfg.n_layers * cfg.dim * 128


def test_meta_init_then_to_empty_matches_a_regular_model():
    ref = tiny()
    with torch.device("meta"):
        model = Llama(ref.cfg)
    model.to_empty(device="cpu")
    model.init_weights()
    model.load_state_dict(ref.state_dict())
    x = torch.randint(0, VOCAB, (1, 20))
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], ref(x)[0])
    assert abs(model.layers[0].attention.wq.weight.std().item() - 0.02) < 0.003


def test_too_long_sequence_is_a_clear_error():
    with pytest.raises(ValueError, match="max_seq_len"):
        tiny()(torch.zeros(1, 129, dtype=torch.long))


def test_tiny_model_overfits_a_fixed_batch():
    torch.manual_seed(0)
    model = Llama(get_config("tiny", dim=64, n_heads=4, n_layers=2, vocab_size=VOCAB, max_seq_len=32))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = torch.randint(0, VOCAB, (4, 25), generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(50):
        _, loss = model(batch[:, :-1], batch[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 5.0  # ~ln(256) at init
    assert losses[-1] < 0.1 * losses[0]
