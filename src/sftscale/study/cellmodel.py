"""The model a cell's evaluation stages (eval, xeval) run: ``cell_generator(cell, ctx)``.

Returns ``(model, adapter, generator, train_meta)``, the arguments ``evaluation.evaluate``
takes, and the cell's ``train_meta.json``:

- N = 0: the worker's shared base model (``generation.shared``), no adapter;
- a LoRA adapter: the same shared base, with the adapter (``evaluate`` attaches it);
- a fully finetuned checkpoint: a model of its own, loaded once per worker for both stages
  (keyed by its ``train_meta.json``'s version, so a cell retrained in the same process is
  loaded again), with the chat-template guard applied here, since ``evaluate`` only checks
  adapters.

With ``ctx.share_generator`` off, every call loads its own Generator. A model granted several
GPUs is spread over them (``device="auto"``).

Not handled: several models held at once per worker (``generation.shared`` keeps one).
"""

from __future__ import annotations

import json
from typing import Any

from ..grid.cells import Cell
from ..rundir import layout
from ..rundir.stagespec import StageContext


def cell_generator(cell: Cell, ctx: StageContext) -> tuple[str, str | None, Any, dict]:
    """(model argument, adapter or None, Generator, train_meta) for the cell's checkpoint."""
    from ..generation.generator import Generator
    from ..generation.shared import file_version, shared_generator

    meta = json.loads((ctx.train_dir / layout.TRAIN_META).read_text())
    ckpt = ctx.train_dir / (meta.get("checkpoint") or layout.CKPT)
    if cell.n > 0 and not ckpt.is_dir():
        raise RuntimeError(f"{ctx.train_dir}: trained cell without its checkpoint ({ckpt.name}/)")
    dev = "auto" if cell.gpus > 1 else None
    if cell.n > 0 and not (ckpt / "adapter_config.json").exists():
        from ..evaluation.run import check_template
        from ..models import template_sha

        version = file_version(ctx.train_dir / layout.TRAIN_META)
        gen = (shared_generator(str(ckpt), cell.batch_size, ctx.cache_dir, dev, version)
               if ctx.share_generator else
               Generator(str(ckpt), batch_size=cell.batch_size, cache_dir=ctx.cache_dir, device=dev))
        check_template(ckpt, template_sha(gen.tokenizer, cell.chat), cell.allow_template_mismatch)
        return str(ckpt), None, gen, meta
    gen = (shared_generator(cell.model_ref, cell.batch_size, ctx.cache_dir, dev) if ctx.share_generator
           else Generator(cell.model_ref, batch_size=cell.batch_size, cache_dir=ctx.cache_dir, device=dev))
    return cell.model_ref, str(ckpt) if cell.n > 0 else None, gen, meta


__all__ = ["cell_generator"]
