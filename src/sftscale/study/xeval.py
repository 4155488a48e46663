"""The ``xeval`` stage: a cell's checkpoint evaluated on the other tasks its study names.

A study's ``eval_tasks`` (on a task, or study-wide; config.py) reach each cell as
``Cell.eval_tasks`` (label, name, options, limit, task version). After ``eval``, this stage
evaluates the same checkpoint (the base model for N = 0) on each of them with
``evaluation.evaluate``, loading the model once for all of them (the worker's shared base
model for N = 0 and adapters, as the eval stage does), and writes::

    cells/<key>/xeval/<label>/results_<ts>.json, samples_<task>_<ts>.jsonl   one pair per task
    cells/<key>/xeval/xeval.json      {"evaluated": {label: spec}}  written last

``xeval.json`` is written by every cell, also one without eval tasks (then it is all).

Changing the list does not change the cell's spec (Cell.spec): ``missing`` tells the runner
that a finished directory lacks a task (or holds one no longer named, or one whose options,
limit or version changed), and the runner reruns the stage with the directory's files in
place (``StageSpec.incremental``): only the missing tasks are evaluated, the others kept.

In the store an eval task's metrics are ``xeval/<label>/<metric>`` rows and its per-item
scores are item rows with the field ``eval_task`` (rundir/export.py turns both into rows of
the pair ``<task>→<label>`` with an ``eval_task`` column).

Not handled: a crash while the stage adds a task loses the tasks already evaluated (they are
in ``xeval.tmp/``, which the next run deletes; their generations come back from the run's
generation cache, so they cost little), few-shot contexts and the training task's ``max_new_tokens`` (an eval task is
evaluated zero-shot with its own generation settings), recipe-search validation (the chosen
candidate's checkpoint is the cell's, evaluated as any other).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..grid.cells import Cell
from ..io import atomic_write_json, remove_path
from ..rundir import layout
from ..rundir.outputs import eval_files, eval_seconds, read_eval
from ..rundir.stagespec import StageContext, StageSpec


def wanted(cell: Cell) -> dict[str, dict[str, Any]]:
    """{label: what its evaluation depends on} for the cell's eval tasks."""
    return {e["label"]: {k: e.get(k) for k in ("name", "options", "limit", "version")}
            for e in cell.eval_tasks}


def evaluated(sdir: Path) -> dict[str, dict[str, Any]]:
    """What ``xeval.json`` in ``sdir`` says was evaluated ({} when there is none)."""
    try:
        doc = json.loads((sdir / layout.XEVAL_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    ev = doc.get("evaluated") if isinstance(doc, dict) else None
    return ev if isinstance(ev, dict) else {}


def missing(cell: Cell, sdir: Path) -> str | None:
    """Why a complete ``xeval/`` does not serve ``cell`` (None when it does)."""
    have, want = evaluated(sdir), wanted(cell)
    todo = [lab for lab, spec in want.items() if have.get(lab) != spec or not eval_files(sdir / lab)]
    drop = [lab for lab in have if lab not in want]
    if not todo and not drop:
        return None
    parts = ([f"to evaluate: {', '.join(todo)}"] if todo else []) + \
        ([f"no longer named: {', '.join(drop)}"] if drop else [])
    return f"eval tasks changed ({'; '.join(parts)})"


def xeval_files(sdir: Path) -> list[Path]:
    """The hashed files: ``xeval.json`` and each evaluated task's newest results and samples."""
    out = [sdir / layout.XEVAL_JSON]
    for lab in sorted(evaluated(sdir)):
        pair = eval_files(sdir / lab)
        out += list(pair) if pair else [sdir / lab / layout.RESULTS_GLOB]
    return out


def xeval_stage(cell: Cell, ctx: StageContext) -> None:
    """Evaluate the eval tasks that ``ctx.out`` lacks; drop those no longer named."""
    from ..evaluation.run import evaluate
    from ..tasks.taskdata import study_task

    out = ctx.out
    have, want = evaluated(out), wanted(cell)
    for d in [p for p in out.iterdir() if p.is_dir()] if out.is_dir() else []:
        if d.name not in want or have.get(d.name) != want[d.name] or not eval_files(d):
            remove_path(d)
    todo = [lab for lab in want if not eval_files(out / lab)]
    if todo:
        from .cellmodel import cell_generator

        model, adapter, gen, _ = cell_generator(cell, ctx)
        by_label = {e["label"]: e for e in cell.eval_tasks}
        for lab in todo:
            e = by_label[lab]
            evaluate(model, study_task(e["name"], e.get("options") or {}), adapter=adapter,
                     generator=gen, limit=e.get("limit"), out=out / lab, chat=cell.chat,
                     batch_size=cell.batch_size, allow_template_mismatch=cell.allow_template_mismatch,
                     progress=ctx.progress, sampling=cell.sampling)
    atomic_write_json(out / layout.XEVAL_JSON, {"evaluated": want})


def xeval_record(cell: Cell, sdir: Path) -> dict[str, Any]:
    """What ``xeval/`` adds: ``xeval/<label>/<metric>`` metrics and ``xitems`` (item rows
    with ``eval_task``), for the cell's eval tasks."""
    metrics: dict[str, float] = {}
    items: list[dict[str, Any]] = []
    names = {e["label"]: e["name"] for e in cell.eval_tasks}
    for lab in wanted(cell):
        ms, rows = read_eval(sdir / lab, names[lab])
        metrics.update({layout.XEVAL_METRIC.format(label=lab, metric=m): v for m, v in ms.items()})
        items += [{**r, "fields": {**r["fields"], "eval_task": lab}} for r in rows]  # idx: set by the store
    return {"metrics": metrics, "xitems": items}


def xeval_seconds(sdir: Path) -> float | None:
    """The evaluation seconds the tasks' results files recorded (summed)."""
    return sum(eval_seconds(sdir / lab) or 0.0 for lab in evaluated(sdir))


XEVAL_SPEC = StageSpec(name=layout.XEVAL, run=xeval_stage, done=(layout.XEVAL_JSON,),
                       hashed=xeval_files, needs=(layout.TRAIN,), collect=xeval_record,
                       seconds=xeval_seconds, missing=missing, incremental=True)

__all__ = ["XEVAL_SPEC", "evaluated", "missing", "wanted", "xeval_record", "xeval_stage"]
