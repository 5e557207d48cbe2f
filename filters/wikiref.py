"""LLaMA's "pages used as references in Wikipedia vs random pages" classifier (RedPajama: fastText, keep
score >= 0.25): the ``wikiref_train`` model stage and the ``wikiref`` document stage.

Why: a linear bag-of-n-grams model is cheap enough to run on every CommonCrawl page and captures
"reads like something an encyclopedia would cite". Positives are reference-quality pages (on the sample
profile a stated proxy: the sample's own Wikipedia and books text cut into page-sized chunks, because
the pages Wikipedia cites cannot be crawled offline), negatives are random CommonCrawl pages. The split
into training and held-out sets is by *document*, so chunks of one article never sit on both sides,
and training is deterministic for a seed (one thread).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from datatrove.data import Document

from filters.fasttext_filter import FastTextFilter, load_fasttext, one_line
from filters.fasttext_train import train_supervised
from pipeline.documents import read_documents
from pipeline.params import Bool, Fraction, Free, Int, Number, ParamError, shown
from pipeline.stages import DocumentStage, ModelStage, StageIO

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


class WikirefTrainStage(ModelStage):
    name = "wikiref_train"
    PARAMS = {
        "positive": Free("{source, after} or a list of them", stage_outputs, [{"source": "wikipedia", "after": "extract"}]),
        "negative": Free("{source, after} or a list of them", stage_outputs, [{"source": "commoncrawl", "after": "langid"}]),
        "max_examples": Int(1, default=300_000),  # per class, before the held-out split
        "heldout_fraction": Fraction(0.2),  # of the documents, held out for the accuracy figures
        "positive_chunk_chars": Int(0, default=3000),  # long documents cut into page-sized chunks (0: not cut)
        "negative_chunk_chars": Int(0, default=0),
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
        return [(source, after) for source, after, _ in self._specs()]

    def _documents(self, inputs: dict[str, list[Path]], rng: random.Random, cap: int) -> tuple[list[str], list[str]]:
        """Positive and negative document texts, each class a uniform sample of at most ``cap``
        documents (reservoir sampling: memory stays bounded however large the inputs). Input folders
        are matched to the specs in order."""
        remaining = {source: list(folders) for source, folders in inputs.items()}
        classes: dict[bool, list[str]] = {True: [], False: []}
        seen = {True: 0, False: 0}
        for source, _, label in self._specs():
            if not remaining.get(source):
                continue
            for doc in read_documents(remaining[source].pop(0)):
                if not doc.text.strip():
                    continue
                seen[label] += 1
                if len(classes[label]) < cap:
                    classes[label].append(doc.text)
                elif (j := rng.randrange(seen[label])) < cap:
                    classes[label][j] = doc.text
        return classes[True], classes[False]

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

    def build(self, io: StageIO, inputs: dict[str, list[Path]]) -> dict[str, Any]:
        p = self.params
        seed = p["seed"]
        rng = random.Random(seed)
        heldout = p["heldout_fraction"]
        cap = p["max_examples"]
        pos_docs, neg_docs = self._documents(inputs, rng, cap)
        pos_train, pos_test = self._split(pos_docs, rng, p["positive_chunk_chars"], cap, heldout)
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
