"""``sftscale run | status | plan | export``: the study runner's commands.

- ``run STUDY.yaml [--out DIR] [--executor local|ray] [--retry-failed] [--wait] [--repair]``:
  run every cell not yet done (resumable: rerun the same command after a crash). ``run DIR``
  (a run directory) reruns it with the config snapshot ``DIR/study.yaml``. Exit 0 when every
  cell is done, 1 when some failed (see ``status``), 2 for bad input, a run directory
  another run is writing (``--wait`` waits for it instead) or a damaged store (``--repair``
  rebuilds it from the cell directories), 130 on Ctrl-C, 143 on SIGTERM (cells in flight go
  back to pending; rerun to resume).
- ``status DIR [--plan]``: the cell table (state, metrics, timings, errors); ``--plan``:
  planned vs measured seconds per cell and in total.
- ``plan STUDY.yaml [--gpu H100] [--measure] [--no-check]``: cells, tokens, FLOPs, time
  estimates (calibrated on this machine when measured, see plan/calibrate.py); checks that
  models and tasks resolve, before anything runs, listing every problem at once.
- ``export DIR --format csv|parquet|jsonl``: one row per cell and metric (+ items table).

Not handled: editing a run directory's config in place (a changed cell spec is refused
unless ``--rerun-changed``), remote run directories.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ._util import InputError


def _load(path: Path):
    from ..config import load_study

    return load_study(path)


def run_cmd(
    study: Path = typer.Argument(..., help="study YAML"),
    out: Optional[Path] = typer.Option(None, "--out", help="run directory (default: config's output)"),
    executor: Optional[str] = typer.Option(None, "--executor", help="local or ray (default: config)"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="rerun cells that failed before"),
    rerun_changed: bool = typer.Option(False, "--rerun-changed",
                                       help="rerun cells whose spec changed in the config"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                              help="Ray cluster address (else $RAY_ADDRESS / local)"),
    no_progress: bool = typer.Option(False, "--no-progress",
                                     help="no live display (one log line per cell still)"),
    wait: bool = typer.Option(False, "--wait",
                              help="if another run writes the run directory, wait for it to end"),
    repair: bool = typer.Option(False, "--repair", help="rebuild a damaged study.sqlite from the "
                                "cell directories (the old file is kept beside it)"),
) -> None:
    """Run a study: train and evaluate every cell; resumable and crash-safe."""
    from ..rundir import layout
    from ..study.runner import run_study
    from ..study.signals import Terminated

    try:
        if study.is_dir():  # a run directory: its config snapshot, written there
            out = out if out is not None else study
            study = layout.study_yaml(study)
            if not study.is_file():
                raise InputError(study.parent, f"not a run directory (no {layout.STUDY_YAML}); give the "
                                 "study YAML")
        cfg = _load(study)
        if executor not in (None, "local", "ray"):
            raise InputError(None, f"unknown executor {executor!r} (local or ray)", field="--executor")
        if ray_address:
            cfg.executor.address = ray_address
        res = run_study(cfg, out=out, executor=executor, retry_failed=retry_failed,
                        rerun_changed=rerun_changed, repair=repair, wait=wait,
                        on_wait=_say_waiting(out or cfg.output_dir()),
                        progress="lines" if no_progress else True)
    except Terminated as e:
        print("terminated (SIGTERM): finished cells are saved, cells in flight are pending "
              "again; rerun the same command to resume", file=sys.stderr)
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        print("interrupted: finished cells are saved; rerun the same command to resume",
              file=sys.stderr)
        raise typer.Exit(130) from None
    c = res.counts
    print(json.dumps({"run_dir": str(res.run_dir), **c, "ran": res.ran,
                      "wall_s": round(res.wall_s, 2)}))
    if c["failed"]:
        print(f"{c['failed']} cell(s) failed: `sftscale status {res.run_dir}` shows why; "
              f"rerun them with --retry-failed", file=sys.stderr)
        raise typer.Exit(1)


def _say_waiting(run_dir: Path):
    def on_wait(holder: dict) -> None:
        print(f"waiting: another sftscale run writes {run_dir} (pid {holder.get('pid', '?')} on "
              f"{holder.get('host', '?')}); starting when it ends", file=sys.stderr, flush=True)
    return on_wait


def status_cmd(
    run_dir: Path = typer.Argument(..., help="run directory"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per cell"),
    failed: bool = typer.Option(False, "--failed", help="only failed cells, with their errors"),
    plan: bool = typer.Option(False, "--plan", help="planned (DIR/plan.json, made before the "
                              "run) vs measured time per cell and in total"),
) -> None:
    """Show the cells of a run: state, main metrics, timings, errors."""
    from ..study.status import FILES_MISSING, INTERRUPTED, STORE_CHANGED, status_rows

    if plan:
        from ..study.status import print_plan_vs_measured

        print_plan_vs_measured(run_dir, as_json)
        return

    rows, counts = status_rows(run_dir)
    if failed:
        rows = [r for r in rows if r["state"] == "failed"]
    if as_json:
        for r in rows:
            print(json.dumps(r))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{run_dir}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    searched = any(r.get("search") for r in rows)  # a recipe search: the chosen values
    stages = list(dict.fromkeys(["train", "eval", *(s for r in rows for s in r["stages"])]))
    for col in ("model", "task", "n", "seed", "state", "acc", "format", "items",
                *(f"{s} s" for s in stages)) + (("chosen (validation)",) if searched else ()):
        t.add_column(col, no_wrap=True)
    t.add_column("error", overflow="fold")
    colour = {"done": "green", "failed": "red", "running": "yellow", "pending": "dim",
              FILES_MISSING: "magenta", STORE_CHANGED: "magenta", INTERRUPTED: "yellow"}
    for r in rows:
        t.add_row(r["model"], r["task"], str(r["n"]), str(r["seed"]),
                  f"[{colour[r['state']]}]{r['state']}[/]",
                  _f(r.get("accuracy")), _f(r.get("format_rate")), _i(r.get("n_items")),
                  *(_f(r["stages"].get(s, r.get(f"{s}_s")), 1) for s in stages),
                  *((_choice(r.get("search")),) if searched else ()),
                  (r.get("error") or "")[:120 if r["state"] != FILES_MISSING else 400])
    con = Console()
    if not con.is_terminal:
        con = Console(width=160)
    con.print(t)


def _choice(search: Optional[dict]) -> str:
    from ..grid.searchspec import describe_choice

    return describe_choice(json.dumps(search)) if search else ""


def _f(v: Optional[float], nd: int = 3) -> str:
    return "" if v is None else f"{v:.{nd}f}"


def _i(v: Optional[int]) -> str:
    return "" if v is None else str(v)


def plan_cmd(
    study: Path = typer.Argument(..., help="study YAML"),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="estimate time on this GPU (H100, A100, ...)"),
    mfu: Optional[float] = typer.Option(None, "--mfu", help="model FLOP utilisation assumed on the GPU"),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table"),
    measure: bool = typer.Option(False, "--measure", help="time a few real training steps and "
                                 "generations of each model here first (cached per machine)"),
    no_check: bool = typer.Option(False, "--no-check", help="resolve nothing: estimate from "
                                  "params/arch in the study or the known-model table (offline)"),
) -> None:
    """List the cells with tokens, FLOPs and time estimates; check models and tasks resolve.

    Every unresolved model, dataset and file is listed in one message (exit 2), after the
    estimate of what could be estimated without them."""
    from ..plan.check import format_plan, plan_study
    from ..plan.offline import plan_offline
    from ..plan.problems import CheckProblems

    cfg = _load(study)
    problems: CheckProblems | None = None
    if no_check:
        from ..plan.check import CheckResult, _check_recipes

        found = _check_recipes(cfg, CheckResult())  # resolves nothing; the estimate needs them
        if found:
            raise CheckProblems(cfg, found)
        plan = plan_offline(cfg, gpu, mfu)
    else:
        try:
            plan = plan_study(cfg, gpu=gpu, mfu=mfu, measure=measure)
        except CheckProblems as e:
            problems = e
            try:  # the estimate of what can be estimated without the problems
                plan = plan_offline(cfg, gpu, mfu)
            except (InputError, ValueError):  # a problem the estimate needs: the list alone
                plan = None
    if plan is None:
        assert problems is not None  # plan is None only after CheckProblems
        raise problems
    if as_json:
        for r in plan.rows:
            print(json.dumps(r))
        print(json.dumps({"total": plan.totals, "assumptions": plan.assumptions}))
    else:
        format_plan(plan)
    if problems is not None:
        raise problems


def export_cmd(
    run_dir: Path = typer.Argument(..., help="run directory"),
    fmt: str = typer.Option("csv", "--format", help="csv, parquet or jsonl"),
    out: Optional[Path] = typer.Option(None, "--out", help="metrics file (default DIR/export.<fmt>); "
                                       "the items table goes beside it as <stem>.items.<fmt>"),
) -> None:
    """Write one row per cell and metric (model, task, metric, n, value, seed, n_items)."""
    from ..rundir.export import export

    mpath, ipath = export(run_dir, fmt, out)
    print(json.dumps({"metrics": str(mpath), "items": str(ipath)}))


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)
    app.command("status")(status_cmd)
    app.command("plan")(plan_cmd)
    app.command("export")(export_cmd)
