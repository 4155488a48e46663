"""``sftscale fit`` on a big table three ways, side by side in one run (issue 31, item 5).

    python benchmarks/make_fit_csv.py 10 10 250 big.csv 2     # 50,000 rows, 500 curves
    python benchmarks/bench_fit_big.py big.csv [WORKERS]

1. numpy's LM in one process (``lm.COMPILED_FROM`` set out of reach: the path of small fits);
2. the compiled LM (``fit/lm_compiled.py``) in one process;
3. the compiled LM in WORKERS forked processes (default 2: ``fit/parallel.py``), what
   ``sftscale fit`` does by default on this machine.

Each runs ``fit.progress.run_fits`` (fits of every default form, joint fits, forecasts with
backtests; fits.json is not written) and prints wall and CPU seconds (this process and its
workers) and the ratio to (1); it checks that (2) and (3) give the same numbers and that they
are within 1e-3 relative of (1).
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np
import pandas as pd

from sftscale.fit import lm
from sftscale.fit.progress import run_fits


def _cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def main(path: str, workers: int) -> None:
    df = pd.read_csv(path)
    kw = dict(metric=None, forms=None, n_boot=1000, seed=0, level=0.95, targets=[0.9], forecast_level=0.9)
    runs = {}
    for name, compiled_from, w in (("numpy LM, 1 process", 10**18, 1), ("compiled LM, 1 process", lm.COMPILED_FROM, 1),
                                   (f"compiled LM, {workers} processes", lm.COMPILED_FROM, workers)):
        lm.COMPILED_FROM = compiled_from
        t, c = time.perf_counter(), _cpu()
        runs[name] = (run_fits(df, None, workers=w, **kw), time.perf_counter() - t, _cpu() - c)
    base = next(iter(runs.values()))
    print(f"{path}: {len(df):,} rows")
    for name, (_, wall, cpu) in runs.items():
        print(f"  {name:28s} {wall:7.1f} s wall {cpu:7.1f} s CPU   "
              f"{base[1] / wall:5.2f}x wall  {base[2] / cpu:5.2f}x CPU")
    (f1, j1, c1), (f2, j2, c2) = (r[0] for r in list(runs.values())[1:])
    same = all(np.array_equal(a.theta, b.theta) for a, b in zip(f1, f2)) and j1 == j2 and c1 == c2
    close = all(np.allclose(a.theta, b.theta, rtol=1e-3, atol=1e-6) for a, b in zip(base[0][0], f1))
    print(f"  compiled: 1 and {workers} processes equal: {same}; within 1e-3 of numpy's fits: {close}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2)
