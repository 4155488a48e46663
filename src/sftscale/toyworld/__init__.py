"""The toy world: a synthetic world, its corpus, toy tasks and tiny pretrained base models.

Public API: ``toy_model_path(name) -> Path`` for the shipped models (``toy-S``, ``toy-M``),
``TOY_MODELS``, ``TOY_SFT_DEFAULTS`` (the finetuning recipe of the toy models, in
``train.Recipe`` fields). Submodules: ``world``, ``corpus``, ``tokenizer``, ``pretrain``, ``tasks``.

Not handled here: loading (``sftscale.models`` resolves the names through ``toy_model_path``).
Importing this package imports neither torch nor transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MODELS_DIR = Path(__file__).resolve().parent / "models"
TOY_MODELS: tuple[str, ...] = ("toy-S", "toy-M")

# The full-finetuning recipe shared by the toy models (docs/toy-models.md has the measurements),
# in ``Recipe`` fields. Each shipped model's ``toy_meta.json`` may override some fields
# (``sft_defaults``, chosen per size by recipe search); ``toy_sft_defaults(dir)`` merges the two
# and ``train.default_recipe`` and ``toyworld.probe`` use it. Loss on completion tokens (+ eos)
# only, AdamW. Steps per N: early stopping on validation loss (64 items of the task's training
# pool, outside every subset) within a budget of max(min_steps, ceil(epochs * N / batch))
# capped at max_steps (40 to 200: N = 8 to 32 get 40, 64 gets 80, 128 gets 160, 256 and up
# 200); evaluated every 10 steps, stopped after 3 evaluations in a row without a gain of 1% and of
# 0.005 nats per token, the weights of the lowest validation loss kept (docs/toy-models.md,
# "Steps per N", has the measurements and what it replaced). ``toyworld.probe`` trains the budget without early
# stopping. ``warmup_ratio`` and ``lora_dropout`` are unused here (``warmup_steps`` wins; no
# LoRA) but are part of every toy cell's recipe hash.
TOY_SFT_DEFAULTS: dict = {
    "method": "full",
    "lr": 1e-3,
    "batch_size": 16,
    "micro_batch_size": 16,
    "epochs": 20,
    "min_steps": 40,
    "max_steps": 200,
    "early_stopping": True,
    "val_items": 64,
    "eval_every": 10,
    "patience": 3,
    "min_improvement": 0.01,
    "min_delta": 0.005,
    "warmup_steps": 0,
    "warmup_ratio": 0.0,
    "schedule": "cosine",
    "weight_decay": 0.0,
    "max_length": 512,
    "lora_dropout": 0.0,
}


def toy_sft_defaults(model_dir: str | Path | None = None) -> dict:
    """The finetuning recipe of one toy model: ``TOY_SFT_DEFAULTS`` with the model's own
    ``sft_defaults`` on top (a dict of Recipe fields in its ``toy_meta.json``, chosen per size by
    recipe search: docs/toy-models.md). A directory without them (a test model, a toy model
    pretrained by a user) gets ``TOY_SFT_DEFAULTS``; so does ``None``."""
    import json

    meta = Path(model_dir) / "toy_meta.json" if model_dir is not None else None
    own: dict[str, Any] = {}
    if meta is not None and meta.is_file():
        own = json.loads(meta.read_text(encoding="utf-8")).get("sft_defaults") or {}
    return {**TOY_SFT_DEFAULTS, **own}


def toy_model_path(name: str) -> Path:
    """Directory of a shipped toy model (``"toy-S"`` or ``"S"``); FileNotFoundError if absent."""
    key = name if name.startswith("toy-") else f"toy-{name}"
    if key not in TOY_MODELS and not (MODELS_DIR / key).is_dir():
        raise FileNotFoundError(f"unknown toy model {name!r}; known: {', '.join(TOY_MODELS)}")
    path = MODELS_DIR / key
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"toy model {key!r} is not shipped at {path}")
    return path


__all__ = ["MODELS_DIR", "TOY_MODELS", "TOY_SFT_DEFAULTS", "toy_model_path", "toy_sft_defaults"]
