"""From task items to training rows: the subset, the tokens, the masks, the packing.

- ``IGNORE`` (-100): THE label of a token that carries no loss (prompt tokens, padding); the
  loop, the TRL adapter and the toy probe import it from here. ``n_targets(labels)``: THE count
  of tokens that carry loss (a label is predicted from the token before it, so the first
  label never counts).
- ``select_subset(ids, n, seed)``: the first N of ONE seeded permutation of the pool, so subsets
  are nested (N1 < N2, same seed -> subset(N1) is a prefix of subset(N2)). The permutation
  orders the ids by ``sha256(f"{seed}:{id}")``, so it does not depend on the pool's order.
  N > pool size is an error (never a silent cap).
- ``split_pool(ids, n, seed, val_items, val_seed)``: (subset, validation ids) for early
  stopping: the validation ids are ``select_subset(ids, val_items, val_seed)`` (one split per
  pool, the same for every N and seed), and the subset is ``select_subset`` of the pool MINUS
  them, so it is disjoint from the validation ids and still nested in N. ``val_items = 0``
  (no early stopping) is plain ``select_subset``.
- ``encode_pair``: prompt tokens exactly as generation encodes them (``models.encode_prompt``),
  then the completion + EOS; prompt labels are ``IGNORE``. ``build_examples`` does it for a
  task's items and records truncation; ``check_masks`` runs before the first step.
- ``pack_examples``: greedy packing in order, ``position_ids`` restarting per example.

Tokenisation: prompt and completion are tokenised separately and concatenated, so the prompt
tokens are exactly those the model sees at generation time (no merge across the boundary).
A completion tokenised on its own may differ from its in-context tokenisation for
SentencePiece tokenizers that add a prefix space; not handled. Also not handled: multi-turn
conversations, truncating the prompt (a prompt of ``max_length`` tokens or more is an error).
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

from ..io import InputError
from ..models import encode_prompt
from ..tasks.base import Item, Task

IGNORE = -100


def n_targets(labels: Sequence[int]) -> int:
    """Tokens of one example that carry loss (``labels[0]`` is never predicted)."""
    return sum(1 for t in labels[1:] if t != IGNORE)


def select_subset(ids: Sequence[str], n: int, seed: int) -> list[str]:
    """The first ``n`` ids of one seeded permutation of ``ids`` (nested in ``n``)."""
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise ValueError("the training pool has duplicate ids")
    if n < 0:
        raise InputError(None, f"N must be >= 0, got {n}", field="n")
    if n > len(ids):
        raise InputError(None, f"N = {n} exceeds the training pool ({len(ids)} items)", field="n")
    key = {i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in ids}
    return sorted(ids, key=lambda i: (key[i], i))[:n]


def split_pool(ids: Sequence[str], n: int, seed: int, val_items: int, val_seed: int = 0
               ) -> tuple[list[str], list[str]]:
    """(the finetuning subset of ``n`` ids, the ``val_items`` validation ids): see the module
    docstring. Too small a pool is an InputError that names both numbers."""
    ids = [str(i) for i in ids]
    if val_items <= 0:
        return select_subset(ids, n, seed), []
    if n + val_items > len(ids):
        raise InputError(None, f"N = {n} plus val_items = {val_items} (early stopping's "
                         f"validation items) exceeds the training pool ({len(ids)} items); lower "
                         "val_items or N, or set early_stopping: false", field="val_items")
    val = select_subset(ids, val_items, val_seed)
    taken = set(val)
    return select_subset([i for i in ids if i not in taken], n, seed), val


def encode_pair(tok: Any, prompt: str, completion: str, max_length: int
                ) -> tuple[list[int], list[int], int, int]:
    """(input_ids, labels, prompt_len, tokens cut by truncation). Completion ends with EOS."""
    p = encode_prompt(tok, prompt)
    c = list(tok(completion, add_special_tokens=False)["input_ids"])
    eos = tok.eos_token_id
    if eos is not None and (not c or c[-1] != eos):
        c.append(eos)
    ids = p + c
    labels = [IGNORE] * len(p) + c
    cut = max(0, len(ids) - max_length)
    if cut:
        ids, labels = ids[:max_length], labels[:max_length]
    return ids, labels, len(p), cut


def build_examples(task: Task, items: Sequence[Item], tok: Any, max_length: int, chat: bool
                   ) -> tuple[list[tuple[list[int], list[int]]], list[int], dict]:
    """Tokenised (input_ids, labels) for the items, prompt lengths, truncation stats."""
    examples, plens = [], []
    truncated, cut_tokens = 0, 0
    for it in items:
        prompt, completion = task.training_pair(it, tok, chat)
        ids, labels, plen, cut = encode_pair(tok, prompt, completion, max_length)
        if plen >= max_length:
            raise InputError(None, f"item {it.id}: prompt has {plen} tokens, not less than "
                             f"max_length={max_length}; raise max_length", field="max_length")
        truncated += bool(cut)
        cut_tokens += cut
        examples.append((ids, labels))
        plens.append(plen)
    lens = [len(e[0]) for e in examples]
    stats = {"truncated_examples": truncated, "truncated_tokens": cut_tokens,
             "max_length": max_length, "example_tokens_mean": sum(lens) / max(1, len(lens)),
             "example_tokens_max": max(lens) if lens else 0}
    return examples, plens, stats


def check_masks(examples: Sequence[Sequence[Sequence[int]]], prompt_lens: Sequence[int],
                ids: Sequence[str] | None = None) -> int:
    """Before the first step: every prompt token masked, and not every target masked.

    Returns the number of target tokens; raises ValueError otherwise."""
    total = 0
    for k, (ex, plen) in enumerate(zip(examples, prompt_lens)):
        labels = ex[1]
        name = ids[k] if ids is not None else f"#{k}"
        if any(t != IGNORE for t in labels[:plen]):
            raise ValueError(f"example {name}: prompt tokens are not masked")
        total += n_targets(labels)
    if total == 0:
        raise ValueError("every target token is masked: nothing to learn "
                         "(empty completions, or max_length shorter than the prompts)")
    return total


def pack_examples(examples: Sequence[tuple[list[int], list[int]]], max_length: int
                  ) -> list[tuple[list[int], list[int], list[int]]]:
    """Greedy packing in order into rows of at most ``max_length`` tokens, with
    ``position_ids`` restarting at 0 per example (the loop masks attention per example)."""
    rows: list[tuple[list[int], list[int], list[int]]] = []
    cur: tuple[list[int], list[int], list[int]] = ([], [], [])
    for x, y in examples:
        if cur[0] and len(cur[0]) + len(x) > max_length:
            rows.append(cur)
            cur = ([], [], [])
        cur[0].extend(x)
        cur[1].extend(y)
        cur[2].extend(range(len(x)))
    if cur[0]:
        rows.append(cur)
    return rows


__all__ = ["IGNORE", "build_examples", "check_masks", "encode_pair", "n_targets",
           "pack_examples", "select_subset", "split_pool"]
