"""One finetuning cell: (model, task, N, seed, recipe) -> checkpoint + train_meta.json.

``train_cell`` resolves and checks its inputs (``_Request``: model, task and its training pool,
N >= 0, seed >= 0, device, an output that is not a file) BEFORE it creates anything, returns the
existing meta of a finished cell (never redone; a finished cell asked for with other inputs is
an InputError), cleans what an interrupted run left (``ckpt/``, temporary files; an output
directory this call created is removed again when it fails), and then either writes a meta
pointing at the
base model (N = 0) or trains: the seeded subset (``examples.select_subset``) is tokenised with
the prompt masked (``examples.build_examples``), the masks are checked before the first step,
the rows go through ``loop.train_loop`` (or TRL's SFTTrainer when ``train_backend="trl"``),
``ckpt/`` is saved (peft adapter or full weights, safetensors, plus the tokenizer) and
``train_meta.json`` is written LAST, atomically. ``read_meta(out)`` reads a finished cell.

Early stopping (``recipe.early_stopping``): the subset is drawn from the training pool minus
``val_items`` validation items (``examples.split_pool``, seed ``recipe.VAL_SEED``: the same
items for every N and seed), the loop trains up to the ``steps_for`` budget and keeps the
weights of the lowest validation loss (``loop.train_loop``), and the meta records
``steps_budget``, ``steps`` (the kept checkpoint's step), ``steps_trained`` (where training
stopped), ``val_loss_curve``, ``best_val_loss``, ``stop_rule``, ``val_items`` and
``val_ids_sha``. Loop backend and one process only (an InputError otherwise).

Progress: ``progress`` (a ``sftscale.events.ProgressFn``) gets ``ProgressEvent("train",
done=steps done, total=steps, metrics={step, steps, loss, lr, tokens_seen, target_tokens,
elapsed_s, tokens_per_s})`` after every optimizer step (``loop.train_event``).

Several processes: when launched with WORLD_SIZE > 1 (``train.launch``: torchrun or Ray Train;
or ``accelerate launch``) the cell trains data-parallel (``recipe.sharding`` ddp, or none) or
sharded (fsdp) through ``train.distributed``; only rank 0 saves ``ckpt/`` (the whole model,
gathered) and writes the meta, which records ``processes`` and ``sharding``. See
docs/multi-gpu.md (tested on CPUs with gloo; not on GPUs).

Not handled: resuming a half-finished run (it restarts), multi-turn conversations, packing
with TRL, training on GPUs with less memory than the model needs (no gradient checkpointing
flag), quantised (QLoRA) training.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..events import ProgressFn
from ..io import InputError, atomic_write_json, link_tree, sha256_json
from ..models import ModelSpec
from ..provenance import versions
from ..tasks.base import Item, Task
from .distributed import Fsdp2, dist_context, full_state_dict
from .examples import build_examples, check_masks, pack_examples, split_pool
from .recipe import VAL_SEED, Recipe, check_early_stopping, resolve_recipe, steps_for, val_count, warmup_for

META = "train_meta.json"
META_VERSION = 1


def read_meta(out: str | os.PathLike) -> dict | None:
    """The cell's train_meta.json if it is complete and valid, else None."""
    p = Path(out) / META
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not meta.get("complete") or "n" not in meta:
        return None
    if meta["n"] > 0 and not (Path(out) / "ckpt").is_dir():
        return None
    return meta


@dataclass
class _Request:
    """What a cell is asked to do, resolved: the model's spec, the task object, the recipe."""

    model_ref: str
    spec: ModelSpec
    task: Task
    n: int
    seed: int
    rec: Recipe
    ident: dict
    items: list[Item]  # the task's training pool (empty for N = 0 on a task without one)
    device: str | None


@dataclass
class _Rows:
    """The training rows of a cell and what was decided about them."""

    rows: Sequence[Any]
    stats: dict
    n_targets: int
    steps: int
    rule: str
    warmup: int
    val: Sequence[Any] = ()  # early stopping's validation examples (unpacked)


def train_cell(model: Any, task: str | Task, n: int, seed: int, out: str | os.PathLike,
               recipe: Recipe | dict | str | os.PathLike | None = None,
               task_options: dict | None = None, progress: ProgressFn | None = None,
               device: str | None = None) -> dict:
    """Train one cell into ``out`` and return its train_meta (the existing one if done).

    ``model``: a model reference (see ``models.resolve_model``). ``task``: a task name or a
    ``Task``. ``recipe``: a Recipe, a dict of overrides of ``default_recipe(model)``, a YAML
    path, or None for the default. ``progress``: see the module docstring.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a directory (a cell's output is a directory)",
                         field="out")
    req = _resolve(model, task, n, seed, recipe, task_options, device)
    done = read_meta(out)
    if done is not None:
        _check_reusable(done, req, out)
        return done
    created = not out.exists()
    try:
        return _start(req, out, progress)
    except BaseException:
        if created:  # nothing half-written: no empty or partial directory of ours is left
            shutil.rmtree(out, ignore_errors=True)
        raise


def _start(req: _Request, out: Path, progress: ProgressFn | None) -> dict:
    """Clean ``out``, then write the N = 0 meta or train (``_train``)."""
    removed = _clean(out)
    out.mkdir(parents=True, exist_ok=True)
    items = req.items
    subset, val_ids = split_pool([it.id for it in items], req.n, req.seed,
                                 val_count(req.rec) if req.n > 0 else 0, VAL_SEED)
    meta: dict[str, Any] = {
        "meta_version": META_VERSION, "complete": True, **req.ident,
        "model_spec": req.spec.to_dict(), "pool_size": len(items),
        "subset_ids": subset, "subset_sha": sha256_json(subset),
        "cleaned_partial": removed,
    }
    if req.n == 0:
        from ..models import model_weights_hash

        meta.update({"base_model": req.model_ref,
                     "weights_hash": _safe(model_weights_hash, req.spec),
                     "trained": False, "steps": 0, "steps_rule": steps_for(0, req.rec)[1],
                     "checkpoint": None, "versions": versions()})
        atomic_write_json(out / META, meta)
        return meta
    by_id = {it.id: it for it in items}
    if val_ids:
        meta.update({"val_items": len(val_ids), "val_ids_sha": sha256_json(val_ids),
                     "val_seed": VAL_SEED})
    return _train(req, [by_id[i] for i in subset], out, meta, progress, req.device,
                  [by_id[i] for i in val_ids])


def _resolve(model: Any, task: str | Task, n: int, seed: int, recipe: Recipe | dict | str | os.PathLike | None,
             task_options: dict | None, device: str | None = None) -> _Request:
    """Every input checked, nothing written: an InputError names the bad one."""
    from ..models import check_device, resolve_model
    from ..tasks import get_task

    if int(n) < 0:
        raise InputError(None, f"N must be >= 0, got {n}", field="n")
    if int(seed) < 0:  # the rule of a study's `seeds`
        raise InputError(None, f"seed must be >= 0, got {seed}", field="seed")
    model_ref = str(model)
    spec = resolve_model(model_ref)
    check_device(device)
    task_obj = task if isinstance(task, Task) else get_task(str(task), **(task_options or {}))
    items = _pool(task_obj, int(n))
    rec = resolve_recipe(recipe, model_ref)
    if int(n) > 0:
        check_early_stopping(rec)
        split_pool([it.id for it in items], int(n), int(seed), val_count(rec))  # pool size
    ident = {"model": model_ref, "task": task_obj.name, "task_version": str(task_obj.version),
             "n": int(n), "seed": int(seed), "recipe_sha": rec.sha() if int(n) > 0 else None,
             "task_options": task_options or {}}
    return _Request(model_ref, spec, task_obj, int(n), int(seed), rec, ident, items, device)


def _pool(task: Task, n: int) -> list[Item]:
    """The task's training items; a task without training data is an InputError for N > 0."""
    try:
        return task.train_items()
    except NotImplementedError as e:
        if n == 0:
            return []
        raise InputError(None, f"{e}; without training data only N = 0 (the base model) "
                         "can be used", field="task") from None


def _train(req: _Request, items: list, out: Path, meta: dict, progress: ProgressFn | None,
           device: str | None, val_items: list | None = None) -> dict:
    """Train on ``items``, save ``ckpt/`` and write the meta (main process only)."""
    import torch

    from ..models import default_device, load_model, model_weights_hash, template_sha

    t_start = time.perf_counter()
    rec = req.rec
    accelerator = dist_context(rec.sharding)
    dev = str(accelerator.device) if accelerator is not None else (device or default_device())
    train_dtype = _train_dtype(rec, str(dev).startswith("cuda"))
    load_dtype = torch.bfloat16 if (train_dtype == "bf16" and rec.method == "lora") else torch.float32
    with _deterministic(req.seed):  # FSDP2 loads on the CPU and moves each rank's shard
        mdl, tok = load_model(req.spec, device="cpu" if isinstance(accelerator, Fsdp2) else dev,
                              dtype=load_dtype)
        if rec.chat and not getattr(tok, "chat_template", None):
            raise InputError(None, f"recipe has chat=true but {req.model_ref!r} has no chat "
                             "template", field="chat")
        plan = _rows(req, items, tok, val_items or [])
        if rec.method == "lora":
            mdl = wrap_lora(mdl, rec, req.seed)
        trainable = sum(p.numel() for p in mdl.parameters() if p.requires_grad)
        total_params = sum(p.numel() for p in mdl.parameters())
        res = _run_backend(mdl, tok, plan, rec, req.seed, progress, train_dtype, accelerator)
        full = full_state_dict(mdl, accelerator)  # FSDP2: gathered on rank 0 (collective)
        if accelerator is not None and not accelerator.is_main_process:
            accelerator.wait_for_everyone()  # the main process saves and writes the meta
            return meta
        _save_ckpt(mdl, tok, out, state_dict=full)
    meta.update({
        "trained": True, "checkpoint": "ckpt", "checkpoint_kind": rec.method,
        "recipe": rec.model_dump(mode="json"),
        "weights_hash": _safe(model_weights_hash, req.spec),
        "chat": rec.chat, "chat_template_sha": template_sha(tok, rec.chat),
        **_run_meta(plan, res, rec),
        "wall_s": time.perf_counter() - t_start,
        "tokens_per_s": res.tokens_seen / res.wall_s if res.wall_s > 0 else None,
        "params": total_params, "trainable_params": trainable,
        "device": str(dev), "dtype": train_dtype, "backend": rec.train_backend,
        "micro_batch_tokens_used": (rec.micro_batch_tokens if rec.train_backend == "loop" else None),
        "threads": torch.get_num_threads(), "versions": versions(),
    })
    meta["processes"] = accelerator.num_processes if accelerator is not None else 1
    meta["sharding"] = ("none" if accelerator is None
                        else "fsdp" if isinstance(accelerator, Fsdp2) else "ddp")
    atomic_write_json(out / META, meta)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return meta


def _rows(req: _Request, items: list, tok: Any, val_items: list) -> _Rows:
    """Tokenise and check the examples (and the validation examples), pack them if asked, and
    fix the steps (the budget, with early stopping) and warm-up."""
    rec = req.rec
    examples, plens, stats = build_examples(req.task, items, tok, rec.max_length, rec.chat)
    n_targets = check_masks(examples, plens, [it.id for it in items])
    val: list = []
    if val_items:
        val, vplens, _ = build_examples(req.task, val_items, tok, rec.max_length, rec.chat)
        check_masks(val, vplens, [it.id for it in val_items])
    rows: Sequence[Any] = pack_examples(examples, rec.max_length) if rec.packing else examples
    steps, rule = steps_for(req.n, rec, rows=len(rows) if rec.packing else None)
    return _Rows(rows, stats, n_targets, steps, rule, warmup_for(steps, rec), val)


def _run_backend(mdl: Any, tok: Any, plan: _Rows, rec: Recipe, seed: int,
                 progress: ProgressFn | None, train_dtype: str, accelerator: Any) -> Any:
    """Train ``mdl`` in place with the recipe's backend; returns its ``LoopResult``."""
    if rec.train_backend == "trl":
        from .trl_adapter import train_trl

        return train_trl(mdl, tok, plan.rows, rec, steps=plan.steps, warmup_steps=plan.warmup,
                         seed=seed, progress=progress, bf16=(train_dtype == "bf16"))
    from .loop import LoopConfig, train_loop

    cfg = LoopConfig(steps=plan.steps, lr=rec.lr, batch_size=rec.batch_size,
                     micro_batch_size=min(rec.micro_batch_size, rec.batch_size),
                     micro_batch_tokens=rec.micro_batch_tokens,
                     warmup_steps=plan.warmup, schedule=rec.schedule,
                     min_lr_ratio=rec.min_lr_ratio, weight_decay=rec.weight_decay,
                     betas=(rec.betas[0], rec.betas[1]), max_grad_norm=rec.max_grad_norm,
                     seed=seed, autocast_dtype="bf16" if train_dtype == "bf16" else None,
                     eval_every=rec.eval_every if plan.val else 0, patience=rec.patience,
                     min_improvement=rec.min_improvement, min_delta=rec.min_delta)
    return train_loop(mdl, plan.rows, cfg, pad_id=_pad_id(tok), progress=progress,
                      accelerator=accelerator, val_examples=plan.val or None)


def _run_meta(plan: _Rows, res: Any, rec: Recipe) -> dict:
    """The meta entries that describe the steps, rows, tokens and losses of the run.

    ``steps`` is the step of the saved weights (with early stopping, of the lowest validation
    loss), ``steps_trained`` the optimizer steps run, ``steps_budget`` the ``steps_for`` rule's
    value; ``epochs_effective`` and ``final_loss`` (the training loss of step ``steps``) are
    of the saved weights, ``tokens_seen`` and ``target_tokens`` of the whole run."""
    kept = getattr(res, "best_step", 0) or res.steps
    out = {
        "steps": kept, "steps_budget": plan.steps, "steps_trained": res.steps,
        "steps_rule": plan.rule, "warmup_steps": plan.warmup,
        "epochs_effective": kept * rec.batch_size / len(plan.rows),
        "rows": len(plan.rows), "packing": rec.packing,
        "tokens_seen": res.tokens_seen, "target_tokens": res.target_tokens,
        "target_tokens_per_epoch": plan.n_targets, **plan.stats,
        "loss_curve": res.losses,
        "final_loss": res.losses[kept - 1] if len(res.losses) >= kept > 0 else None,
        "train_wall_s": res.wall_s,
    }
    if plan.val:
        stopped = res.steps < plan.steps
        out.update({
            "early_stopping": True, "val_loss_curve": res.val_curve,
            "best_val_loss": res.best_val_loss, "val_wall_s": res.val_s,
            "eval_every": rec.eval_every, "patience": rec.patience,
            "min_improvement": rec.min_improvement, "min_delta": rec.min_delta,
            "stop_rule": (f"validation loss (mean next-token loss of the gold completions of "
                          f"{len(plan.val)} training-pool items outside every subset) every "
                          f"{rec.eval_every} steps and at the budget of {plan.steps}; stop after "
                          f"{rec.patience} evaluations in a row without an improvement (a loss "
                          f"below {1 - rec.min_improvement:g} x the last improvement's"
                          + (f" and at least {rec.min_delta:g} below it" if rec.min_delta else "")
                          + "); keep the "
                          "weights of the lowest loss; the lr schedule spans the budget. "
                          + (f"Stopped at step {res.steps}" if stopped
                             else f"Trained the whole budget ({res.steps} steps)")
                          + f", kept step {kept}."),
        })
        out["steps_rule"] = f"{plan.rule}; early stopping kept step {kept} of {res.steps} trained"
    return out


def _check_same(done: dict, ident: dict, out: Path) -> None:
    diff = [k for k, v in ident.items() if k in done and done[k] != v
            and not (k == "recipe_sha" and ident["n"] == 0)]
    if diff:
        raise InputError(out / META, "this cell directory already holds a finished run with "
                         f"different {', '.join(diff)}; use another output directory",
                         field=diff[0])


def replace_if_stale(model: Any, task: str | Task, n: int, seed: int, out: str | os.PathLike,
                     recipe: Recipe | dict | str | os.PathLike | None = None, task_options: dict | None = None,
                     log: Callable[[str], None] | None = None) -> bool:
    """Remove ``out`` when it holds a finished cell that ``train_cell`` would refuse for this
    request (another task version, recipe, model or base weights); True when removed. For
    directories a pipeline derives and owns (the knowledge runner's starting points and facts
    cells), where a rerun after an upgrade should retrain rather than stop."""
    out = Path(out)
    done = read_meta(out)
    if done is None:
        return False
    req = _resolve(model, task, n, seed, recipe, task_options)
    try:
        _check_reusable(done, req, out)
    except InputError as e:
        if log is not None:
            log(f"{out}: {e.reason.split(';')[0]} ({e.field}); training it again")
        shutil.rmtree(out)
        return True
    return False


def adopt_cell(model: Any, task: str | Task, n: int, seed: int, out: str | os.PathLike,
               sources: Sequence[str | os.PathLike], recipe: Recipe | dict | str | os.PathLike | None = None,
               task_options: dict | None = None) -> Path | None:
    """When ``out`` holds no finished cell: link into it the first of ``sources`` (finished
    cell directories, e.g. a study's ``cells/*/train``) that ``train_cell`` would reuse for
    this request (the same identity and base weights), and return that source; None when
    ``out`` is finished already or no source answers the request. The training a pipeline
    would repeat (the knowledge runner's reasoning start is a study's cell) is then done once.
    Not handled: a source that is being written (finished cells only: ``train_meta.json``)."""
    out = Path(out)
    if read_meta(out) is not None:
        return None
    req = _resolve(model, task, n, seed, recipe, task_options)
    for src in sources:
        done = read_meta(src)
        if done is None:
            continue
        try:
            _check_reusable(done, req, Path(src))
        except InputError:
            continue
        tmp = out.with_name(out.name + ".adopt.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        link_tree(src, tmp)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)  # link_tree made tmp and its parents
        return Path(src)
    return None


def _check_reusable(done: dict, req: _Request, out: Path) -> None:
    """InputError unless the finished cell ``done`` answers ``req``: the same identity
    (``_check_same``) and the same base weights; a cell trained from other weights under the
    same reference (a re-pretrained toy model, an updated local directory) is not reused."""
    _check_same(done, req.ident, out)
    if not done.get("weights_hash"):
        return
    from ..models import model_weights_hash

    now = _safe(model_weights_hash, req.spec)
    if now is not None and now != done["weights_hash"]:
        raise InputError(out / META, f"this cell was trained from other weights of {req.model_ref!r} "
                         f"(weights_hash {done['weights_hash'][:12]}, now {now[:12]}); use another "
                         "output directory", field="weights_hash")


def _clean(out: Path) -> list[str]:
    """Remove what an interrupted run may have left (ckpt/, temporary files)."""
    removed: list[str] = []
    if not out.exists():
        return removed
    for child in out.iterdir():
        if child.name == "ckpt" or child.name.startswith((".ckpt", f".{META}")):
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
            removed.append(child.name)
    return removed


@contextlib.contextmanager
def _deterministic(seed: int):
    """Seed python/numpy/torch and turn on deterministic algorithms for the run only."""
    import random

    import torch

    random.seed(seed)
    with contextlib.suppress(ImportError):
        import numpy as np
        np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


def _safe(fn: Callable, *a: Any) -> Any:
    try:
        return fn(*a)
    except (OSError, InputError):
        return None


def _train_dtype(rec: Recipe, on_gpu: bool) -> str:
    if rec.dtype == "auto":
        import torch

        return "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "fp32"
    return rec.dtype


def _pad_id(tok: Any) -> int:
    if tok.pad_token_id is not None:
        return int(tok.pad_token_id)
    if tok.eos_token_id is not None:
        return int(tok.eos_token_id)
    return 0


def wrap_lora(model: Any, rec: Recipe, seed: int) -> Any:
    """``model`` wrapped by peft with the recipe's LoRA settings (A initialised from ``seed``)."""
    import torch
    from peft import LoraConfig, get_peft_model

    # peft annotates lora_alpha as int; it takes a float (scaling = lora_alpha / r)
    cfg = LoraConfig(r=rec.lora_r, lora_alpha=rec.lora_alpha,  # type: ignore[arg-type]
                     lora_dropout=rec.lora_dropout, target_modules=rec.lora_targets, task_type="CAUSAL_LM",
                     bias="none")
    torch.manual_seed(seed)  # LoRA A init
    return get_peft_model(model, cfg)



def _save_ckpt(model: Any, tok: Any, out: Path, state_dict: dict | None = None) -> None:
    """Save into a temporary dir beside ``ckpt`` and rename it into place (``state_dict``:
    the gathered weights of a sharded model)."""
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=".ckpt.", dir=out))
    try:
        kw = {"state_dict": state_dict} if state_dict is not None else {}
        model.save_pretrained(str(tmp), safe_serialization=True, **kw)
        tok.save_pretrained(str(tmp))
        dst = out / "ckpt"
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["META", "adopt_cell", "read_meta", "replace_if_stale", "train_cell", "wrap_lora"]
