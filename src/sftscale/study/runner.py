"""Running a study: expand cells, run train → generate/score for each, record in the store.

Layout of a run directory::

    DIR/study.yaml            the config as given (snapshot)
    DIR/study.sqlite          the store (driver-only writes; see store.py)
    DIR/cells/<key>/cell.json the cell's spec
    DIR/cells/<key>/train/    train_cell's output (ckpt/ + train_meta.json)
    DIR/cells/<key>/eval/     evaluate's results_<ts>.json + samples_<task>_<ts>.jsonl
    DIR/cells/<key>/error.txt traceback of the last failure
    DIR/cache/gen/            generation cache shared by the cells
    DIR/export.csv, DIR/items.jsonl   written at the end (see export.py)

Crash safety: each stage works in ``train.tmp/`` or ``eval.tmp/`` and the directory is
renamed into place only once the stage's last file exists, so ``train/`` and ``eval/``
are always complete; a leftover ``*.tmp/`` is deleted before the stage reruns. The store
records a cell (with the sha256 of its output files) in one transaction after both
stages, so after a SIGKILL a rerun either finds the cell recorded (and verifies its
hashes) or picks up whatever complete stage directories exist and carries on.

Stages are pluggable (``CellRunner(train=..., evaluate=...)``): the defaults call
``sftscale.train.cell.train_cell`` and ``sftscale.evaluation.run.evaluate``. For crash tests the
environment variable ``SFTSCALE_STUDY_HOOK=<point>[@<key substring>]`` makes the process
write ``DIR/.hook-<point>`` and then sleep (or, with ``SFTSCALE_STUDY_HOOK_ACTION=kill``,
SIGKILL itself) at ``train`` (inside training, after its first progress report),
``eval`` (evaluation outputs written, not yet renamed into place) or ``commit`` (the cell
finished, the store not yet written).

Not handled: cells whose process dies without an exception in the local executor (a
segfault or the kernel's OOM killer end the whole run: rerun to resume; with the Ray
executor such a cell is recorded as failed), cancelling a single cell.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..config import StudyConfig
from ..io import InputError, atomic_write_json, atomic_write_text, sha256_file
from .cells import Cell, expand_cells
from .store import Store

TrainFn = Callable[..., Any]  # (cell, out: Path, progress) -> None; writes out/train_meta.json
EvalFn = Callable[..., Any]  # (cell, train_dir: Path, out: Path) -> None; writes results/samples


# --- default stages ------------------------------------------------------------------------

def train_stage(cell: Cell, out: Path, progress: Callable[[dict], None] | None = None) -> None:
    """``sftscale.train.cell.train_cell`` with the cell's model, task, N, seed and recipe overrides."""
    from ..train.cell import train_cell

    recipe = dict(cell.recipe)
    recipe.setdefault("chat", cell.chat)
    train_cell(cell.model_ref, _task_object(cell), cell.n, cell.seed, out, recipe=recipe,
               task_options=cell.task_options or None, progress=progress)


_GENERATORS: dict[tuple, Any] = {}  # per process: one loaded base model, reused across cells


def _shared_generator(model: str, batch_size: int | None, cache_dir: Path | None) -> Any:
    from ..generation.generator import Generator

    key = (model, batch_size, str(cache_dir))
    if key not in _GENERATORS:
        _GENERATORS.clear()  # keep one base model in memory
        _GENERATORS[key] = Generator(model, batch_size=batch_size, cache_dir=cache_dir)
    return _GENERATORS[key]


def eval_stage(cell: Cell, train_dir: Path, out: Path, cache_dir: Path | None = None,
               share: bool = True, progress: Callable[[int, int], None] | None = None) -> None:
    """``sftscale.evaluation.run.evaluate`` on the cell's checkpoint (the base model for N = 0).

    A peft adapter is attached to the worker's one Generator for the base model (loaded
    once, reused by every cell of that base). A fully finetuned checkpoint is a model of its
    own: it gets a Generator of its own (the shared one would have its base replaced), and
    the chat-template guard is applied here since evaluate() only checks adapters.
    """
    from ..evaluation.run import check_template, evaluate
    from ..generation.generator import Generator

    meta = json.loads((train_dir / "train_meta.json").read_text())
    ckpt = train_dir / (meta.get("checkpoint") or "ckpt")
    task = _task_object(cell)
    common = dict(limit=cell.limit, out=out, chat=cell.chat, batch_size=cell.batch_size,
                  allow_template_mismatch=cell.allow_template_mismatch, progress=progress)
    if cell.n > 0 and not ckpt.is_dir():
        raise RuntimeError(f"{train_dir}: trained cell without its checkpoint ({ckpt.name}/)")
    if cell.n > 0 and not (ckpt / "adapter_config.json").exists():
        from ..models import template_sha

        gen = Generator(str(ckpt), batch_size=cell.batch_size, cache_dir=cache_dir)
        check_template(ckpt, template_sha(gen.tokenizer, cell.chat), cell.allow_template_mismatch)
        evaluate(str(ckpt), task, generator=gen, **common)
        return
    adapter = str(ckpt) if cell.n > 0 else None
    if share:
        gen = _shared_generator(cell.model_ref, cell.batch_size, cache_dir)
    else:
        gen = Generator(cell.model_ref, batch_size=cell.batch_size, cache_dir=cache_dir)
    evaluate(cell.model_ref, task, adapter=adapter, generator=gen, **common)


def _task_object(cell: Cell) -> Any:
    """The cell's task: max_new_tokens override and external training data applied."""
    from .taskdata import study_task

    return study_task(cell.task_name, cell.task_options, cell.max_new_tokens)


# --- one cell (runs in the worker) ---------------------------------------------------------

@dataclass
class CellRunner:
    """Runs one cell's stages in a worker and returns a plain, picklable outcome dict."""

    train: TrainFn = train_stage
    evaluate: EvalFn = eval_stage
    share_generator: bool = True

    def run(self, cell: Cell, run_dir: str | os.PathLike,
            on_stage: Callable[[str, str], None] | None = None) -> dict[str, Any]:
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
            # train
            tdir = cdir / "train"
            if not (tdir / "train_meta.json").exists():
                if on_stage:
                    on_stage(cell.key, "train")
                _rmtree(tdir)
                tmp = _fresh(cdir / "train.tmp")
                ts = time.perf_counter()
                self.train(cell, tmp, _train_progress(run_dir, cell.key, on_stage))
                out["train_s"] = time.perf_counter() - ts
                if not (tmp / "train_meta.json").exists():
                    raise RuntimeError("training finished without writing train_meta.json")
                os.replace(tmp, tdir)
            # evaluate
            edir = cdir / "eval"
            if _eval_files(edir) is None:
                if on_stage:
                    on_stage(cell.key, "eval")
                _rmtree(edir)
                tmp = _fresh(cdir / "eval.tmp")
                ts = time.perf_counter()
                if self.evaluate is eval_stage:
                    self.evaluate(cell, tdir, tmp, cache_dir=run_dir / "cache" / "gen",
                                  share=self.share_generator,
                                  progress=_eval_progress(cell.key, on_stage))
                else:
                    self.evaluate(cell, tdir, tmp)
                out["eval_s"] = time.perf_counter() - ts
                if _eval_files(tmp) is None:
                    raise RuntimeError("evaluation finished without results_*.json and samples_*.jsonl")
                hook("eval", run_dir, cell.key)
                os.replace(tmp, edir)
            if on_stage:
                on_stage(cell.key, "score")
            results, samples = _eval_files(edir)  # type: ignore[misc]
            out.update(collect_outputs(run_dir, cell, tdir / "train_meta.json", results, samples))
            out["ok"] = True
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


def collect_outputs(run_dir: Path, cell: Cell, train_meta: Path, results: Path,
                    samples: Path) -> dict[str, Any]:
    """Paths (relative to the run dir), hashes, metrics and per-item scores of a cell."""
    from ..io import read_jsonl

    rows = read_jsonl(samples)
    metrics = parse_results(results, cell.task_name)
    if not metrics:  # results without lm-eval shaped numbers: aggregate the samples ourselves
        from ..tasks.base import mean_metrics
        metrics = mean_metrics(rows)
    items = []
    for i, r in enumerate(rows):
        fields = {k: v for k, v in r.items()
                  if k not in ("id", "correct", "format_ok") and isinstance(v, (bool, int, float))}
        items.append({"idx": i, "item_id": str(r.get("id", r.get("doc_id", i))),
                      "correct": r.get("correct"), "format_ok": r.get("format_ok"), "fields": fields})
    rel = lambda p: str(Path(p).resolve().relative_to(run_dir.resolve()))  # noqa: E731
    return {"train_meta": rel(train_meta), "results": rel(results), "samples": rel(samples),
            "train_meta_sha": sha256_file(train_meta), "results_sha": sha256_file(results),
            "samples_sha": sha256_file(samples), "n_items": len(rows),
            "metrics": metrics, "items": items}


def parse_results(path: Path, task_name: str) -> dict[str, float]:
    """Numbers of an lm-eval shaped results JSON: ``{"results": {task: {"acc,none": x}}}``."""
    doc = json.loads(Path(path).read_text())
    res = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(res, dict) or not res:
        return {}
    block = res.get(task_name)
    if not isinstance(block, dict):
        block = next((v for v in res.values() if isinstance(v, dict)), {})
    out: dict[str, float] = {}
    for k, v in block.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        name, _, filt = k.partition(",")
        out[name if filt in ("", "none") else f"{name},{filt}"] = float(v)
    return out


def _eval_files(d: Path) -> tuple[Path, Path] | None:
    if not d.is_dir():
        return None
    res = sorted(d.glob("results_*.json"))
    smp = sorted(d.glob("samples_*.jsonl"))
    return (res[-1], smp[-1]) if res and smp else None


def _fresh(d: Path) -> Path:
    _rmtree(d)
    d.mkdir(parents=True)
    return d


def _rmtree(d: Path) -> None:
    if d.is_symlink() or d.is_file():
        d.unlink()
    elif d.exists():
        shutil.rmtree(d)


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


# --- crash-test hooks ----------------------------------------------------------------------

def hook(point: str, run_dir: Path, key: str) -> None:
    """Stop here if ``SFTSCALE_STUDY_HOOK`` names this point (see the module docstring)."""
    spec = os.environ.get("SFTSCALE_STUDY_HOOK")
    if not spec:
        return
    want, _, sub = spec.partition("@")
    if want != point or (sub and sub not in key):
        return
    atomic_write_text(Path(run_dir) / f".hook-{point}", f"{os.getpid()} {key}\n")
    if os.environ.get("SFTSCALE_STUDY_HOOK_ACTION") == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(3600)


def _train_progress(run_dir: Path, key: str, on_stage: Callable[[str, str], None] | None
                    ) -> Callable[..., None] | None:
    """train_cell's per-step callback: stage text for the display, and the crash-test hook."""
    hooked = os.environ.get("SFTSCALE_STUDY_HOOK", "").startswith("train")
    if on_stage is None and not hooked:
        return None
    last = [0.0]

    def progress(m: Any = None, *_a: Any, **_k: Any) -> None:
        if hooked:
            hook("train", run_dir, key)
        now = time.monotonic()
        if on_stage is not None and isinstance(m, dict) and now - last[0] > 0.25:
            last[0] = now
            on_stage(key, f"train step {m.get('step', '?')}/{m.get('steps', '?')}")
    return progress


def _eval_progress(key: str, on_stage: Callable[[str, str], None] | None
                   ) -> Callable[[int, int], None] | None:
    if on_stage is None:
        return None
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] > 0.25 or done == total:
            last[0] = now
            on_stage(key, f"eval {done}/{total}")
    return progress


# --- the driver ----------------------------------------------------------------------------

@dataclass
class StudyResult:
    run_dir: Path
    counts: dict[str, int]
    ran: int
    failed: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def prepare(cfg: StudyConfig, out: str | os.PathLike | None = None, *, check: bool = True,
            pool_sizes: Mapping[str, int] | None = None, rerun_changed: bool = False
            ) -> tuple[Path, list[Cell]]:
    """Create the run dir and store, and reconcile them with the config's cells."""
    run_dir = Path(out) if out is not None else cfg.output_dir()
    if check and pool_sizes is None:
        from .plan import check_study
        pool_sizes = check_study(cfg).pool_sizes
    cells = expand_cells(cfg, pool_sizes)
    run_dir.mkdir(parents=True, exist_ok=True)
    src = Path(cfg.path) if cfg.path and Path(cfg.path).is_file() else None
    snap = src.read_text(encoding="utf-8") if src else json.dumps(cfg.model_dump(mode="json"), indent=2)
    atomic_write_text(run_dir / "study.yaml", snap)
    with Store(run_dir / "study.sqlite") as st:
        if st.get_meta("name") is None:
            from .. import __version__
            st.set_meta(name=cfg.name, created=time.time(), sftscale_version=__version__)
        st.set_meta(config_fingerprint=cfg.fingerprint())
        _, changed = st.sync(cells)
        if changed and not rerun_changed:
            raise InputError(run_dir / "study.sqlite",
                             f"{len(changed)} cell(s) were run here with a different spec "
                             f"(e.g. {changed[0]}); use another --out, or --rerun-changed")
        by_key = {c.key: c for c in cells}
        for k in changed:
            st.replace_spec(by_key[k])
            _rmtree(run_dir / "cells" / k)
    return run_dir, cells


def verify_done(run_dir: Path, st: Store, keys: Sequence[str] | None = None) -> list[str]:
    """Done cells whose files are missing or changed go back to pending; returns their keys."""
    bad = []
    wanted = None if keys is None else set(keys)
    for row in st.cells("done"):
        if wanted is not None and row["key"] not in wanted:
            continue
        for f, h in (("train_meta", "train_meta_sha"), ("results", "results_sha"),
                     ("samples", "samples_sha")):
            p = run_dir / (row[f] or "")
            if not row[f] or not p.is_file() or sha256_file(p) != row[h]:
                bad.append(row["key"])
                st.reset(row["key"])
                _rmtree(run_dir / row["cell_dir"] / ("train" if f == "train_meta" else "eval"))
                if f == "train_meta":
                    _rmtree(run_dir / row["cell_dir"] / "eval")
                break
    return bad


def run_study(cfg: StudyConfig, out: str | os.PathLike | None = None, executor: Any = None,
              retry_failed: bool = False, runner: CellRunner | None = None,
              progress: bool | Any = True, check: bool = True, rerun_changed: bool = False,
              pool_sizes: Mapping[str, int] | None = None) -> StudyResult:
    """Run every cell not yet done; return the final counts.

    ``executor``: "local", "ray", an executor object (see executors.py), or None for the
    config's ``executor.kind``.
    ``progress``: True for the rich display, "lines" for log lines only, False for none, or a
    ``Reporter``-like object.
    """
    from .executors import make_executor
    from .progress import make_reporter

    t0 = time.perf_counter()
    run_dir, cells = prepare(cfg, out, check=check, pool_sizes=pool_sizes,
                             rerun_changed=rerun_changed)
    runner = runner or CellRunner()
    if executor is None:
        executor = cfg.executor.kind
    ex = make_executor(executor, cfg) if isinstance(executor, str) else executor
    keys = [c.key for c in cells]
    with Store(run_dir / "study.sqlite") as st:
        st.reset_interrupted()
        verify_done(run_dir, st, keys)
        if retry_failed:
            st.retry_failed()
        state = {r["key"]: r["state"] for r in st.cells()}
        todo = [c for c in cells if state.get(c.key) == "pending"]
        done0 = sum(1 for k in keys if state.get(k) == "done")
        failed0 = sum(1 for k in keys if state.get(k) == "failed")
        rep = make_reporter(progress, total=len(cells), done=done0, failed=failed0,
                            name=cfg.name, run_dir=run_dir)
        failed: list[str] = []
        ran = 0

        def on_start(cell: Cell) -> None:
            st.mark_running(cell.key)
            rep.start(cell)

        def on_stage(key: str, stage: str) -> None:
            rep.stage(key, stage)

        def on_done(cell: Cell, outcome: dict[str, Any]) -> None:
            nonlocal ran
            tc = time.perf_counter()
            hook("commit", run_dir, cell.key)
            if outcome.get("ok"):
                ms = outcome.get("metrics") or {}
                outcome["metrics_summary"] = "".join(
                    f" {k}={ms[k]:.3f}" for k in ("format_rate", "accuracy") if k in ms)
                st.record_done(cell.key, outcome, outcome.pop("metrics", {}),
                               outcome.pop("items", []))
            else:
                failed.append(cell.key)
                st.record_failed(cell.key, outcome.get("error") or "unknown error",
                                 outcome.get("traceback"), outcome)
            st.add_overhead(cell.key, time.perf_counter() - tc)
            ran += 1
            rep.done(cell, outcome)

        try:
            with rep:
                ex.run(todo, run_dir, runner, on_start=on_start, on_stage=on_stage, on_done=on_done)
        finally:
            st.reset_interrupted()  # cells still marked running (Ctrl-C) go back to pending
        counts = {s: 0 for s in ("pending", "running", "done", "failed")}
        for r in st.cells():
            if r["key"] in state or r["key"] in keys:
                counts[r["state"]] += 1
    with contextlib.suppress(Exception):
        from .export import write_default_exports
        write_default_exports(run_dir)
    return StudyResult(run_dir=run_dir, counts=counts, ran=ran, failed=failed,
                       wall_s=time.perf_counter() - t0)


__all__ = ["CellRunner", "StudyResult", "collect_outputs", "eval_stage", "hook", "parse_results",
           "prepare", "run_study", "train_stage", "verify_done"]
