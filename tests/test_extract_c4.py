"""C4 extractor: golden check on data/sample/c4 and hostile JSON-lines files."""

import collections
import gzip
import json
import pathlib

import pytest

from ingest.c4 import C4Extractor, make_extractor
from ingest.extract import ExtractStage

SAMPLE = pathlib.Path(__file__).resolve().parents[1] / "data" / "sample" / "c4"


def _line(text, url="https://example.org/a", ts="2019-04-25T12:57:54Z") -> bytes:
    return (json.dumps({"text": text, "timestamp": ts, "url": url}) + "\n").encode()


def _reasons(docs):
    return collections.Counter(d.metadata.get("reason", "kept") for d in docs)


def test_golden_sample_file():
    (path,) = sorted(SAMPLE.glob("c4-train.*.json.gz"))
    docs = list(make_extractor({})(path))
    with gzip.open(path, "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    assert len(docs) == len(records) and _reasons(docs) == {"kept": len(records)}
    first = docs[0]
    assert first.id == "c4-train.00000-of-01024/1"
    assert first.text == records[0]["text"].strip()
    assert first.metadata == {"url": records[0]["url"], "timestamp": records[0]["timestamp"]}
    assert len({d.id for d in docs}) == len(docs)


def test_bad_lines_are_counted_and_the_rest_goes_on(tmp_path):
    lines = [
        _line("First good document."),
        b'{"text": "unterminated\n',
        b"[1, 2, 3]\n",
        b'{"url": "https://example.org/no-text"}\n',
        b"\n",  # blank: not a record
        _line("   "),
        b'{"text": "caf\xe9 \xff ok", "url": "u", "timestamp": "t"}\n',
        b'{"text": "lone \\ud800 surrogate"}\n',
        _line("Last good document.", url="https://example.org/z"),
    ]
    path = tmp_path / "c4-train.00001-of-01024.json.gz"
    path.write_bytes(gzip.compress(b"".join(lines)))
    docs = list(C4Extractor()(path))
    assert [d.metadata.get("reason", "kept") for d in docs] == [
        "kept", "bad_json", "bad_json", "bad_json", "empty", "kept", "kept", "kept",
    ]  # fmt: skip
    assert [d.id.split("/")[1] for d in docs] == ["1", "2", "3", "4", "6", "7", "8", "9"]
    assert docs[5].metadata["utf8_errors"] == 2 and docs[5].text == "caf\ufffd \ufffd ok"
    assert docs[6].metadata["utf8_errors"] == 1 and docs[6].text.encode("utf-8")  # writable as UTF-8
    assert docs[-1].metadata["url"] == "https://example.org/z"


def test_truncated_and_corrupt_gzip(tmp_path):
    blob = gzip.compress(b"".join(_line(f"Document number {i} " * 20) for i in range(300)))
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(blob[: len(blob) // 2])
    docs = list(C4Extractor()(cut))
    assert docs[-1].id == "cut.json.gz" and docs[-1].metadata["reason"] == "truncated:gzip"
    assert len(docs) > 1 and all("reason" not in d.metadata for d in docs[:-1])
    bad = bytearray(blob)
    bad[len(bad) // 3 : len(bad) // 3 + 64] = b"\x00" * 64
    corrupt = tmp_path / "corrupt.json.gz"
    corrupt.write_bytes(bytes(bad))
    last = list(C4Extractor()(corrupt))[-1]
    assert last.metadata["reason"] in ("corrupt:gzip", "truncated:gzip")


def test_huge_line_is_too_large_not_loaded(tmp_path):
    path = tmp_path / "huge.json"  # (safeio's tests stream a 3 GiB line; here a real sparse file)
    with open(path, "wb") as f:  # sparse: a 256 MiB line of NULs between two good lines
        f.write(_line("before"))
        f.seek(1 << 28)
        f.write(b"\n" + _line("after"))
    docs = list(C4Extractor(max_record_bytes=1 << 20)(path))
    assert [d.metadata.get("reason", "kept") for d in docs] == ["kept", "too_large", "kept"]
    assert docs[1].metadata["size"] == (1 << 28) - len(_line("before")) + 1 and docs[2].text == "after"


def test_decompression_bomb_is_capped(tmp_path):
    path = tmp_path / "bomb.json.gz"
    path.write_bytes(gzip.compress(_line("x" * (8 << 20))))
    (doc,) = C4Extractor(max_expanded_bytes=1 << 20)(path)
    assert doc.metadata["reason"] == "too_large"


def test_accepts_and_params(tmp_path):
    (tmp_path / "c4-train.00000-of-01024.json.gz").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"")
    ex = C4Extractor()
    assert ex.accepts(tmp_path / "c4-train.00000-of-01024.json.gz")
    assert not ex.accepts(tmp_path / "notes.txt") and not ex.accepts(tmp_path)
    with pytest.raises(ValueError, match="langs: unknown parameter"):
        ExtractStage.check_params({"langs": ["en"]}, source="c4")


def test_file_without_records_is_one_exclusion(tmp_path):
    path = tmp_path / "blank.json.gz"
    path.write_bytes(gzip.compress(b"\n\n  \n"))
    (doc,) = C4Extractor()(path)
    assert doc.id == "blank.json.gz" and doc.metadata["reason"] == "empty_file"
