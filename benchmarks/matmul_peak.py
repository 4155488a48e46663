"""This machine's fp32 matmul peak: torch.mm of large square matrices, threads = cores.

    .venv/bin/python benchmarks/matmul_peak.py [--size 2048] [--repeats 10] [--threads N]

Prints one JSON object: the best and median GFLOP/s (2*n^3 flops per mm) over the repeats,
for the thread count given (default: the CPU cores this process may use) and for 1 thread.
``peak_gflops()`` is imported by bench_train_vs_trl.py to express training speed as a
fraction of this peak. Not handled: other dtypes (bf16 on CPU is slower here), GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def peak_gflops(size: int = 2048, repeats: int = 10, threads: int | None = None) -> dict:
    """Best and median fp32 GFLOP/s of ``torch.mm`` on ``size`` x ``size`` matrices."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads or cores())
    try:
        a = torch.randn(size, size)
        b = torch.randn(size, size)
        c = torch.empty(size, size)
        for _ in range(2):  # warm-up
            torch.mm(a, b, out=c)
        rates = []
        for _ in range(repeats):
            t = time.perf_counter()
            torch.mm(a, b, out=c)
            rates.append(2 * size ** 3 / (time.perf_counter() - t) / 1e9)
        return {"size": size, "threads": torch.get_num_threads(), "best_gflops": max(rates),
                "median_gflops": statistics.median(rates), "repeats": repeats}
    finally:
        torch.set_num_threads(old)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    out = {"cores": cores(), "all_threads": peak_gflops(a.size, a.repeats, a.threads),
           "one_thread": peak_gflops(a.size, max(3, a.repeats // 3), 1),
           "load_avg_1m": os.getloadavg()[0]}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
