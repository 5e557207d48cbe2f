"""Normal forms and hashes shared by the dedup stages.

Why: two copies of a paragraph or page rarely match byte for byte (case, digits in dates and
counters, typographic quotes, spacing differ); every dedup stage therefore compares a normal form,
and the same normal form must be used on every shard. Hashes are 64-bit: enough for line and shingle
identity (a collision between two *different* lines is ~n^2/2^65; for 10^9 lines ~3%, i.e. at most a
handful of wrongly removed lines in a whole crawl), and they sort and partition as numpy ``uint64``.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import sys
import unicodedata

import numpy as np
import xxhash

from filters.normalize import normalize

HASHES = ("sha1_64", "xxh64")
_WORD = re.compile(r"\w+")
_DIGIT = re.compile(r"\d")  # every Unicode decimal digit (category Nd)
_FULLWIDTH = re.compile("[\uff01-\uff5e]")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")  # one range: a fast scan
_SPACE = re.compile(r"\s+")


# The ASCII restriction of filters.normalize's table: digits -> 0, tab -> space, backtick -> quote,
# control characters other than newline removed. ``str.translate`` with this small table is ~50x
# faster than the full-Unicode table, and gives the same result on ASCII text.
_ASCII = {**{c: None for c in range(32) if c != 10}, 127: None, 9: " ", ord("`"): "'",
          **{ord(d): "0" for d in "123456789"}}


def fast_normalize(text: str) -> str:
    """``filters.normalize.normalize`` (CCNet's normal form), with a fast path for ASCII text."""
    if text.isascii():
        return text.lower().translate(_ASCII).strip()
    return normalize(text)


def normalize_line(line: str) -> str:
    """CCNet's dedup normal form: lower-case, accents stripped, digits -> 0, unicode punctuation
    mapped to ASCII, whitespace collapsed to single spaces."""
    return _SPACE.sub(" ", fast_normalize(line)).strip()


def line_hasher(kind: str):
    """``str -> int`` (uint64): the first 8 bytes of SHA-1 (CCNet's choice) or xxh64."""
    if kind == "sha1_64":
        sha1 = hashlib.sha1
        return lambda s: int.from_bytes(sha1(s.encode("utf-8", "surrogatepass")).digest()[:8], "big")
    if kind == "xxh64":
        h = xxhash.xxh64_intdigest
        return lambda s: h(s.encode("utf-8", "surrogatepass"))
    raise ValueError(f"hash: expected one of {', '.join(HASHES)}, got {kind!r}")


# ASCII text straight to words: upper -> lower, digits -> 0, control characters deleted (as in
# normalize), every other non-word byte (not [a-z0-9_]) -> space; then bytes.split().
_WORD_BYTES = bytes(
    c + 32 if 65 <= c <= 90 else 48 if 48 <= c <= 57 else c if (97 <= c <= 122 or c == 95) else 32 for c in range(256)
)
_CONTROL = bytes(c for c in list(range(32)) + [127] if c not in (9, 10))


def _class(codepoints: list[int]) -> re.Pattern:
    """One regex character class of ``codepoints``, written as ranges."""
    runs = [list(g) for _, g in itertools.groupby(codepoints, key=lambda cp, c=itertools.count(): cp - next(c))]
    return re.compile("[" + "".join(f"{re.escape(chr(r[0]))}-{re.escape(chr(r[-1]))}" for r in runs) + "]")


@functools.cache
def _unicode_word_steps() -> tuple[re.Pattern, re.Pattern, dict[int, str]]:
    """Characters normalize() deletes (combining marks after NFD, controls, format characters), as a
    BMP class and an astral class (``re`` matches a BMP class by bitmap but scans astral ranges one by
    one, ~40x slower), and the full-width letters it maps to ASCII. Its punctuation map is not needed
    for words: every character it maps is a non-word character and maps to non-word characters."""
    deleted = [cp for cp in range(sys.maxunicode + 1)
               if (cat := unicodedata.category(chr(cp))) == "Mn" or (cat in ("Cc", "Cf") and cp not in (9, 10))]
    fullwidth = {cp: chr(cp - 0xFEE0).lower() for cp in range(0xFF01, 0xFF5F) if not chr(cp).isdigit()}
    return _class([cp for cp in deleted if cp <= 0xFFFF]), _class([cp for cp in deleted if cp > 0xFFFF]), fullwidth


def words(text: str) -> list[bytes]:
    """Words (UTF-8) of the normal form of ``text``, punctuation dropped: what shingles are made of.
    The same words as ``\\w+`` over ``filters.normalize.normalize(text)``, by a shorter route: ASCII
    text as bytes (one translate, one split); other text in four C-level passes."""
    if text.isascii():
        return text.encode("ascii").translate(_WORD_BYTES, _CONTROL).split()
    bmp, astral, fullwidth = _unicode_word_steps()
    text = bmp.sub("", unicodedata.normalize("NFD", text.lower()))
    if _ASTRAL.search(text):
        text = astral.sub("", text)
    text = _DIGIT.sub("0", text)
    if _FULLWIDTH.search(text):
        text = text.translate(fullwidth)
    return " ".join(_WORD.findall(text)).encode("utf-8", "surrogatepass").split()  # one encode, not one a word


_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd constant (2^64 / golden ratio) of the polynomial mix


class WordHashes:
    """xxh64 of words, memoised: web text reuses a small vocabulary, and a dict lookup costs a fraction
    of encoding and hashing the word again. Bounded: the memo is cleared past ``max_words`` entries."""

    def __init__(self, max_words: int = 1 << 20):
        self.memo: dict[bytes, int] = {}
        self.max_words = max_words

    def __call__(self, tokens: list[bytes]) -> np.ndarray:
        memo = self.memo
        if len(memo) > self.max_words:
            memo.clear()
        h = xxhash.xxh64_intdigest
        for w in set(tokens).difference(memo):
            memo[w] = h(w)
        get = memo.__getitem__
        return np.fromiter(map(get, tokens), dtype=np.uint64, count=len(tokens))


_WORD_HASHES = WordHashes()


def _ngram_hash(wh: np.ndarray, n: int) -> np.ndarray:
    """Hash of the n words starting at each position (the last n-1 positions are not n-grams)."""
    m = len(wh) - n + 1
    with np.errstate(over="ignore"):
        acc = wh[:m].copy()
        for k in range(1, n):
            acc *= _MIX
            acc += wh[k : k + m]
        acc ^= acc >> np.uint64(31)
        acc *= np.uint64(0xBF58476D1CE4E5B9)
        acc ^= acc >> np.uint64(29)
    return acc


def shingle_hashes(tokens: list[bytes], ngram: int, word_hashes: WordHashes = _WORD_HASHES) -> np.ndarray:
    """64-bit hashes of the word ``ngram``-grams of ``tokens`` (uint64, one per position).

    Each word is hashed with xxh64 (memoised); an n-gram's hash is a polynomial in its word hashes
    (mod 2^64, vectorised), finished with a xorshift-multiply mixer so that nearby n-grams do not
    share high bits. A text shorter than ``ngram`` words is one shingle; an empty text has none.
    """
    if not tokens:
        return np.zeros(0, dtype=np.uint64)
    return _ngram_hash(word_hashes(tokens), min(ngram, len(tokens)))


def batch_shingle_hashes(docs: list[list[bytes]], ngram: int, word_hashes: WordHashes = _WORD_HASHES) -> tuple[np.ndarray, np.ndarray]:
    """``shingle_hashes`` of many documents at once: (all shingle hashes concatenated, count per
    document). One pass of numpy over the batch instead of a dozen small calls per document."""
    lens = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
    counts = np.where(lens >= ngram, lens - ngram + 1, np.minimum(lens, 1))
    if lens.sum() == 0:
        return np.zeros(0, dtype=np.uint64), counts
    flat = word_hashes([w for d in docs for w in d])
    offsets = np.concatenate(([0], np.cumsum(lens)[:-1]))
    if len(flat) >= ngram:
        acc = _ngram_hash(flat, ngram)
        long_docs = lens >= ngram
        # positions j in [offset_i, offset_i + count_i) of every long document i
        c = counts[long_docs]
        pos = np.repeat(offsets[long_docs] - np.concatenate(([0], np.cumsum(c)[:-1])), c) + np.arange(c.sum())
        out = np.empty(counts.sum(), dtype=np.uint64)
        out_offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
        out_pos = np.repeat(out_offsets[long_docs] - np.concatenate(([0], np.cumsum(c)[:-1])), c) + np.arange(c.sum())
        out[out_pos] = acc[pos]
    else:
        out = np.empty(counts.sum(), dtype=np.uint64)
        out_offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
    for i in np.flatnonzero((lens > 0) & (lens < ngram)):  # short documents: one shingle of all words
        out[out_offsets[i]] = _ngram_hash(flat[offsets[i] : offsets[i] + lens[i]], int(lens[i]))[0]
    return out, counts
