"""Time `sftscale score --task gsm8k` on 1,319 responses (target: < 5 s wall, CLI included).

Also times the scoring itself in-process against its peer, lm-eval's gsm8k filters
(strict-match + flexible-extract regex filters and exact_match with the gsm8k yaml's
settings) on the same responses, and prints the ratio. Run:

    .venv/bin/python benchmarks/bench_score_gsm8k.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_responses(items) -> list[dict]:
    rows = []
    for k, it in enumerate(items):
        body, ans = it.meta["solution"].rsplit("#### ", 1)
        variants = [" " + it.meta["solution"], f" {body}#### 9{ans}", f" {body}The answer is {ans}."]
        rows.append({"id": it.id, "response": variants[k % 3]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from sftscale.tasks.gsm8k import GSM8K

    task = GSM8K()
    items = task.test_items()
    rows = make_responses(items)
    exe = shutil.which("sftscale", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "sftscale.cli"]
    with tempfile.TemporaryDirectory() as d:
        resp = Path(d) / "responses.jsonl"
        resp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        walls = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            p = subprocess.run([*cmd, "score", "--task", "gsm8k", "--responses", str(resp),
                                "--samples-out", str(Path(d) / "samples.jsonl")],
                               capture_output=True, text=True, check=True)
            walls.append(time.perf_counter() - t0)
        agg = json.loads(p.stdout)

    # in-process: ours vs lm-eval's filters + exact_match on the same responses
    texts = [r["response"] for r in rows]
    t0 = time.perf_counter()
    ours = task.score_many(items, texts)
    t_ours = time.perf_counter() - t0

    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter

    ignore = [",", "\\$", "(?s).*#### ", "\\.$"]
    golds = [it.meta["solution"] for it in items]
    t0 = time.perf_counter()
    verdicts = {}
    for name, filt in (("strict", RegexFilter(r"#### (\-?[0-9\.\,]+)", 0)),
                       ("flexible", RegexFilter(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", -1))):
        out = filt.apply([[t] for t in texts], None)
        verdicts[name] = [bool(exact_match_hf_evaluate([o[0]], [g], regexes_to_ignore=ignore,
                                                       ignore_case=True)["exact_match"])
                          for o, g in zip(out, golds)]
    t_lm = time.perf_counter() - t0
    agree_s = sum(o["correct_strict"] == v for o, v in zip(ours, verdicts["strict"]))
    agree_f = sum(o["correct_flexible"] == v for o, v in zip(ours, verdicts["flexible"]))

    print(f"sftscale score CLI, {len(rows)} gsm8k responses: wall best {min(walls):.2f} s, "
          f"all {', '.join(f'{w:.2f}' for w in walls)} (target < 5 s)")
    print(f"aggregates: accuracy_strict={agg['accuracy_strict']:.4f} "
          f"accuracy_flexible={agg['accuracy_flexible']:.4f} format_rate={agg['format_rate']:.4f}")
    print(f"in-process scoring: sftscale {t_ours * 1e3:.1f} ms, lm-eval filters+exact_match "
          f"{t_lm * 1e3:.1f} ms, ratio lm-eval/sftscale = {t_lm / t_ours:.1f}x")
    print(f"verdict agreement with lm-eval: strict {agree_s}/{len(rows)}, flexible {agree_f}/{len(rows)}")


if __name__ == "__main__":
    main()
