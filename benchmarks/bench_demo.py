"""Benchmark: where the demo's time goes (the 10-minute budget of `make demo`).

Runs ``sftscale demo`` from an empty directory (or ``--out DIR`` to reuse one) and prints each
stage's seconds and share of the total, then the study's training steps and seconds per task
(from every cell's train_meta.json), so a change can be judged by what it moves.

Run: ``.venv/bin/python benchmarks/bench_demo.py [--quick] [--out DIR]`` (idle machine; the demo
itself uses both cores). Results: docs/benchmarks.md ("The demo").
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="demo directory (default: a new temporary one)")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    from sftscale.demo import run_demo

    out = a.out or Path(tempfile.mkdtemp(prefix="bench_demo_"))
    t0 = time.perf_counter()
    run_demo(out, quick=a.quick, progress=False)
    wall = time.perf_counter() - t0
    times = json.loads((out / "demo_timings.json").read_text())
    total = times.pop("study_total_s")
    print(f"\n{'stage':<40}{'seconds':>9}{'share':>8}")
    for k, v in times.items():
        print(f"{k:<40}{v:9.1f}{100 * v / wall:7.1f}%")
    print(f"{'demo (wall, this process)':<40}{wall:9.1f}   (without set-up check: {total:.1f})")
    steps: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0])
    for p in (out / "study" / "cells").glob("*/train/train_meta.json"):
        m = json.loads(p.read_text())
        if m.get("n"):
            s = steps[m["task"]]
            s[0] += m.get("steps_trained") or m.get("steps") or 0
            s[1] += m.get("wall_s") or 0.0
            s[2] += 1
    print(f"\n{'task':<16}{'cells':>6}{'steps trained':>15}{'train s (CPU)':>15}{'s / step':>10}")
    for t, (n, sec, c) in sorted(steps.items()):
        print(f"{t:<16}{c:6d}{int(n):15d}{sec:15.1f}{sec / max(n, 1):10.3f}")


if __name__ == "__main__":
    main()
