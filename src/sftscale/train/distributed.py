"""Several training processes for one cell: the process-group side of ``train_cell``.

A cell trains in several processes when it was started by torchrun (``sftscale.train.launch``),
``accelerate launch`` or Ray Train (``WORLD_SIZE > 1`` in the environment). ``dist_context``
then returns the object the loop (``loop.train_loop(accelerator=...)``) talks to:

- ``ddp``: an ``accelerate.Accelerator`` (``mixed_precision="no"``: the loop autocasts itself);
  accelerate creates the process group (NCCL on GPUs, gloo on CPUs) unless Ray Train already
  did, and wraps the model in torch's DistributedDataParallel. Every rank holds the weights.
- ``fsdp``: ``Fsdp2``, torch's FSDP2 (``torch.distributed.fsdp.fully_shard``) applied to every
  transformer block (the classes the model lists in ``_no_split_modules``) and then to the
  root, so each rank holds 1/W of the weights, gradients and optimizer state. It offers the
  few Accelerator methods the loop uses (``shard`` runs before the optimizer is built).

Both average gradients over ranks, so the loop scales its loss by ``W`` (see loop.py); the
update equals the one-process update up to floating-point rounding (tests/test_distributed.py
checks the per-step losses of 2 gloo processes against 1 process, DDP and FSDP).

``full_state_dict(model, ctx)`` is the whole model's state dict on rank 0 (a collective: every
rank must call it) for saving the usual checkpoint; ``None`` means "save the model as is".

Not handled: loading a model too big for one host's RAM (every rank loads the whole model on
the CPU before sharding; rank-0 loading with meta-device ranks is not done), FSDP2's
``MixedPrecisionPolicy`` (bf16 comes from the loop's autocast), activation checkpointing,
CPU offload of shards, hybrid sharding across nodes, tensor or pipeline parallelism.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

SHARDINGS = ("none", "ddp", "fsdp")


def world_size() -> int:
    """Processes of this cell's training job (1 when not launched)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def dist_context(sharding: str) -> Any:
    """None in a one-process run; else the loop's distributed helper for ``sharding`` (a
    launched run with ``sharding: none`` is data-parallel: ``accelerate launch`` of a plain
    recipe trains with DDP, as it always has)."""
    if world_size() <= 1:
        return None
    if sharding == "fsdp":
        return Fsdp2()
    import torch
    from accelerate import Accelerator

    # cpu=True is what makes accelerate use gloo on a machine without GPUs (without it, it
    # silently runs W independent one-process trainings)
    return Accelerator(mixed_precision="no", cpu=not torch.cuda.is_available())


class Fsdp2:
    """torch FSDP2 behind the part of the ``accelerate.Accelerator`` interface the loop uses."""

    def __init__(self) -> None:
        import torch
        import torch.distributed as dist

        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            self.device = torch.device("cuda", local)
        else:
            self.device = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.process_index = dist.get_rank()
        self.num_processes = dist.get_world_size()
        self.is_main_process = self.process_index == 0

    def shard(self, model: Any) -> Any:
        """``fully_shard`` every transformer block, then the root (in place; returns it)."""
        from torch.distributed.fsdp import fully_shard

        blocks: set[str] = set()
        for m in model.modules():
            blocks.update(getattr(m, "_no_split_modules", None) or ())
        for m in list(model.modules()):
            if type(m).__name__ in blocks and m is not model:
                fully_shard(m)
        fully_shard(model)
        return model

    def prepare(self, model: Any, opt: Any) -> tuple[Any, Any]:
        return model, opt

    @contextlib.contextmanager
    def no_sync(self, model: Any) -> Iterator[None]:
        """Accumulate this micro-batch's gradients without reduce-scatter."""
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)

    def backward(self, loss: Any) -> None:
        loss.backward()

    def clip_grad_norm_(self, params: Any, max_norm: float) -> Any:
        import torch

        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def reduce(self, t: Any, reduction: str = "sum") -> Any:
        import torch.distributed as dist

        if reduction != "sum":
            raise ValueError("only reduction='sum' is used")
        dist.all_reduce(t)
        return t

    def wait_for_everyone(self) -> None:
        import torch.distributed as dist

        dist.barrier()


def full_state_dict(model: Any, ctx: Any) -> dict | None:
    """The whole (unsharded) state dict on rank 0, ``{}`` on other ranks, for an FSDP2 model;
    None for anything else (save the model as it is). Every rank must call it."""
    if not isinstance(ctx, Fsdp2):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                              cpu_offload=True))
    first: dict[int, str] = {}  # tied weights (lm_head = embeddings): keep the first name
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            sd.pop(name, None)  # as save_pretrained does for an unsharded model
        else:
            first[id(p)] = name
    return sd


def reduce_count(ctx: Any, n: int) -> int:
    """``n`` summed over the ranks (``n`` itself without ``ctx``)."""
    if ctx is None:
        return n
    import torch

    dev = ctx.device if getattr(ctx.device, "type", "cpu") == "cuda" else "cpu"
    return int(ctx.reduce(torch.tensor(n, dtype=torch.int64, device=dev), reduction="sum"))


__all__ = ["Fsdp2", "SHARDINGS", "dist_context", "full_state_dict", "reduce_count", "world_size"]
