"""Hostile command lines, manifests and input shards (issue #16: the framework's share).

Each case builds its own hostile input here and asserts the outcome: either a counted exclusion with
its reason (accounting balanced, the document in ``excluded/``), or one line on stderr and exit 2 with
nothing deleted, nothing changed in the input and nothing written outside the output folder. The
alias bombs run in a child process under an address-space limit and a timeout.
"""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from ops.drill import drill_manifest
from pipeline.documents import SCHEMA, list_shards, read_documents
from pipeline.manifest import ManifestError, load, parse
from pipeline.params import ParamError
from pipeline.stages import NotAStageFolder, reset_output
from pipeline.standalone import run_standalone
from storage.layout import stage_folder_problem

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
ADDRESS_SPACE = 2 << 30  # the alias-bomb children: 2 GiB of address space, well under what a bomb needs


# ---- helpers -----------------------------------------------------------------------------------------
def _shard(folder: Path, rows: list[dict], name: str = "00000.parquet", schema: pa.Schema = SCHEMA) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def _doc(i: int, **over) -> dict:
    """A row of a document shard; ``over`` replaces columns (``text=None``: a null text)."""
    return {"id": f"d{i}", "text": f"document {i} " * 20, "source": "s", "metadata": "{}", **over}


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones included) with its sha256: 'unchanged' means this."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _limit_address_space():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _cli(*args: str, timeout: int = 120, limited: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "pipeline", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_limit_address_space if limited else None)


def _one_line(p: subprocess.CompletedProcess) -> str:
    """The process exited 2 with exactly one line on stderr (no traceback); returns it."""
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 2, p.stderr[-2000:]
    assert len(lines) == 1, p.stderr[-2000:]
    return lines[0]


def _stage(name: str, inp: Path, out: Path, *extra: str, **kw) -> subprocess.CompletedProcess:
    return _cli("stage", name, "--input", str(inp), "--output", str(out), "--workers", "1", *extra, **kw)


@pytest.fixture
def docs_in(tmp_path) -> Path:
    inp = tmp_path / "in"
    _shard(inp, [_doc(i) for i in range(5)])
    return inp


# ---- 1. `stage`: output vs input, and --force deleting only a stage folder of ours ----------------------
@pytest.mark.parametrize("force", [False, True])
def test_output_equal_to_input_is_refused_and_the_input_kept(docs_in, force):
    before = _tree(docs_in)
    line = _one_line(_stage("exactdedup", docs_in, docs_in, *(["--force"] if force else [])))
    assert line.startswith("error: --output ") and "is the --input folder" in line
    assert _tree(docs_in) == before


def test_output_equal_to_input_through_a_symlink_is_refused(docs_in, tmp_path):
    (tmp_path / "alias").symlink_to(docs_in)
    before = _tree(docs_in)
    assert "is the --input folder" in _one_line(_stage("exactdedup", docs_in, tmp_path / "alias", "--force"))
    assert _tree(docs_in) == before


def test_output_inside_input_is_refused(docs_in):
    before = _tree(docs_in)
    line = _one_line(_stage("exactdedup", docs_in, docs_in / "out", "--force"))
    assert "is inside --input" in line
    assert _tree(docs_in) == before and not (docs_in / "out").exists()


def test_output_containing_input_is_refused_with_force(docs_in, tmp_path):
    before = _tree(tmp_path)
    line = _one_line(_stage("exactdedup", docs_in, tmp_path, "--force"))
    assert "contains --input" in line
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("force", [False, True])
def test_unrelated_folder_is_neither_deleted_nor_written_into(docs_in, tmp_path, force):
    thesis = tmp_path / "thesis"
    (thesis / "chapters").mkdir(parents=True)
    (thesis / "thesis.tex").write_text("\\documentclass{book}")
    (thesis / "chapters" / "1.tex").write_text("Once upon a time")
    (thesis / "00000.parquet").write_bytes(b"my own data, not a shard of yours")
    before = _tree(thesis)
    line = _one_line(_stage("exactdedup", docs_in, thesis, *(["--force"] if force else [])))
    assert line.startswith(f"error: {thesis}: not a stage folder of ours (holds ")
    assert _tree(thesis) == before and sorted(p.name for p in thesis.iterdir()) == ["00000.parquet", "chapters", "thesis.tex"]


def test_a_folder_with_only_our_names_but_no_marker_is_not_ours(docs_in, tmp_path):
    lookalike = tmp_path / "lookalike"
    _shard(lookalike, [_doc(0)])
    (lookalike / "stats.json").write_text("{}")
    before = _tree(lookalike)
    line = _one_line(_stage("exactdedup", docs_in, lookalike, "--force"))
    assert "has neither _SUCCESS nor .work/passes/" in line
    assert _tree(lookalike) == before


def test_force_reruns_a_stage_folder_of_ours(docs_in, tmp_path):
    out = tmp_path / "out"
    first = run_standalone("exactdedup", docs_in, out, workers=1)
    assert first["docs_in"] == 5 and stage_folder_problem(out) is None
    (out / "00000.parquet").write_bytes(b"stale")  # a forced rerun starts from an empty folder
    again = run_standalone("exactdedup", docs_in, out, workers=1, force=True)
    assert again["docs_in"] == 5 and pq.read_table(out / "00000.parquet").num_rows == first["docs_out"]


def test_a_killed_stage_folder_is_ours_and_resumes(docs_in, tmp_path):
    out = tmp_path / "out"
    run_standalone("exactdedup", docs_in, out, workers=1)
    (out / "_SUCCESS").unlink()  # killed before the end: .work/passes/ marks it
    (out / ".00001.parquet.123.tmp").write_bytes(b"half")
    assert stage_folder_problem(out) is None
    assert run_standalone("exactdedup", docs_in, out, workers=1)["docs_in"] == 5


def _make(folder: Path, entries: list[str]) -> None:
    """``name/`` a folder, ``name->target`` a symbolic link, anything else an empty file."""
    for entry in entries:
        if entry.endswith("/"):
            (folder / entry).mkdir(parents=True)
        elif "->" in entry:
            name, target = entry.split("->")
            (folder / name).symlink_to(target)
        else:
            (folder / entry).write_bytes(b"")


@pytest.mark.parametrize(
    "entries, problem",
    [
        (["_SUCCESS", "notes.txt"], "holds 'notes.txt', which no stage writes"),
        (["_SUCCESS", "excluded/", "excluded/a.csv"], "holds excluded/'a.csv'"),
        (["_SUCCESS", "excluded"], "'excluded' is not a folder"),
        (["_SUCCESS", "00000.parquet->/etc/passwd"], "'00000.parquet' is not a plain file"),
        (["_SUCCESS", "stats.json/"], "'stats.json' is not a plain file"),
        ([".work/", "stats.json", "00000.parquet"], "has neither _SUCCESS nor .work/passes/"),
        (["_SUCCESS", "other.json"], "holds 'other.json'"),
        (["_SUCCESS", ".notes.txt.1.tmp"], "holds '.notes.txt.1.tmp'"),
    ],
)
def test_what_is_not_a_stage_folder(tmp_path, entries, problem):
    folder = tmp_path / "f"
    folder.mkdir()
    _make(folder, entries)
    assert problem in (stage_folder_problem(folder, ["minhash"]) or "")
    before = _tree(folder)
    with pytest.raises(NotAStageFolder, match="not a stage folder of ours"):
        reset_output(folder)
    assert _tree(folder) == before


def test_what_is_a_stage_folder(tmp_path):
    folder = tmp_path / "f"
    (folder / ".work" / "passes" / "main").mkdir(parents=True)
    (folder / "excluded").mkdir()
    for name in ("_SUCCESS", "stats.json", "minhash.json", "00000.parquet", "123456.parquet", "excluded/00000.parquet",
                 "excluded/.00001.parquet.77.tmp", "00000_000.ds", "00000_000.ds.index", "00000_000.json", ".stats.json.9.tmp"):
        (folder / name).write_bytes(b"")
    assert stage_folder_problem(folder, ["minhash"]) is None
    assert stage_folder_problem(tmp_path / "absent") is None
    reset_output(folder)
    assert not folder.exists()


@pytest.mark.parametrize("where", ["output", "input"])
def test_a_file_given_as_a_folder_is_exit_2(docs_in, tmp_path, where):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    args = (docs_in, afile) if where == "output" else (afile, tmp_path / "out")
    line = _one_line(_stage("exactdedup", *args))
    assert line == (f"error: --output {afile}: exists and is not a folder" if where == "output" else f"error: --input {afile}: not a folder")
    assert afile.read_text() == "keep me" and not (tmp_path / "out").exists()


def test_an_input_without_shards_is_an_empty_input_with_a_warning(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("x")
    p = _stage("exactdedup", tmp_path / "in", tmp_path / "out")
    assert p.returncode == 0 and "no Parquet document shards (*.parquet): 0 documents in" in p.stderr
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["docs_in"] == 0


# ---- 8. corrupt rows are counted exclusions; a file that is not a shard is named ----------------------
def test_null_text_id_and_bad_metadata_are_counted_exclusions(tmp_path):
    inp = tmp_path / "in"
    _shard(inp, [_doc(0), _doc(1, text=None), _doc(2, id=None), _doc(3, metadata="{not json"), _doc(4, metadata="[1, 2]")])
    _shard(inp, [_doc(5), _doc(6, text=None, metadata=None)], name="00001.parquet")
    out = tmp_path / "out"
    p = _cli("stage", "exactdedup", "--input", str(inp), "--output", str(out), "--workers", "2")
    assert p.returncode == 0, p.stderr[-2000:]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["docs_in"] == 7 and stats["docs_out"] + stats["docs_excluded"] == 7
    assert stats["excluded"] == {"corrupt:null_text": 2, "corrupt:null_id": 1, "corrupt:metadata": 2}
    excluded = {d.id: d for d in read_documents(out, excluded=True)}
    assert {d.metadata["reason"] for d in excluded.values()} == {"corrupt:null_text", "corrupt:null_id", "corrupt:metadata"}
    assert excluded["d1"].text == "" and excluded["00000.parquet#2"].metadata["reason"] == "corrupt:null_id"
    assert all(d.metadata["excluded_by"] == "exactdedup" for d in excluded.values())
    assert sorted(d.id for d in read_documents(out)) == ["d0", "d5"]


def test_a_column_of_nulls_only_is_counted_too(tmp_path):
    inp = tmp_path / "in"
    schema = pa.schema([("id", pa.string()), ("text", pa.null()), ("source", pa.large_string()), ("metadata", pa.string())])
    _shard(inp, [{"id": "a", "text": None, "source": "s", "metadata": "{}"}], schema=schema)
    record = run_standalone("exactdedup", inp, tmp_path / "out", workers=1)
    assert record["docs_in"] == 1 and record["excluded"] == {"corrupt:null_text": 1}


def test_null_text_reaches_tokenize_as_its_reason(tmp_path):
    from train.synthetic import stdlib_tokenizer

    root = tmp_path / "root"
    stdlib_tokenizer([f"line {i} of some text to learn pieces from" for i in range(200)], root / "tokenizer", 300)
    inp = tmp_path / "in"
    _shard(inp, [_doc(0), _doc(1, text=None), _doc(2, text="")])
    out = root / "tokens" / "custom"
    record = run_standalone("tokenize", inp, out, models_root=root, workers=1)
    assert record["docs_out"] == 1 and record["excluded"] == {"corrupt:null_text": 1, "empty": 1}
    assert stage_folder_problem(out) is None  # token shards are ours: --force may rerun it
    assert run_standalone("tokenize", inp, out, models_root=root, workers=1, force=True)["docs_out"] == 1


@pytest.mark.parametrize(
    "write, expected",
    [
        (lambda p: p.write_bytes(b"PAR1 this is not parquet at all"), "not a Parquet file ("),
        (lambda p: p.write_bytes(b""), "not a Parquet file ("),
        (lambda p: pq.write_table(pa.table({"id": ["a"], "body": ["x"], "source": ["s"], "metadata": ["{}"]}), p),
         "not a document shard: no column 'text'"),
        (lambda p: pq.write_table(pa.table({"id": ["a"], "text": [1], "source": ["s"], "metadata": ["{}"]}), p),
         "not a document shard: column 'text' is int64, not a string"),
    ],
)
def test_a_file_that_is_not_a_document_shard_is_named(tmp_path, write, expected):
    inp = tmp_path / "in"
    _shard(inp, [_doc(0)])
    bad = inp / "00001.parquet"
    write(bad)
    line = _one_line(_cli("stage", "exactdedup", "--input", str(inp), "--output", str(tmp_path / "out"), "--workers", "2"))
    assert line.startswith(f"error: {bad}: {expected}"), line
    assert not (tmp_path / "out").exists()  # refused before any task started


def test_a_shard_damaged_past_its_footer_is_named(tmp_path):
    from pipeline.documents import ParquetShardReader, ShardError

    inp = tmp_path / "in"
    path = _shard(inp, [_doc(i, text=f"{i} " + "unique words %d " % i * 50) for i in range(50)])
    data = bytearray(path.read_bytes())
    data[8:400] = b"\x00" * 392  # the first data page, footer intact
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=rf"^{path}: unreadable after row 0 "):
        list(ParquetShardReader([path]).run())


# ---- 8. `run` selections -------------------------------------------------------------------------------
@pytest.fixture
def manifest(tmp_path) -> Path:
    return drill_manifest(tmp_path / "m.yaml", tmp_path / "out", ["c4"])


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--stages", "nosuch"], "error: --stages: unknown stage(s) nosuch (known: "),
        (["--stages", "download,wikiref"], "error: --stages: no selected source has stage(s) wikiref"),
        (["--sources", "reddit"], "error: --sources: unknown source 'reddit' (manifest has: c4)"),
    ],
)
def test_run_selection_typo_is_exit_2_before_anything_runs(manifest, tmp_path, args, expected):
    assert _one_line(_cli("run", "--manifest", str(manifest), *args)).startswith(expected)
    assert not (tmp_path / "out").exists()


def test_run_prints_the_resolved_output_root(manifest, tmp_path):
    (tmp_path / "link").symlink_to(tmp_path, target_is_directory=True)
    raw = yaml.safe_load(manifest.read_text())
    raw["out_dir"] = str(tmp_path / "link" / "out")
    manifest.write_text(yaml.safe_dump(raw))
    p = _cli("run", "--manifest", str(manifest), "--executor", "slurm", "--dry-run")
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"output root: {tmp_path.resolve() / 'out' / 'sample'}" in p.stderr.splitlines()[0]
    assert {p.name for p in tmp_path.iterdir()} == {"m.yaml", "link", "out"}  # only the dry run's scripts, under out/


# ---- 6. the manifest: out_dir --------------------------------------------------------------------------
def _raw(tmp_path: Path) -> dict:
    return yaml.safe_load(drill_manifest(tmp_path / "m.yaml", tmp_path / "out", ["c4"]).read_text())


def _parse(raw: dict, tmp_path: Path):
    return parse(raw, path=tmp_path / "m.yaml")


@pytest.mark.parametrize(
    "out_dir, expected",
    [
        ("/", "out_dir: '/' is the filesystem root"),
        ("/etc", "out_dir: '/etc' is the system folder /etc"),
        ("/usr/local/corpus", "out_dir: '/usr/local/corpus' is inside the system folder /usr"),
        ("/proc/self/cwd", "inside the system folder /proc"),
        ("/var/lib/llamix", "inside the system folder /var"),
        ("/sys/../boot", "is the system folder /boot"),
        (str(REPO), "holds this project's source tree"),
        (str(REPO.parent), "holds this project's source tree"),
    ],
)
def test_out_dir_system_folders_and_the_source_tree_are_refused(tmp_path, out_dir, expected):
    raw = _raw(tmp_path)
    raw["out_dir"] = out_dir
    with pytest.raises(ManifestError) as e:
        _parse(raw, tmp_path)
    assert expected in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "inputs, out_dir, refused",
    [
        (["data/c4/*.json.gz"], ".", True),                   # the output root holds the inputs
        (["data/c4/*.json.gz"], "data", True),
        (["data/c4"], "data/c4/out", True),                   # a folder entry is read recursively
        (["data/**/*.json.gz"], "data/out", True),            # so is a recursive glob
        (["data/*"], "data/out", True),                       # a matched folder is read recursively
        ([{"url": "file://{tmp}/data/c4"}], "data/c4/out", True),
        (["data/c4/*.json.gz"], "data/c4/out", False),        # the glob cannot reach into out/
        (["data/c4/*.json.gz"], "elsewhere/out", False),
        (["https://example.org/c4.json.gz"], ".", False),     # remote inputs are not on this filesystem
    ],
)
def test_out_dir_overlapping_the_inputs_is_refused(tmp_path, inputs, out_dir, refused):
    (tmp_path / "data" / "c4").mkdir(parents=True)
    (tmp_path / "data" / "c4" / "c4-00000.json.gz").write_bytes(b"")
    raw = _raw(tmp_path)
    raw["sources"]["c4"]["inputs"]["sample"] = [{"url": e["url"].format(tmp=tmp_path)} if isinstance(e, dict) else e for e in inputs]
    raw["out_dir"] = out_dir
    if refused:
        with pytest.raises(ManifestError, match=r"^out_dir: .* overlaps input .* of sources\.c4"):
            _parse(raw, tmp_path)
    else:
        assert _parse(raw, tmp_path).out_dir == (tmp_path / out_dir).resolve()


def test_out_dir_elsewhere_scratch_and_home_are_accepted(tmp_path, monkeypatch):
    raw = _raw(tmp_path)
    raw["out_dir"] = "/var/tmp/llamix-test-out"  # never created: parse writes nothing
    assert _parse(raw, tmp_path).out_root == Path("/var/tmp/llamix-test-out/sample")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    raw["out_dir"] = "~/corpus"
    assert _parse(raw, tmp_path).out_dir == tmp_path / "home" / "corpus"


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    raw = _raw(tmp_path)
    raw["out_dir"] = "afile"
    with pytest.raises(ManifestError, match="exists and is not a folder"):
        _parse(raw, tmp_path)


def test_out_dir_root_on_the_command_line_is_exit_2(tmp_path):
    raw = _raw(tmp_path)
    raw["out_dir"] = "/"
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(raw))
    assert _one_line(_cli("run", "--manifest", str(tmp_path / "m.yaml"))) == "manifest error: out_dir: '/' is the filesystem root"


# ---- 6. the manifest: alias bombs, recursion, unknown parameters -----------------------------------------
def _bomb(levels: int = 9, width: int = 9) -> str:
    """A YAML flow list holding 'billion laughs' levels: the last one stands for width**levels strings."""
    parts = ["&l0 [" + ", ".join(["lol"] * width) + "]"]
    for k in range(1, levels):
        parts.append(f"&l{k} [" + ", ".join([f"*l{k - 1}"] * width) + "]")
    return "[" + ", ".join(parts) + "]"


def _manifest_with(tmp_path: Path, params: str, stage: str = "download") -> Path:
    """The c4 drill manifest with ``stage``'s parameters written as the YAML text ``params``."""
    raw = _raw(tmp_path)
    stages = raw["sources"]["c4"]["stages"]
    i = next(i for i, e in enumerate(stages) if e == stage or (isinstance(e, dict) and stage in e))
    stages[i] = {stage: "PARAMS"}
    text = yaml.safe_dump(raw, sort_keys=False).replace(f"{stage}: PARAMS", f"{stage}: {params}")
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("stage, key", [("download", "inputs"), ("langid", "languages")])
def test_alias_bomb_in_stage_params_is_refused_in_bounded_memory_and_time(tmp_path, stage, key):
    path = _manifest_with(tmp_path, f"{{{key}: {_bomb()}}}", stage)
    assert path.stat().st_size < 10_000
    p = _cli("run", "--manifest", str(path), "--stages", stage, timeout=60, limited=True)
    line = _one_line(p)
    assert line.startswith(f"manifest error: {path}: its YAML aliases expand to more than "), line
    assert not (tmp_path / "out").exists()


def test_moderate_aliases_are_still_accepted(tmp_path):
    path = _manifest_with(tmp_path, "{max_concurrency: &n 4, timeout: 30}")
    text = path.read_text().replace("download: {max_concurrency: 4}", "download: {max_concurrency: *n}")
    path.write_text(text)
    assert load(path).sources["c4"].stage("download").params["max_concurrency"] == 4


def test_recursive_alias_and_deep_nesting_are_one_line(tmp_path):
    path = _manifest_with(tmp_path, "{inputs: &r [*r]}")
    with pytest.raises(ManifestError, match=r"an alias refers to a value that contains it"):
        load(path)
    path.write_text("version: 1\nsources: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ManifestError, match=r"nested too deeply$"):
        load(path)


def test_oversized_manifest_is_refused_unread(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("version: 1\n" + "# padding\n" * 1_000_000)
    with pytest.raises(ManifestError, match=r"a manifest may have at most"):
        load(path)


def test_alias_bomb_in_a_set_value_is_refused_in_bounded_memory_and_time(docs_in, tmp_path):
    p = _stage("langid", docs_in, tmp_path / "out", "--set", f"languages={_bomb()}", timeout=60, limited=True)
    line = _one_line(p)
    assert line.startswith("error: langid.languages: the parameters take more than "), line
    p = _stage("langid", docs_in, tmp_path / "out", "--set", "languages=&r [*r]", timeout=60, limited=True)
    assert "langid.languages: a value that contains itself" in _one_line(p)
    assert not (tmp_path / "out").exists()


def test_params_size_bound_names_the_key():
    from pipeline.registry import stage_class

    shared = ["x" * 1000] * 10
    big = [shared] * 200  # 2 MB written out, 10 KB in memory
    with pytest.raises(ParamError, match=r"^inputs: the parameters take more than"):
        stage_class("download").check_params({"inputs": big})


def test_unknown_parameter_in_a_source_stage_is_one_line_naming_it(tmp_path):
    path = _manifest_with(tmp_path, "{max_concurency: 4}")
    line = _one_line(_cli("run", "--manifest", str(path)))
    assert line.startswith("manifest error: sources.c4.stages[0].download.max_concurency: unknown parameter (known: "), line
    assert not (tmp_path / "out").exists()


def test_nothing_written_outside_the_output_folder(docs_in, tmp_path):
    out = tmp_path / "out"
    before = {p for p in tmp_path.rglob("*")}
    run_standalone("exactdedup", docs_in, out, workers=1)
    after = {p for p in tmp_path.rglob("*")}
    assert all(out in p.parents or p == out for p in after - before)
    assert list_shards(out)
