"""``sftscale fit``: scaling-law fits (fits.json) and the style/substance analysis (analysis.json).

Input: a long CSV (model, task, metric, n, value[, seed, n_items]) from any tool, or a run
directory (``export.csv`` / ``items.jsonl`` there, or the study exporter). Outputs go beside
the CSV or into the run directory (``fits.json``, ``analysis.json``) unless ``--out`` names a
file for fits.json: then the analysis is written beside it, named after it
(``--out X/f.json`` -> ``X/f.analysis.json``), and nothing else. A file at one of those
paths that sftscale did not write (not a fits or analysis document) is never overwritten: the
command stops before any work (exit 2). All options and inputs are checked before fitting:
``--target`` must be finite and, for a rate metric (``fit.data.is_rate``), strictly between 0
and 1; ``--at`` a finite N > 0; rate values in [0, 1]; duplicate rows are an error or dropped
with a warning (``fit.data``).

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
    ) -> None:
        """Fit scaling laws with bootstrap intervals; write fits.json and print a table."""
        from ..fit.data import load_inputs, match_items
        from ..fit.fitting import fits_document
        from ..io import InputError, atomic_write_json

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
        if n_boot < 0:
            raise InputError(None, f"--n-boot must be >= 0, got {n_boot}", field="n-boot")
        forms = [f.strip() for x in form for f in x.split(",") if f.strip()] or None
        fits_path, analysis_path = _output_paths(src, out)  # refused before any work
        long_df, items_df, out_dir = load_inputs(src, items)
        asked = long_df if metric is None else long_df[long_df["metric"] == metric]
        if metric is not None and not len(asked):
            raise InputError(src, f"no rows of metric {metric!r} (the table has: "
                             f"{', '.join(sorted(set(long_df['metric'])))})", field="--metric")
        _check_targets(target, asked)
        read_warnings = long_df.attrs.get("input_warnings", []) + (
            items_df.attrs.get("input_warnings", []) if items_df is not None else [])
        items_df, warnings = match_items(asked if len(asked) else long_df, items_df,
                                         items if items is not None else "of the run directory")
        warnings = read_warnings + warnings
        if analysis and items_df is not None and not {"format_ok", "correct"} <= set(items_df.columns):
            warnings.append("no analysis.json: the per-item scores need both 'format_ok' and "
                            "'correct' columns")
        _warn(warnings)
        from ..fit.progress import SUMMARY_OVER, n_curves, print_summary, run_fits
        # fit_table, joint_fits and forecast_table, curve by curve under a progress bar
        results, joint, forecasts = run_fits(long_df, items_df, metric=metric, forms=forms,
                                             n_boot=n_boot, seed=seed, level=level,
                                             targets=target, forecast_level=forecast_level)
        doc = fits_document(results, targets=target, predict_at=at, source=str(src), joint=joint,
                            forecasts=forecasts)
        if warnings:
            doc["input_warnings"] = warnings
        analysis_doc = None
        if analysis and items_df is not None and {"format_ok", "correct"} <= set(items_df.columns):
            from ..fit.analysis import style_substance
            analysis_doc = style_substance(items_df, n_boot=n_boot, seed=seed, level=level)
        atomic_write_json(fits_path, doc)
        if analysis_doc is not None:
            atomic_write_json(analysis_path, analysis_doc)
        big = n_curves(long_df, metric) > SUMMARY_OVER  # a summary, not a row per fit
        (print_summary if big else _print)(doc, analysis_doc, fits_path, analysis_path)


def _output_paths(src: Path, out: Path | None) -> tuple[Path, Path]:
    """(fits.json, analysis.json) paths: ``--out`` and ``<its stem>.analysis.json`` beside it,
    else ``fits.json`` and ``analysis.json`` in the run directory or beside the CSV. A file
    there that sftscale did not write (not a fits/analysis document) is never overwritten:
    InputError before any work."""
    from ..io import InputError, check_owned, json_with_keys

    if out is not None:
        if out.is_dir():
            raise InputError(out, "is a directory; --out takes the path of the fits.json to "
                             "write", field="--out")
        fits_path, analysis_path = out, out.with_name(f"{out.stem}.analysis.json")
    else:
        where = src if src.is_dir() else src.parent
        fits_path, analysis_path = where / "fits.json", where / "analysis.json"
    check_owned(fits_path, json_with_keys("version", "fits"), "a fits.json of sftscale fit",
                field="--out" if out is not None else None)
    check_owned(analysis_path, json_with_keys("groups"), "an analysis.json of sftscale fit",
                field="--out" if out is not None else None)
    return fits_path, analysis_path


def _check_targets(targets: list[float], rows) -> None:
    """Each ``--target`` within the range of every fitted metric: strictly between 0 and 1
    for a rate (``fit.data.is_rate``: 0 and 1 are never reached by a forecast)."""
    from ..fit.data import is_rate
    from ..io import InputError

    rates = sorted(m for m in set(rows["metric"]) if is_rate(m))
    for t in targets:
        if rates and not 0 < t < 1:
            raise InputError(None, f"{t:g} is outside the range of {rates[0]!r}: a rate's target "
                             "lies strictly between 0 and 1 (e.g. 0.8 for 80%)", field="--target")


def _warn(lines: list[str]) -> None:
    """Input warnings, loudly, on stderr (before the fits, which take a while)."""
    import sys

    for w in lines:
        print(f"WARNING: {w}", file=sys.stderr)


def _fmt(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _print(doc: dict, analysis_doc: dict | None, path: Path, analysis_path: Path) -> None:
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
    if (doc.get("forecasts") or {}).get("curves"):
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
