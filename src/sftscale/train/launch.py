"""Starting one cell's training as several processes, through torch's and Ray's launchers.

``train_cell_launched(..., world=k)`` is ``train.cell.train_cell`` for a cell that trains in
``k`` processes (``world <= 1``: train_cell itself, in this process). The request (model,
task object, N, seed, recipe, ...) is pickled and every process runs ``train_cell`` on it;
``train.distributed`` gives the loop its process group, rank 0 writes ``ckpt/`` and
``train_meta.json`` into ``out`` (the same files as a one-process cell), and this function
returns that meta. Launchers:

- ``torchrun`` (the local executor): ``python -m torch.distributed.run --standalone
  --nproc_per_node k --max-restarts 0 -m sftscale.train.launch REQUEST``, in its own session.
  Rank 0 appends its progress events to a file this process forwards to ``progress``. A
  worker that dies (or raises) makes torchrun stop the others and exit non-zero: this raises
  a RuntimeError with the failing rank's last lines, and the caller's stage fails cleanly.
  Ctrl-C or an error here kills torchrun's whole session.
- ``ray`` (the Ray executor, set through ``SFTSCALE_LAUNCHER=ray``): Ray Train's
  ``TorchTrainer(ScalingConfig(num_workers=k, use_gpu=...), FailureConfig(max_failures=0))``,
  so the k processes may span nodes; Ray Train creates the process group (gloo or NCCL) and
  sets RANK/WORLD_SIZE/LOCAL_RANK. ``out`` must be on a filesystem every node sees (the run
  directory of a Ray study already must). A failed worker makes ``fit()`` raise.

Not handled: resuming a half-finished multi-process run (it restarts, as every cell does),
elastic membership (a lost worker fails the cell; no restarts), progress events from Ray
Train workers, choosing the CPU threads of each process beyond ``threads`` (default 1).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..events import ProgressEvent, ProgressFn
from ..tasks.base import Task
from .recipe import Recipe

LAUNCHER_ENV = "SFTSCALE_LAUNCHER"
LAUNCHERS = ("torchrun", "ray")


def launcher_from_env() -> str:
    """``$SFTSCALE_LAUNCHER`` (``torchrun`` or ``ray``), default ``torchrun``."""
    v = os.environ.get(LAUNCHER_ENV, "torchrun") or "torchrun"
    if v not in LAUNCHERS:
        raise ValueError(f"{LAUNCHER_ENV}={v!r}: use one of {', '.join(LAUNCHERS)}")
    return v


def train_cell_launched(model: Any, task: str | Task, n: int, seed: int, out: str | os.PathLike, *,
                        recipe: Recipe | dict | str | os.PathLike | None = None,
                        task_options: dict | None = None,
                        progress: ProgressFn | None = None, world: int = 1,
                        launcher: str | None = None, use_gpu: bool = False,
                        cpus_per_worker: float = 1.0, threads: int | None = None) -> dict:
    """``train_cell`` in ``world`` processes started by ``launcher`` (see the module
    docstring); returns the cell's train_meta."""
    from .cell import read_meta, train_cell

    kw = dict(model=model, task=task, n=n, seed=seed, out=str(out), recipe=recipe,
              task_options=task_options)
    if world <= 1 or int(n) == 0:  # N = 0 writes a meta pointing at the base model
        return train_cell(progress=progress, **kw)
    launcher = launcher or launcher_from_env()
    Path(out).mkdir(parents=True, exist_ok=True)
    req = {"kw": kw, "threads": threads or 1}
    if launcher == "ray":
        _run_ray(req, world, use_gpu, cpus_per_worker, Path(out))
    else:
        _run_torchrun(req, world, progress)
    meta = read_meta(out)
    if meta is None:
        raise RuntimeError(f"{world} training processes finished without writing "
                           f"{Path(out) / 'train_meta.json'}")
    return meta


# --- torchrun ----------------------------------------------------------------------------------

def torchrun_command(world: int, request: str | os.PathLike) -> list[str]:
    """The command line that starts ``world`` processes of this module on ``request``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(world), "--max-restarts", "0",
            "-m", "sftscale.train.launch", str(request)]


def _run_torchrun(req: dict, world: int, progress: ProgressFn | None) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="sftscale-launch-"))
    try:
        req = {**req, "progress_file": str(tmp / "progress.jsonl")}
        (tmp / "request.pkl").write_bytes(pickle.dumps(req))
        env = {**os.environ, "OMP_NUM_THREADS": str(req["threads"]), LAUNCHER_ENV: "torchrun"}
        with open(tmp / "log.txt", "wb") as log:
            proc = subprocess.Popen(torchrun_command(world, tmp / "request.pkl"), stdout=log,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                _follow(proc, tmp / "progress.jsonl", progress)
            except BaseException:
                _kill_session(proc)
                raise
        if proc.returncode != 0:
            raise RuntimeError(f"torchrun ({world} processes) exited with {proc.returncode}: "
                               f"{_failure(tmp / 'log.txt')}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _follow(proc: subprocess.Popen, events: Path, progress: ProgressFn | None) -> None:
    """Wait for ``proc``, forwarding the progress events rank 0 appends to ``events``."""
    pos = 0
    while True:
        rc = proc.poll()
        if progress is not None and events.exists():
            with open(events, encoding="utf-8") as f:
                f.seek(pos)
                chunk = f.read()
            done = chunk[:chunk.rfind("\n") + 1]  # whole lines only
            pos += len(done.encode("utf-8"))
            for line in done.splitlines():
                progress(ProgressEvent(**json.loads(line)))
        if rc is not None:
            return
        time.sleep(0.2)


def _kill_session(proc: subprocess.Popen) -> None:
    """Stop torchrun and its workers (their own session, started by us)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def _failure(log: Path, limit: int = 1500) -> str:
    """The failing rank's error lines from torchrun's log (else its last lines)."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    errs = [ln for ln in lines if ln.startswith("[rank") and "Error" in ln]
    signals = [ln.strip() for ln in lines if "Signal" in ln or "exitcode" in ln]
    text = "; ".join(errs[-3:] or signals[-4:] or lines[-5:])
    return text[-limit:]


# --- Ray Train ---------------------------------------------------------------------------------

def _run_ray(req: dict, world: int, use_gpu: bool, cpus: float, out: Path) -> None:
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    storage = out.parent / f".{out.name}.ray_train"
    trainer = TorchTrainer(
        _ray_worker, train_loop_config={"request": pickle.dumps(req)},
        scaling_config=ScalingConfig(num_workers=world, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus}),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name="train", storage_path=str(storage.resolve()),
                             failure_config=FailureConfig(max_failures=0)))
    try:
        trainer.fit()
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def _ray_worker(config: dict) -> None:
    """One Ray Train worker: the process group exists and RANK/WORLD_SIZE are set."""
    run_request(pickle.loads(config["request"]))


# --- the worker --------------------------------------------------------------------------------

def run_request(req: dict) -> None:
    """Every process: ``train_cell`` on the request; rank 0 reports progress to its file."""
    import torch

    from .cell import train_cell

    torch.set_num_threads(int(req.get("threads") or 1))
    progress = None
    if req.get("progress_file") and int(os.environ.get("RANK", "0")) == 0:
        path = req["progress_file"]

        def progress(ev: ProgressEvent) -> None:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"stage": ev.stage, "done": ev.done, "total": ev.total,
                                    "metrics": dict(ev.metrics)}) + "\n")
    train_cell(progress=progress, **req["kw"])
    import torch.distributed as dist

    if "progress_file" in req and dist.is_initialized():  # torchrun (Ray Train cleans up itself)
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m sftscale.train.launch REQUEST.pkl (written by "
              "train_cell_launched; start it with torchrun)", file=sys.stderr)
        return 2
    run_request(pickle.loads(Path(args[0]).read_bytes()))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["LAUNCHERS", "LAUNCHER_ENV", "launcher_from_env", "main", "run_request",
           "torchrun_command", "train_cell_launched"]
