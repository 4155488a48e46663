"""One finetuning cell: (model, task, N, seed, recipe) -> checkpoint + train_meta.json.

- ``Recipe``: every hyperparameter of a run (pydantic, unknown keys rejected); YAML files
  via ``Recipe.from_yaml`` (errors name the file, line and field).
- ``default_recipe(model_ref)``: toy models get full finetuning with the toy world's
  ``TOY_SFT_DEFAULTS``; real models get LoRA in the spirit of the paper (r 32, alpha 64,
  3 epochs, effective batch 16, lr 2e-4, cosine, 3% warm-up).
- ``steps_for(n, recipe)``: THE rule from N to optimizer steps, logged in every meta:
  ``steps = max(min_steps, ceil(epochs * rows / batch_size))``, capped by ``max_steps`` when
  set; ``rows`` is N, or the number of packed rows when packing.
- ``select_subset(ids, n, seed)``: the first N of ONE seeded permutation of the pool, so
  subsets are nested (N1 < N2, same seed -> subset(N1) is a prefix of subset(N2)). The
  permutation orders the ids by ``sha256(f"{seed}:{id}")``, so it does not depend on the
  pool's order. N > pool size is an error (never a silent cap).
- ``train_cell``: tokenises ``task.training_pair`` (prompt tokens as ``generate.py`` encodes
  them, completion + EOS), masks the prompt (label -100), checks the masks before the first
  step, trains with ``trainloop.train_loop`` (or TRL's SFTTrainer when
  ``train_backend="trl"``), saves ``ckpt/`` (peft adapter or full weights, safetensors, plus
  the tokenizer) and writes ``train_meta.json`` LAST, atomically. A cell whose meta exists is
  never redone; a cell dir without meta is cleaned (``ckpt/``) and redone. N = 0 writes only
  a meta pointing at the base model.

Tokenisation: prompt and completion are tokenised separately and concatenated, so the prompt
tokens are exactly those the model sees at generation time (no merge across the boundary).
A completion tokenised on its own may differ from its in-context tokenisation for
SentencePiece tokenizers that add a prefix space; not handled.

Multi-GPU: under ``accelerate launch`` (WORLD_SIZE > 1) the cell trains data-parallel (see
docs/multi-gpu.md); only the main process saves. Not tested here (no GPUs).

Not handled: resuming a half-finished run (it restarts), multi-turn conversations, packing
with TRL, training on GPUs with less memory than the model needs (no gradient checkpointing
flag), quantised (QLoRA) training.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..io import InputError, atomic_write_json, sha256_json

IGNORE = -100
META = "train_meta.json"
#: a useful ``micro_batch_tokens`` on a CPU with one thread per process (1.5x faster on the
#: 4M-parameter model); with 2 threads on a loaded machine it was 2.5x SLOWER (many small ops,
#: each paying a thread barrier), so it is not the default: see docs/notes/train.md
CPU_MICRO_BATCH_TOKENS = 1024
META_VERSION = 1


# --------------------------------------------------------------------------- recipe
class Recipe(BaseModel):
    """Hyperparameters of one finetuning run. ``batch_size`` is the effective batch."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    method: Literal["lora", "full"] = "lora"
    lora_r: int = Field(32, ge=1)
    lora_alpha: float = Field(64, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_targets: list[str] | Literal["all-linear"] = "all-linear"
    epochs: float = Field(3.0, gt=0)
    lr: float = Field(2e-4, gt=0)
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    warmup_steps: int | None = Field(None, ge=0, description="overrides warmup_ratio")
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    batch_size: int = Field(16, ge=1)
    micro_batch_size: int = Field(4, ge=1)
    micro_batch_tokens: int | None = Field(
        None, ge=1, description="also cap a micro-batch's padded tokens (examples x longest); "
        "None: split by micro_batch_size only (the gradient does not depend on the split)")
    max_length: int = Field(1024, ge=2)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = 1.0
    min_steps: int = Field(0, ge=0)
    max_steps: int | None = Field(None, ge=1)
    packing: bool = False
    dtype: Literal["auto", "fp32", "bf16"] = "auto"
    chat: bool = False
    train_backend: Literal["loop", "trl"] = "loop"

    @field_validator("lora_targets")
    @classmethod
    def _targets(cls, v: Any) -> Any:
        if isinstance(v, list) and not v:
            raise ValueError("lora_targets must name at least one module (or 'all-linear')")
        return v

    def sha(self) -> str:
        return sha256_json(self.model_dump(mode="json"))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, base: "Recipe | None" = None) -> "Recipe":
        """Read a YAML mapping of fields over ``base`` (default: the class defaults)."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise InputError(p, f"cannot read recipe: {e.strerror}") from None
        try:
            data = yaml.safe_load(text)
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as e:
            line = getattr(getattr(e, "problem_mark", None), "line", None)
            raise InputError(p, f"not valid YAML ({getattr(e, 'problem', e)})",
                             line=None if line is None else line + 1) from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InputError(p, "a recipe must be a mapping of field: value", line=1)
        lines = {}
        if isinstance(node, yaml.MappingNode):
            for k, _ in node.value:
                lines[str(k.value)] = k.start_mark.line + 1
        merged = {**(base.model_dump() if base is not None else {}), **data}
        try:
            return cls.model_validate(merged)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(x) for x in err["loc"]) if err["loc"] else None
            top = str(err["loc"][0]) if err["loc"] else None
            raise InputError(p, err["msg"], line=lines.get(top), field=field) from None


def _toy_defaults() -> dict[str, Any]:
    try:
        from ..toyworld import TOY_SFT_DEFAULTS  # type: ignore[attr-defined]
        d = dict(TOY_SFT_DEFAULTS)
    except (ImportError, AttributeError):  # prototype values
        d = {"lr": 1e-3, "batch_size": 16, "epochs": 3, "min_steps": 30}
    if "lora" in d:
        d["method"] = "lora" if d.pop("lora") else "full"
    return d


def default_recipe(model_ref: Any) -> Recipe:
    """The default recipe for a model: toy (full finetuning) or real (LoRA)."""
    from ..models import is_toy

    if is_toy(model_ref):
        base = {"method": "full", "lr": 1e-3, "batch_size": 16, "micro_batch_size": 16,
                "epochs": 3, "min_steps": 30, "warmup_ratio": 0.0, "schedule": "cosine",
                "max_length": 512, "lora_dropout": 0.0}
        for k, v in _toy_defaults().items():
            if k in Recipe.model_fields:
                base[k] = v
        return Recipe(**base)
    return Recipe()


def steps_for(n: int, recipe: Recipe, rows: int | None = None) -> tuple[int, str]:
    """(optimizer steps, the rule as text) for N examples (``rows`` packed rows if packing)."""
    r = n if rows is None else rows
    if n == 0:
        return 0, "N = 0: no training"
    raw = math.ceil(recipe.epochs * r / recipe.batch_size)
    steps = max(recipe.min_steps, raw)
    rule = (f"steps = max(min_steps={recipe.min_steps}, ceil(epochs={recipe.epochs:g} * "
            f"{'rows' if rows is not None else 'N'}={r} / batch_size={recipe.batch_size}))")
    if recipe.max_steps is not None and steps > recipe.max_steps:
        steps = recipe.max_steps
        rule += f", capped at max_steps={recipe.max_steps}"
    return steps, f"{rule} = {steps}"


def warmup_for(steps: int, recipe: Recipe) -> int:
    if recipe.warmup_steps is not None:
        return min(recipe.warmup_steps, steps)
    return min(steps, math.ceil(recipe.warmup_ratio * steps))


# --------------------------------------------------------------------------- subsets
def select_subset(ids: Sequence[str], n: int, seed: int) -> list[str]:
    """The first ``n`` ids of one seeded permutation of ``ids`` (nested in ``n``)."""
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise ValueError("the training pool has duplicate ids")
    if n < 0:
        raise InputError(None, f"N must be >= 0, got {n}", field="n")
    if n > len(ids):
        raise InputError(None, f"N = {n} exceeds the training pool ({len(ids)} items)", field="n")
    key = {i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in ids}
    return sorted(ids, key=lambda i: (key[i], i))[:n]


# --------------------------------------------------------------------------- examples
def encode_prompt(tok: Any, prompt: str) -> list[int]:
    """Prompt ids exactly as ``generate.py`` encodes them: special tokens added unless the
    prompt already starts with the BOS text (chat templates usually include it)."""
    bos = tok.bos_token
    add = not (bos and prompt.startswith(bos))
    return list(tok(prompt, add_special_tokens=add)["input_ids"])


def encode_pair(tok: Any, prompt: str, completion: str, max_length: int
                ) -> tuple[list[int], list[int], int, int]:
    """(input_ids, labels, prompt_len, tokens cut by truncation). Completion ends with EOS."""
    p = encode_prompt(tok, prompt)
    c = list(tok(completion, add_special_tokens=False)["input_ids"])
    eos = tok.eos_token_id
    if eos is not None and (not c or c[-1] != eos):
        c.append(eos)
    ids = p + c
    labels = [IGNORE] * len(p) + c
    cut = max(0, len(ids) - max_length)
    if cut:
        ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels, len(p), cut


def check_masks(examples: Sequence[Sequence[Sequence[int]]], prompt_lens: Sequence[int],
                ids: Sequence[str] | None = None) -> int:
    """Before the first step: every prompt token masked, and not every target masked.

    Returns the number of target tokens; raises ValueError otherwise."""
    total = 0
    for k, (ex, plen) in enumerate(zip(examples, prompt_lens)):
        labels = ex[1]
        name = ids[k] if ids is not None else f"#{k}"
        if any(t != IGNORE for t in labels[:plen]):
            raise ValueError(f"example {name}: prompt tokens are not masked")
        total += sum(1 for t in labels[1:] if t != IGNORE)
    if total == 0:
        raise ValueError("every target token is masked: nothing to learn "
                         "(empty completions, or max_length shorter than the prompts)")
    return total


def pack_examples(examples: Sequence[tuple[list[int], list[int]]], max_length: int
                  ) -> list[tuple[list[int], list[int], list[int]]]:
    """Greedy packing in order into rows of at most ``max_length`` tokens, with
    ``position_ids`` restarting at 0 per example (the loop masks attention per example)."""
    rows: list[tuple[list[int], list[int], list[int]]] = []
    cur: tuple[list[int], list[int], list[int]] = ([], [], [])
    for x, y in examples:
        if cur[0] and len(cur[0]) + len(x) > max_length:
            rows.append(cur)
            cur = ([], [], [])
        cur[0].extend(x)
        cur[1].extend(y)
        cur[2].extend(range(len(x)))
    if cur[0]:
        rows.append(cur)
    return rows


# --------------------------------------------------------------------------- cells
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


def _clean(out: Path) -> list[str]:
    """Remove what an interrupted run may have left (ckpt/, temporary files)."""
    removed = []
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


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "trl", "accelerate", "sftscale"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


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


def _identity(model_ref: str, task_name: str, task_version: str, n: int, seed: int,
              recipe: Recipe, task_options: dict | None) -> dict:
    return {"model": model_ref, "task": task_name, "task_version": task_version, "n": n,
            "seed": seed, "recipe_sha": recipe.sha() if n > 0 else None,
            "task_options": task_options or {}}


def train_cell(model: Any, task: Any, n: int, seed: int, out: str | os.PathLike,
               recipe: Recipe | dict | str | os.PathLike | None = None,
               task_options: dict | None = None,
               progress: Callable[[dict], None] | None = None,
               device: str | None = None) -> dict:
    """Train one cell into ``out`` and return its train_meta (the existing one if done).

    ``model``: a model reference (see ``models.resolve_model``). ``task``: a task name or a
    ``Task``. ``recipe``: a Recipe, a dict of overrides of ``default_recipe(model)``, a YAML
    path, or None for the default. ``progress(metrics)`` is called after every step with
    ``step``, ``steps``, ``loss``, ``lr``, ``tokens_seen``, ``elapsed_s``.
    """
    from ..models import resolve_model
    from ..tasks import Task, get_task

    out = Path(out)
    model_ref = str(model)
    spec = resolve_model(model_ref)
    if isinstance(task, Task):
        task_obj = task
    else:
        task_obj = get_task(str(task), **(task_options or {}))
    rec = _as_recipe(recipe, model_ref)
    ident = _identity(model_ref, task_obj.name, str(task_obj.version), int(n), int(seed), rec,
                      task_options)

    done = read_meta(out)
    if done is not None:
        _check_same(done, ident, out)
        return done
    removed = _clean(out)
    out.mkdir(parents=True, exist_ok=True)

    items = task_obj.train_items()
    by_id = {it.id: it for it in items}
    subset = select_subset([it.id for it in items], int(n), int(seed))
    meta: dict[str, Any] = {
        "meta_version": META_VERSION, "complete": True, **ident,
        "model_spec": spec.to_dict(), "pool_size": len(items),
        "subset_ids": subset, "subset_sha": sha256_json(subset),
        "cleaned_partial": removed,
    }
    if n == 0:
        from ..models import model_weights_hash

        meta.update({"base_model": model_ref, "weights_hash": _safe(model_weights_hash, spec),
                     "trained": False, "steps": 0, "steps_rule": steps_for(0, rec)[1],
                     "checkpoint": None, "versions": _versions()})
        atomic_write_json(out / META, meta)
        return meta

    t_start = time.perf_counter()
    import torch

    from ..models import default_device, load_model, model_weights_hash, template_sha

    accelerator = _launched_accelerator()
    dev = str(accelerator.device) if accelerator is not None else (device or default_device())
    on_gpu = str(dev).startswith("cuda")
    train_dtype = _train_dtype(rec, on_gpu)
    load_dtype = torch.bfloat16 if (train_dtype == "bf16" and rec.method == "lora") else torch.float32
    with _deterministic(int(seed)):
        mdl, tok = load_model(spec, device=dev, dtype=load_dtype)
        if rec.chat and not getattr(tok, "chat_template", None):
            raise InputError(None, f"recipe has chat=true but {model_ref!r} has no chat template",
                             field="chat")
        examples, plens, stats = build_examples(task_obj, [by_id[i] for i in subset], tok, rec)
        n_targets = check_masks(examples, plens, subset)
        rows: Sequence[Any] = examples
        if rec.packing:
            rows = pack_examples(examples, rec.max_length)
        steps, rule = steps_for(int(n), rec, rows=len(rows) if rec.packing else None)
        warm = warmup_for(steps, rec)
        if rec.method == "lora":
            mdl = _wrap_lora(mdl, rec, int(seed))
        trainable = sum(p.numel() for p in mdl.parameters() if p.requires_grad)
        total_params = sum(p.numel() for p in mdl.parameters())
        cb = _progress_cb(progress, steps)
        mbt = None
        if rec.train_backend == "trl":
            from .trl_adapter import train_trl

            res = train_trl(mdl, tok, rows, rec, steps=steps, warmup_steps=warm, seed=int(seed),
                            on_metrics=cb, bf16=(train_dtype == "bf16"))
        else:
            from .loop import LoopConfig, train_loop

            mbt = rec.micro_batch_tokens
            cfg = LoopConfig(steps=steps, lr=rec.lr, batch_size=rec.batch_size,
                             micro_batch_size=min(rec.micro_batch_size, rec.batch_size),
                             micro_batch_tokens=mbt,
                             warmup_steps=warm, schedule=rec.schedule,
                             min_lr_ratio=rec.min_lr_ratio, weight_decay=rec.weight_decay,
                             betas=tuple(rec.betas), max_grad_norm=rec.max_grad_norm,
                             seed=int(seed), autocast_dtype="bf16" if train_dtype == "bf16" else None)
            res = train_loop(mdl, rows, cfg, pad_id=_pad_id(tok), on_metrics=cb,
                             accelerator=accelerator)
        if accelerator is not None and not accelerator.is_main_process:
            accelerator.wait_for_everyone()  # the main process saves and writes the meta
            return meta
        _save_ckpt(mdl, tok, out, rec)
    wall = time.perf_counter() - t_start
    meta.update({
        "trained": True, "checkpoint": "ckpt", "checkpoint_kind": rec.method,
        "recipe": rec.model_dump(mode="json"),
        "weights_hash": _safe(model_weights_hash, spec),
        "chat": rec.chat, "chat_template_sha": template_sha(tok, rec.chat),
        "steps": res.steps, "steps_rule": rule, "warmup_steps": warm,
        "epochs_effective": res.steps * rec.batch_size / len(rows),
        "rows": len(rows), "packing": rec.packing,
        "tokens_seen": res.tokens_seen, "target_tokens": res.target_tokens,
        "target_tokens_per_epoch": n_targets, **stats,
        "loss_curve": res.losses, "final_loss": res.losses[-1] if res.losses else None,
        "train_wall_s": res.wall_s, "wall_s": wall,
        "tokens_per_s": res.tokens_seen / res.wall_s if res.wall_s > 0 else None,
        "params": total_params, "trainable_params": trainable,
        "device": str(dev), "dtype": train_dtype, "backend": rec.train_backend,
        "micro_batch_tokens_used": (mbt if rec.train_backend == "loop" else None),
        "threads": torch.get_num_threads(), "versions": _versions(),
    })
    if accelerator is not None:
        meta["processes"] = accelerator.num_processes
    atomic_write_json(out / META, meta)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return meta


def _launched_accelerator() -> Any:
    """An ``accelerate.Accelerator`` when this process was started by ``accelerate launch``
    (or torchrun) with more than one process; None otherwise (the normal case)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import Accelerator

    return Accelerator(mixed_precision="no")  # the loop autocasts itself


def _safe(fn: Callable, *a: Any) -> Any:
    try:
        return fn(*a)
    except (OSError, InputError):
        return None


def _as_recipe(recipe: Any, model_ref: str) -> Recipe:
    if recipe is None:
        return default_recipe(model_ref)
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return recipe_with(model_ref, recipe)
    return Recipe.from_yaml(recipe, base=default_recipe(model_ref))


def recipe_with(model_ref: str, overrides: dict, where: str = "recipe") -> Recipe:
    """``default_recipe(model_ref)`` with ``overrides``; an unknown or invalid field is an
    InputError whose field names ``where`` (the config location of the overrides)."""
    base = default_recipe(model_ref).model_dump()
    unknown = sorted(set(overrides) - set(base))
    if unknown:
        raise InputError(None, f"unknown recipe field(s) {', '.join(unknown)}", field=where)
    try:
        return Recipe.model_validate({**base, **overrides})
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(map(str, err["loc"]))
        raise InputError(None, err["msg"], field=loc if where == "recipe" else f"{where}.{loc}") from None


def _check_same(done: dict, ident: dict, out: Path) -> None:
    diff = [k for k, v in ident.items() if k in done and done[k] != v
            and not (k == "recipe_sha" and ident["n"] == 0)]
    if diff:
        raise InputError(out / META, "this cell directory already holds a finished run with "
                         f"different {', '.join(diff)}; use another output directory",
                         field=diff[0])


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


def build_examples(task: Any, items: Sequence[Any], tok: Any, rec: Recipe
                   ) -> tuple[list[tuple[list[int], list[int]]], list[int], dict]:
    """Tokenised (input_ids, labels) for the items, prompt lengths, truncation stats."""
    examples, plens = [], []
    truncated, cut_tokens = 0, 0
    for it in items:
        prompt, completion = task.training_pair(it, tok, rec.chat)
        ids, labels, plen, cut = encode_pair(tok, prompt, completion, rec.max_length)
        if plen >= rec.max_length:
            raise InputError(None, f"item {it.id}: prompt has {plen} tokens, not less than "
                             f"max_length={rec.max_length}; raise max_length", field="max_length")
        truncated += bool(cut)
        cut_tokens += cut
        examples.append((ids, labels))
        plens.append(plen)
    lens = [len(e[0]) for e in examples]
    stats = {"truncated_examples": truncated, "truncated_tokens": cut_tokens,
             "max_length": rec.max_length, "example_tokens_mean": sum(lens) / max(1, len(lens)),
             "example_tokens_max": max(lens) if lens else 0}
    return examples, plens, stats


def _wrap_lora(model: Any, rec: Recipe, seed: int) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=rec.lora_r, lora_alpha=rec.lora_alpha, lora_dropout=rec.lora_dropout,
                     target_modules=rec.lora_targets, task_type="CAUSAL_LM", bias="none")
    torch.manual_seed(seed)  # LoRA A init
    return get_peft_model(model, cfg)


def _save_ckpt(model: Any, tok: Any, out: Path, rec: Recipe) -> None:
    """Save into a temporary dir beside ``ckpt`` and rename it into place."""
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=".ckpt.", dir=out))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        dst = out / "ckpt"
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _progress_cb(progress: Callable[[dict], None] | None, steps: int
                 ) -> Callable[[dict], None] | None:
    if progress is None:
        return None

    def cb(m: dict) -> None:
        progress({**m, "steps": steps,
                  "tokens_per_s": m["tokens_seen"] / m["elapsed_s"] if m["elapsed_s"] > 0 else 0.0})
    return cb


__all__ = ["META", "Recipe", "build_examples", "check_masks", "default_recipe", "encode_pair",
           "encode_prompt", "pack_examples", "read_meta", "select_subset", "steps_for",
           "train_cell", "warmup_for"]
