"""Simulated learning curves of known shape, for checking forecasts (tests and benchmarks).

``truth(shape, params, n)`` gives the true rate; ``simulate_curve`` measures it as a study
would (``items`` test items per seed, ``seeds`` seeds, a small seed-to-seed wobble in logit
space) and returns a ``bootstrap.CurveData`` with binomial+seed bootstrap replicates.

Shapes (x = log N): ``richards`` (a generalised logistic, asymmetric: not a member),
``expsat`` (h (1 - exp(-N / tau)) above a floor: saturates in N, not log N; not a member),
``kink`` (flat, then a jump, then flat, then a jump: no monotone smooth family fits it),
``logistic``, ``gompertz`` (members' own shapes, for sanity checks), ``power`` (a N^b,
the paper's law, for rates that stay below 1 on the grid).

Not handled: item-level correlation across N (replicates are unpaired binomial draws).
"""

from __future__ import annotations

import numpy as np

from .bootstrap import CurveData


def truth(shape: str, p: dict, n: np.ndarray) -> np.ndarray:
    x = np.log(np.asarray(n, float))
    f, h = p.get("f", 0.0), p.get("h", 1.0)
    if shape == "richards":
        nu = p["nu"]
        return f + (h - f) / (1 + nu * np.exp(-p["k"] * (x - p["m"]))) ** (1 / nu)
    if shape == "expsat":
        return f + (h - f) * (1 - np.exp(-np.asarray(n, float) / p["tau"]))
    if shape == "kink":
        steps = np.asarray(p["steps"])  # N at which the value jumps
        lv = np.asarray(p["levels"])     # len(steps) + 1 levels
        return lv[np.searchsorted(steps, np.asarray(n, float), side="right")]
    if shape == "logistic":
        return f + (h - f) / (1 + np.exp(-p["k"] * (x - p["m"])))
    if shape == "gompertz":
        return f + (h - f) * np.exp(-np.exp(-p["k"] * (x - p["m"])))
    if shape == "power":
        return np.minimum(p["a"] * np.asarray(n, float) ** p["b"], 1.0)
    raise ValueError(f"unknown shape {shape!r}")


def random_params(shape: str, rng: np.random.Generator) -> dict:
    """Parameters of a curve that rises somewhere on N = 8 ... 2,048, ceiling below 1."""
    h = float(rng.uniform(0.6, 0.98))
    f = float(rng.uniform(0.0, 0.25))
    if shape == "richards":
        return {"f": f, "h": h, "k": float(rng.uniform(0.6, 2.0)), "m": float(rng.uniform(np.log(16), np.log(1024))),
                "nu": float(rng.choice([0.25, 0.5, 2.5, 4.0]))}
    if shape == "expsat":
        return {"f": f, "h": h, "tau": float(np.exp(rng.uniform(np.log(20), np.log(1500))))}
    if shape in ("logistic", "gompertz"):
        return {"f": f, "h": h, "k": float(rng.uniform(0.6, 2.0)), "m": float(rng.uniform(np.log(16), np.log(1024)))}
    raise ValueError(f"no random parameters for {shape!r}")


def simulate_curve(shape: str, params: dict, n: np.ndarray, rng: np.random.Generator, items: int = 60,
                   seeds: int = 2, seed_sd: float = 0.1, n_boot: int = 400, name: str = "sim") -> CurveData:
    """Measure a true curve at ``n`` as a study would; binomial+seed bootstrap replicates."""
    n = np.asarray(n, float)
    p = np.clip(truth(shape, params, n), 1e-6, 1 - 1e-6)
    z = np.log(p) - np.log1p(-p)
    cell_p = 1 / (1 + np.exp(-(z[None, :] + rng.normal(0, seed_sd, (seeds, n.size)))))
    cells = rng.binomial(items, cell_p) / items  # (seeds, K)
    y = cells.mean(0)
    redraw = rng.binomial(items, np.broadcast_to(cells, (n_boot, seeds, n.size))) / items
    pick = rng.integers(0, seeds, (n_boot, seeds))  # seeds resampled
    reps = np.take_along_axis(redraw, pick[:, :, None], axis=1).mean(1)
    return CurveData("sim", name, "accuracy", n, y, reps, "binomial+seeds", items)


__all__ = ["random_params", "simulate_curve", "truth"]
