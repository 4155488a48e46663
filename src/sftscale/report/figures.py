"""Figures of a study, drawn with matplotlib (Agg) and saved as PNG and SVG.

- ``accuracy_figure``: the primary metric against N on a log axis, one panel per task, one
  colour per model; points are seed means with their spread, the curve is the forecast's
  (``fit.forecast``: members through the measured points, then the forecast to 4x the largest
  N with its band, on a grey background); none where it cannot forecast. N = 0 sits at its own
  tick left of the first positive N (a log axis has no zero); the dashed break marks it.
- ``style_substance_figure``: format errors, substance errors and total errors against N,
  with intervals, the style-saturation N and the N where accuracy stops rising marked.
- ``knowledge_figure``: direct and multihop accuracy per starting point with intervals.

Not handled: more than ~8 models per panel (colours repeat), metrics where lower is better.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 160, "font.size": 10,
                         "axes.spines.top": False, "axes.spines.right": False,
                         "svg.hashsalt": "sftscale", "svg.fonttype": "none"})
    return plt


def save(fig: Any, out_dir: Path, stem: str) -> dict[str, Path]:
    """Save ``fig`` as PNG and SVG (deterministic SVG ids); return both paths."""
    from ..io import atomic_open

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ext in ("png", "svg"):
        p = out_dir / f"{stem}.{ext}"
        with atomic_open(p, "wb") as f:
            fig.savefig(f, format=ext, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None)
        paths[ext] = p
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def zero_position(ns: Sequence[float] | np.ndarray) -> float:
    """Where N = 0 is drawn on the log axis: a factor 4 left of the smallest positive N."""
    pos = [n for n in ns if n > 0]
    return (min(pos) if pos else 1.0) / 4.0


def _xaxis(ax: Any, ns: Sequence[float] | np.ndarray) -> None:
    x0 = zero_position(ns)
    ticks = sorted(set(float(n) for n in ns))
    ax.set_xscale("log")
    ax.set_xticks([x0 if t == 0 else t for t in ticks])
    many = len(ticks) > 6  # a dense grid: smaller labels, tilted, so 512 and 1,024 do not touch
    ax.set_xticklabels(["0" if t == 0 else f"{int(t):,}" for t in ticks], rotation=45 if many else 0,
                       fontsize=8 if many else None, ha="right" if many else "center")
    ax.minorticks_off()
    if 0 in ticks:
        pos = [t for t in ticks if t > 0]
        if pos:
            ax.axvline(math.sqrt(x0 * pos[0]), color="0.8", lw=0.8, ls="--", zorder=0)
    ax.set_xlabel("finetuning examples N")


def _xs(ns: np.ndarray, x0: float) -> np.ndarray:
    return np.where(ns == 0, x0, ns)


def accuracy_figure(metrics: Any, forecasts: Mapping[str, Any], metric_of: dict[str, str], title: str = "") -> Any:
    """One panel per task: seed means (points, ±1 sd over seeds) and the forecast's curve: the
    weighted members through the measured range, then the forecast to 4x the largest N with its
    curve interval (shaded, hatched beyond the grid). No curve where the forecast says "cannot
    forecast"; nothing is drawn outside [0, 1]."""
    plt = _plt()
    tasks = list(metric_of)
    cols = len(tasks) if len(tasks) <= 3 else 2  # four capabilities read best as a 2 x 2 grid
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(tasks):]:
        ax.axis("off")
    models = sorted(metrics["model"].unique())
    curves = {(c["model"], c["task"], c["metric"]): c for c in (forecasts or {}).get("curves", [])}
    for ax, task in zip(axes.flat, tasks):
        met = metric_of[task]
        sub = metrics[(metrics["task"] == task) & (metrics["metric"] == met)]
        ns_all = sorted(sub["n"].unique())
        fc_any = [curves[(m, task, met)] for m in models if (m, task, met) in curves]
        reach = max([p["n"] for c in fc_any for p in c.get("path") or []], default=0.0)
        x0 = zero_position(ns_all)
        for ci, model in enumerate(models):
            col = COLORS[ci % len(COLORS)]
            g = sub[sub["model"] == model]
            if g.empty:
                continue
            agg = g.groupby("n")["value"].agg(["mean", "std", "count"]).reset_index()
            xs = _xs(agg["n"].to_numpy(float), x0)
            ax.errorbar(xs, agg["mean"], yerr=agg["std"].fillna(0), fmt="o", ms=4.5, color=col,
                        capsize=2, lw=1, label=model, zorder=3)
            # individual seeds, faint
            ax.scatter(_xs(g["n"].to_numpy(float), x0), g["value"], s=9, color=col, alpha=0.3, lw=0)
            fc = curves.get((model, task, met))
            if fc is None:
                continue
            if fc["status"] != "ok":
                ax.plot([], [], color=col, lw=0, label="  cannot forecast (see the table)")
                continue
            path = fc.get("path") or []
            n = np.array([p["n"] for p in path], float)
            mid = np.clip(np.array([p["mid"] for p in path], float), 0, 1)
            nmax = float(fc["n_max_measured"])
            inside = n <= nmax * (1 + 1e-9)
            ax.plot(n[inside], mid[inside], color=col, lw=1.4)
            out = ~inside
            if out.any():
                xo = np.concatenate([[nmax], n[out]])
                mo = np.concatenate([[mid[inside][-1]], mid[out]])
                lo = np.concatenate([[mid[inside][-1]], [p["lo"] for p, o in zip(path, out) if o]])
                hi = np.concatenate([[mid[inside][-1]], [p["hi"] for p, o in zip(path, out) if o]])
                ax.plot(xo, mo, color=col, lw=1.4, ls="--",
                        label=f"  forecast, {int(round(100 * fc['level']))}% band")
                ax.fill_between(xo, np.clip(lo, 0, 1), np.clip(hi, 0, 1), color=col, alpha=0.15, lw=0)
        _xaxis(ax, ns_all)
        if reach > max(ns_all):
            ax.set_xlim(right=reach * 1.15)
            ax.axvspan(max(ns_all) * 1.05, reach * 1.15, color="0.5", alpha=0.06, lw=0)
            extra = [max(ns_all) * r for r in (2, 4) if max(ns_all) * r <= reach * 1.001]
            ticks, labels = list(ax.get_xticks()), [t.get_text() for t in ax.get_xticklabels()]
            ax.set_xticks(ticks + extra)
            ax.set_xticklabels(labels + [f"{int(x):,}" for x in extra], rotation=45 if len(ticks) > 6 else 0,
                               fontsize=8 if len(ticks) > 6 else None, ha="right" if len(ticks) > 6 else "center")
            for lab in ax.get_xticklabels()[len(ticks):]:
                lab.set_color("0.45")
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(met)
        ax.set_title(task)
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7.5, frameon=False, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def style_substance_figure(groups: Sequence[Mapping[str, Any]]) -> Any:
    """One panel per (model, task): format / substance / total error with intervals."""
    plt = _plt()
    groups = [g for g in groups if "format_error" in g]
    cols = min(2, max(1, len(groups)))
    rows = math.ceil(len(groups) / cols) if groups else 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(groups):]:
        ax.axis("off")
    for ax, g in zip(axes.flat, groups):
        ns = np.asarray(g["n"], float)
        x0 = zero_position(ns)
        xs = _xs(ns, x0)
        for key, col, lab in (("format_error", "#ff7f0e", "format errors"),
                              ("substance_error", "#1f77b4", "substance errors"),
                              ("total_error", "0.35", "total errors")):
            b = g[key]
            mid, lo, hi = (np.asarray([np.nan if v is None else v for v in b[k]], float)
                           for k in ("mid", "lo", "hi"))
            ax.plot(xs, mid, marker="o", color=col, ms=3.5, lw=1.4, label=lab,
                    ls="--" if key == "total_error" else "-")
            if np.all(np.isfinite(lo)):
                ax.fill_between(xs, lo, hi, color=col, alpha=0.15, lw=0)
        sat = g.get("style_saturation_n") or {}
        if sat.get("n") is not None:
            ax.axvline(_xs(np.array([sat["n"]], float), x0)[0], color="#ff7f0e", lw=1, ls=":")
            ax.text(_xs(np.array([sat["n"]], float), x0)[0], 0.55, f" style saturates\n N={int(sat['n'])}",
                    color="#ff7f0e", fontsize=7, va="top")
        plat = g.get("accuracy_plateau_n") or {}
        if plat.get("n") is not None:
            xp = _xs(np.array([plat["n"]], float), x0)[0]
            ax.axvline(xp, color="#1f77b4", lw=1, ls=":")
            txt = ("accuracy still\nrising" if plat.get("still_rising")
                   else f"accuracy stops\nrising at N={int(plat['n'])}")
            right = plat["n"] >= max(ns)
            ax.text(xp, 0.80, txt + " " if right else " " + txt.replace("\n", "\n "), color="#1f77b4",
                    fontsize=7, va="top", ha="right" if right else "left")
        r2 = (g.get("r2_total_vs_substance") or {}).get("r2")
        ra = (g.get("r2_total_vs_substance_after_style") or {}).get("r2")
        _xaxis(ax, ns)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("error rate")
        sub = ""
        if r2 is not None:
            sub = f"  r² total~substance: {r2:.2f} all N"
            if ra is not None:
                sub += f", {ra:.2f} once the format saturated"
        ax.set_title(f"{g['model']} · {g['task']}\n{sub.strip()}", fontsize=9)
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7, frameon=False, loc="center right")
    fig.tight_layout()
    return fig


def knowledge_figure(table: dict, metric: str = "em") -> Any:
    """Grouped bars per question type: one bar per starting point after the facts stage
    (with its paired-bootstrap interval); the hatched white part of a bar is what the same
    model answered before the facts stage (closed book), so the coloured rest is what the
    facts stage added; a diamond marks the fact given in the prompt (retrieval)."""
    plt = _plt()
    rows = table.get("rows", [])
    qtypes = [q for q in ("direct", "multihop") if any(isinstance(r.get(q), dict) for r in rows)]
    starts = list(dict.fromkeys(r["start"] for r in rows))
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(qtypes) * max(1, len(starts)) / 2, 3.8))
    w = 0.8 / max(1, len(starts))

    def cell(start: str, cond: str, q: str) -> dict | None:
        r = next((r for r in rows if r["start"] == start and r["condition"] == cond), None)
        c = (r or {}).get(q) or {}
        return c.get(metric)

    seen: set[str] = set()

    def once(label: str) -> str | None:  # each legend entry on the first artist drawn for it
        if label in seen:
            return None
        seen.add(label)
        return label

    for si, s in enumerate(starts):
        col = COLORS[si % len(COLORS)]
        for qi, q in enumerate(qtypes):
            x = qi + (si - (len(starts) - 1) / 2) * w
            c = cell(s, "injected", q)
            if c and c.get("mean") is not None:
                err = [[c["mean"] - c["lo"]], [c["hi"] - c["mean"]]]
                ax.bar([x], [c["mean"]], w * 0.9, yerr=err, capsize=3, color=col,
                       label=once(f"{s}: facts finetuned"))
                ax.text(x, c["hi"] + 0.02, f"{100 * c['mean']:.0f}", ha="center", fontsize=7)
            b = cell(s, "before", q)
            if b and b.get("mean"):
                ax.bar([x], [b["mean"]], w * 0.9, color="white", alpha=0.85, hatch="///",
                       edgecolor="0.3", linewidth=0.5, label=once("answered before the facts (closed book)"))
            c2 = cell(s, "retrieval", q)
            if c2 and c2.get("mean") is not None:
                ax.plot([x], [c2["mean"]], "D", color="0.15", ms=5, mfc="none",
                        label=once("fact in the prompt"))
    ax.set_xticks(range(len(qtypes)))
    ax.set_xticklabels([f"{q} questions" for q in qtypes])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel(f"{metric} (new facts)")
    ax.legend(fontsize=7, frameon=False, loc="upper right")
    ax.set_title("knowledge injection")
    ax.grid(axis="y", alpha=0.25)
    fig.tight_layout()
    return fig
