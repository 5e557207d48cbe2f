"""What each room may import, checked on the source (every import statement, lazy ones included).

``model/`` and ``train/`` run on a GPU box without the data pipeline: they import only torch, numpy,
pyyaml and sentencepiece (and the standard library), plus first-party modules that keep the same
promise (``tokenizer/spm.py``, ``tokenizer/shards.py``, ``storage/``). ``storage/`` is standard library
only. Following first-party imports transitively means a helper moved into a shared module cannot
smuggle the pipeline's dependencies in. An import inside ``try: ... except ImportError`` is an optional
dependency (e.g. tqdm's progress bar) and is allowed.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIRST_PARTY = {"pipeline", "ingest", "filters", "dedup", "tokenizer", "model", "train", "scaling", "report", "ops", "storage"}
TRAINER_THIRD_PARTY = {"torch", "numpy", "yaml", "sentencepiece"}


def _optional(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
        ):
            return True
    return False


def imports_of(path: Path) -> set[str]:
    """Dotted module names imported by a file (relative imports are not used in this project)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and not _optional(node, parents):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and not _optional(node, parents):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from pkg import module`
    return found


def module_file(name: str) -> Path | None:
    parts = name.split(".")
    for candidate in (REPO.joinpath(*parts).with_suffix(".py"), REPO.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def closure(files: list[Path]) -> tuple[set[str], dict[str, Path]]:
    """Third-party roots imported by ``files`` and by every first-party module they reach (with the
    first file that brought each one in)."""
    third: dict[str, Path] = {}
    seen: set[Path] = set()
    todo = list(files)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imports_of(path):
            root = name.split(".")[0]
            if root in FIRST_PARTY:
                target = module_file(name)
                if target is not None:
                    todo.append(target)
                package_init = module_file(root)
                if package_init is not None:
                    todo.append(package_init)
            elif root not in sys.stdlib_module_names and root != "__future__":
                third.setdefault(root, path)
    return set(third), third


@pytest.mark.parametrize("room", ["model", "train"])
def test_trainer_rooms_import_only_torch_numpy_yaml_sentencepiece(room):
    files = sorted((REPO / room).rglob("*.py"))
    assert files
    roots, where = closure(files)
    extra = roots - TRAINER_THIRD_PARTY
    assert not extra, {name: str(where[name].relative_to(REPO)) for name in extra}


def test_storage_is_standard_library_only():
    roots, where = closure(sorted((REPO / "storage").rglob("*.py")))
    assert not roots, {name: str(where[name].relative_to(REPO)) for name in roots}


def test_the_checker_sees_lazy_and_transitive_imports(tmp_path, monkeypatch):
    """The check itself can fail: a lazy import inside a function is seen, and so is one reached
    through a first-party module."""
    pkg = tmp_path / "storage"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "inner.py").write_text("def f():\n    import pyarrow\n")
    (tmp_path / "user.py").write_text("from storage import inner\ntry:\n    import tqdm\nexcept ImportError:\n    tqdm = None\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    roots, _ = closure([tmp_path / "user.py"])
    assert roots == {"pyarrow"}
