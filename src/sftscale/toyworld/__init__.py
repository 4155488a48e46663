"""The toy world: a synthetic world, its corpus, toy tasks and tiny pretrained base models.

Public API: ``toy_model_path(name) -> Path`` for the shipped models (``toy-S``, ``toy-M``),
``TOY_MODELS``, ``TOY_SFT_DEFAULTS`` (the finetuning recipe of the toy models, in
``train.Recipe`` fields). Submodules: ``world``, ``corpus``, ``tokenizer``, ``pretrain``, ``tasks``.

Not handled here: loading (``sftscale.models`` resolves the names through ``toy_model_path``).
Importing this package imports neither torch nor transformers.
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent / "models"
TOY_MODELS: tuple[str, ...] = ("toy-S", "toy-M")

# Recommended full-finetuning recipe for the toy models (docs/toy-models.md has the measurements),
# in ``Recipe`` fields: THE toy default (``train.default_recipe`` is built from exactly this dict,
# and ``toyworld.probe`` takes its defaults from it). Loss on completion tokens (+ eos) only,
# AdamW, steps = max(min_steps, ceil(epochs * N / batch)) capped at max_steps. lr 1e-3 teaches
# the format by N = 16 on both models; on toy-M it forgets at N >= 1000 on toy-multihop (0.40 vs
# 0.82 at lr 3e-4), see ``TOY_SFT_LR_ALTERNATIVE``. ``warmup_ratio`` and ``lora_dropout`` are
# unused here (``warmup_steps`` wins; no LoRA) but are part of every toy cell's recipe hash.
TOY_SFT_DEFAULTS: dict = {
    "method": "full",
    "lr": 1e-3,
    "batch_size": 16,
    "micro_batch_size": 16,
    "epochs": 3,
    "min_steps": 30,
    "max_steps": 300,
    "warmup_steps": 0,
    "warmup_ratio": 0.0,
    "schedule": "cosine",
    "weight_decay": 0.0,
    "max_length": 512,
    "lora_dropout": 0.0,
}
#: documentation, not a recipe default: the lr a toy-M study on toy-multihop at N >= 1000 should use
TOY_SFT_LR_ALTERNATIVE = 3e-4


def toy_model_path(name: str) -> Path:
    """Directory of a shipped toy model (``"toy-S"`` or ``"S"``); FileNotFoundError if absent."""
    key = name if name.startswith("toy-") else f"toy-{name}"
    if key not in TOY_MODELS and not (MODELS_DIR / key).is_dir():
        raise FileNotFoundError(f"unknown toy model {name!r}; known: {', '.join(TOY_MODELS)}")
    path = MODELS_DIR / key
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"toy model {key!r} is not shipped at {path}")
    return path


__all__ = ["MODELS_DIR", "TOY_MODELS", "TOY_SFT_DEFAULTS", "TOY_SFT_LR_ALTERNATIVE",
           "toy_model_path"]
