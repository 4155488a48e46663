"""The check of a study's k-shot baselines (``fewshot:``), part of ``check_study``.

For every model whose tokenizer and context length are on disk and every task with k-shot
cells: the task must have a few-shot pool (its training pool, or ``train_data``), and the
largest k (with each of ``fewshot_seeds``) must fit every evaluated item's prompt plus the
task's ``max_new_tokens`` in the model's context (``tasks.fewshot``); otherwise an
InputError at the ``fewshot`` field naming the task and the longest k that fits. So
``sftscale plan`` and ``sftscale run`` refuse it before any cell runs.

Not handled: hub models that are not in the local cache and GGUF files not yet converted
(their context is not read: the eval stage still checks it), the draws of
``fewshot_on_finetuned`` cells, whose examples avoid each cell's subset (checked at
evaluation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import StudyConfig
from ..io import InputError


def _context(spec: Any) -> tuple[int | None, Any]:
    """(the model's max_position_embeddings, its tokenizer), or (None, None) when not local."""
    if spec is None or spec.kind not in ("toy", "dir") or spec.path is None:
        return None, None
    cfg_path = Path(spec.path) / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    cfg = cfg.get("text_config", cfg) if isinstance(cfg, dict) else {}
    n = cfg.get("max_position_embeddings")
    if not isinstance(n, int) or n <= 0:
        return None, None
    from ..models import load_tokenizer

    try:
        tok = load_tokenizer(spec)
    except Exception:  # no tokenizer on disk: nothing to count with
        return None, None
    tok.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True
    return n, tok


def fewshot_problems(cfg: StudyConfig, model_specs: dict[str, Any]) -> list[InputError]:
    """Every k-shot problem of the study (see the module docstring)."""
    from ..grid.cells import fewshot_for
    from ..models import encode_prompt
    from ..tasks.fewshot import check_fewshot_fits
    from ..tasks.taskdata import study_task

    todo = [(j, t, fewshot_for(cfg, t)) for j, t in enumerate(cfg.tasks) if fewshot_for(cfg, t)]
    if not todo:
        return []
    bad: list[InputError] = []
    seeds: list[int | None] = list(cfg.fewshot_seeds) if cfg.fewshot_seeds else [None]
    tasks: dict[int, Any] = {}
    for j, t, _ in todo:
        loc = ("tasks", j, "fewshot") if t.fewshot is not None else ("fewshot",)
        try:
            task = study_task(t.name, t.task_options(),
                              t.max_new_tokens if t.max_new_tokens is not None
                              else cfg.evaluation.max_new_tokens)
            has_pool = task.fewshot_pool() is not None
        except (InputError, KeyError, TypeError, ValueError, FileNotFoundError):
            continue  # the task itself is broken: check_study reports it
        if not has_pool:
            bad.append(cfg.error(f"task {t.label!r} has no few-shot pool (no training pool): "
                                 "give it train_data, or drop fewshot", *loc))
            continue
        tasks[j] = task
    for m in cfg.models:
        ctx_len, tok = _context(model_specs.get(m.label))
        if ctx_len is None:
            continue
        def count(p: str, tok: Any = tok) -> int:
            return len(encode_prompt(tok, p))

        for j, t, ks in todo:
            if j not in tasks:
                continue
            task = tasks[j]
            limit = t.limit if t.limit is not None else cfg.evaluation.limit
            items = task.test_items()[:limit] if limit else task.test_items()
            loc = ("tasks", j, "fewshot") if t.fewshot is not None else ("fewshot",)
            for seed in seeds:
                try:
                    check_fewshot_fits(task, items, max(ks), count, ctx_len, seed=seed)
                except InputError as e:
                    bad.append(cfg.error(f"model {m.label!r}: {e.reason}", *loc))
                    break
                except ValueError as e:  # a pool smaller than k
                    bad.append(cfg.error(str(e), *loc))
                    break
    return bad


__all__ = ["fewshot_problems"]
