"""The report's judge section: errors against N split by a judge's labels, beside the rule's split.

Reads ``DIR/judge.json`` (``sftscale judge``) as a plain dict: ``judge_figure`` draws one panel
per (model, task): the judge's format and reasoning error rates (solid, with bootstrap bands),
the responses it left unlabelled (unparsed or failed, dotted), and the rule-based format and
reasoning rates (``format_ok``; dashed). ``judge_findings`` says in numbers how far the judge
agrees with the toy world's truth and with the hand-checked set, and where it and the rule
disagree. ``judge_html`` is the section (figure, a table of fine-label shares, sentences).

Not handled: judge.json files of several judges (the last ``sftscale judge`` run is shown),
per-seed curves (seeds are pooled in judge.json).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .figures import _plt, _xaxis, _xs, zero_position
from .fmt import esc, interval, num, percent


def _panels(doc: dict) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for g in doc.get("groups", []):
        out.setdefault((g["model"], g["task"]), []).append(g)
    return {k: sorted(v, key=lambda g: g["n"]) for k, v in sorted(out.items())}


def _rate(g: dict, part: str, label: str) -> tuple[float, float, float]:
    b = g[part].get(label)
    if b is None:
        return 0.0, 0.0, 0.0
    r = b["rate"]
    return r["mid"], (r["lo"] if r["lo"] is not None else np.nan), (r["hi"] if r["hi"] is not None else np.nan)


def judge_figure(doc: dict) -> Any:
    plt = _plt()
    panels = _panels(doc)
    cols = min(2, max(1, len(panels)))
    rows = math.ceil(len(panels) / cols) if panels else 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, ((model, task), gs) in zip(axes.flat, panels.items()):
        ns = np.asarray([g["n"] for g in gs], float)
        xs = _xs(ns, zero_position(ns))
        for label, col in (("format", "#ff7f0e"), ("reasoning", "#1f77b4")):
            mid, lo, hi = (np.asarray(v, float) for v in zip(*[_rate(g, "coarse", label) for g in gs]))
            ax.plot(xs, mid, marker="o", ms=3.5, lw=1.4, color=col, label=f"{label} (judge)")
            if np.all(np.isfinite(lo)):
                ax.fill_between(xs, lo, hi, color=col, alpha=0.15, lw=0)
            rule = [g["rule"][label]["rate"] for g in gs]
            ax.plot(xs, [np.nan if r is None else r for r in rule], ls="--", lw=1.1, color=col,
                    label=f"{label} (rule)")
        un = [_rate(g, "coarse", "unparsed")[0] + _rate(g, "coarse", "failed")[0] for g in gs]
        if any(un):
            ax.plot(xs, un, ls=":", lw=1.1, color="0.4", label="unlabelled (judge)")
        ax.plot(xs, [g["error_rate"] for g in gs], lw=0.8, color="0.2", alpha=0.5, label="all errors")
        _xaxis(ax, ns)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("errors per item")
        ax.set_title(f"{model} · {task}", fontsize=9)
        ax.grid(alpha=0.25)
        ax.legend(fontsize=6, frameon=False, loc="upper right")
    fig.tight_layout()
    return fig


def _b(band: dict, pct: bool = False) -> str:
    return interval(band["mid"], band["lo"], band["hi"], pct=pct)


def _agree_text(a: dict, what: str) -> str:
    c, f = a["coarse"], a["fine"]
    if not c["n"]:
        return (f"{what}: the judge labelled none of the {a['n']} responses "
                f"({a['n'] - a['n_parsed']} answers did not parse or the requests failed).")
    k = c["kappa"]
    ks = "undefined (one class only)" if k is None else _b(k)
    s = (f"{what}: format vs reasoning agreed on {_b(c['accuracy'], pct=True)} % of {c['n']} labelled "
         f"responses (of {a['n']}), Cohen's kappa {ks}")
    if f["n"]:
        fk = f["kappa"]
        s += (f"; the finer label on {_b(f['accuracy'], pct=True)} % of {f['n']} whose step is known"
              + ("" if fk is None else f", kappa {_b(fk)}"))
    return s + "."


def judge_findings(doc: dict) -> list[str]:
    st = doc.get("status", {})
    total = sum(st.values())
    out = [f"Judge <code>{esc(doc.get('judge'))}</code> (prompt {esc(doc.get('prompt_version'))}) labelled "
           f"{st.get('ok', 0)} of {total} wrong responses; {st.get('unparsed', 0)} answers did not parse "
           f"and {st.get('failed', 0)} requests failed (kept as such, never guessed)."]
    ag = doc.get("agreement", {})
    for name, a in (ag.get("toy") or {}).items():
        out.append(_agree_text(a, "Against the toy world's truth" + ("" if name == "all" else f", {esc(name)}")))
    if "check" in ag:
        out.append(_agree_text(ag["check"], "On the hand-checked GSM8k set"))
    vs = doc.get("vs_rule") or {}
    n = sum(vs.values())
    if n:
        same = vs.get("format/format", 0) + vs.get("reasoning/reasoning", 0)
        out.append(f"Judge and rule give the same class to {percent(same / n)}% of the {n} labelled responses; "
                   f"the judge calls {vs.get('reasoning/format', 0)} responses format errors that the rule "
                   f"reads as reasoning errors, and {vs.get('format/reasoning', 0)} reasoning errors that "
                   "fail the rule's format check.")
    return out


def _fine_table(doc: dict) -> str:
    out = ["<table><tr><th>model · task</th><th>N</th><th>items</th><th>wrong</th><th>judged</th>"
           "<th>judge's labels (share of the judged responses, %)</th></tr>"]
    for (model, task), gs in _panels(doc).items():
        for g in gs:
            cells = ", ".join(f"{esc(lab)} {_b(b['share'], pct=True)}"
                              for lab, b in sorted(g["fine"].items(), key=lambda kv: -kv[1]["count"]))
            out.append(f"<tr><td>{esc(model)} · {esc(task)}</td><td>{num(g['n'])}</td>"
                       f"<td>{num(g.get('items_evaluated', g['n_items']))}</td>"
                       f"<td>{num(g.get('wrong_evaluated', g['n_wrong']))}</td><td>{num(g['n_wrong'])}</td>"
                       f"<td>{cells or '–'}</td></tr>")
    return "\n".join(out + ["</table>"])


def judge_html(doc: dict, fig: dict | None) -> str:
    from .html import img

    parts = ["<h2>Why did it fail? (judge labels)</h2>"]
    if fig is not None:
        parts.append(img(fig["png"], "errors against N by judge label and by the rule"))
    parts.append("<p class=sub>Solid: errors per item the judge labels format or reasoning (95% bootstrap "
                 "band); dashed: the rule-based split (format_ok); dotted: responses the judge left "
                 "unlabelled.</p>")
    parts += [f"<p>{s}</p>" for s in judge_findings(doc)]
    if doc.get("limit_per_cell"):
        parts.append(f"<p class=sub>At most {num(doc['limit_per_cell'])} wrong responses were judged per cell "
                     "(the first in test order); a label's rate is the error rate times its share.</p>")
    parts.append(_fine_table(doc))
    return "\n".join(parts)


__all__ = ["judge_figure", "judge_findings", "judge_html"]
