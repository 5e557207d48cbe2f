"""Load and validate data_manifest.yaml.

A bad manifest must fail before any work starts, with one line naming the key and the problem: a
corpus build that dies hours in on a typo is the failure mode this module exists to prevent. Stage and
model parameters are checked against each stage's own declaration (``Stage.check_params``,
``pipeline/params.py``); the manifest keeps the checked values, defaults filled in. The YAML is read
bounded (``read_yaml``: size, alias expansion, recursion, depth), and ``out_dir`` is checked against
the filesystem root, system folders, the source tree and the inputs (``_check_out_dir``).
"""

from __future__ import annotations

import copy
import fnmatch
import glob
import math
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.params import ParamError
from pipeline.registry import MODEL_STAGES, STAGES, stage_class

SOURCES = ("commoncrawl", "c4", "github", "wikipedia", "books", "arxiv", "stackexchange")
EXECUTORS = ("local", "slurm", "ray")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MANIFEST = REPO_ROOT / "data_manifest.yaml"


class ManifestError(ValueError):
    """A manifest problem; str() is the one line shown to the user."""


@dataclass
class StageSpec:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class SourceSpec:
    name: str
    weight: float
    epochs: float
    inputs: list[Any]
    stages: list[StageSpec]
    disk: str | None = None

    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    def stage(self, name: str) -> StageSpec:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def previous(self, name: str) -> str | None:
        names = self.stage_names()
        i = names.index(name)
        return names[i - 1] if i > 0 else None


@dataclass
class Manifest:
    path: Path
    profile: str
    out_dir: Path
    executor: dict[str, Any]
    resources: dict[str, Any]
    models: dict[str, dict[str, Any]]
    sources: dict[str, SourceSpec]
    raw: dict[str, Any]
    # where remote inputs are read from (``run --mirror`` / ``LLAMIX_MIRROR``; not in the YAML: a mirror
    # changes where bytes come from, never what is built)
    mirror: str | None = None

    @property
    def out_root(self) -> Path:
        return self.out_dir / self.profile

    def cap_downloads(self, max_files: int) -> None:
        """``run --max-files N``: every source's download keeps the first N files of each input entry
        (a trial run of a profile; recorded in the stage's params like any parameter)."""
        for spec in self.sources.values():
            if "download" in spec.stage_names():
                spec.stage("download").params["max_files"] = int(max_files)

    def model_params(self, name: str) -> dict[str, Any]:
        return self.models.get(name, {})

    def weights(self) -> dict[str, float]:
        return {n: s.weight for n, s in self.sources.items()}


def _fail(key: str, problem: str):
    raise ManifestError(f"{key}: {problem}")


def _need(d: dict, key: str, where: str, types: type | tuple, optional: bool = False):
    if key not in d:
        if optional:
            return None
        _fail(f"{where}.{key}" if where else key, "missing")
    value = d[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        names = "/".join(t.__name__ for t in _as_tuple(types))
        _fail(f"{where}.{key}" if where else key, f"must be {names}, got {type(value).__name__} {value!r}")
    return value


def _as_tuple(t):
    return t if isinstance(t, tuple) else (t,)


def _check_params(stage: str, params: dict, where: str, source: str | None = None) -> dict[str, Any]:
    """The stage's declared parameters checked, defaults filled in (``Stage.check_params``)."""
    try:
        return stage_class(stage).check_params(params, source=source)
    except ParamError as e:
        raise ManifestError(str(e.within(where))) from None


def _parse_stage(entry: Any, where: str) -> StageSpec:
    if isinstance(entry, str):
        name, params = entry, {}
    elif isinstance(entry, dict) and len(entry) == 1:
        name, params = next(iter(entry.items()))
        params = {} if params is None else params
        if not isinstance(params, dict):
            _fail(f"{where}.{name}", f"stage parameters must be a mapping, got {type(params).__name__}")
    else:
        _fail(where, f"a stage is a name or a one-key mapping {{name: params}}, got {entry!r}")
    if name not in STAGES:
        _fail(where, f"unknown stage {name!r} (known: {', '.join(sorted(STAGES))})")
    if name in MODEL_STAGES:
        _fail(where, f"{name!r} is a model stage: configure it under models:, not in a source's stages")
    return StageSpec(name, dict(params))


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _check_local_inputs(inputs: list, where: str, root: Path):
    for i, entry in enumerate(inputs):
        if isinstance(entry, str) and "://" not in entry:
            if not glob.glob(str(root / entry)):
                _fail(f"{where}[{i}]", f"path {entry!r} matches no file")


# Folders of the operating system: an output root there, or inside one, is refused (``/var/tmp`` is scratch).
SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin",
               "/sys", "/usr", "/var")
SCRATCH_DIRS = ("/var/tmp",)


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _local_entries(inputs: list, root: Path) -> list[tuple[str, Path]]:
    """``(as written, absolute path or glob)`` of every local input entry (paths, ``file://`` URLs,
    ``{url: ...}`` mappings); remote ones are left out."""
    found = []
    for entry in inputs:
        url = entry.get("url") if isinstance(entry, dict) else entry
        if not isinstance(url, str) or not url.strip():
            continue
        url = url.strip()
        if url.lower().startswith("file://"):
            local = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
        elif "://" in url:
            continue
        else:
            local = url
        found.append((url, Path(os.path.abspath(root / Path(local).expanduser()))))
    return found


def _reaches(pattern: Path, out_dir: Path) -> bool:
    """Whether the local input ``pattern`` (a file, a folder read recursively, or a glob whose matched
    folders are read recursively) could take in files under ``out_dir``."""
    parts = pattern.parts
    static = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    base = Path(*parts[:static]).resolve()
    if _within(base, out_dir):
        return True  # the output root holds the input
    if not _within(out_dir, base):
        return False
    rest, below = parts[static:], out_dir.relative_to(base).parts
    if not rest:
        return base.is_dir()  # a folder entry is read recursively
    if any("**" in part for part in rest):
        return True
    # a match either is a folder above (or at) out_dir, read recursively, or is a file under it
    return all(fnmatch.fnmatchcase(name, part) for name, part in zip(below, rest))


def _check_out_dir(value: Any, path: Path, sources: dict[str, "SourceSpec"]) -> Path:
    """``out_dir`` as an absolute path (relative to the manifest's folder, ``~`` expanded), refused when it
    is the filesystem root, a system folder or inside one, not a folder, or when it holds an input of
    this profile or this project's source tree, or lies where an input entry would read it."""
    if not isinstance(value, str) or not value.strip():
        _fail("out_dir", f"must be a path, got {value!r}")
    out_dir = Path(value).expanduser()
    if not out_dir.is_absolute():
        out_dir = path.parent / out_dir
    out_dir = Path(os.path.abspath(out_dir))
    real = out_dir.resolve()
    for candidate in dict.fromkeys((out_dir, real)):
        if candidate == Path(candidate.anchor):
            _fail("out_dir", f"{value!r} is the filesystem root")
        for system in SYSTEM_DIRS:
            if _within(candidate, Path(system)) and not any(_within(candidate, Path(d)) for d in SCRATCH_DIRS):
                _fail("out_dir", f"{value!r} is {'the system folder' if candidate == Path(system) else 'inside the system folder'} {system}")
    if real.exists() and not real.is_dir():
        _fail("out_dir", f"{value!r} ({real}) exists and is not a folder")
    if _within(REPO_ROOT, real):
        _fail("out_dir", f"{value!r} ({real}) holds this project's source tree {REPO_ROOT}")
    for name, spec in sources.items():
        for written, pattern in _local_entries(spec.inputs, path.parent):
            if _reaches(pattern, real):
                _fail("out_dir", f"{value!r} ({real}) overlaps input {written!r} of sources.{name}: the output root must "
                                 "neither hold the inputs nor lie where an input entry reads")
    return out_dir


def parse(raw: Any, profile: str | None = None, path: Path = DEFAULT_MANIFEST, check_paths: bool = True) -> Manifest:
    if not isinstance(raw, dict):
        _fail("manifest", "must be a mapping at top level")
    known_top = {"version", "out_dir", "default_profile", "executor", "resources", "profiles", "models", "sources"}
    for key in raw:
        if key not in known_top:
            _fail(str(key), f"unknown top-level key (known: {', '.join(sorted(known_top))})")
    _need(raw, "version", "", int)
    profiles = _need(raw, "profiles", "", dict)
    profile = profile or raw.get("default_profile") or "sample"
    if profile not in profiles:
        _fail("profiles", f"no profile {profile!r} (have: {', '.join(profiles)})")
    prof = profiles[profile] or {}
    overrides = _need(prof, "params", f"profiles.{profile}", dict, optional=True) or {}
    for stage_name, values in overrides.items():
        where = f"profiles.{profile}.params.{stage_name}"
        if stage_name not in STAGES:
            _fail(where, "unknown stage")
        if not isinstance(values, dict):
            _fail(where, f"must be a mapping, got {type(values).__name__}")
        _check_params(stage_name, values, where)  # named where it is written, before merging

    executor = dict(_need(raw, "executor", "", dict, optional=True) or {"name": "local"})
    if executor.get("name", "local") not in EXECUTORS:
        _fail("executor.name", f"must be one of {', '.join(EXECUTORS)}, got {executor.get('name')!r}")

    models = _need(raw, "models", "", dict, optional=True) or {}
    for name, params in models.items():
        if name not in MODEL_STAGES:
            _fail(f"models.{name}", f"unknown model stage (known: {', '.join(sorted(MODEL_STAGES))})")
        if not isinstance(params, dict):
            _fail(f"models.{name}", "must be a mapping")
    models = {n: _check_params(n, _deep_merge(p, overrides.get(n, {})), f"models.{n}") for n, p in models.items()}

    sources_raw = _need(raw, "sources", "", dict)
    if not sources_raw:
        _fail("sources", "no sources")
    sources: dict[str, SourceSpec] = {}
    total = 0.0
    for name, spec in sources_raw.items():
        where = f"sources.{name}"
        if name not in SOURCES:
            _fail(where, f"unknown source (known: {', '.join(SOURCES)})")
        if not isinstance(spec, dict):
            _fail(where, "must be a mapping")
        weight = _need(spec, "weight", where, (int, float))
        if not math.isfinite(weight) or weight < 0 or weight > 1:
            _fail(f"{where}.weight", f"must be in [0, 1], got {weight}")
        epochs = _need(spec, "epochs", where, (int, float))
        if not math.isfinite(epochs) or epochs <= 0:
            _fail(f"{where}.epochs", f"must be positive, got {epochs}")
        inputs_by_profile = _need(spec, "inputs", where, dict)
        inputs = inputs_by_profile.get(profile)
        if inputs is None:
            _fail(f"{where}.inputs.{profile}", "missing (every source needs inputs for the chosen profile)")
        if not isinstance(inputs, list) or not inputs:
            _fail(f"{where}.inputs.{profile}", "must be a non-empty list")
        if check_paths:
            _check_local_inputs(inputs, f"{where}.inputs.{profile}", path.parent)
        stages_raw = _need(spec, "stages", where, list)
        stages = [_parse_stage(e, f"{where}.stages[{i}]") for i, e in enumerate(stages_raw)]
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            _fail(f"{where}.stages", f"stage {dup!r} listed twice")
        for i, s in enumerate(stages):
            merged = _deep_merge(s.params, overrides.get(s.name, {}))
            s.params = _check_params(s.name, merged, f"{where}.stages[{i}].{s.name}", source=name)
        sources[name] = SourceSpec(name, float(weight), float(epochs), inputs, stages, spec.get("disk"))
        total += weight
    if abs(total - 1.0) > 1e-6:
        _fail("sources.*.weight", f"sampling proportions must sum to 1, they sum to {total:.6g}")

    out_dir = _check_out_dir(raw.get("out_dir", "out"), path, sources)
    return Manifest(
        path=path,
        profile=profile,
        out_dir=out_dir,
        executor=executor,
        resources=raw.get("resources") or {},
        models=models,
        sources=sources,
        raw=raw,
    )


# A manifest is a few kilobytes; this bounds the file and what its YAML aliases expand to (an alias
# bomb is a few hundred bytes that name a list of lists ... nine levels deep: 10^9 values once written out).
MAX_MANIFEST_BYTES = 8 << 20


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Characters of scalars plus containers in the document with every alias written out, counted
    without writing it out (each node once, memoised); stops past ``limit``. Raises ``ValueError`` on
    an alias that refers to a node containing it (a recursive structure)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]

    def children(node: yaml.Node) -> list[yaml.Node]:
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if isinstance(node, yaml.MappingNode):
            return [n for pair in node.value for n in pair]
        return []

    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            own = len(node.value) + 1 if isinstance(node, yaml.ScalarNode) else 2
            sizes[key] = own + sum(sizes[id(c)] for c in children(node))
            if sizes[key] > limit:
                return sizes[key]
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise ValueError(f"line {node.start_mark.line + 1}: an alias refers to a value that contains it")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children(node) if id(c) not in sizes)
    return sizes.get(id(root), 0)


def read_yaml(path: Path, text: str) -> Any:
    """``text`` read as YAML (safe types), refused in one line (``ManifestError``) when it is larger than
    ``MAX_MANIFEST_BYTES`` or its aliases expand past that, when an alias is recursive, or when it nests
    deeper than the parser can follow."""
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path}: {len(text):,} characters; a manifest may have at most {MAX_MANIFEST_BYTES:,}")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            size = _expanded_size(node, MAX_MANIFEST_BYTES)
        except ValueError as e:
            raise ManifestError(f"{path}: {e}") from None
        if size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{path}: its YAML aliases expand to more than {MAX_MANIFEST_BYTES:,} characters (an alias bomb?)")
        return loader.construct_document(node)
    except RecursionError:
        raise ManifestError(f"{path}: nested too deeply") from None
    finally:
        loader.dispose()


def load(path: str | Path | None = None, profile: str | None = None, check_paths: bool = True) -> Manifest:
    path = Path(path) if path else DEFAULT_MANIFEST
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_MANIFEST_BYTES + 1)
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    try:
        raw = read_yaml(path, text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ManifestError(f"{path}:{where} invalid YAML ({getattr(e, 'problem', e)})") from None
    return parse(raw, profile=profile, path=path.resolve(), check_paths=check_paths)
