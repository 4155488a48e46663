"""Shared fixtures: one tiny-model factory and one torch-thread guard.

- ``tiny_model(kind="words"|"chars"|"toy", **cfg) -> Path``: a random tiny Llama with a
  tokenizer, built by ``sftscale.testing.tiny_model`` once per session for each distinct
  (kind, cfg) and shared read-only by every test that asks for the same one (copy it before
  writing into it).
- ``one_torch_thread``: torch limited to one intra-op thread for a module; opt in with
  ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``. Under ``make test``'s xdist
  workers every test runs with one thread (``pytest_configure``).

Helpers that several test files share live in modules that are not test files; test files
do not import each other:

- ``tests/cli.py``: the one way to drive the command line (``run`` in-process through the
  real entry point, ``run_process`` / ``start_process`` where a real process is needed);
- ``tests/study_helpers.py``: the cheap study and its stages, ``tables(run_dir)`` (a run
  directory's tables, for equality checks), store states, a Ray run, reaping subprocesses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest


def pytest_configure(config) -> None:
    """Under ``make test``'s two xdist workers, one torch/OpenMP thread per worker and per
    process it starts: two workers already fill two cores, and a second thread only spins
    (docs/footguns.md, "Shared machines and timing")."""
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Callable[..., Path]:
    from sftscale import testing

    cache: dict[str, Path] = {}

    def make(kind: str = "words", **cfg: Any) -> Path:
        key = repr((kind, sorted(cfg.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"tiny-{kind}") / "m"
            cache[key] = testing.tiny_model(out, kind, **cfg)
        return cache[key]

    return make


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a loaded 2-core machine the
    second thread's spin-waits cost up to 10x wall time; restored afterwards."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
