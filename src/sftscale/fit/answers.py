"""The answers of a study in words: one row per curve, from fits.json's ``forecasts``.

``answer_rows(forecasts, analysis=None)`` -> plain-text cells (the terminal of ``sftscale fit``
and ``sftscale demo``, and the report's lead table, which escapes them): the value at the
smallest and largest N, where the format saturates (from analysis.json, when given), the
forecast at 2x the largest N and what it buys, N for each target or "cannot forecast" with the
reason, and the backtest of the largest N beside the two naive forecasts.

Every N is printed exactly (``1,024``); every rate with two decimals; no value outside [0, 1]
exists here to print (``forecast`` never makes one).
Not handled: metrics that are not rates.
"""

from __future__ import annotations

from typing import Any

from ..schema import AnalysisDoc, ForecastCurve, ForecastsDoc, ForecastTarget


def n_text(n: Any) -> str:
    """N exactly, with thousands separators; a forecast's N (not on the grid) to 2 significant digits."""
    if n is None:
        return "–"
    n = float(n)
    if abs(n - round(n)) < 1e-6:
        return f"{int(round(n)):,}"
    digits = max(len(str(int(n))) - 2, 0)
    return f"≈{int(round(n, -digits)):,}"


def rate(x: Any) -> str:
    return "–" if x is None else f"{float(x):.2f}"


def band(iv: Any) -> str:
    return "" if not iv or iv[0] is None else f" [{rate(iv[0])}, {rate(iv[1])}]"


def target_text(t: ForecastTarget) -> str:
    head = f"{rate(t['target'])}: "
    if t.get("how") == "cannot":
        return head + str(t.get("note") or "cannot forecast")
    if t.get("n") is None:
        return head + str(t.get("note") or "not reached")
    lo = n_text(t.get("lo")) if t.get("lo") is not None else "?"
    hi = n_text(t.get("hi")) if t.get("hi") is not None else "beyond"
    where = "measured" if t.get("how") == "measured" else "forecast"
    return f"{head}N {n_text(t['n'])} [{lo}, {hi}] ({where})"


def backtest_text(fc: ForecastCurve) -> str:
    s = fc["backtest_summary"]
    if not s.get("n"):
        return "no backtest (too few N)"
    near = [r for r in s.get("largest_n") or [] if r["ratio"] <= 2.0 ** 1.5]
    parts = []
    for r in near[:1]:
        parts.append(f"fit on N ≤ {n_text(r['fit_n_max'])}: {rate(r['predicted'])}{band(r['measurement'])} at "
                     f"{n_text(r['n'])}, measured {rate(r['measured'])}")
    parts.append(f"mean |error| {rate(s['mae'])} over {s['n']} backtests (last value "
                 f"{rate(s.get('mae_last'))}, line in log N {rate(s.get('mae_loglinear'))})")
    return "; ".join(parts)


def answer_rows(forecasts: ForecastsDoc, analysis: AnalysisDoc | None = None) -> list[dict[str, str]]:
    """One dict of plain-text cells per curve of ``forecasts`` (fits.json's object)."""
    sat = {(g["model"], g["task"]): (g["style_saturation_n"]["n"]
                                     if (g["style_saturation_n"].get("plateau") or 0) > 0 else "never")
           for g in (analysis["groups"] if analysis else []) if "style_saturation_n" in g}
    rows = []
    for fc in forecasts["curves"]:
        ns, ys = fc["points"]["n"], fc["points"]["y"]
        curve = f"{fc['model']} · {fc['task']} ({fc['metric']})"
        smallest = f"{rate(ys[0])} at N = {n_text(ns[0])}" if ns else "–"
        measured = f"{rate(ys[-1])} at N = {n_text(ns[-1])}" if ns else "–"
        if fc["status"] != "ok":
            forecast = f"cannot forecast: {fc['reason']}"
        else:
            p2 = next((p for p in fc["predictions"] if abs(p["ratio"] - 2) < 1e-9), None)
            forecast = (f"{rate(p2['mid'])}{band(p2['measurement'])} at N = {n_text(p2['n'])}; buys "
                        f"{p2['gain_over_largest']:+.2f} [{p2['gain_curve'][0]:+.2f}, {p2['gain_curve'][1]:+.2f}]"
                        if p2 and p2.get("mid") is not None else "–")
        fmt = sat.get((fc["model"], fc["task"]), "absent")
        rows.append({"curve": curve, "model": fc["model"], "task": fc["task"], "metric": fc["metric"],
                     "format_saturates": ("–" if fmt == "absent" else "not within the grid" if fmt is None
                                          else "never (format rate 0 at every N)" if fmt == "never"
                                          else f"N = {n_text(fmt)}"),
                     "smallest": smallest, "measured": measured, "forecast": forecast,
                     "targets": "; ".join(target_text(t) for t in fc["targets"]) or "–",
                     "backtest": backtest_text(fc), "status": fc["status"]})
    return rows


def short_rows(forecasts: ForecastsDoc, analysis: AnalysisDoc | None = None) -> list[dict[str, str]]:
    """The answers in a few characters per cell, for an 80-column terminal (the demo's last table)."""
    out = []
    for r, fc in zip(answer_rows(forecasts, analysis), forecasts["curves"]):
        ys, ns = fc["points"]["y"], fc["points"]["n"]
        p2 = next((p for p in fc["predictions"] if abs(p["ratio"] - 2) < 1e-9), None)
        tg = []
        for t in fc["targets"]:
            tg.append(f"{rate(t['target'])}: " + ("cannot" if t.get("how") == "cannot" else
                                                 f"{n_text(t['n'])}" if t.get("n") is not None else "> 4x"))
        s = fc["backtest_summary"]
        out.append({"task": fc["task"], "format": r["format_saturates"].replace("N = ", ""),
                    "acc": f"{rate(ys[0])} → {rate(ys[-1])}" if ys else "–",
                    "at2x": ("cannot forecast" if fc["status"] != "ok" else
                             f"{rate(p2['mid'])}{band(p2['measurement'])}" if p2 else "–"),
                    "targets": ", ".join(tg) or "–",
                    "backtest": (f"{rate(s['mae'])} ({rate(s.get('mae_last'))}, {rate(s.get('mae_loglinear'))})"
                                 if s.get("n") else "–"),
                    "n_range": f"{n_text(ns[0])}–{n_text(ns[-1])}" if ns else ""})
    return out


def answers_table(forecasts: ForecastsDoc, analysis: AnalysisDoc | None = None, title: str | None = None,
                  short: bool = False) -> Any:
    """The answers as a rich Table (``sftscale fit`` and ``sftscale demo`` print it); ``short``:
    one line per curve for an 80-column terminal (the report has the long form)."""
    from rich.table import Table

    lv = int(round(100 * forecasts["level"]))
    if short:
        t = Table(title=title, caption=f"accuracy at the smallest → largest N; at 2x: forecast [{lv}% interval]; "
                                       "N for target (measured range or forecast); backtest: mean |error| "
                                       "(last value, line in log N)")
        for head in ("task", "format by N", "accuracy", "at 2x the largest N", "N for target", "backtest"):
            t.add_column(head)
        for r in short_rows(forecasts, analysis):
            t.add_row(r["task"], r["format"], r["acc"], r["at2x"], r["targets"], r["backtest"])
        return t
    t = Table(title=title or f"answers ({lv}% intervals for a new measurement; backtest = fitted on smaller N, "
                             "scored on the next larger measured N)")
    cols = [("curve", "curve"), ("format saturates", "format_saturates"), ("smallest N", "smallest"),
            ("largest N", "measured"), ("2x the largest N; what it buys", "forecast"),
            ("N for target", "targets"), ("backtest", "backtest")]
    if analysis is None:
        cols.pop(1)
    for head, _ in cols:
        t.add_column(head, overflow="fold")
    for r in answer_rows(forecasts, analysis):
        t.add_row(*(r[k] for _, k in cols))
    return t


__all__ = ["answer_rows", "answers_table", "short_rows", "backtest_text", "n_text", "rate", "target_text"]
