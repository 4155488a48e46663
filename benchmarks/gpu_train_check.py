"""One prepared check of multi-process training (and vLLM parity) for a machine lent GPUs.

    PYTHONPATH=src python3 benchmarks/gpu_train_check.py --out $OUT           # GPUs: ~3-5 min
    PYTHONPATH=src python3 benchmarks/gpu_train_check.py --device cpu --out /tmp/x  # gloo smoke

On a random Llama with the toy tokenizer (``--hidden``/``--layers``; default ~0.1B on a GPU,
tiny on the CPU) and the toy-math task, through ``train.launch.train_cell_launched`` (the path a
study's cells take):

1. one process, full finetuning and LoRA: steps, tokens/s, MFU (6 x params x tokens/s over
   the GPU's peak bf16 FLOP/s, ``plan.check.GPUS``; trainable-only work is not subtracted for
   LoRA, so its MFU is an upper bound), peak memory;
2. DDP and FSDP (torch FSDP2) with one process per visible GPU (``--device cpu``: 2 gloo
   processes), full finetuning, same effective batch: the largest relative difference of the
   per-step losses against the one-process run, tokens/s, MFU;
3. the planner's GPU constants (``plan/gpu_calibration.json``, a copy in ``--out``):
   ``gpucal.measure_train_mfu`` on a random slice of an 8B-shaped Llama (``--cal-hidden`` 4096,
   ``--cal-layers`` 8, intermediate 14336, 32 heads, 8 KV heads, vocab 32000; 8 x 512 random
   tokens a step), full finetuning and LoRA. Not the toy runs of 1.: their ~50-token examples
   measure launch overhead, not what a 7-8B study's steps cost;
4. vLLM generation parity: greedy vLLM vs greedy ``transformers`` ``generate`` on the fully
   finetuned checkpoint's toy-math prompts (identical responses counted); skipped with a note
   when vllm is not installed.

Everything goes to stdout and ``OUT/gpu_train_check.json``. Not handled: multi-node runs,
LoRA under FSDP with a bf16 base (add a run if a session has time), vLLM tensor parallelism.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def peak_flops() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    from sftscale.plan.check import GPUS

    name = torch.cuda.get_device_name(0).upper().replace(" ", "").replace("-", "")
    return next((v[0] for k, v in GPUS.items() if k.upper() in name), None)


def run(model: Path, out: Path, world: int, recipe: dict, steps: int) -> dict:
    from sftscale.train.launch import train_cell_launched

    t0 = time.perf_counter()
    meta = train_cell_launched(str(model), "toy-math", 8 * steps, 0, out,
                               recipe={**recipe, "min_steps": steps, "max_steps": steps},
                               world=world)
    peak = peak_flops()
    tps = meta.get("tokens_per_s") or 0.0
    return {"world": world, "sharding": meta.get("sharding"), "method": recipe["method"],
            "steps": meta["steps"], "losses": meta["loss_curve"], "tokens_per_s": tps,
            "params": meta["params"], "device": meta["device"], "dtype": meta["dtype"],
            "mfu": 6 * meta["params"] * tps / (peak * world) if peak else None,
            "wall_s": time.perf_counter() - t0}


def rel_diff(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / abs(x) for x, y in zip(a, b))


def vllm_parity(ckpt: Path, n: int = 16) -> dict:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return {"skipped": "vllm is not installed"}
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from vllm import LLM, SamplingParams

    from sftscale.tasks import get_task

    task = get_task("toy-math")
    tok = AutoTokenizer.from_pretrained(ckpt)
    prompts = [task.build_prompt(it, tok, False) for it in task.test_items()[:n]]
    llm = LLM(str(ckpt), dtype="float32", gpu_memory_utilization=0.3, enforce_eager=True)
    got = [o.outputs[0].text for o in llm.generate(prompts, SamplingParams(temperature=0,
                                                                          max_tokens=16))]
    del llm
    m = AutoModelForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float32).cuda().eval()
    ref = []
    for p in prompts:
        ids = tok(p, return_tensors="pt").input_ids.cuda()
        o = m.generate(ids, max_new_tokens=16, do_sample=False)
        ref.append(tok.decode(o[0, ids.shape[1]:], skip_special_tokens=True))
    same = sum(a == b for a, b in zip(got, ref))
    return {"prompts": len(prompts), "identical": same}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--out", default="gpu_train_check_out")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--hidden", type=int, default=None)
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--cal-hidden", type=int, default=4096)
    ap.add_argument("--cal-layers", type=int, default=8)
    a = ap.parse_args()
    import torch

    from sftscale.testing import tiny_model

    if a.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu for the gloo smoke test")
        return 1
    if a.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    gpu = a.device == "cuda"
    world = torch.cuda.device_count() if gpu else 2
    steps = a.steps or (20 if gpu else 3)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-train-check-"))
    model = tiny_model(work / "model", kind="toy", hidden=a.hidden or (768 if gpu else 32),
                       layers=a.layers or (12 if gpu else 2))
    base = dict(epochs=1, batch_size=8 * max(1, world), micro_batch_size=8, max_length=256,
                lr=1e-4, warmup_steps=0)
    report: dict = {"device": torch.cuda.get_device_name(0) if gpu else "cpu", "world": world,
                    "torch": torch.__version__, "runs": {}}
    runs = [("single_full", 1, {"method": "full"}), ("single_lora", 1, {"method": "lora"})]
    if world > 1:
        runs += [("ddp_full", world, {"method": "full", "sharding": "ddp"}),
                 ("fsdp_full", world, {"method": "full", "sharding": "fsdp"})]
    for name, w, rec in runs:
        try:
            if gpu:
                torch.cuda.reset_peak_memory_stats()
            r = run(model, work / name, w, {**base, **rec}, steps)
            if gpu and w == 1:
                r["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 1e9
        except Exception as e:  # noqa: BLE001 - report every part
            r = {"error": f"{type(e).__name__}: {str(e)[:1500]}"}
        report["runs"][name] = r
        if "losses" in r and name != "single_full" and "losses" in report["runs"]["single_full"] \
                and rec["method"] == "full":
            r["max_rel_loss_diff_vs_single"] = rel_diff(report["runs"]["single_full"]["losses"],
                                                        r["losses"])
        print(name, json.dumps({k: v for k, v in r.items() if k != "losses"}), flush=True)
    report["vllm"] = (vllm_parity(work / "single_full" / "ckpt") if gpu
                      else {"skipped": "no GPU"})
    print("vllm", json.dumps(report["vllm"]), flush=True)
    (out / "gpu_train_check.json").write_text(json.dumps(report, indent=2))
    if gpu:  # the planner's GPU constants (plan/gpu_calibration.json), copied to --out too
        from sftscale.plan.check import GPUS
        from sftscale.plan.gpucal import write_gpu_calibration

        name = report["device"]
        key = next((k for k in GPUS if k.lower() in name.lower()), name)
        mfu = {m: calibration_mfu(a.cal_hidden, a.cal_layers, m == "lora")
               for m in ("lora", "full")}
        report["calibration"] = {"gpu": key, "hidden": a.cal_hidden, "layers": a.cal_layers,
                                 "mfu": mfu}
        (out / "gpu_train_check.json").write_text(json.dumps(report, indent=2))
        cal = write_gpu_calibration(
            key, mfu_lora=mfu["lora"], mfu_full=mfu["full"],
            source=f"benchmarks/gpu_train_check.py on {name}: random Llama slice, hidden "
                   f"{a.cal_hidden}, {a.cal_layers} layers, 8 x 512 tokens a step, bf16 autocast")
        (out / cal.name).write_text(cal.read_text())
        print("calibration", key, json.dumps(mfu), flush=True)
    return 0


def calibration_mfu(hidden: int, layers: int, lora: bool) -> float:
    """``gpucal.measure_train_mfu`` on a random ``layers``-deep slice of an 8B-shaped Llama."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from sftscale.plan.gpucal import measure_train_mfu

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32000, hidden_size=hidden, intermediate_size=hidden * 7 // 2,
                      num_hidden_layers=layers, num_attention_heads=hidden // 128,
                      num_key_value_heads=max(1, hidden // 512), max_position_embeddings=2048)
    model = LlamaForCausalLM(cfg).cuda()
    try:
        return measure_train_mfu(model, peak_flops(), lora, seq_len=512, batch=8, steps=8)
    finally:
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
