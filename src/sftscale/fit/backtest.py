"""Backtests and their calibration: the track record behind every forecast (``forecast``).

- ``Curve`` / ``curve_from_data``: the N > 0 points of one curve, their noise (bootstrap
  variance, floored at binomial) and replicates.
- ``predict_members(c, k, n_new)``: every member (``members``) fitted on the first k points,
  its prediction at ``n_new`` and the logit variance of that prediction over bootstrap refits.
- ``predict_members_many`` / ``backtest_many``: the same for many curves, those of one N grid
  fitted together (one batched fit per member and prefix; row for row the one-curve results).
- ``backtest(c)``: every prefix with at least ``MIN_ORIGIN`` points predicts the next one and
  two larger N (``Record``s).
- ``calibrate(records, level)``: per horizon bucket (``BUCKETS``: up to 2.8x and 5.7x the
  largest N fitted), members weighted by 1 / backtest MSE, the method (the weighted members, or
  the better naive forecast when it did better), and the split-conformal quantile of the
  standardised logit errors; ``REFERENCE_Q`` where a bucket has too few backtests.

Not handled: calibration across studies (each study calibrates on its own curves), horizons
beyond the second bucket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.stats import norm

from .bootstrap import CurveData
from .members import MEMBERS, NAIVE, clip_rate, logit

MIN_ORIGIN = 3        # points of the smallest prefix that is backtested
B_FORECAST = 200      # bootstrap replicates refitted per forecast (the spread of the forecast)
MIN_SCORES = 12       # calibration keeps at least this many backtests per bucket (shortest prefixes dropped first)
BUCKETS = (("2x", 2.0 ** 1.5), ("4x", 2.0 ** 2.5))  # horizon buckets: upper ratio of each
# Conformal quantile of the standardised score used when a study has too few backtests in a
# bucket, at level 0.9: measured by benchmarks/bench_forecast.py (simulated studies of four
# curves whose true shapes are none of the members; docs/forecasting.md).
REFERENCE_Q = {"2x": 2.0, "4x": 2.5}


@dataclass
class Curve:
    """The N > 0 points of one curve, their noise and bootstrap replicates."""

    model: str
    task: str
    metric: str
    n: np.ndarray          # (K,) N > 0, increasing
    y: np.ndarray          # (K,)
    var: np.ndarray        # (K,) variance of each point (bootstrap, floored at binomial)
    reps: np.ndarray | None  # (B, K) bootstrap replicates
    m_eff: float           # effective number of Bernoulli trials behind one point
    noise_known: bool = True

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.task, self.metric)

    @property
    def eps(self) -> float:
        return 0.5 / self.m_eff


def curve_from_data(cd: CurveData) -> Curve:
    """A Curve from ``bootstrap.CurveData`` (N = 0 dropped: log N is undefined there)."""
    keep = cd.n > 0
    n, y = cd.n[keep].astype(float), cd.y[keep].astype(float)
    reps = cd.reps[:, keep] if cd.reps is not None else None
    bvar = np.var(reps, axis=0) if reps is not None and len(reps) > 1 else None
    m = float(cd.n_items) if cd.n_items else None
    if bvar is not None:
        inner = (y > 0.05) & (y < 0.95) & (bvar > 0)
        if inner.any():  # trials one point is worth: items x seeds, less any seed noise
            m = float(np.median(y[inner] * (1 - y[inner]) / bvar[inner]))
        elif m is None:
            m = 100.0
    known = m is not None
    m = m if m is not None else 100.0
    p = np.clip(y, 0.5 / m, 1 - 0.5 / m)
    floor = p * (1 - p) / m
    var = floor if bvar is None else np.maximum(bvar, floor)
    if not known:
        var = np.full_like(y, 0.05 ** 2)
    return Curve(cd.model, cd.task, cd.metric, n, y, var, reps, m, known)


def bucket_of(ratio: float) -> str | None:
    for name, hi in BUCKETS:
        if ratio <= hi * (1 + 1e-9):
            return name
    return None


def _zvar_point(y: np.ndarray, var: np.ndarray, eps: float) -> np.ndarray:
    """Variance of logit(y) by the delta method."""
    p = clip_rate(y, eps)
    return var / (p * (1 - p)) ** 2


def predict_members(c: Curve, k: int, n_new: np.ndarray, names: Sequence[str] | None = None,
                    n_rep: int = B_FORECAST) -> dict[str, dict[str, np.ndarray]]:
    """Fit every member on the first ``k`` points of ``c``; predict at ``n_new``.

    Returns ``{member: {"mid": (m,), "zvar": (m,), "fitted": (k,)}}``: the point forecast, the
    variance of its logit over bootstrap refits, and the point fit on the prefix."""
    x = np.log(c.n[:k])
    xn = np.log(np.asarray(n_new, float))
    Y = c.y[None, :k]
    if c.reps is not None:
        Y = np.vstack([Y, c.reps[:n_rep, :k]])
    out = {}
    for name in names or MEMBERS:
        mem = MEMBERS[name]
        if k < mem.min_points():
            continue
        with np.errstate(all="ignore"):
            fit, pred = mem.fit_predict(x, Y, c.var[:k], xn, c.eps)
        zv = np.var(logit(pred[1:], c.eps), axis=0) if len(pred) > 2 else np.zeros(xn.size)
        out[name] = {"mid": pred[0], "zvar": zv, "fitted": fit[0]}
    return out


def same_grid_groups(curves: Sequence[Curve]) -> list[list[int]]:
    """Indices of ``curves`` grouped by their N grid (first appearance order)."""
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(curves):
        groups.setdefault(tuple(c.n.tolist()), []).append(i)
    return list(groups.values())


def predict_members_many(curves: Sequence[Curve], k: int, n_new: np.ndarray, names: Sequence[str] | None = None,
                         n_rep: int = B_FORECAST) -> list[dict[str, dict[str, np.ndarray]]]:
    """``predict_members`` of each of ``curves``, which share their first ``k`` N, in one
    batched fit per member (the rows of all curves stacked): equal to one call per curve."""
    if not curves:
        return []
    x = np.log(curves[0].n[:k])
    xn = np.log(np.asarray(n_new, float))
    blocks = [c.y[None, :k] if c.reps is None else np.vstack([c.y[None, :k], c.reps[:n_rep, :k]])
              for c in curves]
    sizes = np.array([len(b) for b in blocks])
    ends = np.cumsum(sizes)
    heads = ends - sizes
    Y = np.vstack(blocks)
    owner = np.repeat(np.arange(len(curves)), sizes)
    V = np.stack([c.var[:k] for c in curves])
    eps = np.array([c.eps for c in curves], float)
    out: list[dict[str, dict[str, np.ndarray]]] = [{} for _ in curves]
    for name in names or MEMBERS:
        mem = MEMBERS[name]
        if k < mem.min_points() or mem.many is None:
            continue
        with np.errstate(all="ignore"):
            fit, pred = mem.many(x, Y, V, xn, eps, owner, heads)
            for i, c in enumerate(curves):
                p = pred[heads[i]:ends[i]]
                zv = np.var(logit(p[1:], c.eps), axis=0) if len(p) > 2 else np.zeros(xn.size)
                out[i][name] = {"mid": p[0], "zvar": zv, "fitted": fit[heads[i]]}
    return out


# --- backtests --------------------------------------------------------------------------

@dataclass
class Record:
    """One backtest: a prefix of a curve predicting one larger N."""

    curve: tuple[str, str, str]
    k: int                 # points fitted
    n_fit_max: float
    n: float
    ratio: float
    bucket: str
    measured: float
    zvar_obs: float        # noise of the measured value, logit space
    preds: dict[str, float]
    zvars: dict[str, float]
    eps: float


def backtest(c: Curve) -> list[Record]:
    """Rolling-origin backtests of one curve (see the module docstring, item 2)."""
    out: list[Record] = []
    K = c.n.size
    zobs = _zvar_point(c.y, c.var, c.eps)
    for k in range(MIN_ORIGIN, K):
        idx = [j for j in (k, k + 1) if j < K]
        out += _records(c, k, idx, predict_members(c, k, c.n[idx]), zobs)
    return out


def backtest_many(curves: Sequence[Curve]) -> list[Record]:
    """``backtest`` of every curve, in order (the same records as one call per curve): curves
    of one N grid are fitted together, one batched fit per member and prefix."""
    per: list[list[Record]] = [[] for _ in curves]
    for group in same_grid_groups(curves):
        cs = [curves[i] for i in group]
        c0 = cs[0]
        K = c0.n.size
        zobs = [_zvar_point(c.y, c.var, c.eps) for c in cs]
        for k in range(MIN_ORIGIN, K):
            idx = [j for j in (k, k + 1) if j < K]
            pms = predict_members_many(cs, k, c0.n[idx])
            for i, c, pm, zo in zip(group, cs, pms, zobs):
                per[i] += _records(c, k, idx, pm, zo)
    return [r for rs in per for r in rs]


def _records(c: Curve, k: int, idx: list[int], pm: dict[str, dict[str, np.ndarray]], zobs: np.ndarray
             ) -> list[Record]:
    out = []
    for t, j in enumerate(idx):
        ratio = float(c.n[j] / c.n[k - 1])
        b = bucket_of(ratio)
        if b is None:
            continue
        out.append(Record(c.key, k, float(c.n[k - 1]), float(c.n[j]), ratio, b, float(c.y[j]),
                          float(zobs[j]), {m: float(v["mid"][t]) for m, v in pm.items()},
                          {m: float(v["zvar"][t]) for m, v in pm.items()}, c.eps))
    return out


def combine(preds: dict[str, float], zvars: dict[str, float], weights: dict[str, float], eps: float
            ) -> tuple[float, float]:
    """(forecast, its logit variance: bootstrap spread + members' disagreement) of weighted members."""
    ms = [m for m in preds if weights.get(m, 0) > 0 and math.isfinite(preds[m])]
    if not ms:
        return math.nan, math.nan
    w = np.array([weights[m] for m in ms])
    w = w / w.sum()
    p = np.array([preds[m] for m in ms])
    mid = float(w @ p)
    z = logit(p, eps)
    zm = float(logit(np.array([mid]), eps)[0])
    spread = float(w @ (z - zm) ** 2)
    return mid, float(w @ np.array([zvars[m] for m in ms])) + spread


def conformal_q(scores: Sequence[float], level: float) -> float:
    """Split-conformal quantile: the ceil((n + 1) level)-th smallest score; inf if n is too small."""
    s = np.sort(np.asarray([x for x in scores if math.isfinite(x)], float))
    r = math.ceil((s.size + 1) * level)
    return float(s[r - 1]) if 0 < r <= s.size else math.inf


@dataclass
class BucketCal:
    """What the pooled backtests of one horizon bucket say."""

    bucket: str
    n_records: int
    mse: dict[str, float]
    weights: dict[str, float]
    mae: dict[str, float]           # ensemble, last, loglinear (and every member)
    method: str                      # "ensemble" or a naive member
    q: float
    q_source: str                    # "study" or "reference"
    coverage: float | None = None    # share of backtests inside their interval (in-sample)


def method_weights(method: str, weights: dict[str, float]) -> dict[str, float]:
    return weights if method == "ensemble" else {method: 1.0}


def _scores(recs: Sequence[Record], method: str, weights: dict[str, float]) -> tuple[list[float], list[float]]:
    """(absolute errors, standardised logit scores) of ``method`` on ``recs``."""
    err, sc = [], []
    w = method_weights(method, weights)
    for r in recs:
        mid, zv = combine(r.preds, r.zvars, w, r.eps)
        if not math.isfinite(mid):
            continue
        err.append(abs(r.measured - mid))
        dz = float(logit(np.array([r.measured]), r.eps)[0] - logit(np.array([mid]), r.eps)[0])
        sc.append(abs(dz) / math.sqrt(max(zv + r.zvar_obs, 1e-12)))
    return err, sc


def reference_q(bucket: str, level: float) -> float:
    """``REFERENCE_Q`` (measured at level 0.9) at another level, scaled by the normal quantiles."""
    return REFERENCE_Q[bucket] * float(norm.ppf(0.5 + level / 2) / norm.ppf(0.95))


def calibrate(records: Sequence[Record], level: float = 0.9) -> dict[str, BucketCal]:
    """Weights, method choice and conformal quantile per horizon bucket (module docstring, 3)."""
    out = {}
    for bname, _ in BUCKETS:
        recs = [r for r in records if r.bucket == bname]
        while recs:  # the backtests most like the forecast: drop the shortest prefixes while enough remain
            kmin = min(r.k for r in recs)
            rest = [r for r in recs if r.k > kmin]
            if len(rest) < MIN_SCORES:
                break
            recs = rest
        mse = {}
        for m in MEMBERS:
            e = [(r.measured - r.preds[m]) ** 2 for r in recs if m in r.preds]
            mse[m] = float(np.mean(e)) if e else math.nan
        floor = 1e-4  # one point of accuracy squared: no member gets an infinite weight
        weights = {m: 1.0 / max(v, floor) for m, v in mse.items() if math.isfinite(v)}
        if not weights:
            weights = {m: 1.0 for m in MEMBERS}
        mae = {}
        for m in ["ensemble", *MEMBERS]:
            err, _ = _scores(recs, m, weights)
            mae[m] = float(np.mean(err)) if err else math.nan
        best_naive = min(NAIVE, key=lambda m: mae[m] if math.isfinite(mae[m]) else math.inf)
        ok = math.isfinite(mae["ensemble"]) and (not math.isfinite(mae[best_naive])
                                                 or mae["ensemble"] < mae[best_naive])
        method = "ensemble" if ok or not recs else best_naive
        _, sc = _scores(recs, method, weights)
        q = conformal_q(sc, level)
        src = "study"
        if not math.isfinite(q):
            q, src = reference_q(bname, level), "reference"
        cov = float(np.mean(np.asarray(sc) <= q)) if sc else None
        out[bname] = BucketCal(bname, len(recs), mse, weights, mae, method, q, src, cov)
    return out


def calibration_dict(cal: dict[str, BucketCal]) -> dict:
    return {b: {"backtests": v.n_records, "method": v.method, "weights": v.weights, "mse": v.mse,
                "mae": v.mae, "q": v.q, "q_source": v.q_source, "in_sample_coverage": v.coverage}
            for b, v in cal.items()}


__all__ = ["BUCKETS", "BucketCal", "Curve", "MIN_ORIGIN", "REFERENCE_Q", "Record", "backtest", "backtest_many",
           "bucket_of", "predict_members_many", "same_grid_groups",
           "calibrate", "calibration_dict", "combine", "conformal_q", "curve_from_data", "method_weights",
           "predict_members", "reference_q"]
