"""Does a k-shot context fit the model's context window?

``longest_fitting_k(task, items, k, count, context_len)``: the largest k' <= k for which every
item's k'-shot prompt (``Task.fewshot_prompts``) plus the task's ``max_new_tokens`` fits in
``context_len`` tokens; ``count`` is the model's token counter (``len(encode_prompt(tok, p))``:
the caller owns the tokenizer, this module imports none). ``check_fewshot_fits`` raises an
``InputError`` naming the task, the model's context and that longest k, so a study refuses a k
before generating (the HF backend would otherwise cut the prompt from the left, silently
dropping examples).

Not handled: chat-templated prompts (few-shot is plain text only), models without a known
context length (the caller passes None and nothing is checked), sampling several
responses (they share a prompt, so the check is the same).
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from ..io import InputError
from .base import Item, Task


def _fits(task: Task, items: Sequence[Item], k: int, count: Callable[[str], int],
          budget: int, exclude: Iterable[str], seed: int | None) -> bool:
    prompts = task.fewshot_prompts(items, k, exclude, seed) if k else \
        [task.prompt_text(it) for it in items]
    return all(count(p) <= budget for p in prompts)


def longest_fitting_k(task: Task, items: Sequence[Item], k: int, count: Callable[[str], int],
                      context_len: int, exclude: Iterable[str] = (),
                      seed: int | None = None) -> int:
    """The largest k' <= k whose prompts plus ``task.gen.max_new_tokens`` fit (0 may not fit
    either: then -1)."""
    budget = context_len - task.gen.max_new_tokens
    exclude = tuple(exclude)
    for kk in range(k, -1, -1):
        if _fits(task, items, kk, count, budget, exclude, seed):
            return kk
    return -1


def check_fewshot_fits(task: Task, items: Sequence[Item], k: int, count: Callable[[str], int],
                       context_len: int | None, exclude: Iterable[str] = (),
                       seed: int | None = None, where: str | None = None,
                       field: str = "fewshot") -> None:
    """InputError unless ``k`` examples fit every item's prompt in ``context_len`` tokens."""
    if k <= 0 or not context_len or not items:
        return
    best = longest_fitting_k(task, items, k, count, context_len, exclude, seed)
    if best < k:
        raise InputError(where, f"task {task.name!r}: {k} in-context examples do not fit the "
                         f"model's {context_len}-token context (prompt + examples + "
                         f"{task.gen.max_new_tokens} new tokens); the longest k that fits is "
                         f"{max(best, 0)}", field=field)


__all__ = ["check_fewshot_fits", "longest_fitting_k"]
