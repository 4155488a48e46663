"""Scaling-law fits with honest uncertainty: point fits, paired bootstrap, extrapolation.

Public API (see ``fitforms`` for the four forms and ``fitdata`` for the input tables):

- ``fit_table(df, items=None, metric=None, forms=None, n_boot=1000, seed=0, level=0.95)
  -> list[FitResult]``: one fit per (model, task, metric, form); ``best`` marks the lowest
  AICc per curve.
- ``fit_law(n, y, form, n_items=None) -> FitResult``: a single point fit (no bootstrap);
  ``bootstrap_fit(n, y, replicates, form)``: the same plus refits of given replicates (B, K).
- ``FitResult.predict(n) -> (mid, lo, hi)`` arrays in metric space;
  ``FitResult.n_for_target(x)`` / ``n_for_target(fit, x) -> dict``; ``FitResult.to_dict()``.
- ``paired_bootstrap_means(cell_n, cell_seed, S, n_boot, rng, paired=True)``: per-N means of
  per-item scores under the paired item (and seed) bootstrap; ``analysis`` reuses it.
- ``fits_document(results, ...)`` -> the ``fits.json`` object.

Method. Per curve the per-N value is the mean over seeds of the per-cell means. Each form
is fitted in its fit space (``fitforms``) with a Huber loss: a deterministic grid of starts
refined by a vectorised Levenberg-Marquardt, then scipy L-BFGS-B from the best, polished by LM.
Uncertainty, in order of preference:

1. ``paired-items``: with per-item scores, each replicate draws item indices once
   (multinomial counts) and applies them at every N (and draws seeds once, if there are
   several, applied at every N); per-N means are one matrix product.
2. ``binomial``: with only aggregates and ``n_items``, each cell is redrawn as
   Binomial(n_items, value)/n_items (unpaired: cannot know item correlations), seeds resampled.
3. ``seeds``: aggregates without ``n_items`` but several seeds: seeds resampled only.
4. ``none``: no interval (a warning says so).

Each replicate is refitted by the vectorised LM warm-started at the point estimate;
intervals are percentiles. AIC/AICc use the Gaussian likelihood of metric-space residuals
on the N > 0 points (the same points for every form, so forms fitted in different spaces
compare); leave-one-N-out errors are metric-space observed minus predicted.

Not handled: metrics where lower is better (fit 1 - metric), joint fits across tasks or
models, BCa intervals, weighting N by their standard errors.
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from .data import METRIC_TO_ITEM, load_items, load_long
from .forms import FORMS, Form, get_form, huber, huber_weight, jacobian_condition, lm_fit, one_blas_thread
from ..io import InputError

DEFAULT_FORMS = ("power", "saturating", "saturating_offset", "loglinear")


def _single_threaded(fn):
    """Run ``fn`` with BLAS limited to one thread (see ``fitforms.one_blas_thread``)."""
    @functools.wraps(fn)
    def wrapper(*a, **k):
        with one_blas_thread():
            return fn(*a, **k)
    return wrapper


# --- bootstrap of per-N means -----------------------------------------------------------
def _groups(cell_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    levels = np.unique(cell_n)
    G = (cell_n[:, None] == levels[None, :]).astype(float)  # (C, K)
    return levels, G


def _seed_weights(cell_seed: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray | None:
    seeds, seed_idx = np.unique(cell_seed, return_inverse=True)
    if seeds.size < 2:
        return None
    SC = rng.multinomial(seeds.size, np.full(seeds.size, 1.0 / seeds.size), size=n_boot)
    return SC[:, seed_idx].astype(float)  # (B, C)


def _combine_seeds(M: np.ndarray, W: np.ndarray | None, G: np.ndarray) -> np.ndarray:
    """Cell values M (B, C[, m]) -> per-N values (B, K[, m]) with seed weights W (B, C)."""
    squeeze = M.ndim == 2
    M3 = M[:, :, None] if squeeze else M
    Mt = np.moveaxis(M3, 1, 2)  # (B, m, C)
    plain = (Mt @ G) / G.sum(0)  # (B, m, K)
    if W is None:
        out = plain
    else:
        Wt = W[:, None, :]
        num = (Mt * Wt) @ G
        den = np.broadcast_to(Wt, Mt.shape) @ G
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(den > 0, num / den, plain)  # no drawn seed at this N: all its seeds
    out = np.moveaxis(out, 2, 1)
    return out[:, :, 0] if squeeze else out


def _counts(rng: np.random.Generator, n_boot: int, n_items: int) -> np.ndarray:
    """(B, I) multinomial(I; uniform) counts, drawn as I uniform indices per row (fast)."""
    idx = rng.integers(0, n_items, size=(n_boot, n_items)) + n_items * np.arange(n_boot)[:, None]
    return np.bincount(idx.ravel(), minlength=n_boot * n_items).reshape(n_boot, n_items).astype(float)


@_single_threaded
def paired_bootstrap_means(cell_n: Sequence, cell_seed: Sequence, S: np.ndarray, n_boot: int,
                           rng: np.random.Generator, paired: bool = True
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-N means of per-item scores and their bootstrap replicates.

    cell_n, cell_seed: (C,) the N and seed of each cell; S: (C, I) or (C, I, m) scores,
    NaN where an item was not scored in a cell. ``paired=True`` draws one multinomial count
    vector over items per replicate and uses it in every cell; ``paired=False`` draws a
    fresh one per cell (for comparison only). Returns (levels (K,), point (K[, m]),
    replicates (B, K[, m])).
    """
    cell_n = np.asarray(cell_n, float)
    S = np.asarray(S, float)
    squeeze = S.ndim == 2
    if squeeze:
        S = S[:, :, None]
    C, I, _ = S.shape
    present = np.isfinite(S)
    Sz = np.where(present, S, 0.0)
    P = present.astype(float)
    levels, G = _groups(cell_n)
    with np.errstate(invalid="ignore", divide="ignore"):
        cell_point = Sz.sum(1) / P.sum(1)  # (C, m)
    point = _combine_seeds(cell_point[None], None, G)[0]
    m = S.shape[2]
    if paired:
        cnt = _counts(rng, n_boot, I)  # (B, I): how often each item is drawn
        num = (cnt @ Sz.transpose(1, 0, 2).reshape(I, C * m)).reshape(n_boot, C, m)
        den = (cnt @ P.transpose(1, 0, 2).reshape(I, C * m)).reshape(n_boot, C, m)
    else:
        num = np.empty((n_boot, C, m))
        den = np.empty_like(num)
        for c in range(C):
            cnt = _counts(rng, n_boot, I)
            num[:, c] = cnt @ Sz[c]
            den[:, c] = cnt @ P[c]
    with np.errstate(invalid="ignore", divide="ignore"):
        M = np.where(den > 0, num / den, cell_point[None])
    W = _seed_weights(np.asarray(cell_seed), n_boot, rng)
    reps = _combine_seeds(M, W, G)
    if squeeze:
        return levels, point[:, 0], reps[:, :, 0]
    return levels, point, reps


@dataclass
class CurveData:
    """The per-N points of one (model, task, metric) curve and their bootstrap replicates."""

    model: str
    task: str
    metric: str
    n: np.ndarray
    y: np.ndarray
    reps: np.ndarray | None
    method: str
    n_items: int | None
    notes: list[str] = field(default_factory=list)


def item_matrix(items: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cell_n (C,), cell_seed (C,), S (C, I)) from a per-item table for one curve."""
    piv = items.pivot_table(index=["n", "seed"], columns="item_id", values=col, aggfunc="mean")
    cell_n = np.array([k[0] for k in piv.index], float)
    cell_seed = np.array([str(k[1]) for k in piv.index])
    return cell_n, cell_seed, piv.to_numpy(dtype=float, na_value=np.nan)


def curve_data(rows: pd.DataFrame, items: pd.DataFrame | None, n_boot: int,
               rng: np.random.Generator) -> CurveData:
    """Build a CurveData from long-table rows of one curve and, optionally, its items."""
    model, task, metric = (str(rows[c].iloc[0]) for c in ("model", "task", "metric"))
    notes: list[str] = []
    col = METRIC_TO_ITEM.get(metric, metric)
    if items is not None and col in items.columns and items[col].notna().any():
        it = items[items[col].notna()]
        cell_n, cell_seed, S = item_matrix(it, col)
        levels, point, reps = paired_bootstrap_means(cell_n, cell_seed, S, n_boot, rng)
        agg = rows.groupby("n")["value"].mean()
        diff = [int(k) for k in levels if k in agg.index and abs(agg[k] - point[levels == k][0]) > 1e-6]
        missing = sorted(int(k) for k in set(agg.index) - set(levels.tolist()))
        if missing:
            notes.append(f"N={missing} have aggregates but no per-item scores: left out of this curve")
        if diff:
            notes.append(f"aggregate {metric} differs from the per-item mean of '{col}' at N={diff}; "
                         "the per-item means are used")
        return CurveData(model, task, metric, levels, point, reps if n_boot > 0 else None,
                         "paired-items" + ("+seeds" if np.unique(cell_seed).size > 1 else ""),
                         int(S.shape[1]), notes)
    rows = rows.reset_index(drop=True)
    rank = rows.groupby("n").cumcount()  # rows without a seed: their rank within the N
    cell_seed = np.array([f"#{r}" if pd.isna(s) else str(s)
                          for s, r in zip(rows["seed"].astype(object), rank)])
    cell_n = rows["n"].to_numpy(float)
    vals = rows["value"].to_numpy(float)
    levels, G = _groups(cell_n)
    point = _combine_seeds(vals[None], None, G)[0]
    m = rows["n_items"].to_numpy(object)
    has_m = not any(pd.isna(v) for v in m)
    n_items = int(np.min(m.astype(float))) if has_m else None
    multi_seed = bool(np.any(G.sum(0) > 1))
    if n_boot <= 0:
        return CurveData(model, task, metric, levels, point, None, "none", n_items, notes)
    if has_m and np.all((vals >= 0) & (vals <= 1)):
        draws = rng.binomial(m.astype(np.int64)[None, :], vals[None, :], size=(n_boot, vals.size))
        M = draws / m.astype(float)[None, :]
        W = _seed_weights(cell_seed, n_boot, rng) if multi_seed else None
        return CurveData(model, task, metric, levels, point, _combine_seeds(M, W, G),
                         "binomial" + ("+seeds" if W is not None else ""), n_items, notes)
    if multi_seed:
        W = _seed_weights(cell_seed, n_boot, rng)
        M = np.broadcast_to(vals[None, :], (n_boot, vals.size))
        notes.append("no per-item scores or n_items: only seeds are resampled")
        return CurveData(model, task, metric, levels, point, _combine_seeds(M, W, G), "seeds",
                         n_items, notes)
    notes.append("no per-item scores, no n_items and one seed: no uncertainty can be estimated")
    return CurveData(model, task, metric, levels, point, None, "none", n_items, notes)


# --- fitting ------------------------------------------------------------------------------
def _lbfgs(form: Form, theta0: np.ndarray, n: np.ndarray, z: np.ndarray, delta: float) -> np.ndarray:
    lb, ub = form.bounds()

    def fun(th):
        t = th[None]
        r = z[None] - form.f(t, n)
        J = form.jac(t, n)[0]
        psi = (huber_weight(r, delta) * r)[0]
        return float(np.sum(huber(r, delta))), -(J.T @ psi)

    res = minimize(fun, theta0, jac=True, method="L-BFGS-B", bounds=list(zip(lb, ub)),
                   options={"maxiter": 200, "ftol": 1e-13, "gtol": 1e-10})
    return np.asarray(res.x, float)


def point_fit(form: Form, n: np.ndarray, z: np.ndarray, delta: float) -> tuple[np.ndarray, float]:
    """Deterministic multi-start grid -> batched LM -> L-BFGS-B from the best -> LM polish of it
    and of the two best grid solutions; the lowest loss wins."""
    starts = form.starts(n, z)
    th, loss = lm_fit(form, starts, n, np.broadcast_to(z, (len(starts), z.size)), delta=delta)
    order = np.argsort(np.where(np.isfinite(loss), loss, np.inf))[:2]
    cands = [_lbfgs(form, th[i], n, z, delta) for i in order[:1] if np.all(np.isfinite(th[i]))]
    cands += [th[i] for i in order if np.all(np.isfinite(th[i]))]
    C = np.array(cands)
    th2, loss2 = lm_fit(form, C, n, np.broadcast_to(z, (len(C), z.size)), delta=delta)
    best = int(np.nanargmin(loss2))
    return th2[best], float(loss2[best])


def _r2(obs: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = float(np.sum((obs - obs.mean()) ** 2))
    ss_res = float(np.sum((obs - pred) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def _finite(x: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy -> Python, recursively."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, np.ndarray):
        return _finite(x.tolist())
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


@dataclass
class FitResult:
    """One fitted form on one curve. Arrays are over the N used by this form."""

    model: str
    task: str
    metric: str
    form: str
    space: str
    n: np.ndarray
    y: np.ndarray
    y_hat: np.ndarray
    residuals: np.ndarray
    theta: np.ndarray
    params: dict[str, float]
    loss: float
    r2: float
    r2_metric: float
    dof: int
    aic: float
    aicc: float
    loo: dict
    level: float = 0.95
    method: str = "none"
    theta_reps: np.ndarray | None = None
    n_boot: int = 0
    param_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    best: bool = False

    @property
    def form_obj(self) -> Form:
        return FORMS[self.form]

    def _q(self, a: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Percentile interval. Replicates may predict +-inf (a power law far from its data);
        linear interpolation between two equal infinities gives NaN (inf - inf), so those
        entries take the nearest-rank quantile instead, which is that infinity."""
        t = (1.0 - self.level) / 2.0
        out = []
        for p in (t, 1.0 - t):
            with np.errstate(invalid="ignore"):
                q = np.quantile(a, p, axis=axis)
            if np.isnan(q).any() and not np.isnan(a).any():
                q = np.where(np.isnan(q), np.quantile(a, p, axis=axis, method="nearest"), q)
            out.append(q)
        return out[0], out[1]

    def predict(self, n: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Metric-space prediction at n with its percentile interval (NaN when no bootstrap)."""
        n = np.atleast_1d(np.asarray(n, float))
        mid = self.form_obj.predict(self.theta, n)[0]
        if self.theta_reps is None or len(self.theta_reps) == 0:
            nan = np.full_like(mid, np.nan)
            return mid, nan, nan
        reps = self.form_obj.predict(self.theta_reps, n)
        lo, hi = self._q(reps)
        return mid, lo, hi

    def n_for_target(self, target: float) -> dict:
        return n_for_target(self, target)

    def to_dict(self, targets: Sequence[float] = (), predict_at: Sequence[float] = ()) -> dict:
        d = {k: getattr(self, k) for k in ("model", "task", "metric", "form", "space", "best",
                                              "params", "dof", "loss", "r2", "r2_metric", "aic",
                                              "aicc", "loo", "level", "warnings")}
        d["r2_space"] = self.space
        d["param_ci"] = {k: list(v) for k, v in self.param_ci.items()}
        d["bootstrap"] = {"method": self.method, "n_boot": self.n_boot,
                          "n_ok": 0 if self.theta_reps is None else int(len(self.theta_reps))}
        d["points"] = {"n": self.n, "y": self.y, "y_hat": self.y_hat, "residual_fit_space": self.residuals}
        if len(predict_at):
            mid, lo, hi = self.predict(predict_at)
            d["predictions"] = [{"n": float(x), "mid": a, "lo": b, "hi": c}
                                for x, a, b, c in zip(predict_at, mid, lo, hi)]
        if len(targets):
            d["targets"] = [n_for_target(self, t) for t in targets]
        return _finite(d)


def fit_law(n: Sequence[float], y: Sequence[float], form: str | Form, n_items: int | None = None,
            delta: float | None = None, model: str = "", task: str = "", metric: str = "") -> FitResult:
    """Point fit of one form to per-N values (no bootstrap; warnings still computed)."""
    cd = CurveData(model, task, metric, np.asarray(n, float), np.asarray(y, float), None, "none", n_items)
    return fit_curve(cd, form, delta=delta)


def bootstrap_fit(n: Sequence[float], y: Sequence[float], replicates: np.ndarray, form: str | Form,
                  n_items: int | None = None, level: float = 0.95, method: str = "user",
                  delta: float | None = None) -> FitResult:
    """Point fit of per-N values ``y`` plus refits of caller-made replicates (B, K) of them."""
    cd = CurveData("", "", "", np.asarray(n, float), np.asarray(y, float), np.asarray(replicates, float),
                   method, n_items)
    return fit_curve(cd, form, delta=delta, level=level)


@_single_threaded
def fit_curve(cd: CurveData, form: str | Form, delta: float | None = None, level: float = 0.95) -> FitResult:
    """Fit one form to a CurveData, refit its bootstrap replicates, compute diagnostics."""
    fo = get_form(form) if isinstance(form, str) else form
    delta = fo.delta if delta is None else delta
    warns = list(cd.notes)
    keep = np.ones(cd.n.size, bool) if fo.includes_zero else cd.n > 0
    if not np.all(keep):
        warns.append(f"N=0 excluded: {fo.name} is undefined there")
    n, y = cd.n[keep], cd.y[keep]
    K, P = n.size, fo.n_params
    floor = 0.5 / cd.n_items if cd.n_items else 1e-4
    if fo.log_space:
        inside = (1.0 - y) if fo.name.startswith("saturating") else y
        if np.any(inside <= 0):
            warns.append(f"{'error' if fo.name.startswith('saturating') else 'metric'} of 0 at some N "
                         f"clipped to {floor:g} before taking logs")
        if fo.name.startswith("saturating") and np.any((y < 0) | (y > 1)):
            warns.append("metric outside [0, 1]: the saturating forms assume a success rate")
    nan_fit = K < P
    if nan_fit:
        warns.append(f"only {K} distinct N for {P} parameters: not fitted")
        th = np.full(P, np.nan)
        loss = float("nan")
    else:
        z = fo.to_fit_space(y, floor)
        th, loss = point_fit(fo, n, z, delta)
    if not nan_fit and K < P + 1:
        warns.append(f"{K} distinct N for {P} parameters: no degrees of freedom, the fit interpolates")
    z = fo.to_fit_space(y, floor)
    zhat = fo.f(th[None], n)[0]
    yhat = fo.to_metric(zhat)
    res = z - zhat
    # AIC on the N > 0 points in metric space, the same points for every form
    pos = cd.n > 0
    yh_pos = fo.predict(th, cd.n[pos])[0]
    Kp, k = int(pos.sum()), P + 1
    rss = max(float(np.sum((cd.y[pos] - yh_pos) ** 2)), Kp * 1e-14)
    aic = Kp * math.log(rss / Kp) + 2 * k if Kp > 0 else float("nan")
    aicc = aic + 2 * k * (k + 1) / (Kp - k - 1) if Kp - k - 1 > 0 else float("nan")
    # leave-one-N-out
    loo_err = np.full(K, np.nan)
    if not nan_fit and K - 1 >= P:
        Wm = 1.0 - np.eye(K)
        th_loo, _ = lm_fit(fo, th, n, np.broadcast_to(z, (K, K)), w=Wm, delta=delta)
        for i in range(K):
            loo_err[i] = y[i] - fo.predict(th_loo[i], n[i:i + 1])[0, 0]
    elif not nan_fit:
        warns.append("leave-one-N-out needs at least as many remaining N as parameters: not computed")
    loo = {"n": n, "error": loo_err,
           "rmse": float(np.sqrt(np.mean(loo_err ** 2))) if np.all(np.isfinite(loo_err)) else float("nan")}
    pub = fo.public(th)
    r = FitResult(cd.model, cd.task, cd.metric, fo.name, fo.space, n, y, yhat, res, th,
                  dict(zip(fo.public_names, map(float, pub))), loss, _r2(z, zhat), _r2(y, yhat),
                  K - P, aic, aicc, loo, level=level, method=cd.method, warnings=warns)
    if cd.reps is not None and not nan_fit:
        R = cd.reps[:, keep]
        Z = fo.to_fit_space(R, floor)
        thr, _ = lm_fit(fo, th, n, Z, delta=delta)
        ok = np.all(np.isfinite(thr), axis=1)
        r.theta_reps, r.n_boot = thr[ok], int(len(thr))
        if ok.mean() < 0.95:
            warns.append(f"{(~ok).sum()} of {len(ok)} bootstrap refits failed")
        pr = fo.public(r.theta_reps)
        lo, hi = r._q(pr)
        r.param_ci = {nm: (float(a), float(b)) for nm, a, b in zip(fo.public_names, lo, hi)}
    elif cd.reps is None:
        warns.append("no bootstrap: intervals unavailable")
    if not nan_fit:
        _identifiability(r, fo, cd)
    return r


def _identifiability(r: FitResult, fo: Form, cd: CurveData) -> None:
    w = r.warnings
    yr = float(np.ptp(cd.y)) if cd.y.size else 0.0
    se = None
    if cd.n_items:
        p = float(np.clip(np.mean(cd.y), 0, 1))
        se = math.sqrt(max(p * (1 - p), 1e-12) / cd.n_items)
    if cd.reps is not None:
        se = float(np.median(np.std(cd.reps, axis=0)))
    if yr < 1e-3 or (se is not None and yr < 2.0 * se):
        w.append(f"flat data: the metric varies by {yr:.3g} across N (noise ~{se if se else 0:.2g}); "
                 "slopes and exponents are not identified")
    cond = jacobian_condition(fo, r.theta, r.n)
    if cond > 1e8:
        w.append(f"near-singular Jacobian (condition {cond:.2g}): parameters trade off and are not "
                 "separately identified")
    lb, ub = fo.bounds()
    at = [fo.theta_names[i] for i in range(fo.n_params)
          if (r.theta[i] <= lb[i] + 1e-9 or r.theta[i] >= ub[i] - 1e-9) and fo.theta_names[i] != "E"]
    if at:
        w.append(f"parameter(s) at a bound: {', '.join(at)}")
    if fo.name.startswith("saturating"):
        E = r.theta[0]
        err = 1.0 - fo.predict(r.theta, np.array([r.n.min(), r.n.max()]))[0]
        if err[0] - E > 0 and (err[1] - E) / (err[0] - E) > 0.5:
            w.append("asymptote not reached: more than half of the reducible error remains at the "
                     "largest N, so E (the ceiling 1 - E) is an extrapolation")
    if r.theta_reps is not None and len(r.theta_reps):
        for i, nm in enumerate(fo.public_names):
            lo, hi = r.param_ci[nm]
            est = abs(r.params[nm])
            scale = max(est, 0.05 if nm in ("E", "b", "alpha", "d", "c") else 1e-3)
            if hi - lo > 10 * scale:
                w.append(f"huge bootstrap spread for {nm}: interval [{lo:.3g}, {hi:.3g}] vs estimate "
                         f"{r.params[nm]:.3g}")
            th_col = r.theta_reps[:, i]
            if fo.theta_names[i] != "E" and np.mean((th_col <= lb[i] + 1e-9) | (th_col >= ub[i] - 1e-9)) > 0.1:
                w.append(f"{nm} hits its bound in more than 10% of bootstrap replicates")


def n_for_target(fit: FitResult, target: float) -> dict:
    """N needed to reach ``target`` (metric space), its interval and how often it is reachable."""
    fo = fit.form_obj
    out: dict[str, Any] = {"target": float(target), "form": fit.form}
    if not np.all(np.isfinite(fit.theta)):
        return {**out, "reachable": False, "n": None, "lo": None, "hi": None,
                "frac_reachable": None, "note": "form not fitted"}
    n0 = float(fo.n_for(fit.theta[None], target)[0])
    out["reachable"] = bool(np.isfinite(n0))
    out["n"] = n0 if np.isfinite(n0) else None
    if not np.isfinite(n0):
        out["note"] = "not reachable under this fit"
    if fit.theta_reps is None or len(fit.theta_reps) == 0:
        return {**out, "lo": None, "hi": None, "frac_reachable": None}
    nr = fo.n_for(fit.theta_reps, target)
    frac = float(np.mean(np.isfinite(nr)))
    big = 1e300  # stands for "never": quantiles of inf would give NaN
    lo, hi = fit._q(np.where(np.isfinite(nr), np.minimum(nr, big), big))
    out.update(lo=float(lo) if lo < big else None, hi=float(hi) if hi < big else None,
               frac_reachable=frac)
    if out["reachable"] and out["hi"] is None:
        out["note"] = f"upper bound unbounded: unreachable in {100 * (1 - frac):.0f}% of replicates"
    return out


def _curve_seed(seed: int, *keys: str) -> np.random.Generator:
    h = zlib.crc32("\x1f".join(keys).encode())
    return np.random.default_rng([int(seed), h])


@_single_threaded
def fit_table(df: pd.DataFrame | str, items: pd.DataFrame | str | None = None, metric: str | None = None,
              forms: Sequence[str] | None = None, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
              delta: float | None = None) -> list[FitResult]:
    """Fit every (model, task, metric) curve of a long table with each form.

    ``metric=None`` fits every metric except ``*_stderr``, ``n`` and ``n_items``.
    The same bootstrap replicates (same items and seeds) are used by every form of a
    curve; the generator is seeded by (seed, model, task, metric), so results do not
    depend on the order of rows or on other curves.
    """
    long = load_long(df)
    it = load_items(items) if items is not None and not _is_items_frame(items) else items
    forms = list(forms or DEFAULT_FORMS)
    for f in forms:
        try:
            get_form(f)
        except KeyError as e:
            raise InputError(None, str(e.args[0]), field="form") from None
    if metric is not None:
        long = long[long["metric"] == metric]
        if long.empty:
            raise InputError(None, f"no rows with metric {metric!r}", field="metric")
    else:  # standard errors and counts are not curves to fit
        long = long[~(long["metric"].str.endswith("_stderr") | long["metric"].isin(["n", "n_items"]))]
    out: list[FitResult] = []
    for (model, task, met), rows in long.groupby(["model", "task", "metric"], sort=True):
        its = None
        if it is not None:
            its = it[(it["model"] == model) & (it["task"] == task)]
            its = its if len(its) else None
        cd = curve_data(rows, its, n_boot, _curve_seed(seed, model, task, met))
        fits = [fit_curve(cd, f, delta=delta, level=level) for f in forms]
        scored = [f for f in fits if np.isfinite(f.aicc)] or [f for f in fits if np.isfinite(f.aic)]
        if scored:
            key = "aicc" if np.isfinite(scored[0].aicc) else "aic"
            min(scored, key=lambda f: getattr(f, key)).best = True
        out += fits
    return out


def _is_items_frame(x: Any) -> bool:
    return isinstance(x, pd.DataFrame) and {"model", "task", "n", "item_id", "seed"} <= set(x.columns)


def fits_document(results: Sequence[FitResult], targets: Sequence[float] = (),
                  predict_at: Sequence[float] = (), source: str = "") -> dict:
    """The JSON object written to ``fits.json``."""
    level = results[0].level if results else None
    return {"version": 1, "source": source, "level": level,
            "notes": ["AIC/AICc: Gaussian likelihood of metric-space residuals on N > 0 points",
                      "loo.error: observed minus predicted (metric space) with that N left out",
                      "param_ci / predictions / targets: bootstrap percentile intervals"],
            "fits": [r.to_dict(targets=targets, predict_at=predict_at) for r in results]}


__all__ = ["DEFAULT_FORMS", "CurveData", "FitResult", "bootstrap_fit", "curve_data", "fit_curve", "fit_law", "fit_table",
           "fits_document", "item_matrix", "n_for_target", "paired_bootstrap_means", "point_fit"]

