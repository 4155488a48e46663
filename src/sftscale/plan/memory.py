"""Training memory per process of a cell, and the checks ``sftscale plan`` makes with it.

``train_memory(params, recipe, world)`` estimates the bytes each training process holds:

- weights: full finetuning keeps fp32 master weights (4 B/parameter); LoRA keeps the frozen
  base in bf16 on a GPU (2 B/parameter) plus the fp32 adapter;
- trainable parameters: all of them (full), or for LoRA about ``1% x lora_r / 32`` of the model
  (Llama-3-8B with r 32 on all linear layers: 84M of 8.0B = 1.0%; 70B: 0.3%, so this is an
  upper bound for large models);
- gradients: 4 B per trainable parameter; AdamW state: 8 B per trainable parameter;
- ``sharding: ddp`` (and ``none``): every process holds all of it; ``fsdp``: 1/W of each.

Activations, the CUDA context, FSDP's one gathered block and allocator fragmentation are NOT
counted: the check refuses only cells that cannot fit even without them (a plan that passes
may still run out of memory at a large batch or ``max_length``; lower ``micro_batch_size``).

``check_resources(cfg)``: a model's ``processes`` needs ``recipe.sharding`` ddp or fsdp and,
with ``gpus``, must equal it (one process per GPU). ``check_fit(...)`` raises the InputError
that makes ``sftscale plan --gpu NAME`` refuse a cell whose processes cannot hold their share
on that GPU (``GPU_MEMORY``).
"""

from __future__ import annotations

from typing import Any

from ..config import StudyConfig

#: device memory in bytes (vendor data sheets; the larger variant where there are two)
GPU_MEMORY: dict[str, float] = {
    "H200": 141e9, "H100": 80e9, "A100": 80e9, "L40S": 48e9, "A10G": 24e9, "L4": 24e9,
    "RTX4090": 24e9, "V100": 32e9, "T4": 16e9,
}
#: the share of device memory the weights, gradients and optimizer state may take
USABLE = 0.9
LORA_FRACTION_R32 = 0.01


def train_memory(params: float, recipe: Any, world: int) -> dict[str, float]:
    """Bytes per process: weights, grads, optimizer, total (see the module docstring)."""
    lora = recipe.method == "lora"
    trainable = params * LORA_FRACTION_R32 * recipe.lora_r / 32 if lora else params
    weights = params * 2 + trainable * 4 if lora else params * 4
    share = 1.0 / world if recipe.sharding == "fsdp" else 1.0
    out = {"weights": weights * share, "grads": trainable * 4 * share,
           "optimizer": trainable * 8 * share}
    out["total"] = sum(out.values())
    return out


def check_resources(cfg: StudyConfig) -> None:
    """``processes`` only with sharding ddp/fsdp (for every task), and equal to ``gpus``."""
    for i, m in enumerate(cfg.models):
        if m.processes is not None and m.gpus and m.processes != m.gpus:
            raise cfg.error(f"processes ({m.processes}) must equal gpus ({m.gpus:g}): one "
                            "training process per GPU", "models", i, "processes")
        if (m.processes or 1) <= 1 and m.gpus <= 1:
            continue
        for t in cfg.tasks:
            sharding = cfg.recipe_overrides(m, t).get("sharding", "none")
            if sharding == "none" and (m.processes or 1) > 1:
                raise cfg.error(f"processes: {m.processes} needs recipe sharding: ddp or fsdp "
                                f"(task {t.label!r} has none)", "models", i, "processes")


def check_fit(cfg: StudyConfig, cells: list, rows: list[dict], gpu: str | None) -> list[str]:
    """Notes on the memory per process of multi-GPU cells; InputError for a cell whose share
    does not fit ``USABLE`` of ``gpu``'s memory (only GPU cells, only when a GPU is named)."""
    notes: list[str] = []
    seen: set[tuple[str, str]] = set()
    for c, r in zip(cells, rows):
        mem = r.get("train_mem_per_process")
        if mem is None or c.n == 0 or (c.model, str(c.recipe)) in seen:
            continue
        seen.add((c.model, str(c.recipe)))
        sharding = c.recipe.get("sharding", "none")
        if c.gpus or c.world > 1:
            notes.append(f"{c.model}: training holds ~{mem / 1e9:.3g} GB per process "
                         f"({c.world} process(es), sharding {sharding}; activations not counted)")
        if gpu is None or not c.gpus or gpu not in GPU_MEMORY:
            continue
        cap = GPU_MEMORY[gpu] * USABLE
        if mem > cap:
            i = next(k for k, m in enumerate(cfg.models) if m.label == c.model)
            hint = ("use recipe sharding: fsdp" if sharding != "fsdp"
                    else "raise gpus (more shards) or use LoRA")
            raise cfg.error(f"{c.model} cannot train on {gpu} GPUs: ~{mem / 1e9:.3g} GB of "
                            f"weights, gradients and optimizer state per process > "
                            f"{cap / 1e9:.3g} GB usable of {GPU_MEMORY[gpu] / 1e9:.3g} GB "
                            f"({c.world} process(es), sharding {sharding}); {hint}",
                            "models", i, "gpus")
    return notes


__all__ = ["GPU_MEMORY", "USABLE", "check_fit", "check_resources", "train_memory"]
