"""Generated tokens/s: sftscale's Generator vs lm-evaluation-harness's ``hf`` backend.

Same loaded model object, same prompts (benchmarks/lmeval_parity/prompts.jsonl), same stop
strings, max new tokens and batch size, greedy, in one process and one run; the two are
interleaved ``--repeats`` times and the best time of each is kept. Both sides must return
identical responses (checked, reported). Throughput = tokens in the final responses
(sftscale's per-row token count, up to and including the stop) / wall time of generation
only (model loading and lm-eval's task building are excluded), so the ratio of tokens/s is
the ratio of wall times.

    .venv/bin/python benchmarks/bench_generate_vs_lmeval.py                 # toy-S if shipped, else a random tiny Llama
    .venv/bin/python benchmarks/bench_generate_vs_lmeval.py --random --hidden 64 --layers 2
    .venv/bin/python benchmarks/bench_generate_vs_lmeval.py --model DIR --batch-size 16 --max-new-tokens 64
    # a task's prompts, stops, max tokens:
    .venv/bin/python benchmarks/bench_generate_vs_lmeval.py --model toy-S --task toy-math

With a random model every row runs to ``max_new_tokens`` (the worst case for sftscale: no
finished rows to drop); a trained model on its task stops rows at different lengths.

Work is counted too (a forward pre-hook on the model, both sides): decode steps, row-steps
(rows summed over decode steps) and prefill token-rows. Both sides run the same kernels on
the same model, so the time ratio follows the ratio of work: sftscale saves the row-steps
that ``model.generate`` spends on rows that have already finished (the batch runs until its
longest row ends). Where every row has about the same length there is nothing to save and
the ratio is about 1 (docs/notes/generate.md).

Not handled: GPU timing (runs wherever ``models.load_model`` puts the model; pass --device).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "lmeval_parity"))

import parity  # noqa: E402


def _model_ref(arg: str | None, tmp: Path, hidden: int, layers: int, random: bool) -> str:
    if arg:
        return arg
    try:
        if random:
            raise LookupError("random model asked for")
        from sftscale.models import resolve_model

        resolve_model("toy-S")
        return "toy-S"
    except Exception:
        from sftscale.testing import tiny_model

        return str(tiny_model(tmp / "tiny", "chars", seed=0, layers=layers, hidden=hidden))


def _work(calls: list[tuple[int, int]]) -> dict:
    """Decode steps (one new token per row), row-steps, prefills and their token-rows."""
    dec = [b for b, t in calls if t == 1]
    pre = [b * t for b, t in calls if t > 1]
    return {"steps": len(dec), "row_steps": sum(dec), "prefills": len(pre), "prefill_rows": sum(pre)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=None,
                    help="default 64 for the parity prompts, the task's own with --task")
    ap.add_argument("--n", type=int, default=48, help="number of prompts")
    ap.add_argument("--task", default=None, help="use this registered task's test prompts and GenSpec")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--random", action="store_true", help="a random tiny Llama even if toy-S is shipped")
    ap.add_argument("--hidden", type=int, default=256, help="random tiny model width")
    ap.add_argument("--layers", type=int, default=4, help="random tiny model depth")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--chat", action="store_true", help="--task prompts through the chat template")
    a = ap.parse_args()

    parity.offline()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    from sftscale.generation import Generator
    from sftscale.models import load_model

    with tempfile.TemporaryDirectory() as td:
        ref = _model_ref(a.model, Path(td), a.hidden, a.layers, a.random)
        model, tok = load_model(ref, device=a.device, dtype="float32")
        if a.task:
            from sftscale.tasks import get_task

            task = get_task(a.task)
            prompts = [task.build_prompt(it, tok, a.chat) for it in task.test_items()[:a.n]]
        else:
            rows = (parity.load_rows() * ((a.n + 47) // 48))[:a.n]
            prompts = [r["prompt"] for r in rows]
            task = parity.ParityTask(rows, a.max_new_tokens or 64)
        spec = task.gen
        if a.max_new_tokens:
            spec = dataclasses.replace(spec, max_new_tokens=a.max_new_tokens)
        gen = Generator((model, tok), batch_size=a.batch_size)
        calls: list[tuple[int, int]] = []
        model.register_forward_pre_hook(
            lambda _m, _a, kw: calls.append(tuple(kw["input_ids"].shape[:2]))
            if kw.get("input_ids") is not None else None, with_kwargs=True)
        lm = parity.lmeval_hflm(model, tok, a.batch_size)
        # warm-up (allocator, lazy inits) on a few prompts
        gen.generate(prompts[:2], spec)
        parity.lmeval_generate(lm, prompts[:2], spec.max_new_tokens, spec.stop)
        t_ours = t_theirs = c_ours = c_theirs = float("inf")
        ours = theirs = None
        for _ in range(a.repeats):
            calls.clear()
            t0, c0 = time.perf_counter(), time.process_time()
            theirs = parity.lmeval_generate(lm, prompts, spec.max_new_tokens, spec.stop)
            t_theirs = min(t_theirs, time.perf_counter() - t0)
            c_theirs = min(c_theirs, time.process_time() - c0)
            w_theirs = _work(calls)
            calls.clear()
            t0, c0 = time.perf_counter(), time.process_time()
            ours = gen.generate(prompts, spec)
            t_ours = min(t_ours, time.perf_counter() - t0)
            c_ours = min(c_ours, time.process_time() - c0)
            w_ours = _work(calls)
        tokens = sum(gen.last["n_tokens"])
        same = sum(x == y for x, y in zip(ours, theirs))
        print(f"model={ref} task={a.task or 'parity'} device={a.device} prompts={len(prompts)} "
              f"batch_size={a.batch_size} max_new_tokens={spec.max_new_tokens} stop={list(spec.stop)} "
              f"threads={torch.get_num_threads()} chat={a.chat}")
        print(f"identical responses: {same}/{len(prompts)}; tokens in responses: {tokens}")
        print(f"lm-eval hf : {t_theirs:8.2f} s wall {tokens / t_theirs:9.1f} tok/s  ({c_theirs:.2f} s CPU)")
        print(f"sftscale   : {t_ours:8.2f} s wall {tokens / t_ours:9.1f} tok/s  ({c_ours:.2f} s CPU)")
        for name, w in (("lm-eval hf", w_theirs), ("sftscale", w_ours)):
            print(f"work {name:10s}: {w['steps']} decode steps, {w['row_steps']} row-steps, "
                  f"{w['prefills']} prefills of {w['prefill_rows']} token-rows")
        print(f"ratio (sftscale / lm-eval tokens/s): {t_theirs / t_ours:.2f}x wall, "
              f"{c_theirs / c_ours:.2f}x CPU time; row-steps lm-eval / sftscale: "
              f"{w_theirs['row_steps'] / max(1, w_ours['row_steps']):.2f}x")


if __name__ == "__main__":
    main()
