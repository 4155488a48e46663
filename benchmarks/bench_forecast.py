"""Benchmark: does the forecast hold on curves nobody here fitted it to?

Held-out protocol (Alabdulmohsin et al. 2022; Choshen et al. 2024): fit on small N, score on the
largest one and two N, never used for fitting, weighting or calibration. Beside sftscale's
forecast, the two naive forecasts on the same points: the last value carried forward, and a
least-squares line in log N clipped to [0, 1]. Prints, per ratio of the predicted N to the
largest N fitted (2x, 4x): held-out points, coverage of the 90% measurement interval, mean
absolute error of each forecaster, and the ratio line / sftscale.

1. ``--sim``: simulated studies of four curves (60 items, two seeds) whose true shapes are
   none of the members: a Richards curve in log N (asymmetric) and a saturation in N
   (``fit.simulate``), N = 8 ... 512 and 8 ... 1,024.
2. ``--published``: ``benchmarks/published_curves/curves.csv`` (papers' and authors' tables;
   README there). Precision and recall curves of a run whose F1 is in the table are left out
   (not independent). Calibration is leave-one-curve-out: the held-out curve's forecast is
   calibrated on every other curve's backtests plus its own prefix's.
3. ``--speed``: 20 curves x 1,000 replicates, fits (all forms) and forecasts with backtests.

Run: ``nice -n 10 .venv/bin/python benchmarks/bench_forecast.py [--sim] [--published] [--speed]``
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sftscale.fit.backtest import backtest, calibrate, curve_from_data
from sftscale.fit.bootstrap import CurveData
from sftscale.fit.forecast import forecast_curve, forecast_curves
from sftscale.fit.simulate import random_params, simulate_curve

HERE = Path(__file__).resolve().parent


def _truncate(cd: CurveData, k: int) -> CurveData:
    return dataclasses.replace(cd, n=cd.n[:k], y=cd.y[:k], reps=None if cd.reps is None else cd.reps[:, :k])


def _naive(c, n_new):
    x = np.log(c.n)
    b, a = np.polyfit(x, c.y, 1)
    return float(c.y[-1]), float(np.clip(a + b * np.log(n_new), 0, 1))


class Tally:
    def __init__(self):
        self.rows = []

    def add(self, ratio, pred, measured, c, truth=None):
        last, line = _naive(c, pred["n"])
        lo, hi = pred["measurement"]
        self.rows.append({"bucket": "2x" if ratio <= 2.83 else "4x", "err": abs(pred["mid"] - measured),
                          "last": abs(last - measured), "line": abs(line - measured),
                          "inside": lo <= measured <= hi, "width": hi - lo,
                          "above1": pred["mid"] > 1 or hi > 1,
                          "truth_inside": None if truth is None else pred["curve"][0] <= truth <= pred["curve"][1]})

    def report(self, title):
        df = pd.DataFrame(self.rows)
        print(f"\n{title}")
        print("ratio  points  coverage90  width   MAE sftscale  MAE last  MAE line  line/sftscale  last/sftscale")
        for b, g in df.groupby("bucket"):
            print(f"{b:>5}  {len(g):6d}  {g.inside.mean():10.3f}  {g.width.mean():5.3f}  {g.err.mean():12.4f}  "
                  f"{g['last'].mean():8.4f}  {g.line.mean():8.4f}  {g.line.mean() / g.err.mean():13.2f}  "
                  f"{g['last'].mean() / g.err.mean():13.2f}")
        print(f"  all  {len(df):6d}  {df.inside.mean():10.3f}  {df.width.mean():5.3f}  {df.err.mean():12.4f}  "
              f"{df['last'].mean():8.4f}  {df.line.mean():8.4f}  {df.line.mean() / df.err.mean():13.2f}  "
              f"{df['last'].mean() / df.err.mean():13.2f}   predictions above 1: {int(df.above1.sum())}")
        if df.truth_inside.notna().any():
            print(f"  curve interval covers the true value: {df.truth_inside.dropna().mean():.3f}")
        return df


def sim(studies: int, k: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    N = 2.0 ** np.arange(3, 3 + k)
    t = Tally()
    cannot = 0
    for s in range(studies):
        shape = ("richards", "expsat")[s % 2]
        params = [random_params(shape, rng) for _ in range(4)]
        cds = [simulate_curve(shape, p, N, rng, name=f"c{i}") for i, p in enumerate(params)]
        from sftscale.fit.simulate import truth
        for hold in (1, 2):
            curves = [curve_from_data(_truncate(cd, k - hold)) for cd in cds]
            fcs, _ = forecast_curves(curves, level=0.9)
            for fc, cd, p, c in zip(fcs, cds, params, curves):
                if fc.status != "ok":
                    cannot += 1
                    continue
                for pr in fc.predictions:
                    j = np.nonzero(np.isclose(N, pr["n"]))[0]
                    if j.size:
                        t.add(pr["ratio"], pr, float(cd.y[j[0]]), c, float(truth(shape, p, N[j])[0]))
    df = t.report(f"simulated: {studies} studies x 4 curves, N = 8 ... {int(N[-1])}, richards / expsat truths "
                  f"(cannot forecast: {cannot})")
    return df


def load_published(path: Path = HERE / "published_curves" / "curves.csv") -> list[CurveData]:
    df = pd.read_csv(path)
    df = df[~df.curve_id.str.endswith(("_precision", "_recall"))]
    out = []
    for cid, g in df.groupby("curve_id", sort=True):
        g = g.sort_values("n")
        g = g[g.n > 0]
        m = g.n_items.dropna()
        out.append(CurveData(str(cid), str(g.task.iloc[0])[:40], "value", g.n.to_numpy(float),
                             g.value.to_numpy(float), None, "none", int(m.iloc[0]) if len(m) else None))
    return out


def published() -> pd.DataFrame:
    cds = load_published()
    full = [curve_from_data(cd) for cd in cds]
    recs_full = {c.key: backtest(c) for c in full}
    t = Tally()
    cannot = []
    for cd in cds:
        for hold in (1, 2):
            k = cd.n.size - hold
            c = curve_from_data(_truncate(cd, k))
            own = backtest(c)
            # other curves' backtests from prefixes no longer than this one's: what a study whose
            # curves all stop at this size would have had
            others = [r for key, rs in recs_full.items() if key != c.key for r in rs if r.k <= k]
            cal = calibrate(others + own, 0.9)
            fc = forecast_curve(c, cal, own, level=0.9, ratios=[cd.n[j] / cd.n[k - 1] for j in range(k, cd.n.size)])
            if fc.status != "ok":
                cannot.append(f"{cd.model} (hold {hold}): {fc.reason}")
                continue
            for j, pr in zip(range(k, cd.n.size), fc.predictions):
                if pr.get("mid") is not None:
                    t.add(pr["ratio"], pr, float(cd.y[j]), c)
    df = t.report(f"published curves: {len(cds)} curves, largest 1 and 2 N held out, leave-one-curve-out "
                  f"calibration (cannot forecast: {len(cannot)})")
    for line in cannot:
        print("  cannot:", line)
    return df


def speed() -> None:
    rng = np.random.default_rng(0)
    N = 2.0 ** np.arange(3, 11)
    rows = []
    for i in range(20):
        shape = ("richards", "expsat")[i % 2]
        cd = simulate_curve(shape, random_params(shape, rng), N, rng, n_boot=1000, name=f"c{i}")
        for s in range(2):
            for n, v in zip(N, cd.y):
                rows.append({"model": "m", "task": f"c{i:02d}", "metric": "accuracy", "n": n, "value": v,
                             "seed": s, "n_items": 60})
    long = pd.DataFrame(rows)
    from sftscale.fit.fitting import fit_table
    from sftscale.fit.forecast import forecast_table
    t0 = time.perf_counter()
    fit_table(long, n_boot=1000)
    t1 = time.perf_counter()
    forecast_table(long, n_boot=1000, targets=[0.5, 0.8])
    t2 = time.perf_counter()
    print(f"\nspeed: 20 curves x 1,000 replicates: fits (4 forms) {t1 - t0:.2f} s, forecasts with backtests "
          f"{t2 - t1:.2f} s, total {t2 - t0:.2f} s (target < 10 s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sim", action="store_true")
    ap.add_argument("--published", action="store_true")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--studies", type=int, default=40)
    a = ap.parse_args()
    every = not (a.sim or a.published or a.speed)
    if a.sim or every:
        sim(a.studies, 7, 11)
        sim(a.studies, 8, 12)
    if a.published or every:
        published()
    if a.speed or every:
        speed()


if __name__ == "__main__":
    main()
