"""Cost of the token-shift stage on real cells, and what it adds to the demo.

Runs the ``shift`` stage (tokenshift/stage.py, the code a study runs) again on every done cell
with N > 0 of a run directory, into a scratch directory, ``--rounds`` times, in one process
with one torch thread, and prints per cell the wall and CPU seconds (best round) beside the
cell's eval seconds from the store. The first call loads the base model (as the first cell of
a worker does); it is reported apart.

Extrapolation to the demo (studies/toy.yaml: 16 cells with N > 0 per task, 2 one-thread
workers): the mean CPU seconds per cell of each task x 16, summed over the tasks, / 2.

    sftscale run bench.yaml   # toy-S, the four toy tasks with limit 60, n [0, 64], seeds [0]
    .venv/bin/python benchmarks/bench_shift.py RUN_DIR [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--demo-cells-per-task", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()

    import torch

    from sftscale.grid.cells import Cell
    from sftscale.rundir import layout
    from sftscale.rundir.stagespec import StageContext
    from sftscale.rundir.store import Store
    from sftscale.tokenshift.stage import shift_stage

    torch.set_num_threads(1)
    run_dir = a.run_dir.resolve()
    with Store(layout.store_path(run_dir), readonly=True) as st:
        rows = [r for r in st.cells("done") if r["n"] > 0]
    print(f"load average {os.getloadavg()}")
    per_task: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    warm = False
    for r in rows:
        cdir = layout.cell_dir(run_dir, r["key"])
        spec = json.loads((cdir / layout.CELL_JSON).read_text())
        cell = Cell(**{k: v for k, v in spec.items() if k in Cell.__dataclass_fields__})
        best_w = best_c = float("inf")
        for _ in range(a.rounds + (0 if warm else 1)):
            with tempfile.TemporaryDirectory() as tmp:
                ctx = StageContext(run_dir=run_dir, cell_dir=cdir, out=Path(tmp),
                                   train_dir=layout.stage_dir(cdir, layout.TRAIN),
                                   cache_dir=layout.gen_cache(run_dir))
                w, c = time.perf_counter(), time.process_time()
                shift_stage(cell, ctx)
                w, c = time.perf_counter() - w, time.process_time() - c
                meta = json.loads((Path(tmp) / layout.SHIFT_META).read_text())
            if not warm:  # the base model's load, once per worker
                print(f"first call (loads the base model): {w:.2f} s wall, {c:.2f} s CPU")
                warm = True
                continue
            best_w, best_c = min(best_w, w), min(best_c, c)
        evs = json.loads(r["stage_s"] or "{}").get("eval")
        print(f"{r['key']}: {meta['n_items']} items, {meta['n_tokens']} tokens: shift {best_w:.3f} s wall, "
              f"{best_c:.3f} s CPU (eval in the run: {evs if evs is None else round(evs, 2)} s)")
        per_task.setdefault(r["task"], []).append(best_c)
    demo = sum(sum(v) / len(v) * a.demo_cells_per_task for v in per_task.values()) / a.workers
    print(f"demo extrapolation: {demo:.1f} s wall on {a.workers} workers "
          f"({a.demo_cells_per_task} cells with N > 0 per task, CPU seconds as wall on an idle machine)")
    print(f"total {time.perf_counter() - t0:.1f} s; load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
