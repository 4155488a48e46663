"""A synthetic long CSV for timing ``sftscale fit`` on big inputs (docs/notes/reliability.md).

    python benchmarks/make_fit_csv.py N_GRID SEEDS CURVES OUT.csv [TASKS]

CURVES models (x TASKS tasks, default 1), the first N_GRID of N = 0, 8, ..., 2048, SEEDS seeds
per N; accuracy of 200 items drawn as Binomial(200, p) / 200 on a saturating curve with a
random ceiling and exponent per model. ``10 10 250 big.csv 2`` is the 50,000-row, 500-curve
table; ``10 500 10 seeds.csv`` the 50,000-row, 10-curve one.
"""

from __future__ import annotations

import sys

import numpy as np


def main(argv: list[str]) -> None:
    n_grid, seeds, curves, out = int(argv[0]), int(argv[1]), int(argv[2]), argv[3]
    tasks = [f"t{j + 1}" for j in range(int(argv[4]))] if len(argv) > 4 else ["t"]
    rng = np.random.default_rng(0)
    grid = [0, 8, 16, 32, 64, 128, 256, 512, 1024, 2048][:n_grid]
    rows = ["model,task,metric,n,value,seed,n_items"]
    for c in range(curves):
        a, k = rng.uniform(0.3, 0.9), rng.uniform(0.2, 0.6)
        for t in tasks:
            for n in grid:
                p = a - (a - 0.05) * (1 + n) ** -k
                rows += [f"m{c},{t},accuracy,{n},{rng.binomial(200, p) / 200},{s},200"
                         for s in range(seeds)]
    with open(out, "w") as f:
        f.write("\n".join(rows) + "\n")
    print(len(rows) - 1, "rows")


if __name__ == "__main__":
    main(sys.argv[1:])
