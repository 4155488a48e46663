"""IFEval scoring speed: sftscale's IFEval task vs lm-eval's own ``process_results``, side by side.

Both score the same responses for all 541 prompts (several response styles, so every checker
runs on followed and broken text). Prints the wall time of each, the ratio, and whether the
four lm-eval aggregates agree (keys 1122/1129 excluded: lm-eval draws a random letter for them).

    nice -n 10 .venv/bin/python benchmarks/bench_ifeval.py [--repeat 3]

Not measured: generation (the expensive part of an IFEval run), first-call costs
(langdetect's profile load, Punkt table parsing) which both pay once and are warmed up here.
"""

from __future__ import annotations

import argparse
import time


def _responses(items) -> list[str]:
    out = []
    for i, it in enumerate(items):
        q = it.question
        out.append([q, q.lower(), q.upper(), f'"{q}"', "Sure:\n" + q + "\n**P.S.** done",
                    "My answer is yes.", "a, b\n******\nc"][i % 7])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from sftscale.tasks import get_task
    from sftscale.tasks.nltk_offline import import_ifeval_checkers

    task = get_task("ifeval")
    items = task.test_items()
    responses = _responses(items)
    lm = import_ifeval_checkers()
    docs = [{"key": int(it.id), "prompt": it.question, "instruction_id_list": it.target[0],
             "kwargs": it.target[1]} for it in items]
    # warm up both (langdetect profiles, Punkt tables)
    task.score_many(items[:20], responses[:20])
    for d, r in zip(docs[:20], responses[:20]):
        lm.process_results(d, [r])

    t_ours, t_peer = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        recs = task.score_many(items, responses)
        agg = task.aggregate(recs)
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs = [lm.process_results(d, [r]) for d, r in zip(docs, responses)]
        n = len(theirs)
        ref = {"prompt_level_strict_acc": sum(t["prompt_level_strict_acc"] for t in theirs) / n,
               "prompt_level_loose_acc": sum(t["prompt_level_loose_acc"] for t in theirs) / n,
               "inst_level_strict_acc": lm.agg_inst_level_acc([t["inst_level_strict_acc"] for t in theirs]),
               "inst_level_loose_acc": lm.agg_inst_level_acc([t["inst_level_loose_acc"] for t in theirs])}
        t_peer.append(time.perf_counter() - t0)

    keep = [i for i, it in enumerate(items) if it.id not in ("1122", "1129")]
    agree = all(recs[i]["follow_instruction_list_strict"] == theirs[i]["inst_level_strict_acc"]
                and recs[i]["follow_instruction_list_loose"] == theirs[i]["inst_level_loose_acc"]
                for i in keep)
    ours, peer = min(t_ours), min(t_peer)
    print(f"responses scored: {len(items)} (best of {args.repeat})")
    print(f"sftscale IFEval.score_many+aggregate: {ours:.3f} s  ({1e3 * ours / len(items):.2f} ms/response)")
    print(f"lm-eval process_results+aggregation:  {peer:.3f} s  ({1e3 * peer / len(items):.2f} ms/response)")
    print(f"ratio sftscale/lm-eval: {ours / peer:.2f}")
    print(f"per-instruction results agree on {len(keep)} prompts: {agree}")
    for k, v in ref.items():
        print(f"  {k}: sftscale {agg[k]:.4f}  lm-eval {v:.4f}")


if __name__ == "__main__":
    main()
