"""Peak memory of MinHash clustering: the old single ``clusters`` task vs the largest task of each
distributed pass (verify, large/small-star rounds, members, clusters), on a generated duplicate graph.

Why: issue #15 item 2 asks that no task hold every duplicate edge; this measures it. Every task runs in
its own fresh Python process, and its peak RSS is the kernel's ``VmHWM`` at its end (the
import baseline is measured the same way, with a task that does nothing).

    .venv/bin/python bench/minhash_components.py --edges 2000000 --memory-gb 0.25 --out /tmp/mhc
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dedup.components import BYTES_PER_MEMBER_RECORD, BYTES_PER_STAR_RECORD, MemberRouter, StarStep, root_slots  # noqa: E402
from dedup.lsh import EDGE  # noqa: E402
from dedup.minhash import BYTES_PER_MEMBER, ClusterBuilder, EdgeVerifier, bytes_per_candidate, sig_path  # noqa: E402
from dedup.routing import SLOTS, RoutedWriter, manifest, plan_bounds, slot_of, total  # noqa: E402
from dedup.workfiles import save  # noqa: E402

BANDS, HASHES = 14, 112


def generate(work: Path, edges: int, shards: int, seed: int = 0) -> list[str]:
    """Clusters of near-duplicates (sizes 2 + geometric, mean ~6) over ``shards`` shards of documents:
    members share their cluster's signature except for 10 of 112 values (agreement ~0.91), and each
    star edge appears in 2 bands on average (so verify deduplicates). Also one ``id`` column per shard."""
    rng = np.random.default_rng(seed)
    sizes = 2 + rng.geometric(0.2, size=edges)
    sizes = sizes[: int(np.searchsorted(np.cumsum(sizes - 1), edges)) + 1]
    docs = int(sizes.sum() * 1.25)  # 20% of documents in no cluster
    per = -(-docs // shards)
    perm = rng.permutation(shards * per)[: sizes.sum()]  # cluster members spread over all shards
    keys = (perm // per).astype(np.uint64) << np.uint64(32) | (perm % per).astype(np.uint64)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    cluster_of = np.repeat(np.arange(len(sizes)), sizes)
    first = keys[starts][cluster_of]
    member = np.ones(len(keys), dtype=bool)
    member[starts] = False
    u, v = np.minimum(first[member], keys[member]), np.maximum(first[member], keys[member])
    base = rng.integers(0, 2**32 - 1, size=(len(sizes), HASHES), dtype=np.uint32)
    inputs = []
    for r in range(shards):
        sig = rng.integers(0, 2**32 - 1, size=(per, HASHES), dtype=np.uint32)
        sel = (keys >> np.uint64(32)) == r
        idx = (keys[sel] & np.uint64(0xFFFFFFFF)).astype(np.int64)
        rows = base[cluster_of[sel]].copy()
        rows[:, rng.integers(0, HASHES, size=10)] ^= 1
        sig[idx] = rows
        save(sig_path(work, r), sig)
        path = work / "input" / f"{r:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"id": [f"doc-{r}-{i}" for i in range(per)]}), path)
        inputs.append(str(path))
    e = np.empty(len(u), dtype=EDGE)
    e["u"], e["v"] = u, v
    for b in range(BANDS):  # each edge in a band with probability 2/14
        band = e[rng.random(len(e)) < 2 / BANDS]
        save(work / "edges" / f"{b:03d}.npy", np.unique(band))  # the old clusters task's input
        w = RoutedWriter(work / "candidates", b, SLOTS)
        w.add(band, slot_of(band["u"]))
        w.close()
    return inputs


def run_task(step, rank: int, tasks: int, work: Path) -> int:
    """The task in a fresh process; its peak RSS in bytes."""
    job = work / "task.pkl"
    job.write_bytes(pickle.dumps((step, rank, tasks)))
    done = subprocess.run([sys.executable, __file__, "--task", str(job)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"task {rank} of {step.name} failed: {done.stderr[-2000:]}")
    return int(done.stdout.strip().splitlines()[-1])


def vm_hwm() -> int:
    """This process's peak RSS in bytes (VmHWM: unlike ru_maxrss, not inherited from the forked parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_pass(name: str, steps: list, tasks: int, work: Path, peaks: dict) -> None:
    start = time.monotonic()
    peak = max(run_task(steps[0], r, tasks, work) for r in range(tasks))
    peaks[name] = {"tasks": tasks, "peak_rss_mib": round(peak / 2**20, 1), "seconds": round(time.monotonic() - start, 1)}
    print(name, peaks[name], flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task")
    ap.add_argument("--edges", type=int, default=2_000_000)
    ap.add_argument("--shards", type=int, default=10)
    ap.add_argument("--memory-gb", type=float, default=0.25)
    ap.add_argument("--out", default="/tmp/minhash_components_bench")
    a = ap.parse_args()
    if a.task:
        step, rank, tasks = pickle.loads(Path(a.task).read_bytes())
        if step is not None:
            list(step.run(None, rank, tasks))
        print(vm_hwm())
        return
    work = Path(a.out)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    inputs = generate(work, a.edges, a.shards)
    peaks: dict = {"baseline": {"peak_rss_mib": round(run_task(None, 0, 1, work) / 2**20, 1)}}
    print("baseline", peaks["baseline"], flush=True)
    # the old single task (ClusterBuilder as it was: every edge, every signature row, components())
    old = subprocess.run([sys.executable, "-c", OLD_TASK, str(work), json.dumps(inputs)], capture_output=True, text=True)
    if old.returncode:
        raise RuntimeError(old.stderr[-2000:])
    peaks["old_clusters_single_task"] = json.loads(old.stdout.strip().splitlines()[-1])
    print("old", peaks["old_clusters_single_task"], flush=True)
    budget = a.memory_gb * 2**30
    bounds = plan_bounds(work / "candidates", BANDS, SLOTS, 0, bytes_per_candidate(HASHES), budget)
    run_pass("verify", [EdgeVerifier(work, BANDS, bounds, 0.7)], len(bounds) - 1, work, peaks)
    src, producers, rounds = work / "star" / "000_verified", len(bounds) - 1, 0
    while True:
        rounds += 1
        changed = 0
        for kind in ("large", "small"):
            bounds = plan_bounds(src, producers, SLOTS, 0, BYTES_PER_STAR_RECORD, budget)
            dst = work / "star" / f"{rounds:03d}_{kind}"
            run_pass(f"{kind}_star_{rounds}", [StarStep(kind, src, producers, bounds, dst)], len(bounds) - 1, work, peaks)
            changed += sum(int(manifest(dst, p)["changed"]) for p in range(len(bounds) - 1))
            src, producers = dst, len(bounds) - 1
        if not changed:
            break
    bounds = plan_bounds(src, producers, SLOTS, 0, BYTES_PER_MEMBER_RECORD, budget)
    run_pass("members", [MemberRouter(src, producers, bounds, work / "members", a.shards)], len(bounds) - 1, work, peaks)
    members = len(bounds) - 1
    bounds = plan_bounds(work / "members", members, a.shards * root_slots(a.shards), 0, BYTES_PER_MEMBER, budget)
    run_pass("clusters", [ClusterBuilder(work, members, bounds, inputs)], len(bounds) - 1, work, peaks)
    new = {"verified_pairs": total(work / "star" / "000_verified", len(list((work / "star" / "000_verified").glob("*.json"))), "verified_pairs"),
           "clusters": total(work / "members", members, "clusters")}
    old = peaks["old_clusters_single_task"]
    assert (old["verified_pairs"], old["clusters"]) == (new["verified_pairs"], new["clusters"]), (old, new)
    summary = {"edges": a.edges, "shards": a.shards, "memory_gb": a.memory_gb, "rounds": rounds, "passes": peaks}
    print(json.dumps(summary))
    (work / "result.json").write_text(json.dumps(summary, indent=1))


# The clusters pass before #15 (dedup/minhash.py at ffbe98b), minus writing its outputs: measured as it ran.
OLD_TASK = r"""
import json, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, %r)
from dedup.lsh import components, split_key
from dedup.minhash import sig_path
from dedup.workfiles import load


def signature_agreement(work_dir, edges, chunk=1 << 16):  # as it was: rows gathered through memory maps
    nodes, inverse = np.unique(np.concatenate([edges["u"], edges["v"]]), return_inverse=True)
    ranks, idx = split_key(nodes)
    rows = None
    for r in np.unique(ranks):
        sigs = load(sig_path(work_dir, int(r)), mmap=True)
        if rows is None:
            rows = np.empty((len(nodes), sigs.shape[1]), dtype=sigs.dtype)
        sel = ranks == r
        rows[sel] = sigs[idx[sel]]
        del sigs
    out = np.empty(len(edges), dtype=np.float64)
    u, v = inverse[: len(edges)], inverse[len(edges) :]
    for lo in range(0, len(edges), chunk):
        out[lo : lo + chunk] = (rows[u[lo : lo + chunk]] == rows[v[lo : lo + chunk]]).mean(axis=1)
    return out

import pyarrow.parquet as pq
import time
work, inputs = Path(sys.argv[1]), json.loads(sys.argv[2])
t = time.monotonic()
edges = np.unique(np.concatenate([load(work / "edges" / f"{b:03d}.npy") for b in range(14)]))
agree = signature_agreement(work, edges)
verified = edges[agree >= 0.7]
nodes, roots, sizes = components(verified)
root_ranks, root_idx = split_key(roots)
root_ids = np.empty(len(nodes), dtype=object)
for r in np.unique(root_ranks):
    ids = pq.read_table(inputs[r], columns=["id"]).column("id").to_numpy(zero_copy_only=False)
    sel = root_ranks == r
    root_ids[sel] = ids[root_idx[sel]]
peak = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"tasks": 1, "peak_rss_mib": round(peak / 2**20, 1), "seconds": round(time.monotonic() - t, 1),
                  "verified_pairs": int(len(verified)), "clusters": int(len(np.unique(roots)))}))
""" % str(ROOT)

if __name__ == "__main__":
    main()
