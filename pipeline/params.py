"""Stage parameters: declared once by each stage class, checked before any task starts.

Every stage class lists its parameters in ``PARAMS`` (name -> ``Param``); the extract stage adds, per
source, its extractor's in ``SOURCE_PARAMS``. ``Stage.check_params(params, source)`` rejects unknown keys
(naming the known ones), checks every value, fills in the defaults the stage runs with, and returns the
dict the stage then reads. It runs when the manifest loads (every source stage, every ``models:``
entry, every profile override), when ``python -m pipeline stage`` gets its ``--set`` values, and when a
stage object is made, so a typo fails in one line naming the key, never hours in inside a worker.

Kinds: ``Int``, ``Number``, ``Fraction``, ``Percentile``, ``Bool``, ``Choice``, ``Text``, ``Languages``,
``Names`` (a list of strings, optionally drawn from a fixed set), ``List`` (a list its reader checks),
``Options`` (true/false or a mapping of options) and ``Free`` (anything its check function accepts).

This module imports nothing heavy: the manifest loads the stage classes to reach their declarations.
"""

from __future__ import annotations

import copy
import math
import reprlib
from collections.abc import Mapping
from typing import Any, Callable, Sequence


class ParamError(ValueError):
    """A bad parameter; ``str()`` is one line, ``key: problem`` (``key`` may be empty: the whole set)."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key, self.problem = key, problem

    def within(self, prefix: str) -> "ParamError":
        """The same error with its key under ``prefix`` (``sources.c4.stages[3].quality``)."""
        if not prefix:
            return self
        key = prefix if not self.key else f"{prefix}{self.key}" if self.key.startswith("[") else f"{prefix}.{self.key}"
        return ParamError(key, self.problem)


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 4, 100, 100
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = _SHORT.maxfrozenset = 12


def shown(value: Any, limit: int = 80) -> str:
    """``repr`` of a bad value, short enough for a one-line message; a container is shown by its first
    entries only (its full ``repr`` could be gigabytes: a YAML alias bomb)."""
    text = _SHORT.repr(value) if isinstance(value, (list, tuple, dict, set, frozenset)) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _interval(lo, hi, above=None) -> str:
    if above is not None:
        return f" in ({above:g}, {hi:g}]" if hi is not None else f" > {above:g}"
    if lo is not None and hi is not None:
        return f" in [{lo:g}, {hi:g}]" if isinstance(lo, float) or isinstance(hi, float) else f" in [{lo}, {hi}]"
    if lo is not None:
        return f" >= {lo:g}" if isinstance(lo, float) else f" >= {lo}"
    if hi is not None:
        return f" <= {hi:g}" if isinstance(hi, float) else f" <= {hi}"
    return ""


class Param:
    """One declared parameter.

    ``default``: the value the stage runs with when the key is absent; a callable gets the other
    checked values (``candidate_threshold`` defaults to ``threshold - 0.2``). Left out, an absent key
    stays absent (the code that uses it supplies its own default). ``nullable``: ``null`` is accepted
    and kept. Subclasses implement ``convert(value)``: the checked (possibly normalised) value, or
    ``ValueError`` (with a message: ``key: message``; without: ``key: expected <expected>, got <value>``);
    a nested ``ParamError`` is reported under the key.
    """

    expected = "a value"

    def __init__(self, default: Any = NO_DEFAULT, *, nullable: bool = False, doc: str = ""):
        self.default = default
        self.nullable = nullable
        self.doc = doc

    def convert(self, value: Any) -> Any:
        return value

    def check(self, key: str, value: Any) -> Any:
        if value is None and self.nullable:
            return None
        try:
            return self.convert(value)
        except ParamError as e:
            raise e.within(key) from None
        except (ValueError, TypeError) as e:
            raise ParamError(key, str(e) or f"expected {self.expected}, got {shown(value)}") from None

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT

    def default_for(self, values: dict[str, Any]) -> Any:
        if callable(self.default):
            return self.default(values)
        return copy.deepcopy(self.default)


class Int(Param):
    """An integer (not a bool, not 5.0) in ``[lo, hi]``."""

    def __init__(self, lo: int | None = None, hi: int | None = None, default: Any = NO_DEFAULT, **kw):
        super().__init__(default, **kw)
        self.lo, self.hi = lo, hi
        self.expected = "an integer" + _interval(lo, hi)

    def convert(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError()
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise ValueError()
        return value


class Number(Param):
    """A finite number in ``[lo, hi]`` (or ``(above, hi]``); ints stay ints unless ``as_float``."""

    def __init__(self, lo: float | None = None, hi: float | None = None, default: Any = NO_DEFAULT, *,
                 above: float | None = None, as_float: bool = False, **kw):
        super().__init__(default, **kw)
        self.lo, self.hi, self.above, self.as_float = lo, hi, above, as_float
        self.expected = "a number" + _interval(lo, hi, above)

    def convert(self, value):
        if not _number(value):
            raise ValueError()
        if ((self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi)
                or (self.above is not None and value <= self.above)):
            raise ValueError()
        return float(value) if self.as_float else value


class Fraction(Number):
    """A number in [0, 1], as a float (thresholds, held-out fractions)."""

    def __init__(self, default: Any = NO_DEFAULT, **kw):
        super().__init__(0, 1, default, as_float=True, **kw)
        self.expected = "a number in [0, 1]"


class Percentile(Number):
    """A number in [0, 100], as a float."""

    def __init__(self, default: Any = NO_DEFAULT, **kw):
        super().__init__(0, 100, default, as_float=True, **kw)
        self.expected = "a percentile in [0, 100]"


class Bool(Param):
    expected = "true or false"

    def convert(self, value):
        if not isinstance(value, bool):
            raise ValueError()
        return value


class Choice(Param):
    """One of a fixed set of strings."""

    def __init__(self, choices: Sequence[str], default: Any = NO_DEFAULT, **kw):
        super().__init__(default, **kw)
        self.choices = tuple(choices)
        self.expected = "one of " + ", ".join(self.choices)

    def convert(self, value):
        if value not in self.choices:
            raise ValueError()
        return value


class Text(Param):
    expected = "a non-empty string"

    def convert(self, value):
        if not isinstance(value, str) or not value:
            raise ValueError()
        return value


class Names(Param):
    """A list of non-empty strings (a single string is a list of one), each one of ``choices`` when
    given; ``nonempty`` refuses ``[]``."""

    def __init__(self, choices: Sequence[str] | None = None, default: Any = NO_DEFAULT, *, nonempty: bool = False,
                 what: str = "strings", **kw):
        super().__init__(default, **kw)
        self.choices = tuple(choices) if choices is not None else None
        self.nonempty = nonempty
        self.expected = (f"a list drawn from {', '.join(self.choices)}" if self.choices is not None
                         else f"a {'non-empty ' if nonempty else ''}list of {what}")

    def convert(self, value):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or (self.nonempty and not value):
            raise ValueError()
        if not all(isinstance(v, str) and v for v in value):
            raise ValueError()
        if self.choices is not None and not set(value) <= set(self.choices):
            raise ValueError()
        return list(value)


class List(Param):
    """A list whose entries the code that reads them checks (download entries)."""

    def __init__(self, what: str, default: Any = NO_DEFAULT, *, nonempty: bool = False, **kw):
        super().__init__(default, **kw)
        self.nonempty = nonempty
        self.expected = f"a {'non-empty ' if nonempty else ''}list of {what}"

    def convert(self, value):
        if not isinstance(value, list) or (self.nonempty and not value):
            raise ValueError()
        return value


class Languages(Names):
    """A non-empty list of language codes (``en`` alone means ``[en]``)."""

    def __init__(self, default: Any = NO_DEFAULT, **kw):
        super().__init__(None, default, nonempty=True, what="language codes", **kw)


class Options(Param):
    """``true`` (on, with the defaults), ``false``/``null`` (off) or a mapping of options, which
    ``check_options(options) -> options`` checks (raising ``ParamError(option, problem)``)."""

    expected = "true, false or a mapping of options"

    def __init__(self, default: Any = NO_DEFAULT, check_options: Callable[[dict], dict] | None = None, **kw):
        super().__init__(default, **kw)
        self.check_options = check_options

    def convert(self, value):
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        if not isinstance(value, Mapping):
            raise ValueError()
        options = dict(value)
        return self.check_options(options) if self.check_options else options


class Free(Param):
    """A structured value: ``check(value) -> value`` accepts it (maybe normalised) or raises
    ``ValueError`` / ``ParamError``; ``expected`` words the message of a bare ``ValueError()``."""

    def __init__(self, expected: str, check: Callable[[Any], Any], default: Any = NO_DEFAULT, **kw):
        super().__init__(default, **kw)
        self.expected = expected
        self._check = check

    def convert(self, value):
        return self._check(value)


# Parameters are written into stats.json; YAML aliases (in a manifest or a ``--set`` value) can make a
# few hundred bytes stand for 10^9 values once written out. This bounds a stage's parameters, written out.
MAX_PARAMS_CHARS = 1 << 20


def written_size(value: Any, limit: int = MAX_PARAMS_CHARS) -> int:
    """About how many characters ``value`` takes written out as JSON, counted without writing it (a
    container shared by several references is walked once, its size memoised); stops soon after
    ``limit``. Raises ``ValueError`` when a container contains itself."""
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()
    stack: list[tuple[Any, bool]] = [(value, False)]

    def children(v: Any) -> list[Any]:
        if isinstance(v, Mapping):
            return [x for pair in v.items() for x in pair]
        return list(v) if isinstance(v, (list, tuple, set, frozenset)) else []

    def own(v: Any) -> int:
        if isinstance(v, str):
            return len(v) + 2
        if isinstance(v, (Mapping, list, tuple, set, frozenset)):
            return 2 + 2 * len(v)
        return 8

    while stack:
        v, finished = stack.pop()
        key = id(v)
        if finished:
            open_ids.discard(key)
            sizes[key] = own(v) + sum(sizes[id(c)] if id(c) in sizes else own(c) for c in children(v))
            if sizes[key] > limit:
                return sizes[key]
            continue
        if not children(v) or key in sizes:
            continue
        if key in open_ids:
            raise ValueError("a value that contains itself")
        open_ids.add(key)
        stack.append((v, True))
        stack.extend((c, False) for c in children(v) if children(c) and id(c) not in sizes)
    return sizes.get(id(value), own(value))


def _check_size(params: Mapping[str, Any]) -> None:
    total = 0
    for key, value in params.items():
        try:
            total += written_size(value, MAX_PARAMS_CHARS - total) + len(str(key)) + 4
        except ValueError as e:
            raise ParamError(str(key), f"{e} (a recursive YAML alias?)") from None
        if total > MAX_PARAMS_CHARS:
            raise ParamError(str(key), f"the parameters take more than {MAX_PARAMS_CHARS:,} characters written out "
                                       "(YAML aliases repeating a value?)")


def check(spec: Mapping[str, Param], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params`` checked against ``spec``: unknown keys refused (the first, in sorted order, named with
    the known ones), each value checked, absent ones given their defaults; keys in ``spec`` order.
    Checking an already-checked dict returns an equal dict."""
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ParamError("", f"parameters must be a mapping, got {type(params).__name__}")
    unknown = sorted((k for k in params if k not in spec), key=str)
    if unknown:
        known = ", ".join(spec) if spec else "none: this stage takes no parameters"
        raise ParamError(str(unknown[0]), f"unknown parameter (known: {known})")
    _check_size(params)  # before any value is walked (or shown in a message)
    values = {key: p.check(key, params[key]) for key, p in spec.items() if key in params}
    for key, p in spec.items():
        if key not in values and p.has_default:
            values[key] = p.default_for(values)
    return {key: values[key] for key in spec if key in values}
