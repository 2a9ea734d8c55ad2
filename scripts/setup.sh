#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine: system packages, the .venv, the project (editable).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS="clang-22 lld-22 llvm-22-tools mlir-22-tools cmake"
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

PY=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  $PY -m venv .venv
fi
# Reinstall only when a dependency list changed (the stamp records their checksum).
sum=$(cat pyproject.toml pruning/pyproject.toml apps/pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.lrc-stamp 2>/dev/null)" != "$sum" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q "torch==2.13.0" "torch-mlir==20261001"
  .venv/bin/pip install -q -e ".[test]"
  [ -f pruning/pyproject.toml ] && .venv/bin/pip install -q -e pruning
  [ -f apps/pyproject.toml ] && .venv/bin/pip install -q -e apps
  echo "$sum" > .venv/.lrc-stamp
fi
