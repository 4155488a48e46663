"""Evaluate a model (optionally with an adapter) on a task; write lm-eval-shaped results.

``evaluate(model, task, adapter=None, limit=None, out=None, generator=None, chat=False,
batch_size=None, allow_template_mismatch=False, task_options=None, cache_dir=None,
device=None, progress=None)`` resolves the task and the generator, guards the prompt
template, builds the task's prompts (plain or chat-templated), generates with
``sftscale.generation.Generator`` (pass ``generator=`` to reuse one loaded base across many
adapters; ``batch_size`` is applied to it), scores with ``task.score_many``, aggregates with
``task.aggregate`` and, with ``out``, writes the samples and results files
(``evaluation.results``). ``progress`` receives the generator's
``ProgressEvent("generate", done, total)`` events unchanged.

Template guard: when the adapter's ``train_meta.json`` (in the checkpoint dir or the cell dir
above ``ckpt/``; for a fully finetuned checkpoint passed as ``model``, that model dir's)
records ``chat_template_sha`` and it differs from the sha of the template used here
(``models.template_sha(tokenizer, chat)``), evaluation is refused with an ``InputError``
naming that file, unless ``allow_template_mismatch=True``: an adapter trained on
chat-formatted prompts and scored on plain ones (or the reverse) measures the mismatch, not
the data.

With ``out``, two files are written atomically (samples first, results last, so a results
file marks a finished evaluation and Ctrl-C leaves no partial file):
``samples_<task>_<ts>.jsonl`` (one line per item: id, prompt, response, n_tokens and the
task's per-sample scores) and ``results_<ts>.json`` in lm-evaluation-harness's shape plus
provenance (``config``, ``git_hash``, library versions, ``chat_template_sha``,
``task_hashes``, ``data``, ``timings``; the keys are listed in ``evaluation.results``).

The returned dict is that results object plus ``metrics`` (the flat aggregate), ``samples``
(the per-sample records) and ``paths``.

Not handled: few-shot prompting (tasks build their own prompts), log-likelihood tasks,
several tasks per call (call once per task; the generator is reusable), filters other
than the task's own scorer (the filter name is always ``none``), progress of scoring.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .results import EvalRecord, results_object, sample_records, write_files
from ..events import ProgressFn
from ..generation import Generator, resolve_checkpoint
from ..io import InputError
from ..tasks.base import Task


def find_train_meta(adapter: str | os.PathLike) -> Path | None:
    """``train_meta.json`` of a checkpoint: in the dir itself or the cell dir above it."""
    p = Path(adapter)
    for cand in (p / "train_meta.json", p.parent / "train_meta.json",
                 p / "ckpt" / "train_meta.json"):
        if cand.is_file():
            return cand
    return None


def check_template(adapter: str | os.PathLike | None, eval_sha: str | None,
                   allow_mismatch: bool = False) -> str | None:
    """Raise InputError when the adapter was trained under another prompt template.

    Returns the training-time sha (or None when unknown)."""
    if adapter is None:
        return None
    meta_path = find_train_meta(adapter)
    if meta_path is None:
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(meta_path, f"not valid JSON ({e.msg})", line=e.lineno) from None
    train_sha = meta.get("chat_template_sha") if isinstance(meta, dict) else None
    if train_sha and eval_sha and train_sha != eval_sha and not allow_mismatch:
        raise InputError(meta_path, f"the adapter was trained with prompt template sha "
                         f"{train_sha[:12]}… but this evaluation uses {eval_sha[:12]}… "
                         "(chat vs plain prompts, or another chat template); use the same "
                         "--chat setting as training, or pass --allow-template-mismatch",
                         field="chat_template_sha")
    return train_sha


def evaluate(model: Any, task: Any, adapter: str | os.PathLike | None = None,
             limit: int | None = None, out: str | os.PathLike | None = None,
             generator: Any = None, chat: bool = False, batch_size: int | None = None,
             allow_template_mismatch: bool = False, task_options: dict | None = None,
             cache_dir: str | os.PathLike | None = None, device: str | None = None,
             progress: ProgressFn | None = None) -> dict:
    """Generate, score and aggregate one task; see the module docstring."""
    task_options = dict(task_options or {})
    t_start = time.time()
    task_obj = _resolve_task(task, task_options)
    if limit is not None and limit < 1:
        raise InputError(None, "limit must be at least 1", field="limit")
    if generator is None:
        generator = Generator(model, batch_size=batch_size, device=device, cache_dir=cache_dir)
    if batch_size is not None:
        generator.batch_size = batch_size
    tok = generator.tokenizer
    eval_sha = _template_sha(tok, chat)
    adapter_dir, train_sha = _use_adapter(generator, model, adapter, eval_sha,
                                          allow_template_mismatch)
    items = task_obj.test_items()
    n_total = len(items)
    items = items if limit is None else items[:limit]
    try:
        prompts = [task_obj.build_prompt(it, tok, chat) for it in items]
    except ValueError as e:
        raise InputError(None, str(e), field="chat") from None

    responses, scores, agg, timings, ntok = _generate_and_score(generator, task_obj, items,
                                                                prompts, progress)
    samples = sample_records(items, prompts, responses, scores, ntok)
    ident = generator.identity()
    desc = generator.describe()
    config = {"model": str(model) if model is not None else desc.get("model"),
              "adapter": str(adapter_dir) if adapter_dir is not None else None,
              "batch_size": desc.get("batch_size"), "device": desc.get("device"),
              "dtype": desc.get("dtype"), "backend": desc.get("backend"), "limit": limit,
              "chat": chat, "allow_template_mismatch": allow_template_mismatch,
              "gen_cache": generator.cache is not None}
    results = results_object(EvalRecord(
        task=task_obj, task_options=task_options, items=items, n_total=n_total, config=config,
        identity=ident, chat=chat, eval_sha=eval_sha, train_sha=train_sha, metrics=agg,
        timings=timings, t_start=t_start))
    paths = write_files(out, task_obj.name, samples, results) if out is not None else {}
    return {**results, "metrics": agg, "samples": samples, "paths": paths}


def _resolve_task(task: Any, task_options: dict) -> Task:
    """A Task object as given, or the registered task of that name built with the options."""
    if isinstance(task, Task):
        return task
    from ..tasks import get_task

    return get_task(str(task), **task_options)  # an unknown name or option: InputError


def _template_sha(tok: Any, chat: bool) -> str | None:
    """The prompt template's sha (None for a backend without a local tokenizer)."""
    if tok is None:
        return None
    from ..models import template_sha

    try:
        return template_sha(tok, chat)
    except ValueError as e:
        raise InputError(None, f"--chat: {e}", field="chat") from None


def _use_adapter(generator: Any, model: Any, adapter: str | os.PathLike | None,
                 eval_sha: str | None, allow_mismatch: bool) -> tuple[Path | None, str | None]:
    """Guard the template, then switch the generator to ``adapter`` (or the bare base).

    Returns the adapter's weights dir and the training-time template sha."""
    adapter_dir = resolve_checkpoint(adapter) if adapter is not None else None
    # an adapter, or a fully finetuned checkpoint given as the model itself
    guarded = adapter if adapter is not None else (
        model if isinstance(model, (str, os.PathLike)) and Path(model).is_dir() else None)
    train_sha = check_template(guarded, eval_sha, allow_mismatch)
    if adapter_dir is not None:
        generator.set_adapter(adapter_dir)  # no reload when loaded; re-hashed if rewritten
    elif generator.adapter is not None:
        generator.set_adapter(None)
    return adapter_dir, train_sha


def _generate_and_score(generator: Any, task: Task, items: list, prompts: list[str],
                        progress: ProgressFn | None) -> tuple[list, list, dict, dict, list]:
    """(responses, per-sample scores, aggregate, timings, generated tokens per item)."""
    t0 = time.perf_counter()
    responses = generator.generate(prompts, task.gen, progress=progress)
    t_gen = time.perf_counter() - t0
    gstats = dict(generator.last)
    t1 = time.perf_counter()
    scores = task.score_many(items, responses)
    agg = task.aggregate(scores)
    t_score = time.perf_counter() - t1
    timings = {"generate_s": t_gen, "score_s": t_score,
               "generated_tokens": gstats.get("generated_tokens", 0),
               "tokens_per_s": gstats.get("tokens_per_s", 0.0),
               "n_cached": gstats.get("n_cached", 0)}
    return responses, scores, agg, timings, gstats.pop("n_tokens", [0] * len(items))


__all__ = ["check_template", "evaluate", "find_train_meta"]
