"""Mixture loader: proportions, epoch caps, held-out split, resumable and world-size-independent stream."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from train.mixture import MixtureExhausted, MixtureLoader, draw_uniform, read_mixture
from tokenizer.shards import ShardError, TokenStream, open_shard, write_shard

VOCAB = 1000


def _docs(rng, n_docs, mean_len):
    return [list(rng.integers(3, VOCAB, size=int(rng.integers(1, 2 * mean_len)))) for _ in range(n_docs)]


@pytest.fixture()
def tokens(tmp_path):
    """Three sources of different sizes, several shards each (documents cross window boundaries)."""
    rng = np.random.default_rng(0)
    for name, n_shards, n_docs in (("commoncrawl", 3, 40), ("github", 2, 10), ("wikipedia", 1, 25)):
        for k in range(n_shards):
            write_shard(tmp_path / name, _docs(rng, n_docs, 30), rank=k, source=name, vocab_size=VOCAB, eos_id=2)
    return tmp_path


MIX = {"sources": {"commoncrawl": {"weight": 67.0, "epochs": 1.1}, "github": {"weight": 4.5, "epochs": 0.64},
                   "wikipedia": {"weight": 4.5, "epochs": 2.45}}}


def _all_tokens(folder):
    return np.concatenate([np.fromfile(p, dtype="<u2") for p in sorted(folder.glob("*.ds"))]).astype(np.int64)


def test_windows_are_contiguous_slices_across_shards(tokens):
    seq = 16
    loader = MixtureLoader(tokens, MIX, seq_len=seq, eval_fraction=0.1, seed=1)
    for name in loader.names:
        flat = _all_tokens(tokens / name)
        sw = loader.windows[name]
        assert sw.n_windows == (len(flat) - 1) // seq
        assert sw.n_eval == int(sw.n_windows * 0.1) and sw.n_train + sw.n_eval == sw.n_windows
        for t in (0, sw.n_train - 1, sw.n_windows - 1):
            np.testing.assert_array_equal(sw.window(t), flat[t * seq:t * seq + seq + 1])
    x, y = loader.next_batch(4)
    assert x.shape == y.shape == (4, seq) and x.dtype == torch.int64
    np.testing.assert_array_equal(x[:, 1:].numpy(), y[:, :-1].numpy())


def test_proportions_match_weights_over_many_draws(tokens):
    mix = {"sources": {n: {"weight": w, "epochs": 10_000} for n, w in
                       (("commoncrawl", 67.0), ("github", 4.5), ("wikipedia", 28.5))}}
    loader = MixtureLoader(tokens, mix, seq_len=16, seed=3)
    n = 60_000
    picks = loader.plan_sources(n)
    for name, p in loader.target.items():
        share = sum(1 for s, _ in picks if s == name) / n
        assert abs(share - p) < 4.5 * math.sqrt(p * (1 - p) / n), (name, share, p)
    # realised() reports the same shares once consumed
    for _ in range(100):
        loader.next_batch(10)
    real = loader.realised()
    assert sum(r["windows"] for r in real.values()) == 1000
    assert abs(real["commoncrawl"]["share"] - 0.67) < 0.05
    assert real["github"]["tokens"] == real["github"]["windows"] * 16


def test_counter_based_uniform_is_uniform_and_seeded():
    u = np.array([draw_uniform(5, i) for i in range(20_000)])
    assert 0 <= u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.01 and abs(np.histogram(u, 10)[0] / 2000 - 1).max() < 0.1
    assert draw_uniform(5, 0) != draw_uniform(6, 0)


def test_epoch_caps_respected_then_clear_stop(tokens):
    # rank 0 of a world of 3: each next_batch(1) consumes exactly the 3 global draws plan(3) shows
    loader = MixtureLoader(tokens, MIX, seq_len=16, eval_fraction=0.05, seed=0, rank=0, world_size=3)
    seen = {n: [] for n in loader.names}
    with pytest.raises(MixtureExhausted, match="exhausted after .* every source reached its epoch cap"):
        while True:
            picks = loader.plan(3)
            loader.next_batch(1)
            for name, t in picks:
                seen[name].append(t)
    for name, spec in loader.specs.items():
        n_train = loader.windows[name].n_train
        cap = math.floor(spec.epochs * n_train)
        assert cap - 3 < loader.consumed[name] <= cap
        counts = np.bincount(seen[name], minlength=n_train)
        assert counts.max() <= math.ceil(spec.epochs)           # never beyond its epoch count
        assert counts.min() >= loader.consumed[name] // n_train  # each full epoch covers every window
        assert max(seen[name]) < n_train                       # held-out tail never trained on
    # the batch that did not fit consumed nothing, and iteration stops with StopIteration
    before = loader.state_dict()
    with pytest.raises(StopIteration):
        next(loader)
    assert loader.state_dict() == before


def test_state_roundtrip_continues_identical_stream(tokens):
    a = MixtureLoader(tokens, MIX, seq_len=16, eval_fraction=0.05, seed=11)
    for _ in range(7):
        a.next_batch(3)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = MixtureLoader(tokens, MIX, seq_len=16, eval_fraction=0.05, seed=11)
    b.load_state_dict(torch.load(buf, weights_only=True))
    for _ in range(10):
        xa, ya = a.next_batch(3)
        xb, yb = b.next_batch(3)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other_seed = MixtureLoader(tokens, MIX, seq_len=16, eval_fraction=0.05, seed=12)
    with pytest.raises(ValueError, match="seed"):
        other_seed.load_state_dict(a.state_dict())


def test_world_sizes_cover_the_same_global_stream(tokens):
    kw = dict(seq_len=16, eval_fraction=0.05, seed=5)
    single = MixtureLoader(tokens, MIX, **kw)
    reference = [single.next_batch(1)[0][0] for _ in range(24)]
    # world 2 for 2 micro-batches of 3 rows (12 draws), then resume the state with world 3
    ranks = [MixtureLoader(tokens, MIX, rank=r, world_size=2, **kw) for r in range(2)]
    got = [None] * 24
    for step in range(2):
        for r, loader in enumerate(ranks):
            x, _ = loader.next_batch(3)
            for k in range(3):
                got[step * 6 + k * 2 + r] = x[k]
    state = ranks[0].state_dict()
    assert state == ranks[1].state_dict() and state["draw"] == 12
    ranks3 = [MixtureLoader(tokens, MIX, rank=r, world_size=3, **kw) for r in range(3)]
    for r, loader in enumerate(ranks3):
        loader.load_state_dict(state)
        x, _ = loader.next_batch(4)
        for k in range(4):
            got[12 + k * 3 + r] = x[k]
    for a, b in zip(reference, got):
        assert torch.equal(a, b)


def test_heldout_batches_are_the_tail_windows(tokens):
    loader = MixtureLoader(tokens, MIX, seq_len=16, eval_fraction=0.2, seed=0)
    sw = loader.windows["commoncrawl"]
    rows = torch.cat([x for x, _ in loader.heldout_batches("commoncrawl", 4)])
    assert rows.shape[0] == sw.n_eval
    np.testing.assert_array_equal(rows[0].numpy(), sw.window(sw.n_train)[:-1])
    capped = list(loader.heldout_batches("commoncrawl", 4, max_tokens=16 * 3))
    assert sum(x.shape[0] for x, _ in capped) == 3
    # split over 2 ranks: disjoint halves of the same (even-truncated) windows
    r0 = MixtureLoader(tokens, MIX, seq_len=16, eval_fraction=0.2, seed=0, rank=0, world_size=2)
    r1 = MixtureLoader(tokens, MIX, seq_len=16, eval_fraction=0.2, seed=0, rank=1, world_size=2)
    n0 = sum(x.shape[0] for x, _ in r0.heldout_batches("commoncrawl", 4))
    n1 = sum(x.shape[0] for x, _ in r1.heldout_batches("commoncrawl", 4))
    assert n0 == n1 == sw.n_eval // 2


def test_missing_source_skipped_with_warning_and_renormalised(tokens):
    mix = {"sources": {**MIX["sources"], "books": {"weight": 4.5, "epochs": 2.23}}}
    with pytest.warns(UserWarning, match="skipping source 'books'.*no token shards"):
        loader = MixtureLoader(tokens, mix, seq_len=16)
    assert "books" in loader.skipped and "books" not in loader.names
    assert abs(sum(loader.target.values()) - 1) < 1e-12
    assert abs(loader.target["commoncrawl"] - 67 / 76) < 1e-12


def test_manifest_yaml_and_errors(tmp_path, tokens):
    path = tmp_path / "data_manifest.yaml"
    path.write_text("sources:\n  commoncrawl: {weight: 67.0, epochs: 1.10}\n  c4: {weight: 15.0}\n")
    specs = read_mixture(path)
    assert specs["commoncrawl"].epochs == 1.10 and specs["c4"].epochs == 1.0
    path.write_text("sources:\n  c4: {epochs: 1}\n")
    with pytest.raises(ValueError, match="no `weight`"):
        read_mixture(path)
    with pytest.raises(FileNotFoundError, match="data manifest not found"):
        read_mixture(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="no usable source"), pytest.warns(UserWarning, match="skipping"):
        MixtureLoader(tmp_path / "empty", MIX, seq_len=16)


def test_corrupt_shard_is_a_clear_error(tmp_path):
    ds = write_shard(tmp_path / "s", [[5, 6, 7]], source="s", vocab_size=VOCAB, eos_id=2)
    with open(ds, "ab") as f:
        f.write(b"\x01\x00")
    with pytest.raises(ShardError, match="sidecar says 4 tokens, file holds 5"):
        open_shard(ds)
    with pytest.raises(ShardError):
        TokenStream(tmp_path / "s")


@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000, 4097])
def test_window_permutation_is_a_keyed_bijection(n):
    from train.mixture import permuted_index
    perm = [permuted_index(i, n, key=12345) for i in range(n)]
    assert sorted(perm) == list(range(n))
    if n >= 17:
        assert perm != list(range(n)) and perm != [permuted_index(i, n, key=54321) for i in range(n)]
