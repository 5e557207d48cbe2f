"""CCNet's text normalisation before SentencePiece and KenLM: lower-case, accents stripped, digits -> 0,
unicode punctuation mapped to ASCII, non-printing characters removed.

Why: the language model should judge wording, not casing, numbers or typography; CCNet trains and
scores its Wikipedia 5-gram models on text normalised this way, so the same function must run on both
sides. Speed matters (it runs on every CommonCrawl page before KenLM): each step is one C-level regex
pass, the punctuation map is consulted only for the characters that match, and pure-ASCII text skips
the Unicode steps.
"""

from __future__ import annotations

import functools
import re
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
DIGIT = re.compile(r"\d")  # str patterns: \d is every Unicode decimal digit (category Nd)


def _ascii_table() -> tuple[bytes, bytes]:
    """One ``bytes.translate`` for the ASCII bytes: lower-case, digits -> 0, tab -> space,
    backtick -> quote, control characters other than newline deleted."""
    table = bytearray(range(256))
    for c in range(ord("A"), ord("Z") + 1):
        table[c] = c + 32
    for c in range(ord("0"), ord("9") + 1):
        table[c] = ord("0")
    table[ord("\t")], table[ord("`")] = ord(" "), ord("'")
    delete = bytes(c for c in [*range(0x00, 0x20), 0x7F] if c not in (0x09, 0x0A))
    return bytes(table), delete


ASCII_TABLE, ASCII_DELETE = _ascii_table()


def _char_class(codepoints: list[int]) -> str:
    """A regex character class of ``codepoints`` written as ranges."""
    ranges, start, prev = [], None, None
    for cp in sorted(codepoints):
        if start is None:
            start = prev = cp
        elif cp == prev + 1:
            prev = cp
        else:
            ranges.append((start, prev))
            start = prev = cp
    if start is not None:
        ranges.append((start, prev))
    return "[" + "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges) + "]"


@functools.cache
def _patterns() -> tuple[re.Pattern, re.Pattern, re.Pattern, dict[str, str]]:
    """Characters to delete (accents after NFD, non-printing) in the BMP and beyond it, characters to
    map, and the map. Two delete classes: ``re`` matches a BMP-only class with a bitmap, but scans a
    class with astral ranges range by range, which is ~40x slower; astral text is rare."""
    delete = []
    for cp in range(sys.maxunicode + 1):
        cat = unicodedata.category(chr(cp))
        if cat == "Mn" or (cat in ("Cc", "Cf") and cp not in (0x09, 0x0A)):
            delete.append(cp)
    mapping = {chr(cp): chr(cp - 0xFEE0).lower() for cp in range(0xFF01, 0xFF5F) if not chr(cp).isdigit()}
    mapping.update(PUNCTUATION)
    bmp = re.compile(_char_class([cp for cp in delete if cp <= 0xFFFF]))
    astral = re.compile(_char_class([cp for cp in delete if cp > 0xFFFF]))
    return bmp, astral, re.compile(_char_class([ord(c) for c in mapping])), mapping


NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def _normalize_unicode(text: str) -> str:
    """Lower-case, accents, punctuation, digits and non-printing characters beyond ASCII."""
    delete_bmp, delete_astral, punct, mapping = _patterns()
    text = delete_bmp.sub("", unicodedata.normalize("NFD", text.lower()))
    if ASTRAL.search(text):
        text = delete_astral.sub("", text)
    return DIGIT.sub("0", punct.sub(lambda m: mapping[m.group()], text))


def normalize(text: str) -> str:
    """The CCNet-style normal form of ``text`` (newlines kept; callers split lines).

    The ASCII part is handled on the UTF-8 bytes by one ``bytes.translate`` (bytes >= 0x80 pass
    untouched). Text with a few non-ASCII characters (English with curly quotes) sends only those
    runs through the Unicode steps; mostly non-ASCII text (German, Russian) goes through them whole."""
    data = text.encode("utf-8", "surrogatepass")
    text = data.translate(ASCII_TABLE, ASCII_DELETE).decode("utf-8", "surrogatepass")
    if len(data) - len(text) > len(text) // 50:
        text = _normalize_unicode(text)
    elif not text.isascii():
        text = NON_ASCII_RUN.sub(lambda m: _normalize_unicode(m.group()), text)
    return text.strip()
