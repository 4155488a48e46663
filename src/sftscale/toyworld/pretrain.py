"""Pretraining of the tiny toy base models with THE shared loop (``sftscale.train.loop.train_loop``).

``pretrain_toy(size, out, seed=0)`` draws the world (seed 0 by default: the shipped models and
the toy tasks share it), builds the tokenizer and a corpus of exactly ``steps * batch * seq_len``
tokens (documents joined by ``<|endoftext|>`` and cut into ``seq_len`` chunks, loss on every
token), initialises a ``LlamaForCausalLM`` with tied embeddings from the seed, trains, tracks
prose fact recall during training, and saves ``config.json``, ``model.safetensors``, the
tokenizer files and ``toy_meta.json`` (seed, steps, tokens, time, recall history, and
``sft_defaults``: the size's finetuning defaults).

``fact_recall(model, tok, facts)`` is the recall measure: the share of (subject, relation,
object) facts whose canonical cloze prefix (``"Ada Baker was born in"``) is continued greedily
with the object's token.

Not handled: GPUs (runs wherever the model is; pretraining is meant for the CPU), resuming.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from ..events import ProgressEvent
from ..io import atomic_write_json

SIZES: dict[str, dict[str, int]] = {
    "S": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512),
    "M": dict(hidden_size=192, num_hidden_layers=5, num_attention_heads=6, intermediate_size=768),
    "L": dict(hidden_size=256, num_hidden_layers=8, num_attention_heads=8, intermediate_size=1024),
}
# Pretraining recipe per size (prototype: lr 3e-3, wd 0.1, betas (0.9, 0.98), warm-up 100).
RECIPES: dict[str, dict[str, Any]] = {
    "S": dict(steps=2400, lr=3e-3),
    "M": dict(steps=2400, lr=2e-3),
    "L": dict(steps=1500, lr=1.5e-3),
}
# Finetuning defaults per size, over the shared ``TOY_SFT_DEFAULTS``: chosen by
# studies/toy-recipe-search.yaml (docs/toy-models.md) and written into each model's
# ``toy_meta.json`` as ``sft_defaults`` (read by ``toyworld.toy_sft_defaults``).
SFT_DEFAULTS: dict[str, dict[str, Any]] = {"S": {"lr": 5e-4}, "M": {"lr": 5e-4}, "L": {}}
BATCH, SEQ_LEN = 16, 128


def model_config(size: str, vocab_size: int, pad_id: int, eos_id: int):
    from transformers import LlamaConfig

    if size not in SIZES:
        raise ValueError(f"unknown toy size {size!r}; known: {', '.join(SIZES)}")
    s: dict[str, Any] = SIZES[size]  # LlamaConfig keyword arguments
    return LlamaConfig(vocab_size=vocab_size, num_key_value_heads=s["num_attention_heads"],
                       max_position_embeddings=512, tie_word_embeddings=True, pad_token_id=pad_id,
                       bos_token_id=eos_id, eos_token_id=eos_id, rms_norm_eps=1e-5, **s)


def pack(tok, docs: list[str], seq_len: int, n_chunks: int) -> list[list[int]]:
    """Token stream of ``docs`` joined by eos, cut into ``n_chunks`` chunks of ``seq_len``."""
    enc = tok(docs, add_special_tokens=False)["input_ids"]
    stream: list[int] = []
    for ids in enc:
        stream.extend(ids)
        stream.append(tok.eos_token_id)
    chunks = [stream[i:i + seq_len] for i in range(0, len(stream) - seq_len + 1, seq_len)]
    if len(chunks) < n_chunks:
        raise ValueError(f"corpus too short: {len(chunks)} chunks < {n_chunks}")
    return chunks[:n_chunks]


def fact_recall(model, tok, facts: list[tuple[str, str, str]], batch_size: int = 64) -> float:
    """Share of facts whose cloze prefix is continued greedily by the object's first token."""
    import torch

    from .world import cloze

    if not facts:
        return float("nan")
    hits = 0
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    old_side = tok.padding_side
    tok.padding_side = "left"
    try:
        for i in range(0, len(facts), batch_size):
            part = facts[i:i + batch_size]
            enc = tok([cloze(s, r) for s, r, _ in part], return_tensors="pt", padding=True,
                      add_special_tokens=False).to(device)
            with torch.no_grad():
                logits = model(**enc).logits[:, -1, :]
            pred = logits.argmax(-1).tolist()
            gold = [tok(" " + o, add_special_tokens=False)["input_ids"][0] for _, _, o in part]
            hits += sum(int(p == g) for p, g in zip(pred, gold))
    finally:
        tok.padding_side = old_side
        if was_training:
            model.train()
    return hits / len(facts)


def recall_sets(world, n: int = 150, seed: int = 0) -> dict[str, list[tuple[str, str, str]]]:
    """Samples of corpus person facts, held-out person facts and entity facts."""
    rng = random.Random(f"recall-{seed}")
    corpus = world.person_facts(world.corpus_people)
    held = world.person_facts(world.heldout_people)
    ent = world.entity_facts()
    return {"corpus": rng.sample(corpus, min(n, len(corpus))),
            "heldout": rng.sample(held, min(n, len(held))),
            "entity": rng.sample(ent, min(n, len(ent)))}


def pretrain_toy(size: str, out: str | Path, seed: int = 0, steps: int | None = None,
                 world_seed: int = 0, eval_every: int = 200, shares: dict | None = None,
                 threads: int | None = None, log=print, command: str | None = None) -> dict:
    """Pretrain one toy size into ``out``; returns the meta dict written to ``toy_meta.json``."""
    import torch

    from ..train.loop import LoopConfig, train_loop
    from .corpus import MATH_TEST_RESERVE, build_corpus, math_test_problems
    from .tokenizer import build_tokenizer, save_tokenizer
    from .world import World

    if threads:
        torch.set_num_threads(threads)
    recipe = dict(RECIPES[size])
    if steps is not None:
        recipe["steps"] = steps
    out = Path(out)
    t_start = time.perf_counter()
    world = World.generate(world_seed)
    tok = build_tokenizer()
    n_chunks = recipe["steps"] * BATCH
    excl = {p.key() for p in math_test_problems(MATH_TEST_RESERVE, world_seed)}
    docs, stats = build_corpus(world, int(n_chunks * SEQ_LEN * 1.02) + 1000, seed=seed,
                               shares=shares, exclude_math=excl)
    chunks = pack(tok, docs, SEQ_LEN, n_chunks)
    examples = [(c, c) for c in chunks]
    log(f"[toy-{size}] corpus {stats['tokens']} tokens, {stats['docs']} docs, "
        f"{len(examples)} chunks of {SEQ_LEN}; built in {time.perf_counter() - t_start:.1f}s")

    torch.manual_seed(seed)
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(model_config(size, len(tok), tok.pad_token_id, tok.eos_token_id))
    n_params = sum(p.numel() for p in model.parameters())
    log(f"[toy-{size}] {n_params} parameters")
    cfg = LoopConfig(steps=recipe["steps"], lr=recipe["lr"], batch_size=BATCH, micro_batch_size=BATCH,
                     warmup_steps=100, schedule="cosine", min_lr_ratio=0.1, weight_decay=0.1,
                     betas=(0.9, 0.98), max_grad_norm=1.0, seed=seed)
    rsets = recall_sets(world)
    history: list[dict] = []
    t0 = time.perf_counter()

    def on_progress(ev: ProgressEvent) -> None:
        s, loss = ev.done, ev.metrics["loss"]
        if s % eval_every == 0 or s == cfg.steps:
            rec = {k: round(fact_recall(model, tok, v), 4) for k, v in rsets.items()}
            history.append({"step": s, "loss": round(loss, 4), "time_s": round(time.perf_counter() - t0, 1), **rec})
            log(f"[toy-{size}] step {s}/{cfg.steps} loss {loss:.3f} recall corpus {rec['corpus']:.3f} "
                f"entity {rec['entity']:.3f} heldout {rec['heldout']:.3f} ({time.perf_counter() - t0:.0f}s)")

    res = train_loop(model, examples, cfg, pad_id=tok.pad_token_id, progress=on_progress)
    final = history[-1] if history else {}
    meta = {"name": f"toy-{size}", "size": size, "seed": seed, "world_seed": world_seed,
            "command": command, "corpus_version": 3,
            "parameters": n_params, "steps": res.steps, "tokens": res.tokens_seen,
            "train_time_s": round(res.wall_s, 1), "total_time_s": round(time.perf_counter() - t_start, 1),
            "torch_threads": torch.get_num_threads(), "loop": cfg.to_dict(), "corpus": stats,
            "final_loss": round(res.losses[-1], 4), "recall": {k: final.get(k) for k in rsets},
            "recall_history": history, "vocab_size": len(tok), "sft_defaults": SFT_DEFAULTS[size]}
    out.mkdir(parents=True, exist_ok=True)
    model.config.use_cache = True
    model.save_pretrained(str(out), safe_serialization=True)
    save_tokenizer(out, tok)
    atomic_write_json(out / "toy_meta.json", meta)
    log(f"[toy-{size}] saved to {out}: {json.dumps(meta['recall'])}")
    return meta
