"""MinHash signatures, vectorised with numpy.

Why not datasketch: its ``MinHash.update_batch`` hashes shingles one Python call at a time into a
fresh object per document. Here a whole batch of documents is one (shingles x permutations) matrix:
permutation k of the 32-bit shingle hash h is the multiply-add-shift hash
``((a_k * h + b_k) mod 2^64) >> 32`` with random 64-bit ``a_k`` (odd) and ``b_k`` — a strongly
universal family (Dietzfelbinger 1996) that needs three in-place numpy operations per element, where
``(a*h + b) mod (2^61-1)`` needs six; values are 32-bit like datasketch's. The per-document minimum is
one ``np.minimum.reduceat``. Documents with no words get the all-``EMPTY`` signature and are never
candidates.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from dedup.hashing import batch_shingle_hashes, shingle_hashes, words

EMPTY = np.uint32(0xFFFFFFFF)  # "no shingle" (a real minimum equals it with probability ~2^-32 per value)
CHUNK_SHINGLES = 1 << 14  # rows of the (shingles x permutations) matrix computed at once (~14 MB at 112 perms)
_SHIFT = np.uint64(32)


class MinHasher:
    def __init__(self, num_perm: int, ngram: int = 5, seed: int = 1):
        if num_perm < 1 or ngram < 1:
            raise ValueError(f"minhash: num_perm and ngram must be >= 1 (got {num_perm}, {ngram})")
        rng = np.random.default_rng(seed)
        self.a = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.b = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64)
        self.num_perm = num_perm
        self.ngram = ngram

    def shingles(self, text: str) -> np.ndarray:
        """32-bit hashes of the text's distinct word n-grams."""
        return np.unique(shingle_hashes(words(text), self.ngram) >> np.uint64(32))

    def _permute_min(self, h: np.ndarray, starts: np.ndarray) -> np.ndarray:
        # (permutations x shingles): the per-document minimum then runs along contiguous memory
        x = np.empty((self.num_perm, len(h)), dtype=np.uint64)
        with np.errstate(over="ignore"):
            np.multiply(self.a[:, None], h[None, :], out=x)  # mod 2^64 by wrap-around
            x += self.b[:, None]
        x >>= _SHIFT
        return np.minimum.reduceat(x, starts, axis=1).T.astype(np.uint32)

    def signatures_of_flat(self, flat: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """(documents x num_perm) uint32 signatures of concatenated 32-bit shingle hashes, ``counts``
        per document; computed CHUNK_SHINGLES rows at a time."""
        sig = np.full((len(counts), self.num_perm), EMPTY, dtype=np.uint32)
        offsets = np.concatenate(([0], np.cumsum(counts)))
        i, n = 0, len(counts)
        while i < n:
            if counts[i] > CHUNK_SHINGLES:  # one long document: in slices, running minimum
                for lo in range(offsets[i], offsets[i + 1], CHUNK_SHINGLES):
                    part = self._permute_min(flat[lo : min(lo + CHUNK_SHINGLES, offsets[i + 1])], np.zeros(1, dtype=np.int64))
                    sig[i] = np.minimum(sig[i], part[0])
                i += 1
                continue
            j = int(np.searchsorted(offsets, offsets[i] + CHUNK_SHINGLES, side="right")) - 1
            j = max(j, i + 1)
            if counts[j - 1] > CHUNK_SHINGLES and j - 1 > i:
                j -= 1
            docs = np.arange(i, j)
            docs = docs[counts[i:j] > 0]
            if len(docs):
                starts = offsets[docs] - offsets[i]
                sig[docs] = self._permute_min(flat[offsets[i] : offsets[j]], starts)
            i = j
        return sig

    def signatures_of_shingles(self, shingle_sets: list[np.ndarray]) -> np.ndarray:
        counts = np.fromiter((len(s) for s in shingle_sets), dtype=np.int64, count=len(shingle_sets))
        flat = np.concatenate(shingle_sets) if shingle_sets else np.zeros(0, dtype=np.uint64)
        return self.signatures_of_flat(flat, counts)

    def signatures(self, texts: Iterable[str]) -> np.ndarray:
        """(documents x num_perm) uint32 signatures of the texts' word n-gram sets."""
        flat, counts = batch_shingle_hashes([words(t) for t in texts], self.ngram)
        return self.signatures_of_flat(flat >> np.uint64(32), counts)


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(documents x bands) uint64: one hash per band of ``rows`` signature values (a xorshift-multiply
    chain over the band's values, seeded by the band number)."""
    n = sig.shape[0]
    out = np.empty((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for b in range(bands):
            acc = np.full(n, np.uint64(b + 1) * np.uint64(0xD6E8FEB86659FD93), dtype=np.uint64)
            for r in range(rows):
                acc = (acc ^ sig[:, b * rows + r].astype(np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
                acc ^= acc >> np.uint64(32)
            out[:, b] = acc
    return out


def lsh_threshold(bands: int, rows: int) -> float:
    """The Jaccard at which P(candidate) rises fastest: (1/b)^(1/r)."""
    return (1.0 / bands) ** (1.0 / rows)


def p_candidate(j: float, bands: int, rows: int) -> float:
    """P(two documents with Jaccard j share at least one band) = 1 - (1 - j^r)^b."""
    return 1.0 - (1.0 - j**rows) ** bands
