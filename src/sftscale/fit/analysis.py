"""Style versus substance: how format errors and substance errors move with N.

``style_substance(items, n_boot=1000, seed=0, level=0.95) -> dict`` takes the per-item table
of ``fit.data`` (columns model, task, n, item_id[, seed], format_ok, correct; or a mapping
``{n: [per-sample records]}``) and returns, per (model, task), at each N:

- ``format_error`` = mean(not format_ok), ``substance_error`` = mean(format_ok and not
  correct), ``total_error`` = mean(not correct) (= 1 - accuracy), ``format_rate``,
  ``accuracy``; each ``{"mid", "lo", "hi"}`` with paired item (and seed) bootstrap
  percentile intervals (``bootstrap.paired_bootstrap_means``: the same resampled items at every N).
- ``style_saturation_n``: the plateau is the maximum of the isotonic (non-decreasing)
  regression of format_rate on N (= the mean of its top block, so one lucky N does not
  define it); the style saturation N is the smallest N whose isotonic value reaches
  ``plateau_frac`` (0.95) x plateau. Interval: percentiles of the same rule on replicates.
- ``accuracy_plateau_n``: the smallest N from which no larger N shows a significant
  paired gain in accuracy (one-sided: the lower ``1 - level`` quantile of the replicate
  differences acc(N') - acc(N) is <= 0 for every N' > N). If that is the largest N,
  ``still_rising`` is true. ``steps`` lists each consecutive paired gain with its interval.
- ``r2_total_vs_substance``: squared Pearson correlation across N of total error and
  substance error (the paper reports 0.98 on GSM8k), with a bootstrap interval;
  ``r2_total_vs_substance_after_style``: the same over N >= the style saturation N only
  (when there are at least 3 such N), where format errors no longer move.
- IFEval: ``loose_minus_strict`` for every column pair ``*strict*``/``*loose*`` present, and
  ``categories``: per-instruction-category curves when rows carry ``category`` and
  ``followed_strict`` (see ``fit.data.explode_ifeval``), resampling instructions.

Not handled: multiple-comparison corrections in the plateau rule (it is a screening rule),
intervals for ``accuracy_plateau_n``, tasks without ``format_ok``/``correct`` columns
(those groups are skipped with a note).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import isotonic_regression

from ..schema import AnalysisDoc
from .bootstrap import curve_rng, item_matrix, paired_bootstrap_means
from .data import load_items
from .fitting import json_safe
from .forms import pearson_r2, single_threaded


def _band(point: np.ndarray, reps: np.ndarray, level: float) -> dict:
    t = (1.0 - level) / 2.0
    if reps.shape[0] == 0:
        nan = np.full(np.shape(point), np.nan)
        return {"mid": point, "lo": nan, "hi": nan}
    return {"mid": point, "lo": np.quantile(reps, t, axis=0), "hi": np.quantile(reps, 1 - t, axis=0)}


def saturation_n(levels: np.ndarray, rate: np.ndarray, frac: float = 0.95) -> tuple[float, float]:
    """(N where the isotonic fit of ``rate`` first reaches frac x plateau, plateau)."""
    iso = isotonic_regression(np.asarray(rate, float), increasing=True).x
    plateau = float(iso.max())
    idx = int(np.argmax(iso >= frac * plateau - 1e-12))
    return float(levels[idx]), plateau


def plateau_n(levels: np.ndarray, acc: np.ndarray, reps: np.ndarray, level: float) -> dict:
    """Smallest N after which no larger N has a significant paired accuracy gain."""
    a = 1.0 - level
    K = levels.size
    if reps.shape[0] == 0:
        return {"n": None, "still_rising": None, "steps": [],
                "definition": "needs bootstrap replicates (n_boot > 0)"}
    chosen = K - 1
    for k in range(K):
        later = reps[:, k + 1:] - reps[:, [k]]
        if later.shape[1] == 0 or np.all(np.quantile(later, a, axis=0) <= 0):
            chosen = k
            break
    steps = []
    for k in range(K - 1):
        d = reps[:, k + 1] - reps[:, k]
        steps.append({"from_n": levels[k], "to_n": levels[k + 1], "gain": acc[k + 1] - acc[k],
                      "lo": np.quantile(d, (1 - level) / 2), "hi": np.quantile(d, 1 - (1 - level) / 2),
                      "p_no_gain": float(np.mean(d <= 0))})
    return {"n": levels[chosen], "still_rising": bool(chosen == K - 1 and K > 1), "steps": steps,
            "definition": "smallest N with no significant (one-sided, paired bootstrap) gain at any larger N"}


def _to_frame(items: Any) -> pd.DataFrame:
    if isinstance(items, Mapping):
        rows = []
        for n, recs in items.items():
            for r in recs:
                rows.append({"model": r.get("model", "-"), "task": r.get("task", "-"), "n": n,
                             "seed": r.get("seed", 0), **{k: v for k, v in r.items()
                                                           if k not in ("model", "task", "n", "seed")}})
        items = pd.DataFrame(rows)
    if isinstance(items, pd.DataFrame) and {"seed", "item_id"} <= set(items.columns) \
            and items["seed"].map(lambda s: isinstance(s, str)).all():
        return items
    return load_items(items)


def _group(model: str, task: str, g: pd.DataFrame, n_boot: int, seed: int, level: float,
           plateau_frac: float) -> dict:
    out: dict[str, Any] = {"model": model, "task": task}
    rng = curve_rng(seed, model, task, "style_substance")
    have = {"format_ok", "correct"} <= set(g.columns)
    if have:
        s = g[g["format_ok"].notna() & g["correct"].notna()].copy()
    if have and len(s):
        f, c = s["format_ok"].astype(float), s["correct"].astype(float)
        s["_fmt_err"] = 1.0 - f
        s["_sub_err"] = f * (1.0 - c)
        s["_tot_err"] = 1.0 - c
        mats = [item_matrix(s, col) for col in ("_fmt_err", "_sub_err", "_tot_err")]
        cell_n, cell_seed = mats[0][0], mats[0][1]
        S = np.stack([m[2] for m in mats], -1)
        levels, pt, reps = paired_bootstrap_means(cell_n, cell_seed, S, n_boot, rng)
        out["n"] = levels
        out["n_items"] = int(S.shape[1])
        for j, name in enumerate(("format_error", "substance_error", "total_error")):
            out[name] = _band(pt[:, j], reps[:, :, j], level)
        out["format_rate"] = _band(1 - pt[:, 0], 1 - reps[:, :, 0], level)
        out["accuracy"] = _band(1 - pt[:, 2], 1 - reps[:, :, 2], level)
        sn, plat = saturation_n(levels, 1 - pt[:, 0], plateau_frac)
        rep_sn = np.array([saturation_n(levels, 1 - reps[b, :, 0], plateau_frac)[0] for b in range(n_boot)])
        t = (1 - level) / 2
        out["style_saturation_n"] = {
            "n": sn, "plateau": plat, "frac": plateau_frac,
            "lo": np.quantile(rep_sn, t, method="inverted_cdf") if n_boot else None,
            "hi": np.quantile(rep_sn, 1 - t, method="inverted_cdf") if n_boot else None,
            "definition": f"smallest N where the isotonic fit of format_rate reaches {plateau_frac} x "
                          "its maximum"}
        out["accuracy_plateau_n"] = plateau_n(levels, 1 - pt[:, 2], 1 - reps[:, :, 2], level)
        r2 = pearson_r2(pt[:, 2], pt[:, 1]) if levels.size >= 3 else np.nan
        rr = pearson_r2(reps[:, :, 2], reps[:, :, 1]) if levels.size >= 3 else np.array([np.nan])
        rr = rr[np.isfinite(rr)]
        out["r2_total_vs_substance"] = {"r2": r2, "lo": np.quantile(rr, t) if rr.size else None,
                                        "hi": np.quantile(rr, 1 - t) if rr.size else None}
        # the same once the format has saturated (N >= style saturation N): there, the paper's
        # claim is that total error is substance error; N = 0 (all format errors) is left out
        after = levels >= sn if np.isfinite(sn) else np.zeros_like(levels, bool)
        if after.sum() >= 3:
            r2a = pearson_r2(pt[after, 2], pt[after, 1])
            ra = pearson_r2(reps[:, after, 2], reps[:, after, 1])
            ra = ra[np.isfinite(ra)]
            out["r2_total_vs_substance_after_style"] = {
                "r2": r2a, "n_points": int(after.sum()), "from_n": sn,
                "lo": np.quantile(ra, t) if ra.size else None, "hi": np.quantile(ra, 1 - t) if ra.size else None}
    else:
        out["note"] = "no format_ok/correct columns: style/substance split skipped"
    gaps = {}
    for col in g.columns:
        if "strict" in col and col.replace("strict", "loose") in g.columns:
            lc = col.replace("strict", "loose")
            sub = g[g[col].notna() & g[lc].notna()].copy()
            if not len(sub):
                continue
            sub["_gap"] = sub[lc].astype(float) - sub[col].astype(float)
            cn, cs, S = item_matrix(sub, "_gap")
            lv, p, r = paired_bootstrap_means(cn, cs, S, n_boot, rng)
            gaps[f"{lc} - {col}"] = {"n": lv, **_band(p, r, level)}
    if gaps:
        out["loose_minus_strict"] = gaps
    if {"category", "followed_strict"} <= set(g.columns):
        out["categories"] = category_curves(g, n_boot=n_boot, level=level, rng=rng)
    return out


def category_curves(g: pd.DataFrame, value_col: str = "followed_strict", n_boot: int = 1000,
                    level: float = 0.95, rng: np.random.Generator | None = None) -> dict:
    """Per-category per-N means of ``value_col`` with paired bootstrap intervals."""
    rng = rng or np.random.default_rng(0)
    out = {}
    sub = g[g["category"].notna() & g[value_col].notna()]
    for cat, cg in sorted(sub.groupby("category"), key=lambda kv: str(kv[0])):
        cn, cs, S = item_matrix(cg, value_col)
        lv, p, r = paired_bootstrap_means(cn, cs, S, n_boot, rng)
        out[str(cat)] = {"n": lv, "n_instructions": int(S.shape[1]), **_band(p, r, level)}
    return out


@single_threaded
def style_substance(items: pd.DataFrame | Mapping[Any, Sequence[dict]] | str, n_boot: int = 1000,
                    seed: int = 0, level: float = 0.95, plateau_frac: float = 0.95) -> AnalysisDoc:
    """Style/substance analysis per (model, task); JSON-ready (NaN/inf become None)."""
    df = _to_frame(items)
    groups = [_group(str(m), str(t), g, n_boot, seed, level, plateau_frac)
              for (m, t), g in df.groupby(["model", "task"], sort=True)]
    return json_safe({"version": 1, "level": level, "n_boot": n_boot,
                    "definitions": {
                        "format_error": "mean(not format_ok)",
                        "substance_error": "mean(format_ok and not correct)",
                        "total_error": "mean(not correct) = 1 - accuracy",
                        "intervals": "paired bootstrap over items (and seeds), percentile"},
                    "groups": groups})


__all__ = ["category_curves", "plateau_n", "saturation_n", "style_substance"]
