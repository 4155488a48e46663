"""The one training loop: pretraining (loss on all tokens) and finetuning (loss on completions).

Examples are ``(input_ids, labels)`` pairs of equal length, with ``labels[i] == -100`` where no
loss is taken (prompt tokens, padding). Each optimizer step consumes ``batch_size`` examples
(the effective batch), split into micro-batches of at most ``micro_batch_size``; the summed
token losses of all micro-batches are divided by the number of target tokens in the whole
effective batch, so the gradient does not depend on how the batch is split (1x16 and 4x4
give the same update up to floating-point rounding). This is the fix for the old
gradient-accumulation bug, where each micro-batch was normalised on its own.

Example order: a fresh seeded permutation per epoch; micro-batches are formed from
length-sorted examples inside each effective batch (same gradient, less padding).

Not handled here: which examples are chosen (``train.py``), LoRA wrapping (``train.py``),
multi-device (accelerate, see ``docs/multi-gpu.md``), mixed precision beyond an optional
autocast dtype, packing (``train.py`` builds packed examples when asked).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch

IGNORE = -100


@dataclass
class LoopConfig:
    steps: int
    lr: float = 1e-3
    batch_size: int = 16
    micro_batch_size: int = 16
    warmup_steps: int = 0
    schedule: str = "cosine"  # cosine | linear | constant
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = 1.0
    seed: int = 0
    autocast_dtype: str | None = None  # "bf16" on GPU; None = full precision
    log_every: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LoopResult:
    steps: int
    tokens_seen: int  # all non-pad input tokens processed
    target_tokens: int  # tokens that carried loss
    losses: list[float] = field(default_factory=list)  # per optimizer step, token-mean
    wall_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def lr_at(step: int, cfg: LoopConfig) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, cfg.steps - cfg.warmup_steps)
    p = min(1.0, (step - cfg.warmup_steps) / span)
    if cfg.schedule == "linear":
        f = 1.0 - p
    elif cfg.schedule == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * p))
    else:
        raise ValueError(f"unknown schedule {cfg.schedule!r}")
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * f


def batch_order(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """Indices for each optimizer step: seeded permutation per epoch, wrapping across epochs."""
    g = torch.Generator().manual_seed(seed)
    order: list[int] = []
    need = steps * batch_size
    while len(order) < need:
        order.extend(torch.randperm(n, generator=g).tolist())
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


def collate(examples: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int,
            device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Right-pad to the longest example. Padding has label -100 and attention 0."""
    L = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), L), pad_id, dtype=torch.long)
    lab = torch.full((len(examples), L), IGNORE, dtype=torch.long)
    att = torch.zeros((len(examples), L), dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, :len(x)] = torch.as_tensor(x, dtype=torch.long)
        lab[i, :len(y)] = torch.as_tensor(y, dtype=torch.long)
        att[i, :len(x)] = 1
    return {"input_ids": ids.to(device), "labels": lab.to(device), "attention_mask": att.to(device)}


def token_loss_sum(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Sum of next-token cross-entropy over target positions, and their count."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    shift_logits = logits[:, :-1, :].float()
    shift_labels = batch["labels"][:, 1:]
    n = int((shift_labels != IGNORE).sum())
    loss = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
        ignore_index=IGNORE, reduction="sum")
    return loss, n


def make_optimizer(model: torch.nn.Module, cfg: LoopConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms and embeddings of size-1 dims."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, foreach=True)


def train_loop(model: torch.nn.Module, examples: Sequence[tuple[Sequence[int], Sequence[int]]],
               cfg: LoopConfig, pad_id: int,
               on_step: Callable[[int, float], None] | None = None) -> LoopResult:
    """Run ``cfg.steps`` optimizer steps over ``examples``. Deterministic on CPU for a seed."""
    if not examples:
        raise ValueError("no training examples")
    for i, (x, y) in enumerate(examples):
        if len(x) != len(y):
            raise ValueError(f"example {i}: input_ids and labels differ in length")
    torch.manual_seed(cfg.seed)
    device = next(model.parameters()).device
    model.train()
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, cfg))
    params = [p for p in model.parameters() if p.requires_grad]
    amp = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
           if cfg.autocast_dtype == "bf16" else None)
    res = LoopResult(steps=0, tokens_seen=0, target_tokens=0)
    t0 = time.perf_counter()
    for step, idx in enumerate(batch_order(len(examples), cfg.batch_size, cfg.steps, cfg.seed)):
        idx = sorted(idx, key=lambda i: len(examples[i][0]))
        n_target = sum(sum(1 for t in examples[i][1][1:] if t != IGNORE) for i in idx)
        if n_target == 0:
            raise ValueError(f"step {step}: every target token of the batch is masked")
        total = 0.0
        for s in range(0, len(idx), cfg.micro_batch_size):
            mb = collate([examples[i] for i in idx[s:s + cfg.micro_batch_size]], pad_id, device)
            if amp is not None:
                with amp:
                    loss_sum, _ = token_loss_sum(model, mb)
            else:
                loss_sum, _ = token_loss_sum(model, mb)
            (loss_sum / n_target).backward()
            total += float(loss_sum.detach())
            res.tokens_seen += int(mb["attention_mask"].sum())
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        res.target_tokens += n_target
        res.steps += 1
        loss = total / n_target
        res.losses.append(loss)
        if on_step is not None:
            on_step(step, loss)
    res.wall_s = time.perf_counter() - t0
    model.eval()
    return res
