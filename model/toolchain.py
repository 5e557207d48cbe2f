"""Can torch.compile's default backend (inductor) build code on this machine? Checked once, up front.

Why: inductor compiles C/C++ at the first forward pass (Triton's launcher stubs on a GPU, the kernels
themselves on a CPU), and both need a compiler on PATH and the interpreter's Python.h. A device image
without them kills a run after the model is built and its first step started; checking first lets the
caller fall back to eager with one line that says why.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sysconfig
from pathlib import Path

import torch


def _first_on_path(env_var: str, candidates: tuple[str, ...]) -> str | None:
    named = os.environ.get(env_var)
    if named:
        return shutil.which(named)
    return next((found for c in candidates if (found := shutil.which(c))), None)


def compile_unavailable(device: torch.device | str) -> str | None:
    """Why inductor cannot compile for `device` here, or None when the toolchain is in place."""
    device = torch.device(device)
    if device.type == "cuda":  # Triton builds its launcher with a C compiler (CC, else clang/gcc/cc)
        if importlib.util.find_spec("triton") is None:
            return "triton is not installed"
        if _first_on_path("CC", ("clang", "gcc", "cc")) is None:
            return "no C compiler on PATH (CC, clang, gcc, cc)"
    elif _first_on_path("CXX", ("g++", "clang++", "c++")) is None:  # inductor's C++ kernels
        return "no C++ compiler on PATH (CXX, g++, clang++, c++)"
    include = sysconfig.get_paths().get("include") or ""
    if not (Path(include) / "Python.h").is_file():
        return f"no Python.h in {include or 'the interpreter include dir'} (install the python3-dev headers)"
    return None
