"""Running a study: expand cells, run each cell's stages (train, evaluate, ...), record them.

The run directory's names are rundir/layout.py's; a cell's stages are a list of
``StageSpec``s (rundir/stagespec.py; ``STAGES`` in stages.py: train, then eval, then any
registered stage), which ``CellRunner`` runs in order.

Crash safety: each stage works in ``<stage>.tmp/`` and the directory is renamed into place
only once the stage's ``done`` files exist and its hashed files are sealed
(``stagespec.seal``), so ``train/``, ``eval/``, ... are always complete; a leftover
``*.tmp/`` is deleted before the stage reruns. The store records a cell (with the sha256 of
every stage's hashed files) in one transaction after all its stages, so after a SIGKILL (of
the whole process group, at any moment) a rerun either finds the cell recorded (and verifies
its hashes) or picks up whatever complete stage directories exist and carries on: the tables
equal those of an uninterrupted run (tests/test_study_reliability.py kills a study at random
moments).

Guarantees of ``run_study`` (see also lock.py, integrity.py, repair.py, signals.py):

- One writer: the run directory's ``lock.RunLock`` is held from before the store is
  opened until the exports are written; a second run is refused (``RunDirBusy``, naming the
  holder) or, with ``wait=True``, waits for it. ``prepare`` takes it too when called alone.
- Content checks on reuse: done cells are verified against the store's hashes at every run,
  and a reused stage directory against the hashes sealed when it finished; a missing or
  changed file sends the cell back to the stage that wrote it (integrity.py), never to
  ``failed``. Redoing a stage always discards the directories of the stages that need it
  (retraining discards ``eval/``).
- A missing store beside existing cell directories is rebuilt from them; a damaged one is
  refused (``store.StoreDamaged``) unless ``repair=True`` (repair.py).
- SIGTERM is handled like Ctrl-C (signals.py): cells in flight go back to ``pending``.
- A cell that finishes removes its stale ``error.txt``; a reused stage keeps the timing its
  files recorded (``StageSpec.seconds``: train_meta ``wall_s``, the results' evaluation
  time), not 0.0.

Stages share one signature, ``run(cell, ctx: StageContext) -> None``: the stage writes its
files into ``ctx.out``. ``CellRunner(stages=with_runs(train=f, eval=g))`` swaps run functions
(tests); ``CellRunner(stages=[*STAGES, spec])`` adds a stage. A cell with a recipe search runs
its train stage as the search (search.py), with the runner's own train and eval runs.

Progress: the runner reports ``sftscale.events.ProgressEvent``s with ``cell`` set: one when
a cell enters a stage (its name: ``train``, ``eval``), ``score`` when its outputs are read
back, and every event the stage itself reports through ``ctx.progress``. The display
throttles them (``events.Throttle``).

Hooks (``CellRunner(hooks=fn)``, for crash tests): ``fn(point, run_dir, cell_key)`` is
called at ``<stage>`` (inside the stage, at its first progress event: ``train`` is after the
first optimizer step), ``<stage>.written`` (its outputs complete in ``<stage>.tmp/``, not yet
renamed into place) and ``commit`` (the cell finished, the store not yet written; called by
``run_study`` in the driver). A hook may stop the process there; tests/crash_driver.py does.
Production code sets none.

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
import dataclasses
import functools
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
from ..grid.cells import Cell, expand_cells
from ..io import InputError, atomic_write_json, atomic_write_text, fresh_dir, remove_path
from ..plan.runplan import record_run, save_run_plan
from ..quiet import quiet_third_party_warnings
from ..rundir import layout
from ..rundir.integrity import verify_done
from ..rundir.lock import RunLock
from ..rundir.outputs import check_values, collect_outputs
from ..rundir.stagespec import Stage, StageContext, StageSpec, check_stages, dependents, hashed_paths, seal
from ..rundir.stagespec import state as stage_state
from ..rundir.store import Store
from . import stages as stage_list
from .signals import terminate_as_interrupt
from .tracking import NullTracker, open_tracker

log = logging.getLogger(__name__)

Hooks = Callable[[str, Path, str], None]  # (point, run_dir, cell key) -> None; see the docstring


def default_stages() -> list[StageSpec]:
    """A copy of ``stages.STAGES`` as it is now (registrations included)."""
    return list(stage_list.STAGES)


# --- one cell (runs in the worker) ---------------------------------------------------------

@dataclass
class CellRunner:
    """Runs one cell's stages in a worker and returns a plain, picklable outcome dict.

    ``stages``: the stage list (default: ``stages.STAGES``). ``hooks`` (tests only) must be
    picklable to reach worker processes (a module-level function or an instance of a
    module-level class), as must the stages' functions."""

    stages: list[StageSpec] = field(default_factory=default_stages)
    share_generator: bool = True
    hooks: Hooks | None = None

    def __post_init__(self) -> None:
        check_stages(self.stages)

    def spec(self, name: str) -> StageSpec:
        """The stage called ``name`` (KeyError if there is none)."""
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def with_run(self, name: str, run: Stage) -> "CellRunner":
        """This runner with stage ``name`` running ``run`` instead."""
        return replace(self, stages=[dataclasses.replace(s, run=run) if s.name == name else s
                                     for s in self.stages])

    def run(self, cell: Cell, run_dir: str | os.PathLike,
            progress: ProgressFn | None = None) -> dict[str, Any]:
        quiet_third_party_warnings()  # this may be a worker process or a Ray task
        run_dir = Path(run_dir)
        cdir = layout.cell_dir(run_dir, cell.key)
        t0 = time.perf_counter()
        out: dict[str, Any] = {"key": cell.key, "ok": False, "cell_dir": layout.cell_rel(cell.key),
                               "worker": f"{socket.gethostname()}:{os.getpid()}",
                               "started_at": time.time(), "train_s": 0.0, "eval_s": 0.0,
                               "stage_s": {}}
        hashes: dict[str, dict[str, str]] = {}
        try:
            cdir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(cdir / layout.CELL_JSON, {"key": cell.key, "spec_hash": cell.spec_hash,
                                                       **cell.to_dict()})
            dirs = {s.name: s.dir_in(cdir) for s in self.stages}
            ctx = StageContext(run_dir=run_dir, cell_dir=cdir, out=cdir, dirs=dirs,
                               train_dir=dirs.get(layout.TRAIN, cdir / layout.TRAIN),
                               cache_dir=layout.gen_cache(run_dir),
                               share_generator=self.share_generator)
            for spec in self.stages:
                hashes[spec.name] = self._stage(spec, cell, ctx, progress, out["stage_s"])
            _emit(progress, cell.key, "score")
            out.update(collect_outputs(run_dir, cell, self.stages, hashes))
            out["ok"] = True
            (cdir / layout.ERROR).unlink(missing_ok=True)
        except BaseException as e:  # noqa: BLE001 - a cell's failure must not stop the study
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            out["error"] = f"{type(e).__name__}: {e}"
            with contextlib.suppress(OSError):
                atomic_write_text(cdir / layout.ERROR, traceback.format_exc())
                out["traceback"] = f"{layout.cell_rel(cell.key)}/{layout.ERROR}"
            if _is_oom(e):
                _free_memory()
        out["wall_s"] = time.perf_counter() - t0
        for name in (layout.TRAIN, layout.EVAL):  # the store's own columns for the first two
            out[f"{name}_s"] = out["stage_s"].get(name, 0.0)
        out["overhead_s"] = max(0.0, out["wall_s"] - sum(out["stage_s"].values()))
        return out

    def _stage(self, spec: StageSpec, cell: Cell, ctx: StageContext, progress: ProgressFn | None,
               seconds: dict[str, float]) -> dict[str, str]:
        """Run ``spec`` into ``<dir>.tmp/``, seal it and rename it into place, unless its
        directory is complete (``stagespec.state``: then its recorded time is kept); the
        seconds go to ``seconds[name]``; returns the stage's hashes. Redoing a stage
        discards the directories of the stages that need it."""
        sdir = spec.dir_in(ctx.cell_dir)
        hashes, why = stage_state(spec, sdir)
        keep = False  # an incremental stage that only lacks something keeps what it has
        if hashes is not None and spec.missing is not None:
            why = spec.missing(cell, sdir)
            keep = bool(why) and spec.incremental
            hashes = None if why else hashes
        if hashes is not None:
            seconds[spec.name] = (spec.seconds(sdir) if spec.seconds else None) or 0.0
            return hashes
        if why:
            log.warning("%s: %s/%s; rerunning its %s stage", cell.key, spec.directory, why,
                        spec.name)
        _emit(progress, cell.key, spec.name)
        later = dependents(self.stages, spec.name)
        tmp = fresh_dir(spec.tmp_in(ctx.cell_dir))
        if keep:
            tmp.rmdir()
            os.replace(sdir, tmp)
            (tmp / layout.SEAL).unlink(missing_ok=True)
        for s in self.stages:
            if s.name == spec.name or s.name in later:
                remove_path(s.dir_in(ctx.cell_dir))
        ts = time.perf_counter()
        self._run_fn(spec, cell)(cell, replace(ctx, out=tmp, progress=self._stage_progress(
            spec.name, ctx.run_dir, cell.key, progress)))
        seconds[spec.name] = time.perf_counter() - ts
        missing = [pat for pat in spec.done if not any(tmp.glob(pat))]
        missing += [p.relative_to(tmp).as_posix() for p in hashed_paths(spec, tmp)
                    if not p.exists() and not missing]
        if missing:
            raise RuntimeError(f"the {spec.name} stage finished without {' and '.join(missing)}")
        hashes = seal(spec, tmp)
        if self.hooks is not None:
            self.hooks(f"{spec.name}.written", ctx.run_dir, cell.key)
        os.replace(tmp, sdir)
        return hashes

    def _run_fn(self, spec: StageSpec, cell: Cell) -> Stage:
        """The stage's run function; for the train stage of a recipe-search cell, the search
        (which trains and validates candidates with this runner's train and eval runs)."""
        if spec.name == layout.TRAIN and cell.search:
            from .search import run_search
            return functools.partial(run_search, self)
        return spec.run

    def _stage_progress(self, point: str, run_dir: Path, key: str,
                        progress: ProgressFn | None) -> ProgressFn | None:
        """The stage's ``ctx.progress``: events tagged with the cell, on to ``progress``;
        the hook is called once at ``point``, at the stage's first event."""
        hooks = self.hooks
        if progress is None and hooks is None:
            return None
        fired = [False]

        def stage_progress(ev: ProgressEvent) -> None:
            if hooks is not None and not fired[0]:
                fired[0] = True
                hooks(point, run_dir, key)
            if progress is not None:
                progress(ev.for_cell(key))
        return stage_progress


def _emit(progress: ProgressFn | None, key: str, stage: str) -> None:
    if progress is not None:
        progress(ProgressEvent(stage, cell=key))


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or "out of memory" in str(e).lower()


def _free_memory() -> None:
    stage_list.GENERATORS.clear()
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
            repair: bool = False, locked: bool = False,
            stages: Sequence[StageSpec] | None = None) -> tuple[Path, list[Cell]]:
    """Create the run dir and store, and reconcile them with the config's cells.

    Holds the run directory's lock meanwhile unless ``locked`` (the caller holds it).
    A missing store beside cell directories is rebuilt from them (with ``stages``, default
    ``stages.STAGES``); ``repair`` rebuilds a damaged one (repair.py)."""
    run_dir = Path(out) if out is not None else cfg.output_dir()
    if check and pool_sizes is None:
        from ..plan.check import check_study
        pool_sizes = check_study(cfg, out=out).pool_sizes
    cells = expand_cells(cfg, pool_sizes)
    make_run_dir(run_dir)
    with contextlib.nullcontext() if locked else RunLock(run_dir).acquire():
        _prepare_store(cfg, run_dir, cells, rerun_changed, repair,
                       default_stages() if stages is None else stages)
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
                   repair: bool, stages: Sequence[StageSpec]) -> None:
    from ..rundir.repair import ensure_store

    src = Path(cfg.path) if cfg.path and Path(cfg.path).is_file() else None
    snap = src.read_text(encoding="utf-8-sig") if src else _snapshot(cfg)
    ensure_store(run_dir, cells, stages, repair=repair, rerun_changed=rerun_changed)
    with Store(layout.store_path(run_dir)) as st:
        # refused before anything is written: study.yaml keeps the config the cells ran with
        had = {r["key"]: r["spec_hash"] for r in st.cells()}
        changed = [c.key for c in cells if c.key in had and had[c.key] != c.spec_hash]
        if changed and not rerun_changed:
            raise InputError(layout.store_path(run_dir),
                             f"{len(changed)} cell(s) were run here with a different spec "
                             f"(e.g. {changed[0]}); use another --out, or --rerun-changed "
                             "(nothing in the run directory was changed)")
        try:
            atomic_write_text(layout.study_yaml(run_dir), snap)
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
            remove_path(layout.cell_dir(run_dir, k))


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
    ``runner``: the ``CellRunner`` (stages, hooks); None, or one with the default stages, runs
    the study's stages (``stages.study_stages(cfg)``: with the token-shift stage unless
    ``analysis: {token_shift: false}``).
    ``wait``: when another process writes the run directory, wait for it (``on_wait(holder)``
    is called once) instead of raising ``lock.RunDirBusy``. ``repair``: rebuild a damaged
    store from the cell directories (repair.py). SIGTERM raises ``signals.Terminated``.
    """
    quiet_third_party_warnings()
    if check and pool_sizes is None:  # every problem at once, the run directory's included
        from ..plan.check import check_study
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
    runner = runner or CellRunner()
    if runner.stages == default_stages():  # the default list: with the study's analyses
        runner = replace(runner, stages=stage_list.study_stages(cfg))
    xstages = stage_list.with_eval_tasks(runner.stages, cfg)  # + xeval when eval_tasks are named
    runner = runner if xstages is runner.stages else replace(runner, stages=xstages)
    run_dir, cells = prepare(cfg, run_dir, check=False, pool_sizes=pool_sizes,
                             rerun_changed=rerun_changed, repair=repair, locked=True,
                             stages=runner.stages)
    planned = save_run_plan(cfg, run_dir, pool_sizes)  # DIR/plan.json: the ETA's cell costs
    if executor is None:
        executor = cfg.executor.kind
    ex = make_executor(executor, cfg) if isinstance(executor, str) else executor
    keys = [c.key for c in cells]
    with Store(layout.store_path(run_dir)) as st:
        state = _reconcile(run_dir, st, keys, retry_failed, runner.stages)
        state.update(_wants_more(run_dir, st, cells, state, runner.stages))
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
    if cfg.analysis.judge is not None:
        run_judge(cfg, run_dir)
    record_run(cfg, run_dir, started, time.perf_counter() - t0)  # recalibrates later plans
    return StudyResult(run_dir=run_dir, counts=counts, ran=drv.ran, failed=drv.failed,
                       wall_s=time.perf_counter() - t0)


def run_judge(cfg: StudyConfig, run_dir: Path) -> None:
    """``analysis: {judge: ...}``: ``sftscale judge`` on the done cells (docs/judge.md); a judge
    that cannot be loaded is a warning, not a failed run (failed requests are counted in it)."""
    from ..judge import judge_run_dir, make_client

    j = cfg.analysis.judge
    assert j is not None
    try:
        client = make_client(j.model, concurrency=j.concurrency, timeout_s=j.timeout, retries=j.retries)
        judge_run_dir(run_dir, client, limit=j.limit, say=log.info)
    except Exception as e:  # noqa: BLE001 - the cells are recorded; `sftscale judge DIR` reruns it
        log.warning("judge %s: %s: %s (`sftscale judge %s --model ...` runs it again)", j.model,
                    type(e).__name__, e, run_dir)


def _reconcile(run_dir: Path, st: Store, keys: Sequence[str], retry_failed: bool,
               stages: Sequence[StageSpec]) -> dict[str, str]:
    """Interrupted cells back to pending, done cells verified; every cell's state."""
    st.reset_interrupted()
    verify_done(run_dir, st, stages, keys)
    wanted = set(keys)
    for row in st.cells("done"):  # files sound: are the store's own values still theirs?
        if row["key"] in wanted:
            check_values(run_dir, st, row, stages)
    if retry_failed:
        st.retry_failed()
    return {r["key"]: r["state"] for r in st.cells()}


def _wants_more(run_dir: Path, st: Store, cells: Sequence[Cell], state: Mapping[str, str],
                stages: Sequence[StageSpec]) -> dict[str, str]:
    """Done cells that a stage's ``missing`` says lack something (a new eval task) go back
    to pending; their stage directories stay (the runner reuses or extends them)."""
    out: dict[str, str] = {}
    first = ""
    for c in cells:
        if state.get(c.key) != "done":
            continue
        for spec in stages:
            why = spec.missing(c, spec.dir_in(layout.cell_dir(run_dir, c.key))) if spec.missing else None
            if why:
                st.reset(c.key)
                out[c.key] = "pending"
                first = first or f"{c.key}: {why}"
                break
    if out:
        log.warning("%d done cell(s) lack outputs (e.g. %s); running only what is missing",
                    len(out), first)
    return out


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
    from ..rundir.export import DEFAULT_EXPORTS, write_default_exports

    try:
        write_default_exports(run_dir)
    except Exception as e:  # noqa: BLE001 - the cells are recorded; the tables can be rewritten
        files = " and ".join(str(run_dir / name) for name, _ in DEFAULT_EXPORTS)
        log.warning("could not write %s: %s: %s (the results are in %s; `sftscale export %s` "
                    "writes the tables again)", files, type(e).__name__, e,
                    layout.store_path(run_dir), run_dir)
        return False
    return True


__all__ = ["CellRunner", "Hooks", "StudyResult", "default_stages", "make_run_dir", "prepare",
           "run_study", "write_exports"]
