"""Transfer to other tasks (a study's ``eval_tasks``): the table, the figure and the sentences.

Reads the exported tables' (trained on, evaluated on) pairs: rows whose task is
``T→E`` (``rundir.layout.PAIR_SEP``) and the cell's own rows of ``T``. For each model and
pair, at N = 0 and at the largest N of the curve: accuracy (the share of correct items,
seeds pooled) and format rate, and the gain from N = 0 with a 95% normal interval over items
(the two proportions' standard errors added in quadrature; seeds pooled, so the interval
counts item noise, not the subsets' luck: the bootstrap of ``fit`` has both).

Not handled: pairs without per-item rows (no interval then: "-"), several eval metrics
(accuracy is ``correct``; tasks whose primary metric is another are shown on ``correct``).
"""

from __future__ import annotations

import math
from typing import Any

from ..rundir.layout import PAIR_SEP


def _num(x: float, signed: bool = False) -> str:
    """``fmt.num``, with a "+" before a positive value when ``signed``; "-" for NaN."""
    from .fmt import num

    if x is None or math.isnan(x):
        return "-"
    return ("+" if signed and x > 0 else "") + num(x)


def pairs(metrics: Any) -> list[tuple[str, str, str]]:
    """(trained on, evaluated on, the pair's task column) of every pair in the table."""
    out = []
    for t in sorted(metrics["task"].unique()) if len(metrics) else []:
        if PAIR_SEP in str(t):
            a, b = str(t).split(PAIR_SEP, 1)
            out.append((a, b, str(t)))
    return out


def _share(items: Any, model: str, task: str, n: int, col: str) -> tuple[float, int]:
    g = items[(items["model"] == model) & (items["task"] == task) & (items["n"] == n)][col].dropna()
    return (float(g.astype(float).mean()) if len(g) else math.nan), int(len(g))


def _gain(p0: float, n0: int, p1: float, n1: int) -> tuple[float, float, float]:
    """The difference of two proportions and its 95% Agresti-Caffo interval (one success and
    one failure added to each group: sensible at 0/n and n/n, where the plain normal
    interval has width 0), clipped to [-1, 1]."""
    d = p1 - p0
    if not n0 or not n1:
        return d, math.nan, math.nan
    a0, a1 = (p0 * n0 + 1) / (n0 + 2), (p1 * n1 + 1) / (n1 + 2)
    se = math.sqrt(a0 * (1 - a0) / (n0 + 2) + a1 * (1 - a1) / (n1 + 2))
    return d, max(-1.0, a1 - a0 - 1.96 * se), min(1.0, a1 - a0 + 1.96 * se)


def transfer_rows(metrics: Any, items: Any) -> list[dict[str, Any]]:
    """One row per model and curve of a pair (the training task's own, then the other task's)."""
    rows = []
    for train, ev, pair in pairs(metrics):
        for model in sorted(metrics.loc[metrics["task"] == pair, "model"].unique()):
            for task, on in ((train, train), (pair, ev)):
                ns = sorted(items.loc[(items["model"] == model) & (items["task"] == task), "n"].unique())
                if not ns:
                    continue
                lo_n, hi_n = ns[0], ns[-1]
                p0, k0 = _share(items, model, task, lo_n, "correct")
                p1, k1 = _share(items, model, task, hi_n, "correct")
                f1, _ = _share(items, model, task, hi_n, "format_ok")
                d, lo, hi = _gain(p0, k0, p1, k1)
                rows.append({"model": model, "trained_on": train, "evaluated_on": on,
                             "own": task == train, "n0": int(lo_n), "n1": int(hi_n),
                             "acc0": p0, "acc1": p1, "format1": f1, "gain": d, "lo": lo, "hi": hi,
                             "items1": k1})
    return rows


def transfer_sentences(rows: list[dict[str, Any]]) -> list[str]:
    """Per model and pair: does the other task's accuracy grow with N as the own task's does,
    and does format transfer where substance does not."""
    num = _num
    own = {(r["model"], r["trained_on"]): r for r in rows if r["own"]}
    out = []
    for r in rows:
        o = own.get((r["model"], r["trained_on"]))
        if r["own"] or o is None:
            continue

        def iv(x: dict[str, Any]) -> str:
            return (f"{num(x['gain'], signed=True)} [{num(x['lo'], signed=True)}, {num(x['hi'], signed=True)}]"
                    if not math.isnan(x["lo"]) else num(x["gain"], signed=True))

        share = r["gain"] / o["gain"] if o["gain"] > 0 else math.nan
        grows = (not math.isnan(r["lo"]) and r["lo"] > 0) if not math.isnan(r["lo"]) else r["gain"] > 0
        s = (f"{r['model']} trained on {r['trained_on']}: in distribution accuracy went from "
             f"{num(o['acc0'])} at N = {num(o['n0'])} to {num(o['acc1'])} at N = {num(o['n1'])} "
             f"({iv(o)}); on {r['evaluated_on']} from {num(r['acc0'])} to {num(r['acc1'])} ({iv(r)}"
             + (f", {num(100 * share)}% of the in-distribution gain" if not math.isnan(share) else "")
             + "). " + ("The other task's accuracy grows with N too." if grows else
                        "The other task's accuracy does not grow measurably with N."))
        if r["format1"] >= 0.9 and o["acc1"] - r["acc1"] >= 0.2:
            s += (f" Format transfers but substance does not: at N = {num(r['n1'])} the format rate on "
                  f"{r['evaluated_on']} is {num(r['format1'])}, its accuracy {num(r['acc1'])} "
                  f"against {num(o['acc1'])} in distribution.")
        out.append(s)
    return out


def transfer_table(rows: list[dict[str, Any]]) -> str:
    """The table's HTML."""
    from .fmt import esc

    cell = _num

    head = ("<tr><th>model</th><th>trained on</th><th>evaluated on</th><th>N</th>"
            "<th>accuracy at N = 0</th><th>at the largest N</th><th>gain [95% interval]</th>"
            "<th>format rate at the largest N</th></tr>")
    body = "".join(
        f"<tr><td>{esc(r['model'])}</td><td>{esc(r['trained_on'])}</td><td>{esc(r['evaluated_on'])}"
        f"{'' if not r['own'] else ' (own)'}</td><td>{cell(r['n0'])} → {cell(r['n1'])}</td><td>{cell(r['acc0'])}</td>"
        f"<td>{cell(r['acc1'])}</td><td>{cell(r['gain'], True)} [{cell(r['lo'], True)}, "
        f"{cell(r['hi'], True)}]</td><td>{cell(r['format1'])}</td></tr>" for r in rows)
    return f"<table>{head}{body}</table>"


__all__ = ["pairs", "transfer_rows", "transfer_sentences", "transfer_table"]
