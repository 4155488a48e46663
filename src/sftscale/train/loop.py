"""The one training loop: pretraining (loss on all tokens) and finetuning (loss on completions).

Examples are ``(input_ids, labels)`` pairs of equal length, with ``labels[i] == IGNORE`` (-100,
from ``train.examples``) where no loss is taken (prompt tokens, padding); a third element
``position_ids`` marks a packed row (several examples in one row, positions restarting at 0 for
each; see ``train.examples.pack_examples``). Packing decides which examples share an optimizer
step; the loop runs each example of a packed row as its own sequence (``segments``), in
length-sorted micro-batches, which is the same computation as the row under a block-diagonal
causal mask (each example's first label is masked, so no loss crosses a boundary) without the
row-length attention: 2x faster for the knowledge stage's short documents on a CPU
(docs/benchmarks.md).
Each optimizer step consumes ``batch_size`` examples (the effective batch), split into
micro-batches of at most ``micro_batch_size``; the summed token losses of all micro-batches
are divided by the number of target tokens in the whole effective batch, so the gradient does
not depend on how the batch is split (1x16 and 4x4 give the same update up to floating-point
rounding); normalising each micro-batch on its own would weight short micro-batches up.

Example order: a fresh seeded permutation per epoch; micro-batches are formed from
length-sorted examples inside each effective batch (same gradient, less padding).

Speed: a micro-batch without padding is run with no attention mask (SDPA's causal fast path).
Logits are computed only from the first
position that predicts a target onwards (``logits_to_keep``), which skips most of the
lm-head work on long prompts.

Multi-device: pass an ``accelerate.Accelerator`` (already holding the process group); every
process computes the same seeded batch order and takes every ``world_size``-th example of
each length-sorted effective batch (then splits its share into micro-batches; only the last
backward of a step synchronises); the loss is normalised by the global target-token count and
scaled by ``world_size`` because DDP (and FSDP2) average gradients. Progress events count
this process's tokens; the result's ``tokens_seen`` is summed over the processes. An FSDP2
helper (``train.distributed.Fsdp2``) shards the model before the optimizer is built.
tests/test_distributed.py runs 2 gloo processes on the CPU; see docs/multi-gpu.md.

Progress: after every optimizer step the loop calls ``progress`` with ``train_event(...)``, THE
training progress event (``sftscale.events.ProgressEvent``, stage ``train``); the TRL adapter
sends the same.

Early stopping: given ``val_examples`` and ``cfg.eval_every`` > 0, the loop evaluates the
token-mean next-token loss of the validation examples (``val_loss``, no gradients) after every
``eval_every``-th step and after the last step, keeps in memory a copy of the trainable
parameters at the lowest loss so far (strictly lower; the earliest step wins a tie), stops once
``cfg.patience`` evaluations in a row brought no improvement, and puts the kept parameters
back into the model before returning. An evaluation improves when its loss is below
``(1 - cfg.min_improvement)`` times, and at least ``cfg.min_delta`` below, the loss of the last
evaluation that improved (the first always does); with both 0 that is any new lowest loss. A small gain that is not
an improvement still moves the kept weights to the new lowest loss. The learning-rate schedule stays defined over
``cfg.steps`` (the budget), whether or not the run stops early. The step-0 (untrained) model is
not a candidate. One process only (an accelerator with early stopping is a ValueError).

Not handled here: which examples are chosen (``train.examples``), LoRA wrapping
(``train.cell``), mixed precision beyond an optional autocast dtype, checkpointing or resuming
mid-run.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch

from ..events import ProgressEvent, ProgressFn
from ..models import attention_backends
from .examples import IGNORE, n_targets


@dataclass
class LoopConfig:
    steps: int
    lr: float = 1e-3
    batch_size: int = 16
    micro_batch_size: int = 16
    #: also cap each micro-batch's padded size (examples x longest length) at this many tokens;
    #: None = split by micro_batch_size only. Same gradient either way; less padding work.
    micro_batch_tokens: int | None = None
    warmup_steps: int = 0
    schedule: str = "cosine"  # cosine | linear | constant
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = 1.0
    seed: int = 0
    autocast_dtype: str | None = None  # "bf16" on GPU; None = full precision
    #: early stopping (with ``val_examples``): evaluate every this many steps; 0 = never
    eval_every: int = 0
    #: stop after this many evaluations in a row without an improvement of the validation loss
    patience: int = 3
    #: an improvement: a loss below (1 - min_improvement) x the last improvement's loss
    min_improvement: float = 0.0
    #: ... and at least min_delta (absolute, nats per token) below it
    min_delta: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LoopResult:
    steps: int
    tokens_seen: int  # all non-pad input tokens processed
    target_tokens: int  # tokens that carried loss
    losses: list[float] = field(default_factory=list)  # per optimizer step, token-mean
    wall_s: float = 0.0
    #: early stopping: [[step, validation loss], ...] (steps counted from 1), the step whose
    #: weights the model holds at the end (``steps`` without early stopping), its loss, and the
    #: seconds spent evaluating
    val_curve: list[list[float]] = field(default_factory=list)
    best_step: int = 0
    best_val_loss: float | None = None
    val_s: float = 0.0


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


def collate(examples: Sequence[Sequence[Sequence[int]]], pad_id: int,
            device: torch.device | str = "cpu") -> dict[str, Any]:
    """Right-pad ``(input_ids, labels)`` pairs to the longest. Padding has label ``IGNORE`` and
    attention 0; ``attention_mask`` is None when nothing is padded (SDPA's causal fast path).
    Packed rows are split by ``segments`` first."""
    L = max(len(ex[0]) for ex in examples)
    ids = torch.full((len(examples), L), pad_id, dtype=torch.long)
    lab = torch.full((len(examples), L), IGNORE, dtype=torch.long)
    att = torch.zeros((len(examples), L), dtype=torch.long)
    for i, ex in enumerate(examples):
        x, y = ex[0], ex[1]
        ids[i, :len(x)] = torch.as_tensor(x, dtype=torch.long)
        lab[i, :len(y)] = torch.as_tensor(y, dtype=torch.long)
        att[i, :len(x)] = 1
    return {"input_ids": ids.to(device), "labels": lab.to(device), "n_tokens": int(att.sum()),
            "attention_mask": None if bool(att.all()) else att.to(device)}


def segments(row: Sequence[Sequence[int]]) -> list[tuple[Sequence[int], Sequence[int]]]:
    """The examples of a row: itself for a ``(input_ids, labels)`` pair; for a packed row, the
    spans where its ``position_ids`` restart at 0."""
    if len(row) < 3:
        return [(row[0], row[1])]
    starts = [k for k, p in enumerate(row[2]) if p == 0] or [0]
    if starts[0] != 0:
        raise ValueError("a packed row's position_ids must start at 0")
    ends = starts[1:] + [len(row[0])]
    return [(row[0][a:b], row[1][a:b]) for a, b in zip(starts, ends)]


_KEEP_CACHE: dict[type, bool] = {}


def _accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether the underlying HF model's forward takes ``logits_to_keep`` (peft and DDP
    wrappers pass keyword arguments through)."""
    base: Any = getattr(model, "module", model)  # DDP
    if hasattr(base, "get_base_model"):  # peft
        base = base.get_base_model()
    t = type(base)
    if t not in _KEEP_CACHE:
        try:
            _KEEP_CACHE[t] = "logits_to_keep" in inspect.signature(base.forward).parameters
        except (TypeError, ValueError):
            _KEEP_CACHE[t] = False
    return _KEEP_CACHE[t]


def token_loss_sum(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
    """Sum of next-token cross-entropy over target positions, and their count."""
    labels = batch["labels"]
    L = labels.size(1)
    kw: dict[str, Any] = {"input_ids": batch["input_ids"],
                          "attention_mask": batch.get("attention_mask"),
                          "use_cache": False}  # no KV cache: faster
    start = 0  # first logit position whose next token is a target
    tgt = (labels[:, 1:] != IGNORE)
    if _accepts_logits_to_keep(model):
        cols = tgt.any(dim=0).nonzero()
        start = int(cols[0]) if len(cols) else max(0, L - 2)
        if start > 0:
            kw["logits_to_keep"] = L - start
    logits = model(**kw).logits
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, start + 1:]
    n = int((shift_labels != IGNORE).sum())
    loss = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
        ignore_index=IGNORE, reduction="sum")
    return loss, n


def split_micro(lengths: Sequence[int], max_examples: int, max_tokens: int | None) -> list[list[int]]:
    """Split positions 0..n-1 (lengths sorted ascending) into consecutive micro-batches of at
    most ``max_examples`` examples and, if given, at most ``max_tokens`` padded tokens
    (examples x longest); an example longer than ``max_tokens`` gets a micro-batch alone."""
    out: list[list[int]] = []
    cur: list[int] = []
    for k, n in enumerate(lengths):
        if cur and (len(cur) >= max_examples
                    or (max_tokens is not None and (len(cur) + 1) * max(n, lengths[cur[-1]]) > max_tokens)):
            out.append(cur)
            cur = []
        cur.append(k)
    if cur:
        out.append(cur)
    return out


def make_optimizer(model: torch.nn.Module, cfg: LoopConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms and embeddings of size-1 dims."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, foreach=True)


def train_event(step: int, steps: int, **metrics: Any) -> ProgressEvent:
    """THE progress event after optimizer step ``step`` (0-based) of ``steps``: ``done`` is
    ``step + 1``; ``metrics`` (``loss``, ``lr``, ``tokens_seen``, ``target_tokens``,
    ``elapsed_s``) gain ``step``, ``steps`` and ``tokens_per_s``."""
    m = {"step": step, "steps": steps, **metrics}
    m["tokens_per_s"] = m["tokens_seen"] / m["elapsed_s"] if m["elapsed_s"] > 0 else 0.0
    return ProgressEvent("train", done=step + 1, total=steps, metrics=m)


def val_loss(model: torch.nn.Module, examples: Sequence[Sequence[Sequence[int]]], pad_id: int,
             batch_size: int = 16, autocast_dtype: str | None = None) -> float:
    """Token-mean next-token loss of ``examples``' target tokens (no gradients; the model is
    left in the mode it was in). Examples are batched in length order (less padding)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
    total, count = 0.0, 0
    try:
        with torch.no_grad(), attention_backends(device):
            for i in range(0, len(order), batch_size):
                mb = collate([examples[k] for k in order[i:i + batch_size]], pad_id, device)
                ctx = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                       if autocast_dtype == "bf16" else _null())
                with ctx:
                    loss, n = token_loss_sum(model, mb)
                total, count = total + float(loss), count + n
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("every target token of the validation examples is masked")
    return total / count


class _Stopper:
    """Early stopping's state: the lowest validation loss, its step and parameters."""

    def __init__(self, model: torch.nn.Module, val: Sequence[Any], cfg: LoopConfig, pad_id: int):
        self.model, self.val, self.cfg, self.pad_id = model, val, cfg, pad_id
        self.best: float | None = None
        self.best_step = 0
        self.ref: float | None = None  # the loss of the last improvement
        self.saved: dict[str, torch.Tensor] = {}
        self.bad = 0
        self.curve: list[list[float]] = []
        self.seconds = 0.0

    def due(self, done: int) -> bool:
        return done % self.cfg.eval_every == 0 or done == self.cfg.steps

    def check(self, done: int) -> tuple[float, bool]:
        """Evaluate after ``done`` steps: (the loss, whether to stop now)."""
        t0 = time.perf_counter()
        loss = val_loss(self.model, self.val, self.pad_id, self.cfg.micro_batch_size,
                        self.cfg.autocast_dtype)
        self.curve.append([done, loss])
        if self.best is None or loss < self.best:
            self.best, self.best_step = loss, done
            self.saved = {k: p.detach().clone() for k, p in self.model.named_parameters()
                          if p.requires_grad}
        if self.ref is None or loss < min(self.ref * (1.0 - self.cfg.min_improvement),
                                          self.ref - self.cfg.min_delta):
            self.ref, self.bad = loss, 0
        else:
            self.bad += 1
        self.seconds += time.perf_counter() - t0
        return loss, self.bad >= self.cfg.patience

    def restore(self) -> None:
        """Put the parameters of the lowest validation loss back into the model."""
        with torch.no_grad():
            for k, p in self.model.named_parameters():
                if k in self.saved:
                    p.copy_(self.saved[k])


def train_loop(model: torch.nn.Module, examples: Sequence[Sequence[Sequence[int]]],
               cfg: LoopConfig, pad_id: int, progress: ProgressFn | None = None,
               accelerator: Any = None,
               val_examples: Sequence[Sequence[Sequence[int]]] | None = None) -> LoopResult:
    """Run ``cfg.steps`` optimizer steps over ``examples``. Deterministic on CPU for a seed.

    ``progress`` gets ``train_event(step, cfg.steps, ...)`` after every optimizer step (with
    ``val_loss`` in its metrics after an evaluation). ``val_examples`` with ``cfg.eval_every``
    > 0: early stopping (module docstring).
    """
    if not examples:
        raise ValueError("no training examples")
    if cfg.steps < 1:
        raise ValueError("steps must be >= 1")
    if cfg.micro_batch_size < 1 or cfg.batch_size < 1:
        raise ValueError("batch_size and micro_batch_size must be >= 1")
    for i, ex in enumerate(examples):
        if len(ex[0]) != len(ex[1]) or (len(ex) > 2 and len(ex[2]) != len(ex[0])):
            raise ValueError(f"example {i}: input_ids, labels (and position_ids) differ in length")
    segs = [segments(ex) for ex in examples]
    n_tgt = [sum(n_targets(y) for _, y in seg) for seg in segs]  # no loss crosses a boundary
    max_units, max_tokens = cfg.micro_batch_size, cfg.micro_batch_tokens
    if any(len(ex) > 2 for ex in examples):  # packed: micro-batches of at most the tokens of
        max_units = 1 << 30                  # micro_batch_size rows, whatever the examples
        max_tokens = max_tokens or cfg.micro_batch_size * max(len(ex[0]) for ex in examples)
    early = bool(val_examples) and cfg.eval_every > 0
    if early and accelerator is not None:
        raise ValueError("early stopping runs in one process only (no accelerator)")
    if early and (cfg.patience < 1 or not 0 <= cfg.min_improvement < 1 or cfg.min_delta < 0):
        raise ValueError("patience must be >= 1, min_improvement in [0, 1), min_delta >= 0")
    torch.manual_seed(cfg.seed)
    rank, world = 0, 1
    if accelerator is not None:
        rank, world = accelerator.process_index, accelerator.num_processes
        if cfg.batch_size < world:
            raise ValueError(f"batch_size {cfg.batch_size} < {world} processes: every process "
                             "needs at least one example per step")
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    model.train()
    if hasattr(accelerator, "shard"):  # FSDP2 (train.distributed.Fsdp2): shard before the
        model = accelerator.shard(model)  # optimizer sees the parameters
    opt = make_optimizer(model, cfg)
    if accelerator is not None:
        model, opt = accelerator.prepare(model, opt)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, cfg))
    params = [p for p in model.parameters() if p.requires_grad]
    amp = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
           if cfg.autocast_dtype == "bf16" else None)
    res = LoopResult(steps=0, tokens_seen=0, target_tokens=0)
    stopper = _Stopper(model, val_examples, cfg, pad_id) if early and val_examples is not None else None
    t0 = time.perf_counter()
    for step, idx in enumerate(batch_order(len(examples), cfg.batch_size, cfg.steps, cfg.seed)):
        idx = sorted(idx, key=lambda i: len(examples[i][0]))
        n_target = sum(n_tgt[i] for i in idx)
        if n_target == 0:
            raise ValueError(f"step {step}: every target token of the batch is masked")
        share = idx[rank::world]  # this process's examples (all of them on one process)
        units = sorted((u for i in share for u in segs[i]), key=lambda u: len(u[0]))
        mine = split_micro([len(u[0]) for u in units], max_units, max_tokens)
        total = torch.zeros((), dtype=torch.float64)
        for j, mb_units in enumerate(mine):
            mb = collate([units[k] for k in mb_units], pad_id, device)
            ctx = amp if amp is not None else _null()
            sync = (accelerator.no_sync(model) if accelerator is not None and j < len(mine) - 1
                    else _null())
            with sync:
                with ctx, attention_backends(device):
                    loss_sum, _ = token_loss_sum(model, mb)
                scaled = loss_sum * (world / n_target)
                if accelerator is not None:
                    accelerator.backward(scaled)
                else:
                    scaled.backward()
            total += loss_sum.detach().double().cpu()
            res.tokens_seen += mb["n_tokens"]
        if world > 1:
            total = accelerator.reduce(total.to(device), reduction="sum").cpu()
        if cfg.max_grad_norm:
            if accelerator is not None:
                accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
            else:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        res.target_tokens += n_target
        res.steps += 1
        loss = float(total) / n_target
        res.losses.append(loss)
        extra: dict[str, Any] = {}
        stop = False
        if stopper is not None and stopper.due(step + 1):
            extra["val_loss"], stop = stopper.check(step + 1)
        if progress is not None:
            progress(train_event(step, cfg.steps, loss=loss, lr=sched.get_last_lr()[0],
                                 tokens_seen=res.tokens_seen, target_tokens=res.target_tokens,
                                 elapsed_s=time.perf_counter() - t0, **extra))
        if stop:
            break
    res.best_step = res.steps
    if stopper is not None:
        stopper.restore()
        res.val_curve, res.best_step = stopper.curve, stopper.best_step
        res.best_val_loss, res.val_s = stopper.best, stopper.seconds
    res.wall_s = time.perf_counter() - t0
    if world > 1:  # the whole job's tokens, not this process's share
        from .distributed import reduce_count

        res.tokens_seen = reduce_count(accelerator, res.tokens_seen)
    model.eval()
    return res


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None
