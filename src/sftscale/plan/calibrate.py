"""CPU cost calibration of ``sftscale plan``: measured seconds per token, per machine and model.

A calibration says, for one machine and one model (its weights hash), how long a cell takes:

    cell seconds = train_fixed_s + train_s_per_token[task] · training tokens
                   + eval_s_per_gen_token[task] · (test items · max_new_tokens)
                   + other_s

where training tokens and the generated-token bound are the plan's own counts (check.py), so the
rates fold in whatever the FLOP count misses (per-step overhead, padding, early stopping at
EOS, scoring). Two sources write it, both into
``paths.cache_root()/calibration/<machine>/<weights hash[:16]>.json``:

- ``plan --measure`` (``measure_study``): per model and task, a real ``train_cell`` of a few
  optimizer steps (``max_steps`` 4, the study's recipe, sequence lengths and threads) and a
  real ``evaluate`` of up to 16 test items at the study's ``max_new_tokens``, in this process;
- a finished run (``runplan.record_run``, called at the end of ``run_study``): the cells it finished,
  timed by the runner (store: ``train_s``, ``eval_s``, ``wall_s``), against the token counts of
  the plan saved at the start of the run (``DIR/plan.json``, ``runplan.save_run_plan``). Also the run's
  wall time beyond its cells' layout on the workers (worker start-up, exports): ``run_extra_s``.

``plan`` uses the calibration of its machine automatically (``calibrate_plan``): a run's
rates where it has them (they include the contention of parallel workers), else the measured
ones, else the FLOP constants of check.py. The machine key is CPU model + core count + torch
version + torch threads per cell + local workers (parallel cells slow each other on shared
caches and memory). Wall time = this process's start-up (imports, checks: what ``run`` does
before its first cell) + the cells laid out on the workers (``eta.makespan``) + ``run_extra_s``.

Not handled: GPUs (the GPU estimate is FLOP-based, with the MFU of gpu_calibration.json, see
gpucal.py); models not on this machine (a hub id not in the local cache has no weights hash:
FLOP constants); load from other processes (a calibration measured on a busy machine predicts
a busy machine: the cache keeps the latest measurement only).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..config import StudyConfig
from ..grid.cells import Cell, expand_cells
from ..io import atomic_write_json
from ..models import ModelSpec, model_weights_hash
from ..paths import cache_root
from .estimate import Plan

log = logging.getLogger(__name__)

MEASURE_STEPS = 4
MEASURE_EVAL_ITEMS = 16


# --- keys ---------------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_fingerprint(threads: int | None, workers: int = 1) -> dict[str, Any]:
    """What the speed of a CPU cell depends on, besides the model."""
    import torch

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": threads or torch.get_num_threads(), "workers": workers}


def machine_key(fp: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]


def model_hash(ref: str, spec: ModelSpec | None = None) -> str | None:
    """The weights hash of a model on this machine (None: not local)."""
    try:
        return model_weights_hash(spec if spec is not None else ref)
    except Exception:  # noqa: BLE001 - not local, unreadable: no calibration
        return None


def study_fingerprint(cfg: StudyConfig) -> dict[str, Any]:
    ex = cfg.executor
    workers = ex.workers if ex.kind == "local" else (ex.max_parallel or 1)
    return machine_fingerprint(ex.threads, workers)


def cal_path(fp: Mapping[str, Any], weights: str) -> Path:
    return cache_root() / "calibration" / machine_key(fp) / f"{weights[:16]}.json"


def load_calibration(fp: Mapping[str, Any], weights: str | None) -> dict[str, Any] | None:
    if weights is None:
        return None
    p = cal_path(fp, weights)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def save_calibration(fp: Mapping[str, Any], weights: str, ref: str, source: str,
                     rates: dict[str, Any]) -> Path:
    """Merge ``rates`` (one source: "measure" or "run") into the cached calibration."""
    p = cal_path(fp, weights)
    cur = load_calibration(fp, weights) or {"machine": dict(fp), "model": ref, "weights": weights,
                                            "sources": {}}
    old = cur["sources"].get(source, {})
    for k in ("train_s_per_token", "eval_s_per_gen_token"):  # per task: keep other tasks
        rates[k] = {**old.get(k, {}), **rates.get(k, {})}
    cur["sources"][source] = {**rates, "at": time.time()}
    atomic_write_json(p, cur)
    return p


# --- applying a calibration to a plan -----------------------------------------------------------

def _rate(cal: dict[str, Any], kind: str, task: str) -> tuple[float | None, str]:
    for src in ("run", "measure"):
        r = cal["sources"].get(src, {}).get(kind, {})
        if task in r:
            return r[task], src
    for src in ("run", "measure"):  # another task of the same model: better than FLOPs
        r = cal["sources"].get(src, {}).get(kind, {})
        if r:
            return sum(r.values()) / len(r), src + " (other tasks)"
    return None, ""


def _const(cal: dict[str, Any], key: str) -> float:
    for src in ("run", "measure"):
        v = cal["sources"].get(src, {}).get(key)
        if v is not None:
            return float(v)
    return 0.0


def cell_seconds(cal: dict[str, Any], row: Mapping[str, Any]) -> tuple[float | None, str]:
    """A plan row's CPU seconds under a calibration (None when it has no rate for it)."""
    a_tr, s1 = _rate(cal, "train_s_per_token", row["task"])
    a_ev, s2 = _rate(cal, "eval_s_per_gen_token", row["task"])
    if a_ev is None or (a_tr is None and row["train_tokens"]):
        return None, ""
    t = (_const(cal, "train_fixed_s") + (a_tr or 0.0) * row["train_tokens"]
         + a_ev * row["gen_tokens_max"] + _const(cal, "other_s"))
    return t, s1 if row["train_tokens"] else s2


def calibrate_plan(plan: Plan, cfg: StudyConfig, specs: Mapping[str, ModelSpec] | None = None,
                   measure: bool = False) -> None:
    """Replace the FLOP-based CPU seconds of ``plan``'s rows by calibrated ones where this
    machine has a calibration for the model (``measure``: measure first); add the wall time."""
    from .eta import makespan

    specs = specs or {}
    fp = study_fingerprint(cfg)
    start = _startup_s()  # before measuring: what a run spends before its first cell
    if measure:
        measure_study(cfg, plan, specs, fp)
    cals: dict[str, dict | None] = {}
    refs = {m.label: m.ref for m in cfg.models}
    how: dict[str, set[str]] = {}
    extra = []
    for r in plan.rows:
        m = r["model"]
        if m not in cals:
            cals[m] = new = load_calibration(fp, model_hash(refs[m], specs.get(m)))
            if new is not None and _const(new, "run_extra_s"):
                extra.append(_const(new, "run_extra_s"))
        cal = cals[m]
        if cal is None or "cpu_s" not in r:
            how.setdefault(m, set()).add("FLOP constants")
            continue
        t, src = cell_seconds(cal, r)
        if t is None:
            how.setdefault(m, set()).add("FLOP constants")
            continue
        r["cpu_s"] = t
        how.setdefault(m, set()).add(f"calibrated: {src}")
    gpu = plan.assumptions.get("gpu")
    if gpu and plan.rows and all("gpu_s" in r for r in plan.rows):
        gpus = {m.label: max(1.0, m.gpus or 1.0) for m in cfg.models}
        hours = sum(r["gpu_s"] * gpus.get(r["model"], 1.0) for r in plan.rows) / 3600
        plan.totals["gpu_hours"] = hours
        plan.notes.append(f"{gpu}: {hours:,.0f} GPU-hours for the whole grid ({len(plan.rows)} "
                          f"cells; each cell's time x its model's gpus)")
    if not gpu and plan.rows and all("cpu_s" in r for r in plan.rows):
        plan.totals["cpu_s"] = sum(r["cpu_s"] for r in plan.rows)
        slots = fp["workers"]
        plan.totals["wall_s"] = start + makespan([r["cpu_s"] for r in plan.rows], slots) + (
            max(extra) if extra else 0.0)
        plan.notes.append(f"wall time {plan.totals['wall_s'] / 60:.1f} min: start-up "
                          f"{start:.0f} s + the cells on {slots} worker(s)"
                          + (f" + {max(extra):.0f} s run overhead (measured)" if extra else ""))
    for m, hs in ({} if gpu else how).items():
        plan.notes.append(f"{m}: CPU seconds from {', '.join(sorted(hs))}"
                          + ("" if any(h.startswith("calibrated") for h in hs)
                             else " (uncalibrated on this machine: `sftscale plan --measure`, "
                                  "or any finished run, calibrates it)"))
    plan.assumptions["machine"] = fp


def _startup_s() -> float:
    """Seconds since this process started (imports, config, checks, token counts): what a run
    spends before its first cell."""
    try:
        import psutil

        return max(0.0, time.time() - psutil.Process().create_time())
    except Exception:  # noqa: BLE001
        return 0.0


# --- measuring ----------------------------------------------------------------------------------

def measure_study(cfg: StudyConfig, plan: Plan, specs: Mapping[str, ModelSpec], fp: Mapping[str, Any]) -> None:
    """Time real training steps and generation of each (local) model on each task of the
    study; cache the rates. Models that are not on this machine are skipped (a note says so)."""
    import torch

    torch.set_num_threads(int(fp["threads"]))
    cells = expand_cells(cfg)
    for m in cfg.models:
        w = model_hash(m.ref, specs.get(m.label))
        if w is None:
            plan.notes.append(f"{m.label}: not on this machine, not measured")
            continue
        rates: dict[str, Any] = {"train_s_per_token": {}, "eval_s_per_gen_token": {}}
        fixed = []
        for t in cfg.tasks:
            mine = [c for c in cells if c.model == m.label and c.task == t.label]
            if not mine:
                continue
            r = _measure_cell(max(mine, key=lambda c: c.n), mine[0])
            if r.get("train_s_per_token") is not None:
                rates["train_s_per_token"][t.label] = r["train_s_per_token"]
                fixed.append(r["train_fixed_s"])
            rates["eval_s_per_gen_token"][t.label] = r["eval_s_per_gen_token"]
        rates["train_fixed_s"] = sum(fixed) / len(fixed) if fixed else 0.0
        rates["other_s"] = 0.0
        p = save_calibration(fp, w, m.ref, "measure", rates)
        plan.notes.append(f"{m.label}: measured on this machine -> {p}")


def _measure_cell(train_like: Cell, eval_like: Cell) -> dict[str, Any]:
    """One short real training (``MEASURE_STEPS`` steps of ``train_like``'s recipe) and one
    real evaluation (``MEASURE_EVAL_ITEMS`` items of ``eval_like``'s task)."""
    from ..evaluation.run import evaluate
    from ..tasks.taskdata import study_task
    from ..train.cell import train_cell

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sftscale-measure-") as tmp:
        if train_like.n > 0:
            recipe = {**train_like.recipe, "max_steps": MEASURE_STEPS}
            recipe.setdefault("chat", train_like.chat)
            t0 = time.perf_counter()
            train_task = study_task(train_like.task_name, train_like.task_options, train_like.max_new_tokens)
            meta = train_cell(train_like.model_ref, train_task, train_like.n, train_like.seed, Path(tmp) / "train",
                              recipe=recipe, task_options=train_like.task_options or None)
            wall = time.perf_counter() - t0
            tw, toks = float(meta.get("train_wall_s") or 0.0), meta.get("tokens_seen") or 0
            if toks:
                out["train_s_per_token"] = tw / toks
                out["train_fixed_s"] = max(0.0, wall - tw)
        task = study_task(eval_like.task_name, eval_like.task_options, eval_like.max_new_tokens)
        n = min(MEASURE_EVAL_ITEMS, len(task.test_items()), eval_like.limit or 10 ** 9)
        t0 = time.perf_counter()
        evaluate(eval_like.model_ref, task, limit=n, out=Path(tmp) / "eval", chat=eval_like.chat,
                 batch_size=eval_like.batch_size, sampling=eval_like.sampling,
                 num_fewshot=eval_like.num_fewshot)
        wall = time.perf_counter() - t0
        out["eval_s_per_gen_token"] = wall / max(1, n * task.gen.max_new_tokens)
    return out


def fit_rates(pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> dict[str, Any]:
    """Rates from (store cell, plan row) pairs: the fixed training cost is the mean train_s of
    the N = 0 cells (0 without them); per task, seconds per training token over its N > 0
    cells and seconds per generated-token bound over all its cells; ``other_s`` the mean of
    wall - train - eval."""
    base = [c["train_s"] or 0.0 for c, r in pairs if not r["train_tokens"]]
    fixed = sum(base) / len(base) if base else 0.0
    tr: dict[str, list[float]] = {}
    ev: dict[str, list[float]] = {}
    for c, r in pairs:
        if r["train_tokens"]:
            a = tr.setdefault(r["task"], [0.0, 0.0])
            a[0] += max(0.0, (c["train_s"] or 0.0) - fixed)
            a[1] += r["train_tokens"]
        if r["gen_tokens_max"]:
            b = ev.setdefault(r["task"], [0.0, 0.0])
            b[0] += c["eval_s"] or 0.0
            b[1] += r["gen_tokens_max"]
    other = [max(0.0, (c["wall_s"] or 0) - (c["train_s"] or 0) - (c["eval_s"] or 0))
             for c, _ in pairs]
    return {"train_fixed_s": fixed,
            "train_s_per_token": {k: s / n for k, (s, n) in tr.items() if n},
            "eval_s_per_gen_token": {k: s / n for k, (s, n) in ev.items() if n},
            "other_s": sum(other) / len(other) if other else 0.0, "cells": len(pairs)}


__all__ = ["calibrate_plan", "cell_seconds", "fit_rates", "load_calibration", "machine_fingerprint",
           "machine_key", "measure_study", "model_hash", "save_calibration", "study_fingerprint"]
