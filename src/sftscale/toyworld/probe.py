"""Learnability probe of a toy model: finetune on N task examples, generate greedily, score.

A small self-contained check used to measure the shipped models (docs/toy-models.md); it
finetunes with the model's own defaults (``toy_sft_defaults``). The real study path is
``train.train_cell`` + ``generation`` + ``evaluation``. Finetuning goes through THE shared loop
(``train.loop.train_loop``) and THE steps rule (``train.recipe.steps_for``) with the loss on
completion tokens only (prompt labels ``IGNORE``) and an end-of-text token after each
completion. Unlike ``train_cell``, prompts are tokenised without special tokens and the subset is
``random.Random(f"probe-{seed}").sample`` (the measurements in the docs were made so).

``probe(model_ref, task, ns, seeds, **overrides)`` finetunes with the model's own defaults
(``toy_sft_defaults``) and the given Recipe-field overrides; it returns one row per (n, seed)
with format_rate and accuracy; n = 0 is the base model zero-shot.

``indistinct_pairs(prompts, model_dirs)`` finds prompts a model cannot tell apart: two prompts
that differ in one token only, where that token pair has (nearly) the same input embedding.
A word that never occurs in pretraining gets only the common push of the softmax through the
tied embeddings, so all such words end up on one vector (cosine 0.998 between " plus" and
" minus" in both shipped models, footguns: "A task word the corpus never shows"). A task whose
prompts differ only in such words makes finetuning teach the words, not the format.

``name_errors(samples, world)`` sorts a toy task's wrong answers by whether the response
renamed the person the prompt asks about (the full name is missing, another corpus person of
the same first name is written instead: "Inga Irwin" -> "Inga Young was born in Korvo."), the
toy's name-binding failure (docs/footguns.md).

Not handled: LoRA, chat templates, batching beyond one padded batch per generation chunk,
sampling (greedy only); in ``indistinct_pairs``, prompts that differ in more than one position;
in ``name_errors``, prompts about no person or about two (the first full name counts).
"""

from __future__ import annotations

import copy
import random
import time
from typing import Any, Sequence

from ..tasks.base import Task
from ..train.examples import IGNORE
from . import TOY_SFT_DEFAULTS


def sft_examples(tok, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) with labels only on the completion and its end-of-text token."""
    out = []
    for prompt, completion in pairs:
        p = tok(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        c = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        out.append((p + c, [IGNORE] * len(p) + c))
    return out


def finetune(model, tok, task: Task, n: int, seed: int, defaults: dict | None = None,
             **overrides: Any) -> dict:
    """Full finetuning in place on a seeded subset of ``n`` >= 1 training items, with
    ``defaults`` (the model's ``toy_sft_defaults``; ``TOY_SFT_DEFAULTS`` if None) and Recipe-field
    ``overrides`` (``lr``, ``epochs``, ``min_steps``, ``max_steps``, ``batch_size``...)."""
    from ..train.loop import LoopConfig, train_loop
    from ..train.recipe import Recipe, steps_for

    pool = task.train_items()
    idx = random.Random(f"probe-{seed}").sample(range(len(pool)), n)
    ex = sft_examples(tok, [task.training_pair(pool[i]) for i in idx])
    d = defaults or TOY_SFT_DEFAULTS
    rec = Recipe(**{**d, **{k: v for k, v in overrides.items() if v is not None}})
    steps, _ = steps_for(n, rec)
    cfg = LoopConfig(steps=steps, lr=rec.lr, batch_size=min(rec.batch_size, n),
                     micro_batch_size=rec.micro_batch_size, warmup_steps=rec.warmup_steps or 0,
                     schedule=rec.schedule, weight_decay=rec.weight_decay, seed=seed)
    res = train_loop(model, ex, cfg, pad_id=tok.pad_token_id)
    return {"steps": res.steps, "train_s": round(res.wall_s, 1), "final_loss": round(res.losses[-1], 4)}


def indistinct_pairs(prompts: Sequence[str], model_dirs: Sequence[str], threshold: float = 0.95
                     ) -> dict[tuple[str, str], int]:
    """Token pairs (a, b) such that two of ``prompts`` differ only in a -> b and the input
    embeddings of a and b have cosine > ``threshold`` in every model of ``model_dirs``; values
    are how many prompt contexts hold the pair. Empty means every one-token difference between
    prompts is visible to the models."""
    from collections import defaultdict

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dirs[0]))

    def unit_embeddings(d: str) -> torch.Tensor:
        layer: Any = AutoModelForCausalLM.from_pretrained(str(d)).get_input_embeddings()
        return torch.nn.functional.normalize(layer.weight.detach(), dim=-1)

    emb = [unit_embeddings(d) for d in model_dirs]
    slots: dict[tuple, set[int]] = defaultdict(set)  # prompt with one position blanked -> tokens there
    for text in set(prompts):
        ids = tuple(tok(text, add_special_tokens=False)["input_ids"])
        for i in range(len(ids)):
            slots[(ids[:i], ids[i + 1:])].add(ids[i])
    found: dict[tuple[str, str], int] = {}
    for alts in slots.values():
        if len(alts) < 2:
            continue
        a = torch.tensor(sorted(alts))
        sim = torch.stack([e[a] @ e[a].T for e in emb]).amin(0)
        for i, j in zip(*torch.where(torch.triu(sim > threshold, diagonal=1))):
            lo, hi = sorted((str(tok.decode([int(a[i])])), str(tok.decode([int(a[j])]))))
            found[(lo, hi)] = found.get((lo, hi), 0) + 1
    return found


def name_errors(samples: Sequence[dict], world: Any) -> dict[str, int]:
    """Counts over ``samples`` (``samples_*.jsonl`` rows: prompt, response, correct) of a task
    about ``world``'s people: ``items``, ``wrong``, ``shared_first`` (items whose person shares
    the first name with another person of the world), ``wrong_shared_first``, and ``renamed``
    (wrong answers that drop the person's full name and write another person of that first
    name)."""
    import re

    people = [p.name for p in world.people]
    by_first: dict[str, list[str]] = {}
    for n in people:
        by_first.setdefault(n.split()[0], []).append(n)
    find = re.compile(r"\b(" + "|".join(sorted(map(re.escape, people), key=len, reverse=True)) + r")\b")
    out = dict.fromkeys(("items", "wrong", "shared_first", "wrong_shared_first", "renamed"), 0)
    for r in samples:
        m = find.search(r.get("prompt", ""))
        if m is None:
            continue
        name = m.group(1)
        others = [n for n in by_first[name.split()[0]] if n != name]
        wrong = not r.get("correct")
        resp = r.get("response", "")
        out["items"] += 1
        out["wrong"] += wrong
        out["shared_first"] += bool(others)
        out["wrong_shared_first"] += wrong and bool(others)
        out["renamed"] += wrong and name not in resp and any(o in resp for o in others)
    return out


def generate(model, tok, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = (),
             batch_size: int = 50) -> list[str]:
    """Greedy continuations, cut at the first stop string."""
    import torch

    out: list[str] = []
    old = tok.padding_side
    tok.padding_side = "left"
    try:
        for i in range(0, len(prompts), batch_size):
            enc = tok(list(prompts[i:i + batch_size]), return_tensors="pt", padding=True,
                      add_special_tokens=False)
            with torch.no_grad():
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            for row in gen[:, enc["input_ids"].shape[1]:]:
                text = tok.decode(row, skip_special_tokens=True)
                for s in stop:
                    if s and s in text:
                        text = text[:text.index(s)]
                out.append(text)
    finally:
        tok.padding_side = old
    return out


def evaluate(model, tok, task: Task, limit: int | None = None) -> dict[str, Any]:
    items = task.test_items()[:limit] if limit else task.test_items()
    resp = generate(model, tok, [task.prompt_text(it) for it in items], task.gen.max_new_tokens,
                    task.gen.stop)
    recs = task.score_many(items, resp)
    agg = task.aggregate(recs)
    extra = {k: round(v, 4) for k, v in agg.items() if k.endswith("_ok") or k == "bridge_ok"}
    return {"format_rate": agg.get("format_rate", 0.0), "accuracy": agg.get("accuracy", 0.0),
            **extra, "examples": resp[:2]}


def probe(model_ref: str, task_name: str, ns: Sequence[int], seeds: Sequence[int] = (0,),
          limit: int | None = None, task_options: dict | None = None, **sft: Any) -> list[dict]:
    """Rows {n, seed, format_rate, accuracy, steps, train_s, eval_s} for each (n, seed)."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..tasks import get_task
    from . import toy_model_path, toy_sft_defaults

    path = Path(model_ref) if Path(model_ref).is_dir() else toy_model_path(model_ref)
    defaults = toy_sft_defaults(path)
    base = AutoModelForCausalLM.from_pretrained(str(path))
    tok = AutoTokenizer.from_pretrained(str(path))
    task = get_task(task_name, **(task_options or {}))
    rows = []
    for n in ns:
        for seed in (seeds if n else seeds[:1]):
            model = copy.deepcopy(base)
            info: dict[str, Any] = {}
            if n:
                info = finetune(model, tok, task, n, seed, defaults, **sft)
            t0 = time.perf_counter()
            ev = evaluate(model, tok, task, limit)
            rows.append({"n": n, "seed": seed, **info, "eval_s": round(time.perf_counter() - t0, 1), **ev})
    return rows
