"""A thin adapter over TRL 1.x's ``SFTTrainer``: the comparison backend (``train_backend="trl"``).

It trains on the SAME pre-tokenised rows as our loop (``input_ids`` and ``labels`` with
``IGNORE`` on prompt tokens, so TRL's own prompt/completion tokenisation and masking are bypassed and
both backends see identical tokens), with the same effective batch (``micro_batch_size``
per device x gradient accumulation), steps, learning rate, warm-up and schedule. TRL (via
transformers' Trainer) normalises the accumulated loss by the number of target tokens in the
whole effective batch, as our loop does.

Differences that remain: the Trainer's data order (its own seeded sampler, not ours), its
AdamW puts weight decay on every parameter except biases and norms (ours: same rule), and
its warm-up counts steps the same way; so losses agree in distribution, not bit for bit.

Not handled: packed rows (TRL's packing is its own; ``packing=True`` with this backend is an
error), multi-GPU launching (use ``accelerate launch`` on a script that calls this).
"""

from __future__ import annotations

import tempfile
import time
from typing import Any, Sequence

from ..events import ProgressFn
from .examples import n_targets
from .loop import LoopResult, train_event
from .recipe import Recipe


def train_trl(model: Any, tok: Any, rows: Sequence[Sequence[Sequence[int]]], recipe: Recipe,
              steps: int, warmup_steps: int, seed: int, progress: ProgressFn | None = None,
              bf16: bool = False) -> LoopResult:
    """Train ``model`` in place with SFTTrainer for ``steps`` optimizer steps; ``progress``
    gets the loop's ``train_event`` after each (``lr`` NaN, ``target_tokens`` 0: not reported)."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    if any(len(r) > 2 for r in rows):
        raise ValueError("the trl backend does not take packed rows; set packing: false")
    micro = min(recipe.micro_batch_size, recipe.batch_size)
    if recipe.batch_size % micro:
        raise ValueError(f"trl backend: batch_size {recipe.batch_size} must be a multiple of "
                         f"micro_batch_size {micro}")
    ds = Dataset.from_dict({"input_ids": [list(r[0]) for r in rows],
                            "labels": [list(r[1]) for r in rows]})
    res = LoopResult(steps=0, tokens_seen=0, target_tokens=0)
    t0 = time.perf_counter()

    span: dict[str, float | None] = {"begin": None, "end": None}

    class _CB(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            span["begin"] = time.perf_counter()

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            span["end"] = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                res.losses.append(float(logs["loss"]))

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            res.steps = state.global_step
            res.tokens_seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
            if progress is not None:
                progress(train_event(state.global_step - 1, steps,
                                     loss=res.losses[-1] if res.losses else float("nan"),
                                     lr=float("nan"), tokens_seen=res.tokens_seen,
                                     target_tokens=0, elapsed_s=time.perf_counter() - t0))

    with tempfile.TemporaryDirectory(prefix="sftscale-trl-") as tmp:
        args = SFTConfig(
            output_dir=tmp, max_steps=steps,
            per_device_train_batch_size=micro,
            gradient_accumulation_steps=recipe.batch_size // micro,
            learning_rate=recipe.lr, lr_scheduler_type=recipe.schedule,
            warmup_steps=warmup_steps, weight_decay=recipe.weight_decay,
            adam_beta1=recipe.betas[0], adam_beta2=recipe.betas[1],
            max_grad_norm=recipe.max_grad_norm or 0.0, seed=seed, data_seed=seed,
            logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True,
            completion_only_loss=True, max_length=recipe.max_length, packing=False,
            bf16=bf16, use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0, include_num_input_tokens_seen="non_padding",
            dataset_num_proc=None,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                             callbacks=[_CB()])
        trainer.train()
    # like our loop's wall_s: the training steps only (not the trainer's construction)
    if span["begin"] is not None and span["end"] is not None:
        res.wall_s = span["end"] - span["begin"]
    else:
        res.wall_s = time.perf_counter() - t0
    # estimate (the Trainer does not report it): mean targets per row x rows processed
    per_row = sum(n_targets(r[1]) for r in rows) / len(rows)
    res.target_tokens = round(per_row * res.steps * recipe.batch_size)
    model.eval()
    return res


__all__ = ["train_trl"]
