"""``sftscale fit``: scaling-law fits (fits.json) and the style/substance analysis (analysis.json).

Input: a long CSV (model, task, metric, n, value[, seed, n_items]) from any tool, or a run
directory (its store, or ``export.csv`` / ``items.jsonl`` there). Outputs go beside the CSV or
into the run directory (``fits.json``, ``analysis.json``) unless ``--out`` names a file for
fits.json: then the analysis is written beside it, named after it (``--out X/f.json`` ->
``X/f.analysis.json``, ``fit.run.analysis_path``), and nothing else. The work is
``fit.run.fit_run_dir``, which ``sftscale report`` shares: fits.json records the settings and
a hash of the inputs, so the report reuses it while the results are unchanged.

A file at one of those paths that sftscale did not write (not a fits or analysis document) is
never overwritten: the command stops before any work (exit 2). All options and inputs are
checked before fitting: ``--target`` must be finite (here) and, for a rate metric
(``fit.data.is_rate``), strictly between 0 and 1 (``fit.run.check_settings``); ``--at`` a
finite N > 0; rate values in [0, 1]; duplicate rows are an error or dropped with a warning
(``fit.data``). Above ``fit.progress.SUMMARY_OVER`` curves it prints a summary instead of a
table row per fit (``fit.progress.print_summary``).

Per-item scores (``--items``, or found in the run directory) are used only for the curves of
the table: rows for other curves are dropped, and every mismatch (items for no curve, curves
without items, items without ``correct``/``format_ok``) is a warning on stderr, also listed
under ``input_warnings`` in fits.json. analysis.json covers only the table's curves.

Not handled: plotting (the report does it), fitting several metrics with different forms
in one call (run the command once per metric).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from ..schema import AnalysisDoc, FitsDoc


def register(app: typer.Typer) -> None:
    @app.command("fit")
    def fit_cmd(
        src: Path = typer.Argument(..., help="long CSV (model,task,metric,n,value[,seed,n_items]) or run dir"),
        metric: Optional[str] = typer.Option(None, "--metric", "-m", help="metric to fit (default: all)"),
        form: list[str] = typer.Option([], "--form", "-f",
                                       help="power, saturating, saturating_offset, loglinear (repeat or "
                                            "comma-separate; default all)"),
        target: list[float] = typer.Option([], "--target", "-t", help="metric value to reach: N needed"),
        at: list[float] = typer.Option([], "--at", help="predict the metric at this N"),
        items: Optional[Path] = typer.Option(None, "--items", help="per-item scores (JSONL or CSV)"),
        n_boot: int = typer.Option(1000, "--n-boot", help="bootstrap replicates"),
        seed: int = typer.Option(0, "--seed", help="bootstrap seed"),
        level: float = typer.Option(0.95, "--level", help="interval level of the fits' parameters"),
        forecast_level: float = typer.Option(0.9, "--forecast-level",
                                             help="interval level of the forecasts (conformal, backtested)"),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="fits.json path"),
        analysis: bool = typer.Option(True, "--analysis/--no-analysis",
                                      help="also write analysis.json when items have format_ok/correct"),
        workers: Optional[int] = typer.Option(None, "--workers", "-j",
                                              help="processes for more than 40 curves (default: the CPUs, "
                                                   "at most 8); the numbers do not depend on it"),
    ) -> None:
        """Fit scaling laws with bootstrap intervals; write fits.json and print a table."""
        from ..fit.run import FitSettings, fit_run_dir
        from ..io import InputError

        if not 0 < level < 1:
            raise InputError(None, f"--level must be in (0, 1), got {level}", field="level")
        if not 0 < forecast_level < 1:
            raise InputError(None, f"--forecast-level must be in (0, 1), got {forecast_level}",
                             field="forecast-level")
        for t in target:
            if not math.isfinite(t):
                raise InputError(None, f"{t} is not a metric value to reach (a finite number, "
                                 "e.g. 0.8)", field="--target")
        for a in at:
            if not (a > 0 and math.isfinite(a)):
                raise InputError(None, f"{a:g} is not a number of examples (a finite number "
                                 "> 0)", field="--at")
        if workers is not None and workers < 1:
            raise InputError(None, f"--workers must be >= 1, got {workers}", field="--workers")
        if n_boot < 0:
            raise InputError(None, f"--n-boot must be >= 0, got {n_boot}", field="n-boot")
        forms = tuple(f.strip() for x in form for f in x.split(",") if f.strip()) or None
        settings = FitSettings(forms=forms, metric=metric, targets=tuple(target), at=tuple(at), n_boot=n_boot,
                               seed=seed, level=level, forecast_level=forecast_level, analysis=analysis)
        res = fit_run_dir(src, settings, items=items, out=out, warn=lambda w: _warn([w]), workers=workers)
        from ..fit.progress import SUMMARY_OVER, n_curves, print_summary

        big = n_curves(res.inputs.long, metric) > SUMMARY_OVER  # a summary, not a row per fit
        (print_summary if big else _print)(res.fits, res.analysis, res.fits_path, res.analysis_path)


def _warn(lines: list[str]) -> None:
    """Input warnings, loudly, on stderr (before the fits, which take a while)."""
    import sys

    for w in lines:
        print(f"WARNING: {w}", file=sys.stderr)


def _fmt(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _print(doc: FitsDoc, analysis_doc: AnalysisDoc | None, path: Path, analysis_path: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title=f"scaling-law fits ({int(round(100 * (doc['level'] or 0)))}% intervals; * = chosen: 2+ dof, "
                    "identified, lowest AICc or leave-one-N-out error; see fits.json notes)")
    for c in ("curve", "form", "params [interval]", "R²", "AICc", "LOO rmse", "dof"):
        t.add_column(c, overflow="fold")
    for f in doc["fits"]:
        ps = "\n".join(f"{k}={_fmt(v)} [{_fmt((f['param_ci'].get(k) or [None])[0])}, "
                       f"{_fmt((f['param_ci'].get(k) or [None, None])[1])}]" for k, v in f["params"].items())
        t.add_row(f"{f['model']}/{f['task']}/{f['metric']}", f["form"] + (" *" if f["best"] else ""), ps,
                  _fmt(f["r2"]), _fmt(f["aicc"], 4) if f["aicc"] is not None else f"{_fmt(f['aic'], 4)} (AIC)",
                  _fmt(f["loo"]["rmse"]), str(f["dof"]))
    con.print(t)
    for f in doc["fits"]:
        for w in f["warnings"]:
            con.print(f"[yellow]warning[/] {f['model']}/{f['task']}/{f['metric']} {f['form']}: {w}",
                      markup=True, highlight=False)
    from ..fit.answers import answers_table
    if "forecasts" in doc and doc["forecasts"]["curves"]:
        con.print(answers_table(doc["forecasts"], analysis_doc))
    from ..fit.joint import describe_difference
    for j in doc.get("joint", []):
        for d in j["differences"]:
            con.print(f"{j['task']}/{j['metric']} ({j['form']}): {describe_difference(d)}"
                      + ("" if d["identified"] else " (not identified)"))
    if analysis_doc:
        for g in analysis_doc["groups"]:
            if "style_saturation_n" in g:
                con.print(f"{g['model']}/{g['task']}: style saturation N = {g['style_saturation_n']['n']}, "
                          f"accuracy plateau N = {g['accuracy_plateau_n']['n']}"
                          f"{' (still rising)' if g['accuracy_plateau_n']['still_rising'] else ''}, "
                          f"r²(total, substance) = {_fmt(g['r2_total_vs_substance']['r2'])}")
    con.print(f"wrote {path}" + (f" and {analysis_path}" if analysis_doc else ""))
