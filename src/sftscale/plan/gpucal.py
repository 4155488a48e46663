"""The GPU constants of ``sftscale plan --gpu``: training MFU per GPU, measured by the prepared
GPU check and kept in ``gpu_calibration.json`` beside this module (shipped in the package).

``gpu_mfu(gpu, method)`` reads it (the GPU's entry, else ``default``); ``write_gpu_calibration``
is what a GPU script calls after measuring (``measure_train_mfu``: real optimizer steps of a
model through ``train.loop``, MFU = 6·params·tokens / (seconds · peak FLOP/s); for LoRA the same
6·P·T numerator, so LoRA's MFU is the planner's effective rate, not hardware utilisation).

Measured so far: H200 (2026-11-30; full 0.339, LoRA 0.499 on an 8B-shaped slice,
docs/benchmarks.md "GPU"). Every other GPU gets the UNMEASURED DEFAULT (``measured: false``,
MFU 0.35) until a session with that GPU runs ``benchmarks/gpu_train_check.py`` and commits the
file it rewrites (a copy comes back in its ``--out`` folder).

Not handled: multi-GPU scaling (the planner assumes ideal scaling), decode efficiency (the
planner bounds decoding by memory bandwidth instead).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

CAL_FILE = Path(__file__).with_name("gpu_calibration.json")
FALLBACK_MFU = 0.35


def _load(path: Path = CAL_FILE) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"default": {"mfu_lora": FALLBACK_MFU, "mfu_full": FALLBACK_MFU}, "gpus": {}}


def gpu_mfu(gpu: str | None, method: str = "lora", path: Path = CAL_FILE) -> float:
    """The MFU the planner assumes on ``gpu`` for ``method`` (lora or full)."""
    d = _load(path)
    e = d.get("gpus", {}).get(gpu or "", {}) or d.get("default", {})
    return float(e.get(f"mfu_{method}") or d.get("default", {}).get(f"mfu_{method}") or FALLBACK_MFU)


def write_gpu_calibration(gpu: str, mfu_lora: float | None = None, mfu_full: float | None = None,
                          source: str = "", path: Path = CAL_FILE) -> Path:
    """Record measured MFUs for ``gpu`` (a key of plan.GPUS, e.g. "H100", "H200")."""
    d = _load(path)
    e = dict(d.setdefault("gpus", {}).get(gpu, {}))
    if mfu_lora is not None:
        e["mfu_lora"] = round(float(mfu_lora), 4)
    if mfu_full is not None:
        e["mfu_full"] = round(float(mfu_full), 4)
    e.update(measured=True, source=source, at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    d["gpus"][gpu] = e
    path.write_text(json.dumps(d, indent=2) + "\n")
    return path


def measure_train_mfu(model: Any, peak_flops: float, lora: bool, seq_len: int = 512,
                      batch: int = 8, steps: int = 6) -> float:
    """MFU of ``steps`` real optimizer steps (after one warm-up) on random tokens of
    ``batch`` x ``seq_len``; ``model`` is a causal LM on its device (wrapped in LoRA here when
    ``lora``), in fp32 with bf16 autocast on CUDA, as ``train.loop`` runs it there."""
    import contextlib

    import torch

    from ..models import attention_backends
    from ..train.loop import LoopConfig, make_optimizer, token_loss_sum

    n_params = sum(p.numel() for p in model.parameters())
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=32, lora_alpha=64, target_modules="all-linear"))
    dev = next(model.parameters()).device
    opt = make_optimizer(model, LoopConfig(steps=steps + 1))
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, seq_len), device=dev)
    b = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda"
           else contextlib.nullcontext())

    def step() -> None:
        with amp, attention_backends(dev):
            loss, n = token_loss_sum(model, b)
        (loss / max(1, n)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    return 6 * n_params * batch * seq_len * steps / (secs * peak_flops)


__all__ = ["CAL_FILE", "gpu_mfu", "measure_train_mfu", "write_gpu_calibration"]
