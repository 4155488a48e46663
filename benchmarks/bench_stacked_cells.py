"""K toy cells trained as ONE stacked model vs one after another (issue 32), one thread each.

    .venv/bin/python benchmarks/bench_stacked_cells.py [--ks 2 4] [--steps 20] [--warm 3]
        [--check-steps 10] [--procs 1 2] [--rounds 2] [--impl hand|vmap]

Cells: toy-S on toy-math with the demo's recipe (``default_recipe("toy-S")`` + studies/toy.yaml's
``micro_batch_tokens: 1024``: batch 16, lr 5e-4, AdamW, grad clip 1.0), the first K of
(N, seed) = (1024, 0), (1024, 1), (512, 0), (512, 1), each on its own subset and batch order
exactly as ``train.cell`` draws them (``split_pool`` minus the 64 validation items).

- ``sep`` (today): each cell is a copy of toy-S trained by ``train.loop.train_loop``, one cell
  after another.
- ``stacked``: the K cells' parameters stacked along a new first axis (``[K, ...]`` leaves) and
  trained as one model: every step takes each cell's own 16 examples, sorted by length, in
  micro-batches of the loop's rule (at most 1,024 padded tokens a cell) over the longest of the
  K cells' j-th examples, right-padded to one length across cells; one forward + backward per
  micro-batch for all K (batched matmuls over the cell axis; ``hand``: a Llama forward written
  on the stacked weights, attention over K x B sequences in one SDPA call, the lm head and loss
  cell by cell; ``vmap``: ``torch.func.functional_call`` of the transformers model under
  ``torch.vmap``), each cell's loss normalised by its own target tokens, gradient clipping by
  each cell's own global norm, one AdamW over the stacked tensors (elementwise, so per-cell
  AdamW exactly).

First a check: ``--check-steps`` steps of both, the largest difference of the per-cell losses.
Then timing: after a warm-up run of ``--warm`` steps, ``--steps`` steps per cell, the two sides
in turn for ``--rounds`` rounds (other load hits both alike); with ``--procs 2`` two processes
(one thread each, every timed run started together behind a barrier) each run the same K
cells, which is how the study runner uses this 2-core machine. Throughput is cell-steps per
second for the whole machine, by wall (a round's wall: the slower process) and by CPU time
(the sum over the processes of cell-steps per CPU-second: what the machine gives when nothing
else runs on it; robust to a third process taking turns on the cores, not to its use of the
memory bus); the ratio is stacked / sep of the best rounds.

Not handled: early stopping's validation passes (not timed on either side), cells of different
step budgets, N or tasks in one stack, LoRA cells, GPUs.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from typing import Any

CELLS = [(1024, 0), (1024, 1), (512, 0), (512, 1)]


def setup(k: int) -> tuple[Any, Any, list, Any]:
    """(toy-S, its tokenizer, the rows of the first ``k`` cells, a LoopConfig maker)."""
    import torch

    torch.set_num_threads(1)
    from sftscale.models import load_model, resolve_model
    from sftscale.tasks import get_task
    from sftscale.train.examples import build_examples, split_pool
    from sftscale.train.loop import LoopConfig
    from sftscale.train.recipe import VAL_SEED, default_recipe, val_count

    rec = default_recipe("toy-S")
    model, tok = load_model(resolve_model("toy-S"), device="cpu", dtype=torch.float32)
    task = get_task("toy-math")
    items = task.train_items()
    by_id = {it.id: it for it in items}
    rows = []
    for n, seed in CELLS[:k]:
        sub, _ = split_pool(list(by_id), n, seed, val_count(rec), VAL_SEED)
        rows.append(build_examples(task, [by_id[i] for i in sub], tok, rec.max_length, rec.chat)[0])

    def cfg(steps: int, seed: int) -> Any:
        return LoopConfig(steps=steps, lr=rec.lr, batch_size=rec.batch_size,
                          micro_batch_size=rec.micro_batch_size, micro_batch_tokens=1024,
                          betas=tuple(rec.betas), max_grad_norm=rec.max_grad_norm, seed=seed,
                          weight_decay=rec.weight_decay, schedule=rec.schedule)
    return model, tok, rows, cfg


def run_sep(model: Any, rows: list, cfg: Any, steps: int) -> tuple[list[list[float]], float, float]:
    """Today: each cell through train_loop, one after another. (per-cell losses, wall seconds,
    this process's CPU seconds)."""
    from sftscale.train.loop import train_loop

    copies = [copy.deepcopy(model) for _ in rows]
    t0, c0_ = time.perf_counter(), time.process_time()
    losses = [train_loop(m, r, cfg(steps, s), pad_id=0).losses
              for m, r, (_, s) in zip(copies, rows, CELLS)]
    return losses, time.perf_counter() - t0, time.process_time() - c0_


def stacked_loss_hand(model: Any, p: dict, ids: Any, labels: Any, start: int) -> Any:
    """Per-cell summed next-token loss ``[K]`` of toy-S's Llama forward on stacked weights ``p``
    (``[K, ...]``); ``ids``/``labels`` ``[K, B, L]``, logits from position ``start`` on."""
    import torch
    import torch.nn.functional as F
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    c = model.config
    K, B, L = ids.shape
    nh, hd, eps = c.num_attention_heads, c.hidden_size // c.num_attention_heads, c.rms_norm_eps
    emb = p["model.embed_tokens.weight"]  # [K, V, H], tied to the lm head
    x = F.embedding(ids + torch.arange(K).view(K, 1, 1) * emb.size(1), emb.flatten(0, 1))
    x = x.reshape(K, B * L, -1)
    cos, sin = model.model.rotary_emb(x, torch.arange(L).unsqueeze(0))

    def norm(h: Any, w: Any) -> Any:
        return w.unsqueeze(1) * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps))

    def lin(h: Any, w: Any) -> Any:
        return torch.bmm(h, w.transpose(1, 2))

    def heads(h: Any) -> Any:
        return h.view(K * B, L, nh, hd).transpose(1, 2)

    for i in range(c.num_hidden_layers):
        w = {k.split(f"layers.{i}.", 1)[1]: v for k, v in p.items() if f"layers.{i}." in k}
        h = norm(x, w["input_layernorm.weight"])
        q, k = apply_rotary_pos_emb(heads(lin(h, w["self_attn.q_proj.weight"])),
                                    heads(lin(h, w["self_attn.k_proj.weight"])), cos, sin)
        a = F.scaled_dot_product_attention(q, k, heads(lin(h, w["self_attn.v_proj.weight"])),
                                           is_causal=True)
        x = x + lin(a.transpose(1, 2).reshape(K, B * L, -1), w["self_attn.o_proj.weight"])
        h = norm(x, w["post_attention_layernorm.weight"])
        g = F.silu(lin(h, w["mlp.gate_proj.weight"])) * lin(h, w["mlp.up_proj.weight"])
        x = x + lin(g, w["mlp.down_proj.weight"])
    x = norm(x, p["model.norm.weight"]).view(K, B, L, -1)[:, :, start:L - 1]
    # the lm head and loss cell by cell: a [K, B*L, V] bmm and log-softmax fall out of cache
    # (37 vs 25 ms for K = 4 in one bmm vs four mm on this CPU)
    return torch.stack([F.cross_entropy(F.linear(x[k].reshape(-1, x.size(-1)), emb[k]),
                                        labels[k, :, start + 1:].reshape(-1), ignore_index=-100,
                                        reduction="sum") for k in range(K)])


def stacked_loss_vmap(model: Any, p: dict, ids: Any, labels: Any, start: int) -> Any:
    """The same through ``torch.vmap`` of ``functional_call`` on the transformers model."""
    import torch
    import torch.nn.functional as F

    def one(pk: dict, i: Any, y: Any) -> Any:
        out = torch.func.functional_call(model, pk, (), {"input_ids": i, "use_cache": False,
                                                         "logits_to_keep": i.size(1) - start})
        lg = out.logits[:, :-1]
        return F.cross_entropy(lg.reshape(-1, lg.size(-1)), y[:, start + 1:].reshape(-1),
                               ignore_index=-100, reduction="sum")
    return torch.vmap(one)(p, ids, labels)


def run_stacked(model: Any, rows: list, cfg: Any, steps: int, impl: str = "hand"
                ) -> tuple[list[list[float]], float, float]:
    """The K cells as one stacked model. (per-cell losses, wall seconds, CPU seconds)."""
    import torch

    from sftscale.train.examples import n_targets
    from sftscale.train.loop import batch_order, collate, lr_at, split_micro

    K = len(rows)
    skel = copy.deepcopy(model).train()
    p = {k: v.detach().unsqueeze(0).repeat(K, *[1] * v.ndim).requires_grad_()
         for k, v in skel.named_parameters()}
    c0 = cfg(steps, 0)
    decay = [v for k, v in p.items() if v.ndim > 2 and "norm" not in k.lower()]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": c0.weight_decay},
                             {"params": [v for v in p.values() if all(v is not d for d in decay)],
                              "weight_decay": 0.0}], lr=c0.lr, betas=c0.betas, foreach=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, c0))
    orders = [batch_order(len(r), c0.batch_size, steps, s) for r, (_, s) in zip(rows, CELLS)]
    fwd = stacked_loss_hand if impl == "hand" else stacked_loss_vmap
    params = list(p.values())
    losses: list[list[float]] = [[] for _ in rows]
    t0, c0_ = time.perf_counter(), time.process_time()
    for step in range(steps):
        exs = [sorted((r[i] for i in o[step]), key=lambda e: len(e[0])) for r, o in zip(rows, orders)]
        n_tgt = torch.tensor([sum(n_targets(e[1]) for e in cell) for cell in exs], dtype=torch.float32)
        loss = torch.zeros(K)
        # micro-batches as train_loop forms them, on the longest of the K cells' j-th examples
        for mb_pos in split_micro([max(len(c[j][0]) for c in exs) for j in range(len(exs[0]))],
                                  c0.micro_batch_size, c0.micro_batch_tokens):
            mb = collate([c[j] for c in exs for j in mb_pos], 0)
            ids = mb["input_ids"].view(K, len(mb_pos), -1)
            labels = mb["labels"].view(K, len(mb_pos), -1)
            cols = (labels[:, :, 1:] != -100).flatten(0, 1).any(0).nonzero()
            part = fwd(skel, p, ids, labels, int(cols[0]))
            (part / n_tgt).sum().backward()
            loss += part.detach()
        if c0.max_grad_norm:  # each cell's own global norm (torch's clip_grad_norm_ per cell)
            norms = torch.stack([g.grad.view(K, -1).pow(2).sum(1) for g in params]).sum(0).sqrt()
            coef = (c0.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
            for g in params:
                g.grad.mul_(coef.view(K, *[1] * (g.ndim - 1)))
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        for k, v in enumerate((loss.double() / n_tgt.double()).tolist()):
            losses[k].append(v)
    return losses, time.perf_counter() - t0, time.process_time() - c0_


def rounds(k: int, steps: int, warm: int, impl: str, n_rounds: int, barrier: Any = None,
           queue: Any = None) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of ``steps`` steps of the first K cells, each side in turn for ``n_rounds``
    rounds (so that other load on the machine hits both alike), after a warm-up run of each;
    with ``barrier`` every timed run starts when the other process's does."""
    model, _, rows, cfg = setup(k)
    runs = {"sep": run_sep, "stacked": lambda m, r, c, s: run_stacked(m, r, c, s, impl)}
    out: dict[str, list[tuple[float, float]]] = {side: [] for side in runs}
    for run in runs.values():
        run(model, rows, cfg, warm)
    for _ in range(n_rounds):
        for side, run in runs.items():
            if barrier is not None:
                barrier.wait()
            out[side].append(run(model, rows, cfg, steps)[1:])
    if queue is not None:
        queue.put(out)
    return out


def two_procs(k: int, steps: int, warm: int, impl: str, n_rounds: int) -> list[dict]:
    """``rounds`` in two one-thread processes at once: each process's (wall, CPU) seconds."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=rounds, args=(k, steps, warm, impl, n_rounds, barrier, queue))
             for _ in range(2)]
    for pr in procs:
        pr.start()
    got = [queue.get() for _ in procs]
    for pr in procs:
        pr.join()
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warm", type=int, default=3)
    ap.add_argument("--check-steps", type=int, default=10)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--impl", choices=["hand", "vmap"], default="hand")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    if a.check_steps:
        model, _, rows, cfg = setup(max(a.ks))
        ls = run_sep(model, rows, cfg, a.check_steps)[0]
        lk = run_stacked(model, rows, cfg, a.check_steps, a.impl)[0]
        diff = max(abs(x - y) for s, t in zip(ls, lk) for x, y in zip(s, t))
        print(f"check: {len(rows)} cells x {a.check_steps} steps, largest per-cell loss difference "
              f"stacked vs sep {diff:.2e} (step-1 losses {[round(s[0], 4) for s in ls]}, "
              f"last {[round(s[-1], 4) for s in ls]})", flush=True)
        if not math.isfinite(diff) or diff > 1e-3:
            raise SystemExit("stacked losses differ from the separate runs'")
    for procs in a.procs:
        for k in a.ks:
            per = ([rounds(k, a.steps, a.warm, a.impl, a.rounds)] if procs == 1
                   else two_procs(k, a.steps, a.warm, a.impl, a.rounds))
            best: dict[str, tuple[float, float]] = {}
            for side in ("sep", "stacked"):
                rates = [(procs * k * a.steps / max(p[side][r][0] for p in per),
                          sum(k * a.steps / p[side][r][1] for p in per)) for r in range(a.rounds)]
                best[side] = (max(w for w, _ in rates), max(c for _, c in rates))
                print(f"procs {procs} K {k} {side:7s} cell-steps/s by wall, by CPU: "
                      + "  ".join(f"{w:5.2f} {c:5.2f}" for w, c in rates)
                      + f"; best {best[side][0]:5.2f} {best[side][1]:5.2f} "
                      f"({1e3 * procs / best[side][1]:5.1f} CPU-ms per cell-step)", flush=True)
            print(f"procs {procs} K {k} ratio stacked / sep (best rounds): by wall "
                  f"{best['stacked'][0] / best['sep'][0]:.2f}x, by CPU "
                  f"{best['stacked'][1] / best['sep'][1]:.2f}x", flush=True)

if __name__ == "__main__":
    main()
