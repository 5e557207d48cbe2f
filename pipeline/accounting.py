"""Per-task document accounting and the stats.json it rolls up into.

datatrove's own stats are summed over the tasks of one launch and go wrong when a job is relaunched
(completed tasks contribute nothing the second time). Here every task writes its counts to its own
file, atomically, overwritten if the task reruns; a stage's totals are the sum over its task files, so
they are right however many times it was interrupted. The identity checked for every stage and source
is docs_in = docs_out + sum(excluded).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from storage.atomic import atomic_write_json

_NUMERIC_TAIL = re.compile(r"^[-+]?\d*\.?\d+(e[-+]?\d+)?$", re.I)


def reason_key(reason: str) -> str:
    """Group fine-grained reasons for counting: ``wikiref:0.12`` -> ``wikiref``; ``langid:fr`` stays."""
    head, sep, tail = reason.partition(":")
    if sep and _NUMERIC_TAIL.match(tail.strip()):
        return head
    return reason


def empty_out_record() -> dict[str, Any]:
    return {"docs_out": 0, "bytes_out": 0, "excluded": {}, "bytes_excluded": 0}


def add_exclusion(record: dict[str, Any], reason: str, nbytes: int) -> None:
    key = reason_key(reason)
    record["excluded"][key] = record["excluded"].get(key, 0) + 1
    record["bytes_excluded"] += nbytes


def write_task_record(account_dir: str | Path, side: str, rank: int, record: dict[str, Any]) -> None:
    atomic_write_json(Path(account_dir) / f"{side}-{rank:05d}.json", record)


class AccountingError(RuntimeError):
    pass


def summarise(account_dir: str | Path, tasks: int) -> dict[str, Any]:
    """Sum the task records of one stage run; raise if a task is missing or the identity fails."""
    account_dir = Path(account_dir)
    total: dict[str, Any] = {"docs_in": 0, "bytes_in": 0, "task_seconds": 0.0, **empty_out_record()}
    for rank in range(tasks):
        for side in ("in", "out"):
            path = account_dir / f"{side}-{rank:05d}.json"
            if not path.exists():
                raise AccountingError(f"task {rank} left no '{side}' record in {account_dir}")
            rec = json.loads(path.read_text())
            for key, value in rec.items():
                if key == "excluded":
                    for reason, n in value.items():
                        total["excluded"][reason] = total["excluded"].get(reason, 0) + n
                elif isinstance(value, (int, float)):
                    total[key] = total.get(key, 0) + value
    total["docs_excluded"] = sum(total["excluded"].values())
    if total["docs_in"] != total["docs_out"] + total["docs_excluded"]:
        lost = total["docs_in"] - total["docs_out"] - total["docs_excluded"]
        raise AccountingError(
            f"accounting identity broken in {account_dir}: docs_in={total['docs_in']} docs_out={total['docs_out']} "
            f"excluded={total['docs_excluded']} ({lost:+d} unaccounted)"
        )
    return total


def merge_into_stats(stats_path: str | Path, stage: str, source: str, record: dict[str, Any]) -> None:
    """Insert one stage/source record into report/stats.json (schema in docs/ARCHITECTURE.md)."""
    stats_path = Path(stats_path)
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {"version": 1, "stages": {}}
    stats.setdefault("stages", {}).setdefault(stage, {})[source] = record
    atomic_write_json(stats_path, stats)


def load_stats(stats_path: str | Path) -> dict[str, Any]:
    stats_path = Path(stats_path)
    return json.loads(stats_path.read_text()) if stats_path.exists() else {"version": 1, "stages": {}}
