"""Vectorised robust (Huber) Levenberg-Marquardt for many small fits at once.

``lm_fit(form, theta0, n, z, w)`` minimises the Huber loss of ``z - form.f(theta, n)`` for
every row of a batch (bootstrap replicates, leave-one-out folds, multi-start candidates, the
replicates of many curves that share their N: ``fitting.fit_curves``, the forecast
backtests): iteratively reweighted Gauss-Newton steps with per-row Levenberg damping, box
bounds by projection with an active set, a step kept only if it lowers that row's loss. Every
row is its own problem, so a row's fit does not depend on the others: batches beyond
``LM_BLOCK`` rows are solved block by block, and a step matrix that is not positive definite
is solved for its row alone.

``solve_spd(A, b)``: the damped normal equations of every row (P <= ``SMALL_P`` parameters) by a
Cholesky factorisation written out over the batch axis. numpy's batched ``linalg.solve`` calls
LAPACK once per 4x4 matrix (about 200 ns a row, measured); the same arithmetic as a few dozen
whole-batch array operations costs about a tenth of that. A row whose matrix is not positive
definite (or not finite) goes to LAPACK, alone.

``compiled()``: a context in which ``lm_fit`` runs forms that name a compiled kernel
(``Form.kernel``) through ``lm_compiled`` (numba; a row-step about 3x cheaper) instead of numpy.
``fit.progress.run_groups`` turns it on for a whole fit of ``COMPILED_FROM`` or more bootstrap
rows, so the path never depends on how the rows are batched or split between processes; the
demo's and most tests' small fits never import numba (its import and compilation cost a
second or three in a fresh process).

Not handled: more than one thread (a batch is many tiny problems: BLAS threads only add
overhead, ``forms.one_blas_thread``), constraints other than box bounds, losses other than
Huber, and problems with many parameters (above ``SMALL_P`` the step is LAPACK's).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

import numpy as np

if TYPE_CHECKING:
    from .forms import Form

_TINY = 1e-12
LM_BLOCK = 4096  # rows of one lm_fit block (measured: bigger blocks leave the cache and cost more)
SMALL_P = 6  # up to this many parameters the step is solve_spd's
COMPILED_FROM = 200_000  # bootstrap rows of a fit (curves x replicates) from which it is compiled
_STATE = {"compiled": False}


@contextlib.contextmanager
def compiled(on: bool = True) -> Iterator[None]:
    """Within it, ``lm_fit`` uses the compiled kernels (when numba imports; else numpy)."""
    was = _STATE["compiled"]
    _STATE["compiled"] = on
    try:
        yield
    finally:
        _STATE["compiled"] = was


def warm_compiled() -> None:
    """Compile the kernels in this process now (``run_groups`` does it before forking)."""
    try:
        from .lm_compiled import warm
    except ImportError:  # pragma: no cover - numba is a dependency
        return
    warm()


def _kernel(form: Form) -> int | None:
    """The compiled kernel of ``form`` when it is on and agrees with the form's own ``f`` and
    ``jac`` (checked once per form: a subclass that changed the maths but kept the kernel's
    name is fitted by numpy)."""
    if not _STATE["compiled"] or form.kernel is None:
        return None
    if form not in _AGREES:
        try:
            from .lm_compiled import agrees
        except ImportError:  # pragma: no cover - numba is a dependency
            return None
        _AGREES[form] = agrees(form)
    if not _AGREES[form]:
        return None
    from .lm_compiled import KERNELS

    return KERNELS[form.kernel]


_AGREES: dict = {}


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    """Elementwise Huber loss: r^2/2 inside |r| <= delta, linear outside."""
    a = np.abs(r)
    if a.size and a.max() <= delta:  # all inside (the members' threshold is too large to act)
        return 0.5 * r * r
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def huber_weight(r: np.ndarray, delta: float) -> np.ndarray:
    """IRLS weight psi(r)/r of the Huber loss."""
    a = np.abs(r)
    if a.size and a.max() <= delta:
        return np.ones_like(a)
    return np.where(a <= delta, 1.0, delta / np.maximum(a, _TINY))


def huber_objective(form: Form, theta: np.ndarray, n: np.ndarray, z: np.ndarray,
                    w: np.ndarray, delta: float) -> np.ndarray:
    """Weighted Huber loss per row: theta (B, P), z (B, K), w (B, K) -> (B,)."""
    r = z - form.f(theta, n)
    return np.sum(w * huber(r, delta), axis=1)


def lm_fit(form: Form, theta0: np.ndarray, n: np.ndarray, z: np.ndarray,
           w: np.ndarray | None = None, delta: float | None = None,
           max_iter: int = 60, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Robust LM for a batch: theta0 (B, P) or (P,), z (B, K), w (B, K) weights (0 = drop).

    Returns (theta (B, P), loss (B,)). Rows whose data are not finite get NaN. Every row is its
    own problem: a big batch is solved in blocks of ``LM_BLOCK`` rows (arrays that stay in the
    CPU's cache), which changes no row's result.
    """
    B = np.atleast_2d(np.asarray(z)).shape[0]
    kind = _kernel(form)
    if kind is not None:
        return _lm_compiled(kind, form, theta0, n, z, w, delta, max_iter, tol)
    if B > LM_BLOCK:
        th0 = np.broadcast_to(np.asarray(theta0, float), (B, form.n_params))
        zz = np.atleast_2d(np.asarray(z, float))
        ww = None if w is None else np.broadcast_to(w, zz.shape)
        parts = [_lm_fit(form, th0[i:i + LM_BLOCK], n, zz[i:i + LM_BLOCK],
                         None if ww is None else ww[i:i + LM_BLOCK], delta, max_iter, tol)
                 for i in range(0, B, LM_BLOCK)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return _lm_fit(form, theta0, n, z, w, delta, max_iter, tol)


def _lm_fit(form: Form, theta0: np.ndarray, n: np.ndarray, z: np.ndarray, w: np.ndarray | None,
            delta: float | None, max_iter: int, tol: float) -> tuple[np.ndarray, np.ndarray]:
    delta = form.delta if delta is None else delta
    n = np.asarray(n, float)
    theta, z, w = _batch(form, theta0, z, w)
    B, K = z.shape
    bad = ~np.all(np.isfinite(z) | (w == 0), axis=1)
    z = np.where(np.isfinite(z), z, 0.0)
    lb, ub = form.bounds()
    theta = np.clip(theta, lb, ub)
    res = z - form.f(theta, n)  # residuals at theta, kept up to date (one curve evaluation a step)
    loss = np.sum(w * huber(res, delta), axis=1)
    lam = np.full(B, 1e-3)
    P = form.n_params
    active = np.ones(B, bool)
    everyone = np.arange(B)
    for _ in range(max_iter):
        idx = np.nonzero(active)[0]
        if idx.size == 0:
            break
        if idx.size == B:  # no gathers while every row is still active
            idx, th, zz, ww, r = everyone, theta, z, w, res
        else:
            th, zz, ww, r = theta[idx], z[idx], w[idx], res[idx]
        J = form.jac(th, n)
        wi = ww * huber_weight(r, delta)
        JW = J * wi[:, :, None]
        JWt = JW.transpose(0, 2, 1)
        H = JWt @ J
        g = (JWt @ r[:, :, None])[:, :, 0]  # descent direction (negative gradient)
        at_lb = (th <= lb + 1e-12) & (g < 0)
        at_ub = (th >= ub - 1e-12) & (g > 0)
        free = ~(at_lb | at_ub)
        damp = (~free) + lam[idx, None] * np.maximum(np.diagonal(H, axis1=1, axis2=2), 1e-12) + 1e-12
        if free.all():
            Hd, gf = H, g
        else:
            Hd, gf = np.where(free[:, :, None] & free[:, None, :], H, 0.0), np.where(free, g, 0.0)
        Hd.reshape(len(idx), P * P)[:, ::P + 1] += damp  # the damped diagonal, in place
        step = solve_spd(Hd, gf)
        new = np.clip(th + step, lb, ub)
        new_res = zz - form.f(new, n)
        new_loss = np.sum(ww * huber(new_res, delta), axis=1)
        old = loss[idx]
        ok = np.isfinite(new_loss) & (new_loss <= old)
        theta[idx[ok]] = new[ok]
        res[idx[ok]] = new_res[ok]
        loss[idx[ok]] = new_loss[ok]
        lam[idx] = np.where(ok, np.maximum(lam[idx] / 3.0, 1e-9), lam[idx] * 4.0)
        small = ok & ((old - new_loss) <= tol * (1.0 + old))
        active[idx[small | (lam[idx] > 1e10)]] = False
    theta[bad] = np.nan
    loss[bad] = np.nan
    return theta, loss


def _batch(form: Form, theta0: np.ndarray, z: np.ndarray, w: np.ndarray | None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both LM paths' inputs as new C-ordered float arrays: theta (B, P), z (B, K), w (B, K)."""
    z = np.ascontiguousarray(np.atleast_2d(np.asarray(z, float)))
    B, K = z.shape
    theta = np.array(np.broadcast_to(np.asarray(theta0, float), (B, form.n_params)), float, order="C")
    w = np.ones((B, K)) if w is None else np.array(np.broadcast_to(w, (B, K)), float, order="C")
    return theta, z, w


def _lm_compiled(kind: int, form: Form, theta0: np.ndarray, n: np.ndarray, z: np.ndarray,
                 w: np.ndarray | None, delta: float | None, max_iter: int, tol: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    from .lm_compiled import lm_rows

    theta, z, w = _batch(form, theta0, z, w)
    lb, ub = (np.asarray(b, float) for b in form.bounds())
    loss = lm_rows(kind, theta, np.asarray(n, float), z, w, lb, ub,
                   float(form.delta if delta is None else delta), int(max_iter), float(tol))
    return theta, loss


def _solve_one(h: np.ndarray, v: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(h, v[:, None])[:, 0]
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(h, v, rcond=None)[0]


def solve_spd(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with A x = b for every row: A (B, P, P) symmetric positive definite, b (B, P).

    Cholesky over the batch axis (see the module docstring); rows that are not positive
    definite are solved by LAPACK, one by one (``np.linalg.lstsq`` where singular)."""
    B, P = b.shape
    if P > SMALL_P:
        return _solve_lapack(A, b)
    a = np.ascontiguousarray(A.transpose(1, 2, 0))  # a[i, j] is one contiguous (B,) vector
    L = [[np.empty(0)] * P for _ in range(P)]
    good = np.ones(B, bool)
    for j in range(P):
        s = a[j, j].copy()
        for k in range(j):
            s -= L[j][k] * L[j][k]
        ok = s > 0  # False for NaN too
        good &= ok
        d = np.sqrt(np.where(ok, s, 1.0))
        L[j][j] = d
        for i in range(j + 1, P):
            v = a[i, j].copy()
            for k in range(j):
                v -= L[i][k] * L[j][k]
            L[i][j] = v / d
    x = [b[:, i].copy() for i in range(P)]
    for i in range(P):  # L y = b
        for k in range(i):
            x[i] -= L[i][k] * x[k]
        x[i] /= L[i][i]
    for i in reversed(range(P)):  # L^T x = y
        for k in range(i + 1, P):
            x[i] -= L[k][i] * x[k]
        x[i] /= L[i][i]
    out = np.stack(x, 1)
    if not good.all():
        bad = np.nonzero(~good)[0]
        out[bad] = _solve_lapack(A[bad], b[bad])
    return out


def _solve_lapack(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(A, b[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:  # row by row, so that one singular row changes no other
        return np.stack([_solve_one(h, v) for h, v in zip(A, b)])


__all__ = ["COMPILED_FROM", "LM_BLOCK", "compiled", "huber", "huber_objective", "huber_weight", "lm_fit", "solve_spd"]
