"""Executors: where cells run. The driver alone writes the store, in its callbacks.

``LocalExecutor`` runs cells one after another in the driver process (a worker keeps one base
model's Generator between cells), or in ``workers`` spawned processes. ``RayExecutor`` submits
each cell as a Ray task with ``num_cpus``/``num_gpus`` from the config (a model's ``gpus``,
``executor.cpus_per_cell``), keeps at most ``max_parallel`` in flight, and hands each outcome back to the driver as it
arrives. The run directory must be visible to every Ray worker at the same path (one
machine, or a shared filesystem): workers write cell directories, the driver reads hashes.

Progress: each executor reports ``sftscale.events.ProgressEvent``s to ``on_progress``: the
runner's (cell entering a stage, training steps, generation) for cells run in the driver
process, one ``in a worker`` / ``on ray`` event for a cell handed to another process.

Multi-process cells (``Cell.world > 1``: recipe ``sharding`` ddp/fsdp with several
``gpus``/``processes``): the local executor's train stage starts them with torchrun; on Ray
the cell's task holds no resources, trains through Ray Train's TorchTrainer (one worker per
process, possibly on several nodes) and evaluates in a Ray task with the cell's CPUs and GPUs
(``train.launch``). A failed worker fails the cell like any stage error.

Not handled: stage-level progress from worker processes and Ray workers (the display shows
which cells are in flight), per-cell timeouts, preemption-aware rescheduling beyond what Ray
retries (``max_retries=0``: a cell whose worker dies is recorded as failed;
``--retry-failed`` reruns).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from ..config import StudyConfig
from ..events import ProgressEvent, ProgressFn
from ..grid.cells import Cell
from ..rundir.stagespec import Stage, StageContext

OnStart = Callable[[Cell], None]
OnDone = Callable[[Cell, dict], None]


class Executor(Protocol):
    def run(self, cells: Sequence[Cell], run_dir: Path, runner: Any, *, on_start: OnStart,
            on_progress: ProgressFn, on_done: OnDone) -> None: ...


class LocalExecutor:
    """On this machine. ``workers=1``: one cell after another in the driver process (a worker
    keeps one base model's Generator between cells). ``workers>1``: that many worker processes
    (spawned, so each has its own torch), the most expensive cells (largest N) first; the
    driver still writes the store alone, as each outcome arrives. ``threads``: torch threads
    per cell (on a 2-core CPU, two workers of one thread beat one worker of two)."""

    name = "local"

    def __init__(self, workers: int = 1, threads: int | None = None):
        self.workers, self.threads = workers, threads

    def run(self, cells: Sequence[Cell], run_dir: Path, runner: Any, *, on_start: OnStart,
            on_progress: ProgressFn, on_done: OnDone) -> None:
        if self.workers <= 1 or len(cells) <= 1:
            set_threads(self.threads)
            for cell in cells:
                on_start(cell)
                on_done(cell, runner.run(cell, run_dir, progress=on_progress))
            return
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        queue = sorted(cells, key=lambda c: -c.n)  # longest first: better packing of the workers
        run_dir_s = str(Path(run_dir).resolve())
        with ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                 initializer=set_threads, initargs=(self.threads,)) as pool:
            inflight: dict[Any, Cell] = {}
            try:
                while queue or inflight:
                    while queue and len(inflight) < self.workers:
                        cell = queue.pop(0)
                        inflight[pool.submit(_ray_run_cell, runner, cell.to_dict(), run_dir_s)] = cell
                        on_start(cell)
                        on_progress(ProgressEvent("in a worker", cell=cell.key))
                    done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                    for fut in done:
                        cell = inflight.pop(fut)
                        try:
                            outcome = fut.result()
                        except Exception as e:  # the worker process died
                            outcome = {"key": cell.key, "ok": False,
                                       "error": f"worker: {type(e).__name__}: {str(e)[:2000]}"}
                        on_done(cell, outcome)
            except BaseException:
                for fut in inflight:
                    fut.cancel()
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.kill()  # Ctrl-C: do not wait for running cells
                raise


def set_threads(threads: int | None) -> None:
    """Pool initializer: this process's torch intra-op threads (None: leave as is)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def _ray_run_cell(runner: Any, cell_dict: dict, run_dir: str) -> dict:
    """The Ray task body: one cell in a worker process."""
    return runner.run(Cell.from_dict(cell_dict), run_dir)


def _ray_resources(cell: Cell) -> dict[str, float]:
    """A cell's Ray task: its CPUs and GPUs; a multi-process cell's task only coordinates (0
    CPUs, 0 GPUs): its Ray Train workers and its evaluation task hold the resources, so the
    cell never waits for resources it holds itself."""
    if cell.world > 1:
        return {"num_cpus": 0, "num_gpus": 0}
    return {"num_cpus": cell.cpus, "num_gpus": cell.gpus or 0}


def _ray_cell_task(runner: Any, cell_dict: dict, run_dir: str) -> dict:
    """The Ray task body: training of a multi-process cell goes through Ray Train
    (``train.launch``), each of its other stages (``StageSpec.own_workers`` off: evaluation,
    ...) into a Ray task of its own with the cell's resources."""
    from ..train.launch import LAUNCHER_ENV

    os.environ[LAUNCHER_ENV] = "ray"
    cell = Cell.from_dict(cell_dict)
    if cell.world > 1 and hasattr(runner, "with_run"):
        for spec in runner.stages:
            if not spec.own_workers:
                runner = runner.with_run(spec.name, OnRay(spec.run, cell.cpus, cell.gpus or 0))
    return runner.run(cell, run_dir)


class OnRay:
    """A stage run as a Ray task with ``cpus``/``gpus`` (picklable; progress not forwarded)."""

    def __init__(self, stage: Stage, cpus: float, gpus: float):
        self.stage, self.cpus, self.gpus = stage, cpus, gpus

    def __call__(self, cell: Cell, ctx: StageContext) -> None:
        import dataclasses

        import ray

        task = ray.remote(max_retries=0)(_call_stage).options(num_cpus=self.cpus,
                                                              num_gpus=self.gpus)
        ray.get(task.remote(self.stage, cell, dataclasses.replace(ctx, progress=None)))


def _call_stage(stage: Stage, cell: Cell, ctx: StageContext) -> None:
    stage(cell, ctx)


class RayExecutor:
    """Cells as Ray tasks. ``address``: an existing cluster (or $RAY_ADDRESS); else a local one."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 max_parallel: int | None = None, shutdown: bool | None = None):
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus
        self.max_parallel = max_parallel
        self.shutdown = shutdown

    def _init(self) -> bool:
        import ray

        if ray.is_initialized():
            return False
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True,
                              "ignore_reinit_error": True}
        if self.address:
            kw["address"] = self.address
        elif self.num_cpus:
            kw["num_cpus"] = self.num_cpus
        try:
            ray.init(**kw)
        except ConnectionError as e:
            from ..io import InputError
            raise InputError(None, f"cannot connect to the Ray cluster at {self.address}: {e} "
                             "(on a cluster node, RAY_ADDRESS=auto finds the local head)",
                             field="executor.address") from None
        return True

    def run(self, cells: Sequence[Cell], run_dir: Path, runner: Any, *, on_start: OnStart,
            on_progress: ProgressFn, on_done: OnDone) -> None:
        if not cells:
            return
        import ray

        started = self._init()
        try:
            remote = ray.remote(max_retries=0)(_ray_cell_task)
            runner_ref = ray.put(runner)
            run_dir_s = str(Path(run_dir).resolve())
            queue = list(cells)
            inflight: dict[Any, Cell] = {}
            limit = self.max_parallel or len(queue)
            while queue or inflight:
                while queue and len(inflight) < limit:
                    cell = queue.pop(0)
                    ref = remote.options(**_ray_resources(cell)).remote(
                        runner_ref, cell.to_dict(), run_dir_s)
                    inflight[ref] = cell
                    on_start(cell)
                    on_progress(ProgressEvent("on ray", cell=cell.key))
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    cell = inflight.pop(ref)
                    t0 = time.perf_counter()
                    try:
                        outcome = ray.get(ref)
                    except Exception as e:  # worker died, task error outside the runner, ...
                        outcome = {"key": cell.key, "ok": False,
                                   "error": f"ray: {type(e).__name__}: {str(e)[:2000]}",
                                   "wall_s": time.perf_counter() - t0}
                    on_done(cell, outcome)
        except BaseException:
            for ref in list(locals().get("inflight", {})):
                try:
                    ray.cancel(ref, force=True)
                except Exception:
                    pass
            raise
        finally:
            if (self.shutdown if self.shutdown is not None else started):
                ray.shutdown()


def make_executor(kind: str, cfg: StudyConfig | None = None) -> Executor:
    ex = cfg.executor if cfg is not None else None
    if kind == "local":
        return LocalExecutor(workers=ex.workers if ex else 1, threads=ex.threads if ex else None)
    if kind == "ray":
        return RayExecutor(address=ex.address if ex else None, num_cpus=ex.num_cpus if ex else None,
                           max_parallel=ex.max_parallel if ex else None)
    raise ValueError(f"unknown executor {kind!r} (local or ray)")


__all__ = ["Executor", "LocalExecutor", "RayExecutor", "make_executor"]
