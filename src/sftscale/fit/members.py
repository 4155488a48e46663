"""The forecasters of a rate at larger N: bounded curve families and the two naive baselines.

Every member maps the points of one curve (x = log N over N > 0, values y in [0, 1], their
variances) to predictions at new x, batched over rows (the point estimate and bootstrap
replicates are rows of one array). Its predictions never leave [0, 1].

==========  ======  ===========================================================  =========
member      params  curve in log N (x)                                           fit space
==========  ======  ===========================================================  =========
last        1       the value at the largest N, carried forward (naive)          -
loglinear   2       y = a + b x, clipped to [0, 1] (naive; plain least squares)  y
logit       2       y = sigmoid(a + b x)                                         logit y
logistic    4       y = f + (h - f) sigmoid(a + b x), floor f, ceiling h <= 1     logit u
gompertz    4       y = f + (h - f) exp(-exp(-(a + b x)))                         cloglog u
pow3        3       y = h - exp(a) N^b, b <= 0 (ceiling minus a power law)        log(h - y)
==========  ======  ===========================================================  =========

(u = (y - f) / (h - f).) Each bounded family is a straight line in its fit space once its
floor and ceiling are fixed, so it is fitted by weighted least squares in closed form for
every (f, h) of a small grid, and the grid value with the lowest weighted squared error in
metric space (weights 1 / variance of each point) wins: a profile fit with no iterations,
batched over rows and grid. Slopes are constrained to growth (b >= 0; pow3 b <= 0). The
grid: ceilings between the largest value and 1, floors between 0 and the smallest value.
The grid's best start is then refined by weighted Levenberg-Marquardt in metric space
(``lm.lm_fit``, closed-form Jacobians checked against finite differences), for many curves
of one N grid at once (``Member.many``).

``logistic`` is LCDB's MMF4 and Alabdulmohsin et al.'s M4 with alpha = 1; ``pow3`` is
LCDB's pow3 (the ``saturating`` form of ``forms``); the paper's power law P = a N^b is not
a member (it leaves [0, 1]) and stays a reported term of ``fitting``.

Not handled: decreasing curves (a slope constrained to growth gives a flat forecast), metrics
outside [0, 1], continuous optimisation of the floor and ceiling (the grid is the
resolution: 8 ceilings x 4 floors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .forms import Form
from .lm import lm_fit

CEILING_GRID = np.array([0.0, 0.05, 0.12, 0.25, 0.4, 0.6, 0.8, 1.0])  # share of (1 - max y)
FLOOR_GRID = np.array([0.0, 0.4, 0.75, 0.95])  # share of min y


def clip_rate(y: np.ndarray, eps: float) -> np.ndarray:
    return np.clip(y, eps, 1.0 - eps)


def logit(y: np.ndarray, eps: float) -> np.ndarray:
    p = clip_rate(np.asarray(y, float), eps)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def wls_line(x: np.ndarray, z: np.ndarray, w: np.ndarray, slope: str = "free"
             ) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares line z = a + b x along the last axis (leading axes batch).

    ``slope``: "free", "up" (b >= 0) or "down" (b <= 0); a constrained slope at its bound
    refits the intercept alone (the weighted mean)."""
    sw = w.sum(-1)
    sx, sz = (w * x).sum(-1), (w * z).sum(-1)
    sxx, sxz = (w * x * x).sum(-1), (w * x * z).sum(-1)
    det = sw * sxx - sx * sx
    with np.errstate(invalid="ignore", divide="ignore"):
        b = np.where(det > 1e-12 * np.maximum(sw * sxx, 1e-300), (sw * sxz - sx * sz) / det, 0.0)
    if slope == "up":
        b = np.maximum(b, 0.0)
    elif slope == "down":
        b = np.minimum(b, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = (sz - b * sx) / sw
    return a, b


@dataclass(frozen=True)
class Member:
    """One forecaster: ``fit_predict(x, Y, V, xnew, eps)`` -> (fitted (B, k), predictions (B, m)).
    ``many(x, Y, V, xnew, eps, owner, heads)``: the same for the rows of many curves of one N
    grid (``owner`` (B,): each row's curve; ``heads`` (C,): each curve's point row; V (C, k) and
    eps (C,) per curve), row for row what ``fit_predict`` gives for each curve alone.

    ``fits_points``: a curve fitted through the points (it needs max(k, 2) of them, and its lack
    of fit says whether the points have a shape it can describe); False for the value carried
    forward, which needs one point and describes nothing."""

    name: str
    n_params: int
    naive: bool
    curve: str
    fit_predict: Callable[..., tuple[np.ndarray, np.ndarray]]
    fits_points: bool = True
    many: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None  # (x, Y, V, xnew, eps, owner, heads)

    def min_points(self) -> int:
        return max(self.n_params, 2) if self.fits_points else 1


def _last(x, Y, V, xnew, eps):
    last = Y[:, -1:]
    return np.broadcast_to(last, Y.shape).copy(), np.broadcast_to(last, (Y.shape[0], xnew.size)).copy()


def _loglinear(x, Y, V, xnew, eps):
    a, b = wls_line(x, Y, np.ones_like(Y))
    fit = a[:, None] + b[:, None] * x
    pred = a[:, None] + b[:, None] * xnew
    return np.clip(fit, 0, 1), np.clip(pred, 0, 1)


def _grid(Y: np.ndarray, floors: bool, eps: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row grids of floors f (B, G) and ceilings h (B, G)."""
    ymax = np.clip(Y.max(1, keepdims=True), 0.0, 1.0)
    ymin = np.clip(Y.min(1, keepdims=True), 0.0, 1.0)
    h = np.minimum(ymax + eps + (1.0 - ymax) * CEILING_GRID[None, :], 1.0)
    if not floors:
        return np.zeros_like(h), h
    f = np.maximum(ymin - eps, 0.0) * FLOOR_GRID[None, :]
    G = (np.repeat(f, h.shape[1], 1), np.tile(h, (1, f.shape[1])))
    return G


def _profile(x, Y, V, eps, link: str):
    """Profile fit over a (floor, ceiling) grid of a family that is a line in its fit space.
    Returns the grid-best parameters per row: (f, h, a, b), each (B,)."""
    floors = link in ("logit", "cloglog")
    e = np.asarray(eps, float)  # a scalar, or one per row (B,)
    e1, e2 = (e[:, None], e[:, None, None]) if e.ndim else (e, e)
    f, h = _grid(Y, floors, e1)  # (B, G)
    Yg = Y[:, None, :]
    Vg = V[None, None, :] if V.ndim == 1 else V[:, None, :]
    if link == "pow":
        gap = np.maximum(h[:, :, None] - Yg, e2)
        a, b = wls_line(x, np.log(gap), gap ** 2 / Vg, "down")
        fit = h[:, :, None] - np.exp(a[:, :, None] + b[:, :, None] * x)
    else:
        span = np.maximum(h - f, 1e-9)[:, :, None]
        ue = e2 / span
        u = np.clip((Yg - f[:, :, None]) / span, ue, 1 - ue)
        if link == "logit":
            z, dz = np.log(u) - np.log1p(-u), 1.0 / (span * u * (1 - u))
        else:  # cloglog of a Gompertz curve: z = -log(-log u)
            z, dz = -np.log(-np.log(u)), 1.0 / (span * u * -np.log(u))
        a, b = wls_line(x, z, 1.0 / (Vg * dz ** 2), "up")
        t = a[:, :, None] + b[:, :, None] * x
        g = _sigmoid(t) if link == "logit" else np.exp(-np.exp(-np.clip(t, -50, 50)))
        fit = f[:, :, None] + span * g
    sse = np.sum((Yg - np.clip(fit, 0, 1)) ** 2 / Vg, axis=-1)
    best = np.argmin(np.where(np.isfinite(sse), sse, np.inf), axis=1)
    r = np.arange(Y.shape[0])
    return f[r, best], h[r, best], a[r, best], b[r, best]


@dataclass(frozen=True)
class _Curve(Form):
    """A member family in metric space, for ``lm.lm_fit`` (weighted least squares: a Huber
    threshold too large to act). theta: logit (a, b); pow3 (h, log A, b); logistic and
    gompertz (f, s, a, b) with the ceiling h = f + (1 - f) s, so 0 <= f <= h <= 1 are box bounds."""

    kind: str = "logistic"
    log_space: bool = False
    delta: float = 1e12

    def curve(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        if self.kind == "logit":
            return _sigmoid(theta[:, :1] + theta[:, 1:2] * x)
        if self.kind == "pow3":
            return theta[:, :1] - np.exp(np.clip(theta[:, 1:2] + theta[:, 2:3] * x, -60, 60))
        f = theta[:, :1]
        span = (1 - f) * theta[:, 1:2]
        t = theta[:, 2:3] + theta[:, 3:4] * x
        g = _sigmoid(t) if self.kind == "logistic" else np.exp(-np.exp(-np.clip(t, -50, 50)))
        return f + span * g

    def f(self, theta, n):
        return self.curve(theta, np.log(np.asarray(n, float))[None, :])

    def jac(self, theta, n):
        """Closed-form d curve / d theta, (B, K, P) (``jac_fd`` is the finite-difference check)."""
        x = np.log(np.asarray(n, float))[None, :]
        if self.kind == "logit":
            s = _sigmoid(theta[:, :1] + theta[:, 1:2] * x)
            ds = s * (1.0 - s)
            return np.stack([ds, ds * x], -1)
        if self.kind == "pow3":
            u = theta[:, 1:2] + theta[:, 2:3] * x
            e = np.where((u > -60) & (u < 60), np.exp(np.clip(u, -60, 60)), 0.0)
            return np.stack([np.ones_like(e), -e, -e * x], -1)
        f, s = theta[:, :1], theta[:, 1:2]
        t = theta[:, 2:3] + theta[:, 3:4] * x
        if self.kind == "logistic":
            g = _sigmoid(t)
            dg = g * (1.0 - g)
        else:
            tc = np.clip(t, -50, 50)
            g = np.exp(-np.exp(-tc))
            dg = np.where((t > -50) & (t < 50), g * np.exp(-tc), 0.0)
        ds = (1 - f) * s * dg
        return np.stack([1.0 - s * g, (1 - f) * g, ds, ds * x], -1)

    def jac_fd(self, theta, n):
        """Central finite differences of ``f`` (the reference the closed form is tested against)."""
        h = 1e-6 * np.maximum(np.abs(theta), 1.0)
        cols = []
        for j in range(theta.shape[1]):
            d = np.zeros_like(theta)
            d[:, j] = h[:, j]
            cols.append((self.f(theta + d, n) - self.f(theta - d, n)) / (2 * h[:, j:j + 1]))
        return np.stack(cols, -1)

    def bounds(self):
        return {"logit": (np.array([-400.0, 0.0]), np.array([400.0, 40.0])),
                "pow3": (np.array([0.0, -60.0, -10.0]), np.array([1.0, 30.0, 0.0]))
                }.get(self.kind, (np.array([0.0, 0.0, -400.0, 0.0]), np.array([1.0, 1.0, 400.0, 40.0])))


_LINK = {"logistic": "logit", "gompertz": "cloglog", "pow3": "pow"}


def _theta0(kind: str, f, h, a, b) -> np.ndarray:
    if kind == "pow3":
        return np.stack([h, a, b], 1)
    s = np.where(f < 1, (h - f) / np.maximum(1 - f, 1e-9), 1.0)
    return np.stack([f, np.clip(s, 0, 1), a, b], 1)


def _refined(kind: str, x, Y, V, xnew, eps):
    """One curve (the reference path): row 0 of Y (B, k) is its point estimate, the rest its
    bootstrap replicates; V (k,) the variances of its points, eps its clip. ``_refined_many``
    with one curve."""
    return _refined_many(kind, x, Y, np.asarray(V, float)[None], xnew, np.array([eps], float),
                         np.zeros(Y.shape[0], int), np.array([0]))


def _refined_many(kind: str, x, Y, V, xnew, eps, owner, heads):
    """Grid profile start, then weighted LM in metric space: each curve's point row from its
    grid start, its replicates warm-started at its point fit (fewer iterations: they feed only
    the spread). Many curves of one N grid at once: Y (B, k) rows, ``owner`` (B,) the curve of
    each row, ``heads`` (C,) each curve's point row, V (C, k) and eps (C,) per curve. Every row
    is its own problem (``lm.lm_fit``), so the result of a row does not depend on the others."""
    form = _Curve(name=kind, kind=kind, theta_names=("",) * (2 if kind == "logit" else 3 if kind == "pow3" else 4),
                  kernel=kind)
    n = np.exp(x)
    Yp = Y[heads]
    if kind == "logit":
        p = clip_rate(Yp, eps[:, None])
        a, b = wls_line(x, np.log(p) - np.log1p(-p), (p * (1 - p)) ** 2 / V, "up")
        th0 = np.stack([a, b], 1)
    else:
        th0 = _theta0(kind, *_profile(x, Yp, V, eps, _LINK[kind]))
    th_pt, _ = lm_fit(form, th0, n, Yp, 1.0 / V, max_iter=80)
    th = th_pt[owner]
    rest = np.ones(Y.shape[0], bool)
    rest[heads] = False
    if rest.any():
        th[rest], _ = lm_fit(form, th[rest], n, Y[rest], 1.0 / V[owner[rest]], max_iter=20)
    with np.errstate(all="ignore"):
        fit = np.clip(form.curve(th, x), 0.0, 1.0)
        pred = np.clip(form.curve(th, xnew), 0.0, 1.0)
    return fit, pred


def _naive_many(fn):
    return lambda x, Y, V, xnew, eps, owner, heads: fn(x, Y, None, xnew, None)


def _refined_member(kind: str, n_params: int, curve: str) -> Member:
    return Member(kind, n_params, False, curve, lambda *a: _refined(kind, *a),
                  many=lambda *a: _refined_many(kind, *a))


MEMBERS: dict[str, Member] = {m.name: m for m in (
    Member("last", 1, True, "the value at the largest N, carried forward", _last, fits_points=False,
           many=_naive_many(_last)),
    Member("loglinear", 2, True, "a + b log N, clipped to [0, 1]", _loglinear, many=_naive_many(_loglinear)),
    _refined_member("logit", 2, "sigmoid(a + b log N)"),
    _refined_member("logistic", 4, "f + (h - f) sigmoid(a + b log N)"),
    _refined_member("gompertz", 4, "f + (h - f) exp(-exp(-(a + b log N)))"),
    _refined_member("pow3", 3, "h - A N^-alpha"),
)}
NAIVE = tuple(m for m, v in MEMBERS.items() if v.naive)


__all__ = ["MEMBERS", "Member", "NAIVE", "clip_rate", "logit", "wls_line"]
