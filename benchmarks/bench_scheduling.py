"""Scheduling overhead of the study runner per cell: everything outside train and evaluate.

Side by side in one run, with the SAME cheap stage functions (they write a train_meta.json,
a samples file of ITEMS per-sample records and an lm-eval shaped results file, as the real
stages do):

- peer: a plain Python loop over the cells calling the stages (no store, no checks);
- sftscale: ``run_study`` (cell expansion, store sync, state transitions, hashing, metric and
  item inserts, export at the end), local executor, no progress display.

Overhead per cell = (sftscale wall - peer wall) / cells. Also timed: a resume where every
cell is done (verification of every output hash), and expanding + syncing the paper grid
(studies/paper.yaml, 320 cells) into a fresh store. Target: < 1 s per cell.

    .venv/bin/python benchmarks/bench_scheduling.py [--cells-per-task 20] [--items 200]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from sftscale.config import load_study, parse_study
from sftscale.grid.cells import expand_cells
from sftscale.io import atomic_write_json, atomic_write_jsonl
from sftscale.rundir.stagespec import StageContext
from sftscale.study.runner import CellRunner, prepare, run_study
from sftscale.study.stages import with_runs

ROOT = Path(__file__).resolve().parents[1]
ITEMS = 200


def train(cell, ctx: StageContext) -> None:
    if cell.n:  # a trained cell has a checkpoint (hashed and verified like a real one)
        (Path(ctx.out) / "ckpt").mkdir()
        (Path(ctx.out) / "ckpt" / "w.bin").write_bytes(hashlib.sha256(cell.key.encode()).digest())
    atomic_write_json(Path(ctx.out) / "train_meta.json", {"n": cell.n, "seed": cell.seed,
                                                          "complete": True, "trained": cell.n > 0})


def evaluate(cell, ctx: StageContext) -> None:
    out = ctx.out
    rows = []
    for i in range(ITEMS):
        h = hashlib.sha256(f"{cell.key}/{i}".encode()).digest()
        rows.append({"id": f"item/{i}", "prompt": "p" * 200, "response": "r" * 300,
                     "correct": h[0] < 128, "format_ok": h[1] < 200, "em": h[2] / 255})
    atomic_write_jsonl(Path(out) / "samples_t_0.jsonl", rows)
    acc = sum(r["correct"] for r in rows) / ITEMS
    atomic_write_json(Path(out) / "results_0.json",
                      {"results": {"t": {"accuracy,none": acc, "accuracy_stderr,none": 0.03}}})


def main() -> None:
    global ITEMS
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", type=int, default=12, help="N values per task (plus N=0)")
    ap.add_argument("--items", type=int, default=ITEMS)
    args = ap.parse_args()
    ITEMS = args.items
    grid = ", ".join(str(16 * (i + 1)) for i in range(args.grid))
    cfg = parse_study(f"""
name: bench
models: [{{name: a, ref: toy-S}}, {{name: b, ref: toy-M}}]
tasks: [{{name: toy-math, limit: {ITEMS}}}, {{name: toy-multihop, limit: {ITEMS}}}]
n: [0, {grid}]
seeds: [0, 1, 2]
""", "bench.yaml")
    cells = expand_cells(cfg)
    tmp = Path(tempfile.mkdtemp(prefix="bench_sched_"))
    try:
        # peer: a plain loop
        t0 = time.perf_counter()
        for c in cells:
            d = tmp / "peer" / c.key
            (d / "train").mkdir(parents=True)
            (d / "eval").mkdir()
            ctx = StageContext(run_dir=tmp / "peer", cell_dir=d, out=d / "train",
                               train_dir=d / "train", cache_dir=tmp / "peer" / "cache")
            train(c, ctx)
            evaluate(c, replace(ctx, out=d / "eval"))
        peer = time.perf_counter() - t0
        # sftscale
        runner = CellRunner(stages=with_runs(train=train, eval=evaluate))
        t0 = time.perf_counter()
        res = run_study(cfg, out=tmp / "run", runner=runner, progress=False, check=False)
        ours = time.perf_counter() - t0
        assert res.counts["done"] == len(cells), res
        t0 = time.perf_counter()
        res2 = run_study(cfg, out=tmp / "run", runner=runner, progress=False, check=False)
        resume = time.perf_counter() - t0
        assert res2.ran == 0
        paper = load_study(ROOT / "studies" / "paper.yaml")
        t0 = time.perf_counter()
        pcells = expand_cells(paper)
        prepare(paper, tmp / "paper", check=False)
        expand_s = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = len(cells)
    print(f"cells: {n}, items per cell: {ITEMS}")
    print(f"peer (plain loop over the stages): {peer:.2f} s  ({1000 * peer / n:.1f} ms/cell)")
    print(f"sftscale run_study:                {ours:.2f} s  ({1000 * ours / n:.1f} ms/cell)")
    print(f"scheduling overhead per cell:      {1000 * (ours - peer) / n:.1f} ms "
          f"(ratio sftscale/peer {ours / peer:.2f}x; target < 1000 ms)")
    print(f"resume with every cell done:       {resume:.2f} s  ({1000 * resume / n:.1f} ms/cell, "
          f"hash verification included)")
    print(f"paper grid: expand + sync {len(pcells)} cells into a new store: {expand_s:.2f} s")


if __name__ == "__main__":
    main()
