#!/usr/bin/env bash
# Build KenLM's training binaries (lmplz, build_binary) once and cache them in the virtualenv.
#
# Why: the perplexity filter trains CCNet-style 5-gram models with lmplz, which is on neither PyPI nor
# Debian. The `kenlm` sdist on PyPI carries the full C++ sources, so we compile exactly the two tools we
# need from it. Python-side querying uses the `kenlm-ex` wheel, which scores identically.
#
# Usage: tools/build_kenlm.sh [VENV]      (default VENV: <repo>/.venv; binaries go to VENV/bin)
# Env:   KENLM_VERSION (default 0.3.0), PIP (default VENV/bin/pip), JOBS (default: number of cores)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv}"
BIN="$VENV/bin"
KENLM_VERSION="${KENLM_VERSION:-0.3.0}"
PIP="${PIP:-$VENV/bin/pip}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"

if [[ -x "$BIN/lmplz" && -x "$BIN/build_binary" ]]; then
    echo "kenlm: lmplz and build_binary already in $BIN"
    exit 0
fi

# Debian packages the C++ build needs (Boost program_options/system/thread/test, compression libs).
DEBS=(cmake g++ make libboost-program-options-dev libboost-system-dev libboost-thread-dev
      libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev)
missing=()
for pkg in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        echo "kenlm: apt-installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "kenlm: missing build packages; install them first: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/llamix-kenlm.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "kenlm: fetching kenlm==$KENLM_VERSION sources"
"$PIP" download --quiet --no-deps --no-binary kenlm --no-build-isolation "kenlm==$KENLM_VERSION" -d "$WORK/dl"
SDIST="$(ls "$WORK"/dl/kenlm-*.tar.gz | head -n1)"
tar -xzf "$SDIST" -C "$WORK"
SRC="$(find "$WORK" -maxdepth 1 -type d -name 'kenlm-*' | head -n1)"

echo "kenlm: compiling lmplz and build_binary ($JOBS jobs)"
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release >"$WORK/cmake.log" 2>&1 \
    || { echo "kenlm: cmake failed; log:"; tail -n 30 "$WORK/cmake.log"; exit 1; } >&2
make -C "$WORK/build" -j"$JOBS" lmplz build_binary >"$WORK/make.log" 2>&1 \
    || { echo "kenlm: make failed; log:"; tail -n 30 "$WORK/make.log"; exit 1; } >&2

mkdir -p "$BIN"
for tool in lmplz build_binary; do
    install -m 0755 "$WORK/build/bin/$tool" "$BIN/.$tool.tmp"
    mv -f "$BIN/.$tool.tmp" "$BIN/$tool"
done
echo "kenlm: installed $BIN/lmplz and $BIN/build_binary"
