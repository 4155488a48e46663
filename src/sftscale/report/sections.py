"""The report's sections, in page order: ``SECTIONS``, a list of functions ``ReportData -> str``.

A section returns an HTML fragment ("" to show nothing) and draws its own figures through
``ReportData.save_figure``. ``html.page`` joins them inside the page frame. Adding a section
is one function here and one entry in ``SECTIONS`` (the table builders it may reuse are in
``html``; sentences in ``findings``).

Not handled: sections that depend on one another's output (each reads ``ReportData`` only).
"""

from __future__ import annotations

import datetime as _dt
from typing import Callable

from . import figures
from .data import ReportData
from .findings import findings
from .fmt import esc, num
from .html import (
    _answers,
    _backtests,
    _examples,
    _fit_table,
    _held_fixed,
    _joint_table,
    _knowledge,
    _search_table,
    _style_table,
    img,
)

Section = Callable[[ReportData], str]


def header(d: ReportData) -> str:
    """Title, where the results come from, the question, and how the fits came to be."""
    from .. import __version__

    return "\n".join([
        f"<h1>{esc(d.title)}</h1><div class=sub>run directory <code>{esc(d.run_dir)}</code> · "
        f"sftscale {esc(__version__)} · {esc(_dt.datetime.now().strftime('%Y-%m-%d %H:%M'))}</div>",
        "<p>Does finetuning only teach a model the <b>format</b> of answers, or also their "
        "<b>substance</b>? Every checkpoint below was finetuned on N examples (nested, seeded subsets) "
        "and scored with format and correctness kept apart.</p>",
        fits_provenance(d)])


def fits_provenance(d: ReportData) -> str:
    """One line: the fits were reused (from which command, with which settings) or fitted here."""
    from ..fit.run import describe_settings

    st = d.fits.get("settings")
    if d.fit.reused:
        how = f"fits.json reused, written by {esc(d.fits.get('written_by', 'sftscale'))}"
    elif d.fit.refit_reason:
        how = f"fits.json refitted for this report because {esc(d.fit.refit_reason)}"
    else:
        how = "fits.json computed for this report"
    return f"<p class=sub>Fits: {how}" + (f" ({esc(describe_settings(st))})" if st else "") + ".</p>"


def answers(d: ReportData) -> str:
    if not d.forecasts:
        return ""
    it = d.items
    one_seed = {"n", "seed"} <= set(it.columns) and it.loc[it["n"] > 0, "seed"].nunique() == 1
    return _answers(d.forecasts, d.analysis, one_seed=one_seed)


def held_fixed(d: ReportData) -> str:
    return _held_fixed(d.run_dir)


def accuracy(d: ReportData) -> str:
    """The primary metric against N with the forecast's curve."""
    if not len(d.metrics):
        return ""
    fc = d.forecasts
    from ..rundir.layout import PAIR_SEP

    own = {t: m for t, m in d.metric_of.items() if PAIR_SEP not in str(t)}  # pairs: "Does it generalise?"
    fig = d.save_figure("accuracy", figures.accuracy_figure(d.metrics, fc or {}, own or d.metric_of), "accuracy_vs_n")
    return ("<h2>Accuracy against N</h2>" + img(fig["png"], "accuracy against N")
            + "<p class=sub>Points: mean over seeds (error bar ±1 sd, faint dots single seeds). "
            "Solid line: the forecast's members, weighted, through the measured points; dashed line "
            f"and band (grey background): the forecast to 4× the largest N with its "
            f"{num(100 * (fc['level'] if fc else 0.9))}% interval for the curve's value. No line where "
            "the curve cannot be forecast."
            + (" Curves of another evaluated task (T→E) are drawn beside their training task's in "
               "\"Does it generalise?\"." if len(own) < len(d.metric_of) else "") + "</p>")


def transfer(d: ReportData) -> str:
    """Evaluation on other tasks (``eval_tasks``): each training task beside its other tasks
    (figure), the accuracy gained from N = 0 to the largest N per pair (table), in words."""
    from .transfer import pairs, transfer_rows, transfer_table

    ps = pairs(d.metrics)
    if not ps:
        return ""
    order: dict[str, str] = {}
    for train, _, pair in ps:
        for t in (train, pair):
            if t in d.metric_of:
                order[t] = d.metric_of[t]
    fig = d.save_figure("transfer", figures.accuracy_figure(d.metrics, d.forecasts or {}, order),
                        "transfer_vs_n")
    rows = transfer_rows(d.metrics, d.items)
    return ("<h2>Does it generalise? Other tasks</h2>" + img(fig["png"], "in distribution and other tasks against N")
            + "<p class=sub>Each training task (left) beside the task its cells were also evaluated "
            "on (right, <code>task→other</code>), with their forecasts as above.</p>"
            + transfer_table(rows)
            + "<p class=sub>Accuracy: share of correct items, seeds pooled; interval: 95% "
            "Agresti-Caffo interval of the difference over items. In words: Details.</p>")


def backtests(d: ReportData) -> str:
    return _backtests(d.forecasts) if d.forecasts else ""


def style(d: ReportData) -> str:
    """Format versus substance errors against N (figure and table)."""
    groups = [g for g in d.analysis["groups"] if "format_error" in g]
    if not groups:
        return ""
    fig = d.save_figure("style", figures.style_substance_figure(groups), "style_vs_substance")
    return ("<h2>Style versus substance</h2>" + img(fig["png"], "format and substance errors")
            + _style_table(d.analysis))


def token_shift(d: ReportData) -> str:
    """Shifted tokens against N, format vs content, per task and model (report/shift.py)."""
    from .shift import shift_figure, shift_section

    if not d.token_shift or not d.token_shift.get("groups"):
        return ""
    fig = d.save_figure("token_shift", shift_figure(d.token_shift), "token_shift_vs_n")
    return shift_section(d.token_shift, fig, img)


def judge(d: ReportData) -> str:
    """Errors against N split by a judge's labels beside the rule's split (DIR/judge.json)."""
    if not d.judge:
        return ""
    from .judge import judge_figure, judge_html

    fig = d.save_figure("judge", judge_figure(d.judge), "judge_labels") if d.judge.get("groups") else None
    return judge_html(d.judge, fig)


def details(d: ReportData) -> str:
    """The findings in sentences (``findings``)."""
    from .transfer import transfer_rows, transfer_sentences

    other = transfer_sentences(transfer_rows(d.metrics, d.items)) if len(d.items) else []
    return ("<h2>Details</h2>\n" + findings(d.fits, d.analysis, d.knowledge)
            + "".join(f"<p>{esc(s)}</p>" for s in other))


def fit_table(d: ReportData) -> str:
    return _fit_table(d.fits)


def joint_table(d: ReportData) -> str:
    return _joint_table(d.fits)


def search_table(d: ReportData) -> str:
    return _search_table(d.metrics)


def knowledge(d: ReportData) -> str:
    if not d.knowledge:
        return ""
    fig = None
    if d.knowledge.get("rows"):
        fig = d.save_figure("knowledge", figures.knowledge_figure(d.knowledge), "knowledge")
    return _knowledge(d.knowledge, fig)


def examples(d: ReportData) -> str:
    return _examples(d.examples)


def kshot(d: ReportData) -> str:
    """k-shot baselines beside the finetuning curve, format and substance apart, and the
    crossover N (``report.kshot``, ``fit.kshot``)."""
    from .kshot import kshot_figure, kshot_html

    if not d.kshot:
        return ""
    fig = d.save_figure("kshot", kshot_figure(d.metrics, d.kshot), "kshot_vs_finetuning")
    return kshot_html(d.kshot, fig)


def files(d: ReportData) -> str:
    return ("<h2>Files</h2><p class=sub>fits.json, analysis.json, the figures as PNG and SVG "
            "(report/), study.sqlite, export.csv, items.jsonl.</p>")


SECTIONS: list[Section] = [header, answers, held_fixed, accuracy, transfer, backtests, style, token_shift, judge,
                           details, fit_table, joint_table, search_table, knowledge, examples, files]
SECTIONS.insert(SECTIONS.index(style) + 1, kshot)  # after style: format and substance again


__all__ = ["SECTIONS", "Section", "accuracy", "answers", "backtests", "details", "examples", "files",
           "fit_table", "fits_provenance", "header", "held_fixed", "joint_table", "judge", "knowledge", "kshot",
           "search_table", "style", "token_shift", "transfer"]
