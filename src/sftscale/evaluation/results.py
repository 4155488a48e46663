"""The files one evaluation writes: ``samples_<task>_<ts>.jsonl`` and ``results_<ts>.json``.

- ``sample_records``: one record per item (per sample when several): id, prompt, response, n_tokens and the task's
  per-sample scores (``format_ok``, ``correct``, ...);
- ``results_object``: lm-evaluation-harness's shape: ``results`` ({task: {"metric,none":
  value, "metric_stderr,none": ...}}), ``configs``, ``versions``, ``n-shot``, ``n-samples``,
  ``config`` (model, adapter, batch size, device, limit...), ``git_hash``, library versions
  (``provenance.versions``), ``chat_template_sha``, ``task_hashes`` (of the items evaluated),
  ``data`` (manifest hashes of shipped data), ``timings``;
- ``write_files``: both files, atomically, samples first and results last, so a results file
  marks a finished evaluation and Ctrl-C leaves no partial file.

Not handled: reading these files back (``study``, ``knowledge`` and ``report`` read them),
several tasks per results file, filters other than ``none``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence, cast

from ..io import InputError, atomic_write_json, atomic_write_jsonl, sha256_file, sha256_json
from ..provenance import git_hash, versions
from ..schema import SampleRecord
from ..tasks.base import GenSpec, Item, Task


@dataclass
class EvalRecord:
    """What one ``evaluate`` call did, as the results file reports it.

    ``config`` is the results file's ``config`` block; ``n_total`` the task's item count
    before ``limit``; ``metrics`` the task's flat aggregate; ``timings`` seconds and token
    counts; ``t_start`` the wall-clock start (``time.time()``)."""

    task: Task
    task_options: dict
    items: list[Item]
    n_total: int
    config: dict
    identity: dict
    chat: bool
    eval_sha: str | None
    train_sha: str | None
    metrics: dict
    timings: dict
    t_start: float
    gen: GenSpec | None = None  # the GenSpec used (default: the task's)
    num_fewshot: int = 0


def data_hashes(task: Task, task_options: dict) -> dict:
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


def lm_eval_metrics(agg: dict[str, float]) -> dict[str, Any]:
    """``{"accuracy": x, "n": k}`` -> ``{"accuracy,none": x}`` (lm-eval's filter suffix)."""
    return {f"{k},none": v for k, v in agg.items() if k != "n"}


def sample_records(items: list, prompts: list[str], responses: list[str], scores: Sequence[Mapping[str, Any]],
                   n_tokens: list[int]) -> list[SampleRecord]:
    """One samples-file record per item and sample (``schema.SampleRecord``: the task's scores,
    each a ``schema.ScoreRecord`` plus the task's own fields, after the generation fields;
    ``sample``, the sample index, after ``id`` when several samples were drawn)."""
    samples = []
    for it, p, r, s, n in zip(items, prompts, responses, scores, n_tokens):
        rec: dict[str, Any] = {"id": it.id, **({"sample": s["sample"]} if "sample" in s else {}),
                               "prompt": p, "response": r, "n_tokens": n}
        rec.update({k: v for k, v in s.items() if k != "id"})
        samples.append(cast(SampleRecord, rec))
    return samples


def results_object(rec: EvalRecord) -> dict[str, Any]:
    """The results file's content (lm-eval's shape plus sftscale's provenance keys)."""
    task, name, gen = rec.task, rec.task.name, rec.gen or rec.task.gen
    kwargs = {"until": list(gen.stop), "max_gen_toks": gen.max_new_tokens,
              "do_sample": bool(gen.temperature and gen.temperature > 0),
              "temperature": gen.temperature}
    if gen.sampling or gen.n > 1:  # greedy results files stay as they were
        kwargs.update(top_p=gen.top_p, seed=gen.seed)
    return {
        "results": {name: {"alias": name, **lm_eval_metrics(rec.metrics)}},
        "groups": {},
        "group_subtasks": {name: []},
        "configs": {name: {
            "task": name, "output_type": "generate_until", "num_fewshot": rec.num_fewshot,
            **({"repeats": gen.n} if gen.n > 1 else {}),
            "generation_kwargs": kwargs,
            "metadata": {"version": task.version}, "task_options": rec.task_options,
            "primary_metric": task.primary_metric, "license": task.license}},
        "versions": {name: task.version},
        "n-shot": {name: rec.num_fewshot},
        "n-samples": {name: {"original": rec.n_total, "effective": len(rec.items)}},
        "config": rec.config,
        "model_identity": rec.identity,
        "git_hash": git_hash(),
        "versions_of_libraries": versions(),
        "chat_template": bool(rec.chat),
        "chat_template_sha": rec.eval_sha,
        "train_chat_template_sha": rec.train_sha,
        "task_hashes": {name: sha256_json([[it.id, it.question, it.target] for it in rec.items])},
        "data": {name: data_hashes(task, rec.task_options)},
        "timings": rec.timings,
        "date": rec.t_start,
        "start_time": rec.t_start,
        "end_time": time.time(),
        "total_evaluation_time_seconds": str(time.time() - rec.t_start),
    }


def write_files(out: str | os.PathLike, task_name: str, samples: Sequence[SampleRecord],
                results: dict) -> dict[str, str]:
    """Write samples then results under ``out``; return their paths."""
    outd = Path(out)
    ts = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%S.%f")
    safe = task_name.replace("/", "_")
    sp, rp = outd / f"samples_{safe}_{ts}.jsonl", outd / f"results_{ts}.json"
    atomic_write_jsonl(sp, samples)
    atomic_write_json(rp, results)
    return {"samples": str(sp), "results": str(rp)}


__all__ = ["EvalRecord", "data_hashes", "lm_eval_metrics", "results_object", "sample_records",
           "write_files"]
