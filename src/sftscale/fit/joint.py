"""One joint fit across model sizes: a shared form, per-model parameters, the exponent differences.

The paper's claim that larger models gain more from finetuning is a claim about exponents,
so for every (task, metric) measured on two or more models:

- every model's curve is fitted with the same form (default: the paper's power law
  P = a N^b, ``forms.paper_form()``; its exponent is b, the paper's 1/b), each model with its
  own parameters; the exponent compared is the form's declared ``Form.exponent``;
- the bootstrap is *joint*: with per-item scores for every model (the models answer the
  same test items), each replicate draws the item indices once (and the seeds once) and
  applies them to every model at every N (``bootstrap.paired_bootstrap_means`` on the
  stacked (model, N) cells), so the replicates of the two exponents are paired and the
  interval of their difference accounts for the items they share. Without items each model
  gets its own replicates (``binomial``/``seeds``: unpaired, ``paired: false``);
- for every pair (a, b) of models, in the order given (default: sorted names), the
  difference exponent(a) - exponent(b) with its percentile interval over the replicates
  where both refits succeeded, and a two-sided bootstrap p-value
  ``2 min(P(d <= 0), P(d >= 0))`` (how often the replicate difference has the other sign).

``identified`` is false when either model's fit has fewer than 2 residual dof or fails an
identifiability check of ``selection.identifiability``; the report then prints no number.

Not handled: a shared exponent model (nested test), joint fits across tasks, more than one
form at a time, items present for only some models (then all models are resampled apart).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence, cast

import numpy as np
import pandas as pd

from ..io import InputError
from ..schema import JointDifference, JointEntry
from .bootstrap import CurveData, curve_data, curve_rng, paired_bootstrap_means
from .data import METRIC_TO_ITEM, load_long
from .fitting import fit_curves, json_safe
from .forms import get_form, paper_form, single_threaded
from .selection import MIN_DOF


def _joint_items(rows: pd.DataFrame, items: pd.DataFrame, col: str, models: list[str], n_boot: int,
                 rng: np.random.Generator) -> dict[str, CurveData] | None:
    """Per-model CurveData whose replicates share item (and seed) draws; None without items."""
    it = items[items["model"].isin(models) & items[col].notna()]
    if it.empty or set(it["model"].unique()) != set(models):
        return None
    piv = it.pivot_table(index=["model", "n", "seed"], columns="item_id", values=col, aggfunc="mean")
    keys = sorted({(m, float(n)) for m, n, _ in piv.index}, key=lambda k: (models.index(k[0]), k[1]))
    code = {k: i for i, k in enumerate(keys)}
    cell = np.array([code[(m, float(n))] for m, n, _ in piv.index], float)
    seeds = np.array([str(s) for _, _, s in piv.index])
    S = piv.to_numpy(dtype=float, na_value=np.nan)
    levels, point, reps = paired_bootstrap_means(cell, seeds, S, n_boot, rng)
    method = "paired-items" + ("+seeds" if np.unique(seeds).size > 1 else "") + " (joint over models)"
    out = {}
    for m in models:
        idx = [i for i, lv in enumerate(levels) if keys[int(lv)][0] == m]
        ns = np.array([keys[int(levels[i])][1] for i in idx])
        out[m] = CurveData(m, str(rows["task"].iloc[0]), str(rows["metric"].iloc[0]), ns, point[idx],
                           reps[:, idx] if n_boot > 0 else None, method, int(S.shape[1]))
    return out


def _full_reps(fit: Any) -> np.ndarray | None:
    """(n_boot, P) replicate parameters with NaN rows where the refit failed (aligned across models)."""
    if fit.theta_reps is None or fit.rep_ok is None:
        return None
    full = np.full((fit.rep_ok.size, fit.theta.size), np.nan)
    full[fit.rep_ok] = fit.theta_reps
    return full


def _difference(fa: Any, fb: Any, i: int, level: float) -> dict:
    d0 = float(fa.theta[i] - fb.theta[i])
    ra, rb = _full_reps(fa), _full_reps(fb)
    out: dict[str, Any] = {"a": fa.model, "b": fb.model, "diff": d0, "lo": None, "hi": None,
                           "p_two_sided": None, "n_rep": 0}
    if ra is None or rb is None or ra.shape[0] != rb.shape[0]:
        return out
    d = ra[:, i] - rb[:, i]
    d = d[np.isfinite(d)]
    if d.size == 0:
        return out
    t = (1.0 - level) / 2.0
    out.update(lo=float(np.quantile(d, t)), hi=float(np.quantile(d, 1 - t)), n_rep=int(d.size),
               p_two_sided=float(min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0)))))
    return out


def _unpaired_fits(rows: pd.DataFrame, order: Sequence[str], fo: Any, level: float, n_boot: int, seed: int,
                   reuse: Mapping[tuple[str, str, str, str], Any] | None) -> dict[str, Any]:
    """Every model's fit of ``fo`` from its own aggregates: taken from ``reuse`` where it holds
    that fit (see ``joint_fits``), the others fitted together (``fitting.fit_curves``)."""
    task, met = str(rows["task"].iloc[0]), str(rows["metric"].iloc[0])
    fits: dict[str, Any] = {}
    for m in order:
        f = (reuse or {}).get((m, task, met, fo.name))
        if (f is not None and f.form == fo.name and f.level == level and not f.method.startswith("paired-items")
                and (f.theta_reps is None or f.n_boot == n_boot)):
            fits[m] = f
    todo = [m for m in order if m not in fits]
    cds = [curve_data(rows[rows["model"] == m], None, n_boot, curve_rng(seed, m, task, met)) for m in todo]
    fits.update(zip(todo, fit_curves(cds, fo, level=level)))
    return fits


def _pairs(k: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(k) for b in range(a + 1, k)]


def _differences(fits: Sequence[Any], i: int, level: float) -> list[dict]:
    """``_difference`` of every pair (a before b) of ``fits``, the pairs of one model a at once
    (quantiles along an axis); pairs with a failed replicate refit one at a time."""
    full = [_full_reps(f) for f in fits]
    k = len(fits)
    out: list[dict] = []
    t = (1.0 - level) / 2.0
    for a in range(k - 1):
        fa, ra = fits[a], full[a]
        rest = range(a + 1, k)
        others = [full[b] for b in rest]
        ok = ra is not None and all(x is not None and x.shape[0] == ra.shape[0] for x in others)
        if ok:
            D = cast(np.ndarray, ra)[None, :, i] - np.stack([cast(np.ndarray, x)[:, i] for x in others])
            fin = np.all(np.isfinite(D), axis=1) & (D.shape[1] > 0)
            if fin.any():
                Df = D[fin]
                lo, hi = np.quantile(Df, t, axis=1), np.quantile(Df, 1 - t, axis=1)
                p = np.minimum(1.0, 2 * np.minimum(np.mean(Df <= 0, axis=1), np.mean(Df >= 0, axis=1)))
                vals = iter(zip(lo, hi, p))
        for j, b in enumerate(rest):
            if not ok or not fin[j]:
                out.append(_difference(fa, fits[b], i, level))
                continue
            l_, h_, p_ = next(vals)
            out.append({"a": fa.model, "b": fits[b].model, "diff": float(fa.theta[i] - fits[b].theta[i]),
                        "lo": float(l_), "hi": float(h_), "p_two_sided": float(p_), "n_rep": int(D.shape[1])})
    return out


def _model_entry(f: Any, name: str) -> dict:
    ok = np.all(np.isfinite(f.theta)) and f.dof >= MIN_DOF and not f.unidentified
    reasons = ([f"{f.dof} residual dof (< {MIN_DOF})"] if f.dof < MIN_DOF else []) + list(f.unidentified)
    return {"model": f.model, "params": f.params, "param_ci": {k: list(v) for k, v in f.param_ci.items()},
            "exponent": {"name": name, "mid": f.params.get(name), "lo": (f.param_ci.get(name) or (None,))[0],
                         "hi": (f.param_ci.get(name) or (None, None))[1]},
            "dof": f.dof, "n": f.n, "identified": bool(ok), "reasons": reasons, "warnings": f.warnings}


@single_threaded
def joint_fits(df: pd.DataFrame | str, items: pd.DataFrame | None = None, metric: str | None = None,
               form: str | None = None, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
               models: Sequence[str] | None = None,
               reuse: Mapping[tuple[str, str, str, str], Any] | None = None) -> list[JointEntry]:
    """Joint fits of every (task, metric) with two or more models (see the module docstring).

    ``models`` fixes the order of the pairs (a minus b for a listed before b); models not
    listed come after, sorted. ``form=None``: the paper's power law. Returns JSON-safe dicts
    (the ``joint`` list of fits.json); InputError for a form that declares no exponent.
    ``reuse``: ``fit_table``'s fits by (model, task, metric, form), of the same ``n_boot``, ``seed``
    and ``level``; an unpaired joint fit takes a model's fit of this form from it when that fit's
    replicates came from the aggregates (the same data as here) instead of fitting it again.
    """
    long = load_long(df)
    fo = paper_form() if form is None else get_form(form)
    name = fo.exponent
    if name is None:
        raise InputError(None, f"the {fo.name} form declares no exponent, and joint fits compare "
                         "exponents", field="form")
    i = fo.public_names.index(name)
    if metric is not None:
        long = long[long["metric"] == metric]
    long = long[~(long["metric"].str.endswith("_stderr") | long["metric"].isin(["n", "n_items"]))]
    out = []
    for (task, met), rows in long.groupby(["task", "metric"], sort=True):
        have = sorted(rows["model"].unique())
        order = [m for m in (models or []) if m in have] + [m for m in have if m not in (models or [])]
        if len(order) < 2:
            continue
        col = METRIC_TO_ITEM.get(met, met)
        its = items[items["task"] == task] if items is not None and len(items) and col in items.columns else None
        rng = curve_rng(seed, "joint", task, met)
        cds = _joint_items(rows, its, col, order, n_boot, rng) if its is not None else None
        paired = cds is not None
        if cds is None:
            fits = _unpaired_fits(rows, order, fo, level, n_boot, seed, reuse)
        else:
            fits = dict(zip(order, fit_curves([cds[m] for m in order], fo, level=level)))
        entries = [_model_entry(fits[m], name) for m in order]
        diffs = _differences([fits[m] for m in order], i, level)
        for (a, b), d in zip(_pairs(len(order)), diffs):
            d["identified"] = entries[a]["identified"] and entries[b]["identified"]
            d["paired"] = paired
        out.append(json_safe({"task": task, "metric": met, "form": fo.name, "exponent": name,
                              "level": level, "method": fits[order[0]].method, "paired": paired,
                              "models": entries, "differences": diffs}))
    return out


def describe_difference(d: JointDifference) -> str:
    """Plain words for one difference (used by the CLI): 'exponent of a minus b: x [lo, hi]'."""
    def f(x: Any) -> str:
        return "-" if x is None or not math.isfinite(x) else f"{x:.3g}"
    return f"the exponent of {d['a']} minus {d['b']}: {f(d['diff'])} [{f(d['lo'])}, {f(d['hi'])}]"


__all__ = ["describe_difference", "joint_fits"]
