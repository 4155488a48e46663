"""Judge requests/s in-process, against a direct batched generation of the same prompts.

The prompts are the judge's own (``judge.prompt.messages``) for the wrong responses of a run
directory (``--run DIR``, the first ``--limit``) and the hand-checked GSM8k set
(tests/data/judge_gsm8k.jsonl). Both sides use one loaded model (``LocalClient``'s
Generator), the same chat-templated prompts, greedy decoding, the same max new tokens and
batch size:

- judge: ``LocalClient.run`` (template, batched generation in chunks, each answer handed back
  as it is done) plus parsing every answer, as ``sftscale judge`` does, without the cache;
- direct: ``Generator.generate`` on the same prompts in one call.

The two alternate ``--repeats`` times, best wall time kept. Also reported: how many answers
parsed, and on the check set the agreement with the hand labels (a small model on a CPU is a
weak judge: that is a finding).

    .venv/bin/python benchmarks/bench_judge.py --model smollm2-135m-instruct --run runs/demo/study --limit 48

Not handled: server judges (their speed is the server's), the cache's cost (one fsync per answer).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--run", type=Path, default=None, help="a run directory whose wrong responses to judge")
    ap.add_argument("--limit", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()

    from sftscale.judge import LocalClient, parse, taxonomy
    from sftscale.judge.collect import wrong_responses
    from sftscale.judge.prompt import messages
    from sftscale.judge.run import load_check_set
    from sftscale.judge.stats import agreement
    from sftscale.tasks.base import GenSpec

    check = load_check_set(ROOT / "tests" / "data" / "judge_gsm8k.jsonl")
    wrong = wrong_responses(a.run)[0][:a.limit] if a.run else []
    items = wrong + check
    convs = [messages(w.task, taxonomy(w.task), w.prompt, w.reference, w.response) for w in items]
    client = LocalClient(a.model, batch_size=a.batch_size, max_tokens=a.max_new_tokens)
    prompts = [client.prompt(m) for m in convs]
    spec = GenSpec(max_new_tokens=a.max_new_tokens, stop=("\n\n",))
    client.gen.generate(prompts[:2], spec)  # warm-up
    best = {"judge": float("inf"), "direct": float("inf")}
    answers: list[str] = [""] * len(items)
    for _ in range(a.repeats):
        t0 = time.perf_counter()

        def on_result(i: int, status: str, text: str, err: str) -> None:
            answers[i] = text
            parse(text, taxonomy(items[i].task))

        client.run(convs, on_result)
        best["judge"] = min(best["judge"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        client.gen.generate(prompts, spec)
        best["direct"] = min(best["direct"], time.perf_counter() - t0)
    parsed = [parse(t, taxonomy(w.task)) for t, w in zip(answers, items)]
    chk = [(w.truth_fine, p[0] if p else None) for w, p in zip(items, parsed) if w.cell == "check"]
    toy = [(w.truth_coarse, taxonomy(w.task).coarse(p[0]) if p else None) for w, p in zip(items, parsed)
           if w.cell != "check" and w.truth_coarse]
    out = {"model": a.model, "requests": len(items), "batch_size": a.batch_size, "max_new_tokens": a.max_new_tokens,
           "judge_s": round(best["judge"], 2), "direct_s": round(best["direct"], 2),
           "judge_requests_per_s": round(len(items) / best["judge"], 2),
           "direct_prompts_per_s": round(len(items) / best["direct"], 2),
           "parsed": sum(p is not None for p in parsed),
           "check_fine_agreement": agreement([t for t, _ in chk], [j for _, j in chk], b=200),
           "toy_coarse_agreement": agreement([t for t, _ in toy], [j for _, j in toy], b=200),
           "example_answers": answers[:3]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
