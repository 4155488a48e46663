"""``sftscale report DIR`` and ``sftscale demo [--out DIR]``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def report_cmd(
    run_dir: Path = typer.Argument(..., help="run directory of a study"),
    knowledge: Optional[Path] = typer.Option(None, "--knowledge", help="knowledge run dir (default: DIR/knowledge)"),
    n_boot: int = typer.Option(1000, "--n-boot", help="bootstrap replicates (when it fits)"),
) -> None:
    """Write DIR/report/report.html (self-contained) and the figures as PNG and SVG.

    A fits.json in DIR written for the same results (by `sftscale fit`, with any settings) is
    reused; otherwise the report fits and says why on stderr (--n-boot applies then)."""
    import sys

    from ..report import write_report

    print(write_report(run_dir, knowledge_dir=knowledge, n_boot=n_boot,
                       say=lambda line: print(line, file=sys.stderr)))


def demo_cmd(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="where the demo writes its run directories"),
    quick: bool = typer.Option(False, "--quick",
                               help="a smaller grid: one seed, four N > 0 (about 4 minutes on 2 cores)"),
    full: bool = typer.Option(False, "--full", help="the bigger grid (studies/toy-full.yaml; about 30 minutes)"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no live display"),
    judge: bool = typer.Option(False, "--judge", help="also label the wrong responses with a judge model "
                               "(docs/judge.md; not in the default demo: slow on a CPU)"),
    judge_model: str = typer.Option("smollm2-135m-instruct", "--judge-model", help="the judge for --judge"),
    judge_limit: int = typer.Option(4, "--judge-limit", min=1, help="wrong responses judged per cell"),
) -> None:
    """The paper in miniature: toy study + knowledge injection + fits + report."""
    from ..demo import run_demo

    p = run_demo(out, quick=quick, full=full, progress=not no_progress,
                 judge=judge_model if judge else None, judge_limit=judge_limit)
    print(f"\nreport: {p.resolve()}")


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
    app.command("demo")(demo_cmd)
