"""Planning without the inputs: every problem in one message, and ``plan --no-check``.

``problems.CheckProblems`` (an InputError) carries every problem ``plan.check_study`` found
(each with its YAML line and field), so a study with three missing inputs fails once, naming
all three. ``plan_offline`` estimates a study without resolving anything: parameters
from the model's ``params`` or ``arch`` in the YAML, else ``KNOWN_MODELS`` (public configs),
else the size in the name; test/pool sizes from the task when it builds locally, else
``KNOWN_TASKS``, else ``DEFAULT_TEST_ITEMS`` (said in a note); tokens at 4 characters per token
(or ``DEFAULT_*_TOKENS`` when the task does not build). For planning a GPU study from a laptop
without network: ``sftscale plan studies/paper.yaml --gpu H100 --no-check``.

Not handled: the memory check of check.py (it needs the recipe and the model's real shapes), a
pool smaller than the grid for tasks that do not build (N is not capped: the estimate is an
upper bound), token counts of the real tokenizer.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelArch, ModelEntry, StudyConfig, TaskEntry
from .estimate import Plan
from .problems import CheckProblems

#: (parameters, layers, hidden, attention heads, vocabulary) from each model's config.json on
#: the Hugging Face hub (num_hidden_layers, hidden_size, num_attention_heads, vocab_size) and
#: its model card's parameter count.
KNOWN_MODELS: dict[str, tuple[float, int, int, int, int]] = {
    "meta-llama/Meta-Llama-3-8B": (8.03e9, 32, 4096, 32, 128256),
    "meta-llama/Meta-Llama-3-70B": (70.6e9, 80, 8192, 64, 128256),
    "meta-llama/Llama-2-7b-hf": (6.74e9, 32, 4096, 32, 32000),
    "meta-llama/Llama-2-70b-hf": (69.0e9, 80, 8192, 64, 32000),
    "mistralai/Mistral-7B-v0.1": (7.24e9, 32, 4096, 32, 32000),
    "HuggingFaceTB/SmolLM2-135M": (134.5e6, 30, 576, 9, 49152),
    "google/gemma-3-270m": (268e6, 18, 640, 4, 262144),
}

#: (test items, training pool or None) of tasks whose data has a fixed size: GSM8k test 1,319 /
#: train 7,473 (Cobbe et al. 2021); HumanEval(+) 164 problems; IFEval 541 prompts.
KNOWN_TASKS: dict[str, tuple[int, int | None]] = {
    "gsm8k": (1319, 7473), "humaneval": (164, None), "humaneval+": (164, None),
    "ifeval": (541, None),
}
DEFAULT_TEST_ITEMS = 1000  # a task whose test set is unknown offline (said in a note)
DEFAULT_PROMPT_TOKENS = 200
DEFAULT_TRAIN_TOKENS = 400
DEFAULT_MAX_NEW = 256


def _known(ref: str) -> tuple[float, int, int, int, int] | None:
    low = ref.lower().rstrip("/")
    for k, v in KNOWN_MODELS.items():
        if low == k.lower() or low.endswith("/" + k.split("/")[-1].lower()) or \
                low == k.split("/")[-1].lower():
            return v
    return None


def params_from_arch(arch: ModelArch | dict[str, Any]) -> float:
    """12·layers·hidden² (attention + a 4x MLP) + 2·vocab·hidden (untied embeddings): the usual
    dense-transformer count; GQA and wider MLPs shift it by ~10% (give ``params`` to be exact)."""
    a = arch if isinstance(arch, dict) else arch.model_dump()
    h, L, V = float(a["hidden"]), float(a["layers"]), float(a.get("vocab") or 32000)
    return 12 * L * h * h + 2 * V * h


def hinted_params(m: ModelEntry) -> tuple[float | None, str]:
    """A model entry's parameters without its weights: ``params``, ``arch``, the table, the name."""
    from .check import _SIZE_IN_NAME

    if m.params:
        return float(m.params), "params in the study"
    if m.arch:
        return params_from_arch(m.arch), "from arch in the study"
    k = _known(m.ref)
    if k is not None:
        return k[0], "known-model table (public config)"
    found = _SIZE_IN_NAME.findall(str(m.ref).split("/")[-1])
    if found:
        num, unit = found[-1]
        return float(num) * (1e9 if unit.lower() == "b" else 1e6), "from the name"
    return None, "unknown"


def _task_sizes(t: TaskEntry, cfg: StudyConfig, notes: list[str]) -> tuple[int, int | None, dict[str, Any]]:
    """(test items, pool, token stats) of a task entry: built locally if it can be, else known."""
    from ..tasks.taskdata import study_task

    limit = t.limit if t.limit is not None else cfg.evaluation.limit
    max_new = t.max_new_tokens or cfg.evaluation.max_new_tokens
    try:
        task = study_task(t.name, t.task_options(), max_new)
        tests = task.test_items()
        st = {"prompt_tokens": _mean_chars([it.question for it in tests[:64]]) / 4,
              "max_new": max_new or task.gen.max_new_tokens, "train_tokens": None,
              "how": "4 chars/token"}
        pool = None
        if any(n > 0 for n in cfg.grid_for(t)):
            try:
                items = task.train_items()
                pool = len(items)
                st["train_tokens"] = _mean_chars(
                    [it.question + (it.completion or "") for it in items[:64]]) / 4
            except Exception:  # noqa: BLE001 - offline: unknown pool
                notes.append(f"{t.label}: training pool not available offline; "
                             f"{DEFAULT_TRAIN_TOKENS} tokens per example assumed, N not capped")
                st["train_tokens"] = DEFAULT_TRAIN_TOKENS
        n_test = len(tests)
    except Exception:  # noqa: BLE001 - offline: the task's data is missing
        known_test, pool = KNOWN_TASKS.get(t.name, (None, None))
        n_test = DEFAULT_TEST_ITEMS if known_test is None else known_test
        if known_test is None:
            notes.append(f"{t.label}: test set not available offline; {n_test} items assumed")
        st = {"prompt_tokens": DEFAULT_PROMPT_TOKENS, "train_tokens": DEFAULT_TRAIN_TOKENS,
              "max_new": max_new or DEFAULT_MAX_NEW,
              "how": f"assumed {DEFAULT_PROMPT_TOKENS}/{DEFAULT_TRAIN_TOKENS} tokens"}
        notes.append(f"{t.label}: data not available offline; {st['how']} per prompt/example, "
                     f"max_new_tokens {st['max_new']}")
    return (n_test if limit is None else min(n_test, limit)), pool, st


def _mean_chars(texts: list[str]) -> float:
    return sum(len(x) for x in texts) / max(1, len(texts))


def plan_offline(cfg: StudyConfig, gpu: str | None, mfu: float | None) -> Plan:
    """The plan of ``cfg`` without resolving models or fetching data (``plan --no-check``)."""
    from ..grid.cells import expand_cells
    from .calibrate import calibrate_plan
    from .check import _cell_row, _gpu_name
    from .gpucal import gpu_mfu

    gpu = _gpu_name(gpu)
    mfu = gpu_mfu(gpu) if mfu is None else mfu
    notes: list[str] = ["--no-check: nothing was resolved; sizes below come from the study, "
                        "the known-model/task tables and stated assumptions"]
    sizes = {t.label: _task_sizes(t, cfg, notes) for t in cfg.tasks}
    pools = {k: v[1] for k, v in sizes.items() if v[1] is not None}
    params = {m.label: hinted_params(m) for m in cfg.models}
    rows = [_cell_row(c, params[c.model][0], sizes[c.task][2], sizes[c.task][0], 1.0, gpu, mfu)
            for c in expand_cells(cfg, pools)]
    for label, (P, how) in params.items():
        notes.append(f"{label}: {P:.3g} parameters ({how})" if P else
                     f"{label}: parameters unknown (give `params:` or `arch:` in the study)")
    totals = {"cells": len(rows), "train_tokens": sum(r["train_tokens"] for r in rows),
              "gen_tokens_max": sum(r["gen_tokens_max"] for r in rows)}
    for k in ("train_flops", "eval_flops", "cpu_s", "gpu_s"):
        if rows and all(k in r for r in rows):
            totals[k] = sum(r[k] for r in rows)
    from . import check as chk

    assumptions = {"cpu_train_flops": chk.CPU_TRAIN_FLOPS, "cpu_eval_flops": chk.CPU_EVAL_FLOPS,
                   "cpu_cell_overhead_s": chk.CPU_CELL_OVERHEAD_S,
                   "cpu_step_overhead_s": chk.CPU_STEP_OVERHEAD_S,
                   "cpu_gen_token_s": chk.CPU_GEN_TOKEN_S, "eval_batch_gpu": chk.EVAL_BATCH_GPU,
                   "gpu": gpu, "mfu": mfu, "gpu_peak_flops": chk.GPUS[gpu][0] if gpu else None,
                   "gpu_bandwidth": chk.GPUS[gpu][1] if gpu else None, "offline": True}
    plan = Plan(rows=rows, totals=totals, assumptions=assumptions, notes=notes)
    calibrate_plan(plan, cfg, {}, measure=False)
    return plan


__all__ = ["CheckProblems", "DEFAULT_TEST_ITEMS", "KNOWN_MODELS", "KNOWN_TASKS", "hinted_params",
           "params_from_arch", "plan_offline"]
