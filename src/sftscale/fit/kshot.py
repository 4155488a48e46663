"""k-shot baselines beside the finetuning curve, and the crossover between them.

``kshot_table(metrics, fits, metric_of)``: for each (model, task) with k-shot rows (a study's
``fewshot:`` cells of the base model: ``k`` > 0 and N = 0 in the metrics table of
``rundir.export.load_tables``), one dict with

- ``points``: per k, the primary metric and ``format_rate`` (format and substance apart), each
  as the mean over the k-shot draws (``fewshot_seeds``) with a 95% interval (mean ± 1.96 x the
  standard error: the cells' ``<metric>_stderr`` over test items, combined over draws);
- ``best``: the k with the highest primary metric;
- ``crossover``: the smallest N at which finetuning beats that best k-shot result, with an
  interval. The finetuning curve is the forecast's curve of fits.json (``forecasts``: the
  fitted, backtested curve, its path inside the measured range and its forecast with the
  curve interval beyond, up to 4x the largest N) when that curve has status ``ok``; else the
  measured points (mean over seeds ± 1.96 standard errors). N* is where the curve's middle
  reaches the best k-shot value (linear in log N between points); the interval runs from
  where the curve's upper bound reaches the k-shot's lower bound (earliest plausible) to where
  the curve's lower bound reaches the k-shot's upper bound (latest plausible); "beats" is
strictly above, and a curve above it at its smallest N gives that N ("N ≤ 8"). ``n`` None:
  finetuning never beats it within the range; ``lo``/``hi`` None: that end is outside it.
  ``already``: N = 0's plain base model beats it (in-context examples hurt).

Not handled: k-shot cells of finetuned checkpoints (``fewshot_on_finetuned``: their rows are
listed under ``on_finetuned`` but do not enter the crossover), metrics where lower is better.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

Z = 1.96  # the 95% intervals of the points


def _mean_se(vals: list[float], ses: list[float]) -> tuple[float, float]:
    """Mean over draws/seeds, and its standard error: the items' (mean of the per-cell
    standard errors over sqrt(count)) combined with the spread between draws."""
    m = float(np.mean(vals))
    item_se = float(np.mean(ses)) / math.sqrt(len(ses)) if ses else 0.0
    spread = float(np.std(vals, ddof=1)) / math.sqrt(len(vals)) if len(vals) > 1 else 0.0
    return m, math.sqrt(item_se ** 2 + spread ** 2)


def _point(rows: Any, metric: str) -> dict[str, float] | None:
    v = rows[rows["metric"] == metric]
    if not len(v):
        return None
    se = rows[rows["metric"] == f"{metric}_stderr"]["value"].dropna().tolist()
    m, s = _mean_se(v["value"].astype(float).tolist(), [float(x) for x in se])
    return {"mid": m, "lo": max(0.0, m - Z * s), "hi": min(1.0, m + Z * s), "n": int(len(v))}


def _crossing(ns: list[float], ys: list[float | None], target: float) -> float | None:
    """The smallest N where the series exceeds ``target`` (linear in log N between points;
    the first N when it already does there)."""
    prev: tuple[float, float] | None = None
    for n, y in zip(ns, ys):
        if y is None:
            prev = None
            continue
        if y > target:
            if prev is None or prev[1] > target:
                return n
            f = (target - prev[1]) / (y - prev[1])
            return float(math.exp(math.log(prev[0]) + f * (math.log(n) - math.log(prev[0]))))
        prev = (n, y)
    return None


def _curve(curve_rows: Any, metric: str, forecast: dict | None) -> tuple[list[float], list, list, list, str]:
    """(N, mid, lo, hi, source) of the finetuning curve over N > 0."""
    pts = []
    for n, g in curve_rows[curve_rows["n"] > 0].groupby("n"):
        p = _point(g, metric)
        if p is not None:
            pts.append((float(n), p))
    ns = [n for n, _ in pts]
    mid = [p["mid"] for _, p in pts]
    lo = [p["lo"] for _, p in pts]
    hi = [p["hi"] for _, p in pts]
    if not forecast or forecast.get("status") != "ok" or not forecast.get("path"):
        return ns, mid, lo, hi, "measured points"
    path = sorted(forecast["path"], key=lambda q: q["n"])
    pn = np.log([q["n"] for q in path])
    pm = [q["mid"] for q in path]
    mid = [float(np.interp(math.log(n), pn, pm)) for n in ns]  # the fitted curve at the grid
    top = ns[-1] if ns else 0.0
    for q in path:  # the forecast beyond the measured range, with its curve interval
        if q["n"] > top and q.get("lo") is not None:
            ns.append(float(q["n"]))
            mid.append(q["mid"])
            lo.append(q["lo"])
            hi.append(q["hi"])
    return ns, mid, lo, hi, "fitted curve (fits.json forecast)"


def kshot_table(metrics: Any, fits: dict | None, metric_of: dict[str, str]) -> list[dict]:
    """See the module docstring; [] when the table has no k-shot rows."""
    from ..rundir.export import split_kshot

    curve, ks = split_kshot(metrics)
    if ks is None or not len(ks):
        return []
    forecasts = {(c["model"], c["task"], c["metric"]): c
                 for c in ((fits or {}).get("forecasts") or {}).get("curves", [])}
    out = []
    for (model, task), g in ks.groupby(["model", "task"], sort=True):
        metric = metric_of.get(task, "accuracy")
        base = g[g["n"] == 0]
        points: list[dict[str, Any]] = []
        for k, gk in base.groupby("k"):
            acc, fmt = _point(gk, metric), _point(gk, "format_rate")
            if acc is not None:
                points.append({"k": int(k), metric: acc, "format_rate": fmt,
                               "draws": int(gk["fewshot_seed"].nunique(dropna=False))})
        if not points:
            continue
        best = max(points, key=lambda p: p[metric]["mid"])
        mine = curve[(curve["model"] == model) & (curve["task"] == task)]
        ns, mid, lo, hi, source = _curve(mine, metric, forecasts.get((model, task, metric)))
        zero = _point(mine[mine["n"] == 0], metric)
        b: dict[str, float] = best[metric]
        cross = {"n": _crossing(ns, mid, b["mid"]), "lo": _crossing(ns, hi, b["lo"]),
                 "hi": _crossing(ns, lo, b["hi"]), "source": source,
                 "n_max": max(ns) if ns else None, "n_min": min(ns) if ns else None,
                 "already": bool(zero is not None and zero["mid"] >= b["mid"])}
        out.append({"model": model, "task": task, "metric": metric, "points": points,
                    "zero": zero, "zero_format": _point(mine[mine["n"] == 0], "format_rate"),
                    "best": best, "crossover": cross,
                    "on_finetuned": sorted({(int(n), int(k)) for n, k in zip(g["n"], g["k"]) if n > 0})})
    return out


def crossover_text(row: dict) -> str:
    """One line: the crossover of ``kshot_table``'s row in words."""
    c, b = row["crossover"], row["best"]
    m = row["metric"]
    best = f"best k-shot k={b['k']}: {m} {b[m]['mid']:.2f} [{b[m]['lo']:.2f}, {b[m]['hi']:.2f}]"
    if c["n"] is None:
        top = f"{c['n_max']:.0f}" if c["n_max"] else "any measured N"
        return f"{best}; finetuning does not beat it up to N = {top}"
    lo = f"{c['lo']:.0f}" if c["lo"] is not None else "?"
    hi = f"{c['hi']:.0f}" if c["hi"] is not None else f"> {c['n_max']:.0f}"
    at = "≤" if c["n"] == c.get("n_min") else "≈"  # already at the smallest N measured
    return f"{best}; finetuning beats it from N {at} {c['n']:.0f} (95%: {lo} to {hi})"


__all__ = ["crossover_text", "kshot_table"]
