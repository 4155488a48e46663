"""Everything a report shows, read once: ``ReportData``, the one input of every report section.

``load_report_data(run_dir, ...)`` reads the store's tables (``rundir.export.load_tables``),
gets fits.json and analysis.json through ``fit.run.fit_run_dir`` (reused when written for the
same results, by ``sftscale fit`` or an earlier report, whatever their settings; else
refitted, with one line to ``say`` on why), the knowledge experiment's table when it ran, and
a few sample responses, and the k-shot baselines (``fit.kshot``; the other sections' tables hold the
finetuning curve's rows only). Sections (``report.sections``) read it and save their figures through
``ReportData.save_figure``.

Not handled: several run directories in one report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from ..fit.kshot import kshot_table
from ..fit.run import FitOutcome, FitSettings, fit_run_dir, inputs_from_tables
from ..rundir import layout
from ..rundir.export import load_tables, split_kshot
from ..schema import AnalysisDoc, FitsDoc, ForecastsDoc
from .samples import sample_responses

DEFAULT_TARGETS = (0.5, 0.8)

def empty_analysis() -> AnalysisDoc:
    """What the sections read when there is no analysis (no per-item format_ok/correct)."""
    return {"version": 1, "level": 0.95, "n_boot": 0, "definitions": {}, "groups": []}


@dataclass
class ReportData:
    """What the report's sections read (and the figures they saved)."""

    run_dir: Path
    out_dir: Path  # DIR/report: the page and its figures
    title: str
    metrics: pd.DataFrame  # the store's long table as exported (with search_* columns after a search)
    items: pd.DataFrame  # the store's per-item table
    metric_of: dict[str, str]  # task -> the metric drawn for it (its primary metric)
    fits: FitsDoc
    analysis: AnalysisDoc  # ``empty_analysis()`` without per-item format_ok/correct
    fit: FitOutcome  # how fits.json came to be: reused or fitted, and why (``fit.note``)
    knowledge: dict | None = None  # the knowledge experiment's table.json
    examples: list[dict] = field(default_factory=list)  # ``samples.sample_responses``
    kshot: list[dict] = field(default_factory=list)  # k-shot baselines and crossovers (fit.kshot)
    figures: dict[str, dict[str, Path]] = field(default_factory=dict)  # key -> {"png", "svg"} paths
    token_shift: dict | None = None  # tokenshift.summary.summarise of the cells' shift/ (None: none)
    judge: dict | None = None  # DIR/judge.json (sftscale judge), None when it was not run

    @property
    def forecasts(self) -> ForecastsDoc | None:
        return self.fits.get("forecasts")

    def save_figure(self, key: str, fig: Any, stem: str) -> dict[str, Path]:
        """Save a matplotlib figure as ``out_dir/stem.png`` and ``.svg``; listed in report_meta.json."""
        from .figures import save

        self.figures[key] = save(fig, self.out_dir, stem)
        return self.figures[key]


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


def report_settings(metric_of: dict[str, str], n_boot: int = 1000,
                    targets: Sequence[float] = DEFAULT_TARGETS) -> FitSettings:
    """What a report fits when there is no fits.json to reuse: each task's primary metric, every
    default form, the targets, the forms' predictions at the measured N."""
    return FitSettings(metric_of=metric_of, targets=tuple(targets), at="grid", n_boot=n_boot)


def load_report_data(run_dir: str | Path, knowledge_dir: str | Path | None = None, n_boot: int = 1000,
                     targets: Sequence[float] = DEFAULT_TARGETS, title: str | None = None,
                     say: Callable[[str], None] | None = None, stage: Path | None = None) -> ReportData:
    """Read (and where needed fit) everything the report shows; ``say`` gets the fits line.
    With ``stage`` (``report.staged_outputs``) a refitted fits.json, a recomputed
    analysis.json and the report's directory go there instead of into the run directory."""
    run_dir = Path(run_dir)
    metrics, items = load_tables(run_dir)
    metric_of = primary_metrics(metrics) if len(metrics) else {}
    all_metrics, (metrics, _), (items, _) = metrics, split_kshot(metrics), split_kshot(items)
    inputs = inputs_from_tables(metrics, items, run_dir)
    fit = fit_run_dir(run_dir, report_settings(metric_of, n_boot, targets), reuse=True, inputs=inputs,
                      warn=say, written_by="sftscale report", write_to=stage)
    if fit.reused and say is not None and fit.note:
        say(fit.note)
    return ReportData(run_dir=run_dir, out_dir=layout.report_dir(stage if stage is not None else run_dir),
                      title=title or f"sftscale report · {run_dir.name}", metrics=metrics, items=items,
                      metric_of=metric_of, fits=fit.fits, analysis=fit.analysis or empty_analysis(), fit=fit,
                      knowledge=knowledge_table(run_dir, knowledge_dir), examples=sample_responses(run_dir, k=3),
                      kshot=kshot_table(all_metrics, dict(fit.fits), metric_of),
                      token_shift=token_shift_summary(run_dir, n_boot),
                      judge=judge_doc(run_dir))


def token_shift_summary(run_dir: Path, n_boot: int = 1000) -> dict | None:
    """The cells' token shift, summarised as ``sftscale shift`` writes it (None without data)."""
    from ..tokenshift.summary import collect, summarise

    records = list(collect(run_dir))
    return summarise(records, n_boot=n_boot) if records else None


def judge_doc(run_dir: Path) -> dict | None:
    """DIR/judge.json as written by ``sftscale judge``; None when absent or unreadable."""
    p = layout.judge_json_path(run_dir)
    try:
        doc = json.loads(p.read_text(encoding="utf-8")) if p.exists() else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and "groups" in doc else None


def knowledge_table(run_dir: Path, knowledge_dir: str | Path | None) -> dict | None:
    """The knowledge experiment's table.json: in ``knowledge_dir`` (or its ``knowledge/``), else
    beside the study (``DIR/knowledge`` or ``DIR/../knowledge``, as the demo lays them out)."""
    dirs = ([Path(knowledge_dir)] if knowledge_dir else []) + [run_dir / layout.KNOWLEDGE,
                                                                   run_dir.parent / layout.KNOWLEDGE]
    for d in dirs:
        for p in (d / "table.json", d / layout.KNOWLEDGE / "table.json"):
            if p.exists():
                return json.loads(p.read_text())
    return None


__all__ = ["DEFAULT_TARGETS", "ReportData", "empty_analysis", "judge_doc", "knowledge_table", "load_report_data",
           "primary_metrics", "report_settings", "token_shift_summary"]
