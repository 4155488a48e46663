"""A k-shot cell's generation: the shared context's KV cache computed once vs recomputed per row.

    .venv/bin/python benchmarks/bench_kshot_cache.py [--k 4] [--limit 60] [--rounds 3]
    .venv/bin/python benchmarks/bench_kshot_cache.py --demo     # the demo's 12 k-shot cells

``--demo``: what the demo's k-shot cells cost a warm worker: ``evaluate`` (task, pool, the fit
check, generation, scoring) of toy-S on each toy task with k = 1, 2, 4 after one plain N = 0
evaluation per task (the demo's plain cells pay the first-use costs), CPU seconds per cell
and in total (wall on two idle workers is about half the total, plus the runner's ~0.1 s per
cell: docs/benchmarks.md, bench_scheduling.py).

toy-S, one torch thread, the four toy tasks at ``--limit`` test items with ``--k`` examples of
one shared draw (the demo's k-shot cells: ``sftscale demo``'s ``fewshot: [1, 2, 4]``), each
task's own GenSpec, batch size auto. ``reuse``: ``HFBackend.share_prefix = True`` (the
default: the prefix common to every prompt is prefilled once, generation/hf.py); ``recompute``:
every row prefills its whole prompt. Both must give the same generations (checked, printed);
rounds alternate so that load hits both alike, and the best round of each is reported with the
ratio (recompute / reuse), CPU time beside wall time, and the load average (docs/footguns.md:
wall-clock times on a shared machine are noise; trust the ratio of one run).

Not handled: GPUs (run it there with the same command: the prefill's share of a decode is
smaller there), per-item draws (gsm8k's lm-eval contexts share no prefix).
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--limit", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--demo", action="store_true", help="CPU of the demo's 12 k-shot cells")
    args = ap.parse_args()
    if args.demo:
        return demo_cells(args.limit)

    import torch

    from sftscale.generation import Generator
    from sftscale.tasks import get_task

    torch.set_num_threads(1)
    gen = Generator("toy-S")
    work = []
    for name in ("toy-math", "toy-multihop", "toy-code", "toy-instruct"):
        task = get_task(name, limit=args.limit)
        work.append((name, task.fewshot_prompts(task.test_items(), args.k), task.gen))
    best: dict[bool, tuple[float, float]] = {}
    outs: dict[bool, list] = {}
    for r in range(args.rounds):
        for share in ((True, False) if r % 2 == 0 else (False, True)):
            gen.backend.share_prefix = share
            w0, c0 = time.perf_counter(), time.process_time()
            # the backend directly: the Generator's cache would answer the second side
            res = []
            for _, prompts, spec in work:
                got: dict[int, str] = {}
                gen.backend.generate(prompts, spec, None,
                                     lambda idx, rs, got=got: got.update(
                                         {i: t for i, (t, _) in zip(idx, rs)}))
                res.append([got[i] for i in range(len(prompts))])
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            outs[share] = res
            if share not in best or wall < best[share][0]:
                best[share] = (wall, cpu)
    same = outs[True] == outs[False]
    n = sum(len(p) for _, p, _ in work)
    print(f"toy-S, k={args.k}, {n} prompts over 4 toy tasks, best of {args.rounds} rounds, "
          f"load average {os.getloadavg()[0]:.1f}")
    for share, name in ((True, "reuse"), (False, "recompute")):
        print(f"  {name:9s}: {best[share][0]:6.2f} s wall, {best[share][1]:6.2f} s CPU")
    print(f"  ratio recompute / reuse: {best[False][0] / best[True][0]:.2f}x wall, "
          f"{best[False][1] / best[True][1]:.2f}x CPU; identical generations: {same}")
    if not same:
        raise SystemExit(1)


def demo_cells(limit: int) -> None:
    import torch

    from sftscale.evaluation import evaluate
    from sftscale.generation import Generator
    from sftscale.tasks.taskdata import study_task

    torch.set_num_threads(1)
    gen = Generator("toy-S")
    names = ("toy-math", "toy-multihop", "toy-code", "toy-instruct")
    for name in names:  # the plain N = 0 cells run first in the demo
        evaluate("toy-S", study_task(name, {}, None), limit=limit, generator=gen)
    total, tokens = 0.0, 0
    for name in names:
        for k in (1, 2, 4):
            c = time.process_time()
            r = evaluate("toy-S", study_task(name, {}, None), limit=limit, generator=gen, num_fewshot=k)
            d = time.process_time() - c
            total, tokens = total + d, tokens + r["timings"]["generated_tokens"]
            print(f"  {name:13s} k={k}: {d:5.2f} s CPU, {r['timings']['generated_tokens']:5d} tokens, "
                  f"accuracy {r['metrics'].get('accuracy', float('nan')):.3f}, "
                  f"format_rate {r['metrics'].get('format_rate', float('nan')):.3f}")
    print(f"12 k-shot cells: {total:.1f} s CPU, {tokens} generated tokens, "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
