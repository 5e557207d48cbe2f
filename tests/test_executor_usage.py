"""Per-task usage records of the local executor (pipeline/executors/usage.py): each task's own peak RSS,
CPU and wall time, written next to the pass's completion markers and summed per stage folder."""

import json
import os
import time

from pipeline.executors import make_executor
from pipeline.executors.usage import pass_usage, stage_usage

MB = 1 << 20


def _alloc_by_rank(sizes_mb):
    """A pipeline step whose task ``rank`` touches ``sizes_mb[rank]`` MiB, then frees it."""

    def step(data, rank, world_size):
        block = bytearray(b"\x01") * (sizes_mb[rank] * MB)  # written, so every page is resident
        assert block[-1] == 1
        del block
        return data

    return step


def _burn_cpu(seconds):
    def step(data, rank, world_size):
        end = time.process_time() + seconds
        x = 0
        while time.process_time() < end:
            x += 1
        return data

    return step


def _records(logging_dir):
    return {int(p.stem): json.loads(p.read_text()) for p in (logging_dir / "usage").glob("*.json")}


def test_each_task_of_one_worker_records_its_own_peak(tmp_path):
    logging_dir = tmp_path / "stage" / ".work" / "passes" / "alloc"
    make_executor("local", 1)([_alloc_by_rank([200, 1, 1])], tasks=3, logging_dir=logging_dir, name="alloc")
    usage = _records(logging_dir)
    assert sorted(usage) == [0, 1, 2]
    assert usage[0]["peak_rss_bytes"] >= 200 * MB
    # the same process ran ranks 1 and 2 after rank 0: its high-water mark was reset for each task
    for rank in (1, 2):
        assert usage[rank]["peak_rss_bytes"] < usage[0]["peak_rss_bytes"] - 150 * MB
    assert all(r["wall_seconds"] >= 0 and r["cpu_seconds"] >= 0 for r in usage.values())


def test_cpu_seconds_and_stage_sum_over_passes(tmp_path):
    stage = tmp_path / "stage"
    passes = stage / ".work" / "passes"
    run = make_executor("local", 2)
    run([_burn_cpu(0.3)], tasks=2, logging_dir=passes / "burn", name="burn")  # two worker processes
    run([_alloc_by_rank([80])], tasks=1, logging_dir=passes / "alloc", name="alloc")
    burn = pass_usage(passes / "burn")
    assert burn["tasks"] == 2 and burn["cpu_seconds"] >= 0.6
    total = stage_usage(stage)
    assert set(total["passes"]) == {"burn", "alloc"}
    assert total["cpu_seconds"] >= 0.6 and total["tasks"] == 3
    assert total["peak_task_rss_bytes"] == total["passes"]["alloc"]["peak_task_rss_bytes"] >= 80 * MB


def test_a_resumed_pass_keeps_the_first_runs_records(tmp_path):
    logging_dir = tmp_path / "passes" / "p"
    run = make_executor("local", 1)
    run([_alloc_by_rank([60, 1])], tasks=2, logging_dir=logging_dir, name="p")
    first = _records(logging_dir)
    (logging_dir / "usage" / "00001.json").unlink()
    os.remove(logging_dir / "completions" / "00001")  # as if task 1 had been killed
    run([_alloc_by_rank([1, 120])], tasks=2, logging_dir=logging_dir, name="p")
    again = _records(logging_dir)
    assert again[0] == first[0]  # completed task not rerun, its record untouched
    # the rerun task wrote a record of its own run: the 120 MiB it touched this time, not the first run's 1 MiB
    assert again[1]["peak_rss_bytes"] >= first[1]["peak_rss_bytes"] + 100 * MB


def test_a_failed_task_writes_no_record(tmp_path):
    def fail(data, rank, world_size):
        if rank == 1:
            raise ValueError("boom")
        return data

    logging_dir = tmp_path / "passes" / "f"
    try:
        make_executor("local", 1)([fail], tasks=2, logging_dir=logging_dir, name="f")
    except Exception:
        pass
    assert sorted(_records(logging_dir)) == [0]
