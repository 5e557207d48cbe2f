"""Mixture loader: samples training windows from several token sources at LLaMA-style proportions.

Why it looks like this:
- LLaMA's Table 1 gives per-source *sampling proportions* and *epochs*; a source is drawn with
  probability proportional to its weight and repeats at most `epochs` times, so small high-quality
  sources (Wikipedia, books) are seen ~2x while CommonCrawl is seen ~1x.
- The stream is a pure function of (seed, draw index, per-source consumed counts): a counter-based
  hash decides the source of draw i and a per-(source, epoch) permutation decides the window, so the
  whole state is a few integers. Saving them in a checkpoint and restoring continues the identical
  stream, and since every rank tracks the *global* stream (rank r of w reads draws base+k*w+r), a run
  can resume with a different world size from the same global position.
- The tail `eval_fraction` of each source's windows is never drawn for training; it is the held-out
  set for per-source evaluation. (The first held-out window's first *input* token is the last train
  window's last target; no held-out *target* is ever trained on.)
"""
from __future__ import annotations

import math
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from tokenizer.shards import TokenStream

_MASK64 = (1 << 64) - 1


class MixtureExhausted(StopIteration):
    """Every source has reached its epoch cap: the data budget of the run is spent."""


@dataclass(frozen=True)
class MixtureSource:
    """One source's share of the training mixture (not the pipeline's per-source stage list)."""

    name: str
    weight: float
    epochs: float = 1.0


def read_mixture(manifest: str | os.PathLike | dict) -> dict[str, MixtureSource]:
    """Per-source weight and epochs from `data_manifest.yaml` (or the same structure as a dict)."""
    if isinstance(manifest, dict):
        doc, where = manifest, "mixture dict"
    else:
        where = str(manifest)
        try:
            doc = yaml.safe_load(Path(manifest).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"data manifest not found: {manifest}") from None
    sources = (doc or {}).get("sources", doc) if isinstance(doc, dict) else None
    if not isinstance(sources, dict) or not sources:
        raise ValueError(f"{where}: expected a `sources:` mapping of name -> {{weight, epochs}}")
    specs = {}
    for name, entry in sources.items():
        if not isinstance(entry, dict) or "weight" not in entry:
            raise ValueError(f"{where}: source {name!r} has no `weight`")
        weight, epochs = float(entry["weight"]), float(entry.get("epochs", 1.0))
        if weight < 0 or epochs < 0 or not math.isfinite(weight) or not math.isfinite(epochs):
            raise ValueError(f"{where}: source {name!r} needs finite weight/epochs >= 0")
        specs[str(name)] = MixtureSource(str(name), weight, epochs)
    return specs


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def draw_uniform(seed: int, i: int) -> float:
    """Counter-based uniform in [0, 1) for draw i: no generator state to save or replay."""
    return (_splitmix64(_splitmix64(seed & _MASK64) ^ i) >> 11) * (1.0 / (1 << 53))


def _source_key(name: str) -> int:
    return zlib.crc32(name.encode())


def permuted_index(pos: int, n: int, key: int) -> int:
    """Position `pos` of a keyed pseudo-random permutation of range(n), in O(1) memory.

    A 4-round Feistel network (splitmix64 rounds) permutes [0, 2^bits) with 2^bits < 4n; cycle-walking
    maps it onto [0, n). A materialised permutation of a CommonCrawl-sized source (~5e8 windows at
    seq 2048) would cost gigabytes per rank; this costs nothing and needs no state in checkpoints.
    """
    if not 0 <= pos < n:
        raise IndexError(f"position {pos} outside a permutation of {n}")
    bits = max(2, (n - 1).bit_length())
    bits += bits % 2
    half, mask = bits // 2, (1 << (bits // 2)) - 1
    x = pos
    while True:
        left, right = x >> half, x & mask
        for rnd in range(4):
            left, right = right, left ^ (_splitmix64(key ^ (rnd << 56) ^ right) & mask)
        x = (left << half) | right
        if x < n:
            return x


class SourceWindows:
    """One source's tokens cut into windows of seq_len+1 tokens at stride seq_len, split train/held-out."""

    def __init__(self, stream: TokenStream, seq_len: int, eval_fraction: float):
        self.stream, self.seq_len = stream, seq_len
        self.n_windows = max(0, (stream.n_tokens - 1) // seq_len)
        n_eval = int(self.n_windows * eval_fraction)
        if eval_fraction > 0 and self.n_windows >= 2:
            n_eval = max(1, n_eval)
        self.n_eval = min(n_eval, self.n_windows)
        self.n_train = self.n_windows - self.n_eval

    def window(self, t: int) -> np.ndarray:
        return self.stream.read(t * self.seq_len, self.seq_len + 1)

    def heldout_range(self) -> range:
        return range(self.n_train, self.n_windows)


class MixtureLoader:
    """Deterministic, resumable, rank-aware sampler of (inputs, targets) batches over sources."""

    def __init__(self, tokens_dir: str | os.PathLike, mixture: str | os.PathLike | dict, seq_len: int,
                 eval_fraction: float = 0.0, seed: int = 0, rank: int = 0, world_size: int = 1,
                 pin_memory: bool = False):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        if not 0 <= eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
        self.tokens_dir, self.seq_len, self.seed = Path(tokens_dir), int(seq_len), int(seed)
        self.eval_fraction, self.rank, self.world_size = float(eval_fraction), rank, world_size
        self.pin_memory = pin_memory  # batches in page-locked memory: asynchronous copies to a GPU
        self.specs: dict[str, MixtureSource] = {}
        self.windows: dict[str, SourceWindows] = {}
        self.skipped: dict[str, str] = {}
        for name, spec in sorted(read_mixture(mixture).items()):
            reason = None
            if spec.weight == 0:
                reason = "weight 0"
            else:
                sw = SourceWindows(TokenStream(self.tokens_dir / name), self.seq_len, self.eval_fraction)
                if not sw.stream.shards:
                    reason = f"no token shards in {self.tokens_dir / name}"
                elif sw.n_train == 0:
                    reason = f"{sw.stream.n_tokens} tokens: too few for one training window of {seq_len + 1}"
            if reason:
                self.skipped[name] = reason
                warnings.warn(f"mixture: skipping source {name!r} ({reason}); weights renormalised",
                              stacklevel=2)
                continue
            self.specs[name], self.windows[name] = spec, sw
        if not self.specs:
            raise ValueError(f"mixture: no usable source under {self.tokens_dir} "
                             f"({'; '.join(f'{k}: {v}' for k, v in self.skipped.items())})")
        self.names = list(self.specs)
        total = sum(s.weight for s in self.specs.values())
        self.target = {n: self.specs[n].weight / total for n in self.names}
        self.cap = {n: int(math.floor(self.specs[n].epochs * self.windows[n].n_train)) for n in self.names}
        self.draw = 0
        self.consumed = {n: 0 for n in self.names}

    # ----- the global stream -------------------------------------------------------------------
    def _pick(self, i: int, consumed: dict[str, int]) -> str:
        active = [n for n in self.names if consumed[n] < self.cap[n]]
        if not active:
            spent = ", ".join(f"{n} {self.specs[n].epochs:g} epochs = {self.cap[n]} windows" for n in self.names)
            raise MixtureExhausted(f"mixture exhausted after {i} draws: every source reached its epoch cap ({spent})")
        u = draw_uniform(self.seed, i) * sum(self.specs[n].weight for n in active)
        acc = 0.0
        for n in active:
            acc += self.specs[n].weight
            if u < acc:
                return n
        return active[-1]

    def _window_index(self, name: str, c: int) -> int:
        """Window for the c-th draw of a source: position c mod n_train of epoch c // n_train's permutation."""
        n_train = self.windows[name].n_train
        epoch, pos = divmod(c, n_train)
        key = _splitmix64(_splitmix64(_splitmix64(self.seed & _MASK64) ^ _source_key(name)) ^ epoch)
        return permuted_index(pos, n_train, key)

    def plan_sources(self, n_draws: int) -> list[tuple[str, int]]:
        """The next n_draws global draws as (source, that source's draw count), without consuming them."""
        consumed = dict(self.consumed)
        picks = []
        for i in range(self.draw, self.draw + n_draws):
            name = self._pick(i, consumed)
            picks.append((name, consumed[name]))
            consumed[name] += 1
        return picks

    def plan(self, n_draws: int) -> list[tuple[str, int]]:
        """The next n_draws global draws as (source, window index), without consuming them."""
        return [(name, self._window_index(name, c)) for name, c in self.plan_sources(n_draws)]

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of the next global micro-batch (batch_size rows per rank).

        The global micro-batch is batch_size * world_size draws; rank r takes draws k*w + r. Either
        the whole global micro-batch is available or MixtureExhausted is raised and nothing is consumed.
        """
        picks = self.plan_sources(batch_size * self.world_size)
        for name, _ in picks:
            self.consumed[name] += 1
        self.draw += len(picks)
        mine = picks[self.rank::self.world_size]
        rows = np.stack([self.windows[name].window(self._window_index(name, c)) for name, c in mine])
        batch = torch.from_numpy(rows)
        if not self.pin_memory:
            return batch[:, :-1].contiguous(), batch[:, 1:].contiguous()
        shape = (batch.shape[0], batch.shape[1] - 1)
        x, y = (torch.empty(shape, dtype=batch.dtype, pin_memory=True) for _ in range(2))
        return x.copy_(batch[:, :-1]), y.copy_(batch[:, 1:])

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.next_batch(1)

    # ----- held-out data -----------------------------------------------------------------------
    def heldout_batches(self, name: str, batch_size: int, max_tokens: int | None = None):
        """This rank's share of the held-out windows of one source, in order, capped at max_tokens."""
        yield from window_batches(self.windows[name], self.windows[name].heldout_range(), batch_size,
                                  max_tokens, self.rank, self.world_size)

    # ----- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"draw": self.draw, "consumed": dict(self.consumed), "seed": self.seed,
                "seq_len": self.seq_len, "n_train": {n: self.windows[n].n_train for n in self.names}}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "seq_len"):
            if int(state[key]) != getattr(self, key):
                raise ValueError(f"loader state has {key}={state[key]}, this run has {getattr(self, key)}")
        if dict(state["n_train"]) != {n: self.windows[n].n_train for n in self.names}:
            raise ValueError(f"token data changed since the checkpoint: training windows per source were "
                             f"{dict(state['n_train'])}, now {({n: self.windows[n].n_train for n in self.names})}")
        self.draw = int(state["draw"])
        self.consumed = {n: int(state["consumed"][n]) for n in self.names}

    def realised(self) -> dict[str, dict]:
        """Tokens drawn per source so far vs the target proportion (and epochs used vs allowed)."""
        total = max(1, sum(self.consumed.values()))
        return {n: {"tokens": self.consumed[n] * self.seq_len, "windows": self.consumed[n],
                    "share": self.consumed[n] / total, "target": self.target[n],
                    "epochs": self.consumed[n] / self.windows[n].n_train, "max_epochs": self.specs[n].epochs}
                for n in self.names}

    def unigram_entropy(self, max_tokens_per_source: int = 20_000_000) -> float:
        """Entropy (nats) of the mixture's unigram distribution over training windows.

        A model that only learned token frequencies would score exactly this cross-entropy, so it is
        the bar a real language model's loss must get well below.
        """
        mix = None
        for n in self.names:
            sw = self.windows[n]
            length = min(sw.n_train * self.seq_len + 1, max_tokens_per_source)
            counts = np.bincount(sw.stream.read(0, length)).astype(np.float64)
            p = counts / counts.sum() * self.target[n]
            mix = p if mix is None else _add_padded(mix, p)
        mix = mix[mix > 0]
        return float(-(mix * np.log(mix)).sum())


def _add_padded(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) < len(b):
        a, b = b, a
    a = a.copy()
    a[:len(b)] += b
    return a


def window_batches(sw: SourceWindows, indices: range, batch_size: int, max_tokens: int | None,
                   rank: int = 0, world_size: int = 1):
    """(inputs, targets) batches over the given windows, this rank's share (windows k*w + r).

    The window count is cut to a multiple of world_size so every rank runs the same number of
    forward passes (FSDP's collectives need it); at most world_size-1 windows are left out.
    """
    if max_tokens is not None:
        indices = indices[:max(1, max_tokens // sw.seq_len)]
    indices = indices[:len(indices) - len(indices) % world_size]
    mine = indices[rank::world_size]
    for start in range(0, len(mine), batch_size):
        rows = np.stack([sw.window(t) for t in mine[start:start + batch_size]])
        batch = torch.from_numpy(rows)
        yield batch[:, :-1].contiguous(), batch[:, 1:].contiguous()
