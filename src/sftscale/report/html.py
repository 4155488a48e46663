"""The report page: one HTML string with every figure embedded (base64 PNG), no scripts.

Everything shown is read from the analysis results passed in; nothing is a constant.
Not handled: themes, interactive plots, pagination of very large studies.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html as _html
import math
from pathlib import Path
from typing import Any, Sequence

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


def esc(x: Any) -> str:
    return _html.escape(str(x))


def num(x: Any, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, (int,)) or (isinstance(x, float) and abs(x) >= 1000):
        return f"{x:,.0f}"
    return f"{x:.{nd}g}" if isinstance(x, float) else esc(x)


def interval(mid: Any, lo: Any, hi: Any, pct: bool = False) -> str:
    f = (lambda v: "–" if v is None else f"{100 * v:.1f}") if pct else (lambda v: num(v))
    if lo is None or hi is None:
        return f(mid)
    return f"{f(mid)} <span class=sub>[{f(lo)}, {f(hi)}]</span>"


def img(path: Path, alt: str) -> str:
    b64 = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{b64}">'


def render(title: str, run_dir: Path, res: dict, figs: dict, knowledge: dict | None,
           examples: list[dict], targets: Sequence[float]) -> str:
    from .. import __version__

    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{esc(title)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>{esc(title)}</h1><div class=sub>run directory <code>{esc(run_dir)}</code> · "
             f"sftscale {esc(__version__)} · {esc(_dt.datetime.now().strftime('%Y-%m-%d %H:%M'))}</div>",
             "<p>Does finetuning only teach a model the <b>format</b> of answers, or also their "
             "<b>substance</b>? Every checkpoint below was finetuned on N examples (nested, seeded subsets) "
             "and scored with format and correctness kept apart.</p>"]
    parts.append(_findings(res, knowledge))
    if "accuracy" in figs:
        parts.append("<h2>Accuracy against N</h2>" + img(figs["accuracy"]["png"], "accuracy against N")
                     + "<p class=sub>Points: mean over seeds (error bar ±1 sd, faint dots single seeds). "
                     "Curve: the best form by AICc with its paired-bootstrap band.</p>")
    parts.append(_fit_table(res["fits_doc"]))
    parts.append(_target_table(res["fits_doc"], targets))
    if "style" in figs:
        parts.append("<h2>Style versus substance</h2>" + img(figs["style"]["png"], "format and substance errors")
                     + _style_table(res["analysis"]))
    if knowledge:
        parts.append(_knowledge(knowledge, figs.get("knowledge")))
    parts.append(_examples(examples))
    parts.append("<h2>Files</h2><p class=sub>fits.json, analysis.json, the figures as PNG and SVG "
                 "(report/), study.sqlite, export.csv, items.jsonl.</p></body></html>")
    return "\n".join(parts)


def _findings(res: dict, knowledge: dict | None) -> str:
    out = ["<h2>Findings, as measured</h2>"]
    best = [f for f in res["fits_doc"].get("fits", []) if f.get("best")]
    for f in best:
        p = ", ".join(f"{k}={num(v)}" for k, v in f["params"].items())
        out.append(f"<div class=finding><b>{esc(f['model'])} · {esc(f['task'])}</b>: {esc(f['metric'])} "
                   f"follows the <b>{esc(f['form'])}</b> law ({esc(p)}), R² = {num(f.get('r2_metric'))} "
                   f"on {len(f['points']['n'])} points.</div>")
    for g in res["analysis"].get("groups", []):
        sat, plat = g.get("style_saturation_n") or {}, g.get("accuracy_plateau_n") or {}
        if sat.get("n") is None:
            continue
        r2 = (g.get("r2_total_vs_substance") or {}).get("r2")
        rising = "is still rising at the largest N" if plat.get("still_rising") else \
            f"stops rising at N = {num(plat.get('n'))}"
        ra = g.get("r2_total_vs_substance_after_style") or {}
        after = (f"; from N = {num(ra.get('from_n'))} on (format saturated), r² = {num(ra.get('r2'))}"
                 if ra.get("r2") is not None else "")
        out.append(f"<div class=finding><b>{esc(g['model'])} · {esc(g['task'])}</b>: the format saturates at "
                   f"N = {num(sat['n'])} (95% of its plateau {num(sat.get('plateau'))}), while accuracy {rising}. "
                   f"Total error tracks substance error across all N with r² = {num(r2)}{after}.</div>")
    if knowledge and knowledge.get("rows"):
        cells = []
        for r in knowledge["rows"]:
            if r.get("condition") != "injected":
                continue
            d, m = ((r.get(q) or {}).get("em") or {} for q in ("direct", "multihop"))
            if d.get("mean") is not None and m.get("mean") is not None:
                cells.append(f"{esc(r['start'])}: direct/multihop {100 * d['mean']:.0f}%/{100 * m['mean']:.0f}%")
        gains = [d for d in knowledge.get("differences", [])
                 if d.get("condition") == "gain" and d.get("metric") == "em"]
        gain_s = "; ".join(
            f"{esc(d['question_type'])} {100 * d['diff']:+.1f} pts [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}]"
            for d in gains)
        if cells:
            out.append("<div class=finding><b>Knowledge injection</b> (exact match after finetuning on the new "
                       f"facts): {'; '.join(cells)}. The paper reports 81%/55% when first post-trained for "
                       "reasoning vs 65%/37% for the base model."
                       + (f" Gain over closed book, {esc(gains[0]['a'])} minus {esc(gains[0]['b'])}: {gain_s}."
                          if gains else "") + "</div>")
    return "\n".join(out)


def _fit_table(doc: dict) -> str:
    fits = doc.get("fits", [])
    if not fits:
        return ""
    rows = ["<h2>Scaling-law fits</h2><table><tr><th class=l>model</th><th class=l>task</th><th class=l>metric</th>"
            "<th class=l>form</th><th class=l>parameters [interval]</th><th>R²</th><th>dof</th><th>AICc</th>"
            "<th>LOO RMSE</th><th class=l>warnings</th></tr>"]
    for f in fits:
        ci = f.get("param_ci", {})
        ps = "<br>".join(f"{esc(k)} = {interval(v, *(ci.get(k) or (None, None)))}" for k, v in f["params"].items())
        loo = f.get("loo") or {}
        rows.append(f"<tr class={'best' if f.get('best') else ''}><td class=l>{esc(f['model'])}</td>"
                    f"<td class=l>{esc(f['task'])}</td><td class=l>{esc(f['metric'])}</td>"
                    f"<td class=l>{esc(f['form'])}{' ★' if f.get('best') else ''}</td><td class=l>{ps}</td>"
                    f"<td>{num(f.get('r2_metric'))}</td><td>{num(f.get('dof'))}</td><td>{num(f.get('aicc'))}</td>"
                    f"<td>{num(loo.get('rmse'))}</td><td class='l warn'>{'<br>'.join(esc(w) for w in f.get('warnings', []))}</td></tr>")
    rows.append("</table><p class=sub>★ lowest AICc for the curve. R² in metric space. "
                f"Intervals: {esc(int(100 * (doc.get('level') or 0.95)))}% bootstrap percentiles.</p>")
    return "\n".join(rows)


def _target_table(doc: dict, targets: Sequence[float]) -> str:
    best = [f for f in doc.get("fits", []) if f.get("best") and f.get("targets")]
    if not best:
        return ""
    head = "".join(f"<th>N for {esc(t)}</th>" for t in targets)
    rows = [f"<h3>Examples needed to reach a target</h3><table><tr><th class=l>model</th><th class=l>task</th>"
            f"<th class=l>metric (form)</th>{head}</tr>"]
    for f in best:
        cells = []
        for t in f["targets"]:
            if not t.get("reachable"):
                cells.append("<td class=bad>not reachable under this fit</td>")
            else:
                cells.append(f"<td>{interval(t['n'], t.get('lo'), t.get('hi'))}</td>")
        rows.append(f"<tr><td class=l>{esc(f['model'])}</td><td class=l>{esc(f['task'])}</td>"
                    f"<td class=l>{esc(f['metric'])} ({esc(f['form'])})</td>{''.join(cells)}</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _style_table(analysis: dict) -> str:
    out = []
    for g in analysis.get("groups", []):
        if "format_error" not in g:
            continue
        out.append(f"<h3>{esc(g['model'])} · {esc(g['task'])}</h3><table><tr><th>N</th><th>format rate %</th>"
                   "<th>format errors %</th><th>substance errors %</th><th>total errors %</th></tr>")
        for i, n in enumerate(g["n"]):
            def b(k: str) -> str:
                return interval(g[k]["mid"][i], g[k]["lo"][i], g[k]["hi"][i], pct=True)
            out.append(f"<tr><td>{num(n)}</td><td>{b('format_rate')}</td><td>{b('format_error')}</td>"
                       f"<td>{b('substance_error')}</td><td>{b('total_error')}</td></tr>")
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
               "<th>multihop</th><th>corpus recall after</th></tr>")
    for r in rows:
        rec = r.get("recall")
        rec_s = num(rec.get("mean") if isinstance(rec, dict) else rec) if rec is not None else "–"
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
                       f"<td class=sub>[{100 * d['lo_unpaired']:.1f}, {100 * d['hi_unpaired']:.1f}]</td></tr>"
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
                out.append(f"<tr><td>{num(r['n'])}</td><td class=l><pre>{esc(r['response'])}</pre></td>"
                           f"<td>{fm}</td><td>{co}</td></tr>")
            out.append("</table>")
    return "\n".join(out)
