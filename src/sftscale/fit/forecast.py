"""Forecasts of a rate at larger N that are tested before they are trusted.

The answer a study is for, "how many examples do I need, and what does more data buy?", as
a product with its own track record:

1. **Members** (``members``): bounded curve families in log N (logit, logistic and Gompertz
   with floor and ceiling, a ceiling minus a power law) and the two naive forecasts (the
   last value carried forward; a straight line in log N). No prediction leaves [0, 1].
2. **Backtests** (module ``backtest``): every curve is refitted on every prefix of its grid with at
   least ``MIN_ORIGIN`` points (N > 0) and predicts the next one and two larger N; each
   record holds what every member predicted, what was measured and the noise of both.
3. **Calibration** (``backtest.calibrate``), pooled over the curves of a study, per horizon bucket
   (the ratio of the predicted N to the largest N fitted: up to 2.8x, up to 5.7x), on the
   backtests of the longest prefixes while at least ``MIN_SCORES`` remain:
   members are weighted by 1 / their backtest mean squared error (stacking by out-of-sample
   error, not in-sample AICc); the weighted mean of the members is the forecast; if it does
   not beat both naive forecasts on the pooled backtests, the better naive forecast is the
   forecast. The interval is split conformal on standardised logit residuals
   ``|logit y - logit y_hat| / s`` with ``s^2`` = the measurement's noise + the bootstrap
   variance of the forecast + the members' disagreement: its quantile at ``level`` widens the
   interval by the errors the method actually made. With fewer scores than the level needs
   (9 for 90%) the reference quantile (``REFERENCE_Q``, measured on simulated studies) is used
   and the forecast says so.
4. **Two intervals**: ``measurement`` (a new measurement with the study's test items and
   seeds, what a backtest is scored against) and ``curve`` (the curve's value: the
   measurement noise taken out in quadrature).
5. **Lack of fit** (``lack_of_fit``): each family's weighted residuals against the bootstrap
   noise of its points (chi-squared, p < ``LOF_P``). A family that fails is left out of the
   curve's forecast; when every family fails, or the curve has fewer than ``MIN_POINTS`` N,
   or it has not left its floor, the forecast is "cannot forecast" with the reason, and no
   extrapolated N is given.
   Between 2x and 4x the largest N the two buckets are blended linearly in log2(ratio).
6. **Targets**: inside the measured range a target is answered from the measured points
   (isotonic regression, linear in log N between points; interval from the same bootstrap
   replicates as the fits); beyond it from the forecast, up to ``MAX_RATIO`` x the largest N.

Not handled: metrics where lower is better or outside [0, 1]; forecasts beyond
``MAX_RATIO`` x the largest measured N (calibration needs backtests at that horizon, which a
grid cannot give); curves that fall with N (members are constrained to growth).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, cast

import numpy as np
from scipy.stats import chi2, norm

from ..schema import ForecastsDoc
from .backtest import (
    BUCKETS,
    BucketCal,
    Curve,
    Record,
    backtest,
    backtest_many,
    calibrate,
    calibration_dict,
    combine,
    curve_from_data,
    method_weights,
    predict_members,
    predict_members_many,
    same_grid_groups,
)
from .bootstrap import CurveData
from .data import load_items, load_long
from .fitting import _is_items_frame, iter_curves, select_metric
from .forms import single_threaded
from .members import MEMBERS, NAIVE, clip_rate, logit

MIN_POINTS = 4        # N > 0 points a curve needs for a forecast
LOF_P = 0.01          # lack of fit: chi-squared p-value below this
MAX_RATIO = 4.0       # furthest forecast, as a multiple of the largest measured N
TARGET_GRID = 2.0 ** np.arange(0.05, np.log2(MAX_RATIO) + 1e-9, 0.05)  # N / largest N searched for a target
PATH_POINTS = 40      # points of the drawn curve inside the measured range
METHOD_NOTE = ("forecast = members weighted by 1 / backtest MSE, pooled over the study's curves per "
               "horizon bucket; falls back to the better naive forecast (last value, line in log N) when "
               "that has the lower pooled backtest error; intervals: split conformal on standardised "
               "logit residuals of the backtests")

INTERVALS_NOTE = {
    "measurement": "where a new measurement of this curve at that N would fall, with the study's test items "
                   "and seeds (what every backtest is scored against)",
    "curve": "where the curve's own value (infinitely many test items) lies: the measurement interval with the "
             "measurement noise removed in quadrature",
    "targets": "N for a target: inside the measured range, bootstrap percentiles of the monotone interpolation; "
               "beyond it, the first N where the curve interval's upper (lo) and lower (hi) ends reach the target",
}


# --- one curve's forecast ---------------------------------------------------------------------

def lack_of_fit(c: Curve, fitted: dict[str, dict[str, np.ndarray]]) -> dict[str, dict]:
    """Chi-squared of each member's point fit against the noise of the points."""
    out = {}
    for m, v in fitted.items():
        if not MEMBERS[m].fits_points:
            continue
        dof = c.n.size - MEMBERS[m].n_params
        stat = float(np.sum((c.y - v["fitted"]) ** 2 / c.var))
        p = float(chi2.sf(stat, dof)) if dof >= 1 else None
        out[m] = {"chi2": stat, "dof": dof, "p": p, "fails": bool(p is not None and p < LOF_P),
                  "rmse": float(np.sqrt(np.mean((c.y - v["fitted"]) ** 2)))}
    return out


@functools.lru_cache(maxsize=16)
def _normal_q(level: float) -> float:
    """The two-sided normal quantile of ``level`` (one scipy call per level, not per forecast)."""
    return float(norm.ppf(0.5 + level / 2))


def _interval(mid: float, zvar: float, c: Curve, q: float, level: float) -> dict:
    """Measurement and curve intervals around ``mid`` (module docstring, item 4)."""
    zm = float(logit(np.array([mid]), c.eps)[0])
    p = float(clip_rate(np.array([mid]), c.eps)[0])
    znoise = 1.0 / (c.m_eff * p * (1 - p))
    half_m = q * math.sqrt(max(zvar + znoise, 1e-12))
    zq = _normal_q(level)
    half_c = math.sqrt(max(half_m ** 2 - zq ** 2 * znoise, 0.0))

    def band(h: float) -> list[float]:
        return [float(1 / (1 + math.exp(-(zm - h)))), float(1 / (1 + math.exp(-(zm + h))))]
    return {"measurement": band(half_m), "curve": band(half_c)}


def isotonic(Y: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Weighted isotonic (non-decreasing) regression along the last axis, batched: the
    max-min formula over block averages (exact; O(k^3), for the few points of a curve). Not
    scipy's ``isotonic_regression``: that is one row a call, and a target's interval needs
    every bootstrap replicate (the test checks the two agree)."""
    Y = np.atleast_2d(Y)
    W = np.broadcast_to(W, Y.shape)
    k = Y.shape[1]
    cw = np.concatenate([np.zeros((Y.shape[0], 1)), np.cumsum(W, 1)], 1)
    cy = np.concatenate([np.zeros((Y.shape[0], 1)), np.cumsum(W * Y, 1)], 1)
    j = np.arange(k)[:, None]
    l_ = np.arange(k)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = (cy[:, l_ + 1] - cy[:, j]) / (cw[:, l_ + 1] - cw[:, j])  # (B, j, l)
    avg = np.where(j <= l_, avg, np.inf)
    mins = np.minimum.accumulate(avg[:, :, ::-1], axis=2)[:, :, ::-1]  # min over l >= i
    mins = np.where(j <= l_, mins, -np.inf)  # rows j <= i only
    return np.max(mins, axis=1)


def _crossing(n: np.ndarray, Y: np.ndarray, target: float) -> np.ndarray:
    """Smallest N (linear in log N between points) where each row of monotone Y reaches target;
    inf when it does not within the points."""
    x = np.log(n)
    out = np.full(Y.shape[0], np.inf)
    hit = Y >= target
    first = np.where(hit.any(1), hit.argmax(1), -1)
    for r in np.nonzero(first >= 0)[0]:
        i = first[r]
        if i == 0:
            out[r] = n[0]
            continue
        y0, y1 = Y[r, i - 1], Y[r, i]
        t = (target - y0) / (y1 - y0) if y1 > y0 else 1.0
        out[r] = math.exp(x[i - 1] + t * (x[i] - x[i - 1]))
    return out


@dataclass
class Forecast:
    """The forecast of one curve: fits.json's ``forecasts[]`` entry (``to_dict``)."""

    curve: Curve
    status: str                        # "ok" or "cannot forecast"
    reason: str | None
    level: float
    lack: dict[str, dict] = field(default_factory=dict)
    members: list[str] = field(default_factory=list)
    backtests: list[dict] = field(default_factory=list)
    predictions: list[dict] = field(default_factory=list)
    targets: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    path: list[dict] = field(default_factory=list)  # the curve to draw (``_path``)

    def to_dict(self) -> dict:
        c = self.curve
        return {"model": c.model, "task": c.task, "metric": c.metric, "status": self.status,
                "reason": self.reason, "level": self.level, "n_max_measured": float(c.n[-1]) if c.n.size else None,
                "points": {"n": c.n.tolist(), "y": c.y.tolist(), "se": np.sqrt(c.var).tolist()},
                "noise": {"m_eff": c.m_eff, "known": c.noise_known},
                "lack_of_fit": self.lack, "members_used": self.members, "predictions": self.predictions,
                "targets": self.targets, "backtests": self.backtests, "backtest_summary": self.summary,
                "path": self.path, "warnings": self.warnings}


def _calibrates(c: Curve) -> bool:
    """Whether a curve's backtests join the study's calibration: a rate that left its floor (a
    flat zero curve would teach the intervals that forecasting is easy)."""
    return bool(c.n.size and np.all((c.y >= 0) & (c.y <= 1)) and _why_not(c, {}) is None)


def _why_not(c: Curve, lack: dict[str, dict]) -> str | None:
    if c.n.size and (np.any(c.y < 0) or np.any(c.y > 1)):
        return "the metric is not a rate in [0, 1]; forecasts here are for rates"
    if c.n.size < MIN_POINTS:
        return f"only {c.n.size} N > 0 measured; a forecast needs at least {MIN_POINTS}"
    se = float(np.median(np.sqrt(c.var)))
    if float(np.max(c.y)) < max(0.02, 2 * se):
        return "every measured value is at the floor: where the curve leaves it cannot be forecast"
    forms = [m for m in lack if MEMBERS[m].fits_points]
    tested = [m for m in forms if lack[m]["p"] is not None]
    if tested and all(lack[m]["fails"] for m in tested):
        worst = ", ".join(f"{m} p = {lack[m]['p']:.2g}" for m in tested)
        return f"no form describes the points (lack of fit against their noise: {worst})"
    return None


def _where(c: Curve, ratios: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(the N forecast: index 0 is the largest measured N itself, the base of "what it buys";
    the N of the drawn curve inside the measured range)."""
    K = c.n.size
    grid = np.unique(np.concatenate([[1.0], np.asarray(ratios, float), TARGET_GRID])) * (c.n[-1] if K else 1.0)
    inside = np.geomspace(c.n[0], c.n[-1], PATH_POINTS) if K else np.empty(0)
    return grid, inside


def forecast_curve(c: Curve, cal: dict[str, BucketCal], records: Sequence[Record],
                   targets: Sequence[float] = (), level: float = 0.9,
                   ratios: Sequence[float] = (2.0, 4.0),
                   fitted: dict[str, dict[str, np.ndarray]] | None = None) -> Forecast:
    """The forecast of one curve with a study's calibration (module docstring, items 3-6).
    ``fitted``: ``predict_members(c, K, concat(_where(c, ratios)))`` when the caller has it
    (``forecast_curves`` fits the curves of one grid together)."""
    K = c.n.size
    grid, inside = _where(c, ratios)
    # one fit of every member serves the lack-of-fit test, the forecasts and the drawn curve
    if fitted is None:
        fitted = predict_members(c, K, np.concatenate([grid, inside])) if K >= 1 else {}
    both = fitted
    full = {m: {**v, "mid": v["mid"][:grid.size], "zvar": v["zvar"][:grid.size]} for m, v in both.items()}
    lack = lack_of_fit(c, full)
    why = _why_not(c, lack)
    fc = Forecast(c, "ok" if why is None else "cannot forecast", why, level, lack)
    fc.backtests = _backtest_rows(c, cal, records, level)
    fc.summary = _summary(fc.backtests)
    if fc.summary.get("last_outside"):
        fc.warnings.append("the backtest of the largest measured N fell outside its interval")
    preds: list[dict] = []
    if why is None:
        fc.members = [m for m in full if not lack.get(m, {}).get("fails")]
        preds = [_predict_at(c, cal, {m: full[m] for m in fc.members}, i, float(n), level)
                 for i, n in enumerate(grid)]
        want = set(np.round(np.asarray(ratios, float) * c.n[-1], 9))
        fc.predictions = [p for p in preds if round(p["n"], 9) in want and p["ratio"] > 1]
        fc.path = _path(c, cal, {m: both[m] for m in fc.members}, inside, grid.size, preds)
    fc.targets = [_target(c, fc, preds, float(t), level) for t in targets]
    return fc


def _path(c: Curve, cal: dict[str, BucketCal], pm: dict[str, dict[str, np.ndarray]], inside: np.ndarray,
          offset: int, preds: list[dict]) -> list[dict]:
    """The curve to draw: inside the measured range (``inside``, the members' predictions from
    index ``offset`` of ``pm``) the weighted bounded families' fit (no interval: the points are
    the evidence there), beyond it the forecast with its curve interval."""
    bounded = [m for m in pm if not MEMBERS[m].naive] or list(pm)  # a flat "last" is no curve
    pm = {m: {"mid": pm[m]["mid"][offset:]} for m in bounded}
    w = {m: v for m, v in cal["2x"].weights.items() if m in pm}
    out = []
    for i, n in enumerate(inside):
        mid, _ = combine({m: float(pm[m]["mid"][i]) for m in w}, {m: 0.0 for m in w}, w, c.eps)
        out.append({"n": float(n), "mid": mid, "lo": None, "hi": None})
    out += [{"n": p["n"], "mid": p["mid"], "lo": p["curve"][0], "hi": p["curve"][1]}
            for p in preds if p.get("mid") is not None and p["ratio"] > 1]
    return out


def _bucket_forecast(bc: BucketCal, pm: dict[str, dict[str, np.ndarray]], i: int, eps: float
                     ) -> tuple[float, float, str]:
    """(forecast, its logit variance, method) of one bucket's calibration at index ``i``."""
    w = {m: v for m, v in method_weights(bc.method, bc.weights).items() if m in pm}
    method = bc.method
    if not w:  # the chosen naive forecast failed its lack-of-fit test: the ensemble of the rest
        w, method = {m: v for m, v in bc.weights.items() if m in pm}, "ensemble"
    mid, zv = combine({m: float(pm[m]["mid"][i]) for m in w}, {m: float(pm[m]["zvar"][i]) for m in w}, w, eps)
    return mid, zv, method


def _predict_at(c: Curve, cal: dict[str, BucketCal], pm: dict[str, dict[str, np.ndarray]], i: int, n: float,
                level: float) -> dict:
    """The forecast at ``n`` (index ``i`` of the members' predictions ``pm``) with both intervals.

    Up to 2x the largest N the "2x" bucket's calibration; from 2x to 4x the two buckets'
    forecasts, logit variances and quantiles blended linearly in log2(ratio), so that the
    forecast and its band are continuous in N."""
    ratio = n / float(c.n[-1])
    if ratio > MAX_RATIO * 1.01:  # a grid's "4x" may be 4.01x (266 -> 1,066)
        return {"n": n, "ratio": ratio, "mid": None, "note": f"beyond {MAX_RATIO:g}x the largest measured N"}
    t = float(np.clip(math.log2(ratio) - 1.0, 0.0, 1.0))
    m2, z2, meth2 = _bucket_forecast(cal["2x"], pm, i, c.eps)
    m4, z4, meth4 = _bucket_forecast(cal["4x"], pm, i, c.eps) if t > 0 else (m2, z2, meth2)
    mid, zv = (1 - t) * m2 + t * m4, (1 - t) * z2 + t * z4
    q = (1 - t) * cal["2x"].q + t * cal["4x"].q
    iv = _interval(mid, zv, c, q, level)
    # what the extra data buys, over the same forecast's value at the largest measured N; every
    # member grows with N, so the gain's lower end is at least 0
    at_max = _bucket_forecast(cal["2x"], pm, 0, c.eps)[0] if pm else float(c.y[-1])
    b = "2x" if t < 0.5 else "4x"
    return {"n": n, "ratio": ratio, "bucket": b, "method": meth2 if t < 0.5 else meth4, "mid": mid,
            "curve": iv["curve"], "measurement": iv["measurement"], "gain_over_largest": max(mid - at_max, 0.0),
            "gain_curve": [max(iv["curve"][0] - at_max, 0.0), max(iv["curve"][1] - at_max, 0.0)],
            "calibration": cal[b].q_source}


def _backtest_rows(c: Curve, cal: dict[str, BucketCal], records: Sequence[Record], level: float) -> list[dict]:
    rows = []
    for r in records:
        if r.curve != c.key:
            continue
        bc = cal[r.bucket]
        mid, zv = combine(r.preds, r.zvars, method_weights(bc.method, bc.weights), r.eps)
        if not math.isfinite(mid):
            continue
        iv = _interval(mid, zv, c, bc.q, level)
        lo, hi = iv["measurement"]
        rows.append({"fit_n_max": r.n_fit_max, "points_fitted": r.k, "n": r.n, "ratio": r.ratio,
                     "bucket": r.bucket, "method": bc.method, "predicted": mid, "measurement": [lo, hi],
                     "measured": r.measured, "error": r.measured - mid, "inside": bool(lo <= r.measured <= hi),
                     "naive": {m: r.preds[m] for m in NAIVE if m in r.preds}})
    return rows


def _summary(rows: list[dict]) -> dict:
    if not rows:
        return {"n": 0}
    err = np.array([abs(r["error"]) for r in rows])
    out: dict[str, Any] = {"n": len(rows), "mae": float(err.mean()),
                           "coverage": float(np.mean([r["inside"] for r in rows]))}
    for m in NAIVE:
        e = [abs(r["measured"] - r["naive"][m]) for r in rows if m in r["naive"]]
        out[f"mae_{m}"] = float(np.mean(e)) if e else None
    n_last = max(r["n"] for r in rows)
    last = [r for r in rows if r["n"] == n_last]
    out["largest_n"] = last
    out["last_outside"] = any(not r["inside"] for r in last if r["ratio"] <= 2.0 ** 1.5)
    return out


def _target(c: Curve, fc: Forecast, preds: list[dict], t: float, level: float) -> dict:
    """N for a target: measured range first (isotonic), then the forecast (module docstring, 6)."""
    out: dict[str, Any] = {"target": t, "n": None, "lo": None, "hi": None}
    if not c.n.size:
        return {**out, "how": "cannot", "note": "no N > 0 measured"}
    w = 1.0 / c.var
    iso = isotonic(c.y[None], w)[0]
    if iso[-1] >= t:
        n0 = float(_crossing(c.n, iso[None], t)[0])
        out.update(how="measured", n=n0)
        if c.reps is not None:
            nr = _crossing(c.n, isotonic(c.reps, w), t)
            a = (1 - level) / 2
            lo, hi = np.quantile(nr, [a, 1 - a], method="nearest")
            out.update(lo=float(lo), hi=float(hi) if np.isfinite(hi) else None)
            if out["hi"] is None:
                out["hi_note"] = "beyond the measured range in some bootstrap replicates"
        if n0 <= c.n[0]:
            out["note"] = f"reached at the smallest measured N ({c.n[0]:g})"
        return out
    if fc.status != "ok":
        return {**out, "how": "cannot", "note": f"cannot forecast: {fc.reason}"}
    pts = [p for p in preds if p.get("mid") is not None and p["n"] > c.n[-1]]
    ns = np.array([p["n"] for p in pts])
    mids = np.array([p["mid"] for p in pts])
    lo_b = np.array([p["curve"][0] for p in pts])
    hi_b = np.array([p["curve"][1] for p in pts])

    def first(mask: np.ndarray) -> float | None:
        return float(ns[int(mask.argmax())]) if mask.any() else None
    out.update(how="forecast", n=first(mids >= t), lo=first(hi_b >= t), hi=first(lo_b >= t))
    if out["n"] is None:
        p4 = pts[-1]
        out["note"] = (f"not reached within {MAX_RATIO:g}x the largest measured N (forecast at "
                       f"N = {int(round(p4['n'])):,}: {p4['mid']:.2f} [{p4['curve'][0]:.2f}, {p4['curve'][1]:.2f}])")
    elif out["hi"] is None:
        out["hi_note"] = f"the interval's lower end stays below it up to {MAX_RATIO:g}x the largest N"
    return out


def forecast_curves(curves: Sequence[Curve], targets: Sequence[float] = (), level: float = 0.9
                    ) -> tuple[list[Forecast], dict[str, BucketCal]]:
    """Backtest every curve, calibrate on the pooled backtests, forecast every curve (the curves
    of one N grid fitted together: ``backtest.backtest_many``, ``predict_members_many``)."""
    records = backtest_curves(curves)
    cal = calibrate(records, level)
    return forecast_group(curves, cal, records, targets, level), cal


def backtest_curves(curves: Sequence[Curve]) -> list[Record]:
    """The backtest records of the curves that can be backtested (``fit.parallel`` runs this on
    chunks of curves: a curve's records depend on that curve alone)."""
    return backtest_many([c for c in curves if _calibrates(c)])


def forecast_group(curves: Sequence[Curve], cal: dict[str, BucketCal], records: Sequence[Record],
                   targets: Sequence[float] = (), level: float = 0.9) -> list[Forecast]:
    """Every curve's forecast with a calibration already made (the members of the curves of
    one N grid fitted together); a curve's forecast depends on that curve, ``cal`` and its
    own records alone."""
    fitted: list[dict | None] = [None] * len(curves)
    for group in same_grid_groups(curves):
        c0 = curves[group[0]]
        if c0.n.size:
            pms = predict_members_many([curves[i] for i in group], c0.n.size, np.concatenate(_where(c0, (2.0, 4.0))))
            for i, pm in zip(group, pms):
                fitted[i] = pm
    by_curve: dict[tuple[str, str, str], list[Record]] = {}
    for r in records:
        by_curve.setdefault(r.curve, []).append(r)
    return [forecast_curve(c, cal, by_curve.get(c.key, []), targets, level, fitted=f)
            for c, f in zip(curves, fitted)]


@single_threaded
def forecast_table(df: Any, items: Any = None, metric: str | None = None, targets: Sequence[float] = (),
                   level: float = 0.9, n_boot: int = 1000, seed: int = 0) -> ForecastsDoc:
    """Forecasts of every curve of a long table, calibrated per metric over its curves.

    The same bootstrap replicates as ``fitting.fit_table`` (``iter_curves``). Returns the
    ``forecasts`` object of fits.json: ``level``, ``method``, ``calibration`` (per metric and
    horizon bucket) and ``curves`` (``Forecast.to_dict()`` each)."""
    long = select_metric(load_long(df), metric)
    it = load_items(items) if items is not None and not _is_items_frame(items) else items
    return forecast_curve_data(list(iter_curves(long, it, n_boot, seed)), targets, level)


@single_threaded
def forecast_curve_data(cds: Sequence[CurveData], targets: Sequence[float] = (), level: float = 0.9
                        ) -> ForecastsDoc:
    """``forecast_table``'s result for curves already built (``fitting.iter_curves``, in its order)."""
    return forecasts_document(metric_groups(cds), targets, level)


def metric_groups(cds: Sequence[CurveData]) -> dict[str, list[Curve]]:
    """The curves of ``cds`` per metric (calibrated together), in the order of ``cds``."""
    by_metric: dict[str, list[Curve]] = {}
    for cd in cds:
        by_metric.setdefault(cd.metric, []).append(curve_from_data(cd))
    return by_metric


def forecasts_document(by_metric: dict[str, list[Curve]], targets: Sequence[float], level: float,
                       backtests: Callable[[list[Curve]], list[Record]] = backtest_curves,
                       forecasts: Callable[..., list[dict]] | None = None) -> ForecastsDoc:
    """The ``forecasts`` object of fits.json for curves grouped per metric. ``backtests(curves)``
    and ``forecasts(jobs, targets, level)`` (``jobs``: (curves, calibration, records) of every
    metric; it returns the forecasts' dicts in that order) may be run in worker processes
    (``fit.parallel``); by default in this one."""
    out: dict[str, Any] = {"level": level, "method": METHOD_NOTE, "intervals": INTERVALS_NOTE,
                           "calibration": {}, "curves": []}
    jobs = []
    for met, curves in by_metric.items():
        records = backtests(curves)
        cal = calibrate(records, level)
        out["calibration"][met] = calibration_dict(cal)
        jobs.append((curves, cal, records))
    if forecasts is None:
        for curves, cal, records in jobs:
            out["curves"] += [f.to_dict() for f in forecast_group(curves, cal, records, targets, level)]
    else:
        out["curves"] = forecasts(jobs, targets, level)
    return cast(ForecastsDoc, out)

__all__ = ["BUCKETS", "Curve", "Forecast", "METHOD_NOTE", "MIN_POINTS", "backtest", "backtest_curves", "calibrate",
           "calibration_dict", "curve_from_data", "forecast_curve", "forecast_curve_data", "forecast_curves",
           "forecast_group", "forecast_table", "forecasts_document", "metric_groups",
           "isotonic", "predict_members"]
