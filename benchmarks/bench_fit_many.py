"""One curve at a time against the batched fit of many curves (issue 31: a 500-curve fit CSV).

    python benchmarks/bench_fit_many.py [N_GRID SEEDS CURVES TASKS] [--n-boot B]

Generates the table of ``make_fit_csv.py`` (default ``10 10 50 2``: 10,000 rows, 100 curves;
``10 10 250 2`` is the 50,000-row, 500-curve table of docs/notes/reliability.md) and computes
the three results of ``sftscale fit`` twice from the same curve data:

- **one curve at a time** (the path before batching): ``fit_curve`` per curve and form, every
  model's joint fit refitted and each pair's difference computed alone (``joint._difference``),
  ``backtest`` and ``forecast_curve`` per curve;
- **batched** (what ``sftscale fit`` runs, ``progress.run_groups``): ``fit_curve_data`` (the
  curves of one N grid in one ``lm_fit`` per stage and form), ``joint_fits`` reusing those
  fits, ``forecast_curve_data`` (one ``lm_fit`` per member and prefix for all curves).

Prints the CPU and wall seconds of each stage on both paths, their ratio, and checks that the
results are equal (fits: parameters, replicates and warnings; joint: every difference; the
forecasts: the whole ``forecasts`` object). BLAS is held to one thread, as the fit does.
Both paths use the members' closed-form Jacobians (the finite differences they replaced are
gone), so "one curve at a time" is the old loop structure with today's maths.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from make_fit_csv import main as make_csv  # noqa: E402

from sftscale.fit.backtest import backtest, calibrate, calibration_dict, curve_from_data  # noqa: E402
from sftscale.fit.data import load_long  # noqa: E402
from sftscale.fit.fitting import fit_curve, fit_curve_data, iter_curves, select_metric  # noqa: E402
from sftscale.fit.forecast import _calibrates, forecast_curve, forecast_curve_data  # noqa: E402
from sftscale.fit.forms import default_forms, one_blas_thread, paper_form  # noqa: E402
from sftscale.fit.joint import _difference, joint_fits  # noqa: E402
from sftscale.fit.selection import select_best  # noqa: E402


class Clock:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float, float]] = []

    def __call__(self, path: str, stage: str, fn, *a, **k):
        c, w = time.process_time(), time.perf_counter()
        out = fn(*a, **k)
        self.rows.append((path, stage, time.process_time() - c, time.perf_counter() - w))
        return out

    def total(self, path: str) -> tuple[float, float]:
        rs = [r for r in self.rows if r[0] == path]
        return sum(r[2] for r in rs), sum(r[3] for r in rs)


def one_at_a_time(cds, forms, level):
    fits = []
    for cd in cds:
        fs = [fit_curve(cd, f, level=level) for f in forms]
        select_best(fs)
        fits += fs
    return fits


def joint_one_at_a_time(cds, level):
    fo = paper_form()
    i = fo.public_names.index(fo.exponent)
    diffs = []
    for key in sorted({(c.task, c.metric) for c in cds}):
        models = sorted([c for c in cds if (c.task, c.metric) == key], key=lambda c: c.model)
        if len(models) < 2:
            continue
        fits = [fit_curve(c, fo, level=level) for c in models]
        diffs += [_difference(fits[a], fits[b], i, level) for a in range(len(fits)) for b in range(a + 1, len(fits))]
    return diffs


def forecasts_one_at_a_time(cds, targets, level):
    curves = [curve_from_data(cd) for cd in cds]
    records = [r for c in curves if _calibrates(c) for r in backtest(c)]
    cal = calibrate(records, level)
    fcs = [forecast_curve(c, cal, records, targets, level) for c in curves]
    return {"calibration": calibration_dict(cal), "curves": [f.to_dict() for f in fcs]}


def same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b, equal_nan=True)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("shape", nargs="*", default=["10", "10", "50", "2"], help="N_GRID SEEDS CURVES TASKS")
    ap.add_argument("--n-boot", type=int, default=1000)
    args = ap.parse_args()
    n_grid, seeds, curves, tasks = args.shape
    with tempfile.TemporaryDirectory() as tmp:
        csv = os.path.join(tmp, "table.csv")
        make_csv([n_grid, seeds, curves, csv, tasks])
        long = select_metric(load_long(csv), None)
    forms, level, flevel, targets, nb = list(default_forms()), 0.95, 0.9, [0.5], args.n_boot
    clock = Clock()
    with one_blas_thread():
        cds = clock("data", "curve data (shared)", lambda: list(iter_curves(long, None, nb, 0)))
        old = clock("one", "fits", one_at_a_time, cds, forms, level)
        old_j = clock("one", "joint", joint_one_at_a_time, cds, level)
        old_f = clock("one", "forecasts", forecasts_one_at_a_time, cds, targets, flevel)
        new = clock("batched", "fits", fit_curve_data, cds, forms, level=level)
        by_key = {(f.model, f.task, f.metric, f.form): f for f in new}
        new_j = clock("batched", "joint", lambda: [d for g in long.groupby("task")
                                                   for j in joint_fits(g[1], None, n_boot=nb, level=level,
                                                                       reuse=by_key)
                                                   for d in j["differences"]])
        new_f = clock("batched", "forecasts", forecast_curve_data, cds, targets, flevel)
    print(f"{len(long):,} rows, {len(cds)} curves, {nb} bootstrap replicates, forms {', '.join(forms)}")
    print(f"{'stage':<22}{'one curve at a time':>24}{'batched':>22}{'ratio (CPU)':>13}")
    for stage in ("fits", "joint", "forecasts"):
        o = next(r for r in clock.rows if r[:2] == ("one", stage))
        b = next(r for r in clock.rows if r[:2] == ("batched", stage))
        print(f"{stage:<22}{o[2]:>10.2f} s CPU {o[3]:>6.2f} s wall{b[2]:>8.2f} s CPU {b[3]:>6.2f} s wall"
              f"{o[2] / max(b[2], 1e-9):>11.1f}x")
    (oc, ow), (bc, bw) = clock.total("one"), clock.total("batched")
    print(f"{'total':<22}{oc:>10.2f} s CPU {ow:>6.2f} s wall{bc:>8.2f} s CPU {bw:>6.2f} s wall{oc / bc:>11.1f}x")
    print(f"(curve data, built once for both: {clock.rows[0][2]:.2f} s CPU)")
    fits_ok = all(a.form == b.form and np.array_equal(a.theta, b.theta, equal_nan=True)
                  and same(a.theta_reps, b.theta_reps) and a.warnings == b.warnings and a.best == b.best
                  for a, b in zip(old, new)) and len(old) == len(new)
    joint_ok = len(old_j) == len(new_j) and all(same(a, {k: b[k] for k in a}) for a, b in zip(old_j, new_j))
    fc_ok = same(old_f["curves"], new_f["curves"]) and same(
        old_f["calibration"], next(iter(new_f["calibration"].values())))
    print(f"equal: fits {fits_ok}, joint differences {joint_ok}, forecasts {fc_ok}")
    if not (fits_ok and joint_ok and fc_ok):
        sys.exit(1)


if __name__ == "__main__":
    main()
