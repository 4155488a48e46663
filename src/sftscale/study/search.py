"""Recipe search: per cell, train every candidate recipe, choose on a validation split.

A study's ``recipe_search`` (``{lr: [3e-4, 1e-3, 3e-3], validation: {n: 64, seed: 0}}``;
config.RecipeSearch) makes the train stage of every N > 0 cell a search
(``run_search``, which ``runner.CellRunner`` runs in place of the train stage's run):

1. Candidates: the grid over the listed Recipe fields (all combinations, in the order
   written), each on top of the cell's own recipe overrides.
2. Validation split (``validation_ids``): ``validation.n`` items of the task's TRAINING pool,
   the first of one permutation seeded by ``validation.seed`` (``examples.select_subset``'s
   rule) among the pool items NOT in the cell's finetuning subset (with early stopping in a
   candidate's recipe: not in that candidate's subset, drawn around its early-stopping
   validation items, nor among those items; ``train.examples.split_pool``). Test items are never read:
   the split depends only on ``train_items()``, and the validation evaluation sees a copy of
   the task whose ``test_items()`` returns the validation items (``validation_view``). The
   task's own training/test separation is the task's contract (the toy tasks split by entity
   or template; a task whose pools overlap would leak into validation as into training).
3. Each candidate trains on the cell's subset with the runner's own train stage into
   ``cells/<key>/search/<cand>/train/`` and is evaluated on the validation split with the
   runner's own eval stage (``StageContext.validation`` set) into ``.../val/``; its scores go
   to ``.../val.json``, written last: a candidate with a ``val.json`` of the same values and
   split is done, so a crash mid-search resumes without retraining finished candidates.
4. Choice (``choose``): the highest validation score of the task's primary metric; ties go to
   the lowest validation loss (mean next-token loss of the gold completions, computed by the
   default eval stage, ``write_val_loss``), then to the first candidate in grid order.
5. The chosen candidate's training directory is linked (hard links, else copies) into the
   cell's ``train/``, its ``train_meta.json`` gaining ``recipe_search`` (grid, split, every
   candidate's validation scores, the chosen values): the cell's test evaluation then runs
   on that checkpoint only. Unless ``keep_checkpoints``, the other candidates' ``ckpt/`` are
   deleted (their train_meta, validation samples and scores stay).

Cost: k candidates = k trainings + k validation evaluations per N > 0 cell (docs/recipe-search.md).

Not handled: searching N = 0 cells (nothing is trained), per-model or per-task grids (one
grid for the study), tasks whose training items the scorer cannot score (``train_data``
pools are refused), early stopping or successive halving (every candidate trains fully),
reusing a candidate across cells of different N.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from ..grid.cells import Cell
from ..grid.searchspec import cand_id, candidates
from ..io import atomic_write_json, fresh_dir, link_tree, read_json_dict, read_jsonl, remove_path, sha256_json
from ..rundir import layout
from ..rundir.layout import VAL_LOSS
from ..rundir.stagespec import StageContext
from ..tasks.base import Task

RULE = ("highest validation {metric}; ties: lowest validation loss, then the first candidate "
        "in grid order")


# --- the validation split ------------------------------------------------------------------

def validation_ids(pool_ids: Sequence[str], n: int, seed: int, search: dict[str, Any],
                   recipes: Sequence[Any] = ()) -> tuple[list[str], list[str]]:
    """(the cell's finetuning subset, its validation ids): see the module docstring, item 2.
    ``recipes``: the candidates' resolved recipes; their subsets and early-stopping validation
    items are all left out (the subset returned is the first recipe's; without recipes, the
    plain ``select_subset``)."""
    from ..train.examples import select_subset, split_pool
    from ..train.recipe import VAL_SEED, val_count

    subset = select_subset(pool_ids, n, seed)
    taken = set(subset)
    if recipes:
        taken = set()
        for k, rec in enumerate(recipes):
            sub, es_val = split_pool(pool_ids, n, seed, val_count(rec), VAL_SEED)
            subset = sub if k == 0 else subset
            taken |= set(sub) | set(es_val)
    rest = [i for i in map(str, pool_ids) if i not in taken]
    v = search["validation"]
    if len(rest) < v["n"]:
        from ..io import InputError

        raise InputError(None, f"the training pool has {len(pool_ids)} items: N = {n} leaves "
                         f"{len(rest)} for a validation split of {v['n']}; lower "
                         "recipe_search.validation.n or N", field="recipe_search.validation.n")
    return subset, select_subset(rest, v["n"], v["seed"])


def validation_view(task: Task, ids: Sequence[str]) -> Task:
    """A copy of ``task`` whose ``test_items()`` are the training items ``ids`` (in order)."""
    by_id = {it.id: it for it in task.train_items()}
    items = [by_id[i] for i in ids]
    view = copy.copy(task)
    view.test_items = lambda: list(items)  # type: ignore[method-assign]  # the instance attribute shadows the method
    return view


def write_val_loss(gen: Any, task: Task, cell: Cell, out: Path) -> None:
    """``out/val_loss.json``: mean next-token loss of the validation items' gold completions
    under the generator's current model (nothing when the backend has no torch model)."""
    model = getattr(gen, "model", None)
    if model is None or not hasattr(model, "parameters"):
        return
    import torch

    from ..models import attention_backends
    from ..train.examples import build_examples
    from ..train.loop import collate, token_loss_sum
    from ..train.recipe import resolve_recipe

    tok = gen.tokenizer
    rec = resolve_recipe(dict(cell.recipe), cell.model_ref)
    examples, _, _ = build_examples(task, task.test_items(), tok, rec.max_length, cell.chat)
    dev = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    total, count = 0.0, 0
    with torch.no_grad(), attention_backends(dev):
        for i in range(0, len(examples), 16):
            loss, n = token_loss_sum(model, collate(examples[i:i + 16], pad, dev))
            total, count = total + float(loss), count + n
    atomic_write_json(out / VAL_LOSS, {"val_loss": total / max(count, 1), "tokens": count})


# --- running the search (the train stage of a search cell) ---------------------------------

def run_search(runner: Any, cell: Cell, ctx: StageContext) -> None:
    """Train and validate every candidate (resuming finished ones), choose, and write the
    chosen candidate's training directory into ``ctx.out`` (see the module docstring)."""
    from ..tasks.taskdata import study_task

    task = study_task(cell.task_name, cell.task_options, cell.max_new_tokens)
    from ..train.recipe import resolve_recipe

    pool = [it.id for it in task.train_items()]
    recipes = [resolve_recipe({**cell.recipe, **values}, cell.model_ref)
               for values in candidates(cell.search)]
    _, val = validation_ids(pool, cell.n, cell.seed, cell.search, recipes)
    split = {**cell.search["validation"], "ids_sha": sha256_json(val),
             "drawn_from": "training pool minus the cell's finetuning subset"}
    metric = task.primary_metric
    records = []
    for values in candidates(cell.search):
        cdir = layout.search_dir(ctx.cell_dir) / cand_id(values)
        rec = _done(cdir, values, split["ids_sha"])
        if rec is None:
            rec = _run_candidate(runner, cell, ctx, cdir, values, val, split["ids_sha"])
        records.append(rec)
    best = choose(records, metric)
    summary = {"grid": cell.search["grid"], "metric": metric, "rule": RULE.format(metric=metric),
               "validation": split, "chosen": records[best]["values"],
               "chosen_id": records[best]["id"], "candidates": records}
    _install(layout.search_dir(ctx.cell_dir) / records[best]["id"] / layout.TRAIN, ctx.out, summary)
    if not cell.search.get("keep_checkpoints"):
        for r in records:
            if r["id"] != records[best]["id"]:
                remove_path(layout.search_dir(ctx.cell_dir) / r["id"] / layout.TRAIN / layout.CKPT)


def choose(records: Sequence[dict[str, Any]], metric: str) -> int:
    """Index of the chosen candidate: highest ``metrics[metric]``, then lowest ``val_loss``,
    then the first (a missing or NaN score counts as the worst)."""
    def key(i: int) -> tuple[float, float, int]:
        m = records[i].get("metrics", {}).get(metric)
        vl = records[i].get("val_loss")
        m = -math.inf if m is None or m != m else float(m)
        vl = math.inf if vl is None or vl != vl else float(vl)
        return (-m, vl, i)
    return min(range(len(records)), key=key)


def _done(cdir: Path, values: dict[str, Any], ids_sha: str) -> dict[str, Any] | None:
    """The candidate's ``val.json`` when it is for these values and this split."""
    try:
        rec = json.loads((cdir / layout.CAND_VAL_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if rec.get("values") != values or rec.get("ids_sha") != ids_sha:
        return None
    return rec


def _run_candidate(runner: Any, cell: Cell, ctx: StageContext, cdir: Path, values: dict[str, Any],
                   val: list[str], ids_sha: str) -> dict[str, Any]:
    """Train (unless its ``train/`` is complete) and validate one candidate; write val.json."""
    import time

    from ..rundir.outputs import eval_files, parse_results
    from ..rundir.stagespec import seal, state

    ccell = replace(cell, recipe={**cell.recipe, **values}, search={})
    train = runner.spec(layout.TRAIN)
    tdir = layout.stage_dir(cdir, layout.TRAIN)
    t0 = time.perf_counter()
    if state(train, tdir)[0] is None:
        remove_path(tdir)
        tmp = fresh_dir(layout.stage_tmp(cdir, layout.TRAIN))
        train.run(ccell, replace(ctx, out=tmp))
        if not (tmp / layout.TRAIN_META).exists():
            raise RuntimeError(f"candidate {values}: training wrote no {layout.TRAIN_META}")
        seal(train, tmp)
        os.replace(tmp, tdir)
    t1 = time.perf_counter()
    vtmp = fresh_dir(layout.stage_tmp(cdir, layout.CAND_VAL))
    runner.spec(layout.EVAL).run(replace(ccell, limit=None),
                                 replace(ctx, out=vtmp, train_dir=tdir, validation=list(val)))
    files = eval_files(vtmp)
    if files is None:
        raise RuntimeError(f"candidate {values}: validation wrote no results/samples")
    metrics = parse_results(files[0], cell.task_name)
    if not metrics:
        from ..tasks.base import mean_metrics
        metrics = mean_metrics(read_jsonl(files[1]))
    vl = read_json_dict(vtmp / VAL_LOSS).get("val_loss")
    remove_path(cdir / layout.CAND_VAL)
    os.replace(vtmp, cdir / layout.CAND_VAL)
    meta = read_json_dict(tdir / layout.TRAIN_META)
    rec = {"id": cdir.name, "values": values, "ids_sha": ids_sha, "metrics": metrics,
           "val_loss": vl, "final_train_loss": meta.get("final_loss"),
           "train_s": round(t1 - t0, 3), "val_s": round(time.perf_counter() - t1, 3)}
    atomic_write_json(cdir / layout.CAND_VAL_JSON, rec)
    return rec


def _install(src: Path, out: Path, summary: dict[str, Any]) -> None:
    """Link (else copy) ``src`` into ``out``; its train_meta gains ``recipe_search``."""
    link_tree(src, out)
    meta = read_json_dict(src / layout.TRAIN_META)
    meta["recipe_search"] = summary
    (out / layout.TRAIN_META).unlink()  # a hard link to the candidate's: never write through it
    atomic_write_json(out / layout.TRAIN_META, meta)





__all__ = ["RULE", "choose", "run_search", "validation_ids", "validation_view", "write_val_loss"]
