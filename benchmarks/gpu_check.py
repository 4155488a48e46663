"""One prepared GPU check of the generation path, for a session that is lent a device machine.

The device machine has torch, transformers and peft but no network and no lm-eval, so the peer
here is what lm-eval's ``hf`` backend runs underneath: ``model.generate`` on left-padded
batches sorted by prompt length, greedy, with stop strings, the batch ending when its longest
row ends. sftscale needs nothing beyond the standard library there (imports are lazy), so run
it from the repository root with the source tree on the path:

    PYTHONPATH=src python3 benchmarks/gpu_check.py --out $OUT            # about 2-4 minutes

It checks, per model (toy-S, toy-M, and a random ~0.4B Llama with the toy tokenizer) and per
dtype (float32, bfloat16): responses identical to ``model.generate``'s (fp32 must be 100%;
bf16 may differ at near-ties, counted), generated tokens/s of both and their ratio, the
automatic CUDA batch size (``HFBackend.auto_batch_size``), and peak GPU memory. Results go to
stdout and ``OUT/gpu_check.json``.

Not handled: vLLM and multi-GPU (not installed there); LoRA adapters on GPU (the CPU tests
cover the swap logic; add ``--adapter`` runs if a session has time left).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def stop_criteria(tok, stops, prompt_len, batch):
    """lm-eval's rule (``MultiTokenEOSCriteria``): a row is done once the decoded tail of its
    generated tokens holds a stop string; the batch stops when every row is done."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    window = 2 * max((len(s) for s in stops), default=0) + 4

    class Stops(StoppingCriteria):
        def __init__(self):
            self.done = [False] * batch

        def __call__(self, input_ids, scores, **kw):
            tails = tok.batch_decode(input_ids[:, prompt_len:][:, -window:])
            self.done = [d or any(s in t for s in stops) for d, t in zip(self.done, tails)]
            return all(self.done)

    return StoppingCriteriaList([Stops()]) if stops else None


def hf_generate(model, tok, prompts, spec, batch_size):
    """lm-eval hf's shape of work: sorted batches, one ``generate`` call each."""
    import torch

    from sftscale.generation import truncate_at_stop

    tok.padding_side = "left"
    order = sorted(range(len(prompts)), key=lambda i: -len(tok(prompts[i])["input_ids"]))
    out = [None] * len(prompts)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True).to(model.device)
        with torch.inference_mode():
            L = enc["input_ids"].shape[1]
            gen = model.generate(**enc, max_new_tokens=spec.max_new_tokens, do_sample=False,
                                 stopping_criteria=stop_criteria(tok, [x for x in spec.stop if x],
                                                                 L, len(idx)),
                                 pad_token_id=tok.pad_token_id)
        texts = tok.batch_decode(gen[:, L:], skip_special_tokens=True)
        for i, t in zip(idx, texts):
            out[i] = truncate_at_stop(t, spec.stop)
    return out


def random_llama(tok, hidden: int, layers: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=4 * hidden,
                      num_hidden_layers=layers, num_attention_heads=hidden // 64,
                      num_key_value_heads=max(1, hidden // 256), max_position_embeddings=1024,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--n", type=int, default=256, help="prompts per workload")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--random-hidden", type=int, default=1024)
    ap.add_argument("--random-layers", type=int, default=24)
    ap.add_argument("--device", default="cuda", help="cpu: a smoke test of this script only")
    ap.add_argument("--profile", default=None, metavar="MODEL",
                    help="instead: torch.profiler tables of sftscale's generate on MODEL "
                         "(toy-S or toy-M), fp32 then bf16")
    a = ap.parse_args()
    if a.profile:
        return profile(a)

    import torch

    from sftscale.generation import Generator
    from sftscale.models import load_model
    from sftscale.tasks import get_task

    cuda = a.device.startswith("cuda")
    assert torch.cuda.is_available() or not cuda, "no CUDA device"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    report = {"device": torch.cuda.get_device_name(0) if cuda else "cpu",
              "torch": torch.__version__, "runs": []}
    workloads = [("toy-S", "toy-multihop"), ("toy-M", "toy-math"), ("random", "toy-math")]
    for ref, task_name in workloads:
        for dtype in (torch.float32, torch.bfloat16):
            if ref == "random":
                _, tok = load_model("toy-S")
                model = random_llama(tok, a.random_hidden, a.random_layers)
            else:
                model, tok = load_model(ref)
            model = model.to(a.device, dtype=dtype).eval()
            task = get_task(task_name)
            prompts = [task.build_prompt(it, tok, False) for it in task.test_items()[:a.n]]
            spec = task.gen
            gen = Generator((model, tok), batch_size=a.batch_size)
            auto = Generator((model, tok)).backend.auto_batch_size(256 + spec.max_new_tokens)
            gen.generate(prompts[:4], spec)  # warm-up
            hf_generate(model, tok, prompts[:4], spec, a.batch_size)
            sync()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            ours = gen.generate(prompts, spec)
            sync()
            t_ours = time.perf_counter() - t0
            t0 = time.perf_counter()
            theirs = hf_generate(model, tok, prompts, spec, a.batch_size)
            sync()
            t_theirs = time.perf_counter() - t0
            tokens = sum(gen.last["n_tokens"])
            row = {"model": ref, "task": task_name, "dtype": str(dtype).replace("torch.", ""),
                   "prompts": len(prompts), "batch_size": a.batch_size, "auto_batch_size": auto,
                   "identical": sum(x == y for x, y in zip(ours, theirs)), "tokens": tokens,
                   "sftscale_tok_s": tokens / t_ours, "generate_tok_s": tokens / t_theirs,
                   "ratio": t_theirs / t_ours,
                   "peak_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None}
            report["runs"].append(row)
            print(json.dumps(row), flush=True)
            del model, gen
            if cuda:
                torch.cuda.empty_cache()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "gpu_check.json").write_text(json.dumps(report, indent=1))
    bad = [r for r in report["runs"] if r["dtype"] == "float32" and r["identical"] != r["prompts"]]
    sys.exit(1 if bad else 0)


def profile(a: argparse.Namespace) -> None:
    """The ops that take the time in sftscale's decode loop, per dtype (top 15 by self CPU
    time and by device time), to explain a dtype's slowdown."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    from sftscale.generation import Generator
    from sftscale.models import load_model
    from sftscale.tasks import get_task

    task = get_task("toy-multihop")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if a.device == "cuda" else [])
    for dtype in (torch.float32, torch.bfloat16):
        model, tok = load_model(a.profile)
        model = model.to(a.device, dtype=dtype).eval()
        prompts = [task.build_prompt(it, tok, False) for it in task.test_items()[:a.n]]
        gen = Generator((model, tok), batch_size=a.batch_size)
        gen.generate(prompts[:8], task.gen)
        with prof(activities=acts) as p:
            t0 = time.perf_counter()
            gen.generate(prompts, task.gen)
            if a.device == "cuda":
                torch.cuda.synchronize()
        print(f"== {a.profile} {dtype}: {time.perf_counter() - t0:.2f} s, "
              f"stats {json.dumps(gen.backend.stats)}", flush=True)
        for key in ("self_cpu_time_total",) + (("self_device_time_total",)
                                               if a.device == "cuda" else ()):
            print(p.key_averages().table(sort_by=key, row_limit=15, max_name_column_width=48),
                  flush=True)


if __name__ == "__main__":
    main()
