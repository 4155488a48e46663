"""Scaling-law forms (fitted by ``lm.lm_fit``, the batched robust Levenberg-Marquardt).

Each form maps the number of finetuning examples N to a metric that is a success rate
(higher is better, e.g. accuracy). A form is fitted in its own *fit space*:

==================  =================================  ===========================  ========
form                curve (metric space)               fit space (Huber residuals)  N = 0
==================  =================================  ===========================  ========
power               P = a * N^b                        log P                        excluded
saturating          err = E + A * N^(-alpha)           log err, err = 1 - P         excluded
saturating_offset   err = E + A * (N + N0)^(-alpha)    log err, err = 1 - P         included
loglinear           P = c + d * log N                  P (linear)                   excluded
==================  =================================  ===========================  ========

Internally the parameters are ``theta`` (e.g. ``log a`` instead of ``a``, ``log A``,
``log N0``) so that one box-bounded vector works for every form; ``Form.public`` turns a
``theta`` array into the documented parameters. A theta name that starts with ``log_`` is a
scale parameter fitted as its logarithm (its interval is judged in decades).

A ``Form`` declares what the rest of the code needs to know about it, so that nothing tests a
form by its name: ``fit_space`` (``log_metric``, ``log_error`` or ``metric``: the space of
the table above, which also says whether it models the error 1 - P and so assumes a rate),
``exponent`` (the public parameter that is its growth exponent: what joint fits across model
sizes compare), ``error_floor`` (the theta name of an irreducible error E, if it has one),
``paper`` (the paper's power law: fits.json adds its exponent in the paper's terms),
``default`` (fitted when no forms are asked for: ``default_forms()``) and ``includes_zero``.
``register_form`` checks the declarations and adds a form to ``FORMS``; ``sftscale fit``,
joint fits and the report then pick it up.

Also the one owner of the goodness-of-fit numbers (``r2_score``: coefficient of
determination of a fit; ``pearson_r2``: squared correlation of two series) and of the BLAS
thread limit (``one_blas_thread``, ``single_threaded``) used by every fit stage module.

Not handled: metrics where lower is better (pass 1 - metric), metrics outside [0, 1] for
the saturating forms, forms with more than one asymptote, or weighting points by their
standard errors (every N counts the same; intervals come from the bootstrap).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import numpy as np

_TINY = 1e-12
_CONTROLLER: list = []


def one_blas_thread() -> contextlib.AbstractContextManager:
    """Limit BLAS to one thread: the batched 2x2..4x4 solves and small products here get
    slower, not faster, with BLAS threads (measured 2x more CPU on 2 cores). A no-op when
    threadpoolctl (a scikit-learn dependency) is missing."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")


def single_threaded(fn):
    """Decorator: run ``fn`` inside ``one_blas_thread()``."""
    @functools.wraps(fn)
    def wrapper(*a, **k):
        with one_blas_thread():
            return fn(*a, **k)
    return wrapper


def r2_score(obs: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination ``1 - SS_res / SS_tot`` along the last axis (leading axes
    are batch axes); NaN where ``SS_tot`` is 0 (constant observations)."""
    obs, pred = np.asarray(obs, float), np.asarray(pred, float)
    ss_tot = ((obs - obs.mean(-1, keepdims=True)) ** 2).sum(-1)
    ss_res = ((obs - pred) ** 2).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)


def pearson_r2(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared Pearson correlation of ``x`` and ``y`` along the last axis (leading axes are
    batch axes); NaN where either is constant. Not ``r2_score``: no fitted line is implied."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    xc = x - x.mean(-1, keepdims=True)
    yc = y - y.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc * yc).sum(-1) ** 2 / ((xc ** 2).sum(-1) * (yc ** 2).sum(-1))


FIT_SPACES = ("log_metric", "log_error", "metric")


@dataclass(frozen=True)
class Form:
    """A scaling-law family. Subclasses fill in the maths (``f``, ``jac``, ``bounds``,
    ``starts``, ``public``, ``n_for``); all arrays are batched. The fields declare the rest:

    - ``name``, ``theta_names`` (``log_`` prefix: a scale parameter fitted as its log),
      ``public_names`` (the documented parameters, in the same order), ``space`` (in words);
    - ``fit_space``: ``log_metric`` (log P), ``log_error`` (log(1 - P): a form of the error,
      which assumes a success rate in [0, 1]) or ``metric`` (P itself); ``to_fit_space`` and
      ``to_metric`` follow from it;
    - ``exponent``: the public parameter that is the growth exponent (None: the form has none,
      and joint fits refuse it);
    - ``error_floor``: the theta name of the irreducible error (allowed at its lower bound 0;
      checked for an asymptote that is not reached), or None;
    - ``paper``: the paper's power law P = a N^b (fits.json adds ``paper_terms``: b is the
      paper's 1/b); ``default``: fitted when no forms are named; ``includes_zero``: defined at
      N = 0; ``delta``: the Huber threshold in fit-space units; ``kernel``: the name of the same
      ``f`` and ``jac`` compiled in ``lm_compiled`` (big fits use it), or None.
    """

    name: str = ""
    theta_names: tuple[str, ...] = ()
    public_names: tuple[str, ...] = ()
    space: str = ""
    fit_space: str = "log_metric"
    exponent: str | None = None
    error_floor: str | None = None
    paper: bool = False
    default: bool = True
    includes_zero: bool = False
    delta: float = 0.1  # default Huber threshold in fit-space units
    kernel: str | None = None  # lm_compiled's kernel of f and jac (None: numpy only)

    @property
    def n_params(self) -> int:
        return len(self.theta_names)

    @property
    def log_space(self) -> bool:
        """Whether the fit space takes a log (zeros are then clipped to a floor first)."""
        return self.fit_space != "metric"

    @property
    def of_error(self) -> bool:
        """Whether the form describes the error 1 - P (and so assumes a rate in [0, 1])."""
        return self.fit_space == "log_error"

    def is_log_param(self, i: int) -> bool:
        """Whether theta ``i`` is a scale parameter fitted as its logarithm."""
        return self.theta_names[i].startswith("log_")

    # --- maps between metric and fit space ------------------------------------------
    def logged(self, y: np.ndarray) -> np.ndarray:
        """The quantity whose log is the fit space: the metric, or the error 1 - metric."""
        return 1.0 - y if self.of_error else y

    def to_fit_space(self, y: np.ndarray, floor: float) -> np.ndarray:
        if self.fit_space == "metric":
            return np.asarray(y, float)
        return np.log(np.maximum(self.logged(y), floor))

    def to_metric(self, z: np.ndarray) -> np.ndarray:
        if self.fit_space == "metric":
            return z
        return 1.0 - np.exp(z) if self.of_error else np.exp(z)

    # --- curve ------------------------------------------------------------------------
    def f(self, theta: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Fit-space prediction, theta (B, P), n (K,) -> (B, K)."""
        raise NotImplementedError

    def jac(self, theta: np.ndarray, n: np.ndarray) -> np.ndarray:
        """d f / d theta, (B, K, P)."""
        raise NotImplementedError

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def starts(self, n: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Deterministic grid of starting points (S, P) from fit-space data z (K,)."""
        raise NotImplementedError

    def public(self, theta: np.ndarray) -> np.ndarray:
        """theta (..., P) -> documented parameters (..., P)."""
        raise NotImplementedError

    def n_for(self, theta: np.ndarray, target: float) -> np.ndarray:
        """Smallest N >= 0 where the metric reaches ``target``; inf when never, (B,)."""
        raise NotImplementedError

    def predict(self, theta: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Metric-space prediction (B, K); N = 0 gives the limit (0 or -inf) where undefined."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return self.to_metric(self.f(np.atleast_2d(theta), np.asarray(n, float)))


def _ols_line(x: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    X = np.stack([np.ones_like(x), x], 1)
    coef, *_ = np.linalg.lstsq(X, z, rcond=None)
    return float(coef[0]), float(coef[1])


@dataclass(frozen=True)
class _LineInLogN(Form):
    """Forms that are a straight line in log N in their fit space: z = c + d log N."""

    def f(self, theta, n):
        return theta[:, :1] + theta[:, 1:2] * np.log(n)[None, :]

    def jac(self, theta, n):
        ln = np.broadcast_to(np.log(n)[None, :], (theta.shape[0], n.size))
        return np.stack([np.ones_like(ln), ln], -1)

    def starts(self, n, z):
        c, d = _ols_line(np.log(n), z)
        return np.array([[c, d], [float(np.mean(z)), 0.0]])


@dataclass(frozen=True)
class PowerLaw(_LineInLogN):
    name: str = "power"
    theta_names: tuple[str, ...] = ("log_a", "b")
    public_names: tuple[str, ...] = ("a", "b")
    space: str = "log(metric) vs log(N)"
    fit_space: str = "log_metric"
    exponent: str | None = "b"
    paper: bool = True
    kernel: str | None = "line"

    def bounds(self):
        return np.array([-50.0, -10.0]), np.array([50.0, 10.0])

    def public(self, theta):
        out = np.array(theta, float, copy=True)
        out[..., 0] = np.exp(out[..., 0])
        return out

    def n_for(self, theta, target):
        la, b = theta[:, 0], theta[:, 1]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            n = np.exp((np.log(target) - la) / b)
        return np.where((b > 0) & (target > 0), n, np.inf)


@dataclass(frozen=True)
class Saturating(Form):
    name: str = "saturating"
    theta_names: tuple[str, ...] = ("E", "log_A", "alpha")
    public_names: tuple[str, ...] = ("E", "A", "alpha")
    space: str = "log(1 - metric) vs N"
    fit_space: str = "log_error"
    exponent: str | None = "alpha"
    error_floor: str | None = "E"
    kernel: str | None = "sat"

    def _x(self, theta, n):
        return np.asarray(n, float)[None, :]

    def f(self, theta, n):
        base = self._x(theta, n)
        s = theta[:, :1] + np.exp(theta[:, 1:2]) * base ** (-theta[:, 2:3])
        return np.log(np.maximum(s, _TINY))

    def jac(self, theta, n):
        base = self._x(theta, n)
        A = np.exp(theta[:, 1:2])
        x = base ** (-theta[:, 2:3])
        s = np.maximum(theta[:, :1] + A * x, _TINY)
        cols = [1.0 / s + 0 * x, A * x / s, -A * x * np.log(base) / s]
        if self.n_params == 4:
            n0 = np.exp(theta[:, 3:4])
            cols.append(-A * theta[:, 2:3] * x / base * n0 / s)
        return np.stack(cols, -1)

    def bounds(self):
        return np.array([0.0, -20.0, 0.0]), np.array([1.0, 10.0, 5.0])

    def _grid(self, n, z, n0s):
        err = np.exp(z)
        emin = float(np.min(err))
        rows = []
        for n0 in n0s:
            base = np.asarray(n, float) + (0.0 if n0 is None else n0)
            for alpha in (0.05, 0.15, 0.3, 0.6, 1.0, 2.0):
                for frac in (0.0, 0.5, 0.9):
                    E = frac * emin
                    la = float(np.mean(np.log(np.maximum(err - E, 1e-6)) + alpha * np.log(base)))
                    row = [E, la, alpha]
                    if n0 is not None:
                        row.append(np.log(n0))
                    rows.append(row)
        lb, ub = self.bounds()
        return np.clip(np.array(rows), lb, ub)

    def starts(self, n, z):
        return self._grid(n, z, [None])

    def public(self, theta):
        out = np.array(theta, float, copy=True)
        out[..., 1] = np.exp(out[..., 1])
        if out.shape[-1] == 4:
            out[..., 3] = np.exp(out[..., 3])
        return out

    def n_for(self, theta, target):
        E, A, alpha = theta[:, 0], np.exp(theta[:, 1]), theta[:, 2]
        te = 1.0 - target
        ok = (te > E) & (alpha > 0)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            n = (A / (te - E)) ** (1.0 / alpha)
        if theta.shape[1] == 4:
            n = n - np.exp(theta[:, 3])
        return np.where(ok, np.maximum(n, 0.0), np.inf)


@dataclass(frozen=True)
class SaturatingOffset(Saturating):
    name: str = "saturating_offset"
    theta_names: tuple[str, ...] = ("E", "log_A", "alpha", "log_N0")
    public_names: tuple[str, ...] = ("E", "A", "alpha", "N0")
    space: str = "log(1 - metric) vs N + N0"
    includes_zero: bool = True
    kernel: str | None = "sat0"

    def _x(self, theta, n):
        return np.asarray(n, float)[None, :] + np.exp(theta[:, 3:4])

    def bounds(self):
        return np.array([0.0, -20.0, 0.0, np.log(1e-2)]), np.array([1.0, 30.0, 5.0, np.log(1e6)])

    def starts(self, n, z):
        return self._grid(n, z, [0.3, 3.0, 30.0, 300.0])


@dataclass(frozen=True)
class LogLinear(_LineInLogN):
    name: str = "loglinear"
    theta_names: tuple[str, ...] = ("c", "d")
    public_names: tuple[str, ...] = ("c", "d")
    space: str = "metric (linear) vs log(N)"
    fit_space: str = "metric"
    exponent: str | None = "d"
    delta: float = 0.02
    kernel: str | None = "line"

    def bounds(self):
        return np.array([-1e3, -1e3]), np.array([1e3, 1e3])

    def public(self, theta):
        return np.array(theta, float, copy=True)

    def n_for(self, theta, target):
        c, d = theta[:, 0], theta[:, 1]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            n = np.exp((target - c) / d)
        return np.where(d > 0, n, np.inf)


FORMS: dict[str, Form] = {}
ALIASES = {"sat": "saturating", "sat0": "saturating_offset", "offset": "saturating_offset",
           "log": "loglinear", "powerlaw": "power"}


def register_form(form: Form, replace: bool = False) -> Form:
    """Check a form's declarations and add it to ``FORMS`` (the one registry: ``sftscale fit``,
    joint fits and the report read it when they run). ValueError on a declaration that does
    not hold together, or a name already taken (unless ``replace``)."""
    problems = []
    if not form.name or form.name in ALIASES:
        problems.append(f"name {form.name!r} is empty or an alias")
    if form.name in FORMS and not replace:
        problems.append(f"a form named {form.name!r} is already registered")
    if len(form.theta_names) != len(form.public_names) or not form.theta_names:
        problems.append("theta_names and public_names must name the same, non-zero number of parameters")
    if form.fit_space not in FIT_SPACES:
        problems.append(f"fit_space {form.fit_space!r} is not one of {', '.join(FIT_SPACES)}")
    if form.exponent is not None and form.exponent not in form.public_names:
        problems.append(f"exponent {form.exponent!r} is not one of its public_names")
    if form.paper and form.exponent is None:
        problems.append("the paper's form needs an exponent")
    if form.error_floor is not None and (form.error_floor not in form.theta_names or not form.of_error):
        problems.append(f"error_floor {form.error_floor!r} must be a theta name of a log_error form")
    if problems:
        raise ValueError(f"form {form.name!r}: " + "; ".join(problems))
    FORMS[form.name] = form
    return form


for _f in (PowerLaw(), Saturating(), SaturatingOffset(), LogLinear()):
    register_form(_f)


def default_forms() -> tuple[str, ...]:
    """The forms fitted when none are named: every registered form with ``default``, in
    registration order (read when called, so a form registered later is included)."""
    return tuple(name for name, f in FORMS.items() if f.default)


def paper_form() -> Form:
    """The paper's power law (the registered form with ``paper``): joint fits' default."""
    return next(f for f in FORMS.values() if f.paper)


def get_form(name: str) -> Form:
    key = ALIASES.get(name, name)
    if key not in FORMS:
        raise KeyError(f"unknown form {name!r}; known: {', '.join(FORMS)}")
    return FORMS[key]


def jacobian_condition(form: Form, theta: np.ndarray, n: np.ndarray) -> float:
    """Condition number of the column-normalised Jacobian at one theta (P,)."""
    J = form.jac(np.atleast_2d(theta), np.asarray(n, float))[0]
    norms = np.linalg.norm(J, axis=0)
    if np.any(norms < 1e-300) or not np.all(np.isfinite(J)):
        return float("inf")
    s = np.linalg.svd(J / norms, compute_uv=False)
    return float(s[0] / s[-1]) if s[-1] > 0 else float("inf")


__all__ = ["FIT_SPACES", "FORMS", "Form", "LogLinear", "one_blas_thread", "PowerLaw", "Saturating",
           "SaturatingOffset", "default_forms", "get_form", "jacobian_condition", "paper_form", "pearson_r2",
           "r2_score", "register_form", "single_threaded"]
