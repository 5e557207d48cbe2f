"""Digest of a built corpus: what must not change when code moves (token shards, tokenizer, counts).

``python tools/corpus_digest.py out/sample`` prints the digest as JSON; ``--write FILE`` records it,
``--check FILE`` compares a build against a recorded digest and exits 1 naming every difference. The
digest is the fault drill's corpus fingerprint: every Parquet shard's rows, every token shard, model and
tokenizer file, and per stage and source the counts of ``report/stats.json``; timings are left out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ops.drill import compare_fingerprints, corpus_fingerprint  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_root", type=Path, help="a built profile folder, e.g. out/sample")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", type=Path, metavar="FILE", help="record the digest in FILE")
    g.add_argument("--check", type=Path, metavar="FILE", help="compare with the digest recorded in FILE")
    args = p.parse_args(argv)
    if not (args.out_root / "report" / "stats.json").exists():
        print(f"error: {args.out_root}: no report/stats.json (build the corpus first)", file=sys.stderr)
        return 2
    actual = corpus_fingerprint(args.out_root)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(actual['files'])} files and {len(actual['counts'])} stage counts in {args.write}")
        return 0
    if args.check:
        problems = compare_fingerprints(json.loads(args.check.read_text()), actual)
        for line in problems:
            print(line)
        print(f"{'identical' if not problems else f'{len(problems)} difference(s)'}: {args.out_root} vs {args.check}")
        return 1 if problems else 0
    print(json.dumps(actual, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
