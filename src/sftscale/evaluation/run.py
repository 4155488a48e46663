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

Checks before anything is loaded (``evaluation.checkpoints``): ``adapter`` may be a
checkpoint, a ``train_cell`` output or a study cell dir; a checkpoint whose recorded base is
not ``model`` is refused (so the results file's ``config.model`` is always the model that was
evaluated), and weights that do not open are "damaged checkpoint weights".

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

Sampling (``sampling={"temperature", "top_p", "n", "seed"}``, each optional; default the
task's greedy GenSpec): ``n`` samples per item, each seeded on its own
(``generation.generator``); sample records carry ``sample`` (0..n-1) and the results file's
``config.sampling`` records the four values (greedy runs write neither, so their files are
unchanged). Aggregates over n samples: the task's own (pass@k for code tasks: pass@1, @10,
@100 up to n, evalplus' estimator), else the mean over all samples with the standard error
of the per-item means (``tasks.base.mean_metrics``).

Few-shot (``num_fewshot`` k > 0): the task's ``fewshot_prompts`` (examples from its training
pool, one shared draw by ``fewshot_seed``, or lm-eval's context and sampler for gsm8k;
``fewshot_exclude`` ids are never used as examples: a study passes the cell's finetuning
subset); refused with an InputError for tasks without a pool, with ``chat``, and when the k
examples with the prompt and ``max_new_tokens`` exceed the model's context (the message names
the longest k that fits: ``tasks.fewshot``). The results file's ``n-shot`` and ``configs.num_fewshot`` say k.

Not handled: few-shot with chat templates, log-likelihood tasks,
several tasks per call (call once per task; the generator is reusable), filters other
than the task's own scorer (the filter name is always ``none``), progress of scoring.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from ..events import ProgressFn
from ..generation import Generator, resolve_checkpoint
from ..io import InputError
from ..tasks.base import GenSpec, Task
from .checkpoints import check_base, check_weights, find_train_meta, locate_adapter
from .results import EvalRecord, results_object, sample_records, write_files


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


def evaluate(model: Any, task: str | Task, adapter: str | os.PathLike | None = None,
             limit: int | None = None, out: str | os.PathLike | None = None,
             generator: Generator | None = None, chat: bool = False, batch_size: int | None = None,
             allow_template_mismatch: bool = False, task_options: dict | None = None,
             cache_dir: str | os.PathLike | None = None, device: str | None = None,
             progress: ProgressFn | None = None, sampling: dict | None = None,
             num_fewshot: int = 0, fewshot_exclude: Sequence[str] = (),
             fewshot_seed: int | None = None) -> dict:
    """Generate, score and aggregate one task; see the module docstring."""
    task_options = dict(task_options or {})
    t_start = time.time()
    task_obj = _resolve_task(task, task_options)
    if limit is not None and limit < 1:
        raise InputError(None, "limit must be at least 1", field="limit")
    spec = gen_spec(task_obj.gen, sampling)
    if num_fewshot < 0 or (num_fewshot > 0 and task_obj.fewshot_pool() is None):
        raise InputError(None, f"task {task_obj.name!r} has no few-shot pool (no training "
                         "pool; give it train_data): only 0 is possible" if num_fewshot > 0
                         else "must be at least 0",
                         field="num_fewshot")
    if num_fewshot > 0 and chat:
        raise InputError(None, "few-shot contexts are built for plain prompts only (lm-eval's "
                         "plain-text context); drop --chat or use num_fewshot 0",
                         field="num_fewshot")
    if adapter is not None:
        adapter = locate_adapter(adapter)
        check_base(model, adapter)
        check_weights(resolve_checkpoint(adapter), field="adapter")
    if generator is None:
        if isinstance(model, (str, os.PathLike)) and Path(model).is_dir():
            check_weights(model, field="model")
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
        prompts = (task_obj.fewshot_prompts(items, num_fewshot, fewshot_exclude, fewshot_seed)
                   if num_fewshot else [task_obj.build_prompt(it, tok, chat) for it in items])
        if num_fewshot and tok is not None:
            from ..models import encode_prompt
            from ..tasks.fewshot import check_fewshot_fits

            # counting a too-long prompt is the point here: no "longer than the maximum" warning
            getattr(tok, "deprecation_warnings", {})[
                "sequence-length-is-longer-than-the-specified-maximum"] = True
            check_fewshot_fits(task_obj, items, num_fewshot, lambda p: len(encode_prompt(tok, p)),
                               context_length(generator.model), fewshot_exclude, fewshot_seed,
                               field="num_fewshot")
    except ValueError as e:
        raise InputError(None, str(e), field="num_fewshot" if num_fewshot else "chat") from None
    rows = [(it, p, s) for it, p in zip(items, prompts) for s in range(spec.n)]
    responses, scores, agg, timings, ntok = _generate_and_score(generator, task_obj, spec, rows,
                                                                progress)
    samples = sample_records([r[0] for r in rows], [r[1] for r in rows], responses, scores, ntok)
    ident = generator.identity()
    desc = generator.describe()
    config = {"model": str(model) if model is not None else desc.get("model"),
              "adapter": str(adapter_dir) if adapter_dir is not None else None,
              "batch_size": desc.get("batch_size"), "device": desc.get("device"),
              "dtype": desc.get("dtype"), "backend": desc.get("backend"), "limit": limit,
              "chat": chat, "allow_template_mismatch": allow_template_mismatch,
              "gen_cache": generator.cache is not None}
    if spec.sampling or spec.n > 1:  # greedy results files stay as they were
        config["sampling"] = {"temperature": spec.temperature, "top_p": spec.top_p, "n": spec.n,
                              "seed": spec.seed}
    if num_fewshot:
        config.update(num_fewshot=num_fewshot, fewshot_seed=(task_obj.fewshot_seed
                                                             if fewshot_seed is None else fewshot_seed),
                      fewshot_excluded=len(set(fewshot_exclude)))
    results = results_object(EvalRecord(
        task=task_obj, task_options=task_options, items=items, n_total=n_total, config=config,
        identity=ident, chat=chat, eval_sha=eval_sha, train_sha=train_sha, metrics=agg,
        timings=timings, t_start=t_start, gen=spec, num_fewshot=num_fewshot))
    paths = write_files(out, task_obj.name, samples, results) if out is not None else {}
    return {**results, "metrics": agg, "samples": samples, "paths": paths}


def context_length(model: Any) -> int | None:
    """The model's context window in tokens (``max_position_embeddings``; None: unknown, e.g. a
    remote backend)."""
    cfg = getattr(model, "config", None)
    if cfg is not None and hasattr(cfg, "get_text_config"):
        cfg = cfg.get_text_config()
    n = getattr(cfg, "max_position_embeddings", None)
    return int(n) if isinstance(n, int) and n > 0 else None


def _resolve_task(task: str | Task, task_options: dict) -> Task:
    """A Task object as given, or the registered task of that name built with the options."""
    if isinstance(task, Task):
        return task
    from ..tasks import get_task

    return get_task(str(task), **task_options)  # an unknown name or a bad option: InputError


def _template_sha(tok: Any, chat: bool) -> str | None:
    """The prompt template's sha (None for a backend without a local tokenizer)."""
    if tok is None:
        return None
    from ..models import template_sha

    try:
        return template_sha(tok, chat)
    except ValueError as e:
        raise InputError(None, f"--chat: {e}", field="chat") from None


def _use_adapter(generator: Generator, model: Any, adapter: str | os.PathLike | None,
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


def gen_spec(base: GenSpec, sampling: dict | None) -> GenSpec:
    """The task's GenSpec with ``sampling`` (temperature, top_p, n, seed) applied and checked."""
    over = {k: v for k, v in (sampling or {}).items() if v is not None}
    bad = set(over) - {"temperature", "top_p", "n", "seed"}
    if bad:
        raise InputError(None, f"unknown sampling option(s) {sorted(bad)}", field="sampling")
    checks = {"temperature": (lambda v: v >= 0, "must be >= 0 (0 is greedy)"),
              "top_p": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
              "n": (lambda v: isinstance(v, int) and v >= 1, "must be an integer >= 1"),
              "seed": (lambda v: isinstance(v, int), "must be an integer")}
    for k, v in over.items():
        ok, why = checks[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not ok(v):
            raise InputError(None, f"{why} (got {v!r})", field=k.replace("_", "-"))
    return replace(base, **over) if over else base


def _generate_and_score(generator: Generator, task: Task, spec: GenSpec, rows: list,
                        progress: ProgressFn | None) -> tuple[list, list, dict, dict, list]:
    """(responses, per-sample scores, aggregate, timings, generated tokens per row) for the
    rows (item, prompt, sample index); several samples per item carry ``sample`` when
    scored, so the aggregate knows (``tasks.base.mean_metrics``, pass@k)."""
    items, prompts, idx = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    t0 = time.perf_counter()
    responses = generator.generate(prompts, spec, progress=progress,
                                   **({"samples": idx} if spec.n > 1 else {}))
    t_gen = time.perf_counter() - t0
    gstats = dict(generator.last)
    t1 = time.perf_counter()
    scores = task.score_many(items, responses)
    if spec.n > 1:
        for sc, i in zip(scores, idx):
            sc["sample"] = i
    agg = task.aggregate(scores)
    t_score = time.perf_counter() - t1
    timings = {"generate_s": t_gen, "score_s": t_score,
               "generated_tokens": gstats.get("generated_tokens", 0),
               "tokens_per_s": gstats.get("tokens_per_s", 0.0),
               "n_cached": gstats.get("n_cached", 0)}
    return responses, scores, agg, timings, gstats.pop("n_tokens", [0] * len(items))


__all__ = ["check_template", "evaluate", "find_train_meta"]
