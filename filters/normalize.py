"""CCNet's text normalisation before SentencePiece and KenLM: lower-case, accents stripped, digits -> 0,
unicode punctuation mapped to ASCII, non-printing characters removed.

Why: the language model should judge wording, not casing, numbers or typography; CCNet trains and
scores its Wikipedia 5-gram models on text normalised this way, so the same function must run on both
sides. Implemented as one ``str.translate`` table (built once) after ``lower()`` and NFD decomposition,
which keeps scoring fast.
"""

from __future__ import annotations

import functools
import sys
import unicodedata

# Unicode punctuation -> ASCII (besides the full-width block FF01-FF5E, mapped arithmetically).
PUNCTUATION = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2039": '"', "\u203a": '"', "\u300c": '"', "\u300d": '"', "\u300e": '"', "\u300f": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": " - ", "\u2015": " - ", "\u2212": "-",
    "\u2026": "...", "\u3002": ". ", "\u3001": ",", "\u00b7": ".", "\u2022": "-", "\u00a0": " ", "\u3000": " ",
    "\u2009": " ", "\u200a": " ", "\u2002": " ", "\u2003": " ", "\u202f": " ", "\t": " ",
}


@functools.cache
def _table() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for cp in range(sys.maxunicode + 1):
        cat = unicodedata.category(chr(cp))
        if cat == "Mn" or (cat in ("Cc", "Cf") and cp != 0x0A):
            table[cp] = None  # accents (after NFD) and non-printing characters
        elif cat == "Nd":
            table[cp] = "0"
    for cp in range(0xFF01, 0xFF5F):  # full-width ASCII variants (full-width digits stay "0")
        table.setdefault(cp, chr(cp - 0xFEE0).lower())
    table.update({ord(k): v for k, v in PUNCTUATION.items()})
    return table


def normalize(text: str) -> str:
    """The CCNet-style normal form of ``text`` (newlines kept; callers split lines)."""
    return unicodedata.normalize("NFD", text.lower()).translate(_table()).strip()
