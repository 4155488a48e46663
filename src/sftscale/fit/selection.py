"""Which fitted form a curve is described by: identifiability checks and the selection rule.

- ``identifiability(r, fo, cd, theta_alt_floor)``: appends warnings to a ``FitResult`` and
  returns the reasons (short strings) why its parameters are *not identified* by the data:
  a near-singular Jacobian; a parameter (other than a form's ``error_floor`` E at 0) at its
  bound; a scale parameter (``Form.is_log_param``: a, A, N0) whose bootstrap interval spans
  more than three orders of magnitude; a parameter at its bound in more than 10% of
  replicates (piling at a bound); flat data; a log-space fit that moves when the floor used
  for zeros is divided by 10 (the fit follows the clip value, not the data).
- ``select_best(fits)``: the rule that marks at most one form of a curve as ``best`` and
  records in ``fit.selection`` why each form was or was not eligible (see its docstring).

Not handled: model averaging, formal tests between non-nested forms, identifiability of
fits without a bootstrap (only the point-fit checks run; a note says so).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .bootstrap import CurveData
from .forms import Form, jacobian_condition

FitResult = Any  # fitting.FitResult (fitting imports this module, not the other way round)

MIN_DOF = 2            # residual degrees of freedom a form needs to be chosen
TIE_AICC = 2.0         # forms within this many AICc units of the lowest are tied
MAX_DECADES = 3.0      # a scale parameter whose interval spans more decades is unidentified
PILE_FRAC = 0.10       # share of replicates at a bound that counts as piling
RULE = (f"eligible: fitted, at least {MIN_DOF} residual dof, parameters identified; among eligible forms "
        f"the lowest AICc wins, forms within {TIE_AICC:g} AICc units of it are tied and the lowest "
        "leave-one-N-out RMSE (N > 0 points) among them wins; when AICc is undefined for an eligible "
        "form (too few points), the lowest leave-one-N-out RMSE decides; remaining ties: fewer "
        "parameters, then the order the forms were fitted in (by default their registration order: "
        "power, saturating, saturating_offset, loglinear, then any added); no eligible form: no best")


def _at_bound(x: np.ndarray, lo: float, hi: float, lower_ok: bool) -> np.ndarray:
    low = (x <= lo + 1e-9) & (not lower_ok)
    return low | (x >= hi - 1e-9)


def identifiability(r: FitResult, fo: Form, cd: CurveData,
                    theta_alt_floor: np.ndarray | None = None) -> list[str]:
    """Warnings (appended to ``r.warnings``) and the reasons the fit is not identified."""
    w, bad = r.warnings, []
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
        bad.append("flat data")
    cond = jacobian_condition(fo, r.theta, r.n)
    if cond > 1e8:
        w.append(f"near-singular Jacobian (condition {cond:.2g}): parameters trade off and are not "
                 "separately identified")
        bad.append("near-singular Jacobian")
    lb, ub = fo.bounds()
    names = fo.theta_names
    at = [names[i] for i in range(fo.n_params)
          if _at_bound(r.theta[i], lb[i], ub[i], names[i] == fo.error_floor)]
    if at:
        w.append(f"parameter(s) at a bound: {', '.join(at)}")
        bad.append(f"{', '.join(fo.public_names[names.index(a)] for a in at)} at a bound")
    if fo.error_floor is not None:
        E = r.theta[names.index(fo.error_floor)]
        err = 1.0 - fo.predict(r.theta, np.array([r.n.min(), r.n.max()]))[0]
        if err[0] - E > 0 and (err[1] - E) / (err[0] - E) > 0.5:
            w.append("asymptote not reached: more than half of the reducible error remains at the "
                     "largest N, so E (the ceiling 1 - E) is an extrapolation")
    if r.theta_reps is not None and len(r.theta_reps):
        bad += _interval_checks(r, fo, lb, ub)
    if theta_alt_floor is not None and np.all(np.isfinite(theta_alt_floor)):
        moved = _floor_moved(r, theta_alt_floor)
        if moved:
            k = int(np.sum(r.clipped)) if r.clipped is not None else 0
            w.append(f"{k} of {r.n.size} points are 0 and were clipped before taking logs; dividing the "
                     f"clip floor by 10 moves {', '.join(moved)} beyond its interval: the fit follows "
                     "the clip value, not the data")
            bad.append(f"fit set by the clip floor of zeros ({', '.join(moved)})")
    return bad


def _interval_checks(r: FitResult, fo: Form, lb: np.ndarray, ub: np.ndarray) -> list[str]:
    w, bad = r.warnings, []
    for i, nm in enumerate(fo.public_names):
        lo, hi = r.param_ci[nm]
        est = abs(r.params[nm])
        if fo.is_log_param(i):  # a scale parameter: judge its interval in decades
            dec = math.log10(hi / lo) if lo > 0 and hi > 0 else math.inf
            if dec > MAX_DECADES:
                w.append(f"interval of {nm} spans {dec:.1f} orders of magnitude: [{lo:.3g}, {hi:.3g}]")
                bad.append(f"interval of {nm} spans {dec:.1f} orders of magnitude")
        scale = max(est, 1e-3 if fo.is_log_param(i) else 0.05)
        if hi - lo > 10 * scale:
            w.append(f"huge bootstrap spread for {nm}: interval [{lo:.3g}, {hi:.3g}] vs estimate "
                     f"{r.params[nm]:.3g}")
        col = r.theta_reps[:, i]
        share = float(np.mean(_at_bound(col, lb[i], ub[i], fo.theta_names[i] == fo.error_floor)))
        if share > PILE_FRAC:
            w.append(f"{nm} hits its bound in more than 10% of bootstrap replicates ({100 * share:.0f}%)")
            bad.append(f"{nm} at its bound in {100 * share:.0f}% of replicates")
    return bad


def _floor_moved(r: FitResult, theta_alt: np.ndarray) -> list[str]:
    """Parameters (theta scale: logs for a, A, N0) that move by more than their bootstrap
    interval (at least 1% of max(|theta|, 1)) when zeros are clipped to a 10x lower floor."""
    fo = r.form_obj
    if r.theta_reps is not None and len(r.theta_reps):
        t = (1.0 - r.level) / 2.0
        width = np.quantile(r.theta_reps, 1 - t, axis=0) - np.quantile(r.theta_reps, t, axis=0)
    else:
        width = np.zeros(fo.n_params)
    tol = np.maximum(width, 0.01 * np.maximum(np.abs(r.theta), 1.0))
    return [fo.public_names[i] for i in range(fo.n_params) if abs(theta_alt[i] - r.theta[i]) > tol[i]]


def _loo_rmse_pos(f: FitResult) -> float:
    """Leave-one-N-out RMSE on the N > 0 points (the same points for every form)."""
    n, e = np.asarray(f.loo["n"], float), np.asarray(f.loo["error"], float)
    e = e[n > 0]
    return float(np.sqrt(np.mean(e ** 2))) if e.size and np.all(np.isfinite(e)) else math.nan


def select_best(fits: Sequence[FitResult]) -> FitResult:
    """Mark at most one form of one curve as ``best``; fill ``fit.selection`` for every form.

    Rule (also in ``RULE`` and in fits.json's notes):
    1. Eligible: the form was fitted, has >= 2 residual degrees of freedom (distinct N minus
       parameters) and no identifiability problem (``fit.unidentified`` empty). With fewer
       dof AICc is undefined or its penalty explodes, and a 4-parameter curve through 5
       points says nothing a reader can trust. Ineligible forms stay in fits.json and the
       report's table, with their reasons, but are never chosen.
    2. If AICc is finite for every eligible form: lowest AICc; forms within 2 units of it are
       tied, and the lowest leave-one-N-out RMSE (metric space, N > 0 points) among them wins.
    3. Otherwise (AICc needs N > k + 1 points, k = parameters + 1; 4 positive N cannot give it
       for a 2-parameter form): the lowest leave-one-N-out RMSE decides.
    4. Remaining ties (equal to 1e-12): fewer parameters, then the order of ``fits``.
    No eligible form: no ``best``; the report then prints no parameters for the curve.
    """
    rows: list[tuple[Any, ...]] = []
    for i, f in enumerate(fits):
        f.best = False
        reasons = []
        if not np.all(np.isfinite(f.theta)):
            reasons.append("not fitted")
        elif f.dof < MIN_DOF:
            reasons.append(f"{f.dof} residual dof (< {MIN_DOF})")
        reasons += [f"not identified: {u}" for u in f.unidentified]
        loo = _loo_rmse_pos(f)
        if not reasons and not math.isfinite(loo):
            reasons.append("leave-one-N-out error undefined")
        f.selection = {"eligible": not reasons, "reasons": reasons, "identified": not f.unidentified,
                       "aicc": f.aicc if math.isfinite(f.aicc) else None, "loo_rmse_pos": loo,
                       "criterion": None, "chosen": False}
        if not reasons:
            rows.append((f, loo, i))
    if not rows:
        return None
    if all(math.isfinite(f.aicc) for f, _, _ in rows):
        amin = min(f.aicc for f, _, _ in rows)
        tied = [r for r in rows if r[0].aicc - amin <= TIE_AICC]
        crit = "aicc" if len(tied) == 1 else "aicc, tie broken by leave-one-N-out RMSE"
    else:
        tied, crit = rows, "leave-one-N-out RMSE (AICc undefined with these points)"
    best = min(tied, key=lambda r: (round(r[1], 12), r[0].form_obj.n_params, r[2]))[0]
    best.best = True
    for f, _, _ in rows:
        f.selection["criterion"] = crit
    best.selection["chosen"] = True
    return best


__all__ = ["MIN_DOF", "RULE", "identifiability", "select_best"]
