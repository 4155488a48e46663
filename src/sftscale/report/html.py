"""The report page: one HTML string with every figure embedded (base64 PNG), no scripts.

``page(data, sections)`` puts the sections' fragments (``report.sections``) in the page frame;
the table builders here (``_answers``, ``_backtests``, ``_fit_table``, ...) turn one part of
fits.json, analysis.json or the store's tables into HTML. Everything shown is read from the
results passed in; nothing is a constant.
Not handled: themes, interactive plots, pagination of very large studies.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..fit.answers import answer_rows, n_text
from ..rundir import layout
from ..schema import AnalysisDoc, BandSeries, FitsDoc, ForecastsDoc
from .fmt import esc, interval, num, percent

if TYPE_CHECKING:
    from .data import ReportData

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
.sub{color:#666;font-size:.9em}table{border-collapse:collapse;margin:.6em 0;font-size:.85em}
th,td{border:1px solid #ddd;padding:.25em .55em;text-align:right;vertical-align:top}
th{background:#f5f5f5}td.l,th.l{text-align:left}tr.best td{background:#eef6ee}
img{max-width:100%;height:auto;border:1px solid #eee}
.finding{background:#f7f9fc;border-left:4px solid #1f77b4;padding:.5em .9em;margin:.5em 0}
pre{white-space:pre-wrap;background:#fafafa;border:1px solid #eee;padding:.4em;margin:.2em 0;font-size:.82em}
.ok{color:#2a7a2a}.bad{color:#b22}.warn{color:#a60;font-size:.8em}
"""


def img(path: Path, alt: str) -> str:
    b64 = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{b64}">'


def page(d: "ReportData", sections: Sequence[Callable[["ReportData"], str]]) -> str:
    """The whole page: the frame around each section's fragment, in the order given."""
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{esc(d.title)}</title>"
             f"<style>{CSS}</style></head><body>"]
    parts += [x for x in (section(d) for section in sections) if x]
    return "\n".join(parts) + "</body></html>"


def _answers(fc: ForecastsDoc, analysis: AnalysisDoc, one_seed: bool = False) -> str:
    """The lead table: the answers a study is for, one row per curve (``fit.answers``).
    ``one_seed``: the finetuned cells have a single seed (a caveat under the table)."""
    rows = answer_rows(fc, analysis)
    if not rows:
        return ""
    lv = num(100 * fc["level"])
    out = ["<h2>Answers</h2><table><tr><th class=l>model · task (metric)</th><th class=l>format saturates</th>"
           "<th class=l>smallest N</th><th class=l>largest N</th>"
           f"<th class=l>at 2× the largest N [{lv}% new measurement]; what it buys [curve]</th>"
           "<th class=l>N for the target [interval]</th><th class=l>backtest</th></tr>"]
    for r in rows:
        cls = "l" if r["status"] == "ok" else "l bad"
        out.append(f"<tr><td class=l><b>{esc(r['curve'])}</b></td><td class=l>{esc(r['format_saturates'])}</td>"
                   f"<td class=l>{esc(r['smallest'])}</td><td class=l>{esc(r['measured'])}</td>"
                   f"<td class='{cls}'>{esc(r['forecast'])}</td><td class=l>{esc(r['targets'])}</td>"
                   f"<td class=l>{esc(r['backtest'])}</td></tr>")
    out.append("</table><p class=sub>Format saturates: the smallest N whose format rate is within 95% of its "
               "plateau. Forecasts: bounded curve families in log N weighted by how well each forecast the "
               "study's own larger N from its smaller N (backtests), falling back to the better naive forecast "
               "(the last value carried forward, or a straight line in log N) when that forecast better; "
               f"{lv}% intervals calibrated on those backtests (split conformal). A target inside the measured "
               "range is read off the measured points (monotone interpolation, bootstrap interval); beyond it "
               "from the forecast, at most 4× the largest N. \"cannot forecast\" says why; then no N beyond the "
               "grid is given."
               + (" One seed per N: a point's interval covers the test items, not training randomness; "
                  "the backtests' errors carry that into the forecast bands, which are wide where one "
                  "seed's curve jumps. A second seed (seeds: [0, 1]) puts training randomness into the "
                  "intervals themselves." if one_seed else "")
               + "</p>")
    return "\n".join(out)


def _f(x: Any, nd: int = 2) -> str:
    return "–" if x is None else f"{float(x):.{nd}f}"


def _backtests(fc: ForecastsDoc) -> str:
    """How well this method would have forecast the study's own larger N."""
    curves = [c for c in fc["curves"] if c["backtests"]]
    if not curves:
        return ""
    out = ["<h2>Backtests: forecasting the study's own larger N</h2><table><tr><th class=l>model · task</th>"
           "<th>fitted on N ≤</th><th>predicted N</th><th>forecast [interval]</th><th>measured</th>"
           "<th>error</th><th>last value</th><th>line in log N</th></tr>"]
    for c in curves:
        for r in sorted(c["backtests"], key=lambda r: (r["n"], r["fit_n_max"])):
            lo, hi = r["measurement"]
            bad = "" if r["inside"] else " class=bad"
            out.append(f"<tr><td class=l>{esc(c['model'])} · {esc(c['task'])}</td><td>{n_text(r['fit_n_max'])}</td>"
                       f"<td>{n_text(r['n'])}</td><td{bad}>{r['predicted']:.2f} [{lo:.2f}, {hi:.2f}]</td>"
                       f"<td>{r['measured']:.2f}</td><td>{r['error']:+.2f}</td>"
                       f"<td>{_f(r['naive'].get('last'))}</td><td>{_f(r['naive'].get('loglinear'))}</td></tr>")
    notes = []
    for met, bs in fc["calibration"].items():
        for b, v in bs.items():
            mae = v["mae"]
            notes.append(f"{esc(met)}, {b} ahead: {v['backtests']} backtests, forecast by {esc(v['method'])}, mean "
                         f"|error| {_f(mae.get('ensemble'), 3)} (last value {_f(mae.get('last'), 3)}, "
                         f"line {_f(mae.get('loglinear'), 3)}), interval quantile {_f(v['q'])} "
                         f"({'from these backtests' if v['q_source'] == 'study' else 'reference: too few backtests'})")
    out.append("</table><p class=sub>Each row refits the forecast on the points up to \"fitted on N ≤\" and "
               "predicts a larger measured N; red: outside its interval. " + "; ".join(notes) + ".</p>")
    return "\n".join(out)


def _rule(meta: dict) -> str:
    """A cell's steps rule without what happened to that cell (its budget, where it stopped):
    the rule the curve's cells share."""
    r = str(meta.get("stop_rule") or meta.get("steps_rule") or "")
    r = re.sub(r"\s*(Stopped at step \d+|Trained the whole budget \(\d+ steps\)), kept step \d+\.$", "", r)
    return re.sub(r"at the budget of \d+", "at the cell's step budget", r)


def _held_fixed(run_dir: Path) -> str:
    """What the curve holds fixed: the optimizer steps each cell trained, and the rule."""
    import json

    rows = []
    for p in sorted((Path(run_dir) / layout.CELLS).glob(f"*/{layout.TRAIN}/{layout.TRAIN_META}")):
        try:
            m = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if m.get("n") and m.get("steps") is not None and m.get("task"):
            rows.append(m)
    if not rows:
        return ""
    by: dict[tuple, dict[int, list]] = {}
    for m in rows:
        by.setdefault((m.get("model"), m.get("task")), {}).setdefault(int(m["n"]), []).append(m)
    ns = sorted({n for d in by.values() for n in d})
    rules = sorted({_rule(m) for m in rows})
    early = any(m.get("steps_budget") is not None for m in rows)
    head = "".join(f"<th>{n_text(n)}</th>" for n in ns)
    out = ["<h2>What each curve holds fixed</h2><p>"
           + ("Each N trains until its validation loss (items of the training pool, never the test set) stops "
              "falling, within a step budget: neither steps nor epochs are held fixed, each N gets what its own "
              "validation says helps. Steps kept per cell (seeds apart):" if early else
              "Steps follow one rule of N (below): what the rule holds fixed is what the curve holds fixed. "
              "Steps per cell (seeds apart):")
           + f"</p><table><tr><th class=l>model · task</th>{head}</tr>"]
    for (model, task), d in sorted(by.items()):
        cells = "".join("<td>" + " / ".join(str(m.get("steps"))
                                            for m in sorted(d.get(n, []), key=lambda m: m.get("seed", 0)))
                        + "</td>" for n in ns)
        out.append(f"<tr><td class=l>{esc(model)} · {esc(task)}</td>{cells}</tr>")
    out.append("</table><p class=sub>" + "<br>".join(esc(r) for r in rules[:4]) + "</p>")
    return "\n".join(out)


def _fit_table(doc: FitsDoc) -> str:
    fits = doc["fits"]
    if not fits:
        return ""
    rows = ["<h2>Scaling-law fits</h2><table><tr><th class=l>model</th><th class=l>task</th><th class=l>metric</th>"
            "<th class=l>form</th><th class=l>parameters [interval]</th><th>R²</th><th>dof</th><th>AICc</th>"
            "<th>LOO RMSE</th><th class=l>selection</th><th class=l>warnings</th></tr>"]
    for f in fits:
        ci = f["param_ci"]
        ps = "<br>".join(f"{esc(k)} = {interval(v, *(ci.get(k) or (None, None)))}" for k, v in f["params"].items())
        loo, sel = f["loo"], f["selection"]
        if f["best"]:
            sel_s = f"chosen ({esc(sel.get('criterion') or 'AICc')})"
        elif sel.get("eligible", True):
            sel_s = "eligible"
        else:
            sel_s = "<span class=bad>not eligible</span>: " + esc("; ".join(sel.get("reasons") or []))
        rows.append(f"<tr class={'best' if f['best'] else ''}><td class=l>{esc(f['model'])}</td>"
                    f"<td class=l>{esc(f['task'])}</td><td class=l>{esc(f['metric'])}</td>"
                    f"<td class=l>{esc(f['form'])}{' ★' if f['best'] else ''}</td><td class=l>{ps}</td>"
                    f"<td>{num(f.get('r2_metric'))}</td><td>{num(f.get('dof'))}</td><td>{num(f.get('aicc'))}</td>"
                    f"<td>{num(loo['rmse'])}</td><td class=l>{sel_s}</td>"
                    f"<td class='l warn'>{'<br>'.join(esc(w) for w in f['warnings'])}</td></tr>")
    rule = next((n[len("best: "):] for n in doc["notes"] if n.startswith("best: ")), "lowest AICc")
    rows.append(f"</table><p class=sub>★ the chosen form of the curve; rule: {esc(rule)}. R² in metric space. "
                f"Intervals: {num(100 * (doc.get('level') or 0.95))}% bootstrap percentiles. Forms that are not "
                "eligible are shown with their reasons; their parameters are not used anywhere else.</p>")
    return "\n".join(rows)


def _search_table(metrics: Any) -> str:
    """Recipe search (when the study ran one): per model, task and N, the values chosen per
    seed and each candidate's validation score, mean over seeds; '' without a search."""
    import json

    if "search_candidates" not in getattr(metrics, "columns", ()):
        return ""
    cells = metrics.dropna(subset=["search_candidates"]).drop_duplicates(["model", "task", "n", "seed"])
    if not len(cells):
        return ""
    fields = [c for c in metrics.columns if c.startswith("search_") and c not in
              ("search_val", "search_edges", "search_candidates")]
    rows = ["<h2>Recipe search</h2><p class=sub>Each N &gt; 0 cell trained every candidate on its "
            "subset and kept the one with the best validation score (items of the training pool, "
            "never the test set); the test results above are the chosen candidates'. ⚠ marks a "
            "value chosen at the edge of its grid: the best value may lie beyond it.</p><table>"
            "<tr><th class=l>model</th><th class=l>task</th><th>N</th><th class=l>chosen (per seed)"
            "</th><th class=l>validation score per candidate (mean over seeds)</th></tr>"]
    for (m, t, n), g in cells.groupby(["model", "task", "n"], sort=True):
        chosen = ", ".join(" ".join(f"{f[7:]}={_val(r[f])}" for f in fields) + f" (s{r['seed']})"
                           + (f" ⚠ {r['search_edges'].replace('=low', ' lowest').replace('=high', ' highest')}"
                              " in the grid" if isinstance(r.get("search_edges"), str) and r["search_edges"] else "")
                           for _, r in g.iterrows())
        scores: dict[str, list[float]] = {}
        for blob in g["search_candidates"]:
            for c in json.loads(blob):
                lab = " ".join(f"{k}={_val(v)}" for k, v in (c.get("values") or {}).items())
                if c.get("score") is not None:
                    scores.setdefault(lab, []).append(c["score"])
        cand = "; ".join(f"{esc(k)}: {sum(v) / len(v):.2f}" for k, v in scores.items())
        rows.append(f"<tr><td class=l>{esc(m)}</td><td class=l>{esc(t)}</td><td>{int(n)}</td>"
                    f"<td class=l>{esc(chosen)}</td><td class=l>{cand}</td></tr>")
    return "".join(rows) + "</table>"


def _val(v: Any) -> str:
    """A searched recipe value: numbers to 3 significant digits, anything else as text."""
    return num(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _joint_table(doc: FitsDoc) -> str:
    joint = doc.get("joint", [])
    if not joint:
        return ""
    rows = ["<h3>Exponents across model sizes (joint fit)</h3><table><tr><th class=l>task</th>"
            "<th class=l>metric (form)</th><th class=l>model</th><th>exponent [interval]</th>"
            "<th class=l>identified</th></tr>"]
    for j in joint:
        for m in j["models"]:
            e = m["exponent"]
            val = interval(e.get("mid"), e.get("lo"), e.get("hi")) if m.get("identified") else "–"
            ok = ("yes" if m.get("identified")
                  else "<span class=bad>no</span>: " + esc(", ".join(m.get("reasons") or [])))
            rows.append(f"<tr><td class=l>{esc(j['task'])}</td><td class=l>{esc(j['metric'])} ({esc(j['form'])}, "
                        f"{esc(j['exponent'])})</td><td class=l>{esc(m['model'])}</td><td>{val}</td>"
                        f"<td class=l>{ok}</td></tr>")
        for d in j["differences"]:
            val = interval(d.get("diff"), d.get("lo"), d.get("hi")) if d.get("identified") else "–"
            rows.append(f"<tr><td class=l>{esc(j['task'])}</td><td class=l>{esc(j['metric'])}</td>"
                        f"<td class=l><b>{esc(d['a'])} − {esc(d['b'])}</b></td><td>{val}</td>"
                        f"<td class=l>{'p = ' + num(d.get('p_two_sided')) if d.get('identified') else 'not identified'}"
                        "</td></tr>")
    rows.append("</table><p class=sub>Each model's curve fitted with the same form, its own parameters; with "
                "per-item scores every bootstrap replicate draws the same items for all models, so the interval "
                "of a difference is paired. p: two-sided bootstrap p-value of the difference.</p>")
    return "\n".join(rows)


def _style_table(analysis: AnalysisDoc) -> str:
    out = []
    for g in analysis["groups"]:
        if "format_error" not in g:
            continue
        out.append(f"<h3>{esc(g['model'])} · {esc(g['task'])}</h3><table><tr><th>N</th><th>format rate %</th>"
                   "<th>format errors %</th><th>substance errors %</th><th>total errors %</th></tr>")
        bands = (g["format_rate"], g["format_error"], g["substance_error"], g["total_error"])
        for i, n in enumerate(g["n"]):
            def b(s: BandSeries, i: int = i) -> str:
                return interval(s["mid"][i], s["lo"][i], s["hi"][i], pct=True)
            out.append(f"<tr><td>{n_text(n)}</td>" + "".join(f"<td>{b(s)}</td>" for s in bands) + "</tr>")
        out.append("</table>")
    return "\n".join(out)


def _kcell(r: dict | None, q: str, met: str) -> str:
    c = ((r or {}).get(q) or {}).get(met)
    if not c or c.get("mean") is None:
        return "<td>–</td>"
    return f"<td>{interval(c['mean'], c.get('lo'), c.get('hi'), pct=True)}</td>"


def _knowledge(k: dict, fig: dict | None, met: str = "em") -> str:
    out = ["<h2>Knowledge injection</h2>"]
    if fig:
        out.append(img(fig["png"], "knowledge injection"))
    ni = k.get("n_items", {})
    out.append(f"<p>Base model <code>{esc(k.get('model'))}</code>; {esc(k.get('n_facts'))} new facts; "
               f"{esc(ni.get('direct'))} direct and {esc(ni.get('multihop'))} multihop questions "
               "(a multihop question combines a new fact with one the base model already knows). "
               f"{esc(met)} in %, with paired bootstrap intervals.</p>")
    rows = k.get("rows", [])
    out.append("<table><tr><th class=l>starting point</th><th class=l>condition</th><th>direct</th>"
               "<th>multihop</th><th>corpus recall %</th></tr>")
    for r in rows:
        rec = r.get("recall")
        rec_s = percent(rec.get("corpus") if isinstance(rec, dict) else rec) if rec is not None else "–"
        out.append(f"<tr><td class=l>{esc(r['start'])}</td><td class=l>{esc(r['condition'])}</td>"
                   f"{_kcell(r, 'direct', met)}{_kcell(r, 'multihop', met)}<td>{rec_s}</td></tr>")
    out.append("</table>")
    diffs = [d for d in k.get("differences", []) if d.get("metric") == met]
    if diffs:
        out.append("<p class=sub><i>gain</i>: (injected − before) of a minus (injected − before) of b, i.e. "
                   "what the facts stage added beyond what each start already answered closed book.</p>")
        out.append("<table><tr><th class=l>difference</th><th class=l>condition</th><th class=l>questions</th>"
                   "<th>Δ % [paired]</th><th>unpaired interval</th></tr>")
        for d in diffs:
            out.append(f"<tr><td class=l>{esc(d['a'])} − {esc(d['b'])}</td><td class=l>{esc(d['condition'])}</td>"
                       f"<td class=l>{esc(d['question_type'])}</td>"
                       f"<td>{interval(d['diff'], d.get('lo'), d.get('hi'), pct=True)}</td>"
                       f"<td class=sub>[{percent(d['lo_unpaired'])}, {percent(d['hi_unpaired'])}]</td></tr>"
                       if d.get("lo_unpaired") is not None else
                       f"<tr><td class=l>{esc(d['a'])} − {esc(d['b'])}</td><td class=l>{esc(d['condition'])}</td>"
                       f"<td class=l>{esc(d['question_type'])}</td>"
                       f"<td>{interval(d['diff'], d.get('lo'), d.get('hi'), pct=True)}</td><td>–</td></tr>")
        out.append("</table>")
    return "\n".join(out)


def _examples(examples: list[dict]) -> str:
    if not examples:
        return ""
    out = ["<h2>Sample responses</h2><p class=sub>The first test items, at each N (first seed).</p>"]
    for g in examples:
        out.append(f"<h3>{esc(g['model'])} · {esc(g['task'])}</h3>")
        for it in g["items"]:
            out.append(f"<p><b>{esc(it['id'])}</b></p><pre>{esc(it['prompt'])}</pre><table>"
                       "<tr><th>N</th><th class=l>response</th><th>format</th><th>correct</th></tr>")
            for r in it["by_n"]:
                fm = "<span class=ok>✓</span>" if r["format_ok"] else "<span class=bad>✗</span>"
                co = "<span class=ok>✓</span>" if r["correct"] else "<span class=bad>✗</span>"
                out.append(f"<tr><td>{n_text(r['n'])}</td><td class=l><pre>{esc(r['response'])}</pre></td>"
                           f"<td>{fm}</td><td>{co}</td></tr>")
            out.append("</table>")
    return "\n".join(out)
