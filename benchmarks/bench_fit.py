"""Benchmark: bootstrap scaling-law fits, sftscale's vectorised LM versus a scipy loop.

1. Speed: 20 simulated curves (11 N, 500 paired items each), 1,000 bootstrap replicates
   each, fitted by ``sftscale.fit.fitting.fit_table`` (one form, then all four forms), against the
   peer: ``scipy.optimize.least_squares(loss="huber")`` called once per replicate, warm-
   started at the point estimate (timed on a few curves and scaled to 20). Prints both
   times, the ratio and how closely the two agree on the replicate parameters.
2. Coverage (``--coverage``): 200 simulated studies x 1,000 replicates per form (the test
   suite uses 200 x 200): share of 90% intervals covering the true parameters.

Run: ``nice -n 10 .venv/bin/python benchmarks/bench_fit.py [--coverage]``
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
from scipy.optimize import least_squares
from scipy.stats import norm

from sftscale.fit.bootstrap import CurveData, paired_bootstrap_means
from sftscale.fit.fitting import fit_curve, fit_table
from sftscale.fit.forms import FORMS, one_blas_thread

NS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
TRUTH = {"power": [np.log(0.05), 0.35], "saturating": [0.15, np.log(0.8), 0.5],
         "loglinear": [0.05, 0.07], "saturating_offset": [0.15, np.log(3.0), 0.5, np.log(20.0)]}


def simulate(rng, form, ns, n_items, rho=0.6):
    p = FORMS[form].predict(np.array(TRUTH[form]), np.array(ns, float))[0]
    zi = rng.standard_normal(n_items)
    eps = rng.standard_normal((len(ns), n_items))
    return ((rho * zi[None] + np.sqrt(1 - rho ** 2) * eps) < norm.ppf(p)[:, None]).astype(float)


def tables(n_curves, n_items, rng):
    items, long = [], []
    for c in range(n_curves):
        S = simulate(rng, "saturating", NS, n_items)
        for k, n in enumerate(NS):
            long.append({"model": f"m{c}", "task": "t", "metric": "accuracy", "n": n, "value": S[k].mean()})
            items += [{"model": f"m{c}", "task": "t", "n": n, "seed": "0", "item_id": str(i),
                       "correct": S[k, i]} for i in range(n_items)]
    return pd.DataFrame(long), pd.DataFrame(items)


def peer_fit(form, fit, reps):
    """The obvious alternative: one scipy least_squares (Huber) per bootstrap replicate."""
    fo = FORMS[form]
    n = fit.n
    lb, ub = fo.bounds()
    floor = 0.5 / 500
    out = []
    for y in reps:
        z = fo.to_fit_space(y, floor)
        res = least_squares(lambda th, z=z: fo.f(th[None], n)[0] - z, np.clip(fit.theta, lb, ub),
                            jac=lambda th: fo.jac(th[None], n)[0], bounds=(lb, ub), loss="huber",
                            f_scale=fo.delta, method="trf")
        out.append(res.x)
    return np.array(out)


def speed(n_boot: int, peer_curves: int) -> None:
    rng = np.random.default_rng(0)
    long, items = tables(20, 500, rng)
    t0, c0 = time.perf_counter(), time.process_time()
    res = fit_table(long, items, forms=["saturating"], n_boot=n_boot, seed=0)
    t_one, c_one = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    fit_table(long, items, n_boot=n_boot, seed=0)
    t_all, c_all = time.perf_counter() - t0, time.process_time() - c0
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"sftscale: 20 curves x {n_boot} replicates, saturating form: {t_one:.2f} s wall, {c_one:.2f} s CPU "
          f"(all four forms: {t_all:.2f} s wall, {c_all:.2f} s CPU)")
    # peer on the same replicates (regenerate them exactly as fit_table does)
    from sftscale.fit.bootstrap import curve_data, curve_rng
    t0, c0 = time.perf_counter(), time.process_time()
    diffs = []
    for r in res[:peer_curves]:
        rows = long[long["model"] == r.model]
        cd = curve_data(rows, items[items["model"] == r.model], n_boot, curve_rng(0, r.model, "t", "accuracy"))
        with one_blas_thread():  # same BLAS setting as sftscale
            th_peer = peer_fit("saturating", r, cd.reps)
        diffs.append(np.median(np.abs(FORMS["saturating"].public(th_peer) -
                                      FORMS["saturating"].public(r.theta_reps)), axis=0))
    t_peer = (time.perf_counter() - t0) * 20 / peer_curves
    c_peer = (time.process_time() - c0) * 20 / peer_curves
    print(f"peer (scipy least_squares per replicate), scaled from {peer_curves} to 20 curves: "
          f"{t_peer:.2f} s wall, {c_peer:.2f} s CPU")
    print(f"ratio peer / sftscale (saturating): {t_peer / t_one:.1f}x wall, {c_peer / c_one:.1f}x CPU")
    print("median |sftscale - peer| per parameter (E, A, alpha):", np.round(np.mean(diffs, axis=0), 6))


def coverage(n_studies: int, n_boot: int) -> None:
    for form in ("power", "saturating", "loglinear", "saturating_offset"):
        rng = np.random.default_rng(123)
        fo = FORMS[form]
        ns = [0, 8, 16, 32, 64, 128, 256, 512, 1024] if form == "saturating_offset" else NS
        true = fo.public(np.array(TRUTH[form]))
        hits, est = [], []
        t0 = time.perf_counter()
        for _ in range(n_studies):
            S = simulate(rng, form, ns, 400)
            lv, pt, reps = paired_bootstrap_means(np.array(ns, float), np.zeros(len(ns)), S, n_boot, rng)
            r = fit_curve(CurveData("m", "t", "accuracy", lv, pt, reps, "paired-items", 400), form, level=0.9)
            hits.append([r.param_ci[k][0] <= v <= r.param_ci[k][1] for k, v in zip(fo.public_names, true)])
            est.append([r.params[k] for k in fo.public_names])
        est = np.array(est)
        print(f"{form}: {n_studies} studies x {n_boot} replicates in {time.perf_counter() - t0:.1f} s; "
              f"90% coverage {_d(fo, np.mean(hits, 0))}; bias/sd {_d(fo, (est.mean(0) - true) / est.std(0))}; "
              f"median/true {_d(fo, np.median(est, 0) / true)}")


def _d(fo, arr) -> dict:
    return {k: round(float(v), 3) for k, v in zip(fo.public_names, arr)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--peer-curves", type=int, default=2)
    ap.add_argument("--coverage", action="store_true")
    a = ap.parse_args()
    speed(a.n_boot, a.peer_curves)
    if a.coverage:
        coverage(200, a.n_boot)
