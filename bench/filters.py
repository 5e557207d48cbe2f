"""Filter-step throughput against the raw library call on the same documents, in one run, one core.

    python bench/filters.py [--docs 4000] [--repeat 3]

Documents: the sample's Project Gutenberg books cut into ~1 KB pieces (cycled up to ``--docs``).
Pairs measured (best of ``--repeat``):
  langid       LangIdFilter.run            vs  fastText ``predict(list, k=1)`` on the same texts, same batches
  perplexity   PerplexityScorer.score      vs  SentencePiece ``encode(lines)`` + KenLM ``score`` per line
               (books, mostly ASCII; and again on Wikipedia pieces, where the normaliser's Unicode path runs)
  wikiref      WikirefFilter.run           vs  fastText ``predict(list, k=2)``
  quality      QualityFilter.run           vs  datatrove's C4/Gopher/GopherRepetition ``filter`` calls
  code_quality CodeQualityFilter.run       (no library equivalent; docs/s only)
The KenLM model (lmplz, 5-gram) and the fastText classifier are trained here on the books so the bench
needs nothing but the repository and `make setup`. Prints the ratio step/raw (target >= 0.85) and
`throughput:` lines for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from datatrove.data import Document  # noqa: E402

from filters.code_quality import CodeQualityFilter  # noqa: E402
from filters.fasttext_filter import load_fasttext, one_line  # noqa: E402
from filters.kenlm_model import LanguageModel, normalized_lines, train_kenlm, train_sentencepiece  # noqa: E402
from filters.langid import LangIdFilter  # noqa: E402
from filters.lid_model import lid_model_path  # noqa: E402
from filters.normalize import normalize  # noqa: E402
from filters.perplexity import PerplexityScorer, write_pieces  # noqa: E402
from filters.quality import QualityFilter, rule_sets_from_params  # noqa: E402
from filters.wikiref import NEGATIVE, POSITIVE, WikirefFilter, classifier_text  # noqa: E402
from filters.fasttext_train import train_supervised  # noqa: E402

BOOKS = REPO / "data" / "sample" / "books"
BATCH = 512


def book_docs(n: int, size: int = 1000) -> list[Document]:
    """~``size``-character documents of consecutive lines of the sample books, cycled up to ``n``."""
    pieces = []
    for path in sorted(BOOKS.glob("*.txt")):
        current: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                current.append(line.strip())
            if sum(map(len, current)) >= size:
                pieces.append("\n".join(current))
                current = []
    return [Document(text=pieces[i % len(pieces)], id=str(i), metadata={"language": "en"}) for i in range(n)]


def wiki_docs(n: int, size: int = 1000) -> list[Document]:
    """~``size``-character pieces of the sample's English Wikipedia as the pipeline extracts it
    (accents, dashes, curly quotes: the normaliser's Unicode path), cycled up to ``n``."""
    from ingest.extract import load_extractor

    extractor = load_extractor("wikipedia", {})
    pieces = []
    for doc in extractor(REPO / "data" / "sample" / "wikipedia" / "enwiki-20160501-pages-articles-sample.xml.bz2"):
        if doc.metadata.get("reason"):
            continue
        current: list[str] = []
        for line in doc.text.splitlines():
            current.append(line)
            if sum(map(len, current)) >= size:
                pieces.append("\n".join(current))
                current = []
    return [Document(text=pieces[i % len(pieces)], id=str(i), metadata={"language": "en"}) for i in range(n)]


def timed(fn, docs: list[Document] | None) -> float:
    """Wall time of ``fn()``, or of ``fn(fresh copy of docs)``: filters mark documents, so every run
    gets unmarked ones, copied outside the timed region."""
    args = (copy.deepcopy(docs),) if docs is not None else ()
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def compare(raw_fn, raw_docs, ours_fn, ours_docs, repeat: int) -> tuple[float | None, float]:
    """Best time of the raw call and of our step, run alternately so load from other jobs on the
    machine hits both alike."""
    raw, ours = [], []
    for _ in range(repeat):
        if raw_fn is not None:
            raw.append(timed(raw_fn, raw_docs))
        ours.append(timed(ours_fn, ours_docs))
    return (min(raw) if raw else None), min(ours)


def run_step(step):
    def run(docs: list[Document]) -> None:
        for _ in step.run(iter(docs)):
            pass

    return run


def build_models(docs: list[Document], work: Path) -> tuple[Path, Path]:
    """A KenLM 5-gram + SentencePiece on the books, and a fastText book-vs-shuffled classifier."""
    text_file = work / "en.txt"
    text_file.write_text("\n".join(line for d in docs[:2000] for line in (normalize(x) for x in d.text.split("\n")) if line) + "\n")
    lm_dir = work / "lm"
    lm_dir.mkdir()
    train_sentencepiece(text_file, lm_dir / "en.sp.model", 2000)
    write_pieces(LanguageModel(lm_dir / "en.sp.model", lm_dir / "en.bin"), text_file, work / "pieces.txt")
    train_kenlm(work / "pieces.txt", lm_dir / "en.bin", 5, work)
    rng_words = [w for d in docs[:500] for w in d.text.split()]
    examples = [f"{POSITIVE} {classifier_text(d.text)}" for d in docs[:500]]
    examples += [f"{NEGATIVE} {' '.join(sorted(rng_words[i:i + 150]))}" for i in range(0, len(rng_words) - 150, 150)]
    (work / "train.txt").write_text("\n".join(examples) + "\n")
    train_supervised(work / "wikiref.bin", input=str(work / "train.txt"), dim=64, epoch=5, lr=0.5, wordNgrams=2, bucket=200_000, thread=1, seed=0, verbose=0)
    return lm_dir, work / "wikiref.bin"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    docs = book_docs(args.docs)
    mb = sum(len(d.text.encode()) for d in docs) / 1e6
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}; {len(docs)} docs, {mb:.2f} MB")
    rows = []

    with tempfile.TemporaryDirectory(prefix="llamix-bench-filters-") as tmp:
        lm_dir, wikiref_path = build_models(docs, Path(tmp))

        # langid
        lid = load_fasttext(lid_model_path())
        texts = [one_line(d.text) for d in docs]
        raw, ours = compare(
            lambda: [lid.predict(texts[i:i + BATCH], k=1) for i in range(0, len(texts), BATCH)], None,
            run_step(LangIdFilter(["en"], 0.5, batch_size=BATCH)), docs, args.repeat)
        rows.append(("langid", "fastText predict (batched)", raw, ours))

        # perplexity
        model = LanguageModel.from_dir(lm_dir, "en")
        model.perplexity("warm up")
        sp, lm = model._sp, model._lm
        doc_lines = [normalized_lines(d.text) for d in docs]  # the library calls alone, on what KenLM sees
        scorer = PerplexityScorer(lm_dir, Path(tmp) / "scores", min_length=0)
        raw, ours = compare(
            lambda: [sum(lm.score(" ".join(p)) for p in sp.encode(lines, out_type=str, num_threads=1)) for lines in doc_lines], None,
            lambda fresh: [scorer.score(d) for d in fresh], docs, args.repeat)
        rows.append(("perplexity", "sentencepiece encode + kenlm score", raw, ours))
        wiki = wiki_docs(len(docs))
        non_ascii = sum(not d.text.isascii() for d in wiki) / len(wiki)
        wiki_lines = [normalized_lines(d.text) for d in wiki]
        raw, ours = compare(
            lambda: [sum(lm.score(" ".join(p)) for p in sp.encode(lines, out_type=str, num_threads=1)) for lines in wiki_lines], None,
            lambda fresh: [scorer.score(d) for d in fresh], wiki, args.repeat)
        rows.append(("perplexity_wiki", f"same, on Wikipedia pieces ({non_ascii:.0%} with non-ASCII)", raw, ours))

        # wikiref
        clf = load_fasttext(wikiref_path)
        ctexts = [one_line(d.text) for d in docs]
        raw, ours = compare(
            lambda: [clf.predict(ctexts[i:i + 256], k=2) for i in range(0, len(ctexts), 256)], None,
            run_step(WikirefFilter(wikiref_path, 0.25, batch_size=256)), docs, args.repeat)
        rows.append(("wikiref", "fastText predict (batched)", raw, ours))

        # quality: the same datatrove filters called directly
        sub = docs[: max(200, len(docs) // 10)]
        qf = QualityFilter(rule_sets_from_params({}))
        inner = [f for _, _, f in qf.filters]

        def raw_quality(fresh):
            for d in fresh:
                for f in inner:
                    if f.filter(d) is not True:
                        break

        raw, ours = compare(raw_quality, sub, run_step(qf), sub, args.repeat)
        rows.append(("quality", "datatrove C4+Gopher filters", raw * len(docs) / len(sub), ours * len(docs) / len(sub)))

        code = [Document(text=re.sub("[.!?]", ";", d.text), id=d.id, metadata={}) for d in docs]
        _, ours = compare(None, None, run_step(CodeQualityFilter()), code, args.repeat)
        rows.append(("code_quality", "-", None, ours))

    print(f"\n| step | raw library call | raw docs/s | step docs/s | step / raw |\n|---|---|---|---|---|")
    for name, what, raw, ours in rows:
        ratio = f"**{raw / ours:.2f}x**" if raw else "-"
        raw_s = f"{len(docs) / raw:,.0f}" if raw else "-"
        print(f"| {name} | {what} | {raw_s} | {len(docs) / ours:,.0f} | {ratio} |")
    print()
    for name, _, _, ours in rows:
        print(f"throughput: {name} any {len(docs) / ours:.1f} docs/s")


if __name__ == "__main__":
    main()
