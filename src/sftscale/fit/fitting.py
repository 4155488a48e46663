"""Scaling-law fits with honest uncertainty: point fits, paired bootstrap, extrapolation.

Public API (see ``forms`` for the four forms, ``data`` for the input tables and
``bootstrap`` for the per-N points and their replicates):

- ``fit_table(df, items=None, metric=None, forms=None, n_boot=1000, seed=0, level=0.95)
  -> list[FitResult]``: one fit per (model, task, metric, form; ``forms=None``: the registered
  forms' ``default_forms()``); ``best`` marks the form
  chosen by ``selection.select_best`` (>= 2 residual dof, identified, then AICc or
  leave-one-N-out error; ``fit.selection`` says why each form was or was not eligible).
- ``fit_curves(cds, form)`` / ``fit_curve_data(cds, forms)``: ``fit_table`` on curves already
  built (``iter_curves``); curves with the same N are fitted together, each LM stage one
  stacked ``lm_fit`` call, row for row what ``fit_curve`` gives for each curve alone (tested).
- ``fit_law(n, y, form, n_items=None) -> FitResult``: a single point fit (no bootstrap);
  ``bootstrap_fit(n, y, replicates, form)``: the same plus refits of given replicates (B, K).
- ``FitResult.predict(n) -> (mid, lo, hi)`` arrays in metric space;
  ``FitResult.n_for_target(x)`` / ``n_for_target(fit, x) -> dict``; ``FitResult.to_dict()``.
- ``fits_document(results, ..., joint=None)`` -> the ``fits.json`` object (``joint``: the
  exponent differences across models from ``joint.joint_fits``).

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

Not handled: metrics where lower is better (fit 1 - metric), joint fits across tasks (across
models: ``joint``), BCa intervals, weighting N by their standard errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, cast

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from ..io import InputError
from ..schema import FitEntry, FitsDoc, ForecastsDoc, JointEntry
from .bootstrap import CurveData, curve_data, curve_rng
from .data import load_items, load_long
from .forms import FORMS, Form, default_forms, get_form, r2_score, single_threaded
from .lm import huber, huber_weight, lm_fit
from .selection import RULE, identifiability, select_best


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
    and of the two best grid solutions; the lowest loss wins. ``point_fit_many`` of one row."""
    th, loss = point_fit_many(form, n, np.asarray(z, float)[None], delta)
    return th[0], float(loss[0])


def point_fit_many(form: Form, n: np.ndarray, Z: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """``point_fit`` of every row of Z (C, K) (curves sharing the N ``n``): the multi-start and
    the polish LM of all rows each in one stacked ``lm_fit`` (rows are independent problems, so
    each row's fit is what it would be alone); L-BFGS-B one row at a time. (C, P), (C,)."""
    starts = [form.starts(n, z) for z in Z]
    sizes = [len(s) for s in starts]
    th, loss = lm_fit(form, np.vstack(starts), n, np.repeat(Z, sizes, axis=0), delta=delta)
    cands, owner = [], []
    for c, (lo, hi) in enumerate(_spans(sizes)):
        t, ls = th[lo:hi], loss[lo:hi]
        order = np.argsort(np.where(np.isfinite(ls), ls, np.inf))[:2]
        mine = [_lbfgs(form, t[i], n, Z[c], delta) for i in order[:1] if np.all(np.isfinite(t[i]))]
        mine += [t[i] for i in order if np.all(np.isfinite(t[i]))]
        cands += mine
        owner += [c] * len(mine)
    out_th = np.full((len(Z), form.n_params), np.nan)
    out_loss = np.full(len(Z), np.nan)
    if not cands:
        return out_th, out_loss
    own = np.array(owner)
    th2, loss2 = lm_fit(form, np.array(cands), n, Z[own], delta=delta)
    for c in range(len(Z)):
        rows = np.nonzero(own == c)[0]
        if rows.size and np.any(np.isfinite(loss2[rows])):
            best = rows[int(np.nanargmin(loss2[rows]))]
            out_th[c], out_loss[c] = th2[best], loss2[best]
    return out_th, out_loss


def _spans(sizes: Sequence[int]) -> list[tuple[int, int]]:
    ends = np.cumsum(sizes)
    return [(int(e - k), int(e)) for e, k in zip(ends, sizes)]


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
    unidentified: list[str] = field(default_factory=list)  # why the parameters are not identified
    selection: dict = field(default_factory=dict)  # set by selection.select_best
    rep_ok: np.ndarray | None = None  # (n_boot,) which replicates refitted (theta_reps = those rows)
    clipped: np.ndarray | None = None  # (K,) points clipped to the floor before taking logs
    n_max: float = float("nan")  # largest measured N of the curve

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

    def paper_terms(self) -> dict:
        """The power law in the paper's notation, P proportional to N^(1/b): our exponent b (the
        paper form's ``exponent``) is the paper's 1/b. Intervals: percentiles of 1/b and b over
        replicates (b <= 0 in a replicate means no growth: its paper-b is +inf, so ``hi`` may be
        None)."""
        fo = self.form_obj
        i = fo.public_names.index(fo.exponent or "")
        b = float(fo.public(self.theta)[i])
        out: dict[str, Any] = {
            "one_over_b": {"mid": b, "lo": None, "hi": None},
            "b": {"mid": 1.0 / b if b > 0 else None, "lo": None, "hi": None},
            "note": "the paper writes P ~ N^(1/b); the power form here is P = a N^b, so its b is 1/b"}
        if self.theta_reps is not None and len(self.theta_reps):
            br = fo.public(self.theta_reps)[:, i]
            lo, hi = self._q(br)
            out["one_over_b"].update(lo=float(lo), hi=float(hi))
            big = 1e300
            plo, phi = self._q(np.where(br > 0, np.minimum(1.0 / np.maximum(br, 1e-300), big), big))
            out["b"].update(lo=float(plo) if plo < big else None, hi=float(phi) if phi < big else None)
        return out

    def to_dict(self, targets: Sequence[float] = (), predict_at: Sequence[float] = ()) -> FitEntry:
        d = {k: getattr(self, k) for k in ("model", "task", "metric", "form", "space", "best",
                                              "params", "dof", "loss", "r2", "r2_metric", "aic",
                                              "aicc", "loo", "level", "warnings")}
        d["r2_space"] = self.space
        d["param_ci"] = {k: list(v) for k, v in self.param_ci.items()}
        d["bootstrap"] = {"method": self.method, "n_boot": self.n_boot,
                          "n_ok": 0 if self.theta_reps is None else int(len(self.theta_reps))}
        d["points"] = {"n": self.n, "y": self.y, "y_hat": self.y_hat, "residual_fit_space": self.residuals}
        d["identified"] = not self.unidentified
        d["unidentified"] = list(self.unidentified)
        d["selection"] = dict(self.selection)
        d["n_max_measured"] = self.n_max
        if self.form_obj.paper and np.all(np.isfinite(self.theta)):
            d["paper_terms"] = self.paper_terms()
        if len(predict_at):
            mid, lo, hi = self.predict(predict_at)
            rate = bool(np.all((self.y >= 0) & (self.y <= 1)))
            d["predictions"] = [_in_range({"n": float(x), "mid": a, "lo": b, "hi": c}, rate)
                                for x, a, b, c in zip(predict_at, mid, lo, hi)]
        if len(targets):
            d["targets"] = [n_for_target(self, t) for t in targets]
        return json_safe(d)


def _in_range(p: dict, rate: bool) -> dict:
    """A form's prediction of a rate that leaves [0, 1] is withheld, not printed: the form cannot
    hold there (forecasts that stay in range are ``forecast``'s)."""
    vals = [p[k] for k in ("mid", "lo", "hi") if p[k] is not None and np.isfinite(p[k])]
    if rate and any(v < 0 or v > 1 for v in vals):
        return {"n": p["n"], "mid": None, "lo": None, "hi": None,
                "note": "this form leaves [0, 1] here: it cannot describe a rate at this N"}
    return p


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
    """Fit one form to a CurveData, refit its bootstrap replicates, compute diagnostics (the
    one-curve case of ``fit_curves``, and the reference its batching is tested against)."""
    return fit_curves([cd], form, delta=delta, level=level)[0]


@single_threaded
def fit_curves(cds: Sequence[CurveData], form: str | Form, delta: float | None = None,
               level: float = 0.95) -> list[FitResult]:
    """``fit_curve`` of each of ``cds``: curves with the same N are fitted together, each LM
    stage (multi-start, polish, leave-one-N-out, bootstrap refits) one stacked ``lm_fit``."""
    fo = get_form(form) if isinstance(form, str) else form
    delta = fo.delta if delta is None else delta
    groups: dict[tuple, list[int]] = {}
    for i, cd in enumerate(cds):
        keep = np.ones(cd.n.size, bool) if fo.includes_zero else cd.n > 0
        groups.setdefault(tuple(cd.n[keep].tolist()), []).append(i)
    out: list[Any] = [None] * len(cds)
    for idx in groups.values():
        for i, r in zip(idx, _fit_group([cds[i] for i in idx], fo, delta, level)):
            out[i] = r
    return out


def _prepare(cd: CurveData, fo: Form) -> tuple[np.ndarray, float, list[str]]:
    """(the N kept, the clip floor, the warnings so far) of one curve."""
    warns = list(cd.notes)
    keep = np.ones(cd.n.size, bool) if fo.includes_zero else cd.n > 0
    if not np.all(keep):
        warns.append(f"N=0 excluded: {fo.name} is undefined there")
    y = cd.y[keep]
    floor = 0.5 / cd.n_items if cd.n_items else 1e-4
    if fo.log_space:
        if np.any(fo.logged(y) <= 0):
            warns.append(f"{'error' if fo.of_error else 'metric'} of 0 at some N "
                         f"clipped to {floor:g} before taking logs")
        if fo.of_error and np.any((y < 0) | (y > 1)):
            warns.append(f"metric outside [0, 1]: the {fo.name} form describes the error 1 - metric "
                         "and assumes a success rate")
    return keep, floor, warns


def _fit_group(cds: Sequence[CurveData], fo: Form, delta: float, level: float) -> list[FitResult]:
    """``fit_curve`` of curves that keep the same N (see ``fit_curves``)."""
    prep = [_prepare(cd, fo) for cd in cds]
    n = cds[0].n[prep[0][0]]
    K, P = n.size, fo.n_params
    Z = np.array([fo.to_fit_space(cd.y[keep], floor) for cd, (keep, floor, _) in zip(cds, prep)]).reshape(len(cds), K)
    nan_fit = K < P
    if nan_fit:
        TH, LOSS = np.full((len(cds), P), np.nan), np.full(len(cds), np.nan)
    else:
        TH, LOSS = point_fit_many(fo, n, Z, delta)
    loo_ok = not nan_fit and K - 1 >= P
    if loo_ok:  # leave-one-N-out: K rows per curve, row i without point i
        TH_loo, _ = lm_fit(fo, np.repeat(TH, K, axis=0), n, np.repeat(Z, K, axis=0),
                           w=np.tile(1.0 - np.eye(K), (len(cds), 1)), delta=delta)
    out = []
    for c, (cd, (keep, floor, warns)) in enumerate(zip(cds, prep)):
        y, z, th, loss = cd.y[keep], Z[c], TH[c], float(LOSS[c])
        if nan_fit:
            warns.append(f"only {K} distinct N for {P} parameters: not fitted")
        elif K < P + 1:
            warns.append(f"{K} distinct N for {P} parameters: no degrees of freedom, the fit interpolates")
        zhat = fo.f(th[None], n)[0]
        yhat = fo.to_metric(zhat)
        # AIC on the N > 0 points in metric space, the same points for every form
        pos = cd.n > 0
        yh_pos = fo.predict(th, cd.n[pos])[0]
        Kp, k = int(pos.sum()), P + 1
        rss = max(float(np.sum((cd.y[pos] - yh_pos) ** 2)), Kp * 1e-14)
        aic = Kp * math.log(rss / Kp) + 2 * k if Kp > 0 else float("nan")
        aicc = aic + 2 * k * (k + 1) / (Kp - k - 1) if Kp - k - 1 > 0 else float("nan")
        loo_err = np.full(K, np.nan)
        if loo_ok:
            th_loo = TH_loo[c * K:(c + 1) * K]
            for i in range(K):
                loo_err[i] = y[i] - fo.predict(th_loo[i], n[i:i + 1])[0, 0]
        elif not nan_fit:
            warns.append("leave-one-N-out needs at least as many remaining N as parameters: not computed")
        loo = {"n": n, "error": loo_err,
               "rmse": float(np.sqrt(np.mean(loo_err ** 2))) if np.all(np.isfinite(loo_err)) else float("nan")}
        pub = fo.public(th)
        r2_fit, r2_metric = float(r2_score(z, zhat)), float(r2_score(y, yhat))
        r = FitResult(cd.model, cd.task, cd.metric, fo.name, fo.space, n, y, yhat, z - zhat, th,
                      dict(zip(fo.public_names, map(float, pub))), loss, r2_fit, r2_metric,
                      K - P, aic, aicc, loo, level=level, method=cd.method, warnings=warns,
                      n_max=float(cd.n.max()) if cd.n.size else float("nan"))
        if fo.log_space:
            r.clipped = fo.logged(y) < floor
        out.append(r)
    # bootstrap replicates of every curve that has them, warm-started at its point fit
    reps = [c for c, cd in enumerate(cds) if cd.reps is not None and not nan_fit]
    if reps:
        R = [fo.to_fit_space(cast(np.ndarray, cds[c].reps)[:, prep[c][0]], prep[c][1]) for c in reps]
        sizes = [len(x) for x in R]
        thr, _ = lm_fit(fo, np.repeat(TH[reps], sizes, axis=0), n, np.vstack(R), delta=delta)
        for c, (lo, hi) in zip(reps, _spans(sizes)):
            _fill_replicates(out[c], fo, thr[lo:hi])
    for cd, r in zip(cds, out):
        if cd.reps is None:
            r.warnings.append("no bootstrap: intervals unavailable")
    if not nan_fit:  # does the fit follow the clip value of zeros?
        alt: list[Any] = [None] * len(cds)
        moved = [c for c, r in enumerate(out) if fo.log_space and np.any(r.clipped)]
        if moved:
            Za = np.array([fo.to_fit_space(out[c].y, prep[c][1] / 10.0) for c in moved]).reshape(len(moved), K)
            for c, th in zip(moved, point_fit_many(fo, n, Za, delta)[0]):
                alt[c] = th
        for cd, r, a in zip(cds, out, alt):
            r.unidentified = identifiability(r, fo, cd, a)
    return out


def _fill_replicates(r: FitResult, fo: Form, thr: np.ndarray) -> None:
    """Replicate refits thr (B, P) of ``r``: fill theta_reps, rep_ok, param_ci."""
    ok = np.all(np.isfinite(thr), axis=1)
    r.theta_reps, r.n_boot, r.rep_ok = thr[ok], int(len(thr)), ok
    if ok.mean() < 0.95:
        r.warnings.append(f"{(~ok).sum()} of {len(ok)} bootstrap refits failed")
    lo, hi = r._q(fo.public(r.theta_reps))
    r.param_ci = {nm: (float(a), float(b)) for nm, a, b in zip(fo.public_names, lo, hi)}


FITS_VERSION = 2  # fits.json's version; 2 adds settings, inputs and written_by (``fit.run``)
EXTRAPOLATION_FACTOR = 4.0  # N beyond this multiple of the largest measured N is an extrapolation


def n_for_target(fit: FitResult, target: float) -> dict:
    """N needed to reach ``target`` (metric space), its interval and how often it is reachable.

    ``lo``/``hi``: percentile interval over replicates, "never" counted as +inf, so ``hi`` is
    None ("not determined by these data", ``hi_note``) when more than (1 - level)/2 of the
    replicates never reach the target. ``extrapolation``: the point N is beyond
    ``EXTRAPOLATION_FACTOR`` x the largest measured N, or the target is unreachable under the
    fit (also a claim about N far beyond the data); ``x_largest_n`` = N / largest measured N.
    """
    fo = fit.form_obj
    nmax = fit.n_max if np.isfinite(fit.n_max) and fit.n_max > 0 else None
    out: dict[str, Any] = {"target": float(target), "form": fit.form, "n_max_measured": nmax}
    if not np.all(np.isfinite(fit.theta)):
        return {**out, "reachable": False, "n": None, "lo": None, "hi": None, "extrapolation": None,
                "frac_reachable": None, "note": "form not fitted"}
    n0 = float(fo.n_for(fit.theta[None], target)[0])
    out["reachable"] = bool(np.isfinite(n0))
    out["n"] = n0 if np.isfinite(n0) else None
    out["x_largest_n"] = n0 / nmax if nmax and np.isfinite(n0) else None
    out["extrapolation"] = bool(not np.isfinite(n0) or (nmax is not None and n0 > EXTRAPOLATION_FACTOR * nmax))
    if not np.isfinite(n0):
        out["note"] = "not reachable under this fit"
    if fit.theta_reps is None or len(fit.theta_reps) == 0:
        return {**out, "lo": None, "hi": None, "frac_reachable": None, "interval_note": "no bootstrap"}
    nr = fo.n_for(fit.theta_reps, target)
    frac = float(np.mean(np.isfinite(nr)))
    big = 1e300  # stands for "never": quantiles of inf would give NaN
    lo, hi = fit._q(np.where(np.isfinite(nr), np.minimum(nr, big), big))
    out.update(lo=float(lo) if lo < big else None, hi=float(hi) if hi < big else None,
               frac_reachable=frac)
    if out["hi"] is None:
        out["hi_note"] = "not determined by these data"
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
    forms = list(forms or default_forms())
    for f in forms:
        try:
            get_form(f)
        except KeyError as e:
            raise InputError(None, str(e.args[0]), field="form") from None
    long = select_metric(long, metric)
    return fit_curve_data(list(iter_curves(long, it, n_boot, seed)), forms, delta=delta, level=level)


@single_threaded
def fit_curve_data(cds: Sequence[CurveData], forms: Sequence[str], delta: float | None = None,
                   level: float = 0.95, progress: Callable[[int], Any] | None = None) -> list[FitResult]:
    """``fit_table``'s results for curves already built: every form of each curve (in the
    order of ``cds``, forms in the order given), the curves of one N grid fitted together
    (``fit_curves``), the best form of each curve marked. ``progress(k)``: k more fits done."""
    by_form = []
    for f in forms:
        by_form.append(fit_curves(cds, f, delta=delta, level=level))
        if progress is not None:
            progress(len(cds))
    out: list[FitResult] = []
    for c in range(len(cds)):
        fits = [fs[c] for fs in by_form]
        select_best(fits)
        out += fits
    return out


def select_metric(long: pd.DataFrame, metric: str | None) -> pd.DataFrame:
    """The rows of ``metric``; every metric but ``*_stderr``, ``n`` and ``n_items`` when None."""
    if metric is not None:
        long = long[long["metric"] == metric]
        if long.empty:
            raise InputError(None, f"no rows with metric {metric!r}", field="metric")
        return long
    return long[~(long["metric"].str.endswith("_stderr") | long["metric"].isin(["n", "n_items"]))]


def iter_curves(long: pd.DataFrame, items: pd.DataFrame | None, n_boot: int, seed: int):
    """CurveData of every (model, task, metric) of ``long``, sorted, with the replicates every
    consumer of a curve shares (seeded by (seed, model, task, metric): ``bootstrap.curve_rng``)."""
    for (model, task, met), rows in long.groupby(["model", "task", "metric"], sort=True):
        its = None
        if items is not None:
            its = items[(items["model"] == model) & (items["task"] == task)]
            its = its if len(its) else None
        yield curve_data(rows, its, n_boot, curve_rng(seed, model, task, met))


def _is_items_frame(x: Any) -> bool:
    return isinstance(x, pd.DataFrame) and {"model", "task", "n", "item_id", "seed"} <= set(x.columns)


def fits_document(results: Sequence[FitResult], targets: Sequence[float] = (),
                  predict_at: Sequence[float] = (), source: str = "", joint: Sequence[JointEntry] | None = None,
                  forecasts: ForecastsDoc | None = None) -> FitsDoc:
    """The JSON object written to ``fits.json`` (``joint``: ``joint.joint_fits`` output, if any;
    ``forecasts``: ``forecast.forecast_table`` output, the answers)."""
    level = results[0].level if results else None
    doc = {"version": FITS_VERSION, "source": source, "level": level,
           "notes": ["AIC/AICc: Gaussian likelihood of metric-space residuals on N > 0 points",
                     "loo.error: observed minus predicted (metric space) with that N left out",
                     "param_ci / predictions / targets: bootstrap percentile intervals of each form; a "
                     "form's prediction of a rate outside [0, 1] is withheld; the answers (forecasts beyond "
                     "the grid, N for a target) are in 'forecasts'",
                     f"best: {RULE}",
                     f"targets.extrapolation: the point N is beyond {EXTRAPOLATION_FACTOR:g}x the largest "
                     "measured N, or the target is unreachable under the fit",
                     "paper_terms (power form): the paper writes P ~ N^(1/b); one_over_b is this fit's b"],
           "fits": [r.to_dict(targets=targets, predict_at=predict_at) for r in results]}
    if joint is not None:
        doc["joint"] = json_safe(list(joint))
    if forecasts is not None:
        doc["forecasts"] = json_safe(forecasts)
    return cast(FitsDoc, doc)


__all__ = ["FITS_VERSION", "FitResult", "bootstrap_fit", "fit_curve", "fit_curve_data", "fit_curves", "fit_law",
           "fit_table", "fits_document", "iter_curves", "json_safe", "n_for_target", "point_fit", "point_fit_many",
           "select_metric"]

