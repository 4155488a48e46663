"""The per-cell stages of a study, as a list: train, then evaluate, then whatever is registered.

``STAGES`` is what ``CellRunner`` runs for each cell, in order (rundir/stagespec.py says what a
``StageSpec`` declares). The store records each stage's hashed files, integrity.py checks
them before reuse, repair.py rebuilds a store from them, ``status`` shows them, and what a
stage's ``collect`` returns lands in the metrics table and ``export.csv``.

- ``train``: ``train_stage`` → ``train.train_cell`` (in ``cell.world`` processes through
  ``train.launch``), writing ``train_meta.json`` (last) and ``ckpt/``; a cell with a recipe
  search trains its candidates instead (study/search.py, chosen by the runner).
- ``eval``: ``eval_stage`` → ``evaluation.evaluate`` on the cell's checkpoint (the base model
  for N = 0), writing ``results_<ts>.json`` and ``samples_<task>_<ts>.jsonl``.
- ``xeval`` (``XEVAL_SPEC``, study/xeval.py; not in ``STAGES``: ``with_eval_tasks`` appends it
  to the stage list of a study that names ``eval_tasks``, so that other studies' cells and run
  directories are untouched): the same checkpoint on the cell's eval tasks, one ``<label>/``
  pair of files each.

A new per-cell stage is one module (its ``run``, and a ``StageSpec``) and one registration::

    from sftscale.study.stages import register_stage
    register_stage(StageSpec(name="wordcount", run=count_words, done=("counts.json",),
                             hashed=("counts.json",), needs=("eval",)))

``with_runs(train=f, eval=g)`` is the list with other run functions (tests, benchmarks).
``study_stages(cfg)`` is what ``run_study`` runs for a study: ``STAGES`` plus the analyses its
``analysis`` section turns on (``shift``: tokenshift/stage.py, on unless ``token_shift: false``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..generation.shared import GENERATORS  # one model per process
from ..grid.cells import Cell
from ..rundir import layout
from ..rundir.integrity import train_files
from ..rundir.outputs import eval_record, eval_seconds, train_record, train_seconds
from ..rundir.stagespec import Stage, StageContext, StageSpec, check_stages
from ..tasks.base import Task
from .xeval import XEVAL_SPEC


def train_stage(cell: Cell, ctx: StageContext) -> None:
    """``sftscale.train.cell.train_cell`` with the cell's model, task, N, seed and recipe overrides
    (in ``cell.world`` processes through ``train.launch``: torchrun, or Ray Train on Ray)."""
    from ..train.launch import train_cell_launched

    recipe = dict(cell.recipe)
    recipe.setdefault("chat", cell.chat)
    if cell.kshot and _link_plain(cell, ctx):
        return
    train_cell_launched(cell.model_ref, task_object(cell), cell.n, cell.seed, ctx.out,
                        recipe=recipe, task_options=cell.task_options or None,
                        progress=ctx.progress, world=cell.world, use_gpu=cell.gpus > 0,
                        cpus_per_worker=cell.cpus)


def _link_plain(cell: Cell, ctx: StageContext) -> bool:
    """A k-shot cell (``fewshot:``) trains exactly what its plain cell trains (same model, task,
    N, seed, recipe; k only changes the prompts): when that cell's training is finished, its
    directory is linked (hard links) instead of trained or written again. False when it is not
    finished yet (then this cell trains: the same result)."""
    from ..io import link_tree

    plain = dataclasses.replace(cell, kshot=0, fewshot_seed=None).key
    src = layout.stage_dir(layout.cell_dir(ctx.run_dir, plain), layout.TRAIN)
    if not (src / layout.TRAIN_META).is_file():
        return False
    link_tree(src, ctx.out)
    (ctx.out / layout.SEAL).unlink(missing_ok=True)  # sealed again for this cell
    return True


def eval_stage(cell: Cell, ctx: StageContext) -> None:
    """``sftscale.evaluation.run.evaluate`` on the cell's checkpoint (the base model for N = 0).

    Which model and adapter, loaded once per worker: ``study.cellmodel.cell_generator`` (the
    same choice as the xeval stage's). A k-shot cell's examples never come from its own
    finetuning subset.
    """
    from ..evaluation.run import evaluate
    from .cellmodel import cell_generator

    task = task_object(cell)
    if ctx.validation is not None:  # a search candidate: training items, never test items
        from .search import validation_view
        task = validation_view(task, ctx.validation)
    model, adapter, gen, meta = cell_generator(cell, ctx)
    evaluate(model, task, adapter=adapter, generator=gen, limit=cell.limit, out=ctx.out, chat=cell.chat,
             batch_size=cell.batch_size, allow_template_mismatch=cell.allow_template_mismatch,
             progress=ctx.progress, sampling=cell.sampling, num_fewshot=cell.num_fewshot,
             fewshot_exclude=meta.get("subset_ids") or (),  # examples never from the cell's subset
             fewshot_seed=cell.fewshot_seed)
    if ctx.validation is not None:  # the search's tie-break
        from .search import write_val_loss
        write_val_loss(gen, task, cell, ctx.out)


def task_object(cell: Cell) -> Task:
    """The cell's task: max_new_tokens override and external training data applied."""
    from ..tasks.taskdata import study_task

    return study_task(cell.task_name, cell.task_options, cell.max_new_tokens)


TRAIN_SPEC = StageSpec(name=layout.TRAIN, run=train_stage, done=(layout.TRAIN_META,),
                       hashed=train_files, collect=train_record, seconds=train_seconds,
                       own_workers=True)
EVAL_SPEC = StageSpec(name=layout.EVAL, run=eval_stage,
                      done=(layout.RESULTS_GLOB, layout.SAMPLES_GLOB),
                      hashed=(layout.RESULTS_GLOB, layout.SAMPLES_GLOB), needs=(layout.TRAIN,),
                      collect=eval_record, seconds=eval_seconds)

STAGES: list[StageSpec] = [TRAIN_SPEC, EVAL_SPEC]
"""Every cell's stages, in order: the runner's default, and what ``sftscale run`` runs."""


def with_eval_tasks(stages: list[StageSpec], cfg: Any) -> list[StageSpec]:
    """``stages`` plus the xeval stage when the study ``cfg`` names ``eval_tasks`` (on a task
    or study-wide) and the list has no xeval stage yet."""
    named = bool(cfg.eval_tasks) or any(t.eval_tasks for t in cfg.tasks)
    if not named or any(s.name == XEVAL_SPEC.name for s in stages):
        return stages
    check_stages([*stages, XEVAL_SPEC])
    return [*stages, XEVAL_SPEC]


def register_stage(spec: StageSpec) -> StageSpec:
    """Append ``spec`` to ``STAGES`` (ValueError for a taken name or directory, or ``needs``
    naming a stage that does not run before it); returns it."""
    check_stages([*STAGES, spec])
    STAGES.append(spec)
    return spec


def study_stages(cfg: Any) -> list[StageSpec]:
    """The stages a study runs: ``STAGES``, then the analyses its ``analysis`` section turns on
    (``token_shift``, on by default: tokenshift/stage.py's ``shift``)."""
    from ..tokenshift.stage import SHIFT_SPEC

    out = list(STAGES)
    analysis = getattr(cfg, "analysis", None)
    if getattr(analysis, "token_shift", True) and all(s.name != SHIFT_SPEC.name for s in out):
        out.append(SHIFT_SPEC)
    return out


def with_runs(stages: list[StageSpec] | None = None, **runs: Stage) -> list[StageSpec]:
    """``stages`` (default ``STAGES``) with the run functions of the named stages replaced
    (``with_runs(train=cheap_train, eval=cheap_eval)``); KeyError for an unknown name."""
    base = list(STAGES if stages is None else stages)
    unknown = set(runs) - {s.name for s in base}
    if unknown:
        raise KeyError(f"no stage named {sorted(unknown)}")
    return [dataclasses.replace(s, run=runs[s.name]) if s.name in runs else s for s in base]


__all__ = ["EVAL_SPEC", "GENERATORS", "STAGES", "XEVAL_SPEC", "StageContext", "StageSpec", "TRAIN_SPEC",
           "eval_stage", "register_stage", "study_stages", "task_object", "train_stage", "with_eval_tasks",
           "with_runs"]
