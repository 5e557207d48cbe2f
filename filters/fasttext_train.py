"""Train a fastText supervised model in a fresh process.

Why: with fasttext-numpy2 0.10, ``train_supervised(thread=1, seed=s)`` gives the same model for the
same data only the first time it runs in a process; later trainings in the same process drift (and can
end in "Encountered NaN"). Training in a child interpreter makes every build reproducible for its seed.
This module imports nothing but fastText (and ``storage.atomic``, stdlib only) so the child starts fast.

    python -m filters.fasttext_train MODEL_PATH '{"input": "train.txt", "dim": 64, ...}'
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from storage.atomic import atomic_path

REPO_ROOT = Path(__file__).resolve().parent.parent


def train_supervised(model_path: str | Path, timeout: float = 1800, **kwargs: Any) -> None:
    """``fasttext.train_supervised(**kwargs)`` in a child process, saved to ``model_path`` atomically."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    with atomic_path(model_path) as tmp:  # the child saves to tmp; renamed onto model_path on success
        cmd = [sys.executable, "-m", "filters.fasttext_train", str(tmp), json.dumps(kwargs)]
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ValueError(f"fastText training did not finish in {timeout:.0f}s (killed); rerun to retry") from None
        if done.returncode != 0 or not tmp.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ValueError(f"fastText training failed ({last}); try a lower lr or fewer epochs")


def main(argv: list[str]) -> int:
    import fasttext

    fasttext.FastText.eprint = lambda *args, **kw: None
    model_path, kwargs = argv[0], json.loads(argv[1])
    try:
        fasttext.train_supervised(**kwargs).save_model(model_path)
    except (RuntimeError, ValueError) as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
