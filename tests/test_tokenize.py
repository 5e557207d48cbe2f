"""LLaMA tokenizer settings and token shards in datatrove's layout, on real sample text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datatrove.data import Document
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.documents import ParquetShardWriter
from pipeline.executors import make_executor
from pipeline.stages import StageIO
from pipeline.standalone import run_standalone
from storage.checksum import sha256_file
from tokenizer.shards import open_shard
from tokenizer.spm import load_tokenizer
from tokenizer.stages import TokenizerStage

REPO = Path(__file__).resolve().parent.parent
BOOKS = sorted((REPO / "data/sample/books").glob("*.txt"))


def _write_docs(folder: Path, docs: list[Document], rank: int = 0) -> None:
    writer = ParquetShardWriter(folder)
    list(writer.run(iter(docs), rank=rank))


def _book_docs(source: str) -> list[Document]:
    docs = []
    for path in BOOKS:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for i in range(0, len(lines), 8):  # documents of 8 lines of real prose
            text = "\n".join(lines[i : i + 8])
            if text.strip():
                docs.append(Document(text=text, id=f"{path.stem}/{i}", metadata={"source": source}))
    return docs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tok")
    docs = _book_docs("books")
    assert len(docs) > 500
    src = root / "extract" / "books"
    _write_docs(src, docs[: len(docs) // 2], rank=0)
    _write_docs(src, docs[len(docs) // 2 :], rank=1)
    return {"root": root, "src": src, "docs": docs}


def _train(root: Path, inputs: dict, name: str, vocab: int = 1200) -> Path:
    out = root / name
    io = StageIO("tokenizer", "*", {}, None, out, root / ".work" / name, root, make_executor("local", 1))
    stage = TokenizerStage({"vocab_size": vocab, "max_sentences": 20000, "seed": 0, "num_threads": 1})
    summary = stage.build(io, inputs)
    assert summary["vocab_size"] == vocab
    return out / "tokenizer.model"


@pytest.fixture(scope="module")
def tokenizer(corpus) -> Path:
    return _train(corpus["root"], {"books": [corpus["src"]]}, "tokenizer")


@pytest.fixture(scope="module")
def sp(tokenizer):
    return load_tokenizer(tokenizer)


def test_numbers_split_into_digits(sp):
    pieces = [p for p in sp.encode("12345", out_type=str) if p != "▁"]
    assert pieces == ["1", "2", "3", "4", "5"] or pieces == ["▁1", "2", "3", "4", "5"]
    assert len([p for p in pieces if any(c.isdigit() for c in p)]) == 5


def test_unseen_characters_fall_back_to_bytes(sp):
    text = "emoji 🦙 and rare CJK 龘"
    pieces = sp.encode(text, out_type=str)
    assert any(p.startswith("<0x") for p in pieces), pieces
    assert sp.unk_id() not in sp.encode(text)
    assert sp.decode(sp.encode(text)) == text


def test_special_ids_are_llama_s(sp):
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, -1)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_decode_encode_roundtrips_arbitrary_unicode(sp, text):
    # identity normalisation and no whitespace folding: every string comes back exactly, except that the
    # dummy-prefix space SentencePiece adds is stripped again, so a *leading* space is not preserved when
    # the text starts with exactly one space (documented in docs/ARCHITECTURE.md).
    decoded = sp.decode(sp.encode(text))
    if text.startswith(" ") and not text.startswith("  "):
        assert decoded in (text, text[1:])
    else:
        assert decoded == text


def test_training_is_deterministic(corpus, tokenizer):
    again = _train(corpus["root"], {"books": [corpus["src"]]}, "tokenizer-again")
    assert sha256_file(again) == sha256_file(tokenizer)


def test_shards_read_back_equal_encoded_documents_and_datatrove_reads_them(corpus, tokenizer, sp, tmp_path):
    models_root = tokenizer.parent.parent  # <root>/tokenizer/tokenizer.model
    out = tmp_path / "tokens" / "books"
    rec = run_standalone("tokenize", corpus["src"], out, params={"max_tokens_per_shard": 20000},
                         source="books", models_root=models_root, workers=2)
    assert rec["docs_in"] == len(corpus["docs"]) == rec["docs_out"]

    shards = sorted(out.glob("*.ds"))
    assert len(shards) > 2, "max_tokens_per_shard should split each task's output"
    decoded_docs = []
    total = 0
    for shard in shards:
        opened = open_shard(shard)
        tokens, ends, meta = opened.tokens, opened.document_ends(), opened.meta
        assert tokens.dtype == np.uint16 and meta["dtype"] == "uint16"
        assert meta["documents"] == len(ends) and meta["tokens"] == len(tokens) == int(ends[-1])
        assert meta["tokenizer_sha256"] == sha256_file(tokenizer)
        start = 0
        for end in ends:
            doc = tokens[start:end].tolist()
            assert doc[-1] == sp.eos_id()
            decoded_docs.append(doc[:-1])
            start = int(end)
        total += len(tokens)
    expected = sp.encode([d.text for d in corpus["docs"]])
    assert decoded_docs == expected

    from datatrove.utils.dataset import DatatroveFolderDataset

    seq_len = 64
    ds = DatatroveFolderDataset(str(out), seq_len=seq_len, token_size=2, recursive=False)
    first = ds[0]["input_ids"].tolist()
    assert first == open_shard(shards[0]).tokens[: seq_len + 1].tolist()
    assert len(ds) == sum(open_shard(s).n_tokens // (seq_len + 1) for s in shards)

    sidecars = [json.loads(p.read_text()) for p in out.glob("*.json") if p.name != "stats.json"]
    assert sum(s["tokens"] for s in sidecars) == total


def test_load_tokenizer_fails_in_one_line(tmp_path, tokenizer):
    from tokenizer.spm import TokenizerError

    with pytest.raises(TokenizerError, match="tokenizer not found") as missing:
        load_tokenizer(tmp_path / "nope.model")
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"not a sentencepiece model\n" * 10)
    with pytest.raises(TokenizerError, match="cannot load tokenizer") as unreadable:
        load_tokenizer(garbage)
    assert "\n" not in str(missing.value) + str(unreadable.value)
    assert load_tokenizer(tokenizer).get_piece_size() == 1200


def test_shard_writer_parts_sidecars_and_rerun(tmp_path):
    from tokenizer.shards import ShardWriter, list_shards, write_shard

    folder = tmp_path / "tokens"
    write_shard(folder, [[9]] * 50, rank=3, source="x", vocab_size=1000, eos_id=2)  # replaced by the rerun below
    writer = ShardWriter(folder, 3, source="x", vocab_size=1000, eos_id=2, bos_id=1, add_bos=True, max_tokens_per_shard=10)
    writer.add_batch([[5, 6, 7], [8] * 6])  # 5 + 8 tokens: the second document closes part 0
    writer.add_batch([[4]])
    assert [p.name for p in writer.close()] == ["00003_000.ds", "00003_001.ds"] == [p.name for p in list_shards(folder)]
    first, second = open_shard(folder / "00003_000.ds"), open_shard(folder / "00003_001.ds")
    assert first.tokens.tolist() == [1, 5, 6, 7, 2, 1] + [8] * 6 + [2] and first.document_ends().tolist() == [5, 13]
    assert second.tokens.tolist() == [1, 4, 2] and writer.tokens_written == 16
    assert sorted(first.meta) == ["bos_id", "content_sha256", "crc32", "documents", "dtype", "eos_id", "source",
                                  "tokenizer_sha256", "tokens", "vocab_size"]
    assert (first.meta["documents"], first.meta["tokens"], first.meta["dtype"]) == (2, 13, "uint16")
    empty = ShardWriter(tmp_path / "empty", 0, source="x", vocab_size=70000, eos_id=2).close()
    assert [p.name for p in empty] == ["00000_000.ds"] and open_shard(empty[0]).meta["dtype"] == "uint32"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "temporary files left behind"
