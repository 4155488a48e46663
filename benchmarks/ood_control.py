"""Learnability control of the OOD twins: toy-S finetuned on a pool that CONTAINS the OOD
property, evaluated on the twin (docs/toy-models.md, "Out-of-distribution twins").

    .venv/bin/python benchmarks/ood_control.py math|multihop [--out DIR] [--n 1024] [--limit 60]

``math``: the toy-math pool with a quarter of 4-step problems (drawn with their own seed and
kept apart from toy-math-ood's test problems). ``multihop``: the toy-multihop pool with a
quarter of three-hop capital chains about the POOL people (4 copies of each of the 375; the
twin asks about the test people). The default recipe of toy-S, seed 0, one torch thread;
prints accuracy and format rate on the twin and on the task. The baseline (the same N on the
task's own pool) is the twin's row of an ``eval_tasks`` study such as studies/toy.yaml.

Not handled: toy-code-ood and toy-instruct-ood (no mixture written for them).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from functools import cached_property

import torch

from sftscale.evaluation.run import evaluate
from sftscale.tasks.base import Item
from sftscale.toyworld.arith import math_ood_problems, random_problem
from sftscale.toyworld.tasks import OOD_CHAINS, ToyMath, ToyMultihop, capital_item
from sftscale.train import train_cell


class MixMath(ToyMath):
    name = "toy-math-mix"

    @cached_property
    def _train(self) -> list[Item]:
        test = {p.key() for p in math_ood_problems(1000, 0)}
        rng = random.Random("control-4step")
        four: list[Item] = []
        while len(four) < 2500:
            p = random_problem(rng, 4)
            if p.key() not in test:
                four.append(Item(id=f"mix4/{len(four)}", question=p.question(), target=str(p.answer),
                                 completion=p.solution(), meta={"steps": 4}))
        items = list(super()._train)[:7500] + four
        random.Random("control-mix").shuffle(items)
        return items


class MixMultihop(ToyMultihop):
    name = "toy-multihop-mix"

    @cached_property
    def _train(self) -> list[Item]:
        three = [capital_item(self.world, p, c) for p in self.world.group("pool") for c in OOD_CHAINS]
        items = list(super()._train)[:12 * len(three)] + three * 4
        random.Random("control-mix").shuffle(items)
        seen: dict[str, int] = {}
        out = []
        for it in items:  # unique ids (the copies)
            k = seen.get(it.id, 0)
            seen[it.id] = k + 1
            out.append(Item(id=f"{it.id.replace('/test/', '/mixtrain/')}#{k}", question=it.question,
                            target=it.target, completion=it.completion, meta=it.meta))
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("which", choices=("math", "multihop"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--limit", type=int, default=60)
    a = ap.parse_args()
    torch.set_num_threads(1)
    task = MixMath() if a.which == "math" else MixMultihop()
    own = "toy-math" if a.which == "math" else "toy-multihop"
    out = a.out or f"/tmp/ood-control-{a.which}"
    t0 = time.time()
    train_cell("toy-S", task, a.n, 0, out, recipe={"micro_batch_tokens": 1024})
    res = {}
    for name in (f"{own}-ood", own):
        evaluate(f"{out}/ckpt", name, limit=a.limit, out=f"{out}/eval-{name}")
        doc = json.loads(sorted((__import__("pathlib").Path(out) / f"eval-{name}").glob("results_*.json"))[-1]
                         .read_text())["results"][name]
        res[name] = {k.split(",")[0]: round(v, 3) for k, v in doc.items()
                     if k.split(",")[0] in ("accuracy", "format_rate")}
    print(json.dumps({"control": a.which, "n": a.n, "wall_s": round(time.time() - t0, 1), **res}))


if __name__ == "__main__":
    main()
