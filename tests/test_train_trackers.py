"""TensorBoard and W&B mirror metrics.jsonl, read back the way their users' tools read them.

TensorBoard: the event files are loaded with tensorboard's own ``EventAccumulator`` and must hold exactly
metrics.jsonl's numbers, one value per step even after a kill-and-resume replayed steps. W&B (offline
mode, no network): the run folder under ``<run>/wandb/`` holds a run whose history has the same keys and
steps, and nothing is written to $HOME. A missing tensorboard warns once and the run goes on; a W&B
request without the package fails at configuration time.
"""
from __future__ import annotations

import importlib.util
import shutil
import struct
import sys
import time

import pytest

from train import trackers
from train.config import ConfigError, config_from_dict
from train.loop import train
from train.metrics import MetricsLog, read_metrics
from train.trackers import scalars
from train_support import make_corpus, tiny_config


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def _jsonl_scalars(run) -> dict[str, dict[int, float]]:
    """tag -> {step: value} from metrics.jsonl (later records of a step win, as they do after a resume)."""
    out: dict[str, dict[int, float]] = {}
    for record in read_metrics(run / "metrics.jsonl"):
        for tag, value in scalars(record).items():
            out.setdefault(tag, {})[record["step"]] = value
    return out


def test_tensorboard_holds_metrics_jsonl_and_a_resume_does_not_repeat_steps(corpus, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    cfg = tiny_config(corpus, run, max_steps=8, eval_every=4, ckpt_every=4)
    train(config_from_dict(cfg))
    # a kill after step 8 was logged but before its checkpoint: the resume replays steps 5..8
    shutil.rmtree(run / "checkpoints" / "step_0000008")
    (run / "summary.json").unlink()
    train(config_from_dict(cfg), resume=True)

    expected = _jsonl_scalars(run)
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "train/mem_mb"} <= expected.keys()
    assert {"eval/commoncrawl", "eval/github", "eval/wikipedia"} <= expected.keys()
    assert {"mixture/commoncrawl", "mixture/github", "mixture/wikipedia"} <= expected.keys()
    assert "train/mfu" not in expected  # None on CPU: not a number, not logged
    assert sorted(expected["train/loss"]) == list(range(1, 9)) and sorted(expected["eval/github"]) == [4, 8]
    assert sum(expected[f"mixture/{s}"][8] for s in ("commoncrawl", "github", "wikipedia")) == pytest.approx(1)

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == set(expected)
    for tag, by_step in expected.items():
        seen = events.Scalars(tag)
        steps = [e.step for e in seen]
        assert steps == sorted(by_step), (tag, steps)  # each step once, in order
        for e in seen:
            assert e.value == pytest.approx(by_step[e.step], rel=1e-6, abs=1e-12), (tag, e.step)


def _wandb_records(path):
    """Protobuf records of a W&B ``.wandb`` file: a 7-byte header (":W&B", magic, version), then a
    LevelDB-style log of 32 KiB blocks whose chunks carry crc32 (4), length (2) and type (1) headers."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, records, pending, pos = 32768, [], b"", 7
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:  # zero fill: the rest of this block is padding (LevelDB log format)
            pos += block - pos % block
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def _closed(log_file) -> bool:
    try:
        return "exit" in {r.WhichOneof("record_type") for r in _wandb_records(log_file)}
    except Exception:  # noqa: BLE001 - a record still being written does not parse yet
        return False


def test_wandb_offline_run_folder_has_the_same_keys(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    run = tmp_path / "run"
    cfg = tiny_config(corpus, run, max_steps=6, eval_every=3, ckpt_every=3,
                      metrics={"tensorboard": False, "wandb": {"project": "llamix-test", "mode": "offline"}})
    train(config_from_dict(cfg))

    assert not (run / "tensorboard").exists()
    assert not (tmp_path / "home").exists()  # W&B wrote nothing outside the run folder
    assert "WANDB_DIR" not in __import__("os").environ  # and left the process environment as it was
    run_id = (run / "wandb" / "run_id").read_text().strip()
    [folder] = (run / "wandb").glob(f"offline-run-*-{run_id}")
    # W&B's service process writes the log and may still be flushing it when finish() returns: wait
    # (bounded) for its closing `exit` record before reading
    log_file = folder / f"run-{run_id}.wandb"
    deadline = time.monotonic() + 60
    while not _closed(log_file) and time.monotonic() < deadline:
        time.sleep(0.2)
    history: dict[str, dict[int, float]] = {}
    run_record = None
    for record in _wandb_records(log_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run_record = record.run
        if kind != "history":
            continue
        items = {"/".join(i.nested_key) if i.nested_key else i.key: i.value_json for i in record.history.item}
        step = int(items.pop("_step"))
        for key, value in items.items():
            if not key.startswith("_"):
                history.setdefault(key, {})[step] = float(value)
    assert run_record is not None and run_record.project == "llamix-test" and run_record.display_name == "test"
    expected = _jsonl_scalars(run)
    assert set(history) == set(expected)
    for tag, by_step in expected.items():
        assert history[tag] == pytest.approx(by_step, rel=1e-9), tag


def test_missing_tensorboard_warns_once_and_the_log_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` now raises ImportError
    monkeypatch.setattr(trackers, "_warned", set())
    for name in ("a", "b"):
        log = MetricsLog(tmp_path / name, enabled=True, resume_step=None)
        log.write({"step": 1, "loss": 2.0})
        log.close()
        assert read_metrics(tmp_path / name / "metrics.jsonl") == [{"step": 1, "loss": 2.0}]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install tensorboard" in err[0]
    assert not (tmp_path / "a" / "tensorboard").exists()


def test_wandb_settings_are_checked_when_the_config_is_read(corpus, tmp_path, monkeypatch):
    def cfg(**wandb):
        return tiny_config(corpus, tmp_path / "run", metrics={"wandb": wandb})

    with pytest.raises(ConfigError, match="mode must be online"):
        config_from_dict(cfg(project="p", mode="sometimes"))
    with pytest.raises(ConfigError, match="metrics.wandb.project is required"):
        config_from_dict(cfg(mode="offline"))
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) metrics.tensorbord"):
        config_from_dict(tiny_config(corpus, tmp_path / "run", metrics={"tensorbord": True}))
    assert not config_from_dict(tiny_config(corpus, tmp_path / "run")).metrics.wandb.project

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(ConfigError, match="wandb package is not installed: pip install wandb"):
        config_from_dict(cfg(project="p", mode="offline"))
