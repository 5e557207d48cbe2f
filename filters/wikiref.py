"""LLaMA's "pages used as references in Wikipedia vs random pages" classifier (RedPajama: fastText, keep
score >= 0.25): the ``wikiref_train`` model stage and the ``wikiref`` document stage.

Why: a linear bag-of-n-grams model is cheap enough to run on every CommonCrawl page and captures
"reads like something an encyclopedia would cite". Positives are, as in LLaMA, the pages of the crawl
being processed whose URL a Wikipedia article cites (the Wikipedia extract records the cited URLs as
64-bit hashes: ``ingest/cited_urls.py``); where the crawl holds too few of them (the sample: 43 pages,
none cited) a stated proxy takes their place — the sample's own Wikipedia and books text cut into
page-sized chunks — and the log, the model's summary and the report say so. Negatives are random
CommonCrawl pages (cited ones left out). The split into training and held-out sets is by *document*,
so chunks of one article never sit on both sides, and training is deterministic for a seed (one thread).
"""

from __future__ import annotations

import json
import random
from array import array
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.data import Document
from loguru import logger

from filters.fasttext_filter import FastTextFilter, load_fasttext, one_line
from filters.fasttext_train import train_supervised
from ingest.cited_urls import cited_url_files, contains, load_range, normalise_url, partitions, url_hash
from pipeline.documents import list_shards, open_shard, read_documents
from pipeline.params import Bool, Choice, Fraction, Free, Int, Number, ParamError, shown
from pipeline.stages import DocumentStage, ModelStage, StageIO
from storage.layout import CITED_URLS

POSITIVE, NEGATIVE = "__label__ref", "__label__random"
MODEL_FILE = "wikiref.bin"


def classifier_text(text: str) -> str:
    """What the classifier sees: lower-cased, on one line (fastText splits words on whitespace)."""
    return one_line(text.lower())


def page_chunks(text: str, chunk_chars: int) -> list[str]:
    """Cut a long document at paragraph boundaries into pieces of about ``chunk_chars`` characters."""
    if chunk_chars <= 0 or len(text) <= chunk_chars:
        return [text]
    chunks, current, size = [], [], 0
    for para in text.split("\n"):
        current.append(para)
        size += len(para) + 1
        if size >= chunk_chars:
            chunks.append("\n".join(current))
            current, size = [], 0
    if current and (size >= chunk_chars // 4 or not chunks):  # a short tail is dropped, not a page
        chunks.append("\n".join(current))
    return chunks


def reference_score(model, texts: list[str]) -> list[float]:
    """P(reference) of each text, from one batched fastText call."""
    labels, probs = model.predict([classifier_text(t) for t in texts], k=2)
    out = []
    for lab, prob in zip(labels, probs):
        scores = dict(zip(lab, prob))
        out.append(min(float(scores.get(POSITIVE, 0.0)), 1.0))
    return out


def binary_metrics(scores: list[float], truth: list[bool], threshold: float) -> dict[str, float]:
    tp = sum(s >= threshold and t for s, t in zip(scores, truth))
    fp = sum(s >= threshold and not t for s, t in zip(scores, truth))
    fn = sum(s < threshold and t for s, t in zip(scores, truth))
    correct = sum((s >= threshold) == t for s, t in zip(scores, truth))
    return {
        "threshold": threshold,
        "accuracy": round(correct / max(len(truth), 1), 4),
        "precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
        "recall": round(tp / (tp + fn), 4) if tp + fn else 0.0,
    }


def stage_outputs(value: Any) -> list[dict[str, str]]:
    """``{source, after}`` or a list of them (the documents of a class: ``source``'s output of stage ``after``)."""
    entries = value if isinstance(value, list) else [value]
    for i, entry in enumerate(entries):
        if (not isinstance(entry, dict) or set(entry) != {"source", "after"}
                or not all(isinstance(v, str) and v for v in entry.values())):
            raise ParamError(f"[{i}]" if isinstance(value, list) else "", f"expected {{source: NAME, after: STAGE}}, got {shown(entry)}")
    if not entries:
        raise ValueError("expected at least one {source, after}")
    return [dict(e) for e in entries]


def stage_output(value: Any) -> dict[str, str]:
    """One ``{source, after}``."""
    if isinstance(value, list):
        raise ValueError()
    return stage_outputs(value)[0]


def _named(specs: list[dict[str, str]]) -> str:
    return ", ".join(f"{s['source']} after {s['after']}" for s in specs)


def _id_hash(doc_id: str) -> int:
    return url_hash(doc_id)  # the same 64-bit hash, over a document id


def _in(sorted_set: np.ndarray, value: int) -> bool:
    i = int(np.searchsorted(sorted_set, np.uint64(value)))
    return i < len(sorted_set) and int(sorted_set[i]) == value


def _url_of(raw_metadata: str | None) -> str | None:
    """``metadata.url`` of a row (None when absent or the metadata is not a JSON object)."""
    try:
        meta = json.loads(raw_metadata) if raw_metadata else None
    except (ValueError, RecursionError):
        return None
    url = meta.get("url") if isinstance(meta, dict) else None
    return url if isinstance(url, str) else None


class WikirefTrainStage(ModelStage):
    """Positives (``positives: references``, LLaMA's recipe): the pages of ``reference_pages`` (the crawl
    being processed) whose URL Wikipedia cites, from the ``cited_urls/`` hash files that the extract of
    ``references`` wrote (``ingest/cited_urls.py``); with fewer than ``min_reference_positives`` of them,
    or with ``positives: proxy``, the proxy ``positive`` (Wikipedia and books text). Negatives: random
    pages of ``negative``, cited pages left out."""

    name = "wikiref_train"
    PARAMS = {
        "positives": Choice(("references", "proxy"), "references"),
        "positive": Free("{source, after} or a list of them", stage_outputs, [{"source": "wikipedia", "after": "extract"}]),  # the proxy
        "negative": Free("{source, after} or a list of them", stage_outputs, [{"source": "commoncrawl", "after": "langid"}]),
        # whose extract wrote cited_urls/, and the crawl whose pages are matched against them (default: the negatives')
        "references": Free("{source, after}", stage_output, {"source": "wikipedia", "after": "extract"}),
        "reference_pages": Free("{source, after}", stage_output, lambda v: dict(v["negative"][0])),
        "min_reference_positives": Int(1, default=1000),  # fewer cited pages found: the proxy, said in log and summary
        "reference_partitions": Int(1, default=1),  # hash-space ranges matched one at a time (memory / scans)
        "max_examples": Int(1, default=300_000),  # per class, before the held-out split
        "heldout_fraction": Fraction(0.2),  # of the documents, held out for the accuracy figures
        "positive_chunk_chars": Int(0, default=3000),  # long documents cut into page-sized chunks (0: not cut)
        "negative_chunk_chars": Int(0, default=0),  # also the cut of reference positives (pages like the negatives)
        "max_chunks_per_doc": Int(1, default=5),
        "balance": Bool(True),  # equal class sizes
        "seed": Int(0, default=0),
        "threshold": Fraction(0.25),  # the wikiref stage's threshold, for the held-out figures
        # fastText train_supervised
        "dim": Int(1, default=64),
        "epochs": Int(1, default=5),
        "lr": Number(above=0, default=0.5),
        "wordNgrams": Int(1, default=2),
        "bucket": Int(0, default=1_000_000),  # hashed n-gram buckets (model size ~ bucket x dim x 4 bytes)
        "minCount": Int(1, default=1),
    }

    def _specs(self) -> list[tuple[str, str, bool]]:
        p = self.params
        return [(s["source"], s["after"], True) for s in p["positive"]] + [(s["source"], s["after"], False) for s in p["negative"]]

    def requires(self, manifest) -> list[tuple[str, str]]:
        wanted = [(source, after) for source, after, _ in self._specs()]
        if self.params["positives"] == "references":
            wanted += [(s["source"], s["after"]) for s in (self.params["references"], self.params["reference_pages"])]
        return list(dict.fromkeys(wanted))

    def _folders(self, inputs: dict[str, list[Path]]) -> dict[tuple[str, str], Path]:
        """Input folders by (source, after): ``inputs`` lists each source's folders in ``requires`` order."""
        remaining = {source: list(folders) for source, folders in inputs.items()}
        return {(source, after): remaining[source].pop(0) for source, after in self.requires(None) if remaining.get(source)}

    @staticmethod
    def _sample(folders: list[Path], rng: random.Random, cap: int, skip: np.ndarray | None = None) -> list[str]:
        """A uniform sample of at most ``cap`` non-empty document texts (reservoir sampling: memory stays
        bounded however large the inputs), leaving out documents whose id hash is in ``skip``."""
        texts: list[str] = []
        seen = 0
        for folder in folders:
            for doc in read_documents(folder):
                if not doc.text.strip():
                    continue
                if skip is not None and len(skip) and _in(skip, _id_hash(doc.id)):
                    continue
                seen += 1
                if len(texts) < cap:
                    texts.append(doc.text)
                elif (j := rng.randrange(seen)) < cap:
                    texts[j] = doc.text
        return texts

    def _cited_pages(self, folders: dict[tuple[str, str], Path], rng: random.Random, cap: int) -> tuple[list[str], np.ndarray, dict[str, Any]]:
        """Pages of ``reference_pages`` whose normalised URL is among the URLs cited by ``references``: a
        uniform sample of at most ``cap`` texts, the id hashes of all of them (8 bytes a page), and counts.
        The cited-URL hashes are loaded one of ``reference_partitions`` ranges at a time (8 bytes per
        distinct cited URL in the range); each range is one scan of the pages' ids and metadata."""
        p = self.params
        refs, pages = p["references"], p["reference_pages"]
        ref_dir, page_dir = folders.get((refs["source"], refs["after"])), folders.get((pages["source"], pages["after"]))
        files = cited_url_files(ref_dir) if ref_dir is not None else []
        info = {"references": _named([refs]), "reference_pages": _named([pages]), "reference_url_files": len(files),
                "reference_urls": 0, "pages_scanned": 0, "pages_cited": 0}
        texts: list[str] = []
        cited_ids = array("Q")
        if not files or page_dir is None:
            return texts, np.empty(0, dtype=np.uint64), info
        for part, (lo, hi) in enumerate(partitions(p["reference_partitions"])):
            wanted = load_range(files, lo, hi)
            info["reference_urls"] += len(wanted)
            for shard in list_shards(page_dir):
                for batch in open_shard(shard).iter_batches(batch_size=1024, columns=["id", "text", "metadata"]):
                    if part == 0:
                        info["pages_scanned"] += batch.num_rows
                    if not len(wanted):
                        continue
                    rows, hashes = [], []
                    for i, raw in enumerate(batch.column("metadata").to_pylist()):
                        url = _url_of(raw)
                        key = normalise_url(url) if url else None
                        if key is not None:
                            rows.append(i)
                            hashes.append(url_hash(key))
                    found = contains(wanted, np.array(hashes, dtype=np.uint64))
                    ids, text_col = batch.column("id"), batch.column("text")
                    for i in (rows[k] for k in np.flatnonzero(found)):
                        text, doc_id = text_col[i].as_py(), ids[i].as_py()
                        if not text or not text.strip() or doc_id is None:
                            continue
                        info["pages_cited"] += 1
                        cited_ids.append(_id_hash(doc_id))
                        if len(texts) < cap:
                            texts.append(text)
                        elif (j := rng.randrange(info["pages_cited"])) < cap:
                            texts[j] = text
        return texts, np.unique(np.frombuffer(cited_ids, dtype=np.uint64)), info

    def _split(self, docs: list[str], rng: random.Random, chunk_chars: int, cap: int, heldout: float) -> tuple[list[str], list[str]]:
        docs = list(docs)
        rng.shuffle(docs)
        n_held = max(1, round(len(docs) * heldout)) if len(docs) > 1 else 0
        per_doc = self.params["max_chunks_per_doc"]  # one long document must not dominate a class

        def chunks(group: list[str]) -> list[str]:
            return [c for d in group for c in page_chunks(d, chunk_chars)[:per_doc]]

        train, test = chunks(docs[n_held:]), chunks(docs[:n_held])
        rng.shuffle(train)
        rng.shuffle(test)
        n_test = min(len(test), max(1, round(cap * heldout)))
        return train[: cap - n_test], test[:n_test]

    def _positives(self, folders: dict[tuple[str, str], Path], rng: random.Random, cap: int) -> tuple[list[str], int, np.ndarray, dict[str, Any]]:
        """Positive texts, their chunk size, the id hashes of cited pages (kept out of the negatives) and
        the record of where the positives came from (``summary["positives"]``)."""
        p = self.params
        origin: dict[str, Any] = {"requested": p["positives"]}
        cited = np.empty(0, dtype=np.uint64)
        if p["positives"] == "references":
            texts, cited, info = self._cited_pages(folders, rng, cap)
            origin.update(info, min_reference_positives=p["min_reference_positives"])
            if info["pages_cited"] >= p["min_reference_positives"]:
                origin.update(used="references", from_references=len(texts), from_proxy=0)
                return texts, p["negative_chunk_chars"], cited, origin
            if not info["reference_url_files"]:
                why = f"{info['references']} recorded no cited URLs (no {CITED_URLS}/ files: rebuild that stage)"
            else:
                why = (f"only {info['pages_cited']:,} of {info['pages_scanned']:,} pages of {info['reference_pages']} are cited by "
                       f"Wikipedia ({info['reference_urls']:,} distinct cited URLs), fewer than min_reference_positives "
                       f"{p['min_reference_positives']:,}")
            origin["fallback"] = f"{why}: the positives are the proxy ({_named(p['positive'])})"
            logger.warning(f"wikiref_train: {origin['fallback']}")
        proxy = [folders[(s["source"], s["after"])] for s in p["positive"] if (s["source"], s["after"]) in folders]
        texts = self._sample(proxy, rng, cap)
        origin.update(used="proxy", from_references=0, from_proxy=len(texts))
        return texts, p["positive_chunk_chars"], cited, origin

    def build(self, io: StageIO, inputs: dict[str, list[Path]]) -> dict[str, Any]:
        p = self.params
        seed = p["seed"]
        rng = random.Random(seed)
        heldout = p["heldout_fraction"]
        cap = p["max_examples"]
        folders = self._folders(inputs)
        pos_docs, pos_chunk_chars, cited, origin = self._positives(folders, rng, cap)
        negatives = [folders[(s["source"], s["after"])] for s in p["negative"] if (s["source"], s["after"]) in folders]
        neg_docs = self._sample(negatives, rng, cap, skip=cited)
        origin["positive_documents"], origin["negative_documents"] = len(pos_docs), len(neg_docs)
        pos_train, pos_test = self._split(pos_docs, rng, pos_chunk_chars, cap, heldout)
        neg_train, neg_test = self._split(neg_docs, rng, p["negative_chunk_chars"], cap, heldout)
        for name, train, test in (("positive", pos_train, pos_test), ("negative", neg_train, neg_test)):
            if len(train) < 5 or not test:
                raise ValueError(f"wikiref_train: too few {name} examples ({len(train)} train, {len(test)} held out)")
        if p["balance"]:  # equal classes: the prior does not leak into scores, chance is 50%
            n_train, n_test = min(len(pos_train), len(neg_train)), min(len(pos_test), len(neg_test))
            pos_train, neg_train, pos_test, neg_test = pos_train[:n_train], neg_train[:n_train], pos_test[:n_test], neg_test[:n_test]
        examples = [f"{POSITIVE} {classifier_text(t)}" for t in pos_train] + [f"{NEGATIVE} {classifier_text(t)}" for t in neg_train]
        rng.shuffle(examples)
        io.work_dir.mkdir(parents=True, exist_ok=True)
        io.output_dir.mkdir(parents=True, exist_ok=True)
        train_file = io.work_dir / "train.txt"
        train_file.write_text("\n".join(examples) + "\n", encoding="utf-8")
        train_supervised(
            io.output_dir / MODEL_FILE,
            input=str(train_file), dim=p["dim"], epoch=p["epochs"], lr=float(p["lr"]),
            wordNgrams=p["wordNgrams"], bucket=p["bucket"], minCount=p["minCount"],
            loss="softmax", thread=1, seed=seed, verbose=0,
        )
        model = load_fasttext(io.output_dir / MODEL_FILE)
        train_file.unlink()
        scores = reference_score(model, pos_test + neg_test)
        truth = [True] * len(pos_test) + [False] * len(neg_test)
        return {
            "positives": origin,
            "examples": {"positive_train": len(pos_train), "negative_train": len(neg_train), "positive_heldout": len(pos_test), "negative_heldout": len(neg_test)},
            "heldout": binary_metrics(scores, truth, 0.5),
            "heldout_at_stage_threshold": binary_metrics(scores, truth, p["threshold"]),
            "model_bytes": (io.output_dir / MODEL_FILE).stat().st_size,
        }


class WikirefFilter(FastTextFilter):
    """Keeps pages whose P(reference) >= threshold; reason ``wikiref:<score rounded to 2>``."""

    name = "📚 llamix wikiref"

    def __init__(self, model_path: str | Path, threshold: float = 0.25, stage: str = "wikiref", batch_size: int = 256):
        super().__init__(model_path, stage=stage, batch_size=batch_size)
        self.threshold = threshold

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        results: list[bool | tuple[bool, str]] = []
        for doc, score in zip(batch, reference_score(self.model, [d.text for d in batch])):
            score = round(score, 4)  # decide on the stored value, so re-thresholding metadata agrees
            doc.metadata["wikiref_score"] = score
            results.append(True if score >= self.threshold else (False, f"wikiref:{score:.2f}"))
        return results


class WikirefStage(DocumentStage):
    name = "wikiref"
    requires_models = ("wikiref_train",)
    PARAMS = {"threshold": Fraction(0.25)}  # RedPajama: keep P(reference) >= 0.25

    def steps(self, io: StageIO):
        model_path = io.model_path("wikiref_train", MODEL_FILE)
        if not model_path.is_file():
            raise FileNotFoundError(f"wikiref: no classifier at {model_path} (build it with --stages wikiref_train)")
        return [WikirefFilter(model_path, self.params["threshold"], stage=io.stage)]
