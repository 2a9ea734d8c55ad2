#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine: system packages, the .venv, the project (editable).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS="clang-22 lld-22 llvm-22-tools mlir-22-tools libomp-22-dev cmake gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user mesa-vulkan-drivers libvulkan1 spirv-tools pocl-opencl-icd ocl-icd-libopencl1 llvm-spirv-15"
missing=""
for p in $APT_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# CI logs may keep only stdout: send our errors there too, so a failed step is visible.
exec 2>&1

# Pick a Python 3.11 that can make a venv with pip. PATH may give pyenv's shim, Debian's
# /usr/bin/python3.11 (whose venv needs the python3.11-venv package) or neither.
pick_python() {
  for c in ${PYTHON:-} python3.11 /usr/local/bin/python3.11 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.11*/bin/python3.11 /usr/bin/python3.11 python3; do
    command -v "$c" >/dev/null 2>&1 || continue
    "$c" -c 'import sys; assert sys.version_info[:2] == (3, 11)' >/dev/null 2>&1 || continue
    if "$c" -c 'import venv, ensurepip' >/dev/null 2>&1; then echo "$c"; return 0; fi
  done
  return 1
}
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  PY=$(pick_python || true)
  if [ -z "$PY" ]; then
    echo "setup: no Python 3.11 with venv+ensurepip found; installing python3.11-venv"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3.11-venv >/dev/null
    PY=$(pick_python) || { echo "setup: error: still no usable Python 3.11 (need venv + ensurepip)"; exit 1; }
  fi
  echo "setup: creating .venv with $PY ($(command -v "$PY"))"
  rm -rf .venv
  "$PY" -m venv .venv || { echo "setup: error: '$PY -m venv .venv' failed"; exit 1; }
fi
# Reinstall only when a dependency list changed (the stamp records their checksum).
sum=$(cat scripts/setup.sh pyproject.toml pruning/pyproject.toml apps/pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.lrc-stamp 2>/dev/null)" != "$sum" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/pip install -q --upgrade pip
  # The CPU build of torch, named exactly: PyPI's plain torch==2.13.0 is the CUDA build (GBs, and its
  # triton crashes when loaded next to our LLVM tools). Take the wheel from a local folder where the
  # machine has one (pip's find-links), else from PyTorch's CPU index.
  src=""
  for d in ${PIP_FIND_LINKS:-} /opt/wheels; do
    ls "$d"/torch-2.13.0+cpu-cp311-*.whl >/dev/null 2>&1 && src="$src --find-links $d"
  done
  [ -n "$src" ] || src="--extra-index-url https://download.pytorch.org/whl/cpu"
  .venv/bin/pip install -q $src "torch==2.13.0+cpu" "torch-mlir==20261001"
  .venv/bin/pip install -q -e ".[test,gpu]"
  [ -f pruning/pyproject.toml ] && .venv/bin/pip install -q -e "pruning[all]"
  [ -f apps/pyproject.toml ] && .venv/bin/pip install -q -e apps
  echo "$sum" > .venv/.lrc-stamp
fi

# arm64 threads=N links Debian's aarch64 OpenMP runtime; unpack it privately (no foreign architecture
# is added to the system). Only libomp.so.5 is kept: it needs nothing but the C library.
OMP_A64=.venv/lib/lrc-aarch64/libomp.so.5
if [ ! -f "$OMP_A64" ]; then
  echo "setup: fetching the aarch64 OpenMP runtime (Debian arm64 libomp5)"
  d=$(mktemp -d)
  o="-oAPT::Architecture=arm64 -oAPT::Architectures=arm64 -oDir::State::Lists=$d/lists -oDir::Cache=$d/cache -oDebug::NoLocking=1 -oAPT::Sandbox::User=root"
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/x"
  apt-get $o update -qq >/dev/null
  got=""
  for pkg in libomp5-19 libomp5; do
    (cd "$d" && apt-get $o download "$pkg" >/dev/null 2>&1) && { got=$pkg; break; }
  done
  [ -n "$got" ] || { echo "setup: error: no arm64 libomp5 package found"; rm -rf "$d"; exit 1; }
  dpkg -x "$d"/"$got"_*.deb "$d/x"
  so=$(find "$d/x" -name libomp.so.5 -type f | head -1)
  [ -n "$so" ] || { echo "setup: error: $got has no libomp.so.5"; rm -rf "$d"; exit 1; }
  mkdir -p "$(dirname "$OMP_A64")"
  cp "$so" "$OMP_A64.tmp" && mv "$OMP_A64.tmp" "$OMP_A64"
  rm -rf "$d"
fi
