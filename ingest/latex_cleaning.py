"""LaTeX cleaning: one paper's source files (name -> text) -> the text LLaMA kept of it.

Why a module of its own: it is pure text processing, independent of how papers are packed (that is
``ingest.arxiv``), and it is where the hard cases live. LLaMA trained on arXiv LaTeX with everything
before the first section and the bibliography removed, comments removed, and user-written macros
inline-expanded. RedPajama's cleaner expanded only argument-free macros; this one expands macros with
arguments (``#1``..``#9``, an optional first argument with a default, nested braces), repeatedly until
nothing changes, with a depth cap that stops self-recursive definitions.

Order of operations (:func:`clean_paper`):

1. verbatim/lstlisting/minted environments, ``\\verb`` and ``\\MakeShortVerb`` spans are swapped for
   placeholders, so no later step touches them;
2. comments removed in every file (``%`` not escaped as ``\\%``; ``\\begin{comment}`` blocks dropped);
3. main file = a ``.tex`` with ``\\documentclass`` and ``\\begin{document}``; ties -> the largest
   (none -> ``no_main``);
4. ``\\input{}``/``\\include{}``/``\\input file`` inlined, relative to the paper root, with or without
   ``.tex``; names leaving the paper or missing are left as written; a cycle excludes the paper as
   ``include_loop``; more than ``max_include_depth`` levels as ``include_depth``;
5. macro definitions collected from the whole text (and the paper's own ``.sty`` files it loads), then
   removed from it;
6. text cut before the first ``\\part``/``\\chapter``/``\\section`` (none -> ``no_section``) and from
   the bibliography (``\\begin{thebibliography}``, ``\\bibliography{``, ``\\printbibliography``) or
   ``\\end{document}`` onwards;
7. user macros expanded in what is left, and the verbatim spans put back.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from loguru import logger

MAX_GROUP_CHARS = 1 << 20  # a macro argument or definition body longer than this is not parsed


class PaperExcluded(Exception):
    """The paper cannot yield a document; ``reason`` is the exclusion reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


# ------------------------------------------------------------------------------ brace-level parsing
def skip_spaces(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def read_group(text: str, i: int, open_: str = "{", close: str = "}") -> tuple[str, int] | None:
    """If ``text[i]`` opens a group, its content (nested braces balanced, ``\\{`` ignored) and the
    index after the closing delimiter; else None. An unbalanced group, or one longer than
    ``MAX_GROUP_CHARS`` (bounding the cost of hostile unbalanced input), returns None."""
    if i >= len(text) or text[i] != open_:
        return None
    depth, j, end = 0, i, min(len(text), i + MAX_GROUP_CHARS)
    while j < end:
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if open_ == "{" and depth == 0:
            return text[i + 1 : j], j + 1
        if open_ != "{" and c == close and depth == 0:
            return text[i + 1 : j], j + 1
        if depth < 0:
            return None
        j += 1
    return None


_CONTROL_WORD = re.compile(r"\\([A-Za-z@]+|.)", re.DOTALL)


def read_argument(text: str, i: int) -> tuple[str, int] | None:
    """One undelimited TeX argument at ``i`` (after spaces): a brace group's content, a control
    sequence, or a single character."""
    i = skip_spaces(text, i)
    if i >= len(text) or text[i] == "}":
        return None
    group = read_group(text, i)
    if group is not None:
        return group
    if text[i] == "{":
        return None
    if text[i] == "\\":
        m = _CONTROL_WORD.match(text, i)
        return m.group(0), m.end()
    return text[i], i + 1


# ------------------------------------------------------------------------------ verbatim & comments
_VERBATIM_ENV = re.compile(
    r"\\begin\{(verbatim\*?|Verbatim\*?|lstlisting|minted|alltt)\}.*?\\end\{\1\}", re.DOTALL
)
_VERB = re.compile(r"\\verb\*?([^A-Za-z\s*])(?:(?!\1)[^\n])*\1")
_COMMENT_ENV = re.compile(r"\\begin\{comment\}.*?\\end\{comment\}[ \t]*\n?", re.DOTALL)
_COMMENT = re.compile(r"(?<!\\)((?:\\\\)*)%")
_PLACEHOLDER = re.compile("\x00(\\d+)\x00")


_MAKE_SHORT_VERB = re.compile(r"\\MakeShortVerb\*?\s*\{?\s*\\(\S)")
_SHORT_VERB_CLASSES = re.compile(r"\\documentclass\s*(?:\[[^\]]*\])?\s*\{(?:ltxguide|ltxdoc)\}")


def short_verb_chars(files: dict[str, str]) -> str:
    """Characters that delimit inline verbatim (``|\\def|``): declared by ``\\MakeShortVerb{\\|}``,
    or ``|`` under the LaTeX team's guide classes, which declare it themselves."""
    chars = {m.group(1) for text in files.values() for m in _MAKE_SHORT_VERB.finditer(text)}
    if any(_SHORT_VERB_CLASSES.search(text) for text in files.values()):
        chars.add("|")
    return "".join(sorted(chars))


@dataclass
class Protected:
    """Verbatim spans swapped out for placeholders so no later step touches them."""

    spans: list[str] = field(default_factory=list)

    def protect(self, text: str, short_verbs: str = "") -> str:
        def keep(m: re.Match) -> str:
            self.spans.append(m.group(0))
            return f"\x00{len(self.spans) - 1}\x00"

        text = _VERB.sub(keep, _VERBATIM_ENV.sub(keep, text.replace("\x00", "")))
        for c in short_verbs:
            d = re.escape(c)
            text = re.sub(rf"(?<!\\){d}[^\n{d}]*{d}", keep, text)
        return text

    def restore(self, text: str) -> str:
        for _ in range(4):  # placeholders can only nest as deep as protect() ran
            if "\x00" not in text:
                break
            text = _PLACEHOLDER.sub(lambda m: self.spans[int(m.group(1))], text)
        return text


def remove_comments(text: str) -> str:
    """Drop ``%`` comments (the whole line when it held only a comment) and comment environments."""
    text = _COMMENT_ENV.sub("", text)
    out = []
    for line in text.split("\n"):
        m = _COMMENT.search(line)
        if m is None:
            out.append(line)
            continue
        kept_part = line[: m.start() + len(m.group(1))]
        if kept_part.strip():
            out.append(kept_part.rstrip())
    return "\n".join(out)


# ------------------------------------------------------------------------------ includes
_INCLUDE = re.compile(r"\\(?:input|include|subfile)\s*\{([^{}]*)\}|\\input[ \t]+([^\s{}\\%]+)")


def resolve_include(name: str, files: dict[str, str], base: str) -> str | None:
    """The paper file an include names (relative to the paper root, or to the including file's
    folder), with or without ``.tex``; None when it leaves the paper or is not there."""
    name = name.strip().strip('"')
    if not name or name.startswith("/") or "\\" in name:
        return None
    for root in ("", base):
        candidate = posixpath.normpath(posixpath.join(root, name))
        if candidate.startswith("../") or candidate == "..":
            return None
        for option in (candidate, candidate + ".tex"):
            if option in files:
                return option
    return None


def inline_includes(files: dict[str, str], main: str, max_depth: int, max_bytes: int) -> tuple[str, int]:
    """The main file with its includes inlined, and the number of includes inlined.

    Raises PaperExcluded('include_loop' | 'include_depth' | 'too_large')."""
    count = 0
    budget = [max_bytes]

    def expand(name: str, stack: tuple[str, ...]) -> str:
        if name in stack:
            raise PaperExcluded("include_loop", " -> ".join(stack + (name,)))
        if len(stack) >= max_depth:
            raise PaperExcluded("include_depth", f"more than {max_depth} nested includes")
        base = posixpath.dirname(name)

        def substitute(m: re.Match) -> str:
            nonlocal count
            target = resolve_include(m.group(1) if m.group(1) is not None else m.group(2), files, base)
            if target is None:  # a package/style file, or a name leaving the paper: left as written
                logger.debug(f"arxiv: {name}: include {m.group(0)!r} not in the paper, not inlined")
                return m.group(0)
            count += 1
            return expand(target, stack + (name,))

        text = _INCLUDE.sub(substitute, files[name])
        budget[0] -= len(text)
        if budget[0] < 0:
            raise PaperExcluded("too_large", f"paper expands past {max_bytes} characters")
        return text

    return expand(main, ()), count


# ------------------------------------------------------------------------------ macros
@dataclass
class Macro:
    name: str
    nargs: int
    body: str
    default: str | None = None  # optional first argument's default (newcommand [n][default])


_DEFINITION = re.compile(
    r"\\(newcommand|renewcommand|providecommand|DeclareRobustCommand)\*?\s*|\\(?:g|e|x)?def\s*(?=\\)"
)
_DEF_PARAMS = re.compile(r"(?:#[1-9])*")


def _parse_definition(text: str, m: re.Match) -> tuple[Macro | None, int]:
    """Parse the definition starting at match ``m``; (macro or None if unsupported, end index)."""
    i = m.end()
    kind = m.group(1)
    if kind:  # \newcommand family: {\name} or \name, [n], [default], {body}
        group = read_group(text, i)
        if group is not None:
            name, i = group[0].strip(), group[1]
        else:
            cs = _CONTROL_WORD.match(text, i)
            if cs is None:
                return None, m.end()
            name, i = cs.group(0), cs.end()
        nargs, default = 0, None
        i = skip_spaces(text, i)
        opt = read_group(text, i, "[", "]")
        if opt is not None:
            if not opt[0].strip().isdigit():
                return None, m.end()
            nargs, i = int(opt[0].strip()), opt[1]
            i = skip_spaces(text, i)
            opt = read_group(text, i, "[", "]")
            if opt is not None:
                default, i = opt
        i = skip_spaces(text, i)
        body = read_group(text, i)
        if body is None or not name.startswith("\\") or not 0 <= nargs <= 9:
            return None, m.end()
        return Macro(name, nargs, body[0], default), body[1]
    # \def\name#1#2{body}: only undelimited parameters are supported
    cs = _CONTROL_WORD.match(text, i)
    if cs is None:
        return None, m.end()
    params = _DEF_PARAMS.match(text, cs.end())
    i = params.end()
    body = read_group(text, i)
    if body is None:
        return None, m.end()
    nargs = len(params.group(0)) // 2
    expected = "".join(f"#{k}" for k in range(1, nargs + 1))
    if params.group(0) != expected:
        return None, body[1]
    return Macro(cs.group(0), nargs, body[0]), body[1]


def collect_macros(text: str) -> tuple[dict[str, Macro], str]:
    """User macros defined in ``text`` (later definitions win; ``\\providecommand`` never overrides;
    a macro whose body uses itself is not expanded) and the text with the definitions removed."""
    macros: dict[str, Macro] = {}
    recursive: set[str] = set()
    out, pos = [], 0
    for m in _DEFINITION.finditer(text):
        if m.start() < pos:
            continue
        macro, end = _parse_definition(text, m)
        if macro is None:
            continue
        if _mentions(macro.body, macro.name):
            recursive.add(macro.name)  # defined via itself: never expanded, left as written
        elif not (m.group(1) == "providecommand" and macro.name in macros):
            macros[macro.name] = macro
        out.append(text[pos : m.start()])
        pos = end
    out.append(text[pos:])
    for name in recursive:
        macros.pop(name, None)
    return macros, "".join(out)


def _mentions(body: str, name: str) -> bool:
    """Does ``body`` use the control sequence ``name`` (``\\foo`` but not ``\\foobar``)?"""
    return re.search(re.escape(name) + (r"(?![A-Za-z@])" if name[1:].isalpha() else ""), body) is not None


def _substitute(body: str, args: list[str]) -> str:
    return re.sub(r"#(#|[1-9])", lambda m: "#" if m.group(1) == "#" else args[int(m.group(1)) - 1]
                  if int(m.group(1)) <= len(args) else m.group(0), body)


_ENDS_IN_CONTROL_WORD = re.compile(r"(?<!\\)(?:\\\\)*\\[A-Za-z@]+$")


def expand_macros(text: str, macros: dict[str, Macro], max_passes: int, max_chars: int) -> tuple[str, int]:
    """Expand the user macros in ``text`` until a fixpoint (at most ``max_passes`` passes, and never
    past ``max_chars`` characters, so self-recursive macros stop); (text, expansions made)."""
    if not macros:
        return text, 0
    total = 0
    for _ in range(max_passes):
        out, pos, count = [], 0, 0
        for m in _CONTROL_WORD.finditer(text):
            if m.start() < pos:
                continue
            macro = macros.get(m.group(0))
            if macro is None:
                continue
            i, args = m.end(), []
            if macro.default is not None:
                j = skip_spaces(text, i)
                opt = read_group(text, j, "[", "]")
                if opt is not None:
                    args.append(opt[0])
                    i = opt[1]
                else:
                    args.append(macro.default)
            while len(args) < macro.nargs:
                arg = read_argument(text, i)
                if arg is None:
                    break
                args.append(arg[0])
                i = arg[1]
            if len(args) < macro.nargs:
                continue  # malformed use: leave it
            body = _substitute(macro.body, args)
            if i < len(text) and (text[i].isalpha() or text[i] == "@") and _ENDS_IN_CONTROL_WORD.search(body):
                body += " "  # \foo{x}y with body "#1\bar" must not become "x\bary"
            out.append(text[pos : m.start()])
            out.append(body)
            pos, count = i, count + 1
        if count == 0:
            break
        out.append(text[pos:])
        candidate = "".join(out)
        if len(candidate) > max_chars:
            logger.debug("arxiv: macro expansion stopped at the size cap (self-recursive macro?)")
            break
        text, total = candidate, total + count
    return text, total


# ------------------------------------------------------------------------------ body selection
_SECTION = re.compile(r"\\(?:part|chapter|section)\s*\*?\s*[\[{]")
_BIBLIOGRAPHY = re.compile(
    r"\\begin\{thebibliography\}|\\bibliographystyle\s*\{|\\bibliography\s*\{|\\printbibliography\b|\\end\{document\}")
_DOCUMENTCLASS = re.compile(r"^[ \t]*\\documentclass\b", re.MULTILINE)
_BEGIN_DOCUMENT = re.compile(r"^[ \t]*\\begin\{document\}", re.MULTILINE)


def select_body(text: str) -> str:
    """From the first part/chapter/section up to the bibliography or ``\\end{document}``."""
    start = _SECTION.search(text)
    if start is None:
        raise PaperExcluded("no_section")
    end = _BIBLIOGRAPHY.search(text, start.start())
    return text[start.start() : end.start() if end else len(text)].strip() + "\n"


_USEPACKAGE = re.compile(r"\\(?:usepackage|RequirePackage)\s*(?:\[[^\]]*\])?\s*\{([^{}]*)\}")


def local_packages(text: str, files: dict[str, str]) -> str:
    """The text of the paper's own ``.sty`` files that ``text`` loads with ``\\usepackage``
    (their ``\\newcommand``/``\\def`` macros are expanded like the paper's; the paper's win)."""
    by_stem = {posixpath.basename(n)[:-4]: n for n in files if n.lower().endswith(".sty")}
    names = [n.strip() for m in _USEPACKAGE.finditer(text) for n in m.group(1).split(",")]
    return "\n".join(files[by_stem[n]] for n in dict.fromkeys(names) if n in by_stem)


def find_main(files: dict[str, str]) -> str:
    """The main file: ``\\documentclass`` then ``\\begin{document}``, each at the start of a line of
    the comment-free, verbatim-free text (guides quote them in ``|...|`` and verbatim); ties ->
    the largest file."""
    candidates = []
    for name, text in files.items():
        cls = _DOCUMENTCLASS.search(text)
        if cls and _BEGIN_DOCUMENT.search(text, cls.end()):
            candidates.append(name)
    if not candidates:
        raise PaperExcluded("no_main", "no .tex file with \\documentclass and \\begin{document}")
    return max(candidates, key=lambda n: (len(files[n]), n))


def clean_paper(files: dict[str, str], meta: dict, *, max_include_depth: int, max_chars: int,
                max_passes: int) -> str:
    """The cleaned body of a paper (see the module docstring for the steps). ``meta`` receives
    ``main_file``, ``includes``, ``macros_expanded`` and ``macros_defined`` as they become known, so an
    excluded paper still reports what was found. Raises ``PaperExcluded``."""
    protected, short_verbs = Protected(), short_verb_chars(files)
    files = {n: remove_comments(protected.protect(t, short_verbs)) for n, t in files.items()}
    main = find_main(files)
    meta["main_file"] = main
    text, meta["includes"] = inline_includes(files, main, max_include_depth, max_chars)
    macros, text = collect_macros(text)
    macros = {**collect_macros(local_packages(text, files))[0], **macros}
    body = select_body(text)
    body, meta["macros_expanded"] = expand_macros(body, macros, max_passes, max_chars)
    meta["macros_defined"] = len(macros)
    return protected.restore(body)
