"""The per-cell stage ``shift``: the cell's own responses through its checkpoint and its base.

For a cell with N > 0 it reads eval's samples file (prompt and response of every test item),
rebuilds each sequence as generation built it (``models.encode_prompt``, the prompt cut to the
model's context less ``max_new_tokens`` as ``HFBackend.generate`` cuts it; the response
re-encoded without special tokens), labels the response tokens with the task's roles
(``Task.role_spans``) and compares the two models (``compare.compare``). It writes
``cells/<key>/shift/tokens.jsonl.gz`` (one line per sample) and ``shift_meta.json`` (last).
A cell with N = 0 is the base model itself: it writes an empty tokens file and a meta file
that says so.

Models: this process's shared base (``generation.shared``, the Generator eval uses). A LoRA
checkpoint is attached to it and the base pass runs with the adapter disabled (one model in
memory); a fully finetuned checkpoint is loaded beside it (two models).

Not handled: the end-of-sequence token (the samples file holds decoded text: the EOS that
ended a response is not compared), responses whose re-encoding differs from the generated
tokens (a response is compared as the tokenizer encodes its text), recipe-search candidates
(the stage runs for the chosen cell only).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..grid.cells import Cell
from ..io import atomic_write_json, atomic_write_jsonl_gz, read_json_dict, read_jsonl
from ..rundir import layout
from ..rundir.integrity import checkpoint_dir
from ..rundir.outputs import eval_files
from ..rundir.stagespec import StageContext, StageSpec

METRICS = ("shift_shifted_share", "shift_mean_kl")
_DIGITS = 5


def _models(cell: Cell, ctx: StageContext, ckpt: Path) -> tuple[Any, Any, Any, str]:
    """(finetuned model, base model or None for "adapter disabled", tokenizer, how)."""
    from ..generation.shared import shared_generator

    dev = "auto" if cell.gpus > 1 else None
    gen = shared_generator(cell.model_ref, cell.batch_size, ctx.cache_dir, dev)
    if (ckpt / "adapter_config.json").exists():
        gen.set_adapter(ckpt)
        return gen.model, None, gen.tokenizer, "adapter disabled"
    from ..models import load_model

    gen.set_adapter(None)
    device = str(next(gen.model.parameters()).device)
    ft, _ = load_model(ckpt, device=device, dtype=next(gen.model.parameters()).dtype)
    return ft, gen.model, gen.tokenizer, "base model"


def _rows(tok: Any, task: Any, samples: list[dict], keep_len: int | None) -> tuple[list, list]:
    """(the (prompt ids, response ids) pairs, per row: id, sample, roles, scheme)."""
    from ..models import encode_prompt
    from ..tasks.roles import CONTENT, encode_response, generic_spans, token_roles

    items = {it.id: it for it in task.test_items()}
    pairs, info = [], []
    for r in samples:
        prompt, response = str(r.get("prompt", "")), str(r.get("response", ""))
        p_ids = encode_prompt(tok, prompt)
        if keep_len:
            p_ids = p_ids[-keep_len:]
        r_ids, offs = encode_response(tok, response)
        item = items.get(str(r.get("id")))
        if item is not None:
            spans, default = task.role_spans(item, response)
            scheme = task.role_scheme
        else:  # an item the task no longer has: the fallback, named as such
            spans, default, scheme = generic_spans(response), CONTENT, "generic"
        pairs.append((p_ids, r_ids))
        info.append({"id": str(r.get("id")), "sample": r.get("sample"),
                     "role": token_roles(response, offs, spans, default), "roles_by": scheme})
    return pairs, info


def shift_stage(cell: Cell, ctx: StageContext) -> None:
    """The stage's run (module docstring)."""
    t0 = time.perf_counter()
    out = ctx.out
    if cell.n == 0:
        atomic_write_jsonl_gz(out / layout.SHIFT_TOKENS, [])
        atomic_write_json(out / layout.SHIFT_META, {"skipped": "N = 0: the base model itself",
                                                    "n_items": 0, "n_tokens": 0})
        return
    from ..tasks.taskdata import study_task
    from .compare import compare

    files = eval_files(ctx.dir_of(layout.EVAL))
    if files is None:
        raise RuntimeError(f"{ctx.dir_of(layout.EVAL)}: no results_*.json and samples_*.jsonl")
    samples = read_jsonl(files[1])
    ckpt = checkpoint_dir(ctx.train_dir)
    if ckpt is None:
        raise RuntimeError(f"{ctx.train_dir}: no trained checkpoint (train_meta.json)")
    task = study_task(cell.task_name, cell.task_options, cell.max_new_tokens)
    ft, base, tok, how = _models(cell, ctx, ckpt)
    max_pos = getattr(getattr(ft, "config", None), "max_position_embeddings", None)
    keep = max(1, max_pos - task.gen.max_new_tokens) if max_pos else None
    pairs, info = _rows(tok, task, samples, keep)
    t1 = time.perf_counter()
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    shifts = compare(ft, pairs, base=base, pad_id=pad)
    t_fwd = time.perf_counter() - t1
    lines, ranks, kls = [], [], []
    for (p_ids, r_ids), meta, s in zip(pairs, info, shifts):
        ranks += s.base_rank
        kls += s.kl
        lines.append({**{k: v for k, v in meta.items() if v is not None},
                      "input_ids": list(p_ids) + list(r_ids), "response_start": len(p_ids),
                      "base_rank": s.base_rank, "kl": [round(x, _DIGITS) for x in s.kl],
                      "base_logprob": [round(x, _DIGITS) for x in s.base_logprob],
                      "ft_logprob": [round(x, _DIGITS) for x in s.ft_logprob]})
    atomic_write_jsonl_gz(out / layout.SHIFT_TOKENS, lines)
    n = len(ranks)
    atomic_write_json(out / layout.SHIFT_META, {
        "n_items": len(lines), "n_tokens": n, "base": how,
        "checkpoint": layout.rel(ctx.run_dir, ckpt) if _inside(ckpt, ctx.run_dir) else str(ckpt),
        "roles_by": sorted({m["roles_by"] for m in info}),
        "metrics": {"shift_shifted_share": sum(r > 3 for r in ranks) / n if n else None,
                    "shift_mean_kl": sum(kls) / n if n else None},
        "seconds": {"total": round(time.perf_counter() - t0, 3), "forward": round(t_fwd, 3)}})


def _inside(p: Path, root: Path) -> bool:
    try:
        p.resolve().relative_to(Path(root).resolve())
        return True
    except ValueError:
        return False


def shift_metrics(cell: Cell, stage_dir: Path) -> dict[str, Any]:
    """The stage's rows of the metrics table: the shifted share and the mean KL (none for
    N = 0)."""
    meta = read_json_dict(stage_dir / layout.SHIFT_META)
    m = {k: v for k, v in (meta.get("metrics") or {}).items() if k in METRICS and v is not None}
    return {"metrics": m} if m else {}


def shift_seconds(stage_dir: Path) -> float | None:
    """The seconds the stage recorded."""
    v = (read_json_dict(stage_dir / layout.SHIFT_META).get("seconds") or {}).get("total")
    return float(v) if isinstance(v, (int, float)) else None


SHIFT_SPEC = StageSpec(name=layout.SHIFT, run=shift_stage, done=(layout.SHIFT_META,),
                       hashed=(layout.SHIFT_TOKENS, layout.SHIFT_META), needs=(layout.EVAL,),
                       collect=shift_metrics, seconds=shift_seconds)

__all__ = ["METRICS", "SHIFT_SPEC", "shift_metrics", "shift_stage"]
