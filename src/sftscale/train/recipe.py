"""The recipe of a finetuning run and THE rule from N to optimizer steps.

- ``Recipe``: every hyperparameter of a run (pydantic, unknown keys rejected); YAML files via
  ``Recipe.from_yaml`` and override dicts via ``recipe_with``, both reporting errors through
  ``yamlconfig.validation_error`` (file, line and field).
- ``default_recipe(model_ref)``: toy models get full finetuning with their own defaults
  (``toyworld.toy_sft_defaults``: the shared ``TOY_SFT_DEFAULTS`` and the per-size
  ``sft_defaults`` of the model's ``toy_meta.json``); real models get LoRA in the spirit of the paper
  (r 32, alpha 64, 3 epochs, effective batch 16, lr 2e-4, cosine, 3% warm-up).
- ``steps_for(n, recipe)``: ``steps = max(min_steps, ceil(epochs * rows / batch_size))``, capped
  by ``max_steps`` when set; ``rows`` is N, or the number of packed rows when packing. Logged
  in every meta. With ``early_stopping`` it is the step BUDGET: training evaluates the mean
  next-token loss of the gold completions of ``val_items`` validation items of the training
  pool every ``eval_every`` steps (and at the budget), stops after ``patience`` evaluations
  without an improvement (a relative gain of ``min_improvement`` and an absolute one of
  ``min_delta``) and keeps the weights of the minimum (``train.loop``; the split:
  ``examples.split_pool``). The learning-rate schedule is always defined over the budget, so a
  run stopped early ends at a learning rate above the schedule's end.

Not handled: per-size recipes for real models (one default for all; ``recipe_search`` chooses
per cell), validating override
keys against the model (a LoRA field on a toy recipe is accepted and unused).
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..io import InputError, sha256_json
from ..yamlconfig import parse_yaml, read_config_text, strict_scalars, validation_error

#: a useful ``micro_batch_tokens`` on a CPU with one thread per process (1.5x faster on the
#: 4M-parameter model); with 2 threads on a loaded machine it was 2.5x SLOWER (many small ops,
#: each paying a thread barrier), so it is not the default: see docs/notes/train.md
CPU_MICRO_BATCH_TOKENS = 1024


class Recipe(BaseModel):
    """Hyperparameters of one finetuning run. ``batch_size`` is the effective batch."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _strict_scalars(cls, data: Any) -> Any:
        return strict_scalars(cls, data)  # `lr: true` is not 1.0 (yamlconfig.strict_scalars)

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
    sharding: Literal["none", "ddp", "fsdp"] = Field(
        "none", description="several processes per cell (the model's gpus/processes): ddp "
        "(replicated weights) or fsdp (torch FSDP2, sharded); none: one process")
    early_stopping: bool = Field(
        False, description="train up to the steps_for budget, keep the weights of the lowest "
        "validation loss (val_items items of the training pool, disjoint from every subset), "
        "stop after `patience` evaluations without improvement; train_backend loop, one process")
    val_items: int = Field(64, ge=1, le=100_000, description="validation items (early_stopping)")
    eval_every: int = Field(10, ge=1, description="optimizer steps between validation "
                            "evaluations (early_stopping); also evaluated at the budget")
    patience: int = Field(3, ge=1, description="evaluations in a row without an improvement of "
                          "the validation loss before stopping (early_stopping)")
    min_improvement: float = Field(
        0.0, ge=0, lt=1, description="early_stopping: an evaluation improves when its loss is "
        "below (1 - min_improvement) x the last improvement's loss (relative; 0: any new "
        "minimum); the kept weights are always those of the lowest loss")
    min_delta: float = Field(
        0.0, ge=0, description="early_stopping: and by at least this much (absolute, in nats "
        "per token; Keras' min_delta, HF's early_stopping_threshold): a loss that falls from "
        "0.004 to 0.003 is 25% lower and no reason to train on")

    @field_validator("lora_targets")
    @classmethod
    def _targets(cls, v: Any) -> Any:
        if isinstance(v, list) and not v:
            raise ValueError("lora_targets must name at least one module (or 'all-linear')")
        return v

    def sha(self) -> str:
        """Hash of every field; the fields added after recipes were first hashed
        (``OMIT_AT_DEFAULT``: ``sharding``, the early-stopping fields) are left out while they
        hold their default, so that recipes written before they existed keep their hash."""
        d = self.model_dump(mode="json")
        for k, v in OMIT_AT_DEFAULT.items():
            if d.get(k) == v:
                del d[k]
        return sha256_json(d)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, base: "Recipe | None" = None) -> "Recipe":
        """Read a YAML mapping of fields over ``base`` (default: the class defaults); an empty
        file is ``base``."""
        text, p = read_config_text(path, "recipe")
        data, lines = parse_yaml(text, str(p), "field: value, ...", empty_ok=True)
        merged = {**(base.model_dump() if base is not None else {}), **data}
        try:
            return cls.model_validate(merged)
        except ValidationError as e:
            raise validation_error(e, cls, p, lines) from None


#: fields that ``Recipe.sha`` leaves out while they hold these (default) values
OMIT_AT_DEFAULT: dict[str, Any] = {"sharding": "none", "early_stopping": False, "val_items": 64,
                                   "eval_every": 10, "patience": 3, "min_improvement": 0.0,
                                   "min_delta": 0.0}

#: the seed of the early-stopping validation split (``examples.split_pool``): one split per
#: task pool, the same for every seed and N of a grid, so every subset avoids it
VAL_SEED = 0


def val_count(recipe: Recipe) -> int:
    """Validation items taken out of the training pool: ``val_items`` with early stopping, else 0."""
    return recipe.val_items if recipe.early_stopping else 0


def check_early_stopping(recipe: Recipe) -> None:
    """InputError when early stopping is asked for where it is not implemented."""
    if not recipe.early_stopping:
        return
    if recipe.train_backend != "loop":
        raise InputError(None, "early_stopping is implemented for train_backend: loop only, "
                         f"not {recipe.train_backend!r}; set early_stopping: false or "
                         "train_backend: loop", field="early_stopping")
    if recipe.sharding != "none":
        raise InputError(None, "early_stopping is implemented for one process (sharding: none) "
                         f"only, not sharding: {recipe.sharding}; set early_stopping: false",
                         field="early_stopping")


def default_recipe(model_ref: Any) -> Recipe:
    """The default recipe for a model: toy (full finetuning with that model's own defaults,
    ``toyworld.toy_sft_defaults``) or real (LoRA)."""
    from ..models import ModelSpec, is_toy, resolve_model
    from ..toyworld import toy_sft_defaults

    if not is_toy(model_ref):
        return Recipe()
    try:
        path = (model_ref if isinstance(model_ref, ModelSpec) else resolve_model(model_ref)).path
    except InputError:  # a toy name whose weights are not shipped: the shared defaults
        path = None
    return Recipe(**toy_sft_defaults(path))


def resolve_recipe(recipe: "Recipe | dict | str | os.PathLike | None", model_ref: str) -> Recipe:
    """A Recipe from what ``train_cell`` accepts: a Recipe, a dict of overrides of
    ``default_recipe(model_ref)`` (``recipe_with``), a YAML path over that default, or None
    (the default)."""
    if recipe is None:
        return default_recipe(model_ref)
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return recipe_with(model_ref, recipe)
    return Recipe.from_yaml(recipe, base=default_recipe(model_ref))


def recipe_with(model_ref: str, overrides: dict, where: str = "recipe") -> Recipe:
    """``default_recipe(model_ref)`` with ``overrides``; an unknown or invalid field is an
    InputError whose field names ``where`` (the config location of the overrides; for the
    default ``recipe`` the bare field name)."""
    base = default_recipe(model_ref).model_dump()
    unknown = sorted(set(overrides) - set(base))
    if unknown:
        raise InputError(None, f"unknown recipe field(s) {', '.join(unknown)}", field=where)
    try:
        return Recipe.model_validate({**base, **overrides})
    except ValidationError as e:
        prefix = () if where == "recipe" else (where,)
        raise validation_error(e, Recipe, None, prefix=prefix) from None


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
    if recipe.early_stopping:
        rule = "step budget: " + rule
    return steps, f"{rule} = {steps}"


def warmup_for(steps: int, recipe: Recipe) -> int:
    """Warm-up steps: ``warmup_steps`` when set, else ``ceil(warmup_ratio * steps)``."""
    if recipe.warmup_steps is not None:
        return min(recipe.warmup_steps, steps)
    return min(steps, math.ceil(recipe.warmup_ratio * steps))


__all__ = ["CPU_MICRO_BATCH_TOKENS", "OMIT_AT_DEFAULT", "Recipe", "VAL_SEED",
           "check_early_stopping", "default_recipe", "recipe_with", "resolve_recipe", "steps_for",
           "val_count", "warmup_for"]
