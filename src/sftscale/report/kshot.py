"""The report's k-shot section: in-context examples beside finetuning examples.

``kshot_figure(metrics, rows)``: one column per (model, task), two rows of panels: the primary
metric (substance) and ``format_rate`` (format), against a log x axis shared by both kinds of
examples: finetuning points at x = N (circles, mean over seeds ± 1.96 standard errors, the
plain base model as a square at its own tick left of everything), k-shot points at x = k (red diamonds,
mean over draws with 95% intervals), and the best k-shot value as a dotted line with the
crossover N marked. ``kshot_html(rows, fig)``: the figure, a table per task (k, the primary
metric, format_rate, draws) and the crossover in words (``fit.kshot``).

Not handled: k-shot cells of finetuned checkpoints (listed by count only), more than ~6 tasks
side by side (the figure grows wide).
"""

from __future__ import annotations

from typing import Any

from .fmt import esc, interval

Z = 1.96


def _curve_points(metrics: Any, model: str, task: str, metric: str) -> list[tuple[float, float, float]]:
    """(N, mean, 1.96 standard errors) of the finetuning curve, N = 0 included."""
    from ..fit.kshot import _point

    g = metrics[(metrics["model"] == model) & (metrics["task"] == task)]
    out = []
    for n, gn in g.groupby("n"):
        p = _point(gn, metric)
        if p is not None:
            out.append((float(n), p["mid"], (p["hi"] - p["lo"]) / 2))
    return out


def kshot_figure(metrics: Any, rows: list[dict]) -> Any:
    from .figures import _plt

    plt = _plt()
    fig, axes = plt.subplots(2, len(rows), figsize=(4.2 * len(rows), 6.0), squeeze=False)
    for j, r in enumerate(rows):
        ks = [p["k"] for p in r["points"]]
        for i, metric in enumerate((r["metric"], "format_rate")):
            ax = axes[i][j]
            pts = _curve_points(metrics, r["model"], r["task"], metric)
            pos = [n for n, _, _ in pts if n > 0] + ks
            zero = (min(pos) if pos else 1.0) / 4.0
            xs = [n if n > 0 else zero for n, _, _ in pts]
            fin = [(x, m, e) for x, (n, m, e) in zip(xs, pts) if n > 0]
            ax.errorbar([x for x, _, _ in fin], [m for _, m, _ in fin], yerr=[e for _, _, e in fin],
                        fmt="o-", color="#1f77b4", ms=4, capsize=2, label="finetuned on N examples")
            for x, (n, m, e) in zip(xs, pts):  # the plain base model: no line into the k points
                if n == 0:
                    ax.errorbar([x], [m], yerr=[e], fmt="s", color="#1f77b4", ms=5, capsize=2)
            kp = [(p["k"], p[metric] if metric in p else p["format_rate"]) for p in r["points"]]
            kp = [(k, v) for k, v in kp if v is not None]
            ax.errorbar([k for k, _ in kp], [v["mid"] for _, v in kp],
                        yerr=[[v["mid"] - v["lo"] for _, v in kp], [v["hi"] - v["mid"] for _, v in kp]],
                        fmt="D", color="#d62728", ms=6, capsize=3, label="base + k in-context examples")
            ax.set_xscale("log")
            ticks = sorted({zero, *[x for x in xs if x > 0], *ks})
            ax.set_xticks(ticks)
            ax.set_xticklabels(["0" if t == zero else f"{t:g}" for t in ticks], fontsize=7)
            ax.set_ylim(-0.03, 1.03)
            if i == 0:
                b = r["best"][metric]["mid"]
                ax.axhline(b, color="#d62728", ls=":", lw=1)
                c = r["crossover"]
                if c["n"] is not None:
                    ax.axvline(c["n"], color="#555", ls="--", lw=1)
                ax.set_title(f"{r['task']} ({r['model']})", fontsize=9)
            ax.set_ylabel(metric if j == 0 else "")
            ax.set_xlabel("N finetuning examples  /  k in-context examples" if i == 1 else "")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def _iv(p: dict | None) -> str:
    return "–" if p is None else interval(p["mid"], p["lo"], p["hi"])


def kshot_html(rows: list[dict], fig: dict | None) -> str:
    from ..fit.kshot import crossover_text
    from .html import img

    parts = ["<h2>Examples in the prompt or in the weights</h2>",
             "<p>The base model (N = 0) with k examples of the training pool in its prompt (one "
             "draw shared by every test item, never a test item), beside the same model finetuned "
             "on N examples. Both are scored by the same scorer, with format (format_rate) and "
             "substance (the task's primary metric) apart: in-context examples may fix the format "
             "as fast as finetuning does and leave the substance where it was.</p>"]
    if fig is not None:
        parts.append(img(fig["png"], "k-shot points beside the finetuning curve"))
        parts.append("<p class=sub>Top: the primary metric; bottom: format_rate. Circles: "
                     "finetuned on N examples (mean over seeds, ±1.96 standard errors); red "
                     "diamonds: the base model with k in-context examples at x = k (95% intervals); "
                     "dotted line: the best k-shot result; dashed line: the crossover N.</p>")
    for r in rows:
        m = r["metric"]
        body = "".join(
            f"<tr><td>{p['k']}</td><td>{_iv(p[m])}</td><td>{_iv(p['format_rate'])}</td>"
            f"<td>{p['draws']}</td></tr>" for p in r["points"])
        zero = (f"<tr><td>0 (plain base)</td><td>{_iv(r['zero'])}</td>"
                f"<td>{_iv(r['zero_format'])}</td><td>–</td></tr>")
        c = r["crossover"]
        how = esc(c["source"])
        extra = " The plain base model (no examples) already does as well." if c["already"] else ""
        fin = (f" k-shot cells of finetuned checkpoints: {len(r['on_finetuned'])} (N, k) pairs, in "
               "export.csv." if r["on_finetuned"] else "")
        parts.append(f"<h3>{esc(r['task'])} · {esc(r['model'])}</h3><table><tr><th>k</th>"
                     f"<th>{esc(m)}</th><th>format_rate</th><th>draws</th></tr>{zero}{body}</table>"
                     f"<p><b>Crossover:</b> {esc(crossover_text(r))} (from the {how}).{extra}{fin}</p>")
    return "\n".join(parts)


__all__ = ["kshot_figure", "kshot_html"]
