"""Stage parameters: declared by each stage, checked when the manifest loads and before `stage --set` runs."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import params as P
from pipeline.manifest import DEFAULT_MANIFEST, ManifestError, load, parse
from pipeline.params import ParamError
from pipeline.registry import STAGES, stage_class

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def _raw() -> dict:
    return yaml.safe_load(DEFAULT_MANIFEST.read_text())


def _stage_params(raw: dict, source: str, stage: str) -> dict:
    stages = raw["sources"][source]["stages"]
    for i, entry in enumerate(stages):
        if entry == stage:
            stages[i] = {stage: {}}
            return stages[i][stage]
        if isinstance(entry, dict) and stage in entry:
            if entry[stage] is None:
                entry[stage] = {}
            return entry[stage]
    raise KeyError(stage)


# ---- the real manifest --------------------------------------------------------------------------
@pytest.mark.parametrize("profile", ["sample", "full"])
def test_real_manifest_loads_with_every_parameter_declared(profile):
    m = load(profile=profile, check_paths=profile == "sample")
    cc = m.sources["commoncrawl"]
    # the manifest's values, checked; defaults the stage runs with filled in
    assert cc.stage("langid").params == {"languages": ["en"], "threshold": 0.5, "batch_size": 512}
    assert cc.stage("perplexity").params["keep"] == ["head", "middle"]
    assert cc.stage("extract").params == {"extractor": "resiliparse"}
    assert m.sources["books"].stage("bookdedup").params["candidate_threshold"] == pytest.approx(0.7)
    assert m.sources["c4"].stage("quality").params == {"c4": True, "gopher_quality": True, "gopher_repetition": True, "language": "en"}
    assert m.models["wikiref_train"]["negative"] == [{"source": "commoncrawl", "after": "langid"}]
    assert m.models["tokenizer"]["vocab_size"] == (4000 if profile == "sample" else 32000)
    assert m.sources["c4"].stage("download").params == {"max_concurrency": 4 if profile == "sample" else 16}
    # checking a checked set changes nothing (stage objects check again when they are made)
    for name, spec in m.sources.items():
        for s in spec.stages:
            assert stage_class(s.name).check_params(s.params, source=name) == s.params
            assert stage_class(s.name)(s.params).params == s.params
    for name, values in m.models.items():
        assert stage_class(name).check_params(values) == values


def test_loading_the_manifest_imports_no_model_library():
    code = (
        "import sys\n"
        "from pipeline.manifest import load\n"
        "load(profile='sample'); load(profile='full', check_paths=False)\n"
        "heavy = {'torch', 'fasttext', 'kenlm', 'sentencepiece', 'transformers'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    p = subprocess.run([PY, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


def test_every_stage_declares_its_parameters():
    for name in STAGES:
        cls = stage_class(name)
        assert cls.PARAMS or cls.SOURCE_PARAMS, name
        for key, param in cls.params_spec().items():
            assert isinstance(param, P.Param), (name, key)


def test_extract_declarations_match_the_extractors():
    import importlib

    from ingest.commoncrawl import EXTRACTORS
    from ingest.extract import ExtractStage

    for source, declared in ExtractStage.SOURCE_PARAMS.items():
        module = importlib.import_module(f"ingest.{source}")
        cls = type(module.make_extractor({}))
        accepted = set(inspect.signature(cls).parameters) - {"work_dir"}  # work_dir: given by the stage
        assert set(declared) == accepted, source
    assert ExtractStage.SOURCE_PARAMS["commoncrawl"]["extractor"].choices == EXTRACTORS


# ---- bad values in the manifest: one line naming the key ----------------------------------------
def _bad(mutate) -> str:
    raw = _raw()
    mutate(raw)
    with pytest.raises(ManifestError) as e:
        parse(raw, path=DEFAULT_MANIFEST)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def _set(source, stage, **values):
    return lambda raw: _stage_params(raw, source, stage).update(values)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (_set("c4", "langid", threshold="x"), "sources.c4.stages[2].langid.threshold: expected a number in [0, 1], got 'x'"),
        (_set("commoncrawl", "langid", treshold=0.5),
         "sources.commoncrawl.stages[3].langid.treshold: unknown parameter (known: languages, threshold, batch_size)"),
        (_set("commoncrawl", "langid", languages=[]), "sources.commoncrawl.stages[3].langid.languages: expected a non-empty list of language codes"),
        (_set("commoncrawl", "perplexity", head=70), "sources.commoncrawl.stages[4].perplexity.head: the head percentile (70) is above the tail"),
        (_set("commoncrawl", "perplexity", keep=["head", "top"]), "perplexity.keep: expected a list drawn from head, middle, tail, got ['head', 'top']"),
        (_set("commoncrawl", "perplexity", tail=101), "perplexity.tail: expected a percentile in [0, 100], got 101"),
        (_set("commoncrawl", "extract", extractor="lynx"),
         "sources.commoncrawl.stages[1].extract.extractor: expected one of resiliparse, trafilatura, got 'lynx'"),
        (_set("c4", "extract", languages=["en"]), "sources.c4.stages[1].extract.languages: unknown parameter (known: tasks, task_mb, max_record_bytes"),
        (_set("wikipedia", "extract", languages="en", tasks=0), "sources.wikipedia.stages[1].extract.tasks: expected an integer >= 1, got 0"),
        (_set("github", "code_quality", max_line_length=-1), "code_quality.max_line_length: expected a number >= 0, got -1"),
        (_set("github", "exactdedup", prefix_bits=True), "sources.github.stages[3].exactdedup.prefix_bits: expected an integer in [0, 12], got True"),
        (_set("c4", "minhash", bands=2.5), "sources.c4.stages[4].minhash.bands: expected an integer in [1, 1024], got 2.5"),
        (_set("commoncrawl", "linededup", hash="md5"), "linededup.hash: expected one of sha1_64, xxh64, got 'md5'"),
        (_set("books", "bookdedup", candidate_threshold=2), "sources.books.stages[2].bookdedup.candidate_threshold: expected a number in [0, 1]"),
        (_set("c4", "quality", c4={"min_sentences": 3}), "sources.c4.stages[3].quality.c4.min_sentences: unknown option (known: "),
        (_set("c4", "quality", c4={"min_num_sentences": "five"}), "sources.c4.stages[3].quality.c4.min_num_sentences: expected a number, got 'five'"),
        (_set("c4", "quality", gopher_repetition="yes"), "quality.gopher_repetition: expected true, false or a mapping of options, got 'yes'"),
        (_set("c4", "quality", c4=False, gopher_quality=False, gopher_repetition=None), "sources.c4.stages[3].quality: every rule set is disabled"),
        (_set("c4", "tokenize", bos="yes"), "sources.c4.stages[5].tokenize.bos: expected true or false, got 'yes'"),
        (_set("c4", "download", timeout=0), "sources.c4.stages[0].download.timeout: expected a number > 0, got 0"),
        (lambda r: r["profiles"]["sample"]["params"]["linededup"].update(min_length="long"),
         "profiles.sample.params.linededup.min_length: expected an integer in [0, 1000000000], got 'long'"),
        (lambda r: r["profiles"]["sample"]["params"]["download"].update(max_concurency=4),
         "profiles.sample.params.download.max_concurency: unknown parameter"),
        (lambda r: r["profiles"]["sample"]["params"].update(quality=[1]), "profiles.sample.params.quality: must be a mapping"),
        (lambda r: r["models"]["tokenizer"].update(model_type="bpe2"), "models.tokenizer.model_type: expected one of bpe, unigram, char, word, got 'bpe2'"),
        (lambda r: r["models"]["lm"].update(lmplz_memory="lots"), "models.lm.lmplz_memory: expected a memory size such as 20% or 8G, got 'lots'"),
        (lambda r: r["profiles"]["sample"]["params"]["lm"].update(order=9), "profiles.sample.params.lm.order: expected an integer in [2, 6], got 9"),
        (lambda r: r["models"]["lm"].update(max_docs=0), "models.lm.max_docs: expected an integer >= 1, got 0"),
        (lambda r: r["models"]["wikiref_train"].update(negative={"source": "commoncrawl"}),
         "models.wikiref_train.negative: expected {source: NAME, after: STAGE}, got {'source': 'commoncrawl'}"),
        (lambda r: r["models"]["wikiref_train"]["positive"].append("books"), "models.wikiref_train.positive[2]: expected {source: NAME, after: STAGE}, got 'books'"),
        (lambda r: r["models"]["wikiref_train"].update(lr=0), "models.wikiref_train.lr: expected a number > 0, got 0"),
    ],
)
def test_bad_parameter_fails_at_load_naming_the_key(mutate, expected):
    assert expected in _bad(mutate)


def test_bad_parameter_cli_exit_code_2_and_one_line(tmp_path):
    from ops.drill import drill_manifest

    bad = drill_manifest(tmp_path / "bad.yaml", tmp_path / "out", params={"langid": {"threshold": "x"}})
    p = subprocess.run([PY, "-m", "pipeline", "run", "--manifest", str(bad)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert lines == ["manifest error: profiles.sample.params.langid.threshold: expected a number in [0, 1], got 'x'"], p.stderr
    assert not (tmp_path / "out").exists()  # nothing started


# ---- python -m pipeline stage --set ----------------------------------------------------------------
@pytest.mark.parametrize(
    "stage, sets, expected",
    [
        ("langid", ["threshold=x"], "error: langid.threshold: expected a number in [0, 1], got 'x'"),
        ("langid", ["treshold=0.5"], "error: langid.treshold: unknown parameter (known: languages, threshold, batch_size)"),
        ("quality", ["c4.min_sentences=3"], "error: quality.c4.min_sentences: unknown option (known: "),
        ("minhash", ["rows=0"], "error: minhash.rows: expected an integer in [1, 1024], got 0"),
        ("perplexity", ["head=70", "tail=60"], "error: perplexity.head: the head percentile (70) is above the tail percentile (60)"),
    ],
)
def test_stage_command_bad_set_is_exit_2_and_one_line(tmp_path, stage, sets, expected):
    (tmp_path / "in").mkdir()
    cmd = [PY, "-m", "pipeline", "stage", stage, "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    for s in sets:
        cmd += ["--set", s]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(expected), p.stderr
    assert not (tmp_path / "out").exists()  # failed before anything ran


def test_standalone_checks_before_looking_at_the_input(tmp_path):
    from pipeline.standalone import run_standalone

    with pytest.raises(ParamError, match=r"^exactdedup\.prefix_bits: expected an integer in \[0, 12\], got 13$"):
        run_standalone("exactdedup", tmp_path / "missing", tmp_path / "out", {"prefix_bits": 13})


def test_stage_objects_check_their_parameters():
    from filters.langid import LangIdStage
    from filters.perplexity import LMStage

    assert LangIdStage({"languages": "de"}).params == {"languages": ["de"], "threshold": 0.5, "batch_size": 512}
    with pytest.raises(ParamError, match=r"^threshold: expected a number in \[0, 1\], got 2$"):
        LangIdStage({"threshold": 2})
    assert LMStage({"lmplz_memory": 4096}).params["lmplz_memory"] == "4096"


# ---- the kinds --------------------------------------------------------------------------------
def test_kinds_check_and_normalise():
    spec = {
        "n": P.Int(1, 10, default=3),
        "x": P.Number(0),
        "f": P.Fraction(0.5),
        "c": P.Fraction(lambda v: v["f"] / 2),
        "lang": P.Languages(["en"]),
        "names": P.Names(("a", "b"), []),
        "on": P.Bool(True),
        "opt": P.Options(True),
        "m": P.Int(0, nullable=True),
    }
    assert P.check(spec, {"f": 1, "lang": "de", "opt": None}) == {
        "n": 3, "f": 1.0, "c": 0.5, "lang": ["de"], "names": [], "on": True, "opt": False}
    assert P.check(spec, {"x": 2, "m": None, "opt": {"k": 1}})["x"] == 2
    assert P.check(spec, {"m": None})["m"] is None
    bad = [({"n": True}, "n: expected an integer in [1, 10], got True"), ({"n": 5.0}, "n: expected an integer in [1, 10], got 5.0"),
           ({"x": float("nan")}, "x: expected a number >= 0, got nan"), ({"names": ["a", "z"]}, "names: expected a list drawn from a, b"),
           ({"on": 1}, "on: expected true or false, got 1"), ({"lang": [""]}, "lang: expected a non-empty list of language codes"),
           ({"zz": 1, "aa": 2}, "aa: unknown parameter (known: n, x, f, c, lang, names, on, opt, m)")]
    for params, message in bad:
        with pytest.raises(ParamError) as e:
            P.check(spec, params)
        assert str(e.value).startswith(message), str(e.value)
    with pytest.raises(ParamError, match="this stage takes no parameters"):
        P.check({}, {"a": 1})
    # defaults are copies: a stage that changes its list does not change the declaration
    first = P.check(spec, {})
    first["lang"].append("fr")
    assert P.check(spec, {})["lang"] == ["en"]


def test_error_keys_nest():
    e = ParamError("threshold", "expected a number in [0, 1], got 'x'").within("sources.c4.stages[2].langid")
    assert str(e) == "sources.c4.stages[2].langid.threshold: expected a number in [0, 1], got 'x'"
    assert str(ParamError("[1]", "bad").within("positive")) == "positive[1]: bad"
    assert str(ParamError("", "every rule set is disabled").within("quality")) == "quality: every rule set is disabled"
    assert json.dumps(P.shown("x" * 200)).count("x") < 100
