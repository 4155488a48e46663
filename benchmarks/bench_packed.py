"""Packed rows: transformers' block-diagonal packing vs sftscale's segments, same rows and steps.

    .venv/bin/python benchmarks/bench_packed.py [--steps 20] [--rounds 2]

The knowledge stage's facts mix (studies/knowledge-toy.yaml, start ``base``, seed 0: about
10,500 documents of ~25 tokens) packed into 512-token rows, 4 rows per optimizer step, toy-S,
one torch thread. ``peer``: each packed row is one sequence with ``position_ids`` restarting
per document, which transformers turns into a block-diagonal causal mask over the whole row
(the usual way to train on packed rows without attention across documents). ``ours``:
``train.loop`` runs each document of a row as its own sequence, in length-sorted micro-batches
of at most the config's ``micro_batch_tokens`` (1,024) padded tokens. Both take the same loss over the same target
tokens, so the per-step losses must agree (printed); rounds alternate so that load hits both
alike, and the best round of each is reported with the ratio, and tokens/s as a share of this
machine's one-thread fp32 matmul peak (6 * P * T / t; matmul_peak.py).

Not handled: GPUs (varlen flash attention is the GPU's answer to packing), other row lengths.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from matmul_peak import peak_gflops  # noqa: E402


def peer_step_losses(model, rows, steps: int, lr: float) -> tuple[list[float], float, int]:
    """The packed-row reference: each row one sequence with position_ids, same batches,
    optimizer and normalisation as train.loop."""
    import torch

    from sftscale.train.examples import IGNORE, n_targets
    from sftscale.train.loop import LoopConfig, batch_order, lr_at, make_optimizer

    cfg = LoopConfig(steps=steps, lr=lr, batch_size=4, micro_batch_size=4)
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, cfg))
    model.train()
    losses, tokens, t0 = [], 0, time.perf_counter()
    for idx in batch_order(len(rows), cfg.batch_size, cfg.steps, cfg.seed):
        batch = [rows[i] for i in idx]
        L = max(len(r[0]) for r in batch)
        ids = torch.zeros((len(batch), L), dtype=torch.long)
        lab = torch.full((len(batch), L), IGNORE, dtype=torch.long)
        pos = torch.zeros((len(batch), L), dtype=torch.long)
        for k, (x, y, p) in enumerate(batch):
            ids[k, :len(x)], lab[k, :len(y)] = torch.tensor(x), torch.tensor(y)
            pos[k, :len(x)] = torch.tensor(p)
            pos[k, len(x):] = torch.arange(L - len(x))
        n = sum(n_targets(r[1]) for r in batch)
        logits = model(input_ids=ids, position_ids=pos, use_cache=False).logits[:, :-1].float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                                 lab[:, 1:].reshape(-1), ignore_index=IGNORE,
                                                 reduction="sum")
        (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()) / n)
        tokens += sum(len(r[0]) for r in batch)
    return losses, time.perf_counter() - t0, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from sftscale.knowledge.config import load_config
    from sftscale.knowledge.run import MixTask, Start, _source, facts_mix
    from sftscale.models import load_model, resolve_model
    from sftscale.train.examples import build_examples, pack_examples
    from sftscale.train.loop import LoopConfig, train_loop

    root = Path(__file__).resolve().parent.parent
    cfg = load_config(root / "studies" / "knowledge-toy.yaml")
    task = MixTask(facts_mix(_source(cfg), cfg, Start("base", "base", "toy-S"), 0))
    model, tok = load_model(resolve_model("toy-S"), device="cpu", dtype=torch.float32)
    examples, _, _ = build_examples(task, task.train_items(), tok, 512, False)
    rows = pack_examples(examples, 512)
    params = sum(p.numel() for p in model.parameters())
    peak = peak_gflops(threads=1)["best_gflops"]
    best = {"peer": None, "ours": None}
    for r in range(a.rounds):
        for name in ("peer", "ours"):
            m = copy.deepcopy(model)
            if name == "peer":
                losses, sec, tokens = peer_step_losses(m, rows, a.steps, cfg.stage.lr)
            else:
                t0 = time.perf_counter()
                res = train_loop(m, rows, LoopConfig(
                    steps=a.steps, lr=cfg.stage.lr, batch_size=4, micro_batch_size=4,
                    micro_batch_tokens=cfg.stage.recipe.get("micro_batch_tokens")), pad_id=0)
                losses, sec, tokens = res.losses, time.perf_counter() - t0, res.tokens_seen
            print(f"round {r} {name:5s} {sec / a.steps * 1e3:7.1f} ms/step  {tokens / sec:7.0f} tok/s  "
                  f"last loss {losses[-1]:.6f}", flush=True)
            if best[name] is None or sec < best[name][0]:
                best[name] = (sec, tokens, losses)
    (ps, pt, pl), (os_, ot, ol) = best["peer"], best["ours"]
    diff = max(abs(x - y) for x, y in zip(pl, ol))
    for name, (sec, tok_, _) in best.items():
        gf = 6 * params * tok_ / sec / 1e9
        print(f"{name:5s} best {tok_ / sec:7.0f} tok/s = {gf:5.1f} GFLOP/s = {100 * gf / peak:4.1f}% "
              f"of the one-thread peak ({peak:.0f} GFLOP/s)")
    print(f"ratio (ours / peer tokens/s): {(ot / os_) / (pt / ps):.2f}x; "
          f"largest per-step loss difference {diff:.2e}")


if __name__ == "__main__":
    main()
