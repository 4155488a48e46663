"""Many curves fitted in worker processes, with the same results as in one process.

``fork_map(fn, args, workers, shared)``: ``[fn(a) for a in args]`` in ``workers`` forked
processes (results in the order of ``args``). ``shared`` is set as ``SHARED`` before the fork,
so the workers read big inputs (tables, curves, backtest records) without pickling them;
only ``args`` and the results cross between processes. Every fit here is a function of one
curve (its bootstrap generator is seeded by its own key and every batched fit solves each row
alone), so splitting the curves into chunks changes no number: ``fit.progress.run_groups``
uses this for inputs of more than ``PARALLEL_OVER`` curves.

``default_workers()``: the CPUs this process may use, at most ``MAX_WORKERS``.

Not handled: platforms without ``fork`` (Windows; macOS's default is spawn, but fork is
available there and used): one process fits everything; sharing work between chunks of
unequal cost (the curves are split into ``CHUNKS_PER_WORKER`` chunks per worker, taken in
turn). A worker that dies (killed, out of memory) is not retried as a worker: the whole map is
run again in this process, with a warning on stderr.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

PARALLEL_OVER = 40  # curves; below this the fork and the pickling cost more than they save
MAX_WORKERS = 8
CHUNKS_PER_WORKER = 2
SHARED: dict[str, Any] = {}


def default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_WORKERS))


def can_fork() -> bool:
    return "fork" in mp.get_all_start_methods()


def chunks(n: int, k: int) -> list[range]:
    """``range(n)`` cut into at most ``k`` contiguous, nearly equal pieces (none empty)."""
    k = max(1, min(k, n))
    edges = [round(i * n / k) for i in range(k + 1)]
    return [range(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def fork_map(fn: Callable[[T], R], args: Sequence[T], workers: int, shared: dict[str, Any],
             done: Callable[[], Any] | None = None) -> list[R]:
    """``[fn(a) for a in args]``, in ``workers`` forked processes when there are two or more of
    each (and fork exists); ``shared`` is ``SHARED`` while it runs. ``done()`` after each
    result. An exception in a worker is raised here; a worker that died gives a warning and the
    map is run again here."""
    SHARED.clear()
    SHARED.update(shared)
    try:
        if workers > 1 and len(args) > 1 and can_fork():
            try:
                return _in_workers(fn, args, workers, done)
            except BrokenProcessPool:
                print("WARNING: a fit worker process died (killed or out of memory); fitting in "
                      "this process instead", file=sys.stderr, flush=True)
        return _collect((fn(a) for a in args), done)
    finally:
        SHARED.clear()


def _in_workers(fn: Callable[[T], R], args: Sequence[T], workers: int, done: Callable[[], Any] | None) -> list[R]:
    with warnings.catch_warnings(), \
            ProcessPoolExecutor(min(workers, len(args)), mp_context=mp.get_context("fork")) as ex:
        # Python >= 3.12 warns about fork() in a process with threads (a progress bar's); the
        # workers only compute and return, they never take a lock of those threads
        warnings.filterwarnings("ignore", message=".*fork", category=DeprecationWarning)
        futures = [ex.submit(fn, a) for a in args]
        return _collect((f.result() for f in futures), done)


def _collect(results: Iterator[R], done: Callable[[], Any] | None) -> list[R]:
    """The results in order, calling ``done()`` after each."""
    out = []
    for r in results:
        out.append(r)
        if done is not None:
            done()
    return out


__all__ = ["CHUNKS_PER_WORKER", "PARALLEL_OVER", "SHARED", "can_fork", "chunks", "default_workers", "fork_map"]
