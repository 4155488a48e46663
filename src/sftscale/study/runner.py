"""Running a study: expand cells, run train → generate/score for each, record in the store.

Layout of a run directory::

    DIR/study.yaml            the config as given (snapshot)
    DIR/study.sqlite          the store (driver-only writes; see store.py)
    DIR/cells/<key>/cell.json the cell's spec
    DIR/cells/<key>/train/    train_cell's output (ckpt/ + train_meta.json)
    DIR/cells/<key>/eval/     evaluate's results_<ts>.json + samples_<task>_<ts>.jsonl
    DIR/cells/<key>/search/   recipe search candidates, one directory each (search.py)
    DIR/cells/<key>/error.txt traceback of the last failure
    DIR/cache/gen/            generation cache shared by the cells
    DIR/export.csv, DIR/items.jsonl   written at the end (see export.py)

Crash safety: each stage works in ``train.tmp/`` or ``eval.tmp/`` and the directory is
renamed into place only once the stage's last file exists, so ``train/`` and ``eval/``
are always complete; a leftover ``*.tmp/`` is deleted before the stage reruns. The store
records a cell (with the sha256 of its output files and of its checkpoint) in one
transaction after both stages, so after a SIGKILL (of the whole process group, at any
moment) a rerun either finds the cell recorded (and verifies its hashes) or picks up
whatever complete stage directories exist and carries on: the tables equal those of an
uninterrupted run (tests/test_study_reliability.py kills a study at random moments).

Guarantees of ``run_study`` (see also lock.py, integrity.py, repair.py, signals.py):

- One writer: the run directory's ``lock.RunLock`` is held from before the store is
  opened until the exports are written; a second run is refused (``RunDirBusy``, naming the
  holder) or, with ``wait=True``, waits for it. ``prepare`` takes it too when called alone.
- Content checks on reuse: done cells are verified against the store's hashes at every run,
  and a reused ``train/`` against the checkpoint hash sealed when it was trained; a missing or
  changed file sends the cell back to training or to evaluation (integrity.py), never to
  ``failed``. Retraining always discards the cell's old ``eval/``.
- A missing store beside existing cell directories is rebuilt from them; a damaged one is
  refused (``store.StoreDamaged``) unless ``repair=True`` (repair.py).
- SIGTERM is handled like Ctrl-C (signals.py): cells in flight go back to ``pending``.
- A cell that finishes removes its stale ``error.txt``; a reused stage keeps the timing its
  files recorded (``train_meta`` ``wall_s``, the results' evaluation time), not 0.0.

Stages are pluggable (``CellRunner(train=..., evaluate=...)``) and share one signature,
``stage(cell, ctx: StageContext) -> None``: the stage writes its files into ``ctx.out``.
The defaults call ``sftscale.train.cell.train_cell`` and ``sftscale.evaluation.run.evaluate``.

Progress: the runner reports ``sftscale.events.ProgressEvent``s with ``cell`` set: one when
a cell enters a stage (``train``, ``eval``, ``score``) and every event the stage itself
reports through ``ctx.progress``. The display throttles them (``events.Throttle``).

Hooks (``CellRunner(hooks=fn)``, for crash tests): ``fn(point, run_dir, cell_key)`` is
called at ``train`` (inside training, after its first progress event), ``eval``
(evaluation outputs written, not yet renamed into place) and ``commit`` (the cell
finished, the store not yet written; called by ``run_study`` in the driver). A hook may
stop the process there; tests/crash_driver.py does. Production code sets none.

Exports: a failure to write ``export.csv``/``items.jsonl`` at the end is logged as a
warning (logger ``sftscale.study.runner``) and does not fail the run: the store has the
results and ``sftscale export`` writes them again.

Tracking (``tracking:`` in the config): the driver mirrors each recorded cell to MLflow/W&B
(tracking.py). Third-party warnings that are not the user's are filtered (quiet.py).

Not handled: cells whose process dies without an exception in the local executor (a
segfault or the kernel's OOM killer end the whole run: rerun to resume; with the Ray
executor such a cell is recorded as failed), cancelling a single cell, hooks and progress
events from worker processes (``workers > 1`` or Ray: the stages run without them).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..config import StudyConfig
from ..events import ProgressEvent, ProgressFn, Throttle
from ..io import InputError, atomic_write_json, atomic_write_text, fresh_dir, remove_path
from ..quiet import quiet_third_party_warnings
from .cells import Cell, expand_cells
from .integrity import seal_train, train_complete, verify_done
from .lock import RunLock
from .outputs import check_values, collect_outputs, eval_files, parse_results
from .runplan import record_run, save_run_plan
from .signals import terminate_as_interrupt
from .store import Store
from .tracking import NullTracker, open_tracker

log = logging.getLogger(__name__)

Hooks = Callable[[str, Path, str], None]  # (point, run_dir, cell key) -> None; see the docstring


@dataclass(frozen=True)
class StageContext:
    """Everything a stage gets besides its cell.

    ``out``: the (empty) directory the stage writes into, renamed into place afterwards;
    ``train_dir``: the cell's completed ``train/`` (what the eval stage evaluates);
    ``cache_dir``: the generation cache shared by the run's cells; ``share_generator``:
    whether eval may reuse this process's Generator for the base model; ``progress``: where
    the stage reports its ``ProgressEvent``s (None: nobody listens); ``validation``: training
    item ids that eval evaluates INSTEAD of the test items (a recipe search's candidate, search.py).
    """

    run_dir: Path
    cell_dir: Path
    out: Path
    train_dir: Path
    cache_dir: Path
    share_generator: bool = True
    progress: ProgressFn | None = None
    validation: list[str] | None = None


Stage = Callable[[Cell, StageContext], None]
"""``stage(cell, ctx)``: train writes ``ctx.out/train_meta.json`` (and its checkpoint); eval
writes ``ctx.out/results_*.json`` and ``ctx.out/samples_*.jsonl``."""


# --- default stages ------------------------------------------------------------------------

def train_stage(cell: Cell, ctx: StageContext) -> None:
    """``sftscale.train.cell.train_cell`` with the cell's model, task, N, seed and recipe overrides
    (in ``cell.world`` processes through ``train.launch``: torchrun, or Ray Train on Ray)."""
    from ..train.launch import train_cell_launched

    recipe = dict(cell.recipe)
    recipe.setdefault("chat", cell.chat)
    train_cell_launched(cell.model_ref, _task_object(cell), cell.n, cell.seed, ctx.out,
                        recipe=recipe, task_options=cell.task_options or None,
                        progress=ctx.progress, world=cell.world, use_gpu=cell.gpus > 0,
                        cpus_per_worker=cell.cpus)


_GENERATORS: dict[tuple, Any] = {}  # per process: one loaded base model, reused across cells


def _shared_generator(model: str, batch_size: int | None, cache_dir: Path | None,
                      device: str | None = None) -> Any:
    from ..generation.generator import Generator

    key = (model, batch_size, str(cache_dir), device)
    if key not in _GENERATORS:
        _GENERATORS.clear()  # keep one base model in memory
        _GENERATORS[key] = Generator(model, batch_size=batch_size, cache_dir=cache_dir,
                                     device=device)
    return _GENERATORS[key]


def eval_stage(cell: Cell, ctx: StageContext) -> None:
    """``sftscale.evaluation.run.evaluate`` on the cell's checkpoint (the base model for N = 0).

    A peft adapter is attached to the worker's one Generator for the base model (loaded
    once, reused by every cell of that base, unless ``ctx.share_generator`` is off). A fully
    finetuned checkpoint is a model of its own: it gets a Generator of its own (the shared
    one would have its base replaced), and the chat-template guard is applied here since
    evaluate() only checks adapters.
    """
    from ..evaluation.run import check_template, evaluate
    from ..generation.generator import Generator

    train_dir, cache_dir = ctx.train_dir, ctx.cache_dir
    meta = json.loads((train_dir / "train_meta.json").read_text())
    ckpt = train_dir / (meta.get("checkpoint") or "ckpt")
    task = _task_object(cell)
    if ctx.validation is not None:  # a search candidate: training items, never test items
        from .search import validation_view
        task = validation_view(task, ctx.validation)
    common = dict(limit=cell.limit, out=ctx.out, chat=cell.chat, batch_size=cell.batch_size,
                  allow_template_mismatch=cell.allow_template_mismatch, progress=ctx.progress,
                  sampling=cell.sampling, num_fewshot=cell.num_fewshot,  # examples never from
                  fewshot_exclude=meta.get("subset_ids") or ())  # the cell's finetuning subset
    if cell.n > 0 and not ckpt.is_dir():
        raise RuntimeError(f"{train_dir}: trained cell without its checkpoint ({ckpt.name}/)")
    dev = "auto" if cell.gpus > 1 else None  # a model granted several GPUs is spread over them
    if cell.n > 0 and not (ckpt / "adapter_config.json").exists():
        from ..models import template_sha

        gen = Generator(str(ckpt), batch_size=cell.batch_size, cache_dir=cache_dir, device=dev)
        check_template(ckpt, template_sha(gen.tokenizer, cell.chat), cell.allow_template_mismatch)
        evaluate(str(ckpt), task, generator=gen, **common)
    else:
        adapter = str(ckpt) if cell.n > 0 else None
        if ctx.share_generator:
            gen = _shared_generator(cell.model_ref, cell.batch_size, cache_dir, dev)
        else:
            gen = Generator(cell.model_ref, batch_size=cell.batch_size, cache_dir=cache_dir,
                            device=dev)
        evaluate(cell.model_ref, task, adapter=adapter, generator=gen, **common)
    if ctx.validation is not None:  # the search's tie-break
        from .search import write_val_loss
        write_val_loss(gen, task, cell, ctx.out)


def _task_object(cell: Cell) -> Any:
    """The cell's task: max_new_tokens override and external training data applied."""
    from .taskdata import study_task

    return study_task(cell.task_name, cell.task_options, cell.max_new_tokens)


# --- one cell (runs in the worker) ---------------------------------------------------------

@dataclass
class CellRunner:
    """Runs one cell's stages in a worker and returns a plain, picklable outcome dict.

    ``hooks`` (tests only) must be picklable to reach worker processes (a module-level
    function or an instance of a module-level class)."""

    train: Stage = train_stage
    evaluate: Stage = eval_stage
    share_generator: bool = True
    hooks: Hooks | None = None

    def run(self, cell: Cell, run_dir: str | os.PathLike,
            progress: ProgressFn | None = None) -> dict[str, Any]:
        quiet_third_party_warnings()  # this may be a worker process or a Ray task
        run_dir = Path(run_dir)
        cdir = run_dir / "cells" / cell.key
        t0 = time.perf_counter()
        out: dict[str, Any] = {"key": cell.key, "ok": False, "cell_dir": f"cells/{cell.key}",
                               "worker": f"{socket.gethostname()}:{os.getpid()}",
                               "started_at": time.time(), "train_s": 0.0, "eval_s": 0.0}
        try:
            cdir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(cdir / "cell.json", {"key": cell.key, "spec_hash": cell.spec_hash,
                                                   **cell.to_dict()})
            ctx = StageContext(run_dir=run_dir, cell_dir=cdir, out=cdir / "train.tmp",
                               train_dir=cdir / "train", cache_dir=run_dir / "cache" / "gen",
                               share_generator=self.share_generator)
            self._train(cell, ctx, progress, out)
            self._evaluate(cell, ctx, progress, out)
            _emit(progress, cell.key, "score")
            results, samples = eval_files(cdir / "eval")  # type: ignore[misc]
            out.update(collect_outputs(run_dir, cell, ctx.train_dir / "train_meta.json",
                                       results, samples, ckpt_sha=out.pop("ckpt_sha", None)))
            out["ok"] = True
            (cdir / "error.txt").unlink(missing_ok=True)
        except BaseException as e:  # noqa: BLE001 - a cell's failure must not stop the study
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            out["error"] = f"{type(e).__name__}: {e}"
            with contextlib.suppress(OSError):
                atomic_write_text(cdir / "error.txt", traceback.format_exc())
                out["traceback"] = f"cells/{cell.key}/error.txt"
            if _is_oom(e):
                _free_memory()
        out["wall_s"] = time.perf_counter() - t0
        out["overhead_s"] = max(0.0, out["wall_s"] - out["train_s"] - out["eval_s"])
        return out

    def _train(self, cell: Cell, ctx: StageContext, progress: ProgressFn | None,
               out: dict[str, Any]) -> None:
        """Train into ``train.tmp/``, seal its checkpoint hash, rename it to ``train/``
        (skipped when ``train/`` passes ``integrity.train_complete``: its recorded time goes
        to ``out["train_s"]``); the seconds spent go to ``out["train_s"]``, the checkpoint
        hash to ``out["ckpt_sha"]``. Retraining discards the old ``eval/``."""
        sha, why = train_complete(ctx.train_dir)
        if sha is not None:
            from .repair import file_times

            out["train_s"] = file_times(ctx.train_dir, None)[0] or 0.0
            out["ckpt_sha"] = sha
            return
        if why:
            log.warning("%s: %s; retraining it", cell.key, why)
        _emit(progress, cell.key, "train")
        remove_path(ctx.train_dir)
        remove_path(ctx.cell_dir / "eval")
        tmp = fresh_dir(ctx.cell_dir / "train.tmp")
        ts = time.perf_counter()
        sctx = replace(ctx, out=tmp, progress=self._stage_progress("train", ctx.run_dir, cell.key,
                                                                 progress))
        if cell.search:  # a recipe search: k candidates, the chosen one lands in tmp
            from .search import run_search
            run_search(self, cell, sctx)
        else:
            self.train(cell, sctx)
        out["train_s"] = time.perf_counter() - ts
        if not (tmp / "train_meta.json").exists():
            raise RuntimeError("training finished without writing train_meta.json")
        out["ckpt_sha"] = seal_train(tmp)
        os.replace(tmp, ctx.train_dir)

    def _evaluate(self, cell: Cell, ctx: StageContext, progress: ProgressFn | None,
                  out: dict[str, Any]) -> None:
        """Evaluate into ``eval.tmp/``, rename it to ``eval/`` (skipped when ``eval/`` is
        complete); the seconds spent go to ``out["eval_s"]``."""
        edir = ctx.cell_dir / "eval"
        files = eval_files(edir)
        if files is not None:
            from .repair import file_times

            out["eval_s"] = file_times(ctx.train_dir, files[0])[1] or 0.0
            return
        _emit(progress, cell.key, "eval")
        remove_path(edir)
        tmp = fresh_dir(ctx.cell_dir / "eval.tmp")
        ts = time.perf_counter()
        self.evaluate(cell, replace(ctx, out=tmp, progress=self._stage_progress(
            None, ctx.run_dir, cell.key, progress)))
        out["eval_s"] = time.perf_counter() - ts
        if eval_files(tmp) is None:
            raise RuntimeError("evaluation finished without results_*.json and samples_*.jsonl")
        if self.hooks is not None:
            self.hooks("eval", ctx.run_dir, cell.key)
        os.replace(tmp, edir)

    def _stage_progress(self, point: str | None, run_dir: Path, key: str,
                        progress: ProgressFn | None) -> ProgressFn | None:
        """The stage's ``ctx.progress``: events tagged with the cell, on to ``progress``;
        with a hook ``point``, the hook is called once, at the stage's first event."""
        hooks = self.hooks if point is not None else None
        if progress is None and hooks is None:
            return None
        fired = [False]

        def stage_progress(ev: ProgressEvent) -> None:
            if hooks is not None and not fired[0]:
                fired[0] = True
                hooks(point, run_dir, key)  # type: ignore[arg-type]
            if progress is not None:
                progress(ev.for_cell(key))
        return stage_progress


def _emit(progress: ProgressFn | None, key: str, stage: str) -> None:
    if progress is not None:
        progress(ProgressEvent(stage, cell=key))




def _is_oom(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or "out of memory" in str(e).lower()


def _free_memory() -> None:
    _GENERATORS.clear()
    with contextlib.suppress(Exception):
        import gc

        import torch
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# --- the driver ----------------------------------------------------------------------------

@dataclass
class StudyResult:
    run_dir: Path
    counts: dict[str, int]
    ran: int
    failed: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def prepare(cfg: StudyConfig, out: str | os.PathLike | None = None, *, check: bool = True,
            pool_sizes: Mapping[str, int] | None = None, rerun_changed: bool = False,
            repair: bool = False, locked: bool = False) -> tuple[Path, list[Cell]]:
    """Create the run dir and store, and reconcile them with the config's cells.

    Holds the run directory's lock meanwhile unless ``locked`` (the caller holds it).
    A missing store beside cell directories is rebuilt from them; ``repair`` rebuilds a
    damaged one (repair.py)."""
    run_dir = Path(out) if out is not None else cfg.output_dir()
    if check and pool_sizes is None:
        from .plan import check_study
        pool_sizes = check_study(cfg, out=out).pool_sizes
    cells = expand_cells(cfg, pool_sizes)
    make_run_dir(run_dir)
    with contextlib.nullcontext() if locked else RunLock(run_dir).acquire():
        _prepare_store(cfg, run_dir, cells, rerun_changed, repair)
    return run_dir, cells


def make_run_dir(run_dir: Path) -> None:
    """``mkdir -p`` with an InputError (not a traceback) when it cannot be made."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(run_dir, "exists and is not a directory; choose another output "
                         "(--out or the config's output:)", field="output") from None
    except OSError as e:
        raise InputError(run_dir, f"cannot create the run directory ({e.strerror}); choose "
                         "another output (--out or the config's output:)", field="output") from None


def _prepare_store(cfg: StudyConfig, run_dir: Path, cells: list[Cell], rerun_changed: bool,
                   repair: bool) -> None:
    from .repair import ensure_store

    src = Path(cfg.path) if cfg.path and Path(cfg.path).is_file() else None
    snap = src.read_text(encoding="utf-8-sig") if src else _snapshot(cfg)
    ensure_store(run_dir, cells, repair=repair, rerun_changed=rerun_changed)
    with Store(run_dir / "study.sqlite") as st:
        # refused before anything is written: study.yaml keeps the config the cells ran with
        had = {r["key"]: r["spec_hash"] for r in st.cells()}
        changed = [c.key for c in cells if c.key in had and had[c.key] != c.spec_hash]
        if changed and not rerun_changed:
            raise InputError(run_dir / "study.sqlite",
                             f"{len(changed)} cell(s) were run here with a different spec "
                             f"(e.g. {changed[0]}); use another --out, or --rerun-changed "
                             "(nothing in the run directory was changed)")
        try:
            atomic_write_text(run_dir / "study.yaml", snap)
        except OSError as e:
            raise InputError(run_dir, f"cannot write in the run directory ({e.strerror}); "
                             "`sftscale status/export` can still read it") from None
        if st.get_meta("name") is None:
            from .. import __version__
            st.set_meta(name=cfg.name, created=time.time(), sftscale_version=__version__)
        st.set_meta(config_fingerprint=cfg.fingerprint())
        _, changed = st.sync(cells)
        if changed:
            log.warning("%d cell(s) were run here with a different spec (e.g. %s); rerunning them",
                        len(changed), changed[0])
        by_key = {c.key: c for c in cells}
        for k in changed:
            st.replace_spec(by_key[k])
            remove_path(run_dir / "cells" / k)


def _snapshot(cfg: StudyConfig) -> str:
    """``study.yaml`` of a config not read from a file: its JSON (YAML reads it), with the
    trackers that are off written ``false`` (``mlflow: null`` read back would turn MLflow on,
    and ``run DIR`` would write mlflow.db and wandb/ nobody asked for)."""
    d = cfg.model_dump(mode="json")
    for k, v in (d.get("tracking") or {}).items():
        if v is None:
            d["tracking"][k] = False
    return json.dumps(d, indent=2)


def run_study(cfg: StudyConfig, out: str | os.PathLike | None = None, executor: Any = None,
              retry_failed: bool = False, runner: CellRunner | None = None,
              progress: bool | Any = True, check: bool = True, rerun_changed: bool = False,
              pool_sizes: Mapping[str, int] | None = None, repair: bool = False,
              wait: bool = False, on_wait: Callable[[dict], None] | None = None) -> StudyResult:
    """Run every cell not yet done; return the final counts.

    ``executor``: "local", "ray", an executor object (see executors.py), or None for the
    config's ``executor.kind``.
    ``progress``: True for the rich display, "lines" for log lines only, False for none, or a
    ``Reporter``-like object (see progress.py).
    ``runner``: the ``CellRunner`` (stages, hooks); None for the default stages.
    ``wait``: when another process writes the run directory, wait for it (``on_wait(holder)``
    is called once) instead of raising ``lock.RunDirBusy``. ``repair``: rebuild a damaged
    store from the cell directories (repair.py). SIGTERM raises ``signals.Terminated``.
    """
    quiet_third_party_warnings()
    if check and pool_sizes is None:  # every problem at once, the run directory's included
        from .plan import check_study
        pool_sizes = check_study(cfg, out=out).pool_sizes
    run_dir = Path(out) if out is not None else cfg.output_dir()
    make_run_dir(run_dir)
    with terminate_as_interrupt(), RunLock(run_dir).acquire(wait=wait, on_wait=on_wait):
        return _run_locked(cfg, run_dir, executor, retry_failed, runner, progress,
                           rerun_changed, pool_sizes, repair)


def _run_locked(cfg: StudyConfig, run_dir: Path, executor: Any, retry_failed: bool,
                runner: CellRunner | None, progress: bool | Any, rerun_changed: bool,
                pool_sizes: Mapping[str, int] | None, repair: bool) -> StudyResult:
    """``run_study`` once the run directory's lock is held."""
    from .executors import make_executor
    from .progress import make_reporter

    t0, started = time.perf_counter(), time.time()
    run_dir, cells = prepare(cfg, run_dir, check=False, pool_sizes=pool_sizes,
                             rerun_changed=rerun_changed, repair=repair, locked=True)
    planned = save_run_plan(cfg, run_dir, pool_sizes)  # DIR/plan.json: the ETA's cell costs
    runner = runner or CellRunner()
    if executor is None:
        executor = cfg.executor.kind
    ex = make_executor(executor, cfg) if isinstance(executor, str) else executor
    keys = [c.key for c in cells]
    with Store(run_dir / "study.sqlite") as st:
        state = _reconcile(run_dir, st, keys, retry_failed)
        todo = [c for c in cells if state.get(c.key) == "pending"]
        rep = make_reporter(progress, total=len(cells), name=cfg.name, run_dir=run_dir,
                            done=sum(1 for k in keys if state.get(k) == "done"),
                            failed=sum(1 for k in keys if state.get(k) == "failed"),
                            planned=planned, slots=cfg.executor.workers, todo=[c.key for c in todo])
        drv = _Driver(st, rep, run_dir, runner.hooks, open_tracker(cfg, run_dir))
        try:
            with rep, drv.tracker:  # tracking.py: the study's parent run, closed with its status
                ex.run(todo, run_dir, runner, on_start=drv.on_start,
                       on_progress=drv.on_progress, on_done=drv.on_done)
        finally:
            st.reset_interrupted()  # cells still marked running (Ctrl-C) go back to pending
        counts = {s: 0 for s in ("pending", "running", "done", "failed")}
        for r in st.cells():
            if r["key"] in state or r["key"] in keys:
                counts[r["state"]] += 1
    write_exports(run_dir)
    record_run(cfg, run_dir, started, time.perf_counter() - t0)  # recalibrates later plans
    return StudyResult(run_dir=run_dir, counts=counts, ran=drv.ran, failed=drv.failed,
                       wall_s=time.perf_counter() - t0)


def _reconcile(run_dir: Path, st: Store, keys: Sequence[str], retry_failed: bool
               ) -> dict[str, str]:
    """Interrupted cells back to pending, done cells verified; every cell's state."""
    st.reset_interrupted()
    verify_done(run_dir, st, keys)
    wanted = set(keys)
    for row in st.cells("done"):  # files sound: are the store's own values still theirs?
        if row["key"] in wanted:
            check_values(run_dir, st, row)
    if retry_failed:
        st.retry_failed()
    return {r["key"]: r["state"] for r in st.cells()}


class _Driver:
    """The executor's callbacks, in the driver: the only writer of the store; feeds the display
    (one ``Throttle`` per cell in flight) and calls the runner's ``commit`` hook."""

    def __init__(self, st: Store, rep: Any, run_dir: Path, hooks: Hooks | None,
                 tracker: Any = None):
        self.st, self.rep, self.run_dir, self.hooks = st, rep, run_dir, hooks
        self.tracker = tracker if tracker is not None else NullTracker()
        self.ran = 0
        self.failed: list[str] = []
        self._display: dict[str | None, Throttle] = {}

    def on_start(self, cell: Cell) -> None:
        self.st.mark_running(cell.key)
        self.rep.start(cell)

    def on_progress(self, ev: ProgressEvent) -> None:
        if ev.cell not in self._display:
            self._display[ev.cell] = Throttle(self.rep.event)
        self._display[ev.cell](ev)

    def on_done(self, cell: Cell, outcome: dict[str, Any]) -> None:
        tc = time.perf_counter()
        if self.hooks is not None:
            self.hooks("commit", self.run_dir, cell.key)
        snapshot = dict(outcome)  # for the tracker: record_done pops metrics and items
        if outcome.get("ok"):
            ms = outcome.get("metrics") or {}
            outcome["metrics_summary"] = "".join(
                f" {k}={ms[k]:.3f}" for k in ("format_rate", "accuracy") if k in ms)
            self.st.record_done(cell.key, outcome, outcome.pop("metrics", {}),
                                outcome.pop("items", []))
        else:
            self.failed.append(cell.key)
            self.st.record_failed(cell.key, outcome.get("error") or "unknown error",
                                  outcome.get("traceback"), outcome)
        self.st.add_overhead(cell.key, time.perf_counter() - tc)
        self.tracker.cell_done(cell, snapshot)  # after the store: a mirror, never fails the run
        self._display.pop(cell.key, None)
        self.ran += 1
        self.rep.done(cell, outcome)


def write_exports(run_dir: Path) -> bool:
    """The default exports (export.py); a failure is logged as a warning naming the files and
    the error, and does not fail the run (the store has the results). True when written."""
    from .export import DEFAULT_EXPORTS, write_default_exports

    try:
        write_default_exports(run_dir)
    except Exception as e:  # noqa: BLE001 - the cells are recorded; the tables can be rewritten
        files = " and ".join(str(run_dir / name) for name, _ in DEFAULT_EXPORTS)
        log.warning("could not write %s: %s: %s (the results are in %s; `sftscale export %s` "
                    "writes the tables again)", files, type(e).__name__, e,
                    run_dir / "study.sqlite", run_dir)
        return False
    return True


__all__ = ["CellRunner", "Hooks", "Stage", "StageContext", "StudyResult", "collect_outputs",
           "eval_stage", "parse_results", "prepare", "run_study", "train_stage", "verify_done",
           "write_exports"]
