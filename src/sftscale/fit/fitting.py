"""Scaling-law fits with honest uncertainty: point fits, paired bootstrap, extrapolation.

Public API (see ``forms`` for the four forms, ``data`` for the input tables and
``bootstrap`` for the per-N points and their replicates):

- ``fit_table(df, items=None, metric=None, forms=None, n_boot=1000, seed=0, level=0.95)
  -> list[FitResult]``: one fit per (model, task, metric, form); ``best`` marks the lowest
  AICc per curve.
- ``fit_law(n, y, form, n_items=None) -> FitResult``: a single point fit (no bootstrap);
  ``bootstrap_fit(n, y, replicates, form)``: the same plus refits of given replicates (B, K).
- ``FitResult.predict(n) -> (mid, lo, hi)`` arrays in metric space;
  ``FitResult.n_for_target(x)`` / ``n_for_target(fit, x) -> dict``; ``FitResult.to_dict()``.
- ``fits_document(results, ...)`` -> the ``fits.json`` object.

Method. Per curve the per-N value is the mean over seeds of the per-cell means. Each form
is fitted in its fit space (``forms``) with a Huber loss: a deterministic grid of starts
refined by a vectorised Levenberg-Marquardt, then scipy L-BFGS-B from the best, polished by LM.
Uncertainty (``bootstrap.curve_data``), in order of preference:

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

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from .bootstrap import CurveData, curve_data, curve_rng
from .data import load_items, load_long
from .forms import (FORMS, Form, get_form, huber, huber_weight, jacobian_condition, lm_fit, r2_score,
                    single_threaded)
from ..io import InputError

DEFAULT_FORMS = ("power", "saturating", "saturating_offset", "loglinear")


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


def json_safe(x: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy -> Python, recursively."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
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
        return json_safe(d)


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


@single_threaded
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
    r2_fit, r2_metric = float(r2_score(z, zhat)), float(r2_score(y, yhat))
    r = FitResult(cd.model, cd.task, cd.metric, fo.name, fo.space, n, y, yhat, res, th,
                  dict(zip(fo.public_names, map(float, pub))), loss, r2_fit, r2_metric,
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


@single_threaded
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
        cd = curve_data(rows, its, n_boot, curve_rng(seed, model, task, met))
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


__all__ = ["DEFAULT_FORMS", "FitResult", "bootstrap_fit", "fit_curve", "fit_law", "fit_table",
           "fits_document", "json_safe", "n_for_target", "point_fit"]

