"""The report's token-shift section: figure, table and sentences from a shift summary.

The summary is ``tokenshift.summary.summarise`` over the run directory's cells (``ReportData``
field ``token_shift``), the same object ``sftscale shift`` writes to ``DIR/shift.json``.

- ``shift_figure``: the shifted share (base rank > 3) against N, one panel per (model, task),
  one line per role (format, content; other when a task has it), with bootstrap bands;
- ``shift_table``: per (model, task, N) the shifted share of each role, the share of shifted
  tokens that are format tokens, mean KL, and the first 5 tokens against the rest;
- ``shift_findings``: per (model, task) the sentences with the numbers, whatever they say.

Not handled: N = 0 (the base model compared with itself has nothing to show).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .fmt import esc, interval, num, percent

ROLE_STYLE = {"format": ("#d62728", "-"), "content": ("#1f77b4", "-"), "other": ("0.5", "--")}


def _groups(doc: Mapping[str, Any]) -> dict[tuple[str, str], dict[int, dict[str, Any]]]:
    """(model, task) -> N -> role -> entry."""
    out: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for g in doc.get("groups") or []:
        out.setdefault((g["model"], g["task"]), {}).setdefault(int(g["n"]), {})[g["role"]] = g
    return out


def shift_figure(doc: Mapping[str, Any]) -> Any:
    """Shifted share against N per (model, task) and role (module docstring)."""
    import numpy as np

    from .figures import _plt, _xaxis

    plt = _plt()
    panels = sorted(_groups(doc).items())
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.9 * rows), squeeze=False)
    for ax, ((model, task), by_n) in zip(axes.ravel(), panels):
        ns = sorted(by_n)
        for role, (color, ls) in ROLE_STYLE.items():
            pts = [(n, by_n[n][role]["shifted"]) for n in ns if role in by_n[n]]
            if not pts or all(p[1]["mid"] is None for p in pts):
                continue
            x = np.array([p[0] for p in pts], float)
            mid = np.array([np.nan if p[1]["mid"] is None else p[1]["mid"] for p in pts])
            lo = np.array([np.nan if p[1]["lo"] is None else p[1]["lo"] for p in pts])
            hi = np.array([np.nan if p[1]["hi"] is None else p[1]["hi"] for p in pts])
            ax.plot(x, 100 * mid, ls, color=color, marker="o", ms=3, label=role)
            ax.fill_between(x, 100 * lo, 100 * hi, color=color, alpha=0.15, lw=0)
        _xaxis(ax, ns)
        ax.set_title(f"{model} · {task}", fontsize=9)
        ax.set_ylabel("shifted tokens %")
        ax.set_ylim(bottom=0)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    handles: dict[str, Any] = {}
    for ax in axes.ravel()[:len(panels)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.tight_layout()
    fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=len(handles),
               fontsize=8, frameon=False, bbox_to_anchor=(0.5, 1.06))
    return fig


def _pct(b: Mapping[str, Any] | None) -> str:
    return "–" if not b else interval(b.get("mid"), b.get("lo"), b.get("hi"), pct=True)


def shift_table(doc: Mapping[str, Any]) -> str:
    out = []
    for (model, task), by_n in sorted(_groups(doc).items()):
        scheme = ", ".join(next(iter(next(iter(by_n.values())).values()))["roles_by"])
        out.append(f"<h3>{esc(model)} · {esc(task)} <span class=sub>(roles: {esc(scheme)})</span></h3>"
                   "<table><tr><th>N</th><th>shifted % (all)</th><th>format</th><th>content</th>"
                   "<th>format share of shifted %</th><th>mean KL (nats)</th>"
                   "<th>shifted %, first 5 tokens</th><th>shifted %, the rest</th></tr>")
        for n in sorted(by_n):
            r = by_n[n]
            a = r.get("all", {})
            kl = a.get("mean_kl") or {}
            pos = a.get("by_position") or {}
            out.append(f"<tr><td>{n:,}</td><td>{_pct(a.get('shifted'))}</td>"
                       f"<td>{_pct(r.get('format', {}).get('shifted'))}</td>"
                       f"<td>{_pct(r.get('content', {}).get('shifted'))}</td>"
                       f"<td>{_pct(a.get('format_of_shifted'))}</td>"
                       f"<td>{interval(kl.get('mid'), kl.get('lo'), kl.get('hi'))}</td>"
                       f"<td>{_pct((pos.get('first') or {}).get('shifted'))}</td>"
                       f"<td>{_pct((pos.get('rest') or {}).get('shifted'))}</td></tr>")
        out.append("</table>")
    return "\n".join(out)


def _mid(b: Mapping[str, Any] | None) -> float | None:
    return None if not b else b.get("mid")


def shift_findings(doc: Mapping[str, Any]) -> list[str]:
    """Sentences with the measured numbers, one per (model, task)."""
    out = []
    for (model, task), by_n in sorted(_groups(doc).items()):
        ns = [n for n in sorted(by_n) if "all" in by_n[n]]
        if not ns:
            continue
        lo_n, hi_n = ns[0], ns[-1]
        a0, a1 = by_n[lo_n]["all"], by_n[hi_n]["all"]
        s = (f"{esc(model)} on {esc(task)}: at N = {lo_n:,}, {percent(_mid(a0.get('format_of_shifted')))}% "
             f"of shifted tokens are format tokens")
        if hi_n != lo_n:
            s += f"; at N = {hi_n:,}, {percent(_mid(a1.get('format_of_shifted')))}%"
        s += (f". Shifted tokens (base rank > 3): {percent(_mid(a0.get('shifted')))}% of all tokens at "
              f"N = {lo_n:,}" + (f", {percent(_mid(a1.get('shifted')))}% at N = {hi_n:,}" if hi_n != lo_n else ""))
        fmt0, con0 = by_n[lo_n].get("format"), by_n[lo_n].get("content")
        if fmt0 and con0:
            s += (f" (format tokens {percent(_mid(fmt0['shifted']))}%, content tokens "
                  f"{percent(_mid(con0['shifted']))}% at N = {lo_n:,})")
        pos = a1.get("by_position") or {}
        first, rest = pos.get("first") or {}, pos.get("rest") or {}
        if first.get("n_tokens") and rest.get("n_tokens"):
            s += (f". At N = {hi_n:,} the mean KL is {num(_mid(first.get('mean_kl')))} nats per token over "
                  f"the first 5 response tokens and {num(_mid(rest.get('mean_kl')))} over the rest")
        out.append(s + ".")
    return out


def shift_section(doc: Mapping[str, Any] | None, fig: Mapping[str, Any] | None, image: Any) -> str:
    """The section's HTML (``image(path, alt)`` embeds the figure)."""
    if not doc or not doc.get("groups"):
        return ""
    parts: Sequence[str] = [
        "<h2>What finetuning changed, token by token</h2>",
        "<p class=sub>Each finetuned cell's own test responses, teacher-forced through the "
        "finetuned model and its base. A token is <i>shifted</i> when the base ranks it below 3rd "
        "(rank 1: unshifted, 2–3: marginal; Lin et al. 2023); KL is KL(finetuned ‖ base) over the "
        "vocabulary at each position (Qi et al. 2024). Roles come from each task's rule (format: "
        "answer markers, templates, fences, required phrases; content: numbers, entities, facts, "
        "code bodies). Intervals: 95% bootstrap over items. Data: shift.json and "
        "shift/tokens.jsonl.gz (<code>sftscale shift DIR</code>).</p>",
        image(fig["png"], "shifted share against N, format vs content") if fig else "",
        "<ul>" + "".join(f"<li>{s}</li>" for s in shift_findings(doc)) + "</ul>",
        shift_table(doc)]
    return "\n".join(parts)


__all__ = ["shift_figure", "shift_findings", "shift_section", "shift_table"]
