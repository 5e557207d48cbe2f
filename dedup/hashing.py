"""Normal forms and hashes shared by the dedup stages.

Why: two copies of a paragraph or page rarely match byte for byte (case, digits in dates and
counters, typographic quotes, spacing differ); every dedup stage therefore compares a normal form,
and the same normal form must be used on every shard. Hashes are 64-bit: enough for line and shingle
identity (a collision between two *different* lines is ~n^2/2^65; for 10^9 lines ~3%, i.e. at most a
handful of wrongly removed lines in a whole crawl), and they sort and partition as numpy ``uint64``.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import xxhash

from filters.normalize import normalize

HASHES = ("sha1_64", "xxh64")
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")


def normalize_line(line: str) -> str:
    """CCNet's dedup normal form: lower-case, accents stripped, digits -> 0, unicode punctuation
    mapped to ASCII, whitespace collapsed to single spaces."""
    return _SPACE.sub(" ", normalize(line)).strip()


def line_hasher(kind: str):
    """``str -> int`` (uint64): the first 8 bytes of SHA-1 (CCNet's choice) or xxh64."""
    if kind == "sha1_64":
        sha1 = hashlib.sha1
        return lambda s: int.from_bytes(sha1(s.encode("utf-8", "surrogatepass")).digest()[:8], "big")
    if kind == "xxh64":
        h = xxhash.xxh64_intdigest
        return lambda s: h(s.encode("utf-8", "surrogatepass"))
    raise ValueError(f"hash: expected one of {', '.join(HASHES)}, got {kind!r}")


def words(text: str) -> list[str]:
    """Words of the normal form of ``text`` (punctuation dropped): what shingles are made of."""
    return _WORD.findall(normalize(text))


_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd constant (2^64 / golden ratio) of the polynomial mix


def shingle_hashes(tokens: list[str], ngram: int) -> np.ndarray:
    """64-bit hashes of the word ``ngram``-grams of ``tokens`` (uint64, one per position).

    Each word is hashed once with xxh64; an n-gram's hash is a polynomial in its word hashes
    (mod 2^64, vectorised), finished with a xorshift-multiply mixer so that nearby n-grams do not
    share high bits. A text shorter than ``ngram`` words is one shingle; an empty text has none.
    """
    if not tokens:
        return np.zeros(0, dtype=np.uint64)
    h = xxhash.xxh64_intdigest
    wh = np.fromiter((h(w) for w in tokens), dtype=np.uint64, count=len(tokens))
    n = min(ngram, len(wh))
    m = len(wh) - n + 1
    with np.errstate(over="ignore"):
        acc = wh[:m].copy()
        for k in range(1, n):
            acc = acc * _MIX + wh[k : k + m]
        acc ^= acc >> np.uint64(31)
        acc *= np.uint64(0xBF58476D1CE4E5B9)
        acc ^= acc >> np.uint64(29)
    return acc
