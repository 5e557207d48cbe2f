"""GitHub extractor: licence gate, extension allow-list, header stripping, hostile repositories.
Golden tests run on the real repositories in data/sample/github (see data/sample/SOURCES.md)."""

import collections
import io
import os
import pathlib
import tarfile

import pytest

from ingest.extract import ExtractStage
from ingest.github import detect_licence, make_extractor, strip_licence_header

SAMPLE = pathlib.Path(__file__).resolve().parent.parent / "data" / "sample" / "github"
MIT = (SAMPLE / "six" / "LICENSE").read_text() if (SAMPLE / "six" / "LICENSE").exists() else None
needs_sample = pytest.mark.skipif(not SAMPLE.exists(), reason="data/sample/github not present")


def _run(path, **params):
    docs = list(make_extractor(params)(path))
    return docs, {d.id: d for d in docs}


def _reasons(docs):
    return collections.Counter(d.metadata.get("reason") for d in docs)


@needs_sample
@pytest.mark.parametrize(
    "repo, licence",
    [("six", "mit"), ("msgpack-python", "apache-2.0"), ("pip", "mit"), ("pygments", "bsd-2-clause"),
     ("idna", "bsd-3-clause"), ("underscore", "mit"), ("transformers", "apache-2.0"),
     ("python-apt", "gpl-2.0"), ("certifi", "mpl-2.0"), ("markupsafe.tar.gz", "bsd-3-clause")],
)
def test_sample_repository_licences(repo, licence):
    docs, _ = _run(SAMPLE / repo)
    assert docs and {d.metadata["licence"] for d in docs} == {licence}
    if licence in ("gpl-2.0", "mpl-2.0"):
        assert _reasons(docs) == {f"licence:{licence}": len(docs)}  # every file of the repo excluded
    else:
        assert _reasons(docs)[None] >= 1


@needs_sample
def test_sample_transformers_headers_stripped_and_metadata():
    docs, by_id = _run(SAMPLE / "transformers")
    doc = by_id["transformers/src/transformers/models/llama/modeling_llama.py"]
    original = (SAMPLE / "transformers/src/transformers/models/llama/modeling_llama.py").read_text()
    assert "Licensed under the Apache License" in original[:2000]
    assert "Licensed under the Apache License" not in doc.text[:2000]
    assert doc.text.strip() and doc.text.strip() in original  # only a prefix was removed
    assert doc.metadata["header_stripped"] is True
    assert doc.metadata["language"] == "python" and doc.metadata["repo"] == "transformers"
    assert doc.metadata["size"] == len(original.encode())
    assert by_id["transformers/LICENSE"].metadata["reason"] == "licence_file"


@needs_sample
def test_sample_archive_repository_strips_top_folder():
    docs, by_id = _run(SAMPLE / "markupsafe.tar.gz")
    assert "markupsafe/src/markupsafe/__init__.py" in by_id  # repo = archive stem, top folder dropped
    assert by_id["markupsafe/LICENSE.txt"].metadata["reason"] == "licence_file"


@needs_sample
def test_sample_pip_vendored_paths_and_extensions():
    docs, by_id = _run(SAMPLE / "pip")
    assert by_id["pip/src/pip/_vendor/msgpack/fallback.py"].metadata["language"] == "python"
    # vendored licence files are not at the repository root: not licence gates, just no extension
    assert by_id["pip/src/pip/_vendor/msgpack/COPYING"].metadata["reason"] == "extension"


def test_licence_phrases():
    apache = "                                 Apache License\n                           Version 2.0, January 2004\n"
    gpl3 = "                    GNU GENERAL PUBLIC LICENSE\n                       Version 3, 29 June 2007\n"
    lgpl = "GNU LESSER GENERAL PUBLIC LICENSE\n Version 2.1, February 1999\n"
    mpl = "Mozilla Public License Version 2.0\n==================================\n" \
          "... the GNU General Public License, Version 2.0, the GNU Lesser General Public License ..."
    bsd2 = "Redistribution and use in source and binary forms, with or without modification, are permitted"
    bsd3 = bsd2 + " ... Neither the name of the copyright holder nor the names of its contributors may be used" \
                  " to endorse or promote products derived from this software"
    assert detect_licence(apache) == "apache-2.0"
    assert detect_licence(gpl3) == "gpl-3.0"
    assert detect_licence(lgpl) == "lgpl-2.1"
    assert detect_licence(mpl) == "mpl-2.0"  # MPL cites the GPLs later: the first licence wins
    assert detect_licence("GNU AFFERO GENERAL PUBLIC LICENSE\nVersion 3, 19 November 2007") == "agpl-3.0"
    assert detect_licence(bsd2) == "bsd-2-clause" and detect_licence(bsd3) == "bsd-3-clause"
    assert detect_licence("PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2\n ... GNU General Public License (GPL)") == "psf-2.0"
    assert detect_licence("All rights reserved. Do not copy.") == "unknown"
    if MIT:
        assert detect_licence(MIT) == "mit"


@pytest.mark.parametrize(
    "language, text, expected, stripped",
    [
        ("python", "#!/usr/bin/env python\n# Copyright 2020 A\n# Licensed under MIT\n\nimport os\n",
         "#!/usr/bin/env python\nimport os\n", True),
        ("python", '"""\n:copyright: 2006 by the Pygments team\n:license: BSD\n"""\nimport re\n', "import re\n", True),
        ("python", '"""Parse things quickly."""\nimport re\n', '"""Parse things quickly."""\nimport re\n', False),
        ("python", "# build helper\nimport os\n", "# build helper\nimport os\n", False),
        ("c", "/*\n * Copyright (c) 2019 X\n * SPDX-License-Identifier: MIT\n */\n// Permission is hereby granted\n\n"
              "#include <x.h>\n", "#include <x.h>\n", True),
        ("c", "/* fast hash table */\n/* Copyright 2019 */\nint x;\n", "/* fast hash table */\n/* Copyright 2019 */\nint x;\n", False),
        ("html", "<!-- Copyright 2020 me -->\n<html></html>\n", "<html></html>\n", True),
        ("php", "<?php\n/* Licensed under the GPL */\necho 1;\n", "<?php\necho 1;\n", True),
        ("markdown", "# Copyright notice is a heading here\n", "# Copyright notice is a heading here\n", False),
    ],
)
def test_header_stripping(language, text, expected, stripped):
    assert strip_licence_header(text, language) == (expected, stripped)


def _write_repo(root: pathlib.Path, licence: str | None, files: dict[str, bytes]):
    root.mkdir(parents=True)
    if licence is not None:
        (root / "LICENSE").write_text(licence)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


MIT_TEXT = ('Permission is hereby granted, free of charge, to any person obtaining a copy ... '
            'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND')


def test_folder_repository_reasons(tmp_path):
    repo = _write_repo(tmp_path / "r", MIT_TEXT, {
        "a.py": b"# Copyright 2024 Me\n\nprint('hi')\n",
        "img.png": b"\x89PNG",
        "bin.c": b"int x;\x00\x00",
        "empty.py": b"   \n",
        "bad.py": b"x = '\xff\xfe'\n",
        "Makefile": b"all:\n\techo hi\n",
        ".git/objects/ab": b"blob",
    })
    os.symlink("/etc/passwd", repo / "evil.py")
    docs, by_id = _run(repo)
    assert {d.id: d.metadata.get("reason") for d in docs} == {
        "r/LICENSE": "licence_file", "r/Makefile": None, "r/a.py": None, "r/bad.py": None, "r/bin.c": "binary",
        "r/empty.py": "empty", "r/evil.py": "unsafe_path", "r/img.png": "extension",
    }
    assert by_id["r/a.py"].text == "print('hi')\n" and by_id["r/a.py"].metadata["header_stripped"]
    assert by_id["r/bad.py"].metadata["utf8_errors"] == 2 and "\ufffd" in by_id["r/bad.py"].text
    assert by_id["r/Makefile"].metadata["language"] == "makefile"


def test_unlicensed_and_gpl_repositories_excluded(tmp_path):
    none = _write_repo(tmp_path / "nolicence", None, {"a.py": b"x = 1\n"})
    assert [d.metadata["reason"] for d in _run(none)[0]] == ["licence:none"]
    odd = _write_repo(tmp_path / "odd", "Do what you like.", {"a.py": b"x = 1\n"})
    assert _reasons(_run(odd)[0]) == {"licence:unknown": 2}  # the LICENSE file and a.py
    dual = _write_repo(tmp_path / "dual", MIT_TEXT, {"a.py": b"x = 1\n"})
    (dual / "COPYING").write_text("GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007\n")
    assert _reasons(_run(dual)[0]) == {"licence:gpl-3.0": 3}  # every licence file must be permissive


def test_extension_allow_list_param(tmp_path):
    repo = _write_repo(tmp_path / "r", MIT_TEXT, {"a.py": b"x = 1\n", "b.rs": b"fn main() {}\n"})
    docs, by_id = _run(repo, extensions=[".rs"])
    assert by_id["r/a.py"].metadata["reason"] == "extension" and "reason" not in by_id["r/b.rs"].metadata


def test_huge_sparse_file_is_too_large(tmp_path):
    repo = _write_repo(tmp_path / "r", MIT_TEXT, {"small.py": b"x = 1\n"})
    with open(repo / "huge.py", "wb") as f:  # a 3 GiB single "line", sparse: no disk used
        f.truncate(3 << 30)
    docs, by_id = _run(repo, max_record_bytes=1 << 20)
    assert by_id["r/huge.py"].metadata["reason"] == "too_large"
    assert "reason" not in by_id["r/small.py"].metadata


def _tar_repo(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            if kind == tarfile.SYMTYPE:
                info.linkname = "/etc/passwd"
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return path


def test_archive_repository_hostile_members_and_truncation(tmp_path):
    reg, sym = tarfile.REGTYPE, tarfile.SYMTYPE
    path = _tar_repo(tmp_path / "proj.tar.gz", [
        ("proj-abc123/src/a.py", b"x = 1\n" * 2000, reg),
        ("proj-abc123/../../escape.py", b"evil", reg),
        ("proj-abc123/link.py", b"", sym),
        ("proj-abc123/LICENSE", MIT_TEXT.encode(), reg),  # after the code: needs the survey pass
        ("proj-abc123/zz.py", b"y = 2\n", reg),
    ])
    docs, by_id = _run(path)
    assert {d.id: d.metadata.get("reason") for d in docs} == {
        "proj/src/a.py": None, "proj/../../escape.py": "unsafe_path",
        "proj/link.py": "unsafe_path", "proj/LICENSE": "licence_file", "proj/zz.py": None,
    }
    assert by_id["proj/src/a.py"].metadata["licence"] == "mit"
    blob = path.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(blob[: len(blob) - 30])
    docs, _ = _run(cut)
    assert docs[-1].id == "cut.tar.gz" and docs[-1].metadata["reason"] == "corrupt:tar"
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"\x1f\x8b\x08" + os.urandom(200))
    assert [(d.id, d.metadata["reason"]) for d in _run(garbage)[0]] == [("garbage.tar.gz", "corrupt:tar")]


def test_params_and_symlinked_entries(tmp_path):
    with pytest.raises(ValueError, match="licenses: unknown parameter"):
        ExtractStage.check_params({"licenses": ["mit"]}, source="github")  # a typo must not silently mean "default licences"
    repo = _write_repo(tmp_path / "r", MIT_TEXT, {"a.py": b"x = 1\n"})
    os.symlink(repo, tmp_path / "alias")
    assert make_extractor({}).accepts(repo) and not make_extractor({}).accepts(tmp_path / "alias")
    assert len(list(make_extractor({})(repo))) == 2  # the licence file (excluded) and a.py


def test_redpajama_jsonl_files(tmp_path):
    import gzip
    import json

    def rec(repo, path, licence, text):
        return json.dumps({"text": text, "meta": {"repo_name": repo, "path": path, "license": licence,
                                                   "language": [{"name": "Python", "bytes": len(text)}]}})

    lines = [
        rec("a/b", "src/x.py", "mit", "# Copyright 2020 A\n# Licensed under MIT\nimport os\n"),
        rec("a/b", "LICENSE", "mit", "Permission is hereby granted, free of charge"),
        rec("c/d", "y.py", "gpl-3.0", "x = 1\n"),
        rec("c/e", "z.bin", "apache-2.0", "x"),
        "{not json",
        "",
        '{"text": "no meta"}',
        rec("f/g", "w.py", "bsd-3-clause", "s = '\ud800'\n"),  # a lone surrogate from a JSON escape
    ]
    path = tmp_path / "filtered_0001.sampled.jsonl.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    ex = make_extractor({})
    assert ex.accepts(path)
    docs = list(ex(path))
    assert [(d.id, d.metadata.get("reason")) for d in docs] == [
        ("a/b/src/x.py", None), ("a/b/LICENSE", "licence_file"), ("c/d/y.py", "licence:gpl-3.0"),
        ("c/e/z.bin", "extension"), ("filtered_0001/5", "bad_json"), ("filtered_0001/7", "bad_json"),
        ("f/g/w.py", None)]
    assert docs[0].text == "import os\n" and docs[0].metadata["header_stripped"]
    assert docs[-1].metadata["utf8_errors"] == 1 and "\ufffd" in docs[-1].text
    path.write_bytes(gzip.compress(("\n".join(lines)).encode())[:-20])
    assert list(ex(path))[-1].metadata["reason"] == "truncated:gzip"
