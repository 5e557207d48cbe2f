"""arXiv extractor: main-file choice, includes, comments, body selection, macro expansion with
arguments, hostile sources. Golden tests run on the real LaTeX in data/sample/arxiv."""

import gzip
import io
import pathlib
import tarfile

import pytest

from ingest.arxiv import make_extractor
from ingest.latex_cleaning import collect_macros, expand_macros, remove_comments

SAMPLE = pathlib.Path(__file__).resolve().parent.parent / "data" / "sample" / "arxiv"
needs_sample = pytest.mark.skipif(not SAMPLE.exists(), reason="data/sample/arxiv not present")


def _docs(path, **params):
    return list(make_extractor(params)(path))


def _one(path, **params):
    docs = _docs(path, **params)
    assert len(docs) == 1, [(d.id, d.metadata) for d in docs]
    return docs[0]


def _tar(path, files: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


PREAMBLE = "\\documentclass{article}\n"


def _paper(tmp_path, body: str, preamble: str = "", name="p.tex"):
    path = tmp_path / name
    path.write_text(PREAMBLE + preamble + "\\begin{document}\n\\maketitle\nAbstract here.\n" + body + "\n\\end{document}\n")
    return path


@needs_sample
def test_sample_testmath_golden():
    doc = _one(SAMPLE / "testmath.tex")
    assert doc.id == "testmath" and doc.metadata["main_file"] == "testmath.tex"
    assert doc.text.startswith("\\section{Introduction}")  # title, abstract, preamble gone
    assert "\\begin{thebibliography}" not in doc.text and "\\bibitem" not in doc.text
    assert "\\newcommand" not in doc.text
    # \newcommand{\thmref}[1]{Theorem~\ref{#1}} is used with an argument in the paper
    assert "\\thmref" not in doc.text and "Theorem~\\ref{" in doc.text
    assert doc.metadata["macros_expanded"] > 100 and doc.metadata["macros_defined"] >= 27
    source = (SAMPLE / "testmath.tex").read_text()
    assert source.count("\n%") > 50 and "\n%" not in doc.text.split("\\begin{verbatim}")[0]


@needs_sample
def test_sample_technote_verbatim_trap():
    """technote's \\def/\\newcommand occur inside |...| short-verb text: never definitions."""
    doc = _one(SAMPLE / "technote.tex")
    assert "|\\def\\bal#1\\eal{\\begin{align}#1\\end{align}}|" in doc.text
    assert "|\\newcommand{\\env}[2]{\\begin{#1}#2\\end{#1}}|" in doc.text


@needs_sample
def test_sample_clsguide_multifile_tarball():
    doc = _one(SAMPLE / "clsguide.tar.gz")
    assert doc.id == "clsguide" and doc.metadata["main_file"] == "clsguide/main.tex"
    assert doc.metadata["includes"] == 7 and doc.metadata["files"] == 8
    assert doc.text.startswith("\\section{Introduction}")
    assert "\\input{sec0" not in doc.text and "\\begin{thebibliography}" not in doc.text
    # sec04 quotes |\begin{document}| and |\end{document}|: short verb, so the text goes on after it
    assert "|\\begin{document}| or |\\end{document}|" in doc.text


@needs_sample
def test_sample_encguide():
    doc = _one(SAMPLE / "encguide.tex")
    assert doc.text.startswith("\\section") and "\\bibitem" not in doc.text


def test_macros_with_arguments_defaults_nesting_and_fixpoint():
    macros, rest = collect_macros(
        "\\newcommand{\\R}{\\mathbb{R}}\n"
        "\\newcommand{\\norm}[1]{\\left\\| #1 \\right\\|}\n"
        "\\newcommand{\\pair}[2][x]{(#1, #2)}\n"
        "\\renewcommand*\\vec[1]{\\mathbf{#1}}\n"
        "\\def\\inner#1#2{\\langle #1, #2 \\rangle}\n"
        "\\def\\both#1{\\norm{#1} + \\inner{#1}{#1}}\n"
        "\\providecommand{\\R}{WRONG}\n"
        "\\newcommand{\\me}{\\me!}\n"
        "\\def\\delim#1.{never}\n"
        "text\n"
    )
    assert set(macros) == {"\\R", "\\norm", "\\pair", "\\vec", "\\inner", "\\both"}
    assert rest.strip().endswith("text") and "\\newcommand" not in rest
    text, n = expand_macros(
        "$\\R^n$, $\\norm{\\vec{x_{i}}}$, $\\pair{y}$, $\\pair[z]{{a}{b}}$, $\\both{v}$, \\inner a b, \\Real, \\me",
        macros, max_passes=10, max_chars=10_000,
    )
    assert text == ("$\\mathbb{R}^n$, $\\left\\| \\mathbf{x_{i}} \\right\\|$, $(x, y)$, $(z, {a}{b})$, "
                    "$\\left\\| v \\right\\| + \\langle v, v \\rangle$, \\langle a, b \\rangle, \\Real, \\me")
    assert n >= 8


def test_mutually_recursive_macros_stop_at_the_caps():
    macros, _ = collect_macros("\\newcommand{\\a}{x\\b}\\newcommand{\\b}{y\\a}")
    text, n = expand_macros("\\a", macros, max_passes=10, max_chars=10_000)
    assert n == 10 and text.startswith("xyxy")
    text, _ = expand_macros("\\a" * 50, macros, max_passes=100, max_chars=500)
    assert len(text) <= 500


def test_comments():
    src = "a % comment\n% whole line\n50\\% kept % gone\n\\\\% after a line break\nend\n"
    assert remove_comments(src) == "a\n50\\% kept\n\\\\\nend\n"
    assert remove_comments("x\n\\begin{comment}\nhidden\n\\end{comment}\ny") == "x\ny"


def test_paper_pipeline_on_a_tarball(tmp_path):
    main = (PREAMBLE + "\\newcommand{\\kw}[1]{\\textbf{#1}}\n\\begin{document}\nAbstract.\n"
            "\\section{Intro}\nWe use \\kw{cats}. % hidden remark\n"
            "\\begin{verbatim}\n100% \\kw{raw}\n\\end{verbatim}\n"
            "\\input{parts/two}\n\\include{three.tex}\n\\input{../outside}\n"
            "\\bibliographystyle{plain}\n\\bibliography{refs}\n\\section{After}\nnot kept\n\\end{document}\n")
    path = _tar(tmp_path / "2101.00001.tar.gz", {
        "main.tex": main.encode(),
        "parts/two.tex": b"\\subsection{Two}\nSecond \\kw{dogs}.\n",
        "three.tex": b"Third.\n",
        "notes.tex": b"\\documentclass{article}\n\\begin{document}\\section{x}\\end{document}",  # smaller: not main
        "fig.png": b"\x89PNG",
    })
    doc = _one(path)
    assert doc.id == "2101.00001" and doc.metadata["main_file"] == "main.tex"
    assert doc.text == ("\\section{Intro}\nWe use \\textbf{cats}.\n"
                        "\\begin{verbatim}\n100% \\kw{raw}\n\\end{verbatim}\n"
                        "\\subsection{Two}\nSecond \\textbf{dogs}.\n\nThird.\n\n\\input{../outside}\n")
    assert doc.metadata["includes"] == 2 and doc.metadata["macros_expanded"] == 2


def test_reasons_no_section_no_main_loop_depth(tmp_path):
    assert _one(_paper(tmp_path, "Just text, no sections.")).metadata["reason"] == "no_section"
    plain = tmp_path / "chapter.tex"
    plain.write_text("\\section{A} no documentclass here\n")
    assert _one(plain).metadata["reason"] == "no_main"
    looped = _paper(tmp_path, "\\section{A}\n\\input{p}\n")  # the file \inputs itself
    doc = _one(looped)
    assert doc.metadata["reason"] == "include_loop" and "p.tex -> p.tex" in doc.metadata["detail"]
    cycle = _tar(tmp_path / "cycle.tar.gz", {
        "main.tex": (PREAMBLE + "\\begin{document}\\section{A}\\input{a}\\end{document}").encode(),
        "a.tex": b"\\input{b}", "b.tex": b"\\input{a.tex}",
    })
    assert _one(cycle).metadata["reason"] == "include_loop"
    files = {"main.tex": (PREAMBLE + "\\begin{document}\\section{A}\\input{f0}\\end{document}").encode()}
    files.update({f"f{i}.tex": f"\\input{{f{i + 1}}}".encode() for i in range(30)})
    assert _one(_tar(tmp_path / "deep.tar.gz", files), max_include_depth=8).metadata["reason"] == "include_depth"


def test_hostile_archives_and_files(tmp_path):
    path = _tar(tmp_path / "evil.tar.gz", {
        "../../evil.tex": b"\\documentclass{x}",
        "/abs.tex": b"x",
        "main.tex": (PREAMBLE + "\\begin{document}\\section{A} ok \xff\\end{document}").encode("latin-1"),
    })
    docs = _docs(path)
    assert [(d.id, d.metadata.get("reason")) for d in docs] == [
        ("evil/../../evil.tex", "unsafe_path"), ("evil//abs.tex", "unsafe_path"), ("evil", None)]
    assert docs[-1].metadata["utf8_errors"] == 1
    blob = path.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(blob[: len(blob) // 3])
    docs = _docs(tmp_path / "cut.tar.gz")
    assert docs[-1].metadata["reason"] in ("corrupt:tar", "no_main")
    assert any(d.metadata.get("reason") == "corrupt:tar" for d in docs)
    (tmp_path / "bad.tex.gz").write_bytes(gzip.compress(b"\\documentclass{article}")[:-8])
    assert [(d.id, d.metadata["reason"]) for d in _docs(tmp_path / "bad.tex.gz")] == [("bad.tex.gz", "truncated:gzip")]
    huge = tmp_path / "huge.tex"
    with open(huge, "wb") as f:  # 3 GiB single line, sparse
        f.truncate(3 << 30)
    assert [d.metadata["reason"] for d in _docs(huge, max_record_bytes=1 << 20)] == ["too_large"]


def test_macro_bomb_is_capped(tmp_path):
    """\\a -> \\b\\b -> ... doubles each level: the size cap stops it, the paper is still kept."""
    defs = "".join(f"\\newcommand{{\\m{chr(97 + i)}}}{{\\m{chr(98 + i)}\\m{chr(98 + i)}}}\n" for i in range(20))
    doc = _one(_paper(tmp_path, "\\section{A}\n\\ma\n", preamble=defs), max_record_bytes=100_000)
    assert "reason" not in doc.metadata and len(doc.text) <= 100_000


def test_bulk_tar_of_gzipped_papers(tmp_path):
    """arXiv's S3 bulk tars hold <yymm>/<id>.gz: a gzipped tar of sources or a gzipped .tex."""
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w") as tar:
        for name, data in {"main.tex": (PREAMBLE + "\\begin{document}\\input{s}\\end{document}").encode(),
                           "s.tex": b"\\section{One}\nfrom a tarred paper\n", "../x.tex": b"evil"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    single = (PREAMBLE + "\\begin{document}\\section{Two}\nfrom a gzipped tex\n\\end{document}").encode()
    bulk = _tar(tmp_path / "arXiv_src_2101_001.tar", {
        "2101/2101.00001.gz": gzip.compress(inner.getvalue()),
        "2101/2101.00002.gz": gzip.compress(single),
        "2101/2101.00003.pdf": b"%PDF-1.4",
        "2101/2101.00004.gz": gzip.compress(single)[:-10],
    })
    docs = _docs(bulk)
    assert [(d.id, d.metadata.get("reason")) for d in docs] == [
        ("2101.00001/../x.tex", "unsafe_path"), ("2101.00001", None), ("2101.00002", None),
        ("2101.00003", "no_source"), ("2101.00004", "truncated:gzip")]
    assert docs[1].text == "\\section{One}\nfrom a tarred paper\n" and docs[1].metadata["main_file"] == "main.tex"
    assert docs[2].text == "\\section{Two}\nfrom a gzipped tex\n"


def test_any_tex_soup_gives_one_accounted_document():
    """Unbalanced braces, dangling macros, stray % and \\verb: never an exception, always one record."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ingest.arxiv import Paper

    pieces = st.sampled_from(["{", "}", "[", "]", "#1", "#", "%", "\\%", "\\\\", "\\verb|", "|", "\n", " ", "x",
                              "\\newcommand{\\a}[1][d]{<#1>}", "\\def\\b#1{\\a{#1}}", "\\a", "\\b", "\\section{S}",
                              "\\input{main}", "\\begin{verbatim}", "\\end{verbatim}", "\\bibliography{r}",
                              "\\documentclass{article}", "\\begin{document}", "\\end{document}"])

    @settings(max_examples=150, deadline=None)
    @given(st.lists(pieces, max_size=60))
    def check(parts):
        doc = make_extractor({}).convert(Paper("fuzz", {"main.tex": "".join(parts)}))
        assert doc.id == "fuzz" and (doc.metadata.get("reason") or doc.text.strip())

    check()


def test_macros_from_the_papers_own_sty(tmp_path):
    path = _tar(tmp_path / "sty.tar.gz", {
        "main.tex": (PREAMBLE + "\\usepackage[utf8]{inputenc}\n\\usepackage{amsmath, mymacros}\n"
                     "\\newcommand{\\own}{paper's}\n\\begin{document}\n\\section{A}\n\\vv{x} and \\own{} \\own\n"
                     "\\end{document}\n").encode(),
        "mymacros.sty": b"\\ProvidesPackage{mymacros}\n\\newcommand{\\vv}[1]{\\mathbf{#1}}\n"
                        b"\\newcommand{\\own}{sty's}\n",
    })
    doc = _one(path)
    assert doc.metadata["main_file"] == "main.tex"
    assert doc.text == "\\section{A}\n\\mathbf{x} and paper's{} paper's\n"


def test_expansion_never_glues_a_control_word_to_following_letters():
    macros, _ = collect_macros("\\newcommand{\\op}[1]{#1\\cdot}\\newcommand{\\e}{\\epsilon}")
    assert expand_macros("\\op{a}b and \\e{}x and \\e x", macros, 10, 1000)[0] == "a\\cdot b and \\epsilon{}x and \\epsilon x"
