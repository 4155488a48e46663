"""Evaluate a model (optionally with an adapter) on a task; write lm-eval-shaped results.

``evaluate(model, task, adapter=None, limit=None, out=None, generator=None, chat=False,
batch_size=None, allow_template_mismatch=False, task_options=None)`` builds the task's
prompts (plain or chat-templated), generates with ``generate.Generator`` (pass
``generator=`` to reuse one loaded base across many adapters), scores with
``task.score_many`` and aggregates with ``task.aggregate``.

Template guard: when the adapter's ``train_meta.json`` (in the checkpoint dir or the cell dir
above ``ckpt/``; for a fully finetuned checkpoint passed as ``model``, that model dir's) records ``chat_template_sha`` and it differs from the sha of the template
used here (``models.template_sha(tokenizer, chat)``), evaluation is refused with an
``InputError`` naming that file, unless ``allow_template_mismatch=True``: an adapter trained
on chat-formatted prompts and scored on plain ones (or the reverse) measures the mismatch,
not the data.

With ``out``, two files are written atomically (samples first, results last, so a results
file marks a finished evaluation and Ctrl-C leaves no partial file):

- ``samples_<task>_<ts>.jsonl``: one line per item: id, prompt, response, n_tokens and the
  task's per-sample scores (``format_ok``, ``correct``, ...);
- ``results_<ts>.json`` in lm-evaluation-harness's shape: ``results`` ({task: {"metric,none":
  value, "metric_stderr,none": ...}}), ``configs``, ``versions``, ``n-shot``, ``n-samples``,
  ``config`` (model, adapter, batch size, device, limit...), ``git_hash``, library versions,
  ``chat_template_sha``, ``task_hashes`` (of the items evaluated) and ``data`` (manifest
  hashes of shipped data), ``timings``.

The returned dict is that results object plus ``metrics`` (the flat aggregate), ``samples``
(the per-sample records) and ``paths``.

Not handled: few-shot prompting (tasks build their own prompts), log-likelihood tasks,
several tasks per call (call once per task; the generator is reusable), filters other
than the task's own scorer (the filter name is always ``none``).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..io import InputError, atomic_write_json, atomic_write_jsonl, sha256_file, sha256_json

Progress = Callable[[int, int], None]


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


def _git_hash() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                           capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for pkg in ("sftscale", "torch", "transformers", "peft", "lm_eval", "vllm"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _data_hashes(task: Any, task_options: dict) -> dict:
    """Manifest sha256s of the task's shipped data, or the sha256 of a user data file."""
    out: dict[str, Any] = {}
    path = task_options.get("path") or getattr(task, "path", None)
    if path and Path(str(path)).is_file():
        out["file"] = {"path": str(path), "sha256": sha256_file(path)}
    try:
        from ..data import manifest
    except ImportError:
        return out
    names = [getattr(task, "data_name", None), task.name, task.name.replace("+", "plus"),
             task.name.split("-")[0]]
    for n in [x for x in names if x]:
        try:
            m = manifest(n)
        except (KeyError, InputError, FileNotFoundError):
            continue
        out["manifest"] = {"name": m.get("name", n), "version": m.get("version"),
                           "files": {f: v.get("sha256") for f, v in m.get("files", {}).items()}}
        break
    return out


def _lm_eval_metrics(agg: dict[str, float]) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for k, v in agg.items():
        if k == "n":
            continue
        res[f"{k},none"] = v
    return res


def evaluate(model: Any, task: Any, adapter: str | os.PathLike | None = None,
             limit: int | None = None, out: str | os.PathLike | None = None,
             generator: Any = None, chat: bool = False, batch_size: int | None = None,
             allow_template_mismatch: bool = False, task_options: dict | None = None,
             cache_dir: str | os.PathLike | None = None, device: str | None = None,
             progress: Progress | None = None) -> dict:
    """Generate, score and aggregate one task; see the module docstring."""
    from ..generation.generator import Generator, resolve_checkpoint
    from ..tasks import Task, get_task

    task_options = dict(task_options or {})
    t_start = time.time()
    if isinstance(task, Task):
        task_obj = task
    else:
        try:
            task_obj = get_task(str(task), **task_options)
        except KeyError as e:
            raise InputError(None, str(e.args[0]), field="task") from None
    if limit is not None and limit < 1:
        raise InputError(None, "limit must be at least 1", field="limit")

    if generator is None:
        generator = Generator(model, batch_size=batch_size, device=device, cache_dir=cache_dir)
    if batch_size is not None and hasattr(generator.backend, "batch_size"):
        generator.backend.batch_size = batch_size
    tok = generator.tokenizer

    eval_sha: str | None = None
    if tok is not None:
        from ..models import template_sha

        try:
            eval_sha = template_sha(tok, chat)
        except ValueError as e:
            raise InputError(None, f"--chat: {e}", field="chat") from None
    adapter_dir = resolve_checkpoint(adapter) if adapter is not None else None
    # an adapter, or a fully finetuned checkpoint given as the model itself
    guarded = adapter if adapter is not None else (
        model if isinstance(model, (str, os.PathLike)) and Path(model).is_dir() else None)
    train_sha = check_template(guarded, eval_sha, allow_template_mismatch)
    if adapter_dir is not None:
        generator.set_adapter(adapter_dir)  # no reload when loaded; re-hashed if rewritten
    elif generator.adapter is not None:
        generator.set_adapter(None)

    items = task_obj.test_items()
    n_total = len(items)
    items = items if limit is None else items[:limit]
    try:
        prompts = [task_obj.build_prompt(it, tok, chat) for it in items]
    except ValueError as e:
        raise InputError(None, str(e), field="chat") from None

    t0 = time.perf_counter()
    responses = generator.generate(prompts, task_obj.gen, progress=progress)
    t_gen = time.perf_counter() - t0
    gstats = dict(generator.last)
    t1 = time.perf_counter()
    scores = task_obj.score_many(items, responses)
    agg = task_obj.aggregate(scores)
    t_score = time.perf_counter() - t1

    ntok = gstats.pop("n_tokens", [0] * len(items))
    samples = []
    for it, p, r, s, n in zip(items, prompts, responses, scores, ntok):
        rec = {"id": it.id, "prompt": p, "response": r, "n_tokens": n}
        rec.update({k: v for k, v in s.items() if k != "id"})
        samples.append(rec)

    name = task_obj.name
    ident = generator.identity()
    gen = task_obj.gen
    desc = generator.describe()
    results: dict[str, Any] = {
        "results": {name: {"alias": name, **_lm_eval_metrics(agg)}},
        "groups": {},
        "group_subtasks": {name: []},
        "configs": {name: {
            "task": name, "output_type": "generate_until", "num_fewshot": 0,
            "generation_kwargs": {"until": list(gen.stop), "max_gen_toks": gen.max_new_tokens,
                                  "do_sample": bool(gen.temperature and gen.temperature > 0),
                                  "temperature": gen.temperature},
            "metadata": {"version": task_obj.version}, "task_options": task_options,
            "primary_metric": task_obj.primary_metric, "license": task_obj.license}},
        "versions": {name: task_obj.version},
        "n-shot": {name: 0},
        "n-samples": {name: {"original": n_total, "effective": len(items)}},
        "config": {"model": str(model) if model is not None else desc.get("model"),
                   "adapter": str(adapter_dir) if adapter_dir is not None else None,
                   "batch_size": desc.get("batch_size"), "device": desc.get("device"),
                   "dtype": desc.get("dtype"), "backend": desc.get("backend"), "limit": limit,
                   "chat": chat, "allow_template_mismatch": allow_template_mismatch,
                   "gen_cache": generator.cache is not None},
        "model_identity": ident,
        "git_hash": _git_hash(),
        "versions_of_libraries": _versions(),
        "chat_template": bool(chat),
        "chat_template_sha": eval_sha,
        "train_chat_template_sha": train_sha,
        "task_hashes": {name: sha256_json([[it.id, it.question, it.target] for it in items])},
        "data": {name: _data_hashes(task_obj, task_options)},
        "timings": {"generate_s": t_gen, "score_s": t_score,
                    "generated_tokens": gstats.get("generated_tokens", 0),
                    "tokens_per_s": gstats.get("tokens_per_s", 0.0),
                    "n_cached": gstats.get("n_cached", 0)},
        "date": t_start,
        "start_time": t_start,
        "end_time": time.time(),
        "total_evaluation_time_seconds": str(time.time() - t_start),
    }
    paths: dict[str, str] = {}
    if out is not None:
        outd = Path(out)
        ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%S.%f")
        safe = name.replace("/", "_")
        sp, rp = outd / f"samples_{safe}_{ts}.jsonl", outd / f"results_{ts}.json"
        atomic_write_jsonl(sp, samples)
        atomic_write_json(rp, results)
        paths = {"samples": str(sp), "results": str(rp)}
    return {**results, "metrics": agg, "samples": samples, "paths": paths}


__all__ = ["check_template", "evaluate", "find_train_meta"]
