"""``sftscale demo``: the paper in miniature on a laptop CPU, from a fresh clone.

Steps, each timed and printed:

1. set-up: check that the shipped toy models load (the package install itself is timed by
   ``make demo``'s set-up step; a second run finds both done and skips them);
2. the toy study (``studies/toy.yaml``): the four capabilities (toy-math, toy-multihop,
   toy-code, toy-instruct) over an N grid with one seed — train, generate, score every cell
   (resumable: an interrupted demo continues where it stopped). ``--quick`` runs
   ``studies/toy-quick.yaml``, ``--full`` the bigger ``studies/toy-full.yaml`` (both sizes);
3. the knowledge-injection experiment (``studies/knowledge-toy.yaml``; ``--full``: ``studies/knowledge-toy-full.yaml``);
4. fits, the style/substance analysis and the report.

Not handled: real models (use ``sftscale run studies/smollm2.yaml`` or a GPU study); machines
slower than a 2-core AVX2 CPU with a 63 GFLOP/s one-thread matmul, where the demo takes more than
its 10 minutes (``--quick`` shrinks the grid); a second seed (``seeds: [0, 1]`` in
``studies/toy.yaml``: about 1.9 times the study's time).
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console


def studies_dir() -> Path:
    """The repository's ``studies/`` folder (the demo configs live there)."""
    here = Path(__file__).resolve()
    for p in here.parents:
        if (p / "studies" / "toy.yaml").exists():
            return p / "studies"
    raise FileNotFoundError("studies/toy.yaml not found: run the demo from a clone of the sftscale repository")


def study_file(quick: bool = False, full: bool = False) -> Path:
    """The demo's study config: ``toy-quick.yaml``, ``toy-full.yaml`` or ``toy.yaml``."""
    if quick and full:
        from .io import InputError

        raise InputError(None, "choose one of --quick and --full", field="--full")
    return studies_dir() / ("toy-quick.yaml" if quick else "toy-full.yaml" if full else "toy.yaml")


def run_demo(out: Path, quick: bool = False, n_boot: int = 1000, progress: bool = True,
             full: bool = False, judge: str | None = None, judge_limit: int | None = 4) -> Path:
    from .config import load_study
    from .report import write_report
    from .study.runner import run_study

    con = Console(stderr=True)
    times: dict[str, float] = {}
    out.mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    from .models import load_model
    from .toyworld import toy_model_path  # the shipped models: set-up is only checking them

    cfg = load_study(study_file(quick, full))
    for m in cfg.models:
        toy_model_path(m.ref)
        load_model(m.ref)
    times["set-up (check shipped models)"] = time.perf_counter() - t

    t = time.perf_counter()
    con.rule("[bold]1/3 the toy study: accuracy against N")
    # the demo's own directory: cells whose spec changed (a newer sftscale: a task's version, a
    # toy model's defaults) are rerun rather than refused
    res = run_study(cfg, out=out / "study", progress=progress, rerun_changed=True)
    times["study (train + generate + score)"] = time.perf_counter() - t
    if res.counts.get("failed"):
        con.print(f"[red]{res.counts['failed']} cell(s) failed; see `sftscale status {res.run_dir}`")

    t = time.perf_counter()
    con.rule("[bold]2/3 knowledge injection")
    import torch

    from .knowledge import load_config, run_knowledge

    torch.set_num_threads(1)  # measured: one thread is steadier than two on a 2-core CPU
    kpath = studies_dir() / "knowledge-toy-quick.yaml"
    kfile = "knowledge-toy-full.yaml" if full else "knowledge-toy.yaml"  # --full: more people and seeds
    kcfg = load_config(kpath if quick and kpath.exists() else studies_dir() / kfile)
    run_knowledge(kcfg, out / "knowledge", reuse=[out / "study"])  # its start: a study cell
    times["knowledge experiment"] = time.perf_counter() - t

    if judge:  # `sftscale demo --judge`: error labels for the report (docs/judge.md)
        t = time.perf_counter()
        con.rule(f"[bold]judge: why did it fail? ({judge}, at most {judge_limit} per cell)")
        from .judge import judge_run_dir, make_client

        judge_run_dir(out / "study", make_client(judge), limit=judge_limit,
                      say=lambda line: con.print(line, markup=False, highlight=False))
        times["judge (error labels)"] = time.perf_counter() - t

    t = time.perf_counter()
    con.rule("[bold]3/3 fits, analysis, report")
    report = write_report(out / "study", knowledge_dir=out / "knowledge", n_boot=n_boot,
                          title="sftscale demo: the paper in miniature",
                          say=lambda line: con.print(line, markup=False, highlight=False))
    times["fits + report"] = time.perf_counter() - t

    from rich.table import Table

    tab = Table(title="demo timings (this machine)")
    tab.add_column("stage")
    tab.add_column("seconds", justify="right")
    for k, v in times.items():
        tab.add_row(k, f"{v:.1f}")
    study_s = sum(v for k, v in times.items() if not k.startswith("set-up"))
    tab.add_row("[bold]study total (without set-up)", f"[bold]{study_s:.1f}")
    con.print(tab)
    from .io import atomic_write_json

    atomic_write_json(out / "demo_timings.json", {**times, "study_total_s": study_s})
    print_headline(out / "study", con)
    print_kshot(out / "study", con)
    return report


def print_headline(run_dir: Path, con: Console) -> None:
    """The findings in the terminal: per task, where format saturates, accuracy at the smallest
    and largest N, the forecast at 2x, N for the targets (or "cannot forecast") and the backtest."""
    from .fit.answers import answers_table
    from .fit.run import read_analysis, read_fits
    from .rundir import layout

    try:
        fits = read_fits(layout.fits_path(run_dir))
    except (OSError, ValueError):
        return
    try:
        analysis = read_analysis(layout.analysis_path(run_dir))
    except (OSError, ValueError):
        analysis = None
    forecasts = fits.get("forecasts")
    if forecasts is not None and forecasts["curves"]:
        con.print(answers_table(forecasts, analysis, short=True,
                                title="what the demo measured and forecasts (details: the report)"))


def print_kshot(run_dir: Path, con: Console) -> None:
    """Per task: the best k-shot result of the base model and the crossover N from which
    finetuning beats it (``fit.kshot``); nothing when the study has no k-shot cells."""
    from .fit.kshot import crossover_text, kshot_table
    from .fit.run import read_fits
    from .report.data import primary_metrics
    from .rundir import layout
    from .rundir.export import load_tables

    metrics, _ = load_tables(run_dir)
    try:
        fits = dict(read_fits(layout.fits_path(run_dir)))
    except (OSError, ValueError):
        fits = {}
    rows = kshot_table(metrics, fits, primary_metrics(metrics)) if len(metrics) else []
    if rows:
        con.rule("[bold]examples in the prompt or in the weights (k-shot vs finetuning)")
    for r in rows:
        con.print(f"{r['task']}: {crossover_text(r)}", markup=False, highlight=False)
