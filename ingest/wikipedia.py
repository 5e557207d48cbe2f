"""Wikipedia extraction: MediaWiki XML dumps (`<lang>wiki-<date>-pages-articles*.xml[.bz2]`).

Why: LLaMA used 20 Latin/Cyrillic-script Wikipedias with hyperlinks, comments and formatting
boilerplate removed. Dumps are streamed page by page with expat (constant memory: a page's
wikitext is capped, entity declarations are refused so entity bombs cannot expand, and expat is
fed so that a huge comment or tag costs linear time and is capped: ``ingest.xmlfeed``), and each
article's wikitext is rendered to plain text by walking mwparserfromhell's parse tree — a
maintained, complete wikitext parser (the one WikiExtractor's successors build on), so links keep
their anchor text while templates, comments, <ref>s, tables, files, images and categories go.
Tables, galleries and file links are cut before parsing (`strip_layout`), as the parser leaves some
of them as literal text. Each kept article's external links go to `on_cited_urls` when the extract
stage sets it (`ingest/cited_urls.py`: the positives of the Wikipedia-reference classifier).

Every <page> is one record: kept articles, or excluded with `namespace:<n>`, `redirect`,
`disambiguation`, `too_large`, `empty`; a file in a language the manifest does not list is one
excluded record `language:<code>`; a damaged dump ends in one `corrupt:xml` / `truncated:bz2` …
record for its unread remainder.
"""

from __future__ import annotations

import contextlib
import pathlib
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator
from urllib.parse import quote
from xml.parsers import expat

import mwparserfromhell
from datatrove.data import Document
from mwparserfromhell.nodes import ExternalLink, Heading, HTMLEntity, Node, Tag, Text, Wikilink

from ingest import safeio, text_decoding
from ingest.cited_urls import cited_urls
from ingest.records import FileExtractor, construct, excluded, kept, unreadable
from ingest.xmlfeed import ExpatFeeder

SOURCE = "wikipedia"
SUFFIXES = (".xml", ".xml.bz2", ".xml.gz", ".xml.xz", ".xml.zst")
LLAMA_LANGUAGES = ("bg", "ca", "cs", "da", "de", "en", "es", "fr", "hr", "hu", "it", "nl", "pl", "pt",
                   "ro", "ru", "sl", "sr", "sv", "uk")  # fmt: skip
_FILE_LANG = re.compile(r"^([a-z][a-z0-9_-]*?)wiki-")

# Disambiguation / set-index templates (lower-case, spaces): English names and aliases, then the
# names used by the other LLaMA languages' Wikipedias.
DISAMBIGUATION_TEMPLATES = frozenset(
    name.strip()
    for name in """disambiguation, disambig, dab, disamb, disambiguation page, set index, set index article,
    sia, hndis, geodis, numberdis, letter-number combination disambiguation, mathdab, schooldis,
    shipindex, mountainindex, roadindex, surname, given name, hospital disambiguation,
    disambiguation cleanup, пояснение, многозначност, неоднозначность, многозначность,
    неоднозначність, вишезначна одредница, višeznačna odrednica, begriffsklärung, homonymie,
    desambiguación, desambiguacion, disambigua, doorverwijspagina, dp, ujednoznacznienie,
    strona ujednoznaczniająca, desambiguação, desambiguacao, förgreningssida, förgrening,
    rozcestník, flertydig, egyért, razdvojba, dezambiguizare, razločitev, desambiguació""".split(",")
)
# Tags whose content is not prose: dropped whole.
_DROP_TAGS = frozenset(
    "ref references table gallery math chem ce score timeline graph imagemap templatedata "
    "mapframe maplink hiero syntaxhighlight source code pre inputbox categorytree noinclude "
    "includeonly hr".split()
)
_FILE_NAMESPACES = {"file", "image", "media", "category"}
_INTERWIKI = re.compile(r"^[a-z]{2,3}(-[a-z]+)*$|^simple$")
_COMMENT_OR_REF = re.compile(r"<!--|<ref\b[^<>]{0,1000}>", re.I)
_REF_CLOSE = re.compile(r"</ref\s*>", re.I)
_LEFTOVER_QUOTES = re.compile(r"'{2,}")  # bold/italic quotes the parser left unmatched


def strip_comments_and_refs(wikitext: str) -> str:
    """Remove <!-- comments --> and <ref>…</ref> / <ref …/> before parsing: they are never prose,
    make up much of the markup (parsing runs ~30% faster without them), and an unbalanced one can
    derail the parser's context. One linear scan, so hostile text full of unclosed tags cannot
    make it quadratic; an unclosed comment runs to the end (as MediaWiki renders it)."""
    parts: list[str] = []
    pos = 0
    closes_left = True  # once no </ref> follows some position, none follows any later one
    while match := _COMMENT_OR_REF.search(wikitext, pos):
        parts.append(wikitext[pos : match.start()])
        token = match.group(0)
        if token == "<!--":
            end = wikitext.find("-->", match.end())
            pos = len(wikitext) if end < 0 else end + 3
        elif token.endswith("/>"):
            pos = match.end()
        else:
            close = _REF_CLOSE.search(wikitext, match.end()) if closes_left else None
            if close is None:
                closes_left = False
                parts.append(token)  # unpaired: left for the parser
                pos = match.end()
            else:
                pos = close.end()
    parts.append(wikitext[pos:])
    return "".join(parts)


# Layout blocks that are never prose, removed before parsing (`strip_layout`): mwparserfromhell gives up
# on some of them (a table with templates in its header row, a file caption with unbalanced bold quotes)
# and leaves them as literal text, which then leaks `| bgcolor=…` rows and `[[File:…|thumb|…]]`.
_TABLE_EDGE = re.compile(r"^[ \t:]*(\{\||\|\})", re.M)  # `{|` opens a table, `|}` closes one, at a line start
_LINK_BRACKET = re.compile(r"\[\[|\]\]")
_BLOCK_OPEN = re.compile(r"<(gallery|imagemap)\b[^<>]{0,1000}>", re.I)
_BLOCK_CLOSE = {name: re.compile(rf"</{name}\s*>", re.I) for name in ("gallery", "imagemap")}
_SWITCH = re.compile(r"(?<!\w)__([^\W_]+(?:_[^\W_]+)*)__(?!\w)")  # __NOTOC__; upper case only (not __init__)


def strip_tables(wikitext: str) -> str:
    """Remove every wikitable (`{|` … `|}`, nested ones counted), keeping what follows its closing
    `|}` on that line. One scan; an unclosed table runs to the end, as MediaWiki renders it."""
    parts: list[str] = []
    pos = depth = 0
    for match in _TABLE_EDGE.finditer(wikitext):
        if match.group(1) == "{|":
            if depth == 0:
                parts.append(wikitext[pos : match.start()])
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                pos = match.end()
    if depth == 0:
        parts.append(wikitext[pos:])
    return "".join(parts)


def strip_file_links(wikitext: str, hidden_prefixes: set[str] | frozenset[str]) -> str:
    """Remove `[[File:…]]`, `[[Image:…]]`, `[[Category:…]]` (any prefix in ``hidden_prefixes``, lower-case),
    captions with nested `[[links]]` included; `[[:File:…]]` is a visible link and stays. Brackets are
    paired in one scan with a stack, so text full of unclosed `[[` stays linear; an unclosed link is text."""
    opened: list[int] = []
    spans: list[tuple[int, int]] = []
    for match in _LINK_BRACKET.finditer(wikitext):
        if match.group(0) == "[[":
            opened.append(match.start())
        elif opened:
            start = opened.pop()
            head = wikitext[start + 2 : start + 66].lstrip()
            if ":" in head and not head.startswith(":"):
                prefix = head.split(":", 1)[0].replace("_", " ").strip().lower()
                if prefix in hidden_prefixes:
                    spans.append((start, match.end()))
    if not spans:
        return wikitext
    parts: list[str] = []
    pos = 0
    for start, end in sorted(spans):
        if start >= pos:  # a span inside one already removed is skipped
            parts.append(wikitext[pos:start])
            pos = end
    parts.append(wikitext[pos:])
    return "".join(parts)


def strip_blocks(wikitext: str) -> str:
    """Remove `<gallery>…</gallery>` and `<imagemap>…</imagemap>` (one scan; an unclosed one is left
    to the parser)."""
    parts: list[str] = []
    pos = 0
    unclosed: set[str] = set()  # no close tag follows some position, so none follows any later one
    while match := _BLOCK_OPEN.search(wikitext, pos):
        name, token = match.group(1).lower(), match.group(0)
        parts.append(wikitext[pos : match.start()])
        pos = match.end()
        if token.endswith("/>"):
            continue
        close = None if name in unclosed else _BLOCK_CLOSE[name].search(wikitext, match.end())
        if close is None:
            unclosed.add(name)
            parts.append(token)
        else:
            pos = close.end()
    parts.append(wikitext[pos:])
    return "".join(parts)


def strip_layout(wikitext: str, hidden_prefixes: set[str] | frozenset[str]) -> str:
    """Galleries, image maps, tables, file/image/category links and behaviour switches (`__TOC__`,
    `__NOTOC__`, localized ones alike) removed before parsing (see above)."""
    text = strip_file_links(strip_tables(strip_blocks(wikitext)), hidden_prefixes)
    return _SWITCH.sub(lambda m: "" if m.group(1).isupper() else m.group(0), text) if "__" in text else text


def _language_of_dbname(dbname: str) -> str | None:
    match = _FILE_LANG.match(f"{dbname}-")
    return match.group(1).replace("_", "-") if match else None


def _normalise_template_name(name: str) -> str:
    return name.strip().replace("_", " ").lower().removeprefix("template:").strip()


def is_disambiguation(wikicode) -> bool:
    for template in wikicode.filter_templates(recursive=False):
        name = _normalise_template_name(str(template.name))
        if name in DISAMBIGUATION_TEMPLATES or name.startswith("disambig"):
            return True
    return False


class WikitextRenderer:
    """Wikitext parse tree -> plain text, per the module docstring. `hidden_prefixes` are the
    dump's localized File/Image/Media/Category namespace names (lower-case)."""

    def __init__(self, hidden_prefixes: set[str]):
        self.hidden_prefixes = hidden_prefixes

    def render(self, wikicode) -> str:
        text = "".join(self._node(n) for n in wikicode.nodes)
        lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.split("\n")]
        text = _LEFTOVER_QUOTES.sub("", "\n".join(lines))
        return re.sub(r"\n{3,}", "\n\n", text).strip()

    def _nodes(self, wikicode) -> str:
        return "" if wikicode is None else "".join(self._node(n) for n in wikicode.nodes)

    def _node(self, node: Node) -> str:
        if isinstance(node, Text):
            return str(node.value)
        if isinstance(node, Wikilink):
            return self._wikilink(node)
        if isinstance(node, ExternalLink):
            return self._nodes(node.title) if node.title is not None else ""
        if isinstance(node, Heading):
            return f"\n\n{self._nodes(node.title).strip()}"  # its line break follows as Text
        if isinstance(node, HTMLEntity):
            return node.normalize()
        if isinstance(node, Tag):
            return self._tag(node)
        return ""  # templates, comments, {{{arguments}}} and any other node: markup, not prose

    def _wikilink(self, link: Wikilink) -> str:
        title = str(link.title).strip()
        visible = title.startswith(":")  # [[:Category:X]] is an ordinary, visible link
        prefix = title.lstrip(":").split(":", 1)[0].strip().lower() if ":" in title else ""
        if not visible and prefix in self.hidden_prefixes:
            return ""
        if link.text is None:
            if not visible and prefix and _INTERWIKI.match(prefix):
                return ""  # interlanguage link: [[de:Titel]]
            return title.lstrip(":")
        return self._nodes(link.text)

    def _tag(self, tag: Tag) -> str:
        name = str(tag.tag).strip().lower()
        if name in _DROP_TAGS:
            return ""
        if name == "br":
            return "\n"
        if name in ("li", "dt", "dd"):  # wiki list markers; the item text follows as a Text node
            return "" if tag.wiki_markup else f"\n{self._nodes(tag.contents)}"
        if name in ("p", "div", "blockquote", "center", "poem"):
            return f"\n{self._nodes(tag.contents)}\n"
        return self._nodes(tag.contents)


@dataclass
class _Page:
    title: str = ""
    ns: str = ""
    page_id: str = ""
    revision_id: str = ""
    timestamp: str = ""
    redirect: bool = False
    text_parts: list[str] = field(default_factory=list)
    text_size: int = 0
    too_large: bool = False


class DumpReader:
    """Streams <page>s out of a MediaWiki XML export with expat, holding at most one page
    (wikitext capped at `max_page_chars`) plus one read chunk in memory."""

    _CHUNK = 1 << 20
    _KEPT_ELEMENTS = frozenset(("title", "ns", "id", "timestamp", "dbname", "namespace"))
    _MAX_FIELD_CHARS = 1 << 16  # hostile dumps cannot grow a title/id field without bound
    _FIELDS = {("page", "title"): "title", ("page", "ns"): "ns", ("page", "id"): "page_id",
               ("revision", "id"): "revision_id", ("revision", "timestamp"): "timestamp"}  # fmt: skip

    def __init__(self, max_page_chars: int):
        self.max_page_chars = max_page_chars
        self.dbname = ""
        self.namespaces: dict[str, str] = {}

    def pages(self, stream) -> Iterator[_Page]:
        parser = expat.ParserCreate()
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        # linear in an XML token of any size (a 128 MB comment), which is refused past the page cap
        feeder = ExpatFeeder(parser, self.max_page_chars + self._CHUNK, "dump")
        done: list[_Page] = []
        stack: list[str] = []
        state = {"page": None, "buf": [], "buf_size": 0, "ns_key": None}

        def refuse_entities(*_args):
            raise safeio.CorruptInput("xml", "entity declarations are not allowed in a dump")

        def start(name, attrs):
            name = name.rsplit("}", 1)[-1]
            stack.append(name)
            state["buf"], state["buf_size"] = [], 0
            if name == "page":
                state["page"] = _Page()
            elif name == "redirect" and state["page"] is not None:
                state["page"].redirect = True
            elif name == "namespace":
                state["ns_key"] = attrs.get("key")

        def end(name):
            name = stack.pop() if stack else name
            parent = stack[-1] if stack else ""
            page = state["page"]
            value = "".join(state["buf"])
            state["buf"] = []
            if name == "page" and page is not None:
                done.append(page)
                state["page"] = None
            elif page is not None and (parent, name) in self._FIELDS:
                attr = self._FIELDS[(parent, name)]
                if not getattr(page, attr):
                    setattr(page, attr, value.strip())
            elif name == "dbname":
                self.dbname = value.strip()
            elif name == "namespace" and state["ns_key"] is not None:
                self.namespaces[state["ns_key"]] = value.strip()

        def chars(data):
            page = state["page"]
            if page is not None and stack and stack[-1] == "text" and len(stack) >= 2 and stack[-2] == "revision":
                if page.too_large:
                    return
                page.text_size += len(data)
                if page.text_size > self.max_page_chars:
                    page.too_large = True
                    page.text_parts = []
                else:
                    page.text_parts.append(data)
            elif stack and stack[-1] in self._KEPT_ELEMENTS and state["buf_size"] < self._MAX_FIELD_CHARS:
                state["buf"].append(data)
                state["buf_size"] += len(data)

        parser.StartElementHandler = start
        parser.EndElementHandler = end
        parser.CharacterDataHandler = chars
        parser.EntityDeclHandler = refuse_entities
        parser.buffer_text = True
        while True:
            try:
                chunk = stream.read1(self._CHUNK)  # read1: a late error must not discard earlier bytes
            except safeio.SafeIOError:
                with contextlib.suppress(expat.ExpatError, safeio.SafeIOError):
                    feeder.flush()  # the pages before the damage still count
                yield from done
                raise
            try:
                if chunk:
                    feeder.feed(chunk)
                else:
                    feeder.flush(final=True)
            except expat.ExpatError as exc:
                yield from done
                raise safeio.CorruptInput("xml", str(exc)) from None
            except safeio.SafeIOError:
                yield from done
                raise
            yield from done
            done.clear()
            if not chunk:
                return


class WikipediaExtractor(FileExtractor):
    """Extractor (see ingest/extract.py contract) for MediaWiki XML dumps."""

    suffixes = SUFFIXES

    def __init__(
        self,
        languages: list[str] | tuple[str, ...] = LLAMA_LANGUAGES,
        max_record_bytes: int = safeio.DEFAULT_MAX_RECORD,
        max_expanded_bytes: int = safeio.DEFAULT_MAX_EXPANDED,
        cited_urls: bool = True,
    ):
        self.languages = {str(lang) for lang in languages}
        # the extract stage sets `on_cited_urls`: it gets each kept article's normalised external links
        self.collect_cited_urls = bool(cited_urls)
        self.on_cited_urls: Callable[[list[str]], None] | None = None
        super().__init__(max_record_bytes, max_expanded_bytes)

    def __call__(self, path: pathlib.Path) -> Iterator[Document]:
        path = pathlib.Path(path)
        match = _FILE_LANG.match(path.name)
        language = match.group(1).replace("_", "-") if match else None
        if language is not None and language not in self.languages:
            yield excluded(path.name, f"language:{language}", file=path.name)
            return
        reader = DumpReader(self.max_record_bytes)
        seen = 0
        try:
            with safeio.open_path(path, self.max_expanded_bytes) as stream:
                renderer = None
                for page in reader.pages(stream):
                    if renderer is None:  # siteinfo precedes the first page
                        language = language or _language_of_dbname(reader.dbname)
                        if language is not None and language not in self.languages:
                            yield excluded(path.name, f"language:{language}", file=path.name)
                            return
                        renderer = WikitextRenderer(self._hidden_prefixes(reader.namespaces))
                    seen += 1
                    doc = self._page_to_document(page, language or "unknown", reader.dbname, renderer)
                    if self.on_cited_urls is not None and not doc.metadata.get("reason"):
                        self.on_cited_urls(cited_urls("".join(page.text_parts)))
                    yield doc
        except safeio.SafeIOError as exc:
            yield unreadable(path, exc, SOURCE, file=path.name, records_before=seen)

    @staticmethod
    def _hidden_prefixes(namespaces: dict[str, str]) -> set[str]:
        local = {namespaces.get(key, "").lower() for key in ("-2", "6", "14")}
        return (_FILE_NAMESPACES | local) - {""}

    @staticmethod
    def _page_to_document(page: _Page, language: str, dbname: str, renderer: WikitextRenderer) -> Document:
        wiki = dbname or f"{language}wiki"
        doc_id = f"{wiki}/{page.page_id or page.title}"
        meta = {
            "title": page.title,
            "language": language,
            "page_id": int(page.page_id) if page.page_id.isdigit() else page.page_id,
            "revision_id": int(page.revision_id) if page.revision_id.isdigit() else page.revision_id,
            "timestamp": page.timestamp,
            "url": f"https://{language}.wikipedia.org/wiki/{quote(page.title.replace(' ', '_'))}",
        }
        if page.ns != "0":
            return excluded(doc_id, f"namespace:{page.ns or 'missing'}", **meta)
        if page.redirect:
            return excluded(doc_id, "redirect", **meta)
        if page.too_large:
            return excluded(doc_id, "too_large", **meta)
        wikitext = "".join(page.text_parts)
        if wikitext.lstrip()[:9].lower() == "#redirect":
            return excluded(doc_id, "redirect", **meta)
        try:
            wikicode = mwparserfromhell.parse(strip_layout(strip_comments_and_refs(wikitext), renderer.hidden_prefixes))
            if is_disambiguation(wikicode):
                return excluded(doc_id, "disambiguation", **meta)
            text, surrogates = text_decoding.replace_surrogates(renderer.render(wikicode))
        except (mwparserfromhell.parser.ParserError, RecursionError) as exc:  # this page only
            return excluded(doc_id, "parse_error", error=str(exc)[:200], **meta)
        if surrogates:
            meta["utf8_errors"] = surrogates
        if not text:
            return excluded(doc_id, "empty", **meta)
        return kept(doc_id, text, **meta)


def make_extractor(params: dict | None = None) -> WikipediaExtractor:
    """From the manifest, e.g. {languages: [bg, ca, …, uk]}."""
    return construct(WikipediaExtractor, params, SOURCE)
