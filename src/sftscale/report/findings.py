"""The report's "Findings, as measured": plain sentences built from fits.json and analysis.json.

Per (model, task, metric) curve: the chosen form and why (``fit.selection``) and the power-law
exponent in the paper's terms (P proportional to N^(1/b): 1/b and b with intervals) when the
paper's form (``Form.paper``) is identified: descriptions of the measured points. Forecasts and N for a target
are the Answers' (``fit.forecast``), not a form's. Then the exponent differences between model
sizes (``fits.json``'s ``joint``), the style/substance analysis and the knowledge experiment.

Rules: every number goes through ``fmt.num`` (at most 3 significant digits); no parameter of
a form that is not identified (or has fewer than 2 residual dof) is ever printed here.
Not handled: metrics where lower is better, sentences in other languages.
"""

from __future__ import annotations

from typing import Any

from ..fit.answers import n_text
from ..fit.forms import FORMS
from ..schema import R2, AnalysisDoc, AnalysisGroup, Band, FitEntry, FitsDoc, JointEntry, Plateau
from .fmt import esc, interval, num, percent, signed

NOT_DETERMINED = "not determined by these data"


def _iv(d: Band) -> str:
    return interval(d["mid"], d["lo"], d["hi"], hi_text=NOT_DETERMINED)


def _is_paper(form: str) -> bool:
    """Whether ``form`` is the paper's power law (a form no longer registered is not)."""
    fo = FORMS.get(form)
    return bool(fo is not None and fo.paper)


def _eligible(f: FitEntry) -> bool:
    return bool(f["selection"].get("eligible", f["best"]))


def curve_finding(curve: list[FitEntry]) -> str:
    """One finding for the fits of one curve (all forms)."""
    f0 = curve[0]
    head = f"<b>{esc(f0['model'])} · {esc(f0['task'])}</b>: "
    best = next((f for f in curve if f["best"]), None)
    if best is None:
        why = "; ".join(f"{esc(f['form'])}: {esc(', '.join(f['selection'].get('reasons') or ['-']))}"
                        for f in curve)
        return (f"<div class=finding>{head}no fitted form is identified by these data with at least 2 residual "
                f"degrees of freedom ({why}); no parameters are reported.</div>")
    sel = best["selection"]
    npts = len(best["points"]["n"])
    parts = [f"{head}{esc(best['metric'])} is best described by the <b>{esc(best['form'])}</b> form "
             f"(chosen by {esc(sel.get('criterion') or 'AICc')} among forms with at least 2 residual degrees "
             f"of freedom and identified parameters; R² = {num(best['r2_metric'])} on {npts} points, "
             f"{num(best['dof'])} dof)."]
    power = next((f for f in curve if _is_paper(f["form"])), None)
    if power is not None and _eligible(power) and "paper_terms" in power:
        pt = power["paper_terms"]
        parts.append(f"As a power law P ∝ N<sup>1/b</sup>: 1/b = {_iv(pt['one_over_b'])}, "
                     f"b = {_iv(pt['b'])}.")
    elif power is not None:
        why = ", ".join(r.replace("not identified: ", "") for r in power["selection"].get("reasons") or [])
        why = why or "not fitted"
        parts.append(f"The power-law exponent is not identified by these data ({esc(why)}).")
    if not _is_paper(best["form"]):
        ci = best["param_ci"]
        ps = ", ".join(f"{esc(k)} = {interval(v, *(ci.get(k) or (None, None)))}" for k, v in best["params"].items())
        parts.append(f"Its parameters: {ps}.")
    return "<div class=finding>" + " ".join(parts) + "</div>"


def joint_finding(joint: list[JointEntry], level: Any) -> str:
    """The exponent differences between model sizes, one sentence per (task, metric)."""
    if not joint:
        return ""
    out = []
    for j in joint:
        for d in j["differences"]:
            lead = (f"<b>{esc(j['task'])}</b> ({esc(j['metric'])}, {esc(j['form'])} form fitted to each model, "
                    f"{'paired bootstrap over items' if j['paired'] else 'models resampled apart'})")
            if not d["identified"]:
                why = "; ".join(f"{esc(m['model'])}: {esc(', '.join(m['reasons']))}"
                                for m in j["models"] if not m["identified"])
                out.append(f"{lead}: the exponent of {esc(d['a'])} minus {esc(d['b'])} is not identified ({why}).")
                continue
            verdict = ""
            lo, hi = d["lo"], d["hi"]
            if lo is not None and hi is not None:
                verdict = ("; the interval excludes 0" if lo > 0 or hi < 0
                           else "; the interval includes 0: no difference detected")
            out.append(f"{lead}: the exponent of {esc(d['a'])} minus {esc(d['b'])}: "
                       f"{interval(d['diff'], lo, hi)} (bootstrap p = {num(d['p_two_sided'])}"
                       f"{verdict}).")
    lv = percent(level or 0.95)
    return (f"<div class=finding><b>Exponents across model sizes</b> ({lv}% intervals; the paper's claim that "
            f"larger models gain more is a claim about these exponents): " + " ".join(out) + "</div>")


def style_finding(g: AnalysisGroup) -> str:
    """One sentence per (model, task) with a format/substance split (groups without one: "")."""
    if "style_saturation_n" not in g or g["style_saturation_n"]["n"] is None:
        return ""
    sat = g["style_saturation_n"]
    plat: Plateau = g.get("accuracy_plateau_n") or {}
    r2 = g.get("r2_total_vs_substance", {}).get("r2")
    rising = "is still rising at the largest N" if plat.get("still_rising") else \
        f"stops rising at N = {n_text(plat.get('n'))}"
    ra: R2 = g.get("r2_total_vs_substance_after_style") or {}
    after = (f"; from N = {n_text(ra.get('from_n'))} on (format saturated), r² = {num(ra.get('r2'))}"
             if ra.get("r2") is not None else "")
    return (f"<div class=finding><b>{esc(g['model'])} · {esc(g['task'])}</b>: the format saturates at "
            f"N = {n_text(sat['n'])} (95% of its plateau {num(sat['plateau'])}), while accuracy {rising}. "
            f"Total error tracks substance error across all N with r² = {num(r2)}{after}.</div>")


def knowledge_finding(knowledge: dict | None) -> str:
    if not knowledge or not knowledge.get("rows"):
        return ""
    cells = []
    for r in knowledge["rows"]:
        if r.get("condition") != "injected":
            continue
        d, m = ((r.get(q) or {}).get("em") or {} for q in ("direct", "multihop"))
        if d.get("mean") is not None and m.get("mean") is not None:
            cells.append(f"{esc(r['start'])}: direct {interval(d['mean'], d.get('lo'), d.get('hi'), pct=True)}, "
                         f"two-hop {interval(m['mean'], m.get('lo'), m.get('hi'), pct=True)}")
    gains = [d for d in knowledge.get("differences", []) if d.get("condition") == "gain" and d.get("metric") == "em"]
    gain_s = "; ".join(f"{esc(d['question_type'])} {signed(100 * d['diff'])} pts "
                       f"[{signed(100 * d['lo'])}, {signed(100 * d['hi'])}]" for d in gains)
    if not cells:
        return ""
    st = (knowledge.get("config") or {}).get("stage") or {}
    seeds = len(st.get("seeds") or []) or 1
    who = ("questions only about new people whose QA was never trained on, "
           if st.get("qa_share") and knowledge.get("facts") == "toy" else "")
    return ("<div class=finding><b>Knowledge injection</b> (exact match in % after finetuning on the "
            f"new facts; {who}{seeds} facts-stage seed{'s' if seeds > 1 else ''}): {'; '.join(cells)}. "
            "The paper reports 81%/55% when first post-trained for "
            "reasoning vs 65%/37% for the base model."
            + (f" Gain over closed book, {esc(gains[0]['a'])} minus {esc(gains[0]['b'])}: {gain_s}." if gains else "")
            + (" With one facts-stage seed the intervals cover the questions, not training "
               "randomness: use several seeds (sftscale demo --full) before reading a difference."
               if seeds == 1 else "")
            + "</div>")


def findings(doc: FitsDoc, analysis: AnalysisDoc, knowledge: dict | None) -> str:
    """The whole "Findings, as measured" section: fits.json, analysis.json, the knowledge table."""
    out = ["<h3>The paper's forms, fitted</h3><p class=sub>Descriptions of the measured points, not "
           "forecasts (the forecasts and N for a target are in the Answers above).</p>"]
    curves: dict[tuple, list[FitEntry]] = {}
    for f in doc["fits"]:
        curves.setdefault((f["model"], f["task"], f["metric"]), []).append(f)
    out += [curve_finding(c) for c in curves.values()]
    out.append(joint_finding(doc.get("joint", []), doc["level"]))
    out += [style_finding(g) for g in analysis["groups"]]
    out.append(knowledge_finding(knowledge))
    return "\n".join(x for x in out if x)


__all__ = ["NOT_DETERMINED", "curve_finding", "findings", "joint_finding"]
