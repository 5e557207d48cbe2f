"""Feeding expat in linear time and bounded memory (Wikipedia dumps, StackExchange ``Posts.xml``).

Why: expat (2.5, as shipped) keeps an unfinished token (a comment, a start tag, a CDATA section)
in its buffer and scans it again from its start on every ``Parse`` call. Fed in small pieces, a
32 MB comment is scanned thousands of times (quadratic: 128 MB took 6.4 s at twice its size in
memory). :class:`ExpatFeeder` holds new data back while expat is stuck in a token until the new
data is at least as large as what expat holds, so every byte is scanned a bounded number of times
(at most ~3), and refuses a token larger than ``max_token`` bytes (``TooLarge``): nothing in a dump
needs one, and it bounds the memory the parser can hold.

How much expat holds is ``bytes fed - parser.CurrentByteIndex``: after ``Parse`` returns, the index
is where parsing stopped, i.e. the start of the unfinished token.
"""

from __future__ import annotations

from xml.parsers import expat

from ingest.safeio import CorruptInput, TooLarge


def refusing_parser(what: str) -> expat.XMLParserType:
    """A UTF-8 expat parser (the document's own encoding declaration is overridden: callers feed
    UTF-8) that refuses any DTD, so no entity can be declared and expanded (entity bombs, XXE)."""
    parser = expat.ParserCreate("utf-8")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def refuse(*_args):
        raise CorruptInput("xml", f"a DTD / entity declaration is not allowed in {what}")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    return parser


class ExpatFeeder:
    """Feeds ``parser`` so that an unfinished token is never re-scanned more than a few times per
    byte, and raises ``TooLarge`` once expat holds more than ``max_token`` bytes of one token."""

    def __init__(self, parser: expat.XMLParserType, max_token: int, what: str):
        self.parser = parser
        self.max_token = max_token
        self.what = what
        self._parts: list[bytes] = []
        self._size = 0  # bytes held back
        self._fed = 0  # bytes given to the parser

    def held_by_parser(self) -> int:
        """Bytes of the unfinished token expat keeps (0 between tokens)."""
        return max(0, self._fed - max(self.parser.CurrentByteIndex, 0)) if self._fed else 0

    def feed(self, data: bytes) -> None:
        """Give ``data`` to the parser now, or hold it back while the parser is inside a token that
        is larger than what is held back (feeding it now would scan the token again for little)."""
        if not data:
            return
        self._parts.append(data)
        self._size += len(data)
        held = self.held_by_parser()
        if self._size >= held or held + self._size > self.max_token:
            self.flush()

    def flush(self, final: bool = False) -> None:
        """Parse everything held back (``final``: and end the document)."""
        data = b"".join(self._parts)
        self._parts, self._size = [], 0
        if data or final:
            self.parser.Parse(data, final)
            self._fed += len(data)
        held = self.held_by_parser()
        if held > self.max_token:
            raise TooLarge(f"{self.what}: one XML token (comment, tag, CDATA...) longer than {self.max_token} bytes",
                           {"token_bytes_read": held})
