"""``sftscale plan``: check that a study can run, and estimate what it costs, before it runs.

Checks (each failure is an InputError naming the config file, line and field): every model
reference resolves (``models.resolve_model``), every task builds with its options and has
test items, every task with N > 0 in its grid has a training pool (its size is returned, so
``n_over_pool`` can be applied), and recipe override keys are fields of ``train.Recipe``.

Estimates per cell (all documented in docs/notes/study.md):

- training: steps = ``train.steps_for(N, recipe)`` (max(min_steps, ceil(epochs · N / batch)));
  tokens = steps · batch · mean tokens of a training example (prompt + completion, measured
  with the model's tokenizer on up to 64 pool items, capped at the recipe's max length);
  FLOPs = 6 · params · tokens (LoRA skips the weight gradients, so it is an upper bound);
- evaluation: generated tokens = test items · max_new_tokens (an upper bound: generation
  stops early at EOS or a stop string); FLOPs = 2 · params · (prompt + generated tokens);
- time on this machine: FLOPs / effective FLOP/s plus per-step, per-generated-token and
  per-cell costs, constants fitted to a measured toy study on the 2-core dev machine
  (``--measure`` rescales the FLOP/s by a quick matmul benchmark of the current machine; see
  docs/notes/study.md, "Plan constants");
- time on a GPU (``--gpu H100``): training FLOPs / (peak bf16 dense FLOP/s · MFU, default 0.35);
  decoding is memory-bound, so each decode step costs max(compute, weight bytes / bandwidth)
  with batches of ``EVAL_BATCH_GPU`` sequences; divided by the model's ``gpus``.

Parameters come from safetensors/GGUF headers (no weights are loaded), else from a size in
the model's name (``Llama-3-8B`` → 8e9).

Memory (``memory.py``): weights, gradients and AdamW state per training process under ddp
(replicated) or fsdp (1/W each); with ``--gpu`` a cell whose share cannot fit that GPU is
refused (an InputError at the model's ``gpus``). Multi-process cells are timed as ideal
scaling over their GPUs.

Not handled: exact token counts for hub models that are not in the local cache (then
4 characters per token is assumed and said so), multi-GPU efficiency (ideal scaling is
assumed), evaluation-time code execution (sandbox) and scoring costs.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import StudyConfig
from ..grid.cells import Cell, expand_cells
from ..grid.searchspec import candidates, check_search
from ..io import InputError
from ..models import ModelSpec
from ..tasks.base import Task
from .estimate import Plan
from .memory import check_fit, check_resources, train_memory

#: CPU constants, measured on this project's 2-core machine with studies/toy-quick.yaml
#: (8 real toy-S cells, 9 min 14 s wall at load 3-5 under `nice -n 10`; docs/notes/study.md,
#: "Plan constants"): fitted as time = FLOPs / CPU_*_FLOPS + per-step and per-token costs.
#: They describe that (shared, niced) machine; an idle one is about 2-3x faster.
CPU_TRAIN_FLOPS = 1.5e10
CPU_EVAL_FLOPS = 1.0e10
#: per optimizer step beyond the FLOPs (Python, optimizer, small-matrix inefficiency)
CPU_STEP_OVERHEAD_S = 0.6
#: per generated token, charged on the max_new_tokens upper bound (decode-loop overhead)
CPU_GEN_TOKEN_S = 0.003
CPU_CELL_OVERHEAD_S = 1.5  # model load, task build, file writes
#: reference matmul speed (FLOP/s of a 512x512 fp32 matmul loop) assumed for that machine,
#: for --measure
CPU_REF_MATMUL_FLOPS = 6.0e10

#: peak dense bf16 FLOP/s and memory bandwidth (bytes/s) from vendor data sheets
GPUS: dict[str, tuple[float, float]] = {
    "H200": (989e12, 4.8e12), "H100": (989e12, 3.35e12), "A100": (312e12, 2.04e12),
    "L40S": (362e12, 0.864e12), "A10G": (125e12, 0.6e12), "L4": (121e12, 0.3e12),
    "RTX4090": (165e12, 1.0e12), "V100": (125e12, 0.9e12), "T4": (65e12, 0.32e12),
}
DEFAULT_MFU = 0.35
EVAL_BATCH_GPU = 64

_SIZE_IN_NAME = re.compile(r"(?<![A-Za-z0-9])(\d+(?:\.\d+)?)\s*([BbMm])(?![A-Za-z])")


@dataclass
class CheckResult:
    pool_sizes: dict[str, int] = field(default_factory=dict)
    test_sizes: dict[str, int] = field(default_factory=dict)
    model_specs: dict[str, ModelSpec] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def check_study(cfg: StudyConfig, recipes: bool = True, out: Any = None) -> CheckResult:
    """Resolve every model and task, check the recipes and that the run directory (``out``,
    else the config's ``output``) can be written; collect every problem (file, line, field)
    and raise them together as one ``CheckProblems`` (an InputError listing them all)."""
    from ..models import resolve_model
    from ..tasks.taskdata import study_task

    res = CheckResult()
    bad: list[InputError] = []
    why = output_problem(cfg, out)
    if why is not None:
        bad.append(why)
    try:
        check_resources(cfg)
    except InputError as e:
        bad.append(e)
    for i, m in enumerate(cfg.models):
        try:
            res.model_specs[m.label] = resolve_model(m.ref)
        except InputError as e:
            bad.append(cfg.error(f"model {m.ref!r}: {e.reason}", "models", i, "ref"))
    for j, t in enumerate(cfg.tasks):
        try:
            task = study_task(t.name, t.task_options())
            n_test = len(task.test_items())  # many tasks read their data lazily
        except KeyError as e:
            bad.append(cfg.error(str(e).strip("'\""), "tasks", j, "name"))
            continue
        except InputError as e:
            bad.append(cfg.error(f"task {t.name!r}: {e.reason if e.path is None else e}", "tasks",
                                 j, "options" if t.options else "name"))
            continue
        except (TypeError, ValueError, FileNotFoundError) as e:
            bad.append(cfg.error(f"task {t.name!r} with options {t.task_options()}: {e}",
                                 "tasks", j, "options" if t.options else "name"))
            continue
        if n_test == 0:
            bad.append(cfg.error(f"task {t.name!r} has no test items", "tasks", j, "name"))
        res.test_sizes[t.label] = n_test if t.limit is None else min(n_test, t.limit)
        if any(n > 0 for n in cfg.grid_for(t)):
            try:
                pool = len(task.train_items())
            except InputError as e:
                loc = ("tasks", j, "train_data") if t.train_data else ("tasks", j, "options")
                bad.append(cfg.error(f"training data of task {t.name!r}: {e}", *loc))
                continue
            except NotImplementedError:
                bad.append(cfg.error(f"task {t.name!r} has no training pool; give `train_data` "
                                     f"(a file or dataset id) or use only N = 0", "tasks", j, "name"))
                continue
            res.pool_sizes[t.label] = pool
    if recipes:
        bad += _check_recipes(cfg, res)
    from .fewshot import fewshot_problems

    bad += fewshot_problems(cfg, res.model_specs)  # k-shot baselines: a pool, and k that fits
    if bad:
        from .problems import CheckProblems

        raise CheckProblems(cfg, bad)
    return res


def _check_recipes(cfg: StudyConfig, res: CheckResult) -> list[InputError]:
    """Override keys must be Recipe fields and their values valid, for every model × task;
    every problem, each once (an override shared by several cells is reported at its line)."""
    from pydantic import ValidationError

    from ..train import Recipe, default_recipe

    found: dict[tuple, InputError] = {}

    def add(e: InputError) -> None:
        found.setdefault((e.line, e.field), e)

    for i, m in enumerate(cfg.models):
        try:
            base = default_recipe(m.ref).model_dump()
        except InputError:
            continue  # an unresolved model: reported by check_study
        for j, t in enumerate(cfg.tasks):
            over = cfg.recipe_overrides(m, t)
            unknown = sorted(set(over) - set(base))
            for k in unknown:
                known = "" if found else f"; known: {', '.join(sorted(base))}"
                add(cfg.error(f"unknown recipe field {k!r}{known}", *_recipe_loc(cfg, i, j, k)))
            try:
                Recipe.model_validate({**base, **{k: v for k, v in over.items() if k in base}})
            except ValidationError as e:
                for err in e.errors():
                    exc = (err.get("ctx") or {}).get("error")  # yamlconfig.strict_scalars' field
                    loc = tuple(err["loc"]) or tuple(getattr(exc, "loc", ()))
                    k = str(loc[0]) if loc else ""
                    msg = str(err["msg"]).removeprefix("Value error, ")
                    add(cfg.error(f"recipe: {msg}", *_recipe_loc(cfg, i, j, k)))
                continue
            if unknown:
                continue
            why = check_search(cfg, m.ref, over) if cfg.recipe_search is not None else None
            if why:
                add(cfg.error(why, "recipe_search"))
    return list(found.values())


def output_problem(cfg: StudyConfig, out: Any = None) -> InputError | None:
    """Why the run directory (``out``, else the config's ``output``) cannot be written, or
    None. Checked like ``run`` writes: an existing directory must take a new file, a missing
    one must be creatable under its nearest existing parent (tried with a temporary directory,
    removed at once; nothing else is written)."""
    import tempfile

    run_dir = Path(out) if out is not None else cfg.output_dir()

    def problem(reason: str) -> InputError:
        if out is not None:
            return InputError(run_dir, f"the run directory {reason}", field="--out")
        return cfg.error(f"the run directory {str(run_dir)!r} {reason}",
                         "output" if cfg.output else "name")

    if run_dir.exists() and not run_dir.is_dir():
        return problem("exists and is not a directory")
    probe = run_dir
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return problem(f"cannot be created: {str(probe)!r} is a file, not a directory")
    try:
        made = tempfile.mkdtemp(prefix=".sftscale-probe-", dir=probe)
    except OSError as e:
        what = "cannot be written" if probe == run_dir else f"cannot be created in {str(probe)!r}"
        return problem(f"{what} ({e.strerror})")
    with contextlib.suppress(OSError):
        Path(made).rmdir()
    return None


def _recipe_loc(cfg: StudyConfig, i: int, j: int, k: str) -> tuple:
    """Where override ``k`` for model i × task j comes from (the last one wins)."""
    m, t = cfg.models[i], cfg.tasks[j]
    if isinstance(m.recipe, dict) and k in m.recipe:
        return ("models", i, "recipe", k)
    if isinstance(m.recipe, str) and k in cfg.recipes[m.recipe]:
        return ("recipes", m.recipe, k)
    if k in t.recipe:
        return ("tasks", j, "recipe", k)
    return ("recipe", k)


# --- sizes -----------------------------------------------------------------------------------

def count_params(ref: str, spec: ModelSpec | None = None) -> tuple[float | None, str]:
    """(parameters, how they were counted) without loading weights."""
    from ..models import resolve_model

    spec = spec or resolve_model(ref)
    path = Path(spec.path) if spec.path is not None else None
    if path is not None and path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if files:
            return float(sum(_safetensors_numel(f) for f in files)), "safetensors header"
    if path is not None and path.suffix == ".gguf":
        try:
            from gguf import GGUFReader

            r = GGUFReader(str(path))
            return float(sum(int(t.n_elements) for t in r.tensors)), "gguf header"
        except Exception:  # unreadable: fall through to the name
            pass
    m = _SIZE_IN_NAME.findall(str(ref).split("/")[-1])
    if m:
        num, unit = m[-1]
        return float(num) * (1e9 if unit.lower() == "b" else 1e6), "from the name"
    return None, "unknown"


def _safetensors_numel(path: Path) -> int:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    total = 0
    for k, v in header.items():
        if k == "__metadata__":
            continue
        total += math.prod(v.get("shape", [])) if v.get("shape") else 1
    return total


def _recipe_numbers(ref: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The recipe numbers the estimate needs, from ``train.default_recipe`` + overrides."""
    from ..train import Recipe, default_recipe

    d = default_recipe(ref).model_dump()
    d.update(overrides)
    rec = Recipe.model_validate(d)
    return {"recipe": rec, "batch": rec.batch_size, "max_length": rec.max_length,
            "lora": rec.method == "lora"}


def train_steps(n: int, recipe: Any) -> int:
    """Optimizer steps for N examples: ``train.steps_for`` (the rule train_cell logs)."""
    from ..train.cell import steps_for

    return steps_for(n, recipe)[0]


def _token_stats(ref: str, task: Task, chat: bool, limit: int | None, spec: ModelSpec | None = None
                 ) -> dict[str, Any]:
    """Mean tokens of a training example and of an evaluation prompt (≤ 64 items each)."""
    tok = None
    how = "tokenizer"
    try:
        from ..models import load_tokenizer, local_dir

        # a hub model not in the local cache is not fetched (no network calls in a plan)
        d = local_dir(spec) if spec is not None and spec.kind == "hub" else True
        tok = load_tokenizer(d if isinstance(d, Path) else ref) if d is not None else None
    except Exception:
        tok = None
    if tok is None:
        how = "4 chars/token (tokenizer not available locally)"

    def count(text: str) -> int:
        if tok is None:
            return max(1, len(text) // 4)
        return len(tok(text, add_special_tokens=False)["input_ids"])

    out: dict[str, Any] = {"how": how, "train_tokens": None}
    tests = task.test_items()
    tests = tests[:limit] if limit else tests
    sample = tests[:: max(1, len(tests) // 64)][:64]
    try:
        out["prompt_tokens"] = sum(count(task.build_prompt(it, tok, chat)) for it in sample) / max(1, len(sample))
    except Exception:
        out["prompt_tokens"] = sum(count(it.question) for it in sample) / max(1, len(sample))
    try:
        pool = task.train_items()
    except NotImplementedError:
        return out
    sample = pool[:: max(1, len(pool) // 64)][:64]
    if sample:
        tot = 0
        for it in sample:
            try:
                p, c = task.training_pair(it, tok, chat)
            except Exception:
                p, c = it.question, it.completion or ""
            tot += count(p) + count(c) + 1
        out["train_tokens"] = tot / len(sample)
    return out


# --- the plan ----------------------------------------------------------------------------------

def measure_cpu_flops(seconds: float = 0.5) -> float:
    """FLOP/s of a 512x512 fp32 matmul loop on this machine (torch's threads)."""
    import torch

    a = torch.randn(512, 512)
    b = torch.randn(512, 512)
    for _ in range(3):
        a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return 2 * 512 ** 3 * n / (time.perf_counter() - t0)


def plan_study(cfg: StudyConfig, gpu: str | None = None, mfu: float | None = None,
               measure: bool = False) -> Plan:
    """Check the study (raises InputError) and estimate every cell's cost."""
    from ..tasks.taskdata import study_task

    _check_plan_inputs(cfg, mfu)
    chk = check_study(cfg)
    cells = expand_cells(cfg, chk.pool_sizes)
    gpu = _gpu_name(gpu)
    from .gpucal import gpu_mfu

    mfu = gpu_mfu(gpu) if mfu is None else mfu  # gpu_calibration.json (gpucal.py)
    scale = 1.0  # CPU seconds are replaced by calibrated ones below where measured (calibrate.py)
    params: dict[str, tuple[float | None, str]] = {}
    stats: dict[tuple[str, str, bool], dict[str, Any]] = {}
    rows = []
    for c in cells:
        if c.model not in params:
            params[c.model] = count_params(c.model_ref, chk.model_specs.get(c.model))
        skey = (c.model, c.task, c.chat)
        if skey not in stats:
            task = study_task(c.task_name, c.task_options, c.max_new_tokens)
            stats[skey] = _token_stats(c.model_ref, task, c.chat, c.limit,
                                       chk.model_specs.get(c.model))
            stats[skey]["max_new"] = c.max_new_tokens or task.gen.max_new_tokens
        rows.append(_cell_row(c, params[c.model][0], stats[skey], chk.test_sizes.get(c.task, 0),
                              scale, gpu, mfu))
    totals = {"cells": len(rows), "train_tokens": sum(r["train_tokens"] for r in rows),
              "gen_tokens_max": sum(r["gen_tokens_max"] for r in rows)}
    for k in ("train_flops", "eval_flops", "cpu_s", "gpu_s"):
        if rows and all(k in r for r in rows):
            totals[k] = sum(r[k] for r in rows)
    notes = list(chk.notes)
    for label, (P, how) in params.items():
        notes.append(f"{label}: {P:.3g} parameters ({how})" if P else f"{label}: parameters unknown")
    for (m, t, _), st in stats.items():
        notes.append(f"{m}/{t}: {st['train_tokens'] or 0:.0f} tokens per training example, "
                     f"{st['prompt_tokens']:.0f} per prompt, max_new_tokens {st['max_new']} ({st['how']})")
    skipped = _skipped(cfg, chk.pool_sizes)
    notes.extend(skipped)
    notes.extend(check_fit(cfg, cells, rows, gpu))  # refuses a cell that cannot fit the GPU
    assumptions = {"cpu_train_flops": CPU_TRAIN_FLOPS * scale, "cpu_eval_flops": CPU_EVAL_FLOPS * scale,
                   "cpu_cell_overhead_s": CPU_CELL_OVERHEAD_S,
                   "cpu_step_overhead_s": CPU_STEP_OVERHEAD_S, "cpu_gen_token_s": CPU_GEN_TOKEN_S,
                   "gpu": gpu, "mfu": mfu,
                   "eval_batch_gpu": EVAL_BATCH_GPU,
                   "gpu_peak_flops": GPUS[gpu][0] if gpu else None,
                   "gpu_bandwidth": GPUS[gpu][1] if gpu else None}
    plan = Plan(rows=rows, totals=totals, assumptions=assumptions, notes=notes)
    from .calibrate import calibrate_plan

    calibrate_plan(plan, cfg, chk.model_specs, measure=measure)
    return plan


def _check_plan_inputs(cfg: StudyConfig, mfu: float | None) -> None:
    """``--mfu`` in (0, 1] (the run directory is ``check_study``'s, with the other problems)."""
    if mfu is not None and not 0 < mfu <= 1:
        raise InputError(None, f"must be in (0, 1] (the fraction of the GPU's peak FLOP/s "
                         f"reached), got {mfu}", field="--mfu")


def _gpu_name(gpu: str | None) -> str | None:
    """``--gpu`` as a key of GPUS (``h100-sxm`` -> ``H100``), or InputError."""
    if gpu is None:
        return None
    g = gpu.upper().replace(" ", "").replace("-", "")
    name = next((k for k in GPUS if g.startswith(k.upper())), None)
    if name is None:
        raise InputError(None, f"unknown GPU {gpu!r}; known: {', '.join(GPUS)}", field="--gpu")
    return name


def _cell_row(c: Cell, P: float | None, st: dict[str, Any], n_eval: int, scale: float,
              gpu: str | None, mfu: float) -> dict[str, Any]:
    """One cell's plan row: steps and tokens; FLOPs and CPU (and GPU) seconds when P is known."""
    rn = _recipe_numbers(c.model_ref, c.recipe)
    steps = train_steps(c.n, rn["recipe"])
    per_ex = st["train_tokens"] or 0.0
    if rn["max_length"]:
        per_ex = min(per_ex, float(rn["max_length"]))
    k = len(candidates(c.search)) if c.search else 1  # a recipe search: k trainings + k
    n_gen = n_eval + (k * c.search["validation"]["n"] if c.search else 0)  # validations
    train_tok = k * steps * rn["batch"] * per_ex
    gen_tok = n_gen * st["max_new"]
    # a k-shot cell's prompts carry k examples, each about a training example long
    prompt_tok = n_gen * (st["prompt_tokens"] + c.kshot * (st["train_tokens"] or 0.0))
    row: dict[str, Any] = {"cell": c.key, "model": c.model, "task": c.task, "n": c.n, "k": c.kshot,
                           "seed": c.seed, "params": P, "steps": steps,
                           "train_tokens": round(train_tok), "eval_items": n_eval,
                           "prompt_tokens": round(prompt_tok), "gen_tokens_max": gen_tok}
    if P is None:
        return row
    tf = 6 * P * train_tok
    ef = 2 * P * (prompt_tok + gen_tok)
    row["train_mem_per_process"] = train_memory(P, rn["recipe"], c.world)["total"]
    row.update(train_flops=tf, eval_flops=ef,
               cpu_s=tf / (CPU_TRAIN_FLOPS * scale) + ef / (CPU_EVAL_FLOPS * scale)
               + k * steps * CPU_STEP_OVERHEAD_S + gen_tok * CPU_GEN_TOKEN_S
               + CPU_CELL_OVERHEAD_S)
    if gpu is not None:
        peak, bw = GPUS[gpu]
        ngpu = max(1.0, c.gpus or 1.0)
        t_train = tf / (peak * mfu)
        prefill = 2 * P * prompt_tok / (peak * mfu)
        batches = math.ceil(n_eval / EVAL_BATCH_GPU) if n_eval else 0
        decode = batches * st["max_new"] * max(2 * P * EVAL_BATCH_GPU / (peak * mfu), 2 * P / bw)
        row["gpu_s"] = (t_train + prefill + decode) / ngpu
    return row


def _skipped(cfg: StudyConfig, pools: dict[str, int]) -> list[str]:
    out = []
    for t in cfg.tasks:
        pool = pools.get(t.label)
        if pool is None:
            continue
        over = [n for n in cfg.grid_for(t) if n > pool]
        if over:
            verb = "capped to" if cfg.n_over_pool == "cap" else "skipped; pool"
            out.append(f"{t.label}: N={over} {verb} {pool}")
    return out


def format_plan(plan: Plan) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    if not con.is_terminal:
        con = Console(width=160)
    gpu = plan.assumptions.get("gpu")
    t = Table(title=f"{plan.totals['cells']} cells")
    cols = ["model", "task", "n", "seed", "steps", "train tok", "train FLOPs", "eval items",
            "gen tok (max)", "CPU time"] + ([f"{gpu} time"] if gpu else [])
    for col in cols:
        t.add_column(col, no_wrap=True, justify="left" if col in ("model", "task") else "right")
    for r in plan.rows:
        vals = [r["model"], r["task"], f"{r['n']} k={r['k']}" if r.get("k") else str(r["n"]),
                "-" if r["n"] == 0 else str(r["seed"]),
                str(r["steps"]), _si(r["train_tokens"]), _si(r.get("train_flops")),
                str(r["eval_items"]), _si(r["gen_tokens_max"]), _dur(r.get("cpu_s"))]
        if gpu:
            vals.append(_dur(r.get("gpu_s")))
        t.add_row(*vals)
    tt = plan.totals
    tot = ["total", "", "", "", "", _si(tt["train_tokens"]), _si(tt.get("train_flops")), "",
           _si(tt["gen_tokens_max"]), _dur(tt.get("cpu_s"))] + ([_dur(tt.get("gpu_s"))] if gpu else [])
    t.add_row(*tot, style="bold")
    con.print(t)
    for n in plan.notes:
        con.print(f"  {n}", highlight=False)
    a = plan.assumptions
    line = (f"  assumptions: CPU {a['cpu_train_flops']:.2g} FLOP/s training, "
            f"{a['cpu_eval_flops']:.2g} FLOP/s generation, +{a['cpu_step_overhead_s']} s/step, "
            f"+{a['cpu_gen_token_s']} s/generated token, "
            f"+{a['cpu_cell_overhead_s']} s/cell")
    if gpu:
        line += (f"; {gpu}: {a['gpu_peak_flops']:.3g} FLOP/s peak bf16 × MFU {a['mfu']}, "
                 f"{a['gpu_bandwidth']:.3g} B/s, decode batch {a['eval_batch_gpu']}")
    con.print(line, highlight=False)


def _si(v: float | None) -> str:
    if v is None:
        return "?"
    for unit, f in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= f:
            return f"{v / f:.3g}{unit}"
    return f"{v:.3g}"


def _dur(s: float | None) -> str:
    if s is None:
        return "?"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{s / 60:.1f}m"
    if s < 86400 * 2:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


__all__ = ["CPU_EVAL_FLOPS", "CPU_TRAIN_FLOPS", "GPUS", "CheckResult", "Cell",
           "check_study", "count_params", "format_plan", "measure_cpu_flops", "plan_study",
           "train_steps"]
