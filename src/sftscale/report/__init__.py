"""``sftscale report DIR``: a self-contained ``report.html`` plus PNG and SVG figures.

Reads only files in the run directory: ``study.sqlite`` (through
``study.export.load_tables``), the cells' sample files, ``knowledge/table.json`` when the
knowledge experiment ran, and ``fits.json`` / ``analysis.json`` when present (they are
computed and written here otherwise). Figures are embedded as base64 PNG so the page opens
offline with no other file; the SVGs sit beside it for papers.

Not handled: comparing several run directories in one report, interactive plots.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Sequence

from ..io import atomic_write_json, atomic_write_text

DEFAULT_TARGETS = (0.5, 0.8)


def primary_metrics(metrics: Any) -> dict[str, str]:
    """Task -> the metric plotted for it (the task's primary metric when it was recorded)."""
    from ..tasks import get_task

    out = {}
    for task in sorted(metrics["task"].unique()):
        have = set(metrics.loc[metrics["task"] == task, "metric"])
        try:
            pm = get_task(str(task).split("@")[0]).primary_metric
        except Exception:  # a task label that is not a registered name
            pm = "accuracy"
        out[task] = pm if pm in have else ("accuracy" if "accuracy" in have else sorted(have)[0])
    return out


def compute_analysis(run_dir: Path, n_boot: int = 1000, targets: Sequence[float] = DEFAULT_TARGETS,
                     seed: int = 0, forecast_level: float = 0.9, out_dir: Path | None = None) -> dict:
    """Fits (primary metric of each task, all forms; a joint fit across models when there are
    several) and the style/substance analysis.

    Writes ``fits.json`` and ``analysis.json`` in ``out_dir`` (default: the run directory) and returns
    ``{"metrics", "items", "fits", "fits_doc", "analysis", "metric_of"}``.
    """
    import pandas as pd

    from ..fit.analysis import style_substance
    from ..fit.fitting import fit_table, fits_document
    from ..fit.forecast import forecast_table
    from ..fit.joint import joint_fits
    from ..study.export import load_tables

    metrics, items = load_tables(run_dir)
    metric_of = primary_metrics(metrics)
    fits, joint, primary, primary_items = [], [], [], []
    for task, met in metric_of.items():
        rows = metrics[(metrics["task"] == task) & (metrics["metric"] == met)]
        if rows["n"].nunique() < 2:
            continue
        its = items[items["task"] == task].copy() if len(items) else None
        if its is not None and met not in ("accuracy",):
            its = None  # item-level 'correct' is the primary metric only when it is 'accuracy'
        fits += fit_table(rows, items=its, n_boot=n_boot, seed=seed)
        primary.append(rows)
        if its is not None:
            primary_items.append(its)
        if rows["model"].nunique() > 1:  # exponents of the model sizes, paired over items
            joint += joint_fits(rows, items=its, n_boot=n_boot, seed=seed)
    predict_at = sorted({float(n) for n in metrics["n"].unique()})  # forms describe the grid; forecasts go beyond
    forecasts = None
    if primary:  # one calibration over every task's curve of the study (same metric pooled)
        forecasts = forecast_table(pd.concat(primary), pd.concat(primary_items) if primary_items else None,
                                   targets=targets, level=forecast_level, n_boot=n_boot, seed=seed)
    doc = fits_document(fits, targets=targets, predict_at=predict_at, source=str(run_dir), joint=joint,
                        forecasts=forecasts)
    dest = Path(out_dir) if out_dir is not None else run_dir
    atomic_write_json(dest / "fits.json", doc)
    analysis = style_substance(items, n_boot=n_boot, seed=seed) if len(items) else {"groups": []}
    atomic_write_json(dest / "analysis.json", analysis)
    return {"metrics": metrics, "items": items, "fits": fits, "fits_doc": doc,
            "analysis": analysis, "metric_of": metric_of}


def write_report(run_dir: str | Path, knowledge_dir: str | Path | None = None, n_boot: int = 1000,
                 targets: Sequence[float] = DEFAULT_TARGETS, title: str | None = None) -> Path:
    """Compute fits and analysis, draw the figures, write ``DIR/report/report.html``.

    All or nothing: every output is written under ``DIR/.report.tmp-<pid>/`` and moved into
    place at the end (``staged_outputs``), so a report that fails midway (a damaged samples
    file, Ctrl-C) leaves ``fits.json``, ``analysis.json`` and ``report/`` as they were."""
    run_dir = Path(run_dir)
    with staged_outputs(run_dir) as stage:
        _write_report(run_dir, stage, knowledge_dir, n_boot, targets, title)
    return run_dir / "report" / "report.html"


STAGE_PREFIX = ".report.tmp-"
#: what a report writes into the run directory, moved there from the stage in this order
STAGED = ("fits.json", "analysis.json", "report")


@contextlib.contextmanager
def staged_outputs(run_dir: Path):
    """A fresh stage directory inside ``run_dir`` (same filesystem: renames are atomic);
    on success its ``STAGED`` entries replace those of ``run_dir`` (a directory by two
    renames: the old one aside, the new one in), on any failure nothing is moved. The stage
    is removed either way; stages left by killed reports are removed at the next start."""
    import os

    from ..io import remove_path

    for old in run_dir.glob(STAGE_PREFIX + "*"):
        pid = old.name[len(STAGE_PREFIX):]
        if not (pid.isdigit() and _alive(int(pid))):
            remove_path(old)
    stage = run_dir / f"{STAGE_PREFIX}{os.getpid()}"
    try:
        remove_path(stage)
        stage.mkdir()
    except OSError as e:
        from ..io import InputError

        raise InputError(run_dir, f"cannot write in the run directory ({e.strerror}); the "
                         "report is written into it") from None
    try:
        yield stage
        for name in STAGED:
            new, dest = stage / name, run_dir / name
            if not new.exists():
                continue
            if new.is_dir() and dest.exists():
                os.replace(dest, stage / f"{name}.old")
            os.replace(new, dest)
    finally:
        remove_path(stage)


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _write_report(run_dir: Path, stage: Path, knowledge_dir: str | Path | None, n_boot: int,
                  targets: Sequence[float], title: str | None) -> None:
    from . import figures, html, samples

    t0 = time.perf_counter()
    res = compute_analysis(run_dir, n_boot=n_boot, targets=targets, out_dir=stage)
    out = stage / "report"
    figs: dict[str, dict[str, Path]] = {}
    if len(res["metrics"]):
        figs["accuracy"] = figures.save(
            figures.accuracy_figure(res["metrics"], res["fits_doc"].get("forecasts") or {}, res["metric_of"]),
            out, "accuracy_vs_n")
    groups = [g for g in res["analysis"].get("groups", []) if "format_error" in g]
    if groups:
        figs["style"] = figures.save(figures.style_substance_figure(groups), out, "style_vs_substance")
    ktable = _knowledge_table(run_dir, knowledge_dir)
    if ktable and ktable.get("rows"):
        figs["knowledge"] = figures.save(figures.knowledge_figure(ktable), out, "knowledge")
    examples = samples.sample_responses(run_dir, k=3)
    page = html.render(title=title or f"sftscale report · {run_dir.name}", run_dir=run_dir, res=res,
                       figs=figs, knowledge=ktable, examples=examples, targets=targets)
    out.mkdir(exist_ok=True)
    atomic_write_text(out / "report.html", page)
    atomic_write_json(out / "report_meta.json", {"seconds": time.perf_counter() - t0,
                                                  "figures": {k: {e: p.name for e, p in v.items()}
                                                              for k, v in figs.items()}})


def _knowledge_table(run_dir: Path, knowledge_dir: str | Path | None) -> dict | None:
    """The knowledge experiment's table.json: in ``knowledge_dir`` (or its ``knowledge/``), else
    beside the study (``DIR/knowledge`` or ``DIR/../knowledge``, as the demo lays them out)."""
    import json

    dirs = ([Path(knowledge_dir)] if knowledge_dir else []) + [run_dir / "knowledge", run_dir.parent / "knowledge"]
    for d in dirs:
        for p in (d / "table.json", d / "knowledge" / "table.json"):
            if p.exists():
                return json.loads(p.read_text())
    return None
