"""Books extractor: Project Gutenberg header/footer removal on the real eBooks in
data/sample/books, every historical marker variant, encodings and damaged files."""

import gzip
import pathlib

import pytest

from ingest.books import BooksExtractor, make_extractor
from ingest.extract import ExtractStage

SAMPLE = pathlib.Path(__file__).resolve().parents[1] / "data" / "sample" / "books"
BODY = "CHAPTER I\n\nIt was a bright cold day in April.\n\nThe end."


def one(path, **kw):
    (doc,) = BooksExtractor(**kw)(path)
    return doc


def test_golden_botchan():
    doc = one(SAMPLE / "botchan.txt")
    assert doc.id == "botchan"
    assert {k: doc.metadata[k] for k in ("title", "author", "language", "pg_ebook", "pg_markers")} == {
        "title": "Botchan (Master Darling)", "author": "Kin-nosuke Natsume", "language": "English",
        "pg_ebook": 8868, "pg_markers": True,
    }  # fmt: skip
    assert doc.text.startswith("BOTCHAN (MASTER DARLING)\nBy The Late Mr. Kin-nosuke Natsume")
    assert doc.text.endswith("[R: Rad]")
    assert "gutenberg" not in doc.text.lower() and "Produced by" not in doc.text
    raw = (SAMPLE / "botchan.txt").read_text(encoding="utf-8-sig")
    assert 0.85 < len(doc.text) / len(raw) < 0.95  # the licence is ~8% of the file


def test_golden_reflowed_copy_and_unmarked_book():
    reflowed = one(SAMPLE / "botchan-60col.txt")
    assert reflowed.metadata["pg_ebook"] == 8868 and reflowed.metadata["pg_markers"] is True
    assert "gutenberg" not in reflowed.text.lower()  # incl. an "End of Project Gutenberg's" mid-line
    alice = one(SAMPLE / "alice.txt")
    raw = (SAMPLE / "alice.txt").read_text(encoding="utf-8")
    assert alice.metadata["pg_markers"] is False and alice.metadata["title"] is None
    assert alice.text == raw.strip()


@pytest.mark.parametrize(
    "header, footer",
    [
        ("*** START OF THIS PROJECT GUTENBERG EBOOK THE BOOK ***", "*** END OF THIS PROJECT GUTENBERG EBOOK THE BOOK ***"),
        ("*** START OF THE PROJECT GUTENBERG EBOOK THE BOOK ***", "*** END OF THE PROJECT GUTENBERG EBOOK THE BOOK ***"),
        ("***START OF THE PROJECT GUTENBERG EBOOK THE BOOK***", "***END OF THE PROJECT GUTENBERG EBOOK THE BOOK***"),
        ("*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*", "End of the Project Gutenberg EBook of The Book"),
        ("*** START OF THE PROJECT GUTENBERG EBOOK THE BOOK ***", "End of Project Gutenberg's The Book, by A. Writer"),
    ],
)
def test_marker_variants(tmp_path, header, footer):
    text = (
        "The Project Gutenberg EBook of The Book, by A. Writer\n\nTitle: The Book\n    and its long subtitle\n"
        "Author: A. Writer\n\nRelease Date: May 1, 2004 [EBook #12345]\nLanguage: English\n\n"
        f"{header}\n\n\n\nProduced by Jane Doe and the Online\nDistributed Proofreading Team\n\n\n"
        f"{BODY}\n\n\n{footer}\n\nThis file should be named 12345.txt\nPROJECT GUTENBERG LICENSE blah\n"
    )
    path = tmp_path / "book.txt"
    path.write_text(text)
    doc = one(path)
    assert doc.text == BODY
    assert doc.metadata["title"] == "The Book and its long subtitle" and doc.metadata["author"] == "A. Writer"
    assert doc.metadata["pg_ebook"] == 12345 and doc.metadata["pg_markers"] is True


def test_old_small_print_header_before_start_marker(tmp_path):
    text = (
        "**The Project Gutenberg Etext of Old Book**\nTitle: Old Book\n"
        "*** START OF THIS PROJECT GUTENBERG EBOOK OLD BOOK ***\n\n"
        "**Welcome To The World of Free Plain Vanilla Electronic Texts**\n\n"
        "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***\nlegal text\n"
        "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\n"
        f"{BODY}\n\n*** END OF THIS PROJECT GUTENBERG EBOOK OLD BOOK ***\n"
    )
    path = tmp_path / "old.txt"
    path.write_text(text)
    assert one(path).text == BODY


def test_crlf_bom_latin1_and_bad_utf8(tmp_path):
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(("\ufeffTitle: Crlf\r\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\r\n" + BODY.replace("\n", "\r\n")
                      + "\r\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\r\n").encode("utf-8"))
    doc = one(crlf)
    assert doc.text == BODY and doc.metadata["title"] == "Crlf"
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(("Title: Les Misérables\nCharacter set encoding: ISO-8859-1\n"
                        "*** START OF THIS PROJECT GUTENBERG EBOOK LES MISÉRABLES ***\nÇà et là, déjà.\n"
                        "*** END OF THIS PROJECT GUTENBERG EBOOK LES MISÉRABLES ***\n").encode("latin-1"))
    doc = one(latin1)
    assert doc.text == "Çà et là, déjà." and doc.metadata["title"] == "Les Misérables" and "utf8_errors" not in doc.metadata
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"Some text \xff\xfe with junk \xc3 bytes.\n")
    doc = one(bad)
    assert doc.metadata["utf8_errors"] == 3 and doc.text == "Some text \ufffd\ufffd with junk \ufffd bytes."


def test_pg19_numeric_name_and_compression(tmp_path):
    path = tmp_path / "10003.txt.gz"
    path.write_bytes(gzip.compress(BODY.encode()))
    doc = one(path)
    assert doc.id == "10003" and doc.text == BODY
    assert doc.metadata["pg_ebook"] == 10003 and doc.metadata["pg_markers"] is False


def test_damaged_empty_and_oversized_books(tmp_path):
    blob = gzip.compress(("Lorem ipsum dolor sit amet. " * 5000).encode())
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(blob[: len(blob) // 2])
    assert one(cut).metadata["reason"] == "truncated:gzip"
    empty = tmp_path / "empty.txt"
    empty.write_text("*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\n")
    assert one(empty).metadata["reason"] == "empty"
    big = tmp_path / "big.txt"
    big.write_text("x" * 5000)
    assert one(big, max_record_bytes=1000).metadata["reason"] == "too_large"
    bomb = tmp_path / "bomb.txt.gz"
    bomb.write_bytes(gzip.compress(b"\n" * (8 << 20)))
    assert one(bomb, max_expanded_bytes=1 << 20).metadata["reason"] == "too_large"


def test_accepts_and_params(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "a.epub").write_text("x")
    ex = make_extractor({})
    assert ex.accepts(tmp_path / "a.txt") and not ex.accepts(tmp_path / "a.epub") and not ex.accepts(tmp_path)
    with pytest.raises(ValueError, match="strip: unknown parameter"):
        ExtractStage.check_params({"strip": True}, source="books")


def test_symlinks_are_not_inputs(tmp_path):
    target = tmp_path / "real.txt"
    target.write_text(BODY)
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    assert BooksExtractor().accepts(target) and not BooksExtractor().accepts(link)
