"""Tokenize stage vs raw SentencePiece on the same documents, same threads, one run.

The stage adds Parquet reading, batching, EOS, token-file writing and accounting around
``SentencePieceProcessor.encode``; this measures what that costs (target: stage ≥ 0.9× raw).
Also prints bytes per token per source for the built sample corpus when ``out/sample`` exists.

    python bench/tokenize.py [--copies 6] [--vocab 8000]
"""

import os
import sys

if __name__ == "tokenize":
    # The issue fixes this file's name, which is also the stdlib's `tokenize`. Any script run from bench/
    # has bench/ first on sys.path and would import this file instead: hand it the real module.
    import importlib.util
    import sysconfig

    _spec = importlib.util.spec_from_file_location("tokenize", os.path.join(sysconfig.get_paths()["stdlib"], "tokenize.py"))
    _real = importlib.util.module_from_spec(_spec)
    sys.modules["tokenize"] = _real
    _spec.loader.exec_module(_real)
    globals().update(_real.__dict__)
else:
    # run as a script: take bench/ off the path before anything imports the real `tokenize`
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

if __name__ != "tokenize":  # the benchmark itself (skipped when standing in for the stdlib)
    import argparse
    import json
    import platform
    import tempfile
    import time
    from pathlib import Path

    REPO = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(REPO))

    from datatrove.data import Document

    from pipeline.documents import ParquetShardWriter
    from pipeline.executors import make_executor
    from pipeline.stages import StageIO
    from pipeline.standalone import run_standalone
    from storage.layout import Layout
    from tokenizer.stages import TokenizerStage
    from tokenizer.spm import load_tokenizer


    def real_documents(copies: int) -> list[Document]:
        """Documents of 8 lines from the sample's real books and StackExchange/Wikipedia text."""
        texts = []
        for path in sorted((REPO / "data/sample/books").glob("*.txt")):
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            texts += ["\n".join(lines[i : i + 8]) for i in range(0, len(lines), 8)]
        texts = [t for t in texts if t.strip()]
        return [Document(text=t, id=f"{c}/{i}", metadata={"source": "books"}) for c in range(copies) for i, t in enumerate(texts)]


    def main() -> None:
        ap = argparse.ArgumentParser()
        ap.add_argument("--copies", type=int, default=6)
        ap.add_argument("--vocab", type=int, default=8000)
        args = ap.parse_args()
        docs = real_documents(args.copies)
        mb = sum(len(d.text.encode()) for d in docs) / 1e6
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            src = root / "docs"
            half = len(docs) // 2
            for rank, part in enumerate((docs[:half], docs[half:])):
                list(ParquetShardWriter(src).run(iter(part), rank=rank))
            io = StageIO("tokenizer", "*", {}, None, root / "tokenizer", root / ".work", root, make_executor("local", 1))
            TokenizerStage({"vocab_size": args.vocab, "max_sentences": 200000}).build(io, {"books": [src]})
            sp = load_tokenizer(Layout(root).tokenizer_model)
            texts = [d.text for d in docs]

            print(f"{len(docs)} documents, {mb:.1f} MB of real text, vocab {args.vocab}; {platform.processor() or platform.machine()}")
            rows = []
            for workers in (1, 2):
                t0 = time.perf_counter()
                ids = sp.encode(texts, num_threads=workers)
                raw = time.perf_counter() - t0
                n_tokens = sum(len(x) + 1 for x in ids)
                out = root / f"tokens-{workers}"
                t0 = time.perf_counter()
                rec = run_standalone("tokenize", src, out, params={"num_threads": 1, "batch_size": 512}, models_root=root, workers=workers)
                stage = time.perf_counter() - t0
                assert rec["docs_out"] == len(docs)
                rows.append((workers, raw, stage, n_tokens))
                print(
                    f"threads/processes={workers}: raw encode {mb / raw:6.2f} MB/s {n_tokens / raw / 1e3:7.1f}k tok/s | "
                    f"stage {mb / stage:6.2f} MB/s {n_tokens / stage / 1e3:7.1f}k tok/s | stage/raw = {raw / stage:.2f}x"
                )
            print(f"bytes per token (books sample): {mb * 1e6 / rows[0][3]:.2f}")

        corpus = REPO / "out/sample"
        stats = corpus / "report/stats.json"
        if stats.exists():
            tok = json.loads(stats.read_text()).get("stages", {}).get("tokenize", {})
            for source, rec in sorted(tok.items()):
                sidecars = [json.loads(p.read_text()) for p in (corpus / "tokens" / source).glob("*_*.json")]
                tokens = sum(s["tokens"] - s["documents"] for s in sidecars)
                if tokens:
                    print(f"  {source:14s} {rec['bytes_out'] / tokens:5.2f} bytes/token ({tokens} tokens)")


    if __name__ == "__main__":
        main()
