"""Tasks as a study uses them: the registered task, plus an optional external training pool.

Benchmarks such as HumanEval+ and IFEval have no training split; the paper finetunes on
separate instruction data. A study's task entry names that data with ``train_data`` (a
local .jsonl/.json/.parquet file or a Hugging Face dataset id, read with
``sftscale.data.load_records``); ``study_task`` then wraps the task so that its
``train_items`` come from those records while everything else (test items, prompts,
scoring, aggregation) stays the benchmark's own.

Record fields (first present wins): prompt from ``prompt``, ``instruction`` (+ ``input``
when non-empty, after a blank line), ``question``, ``query``; completion from ``completion``,
``output``, ``response``, ``answer``, ``solution``; or ``messages`` (a chat: the first user
turn and the assistant turn after it). Item ids: the record's ``id`` when present, else
``<source>/train/<line index>``.

Training pairs: with ``chat`` the prompt is the chat-templated user turn (as the benchmark's
chat prompts are); without, the instruction followed by a blank line.

Not handled: multi-turn training conversations (only the first exchange is used), system
prompts in the data, deduplication against the benchmark's test set (check your data).
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

from ..io import InputError
from .base import Item, Task

_PROMPT_KEYS = ("prompt", "instruction", "question", "query")
_COMPLETION_KEYS = ("completion", "output", "response", "answer", "solution")


def study_task(name: str, options: dict[str, Any] | None = None,
               max_new_tokens: int | None = None) -> Task:
    """``get_task(name, **options)`` (a fresh instance: adjusting its ``gen`` is safe);
    ``options["train_data"]`` becomes the training pool."""
    from .registry import get_task

    opts = dict(options or {})
    source = opts.pop("train_data", None)
    task = get_task(name, **opts)
    if max_new_tokens is not None and task.gen.max_new_tokens != max_new_tokens:
        task.gen = dataclasses.replace(task.gen, max_new_tokens=max_new_tokens)
    if source is not None:
        task = ExternalTrainData(task, str(source))
    return task


class ExternalTrainData(Task):
    """Delegates to ``inner`` except for the training pool (see the module docstring)."""

    def __init__(self, inner: Task, source: str):
        self.inner, self.source = inner, source
        self.name, self.version = inner.name, inner.version
        self.primary_metric, self.license, self.gen = inner.primary_metric, inner.license, inner.gen
        for attr in ("response_keys",):
            if hasattr(inner, attr):
                setattr(self, attr, getattr(inner, attr))

    @cached_property
    def _pool(self) -> list[Item]:
        from ..data import load_records

        recs = load_records(self.source, split="train")
        tag = Path(self.source).name if Path(self.source).exists() else self.source
        items: list[Item] = []
        seen: set[str] = set()
        for i, r in enumerate(recs):
            prompt, completion = _pair(r)
            if prompt is None or completion is None:
                missing = "a prompt" if prompt is None else "a completion"
                raise InputError(self.source, f"record has no {missing} field (prompt keys: "
                                 f"{', '.join(_PROMPT_KEYS)}; completion keys: "
                                 f"{', '.join(_COMPLETION_KEYS)}; or messages)", line=i + 1)
            iid = str(r.get("id", f"{tag}/train/{i}"))
            if iid in seen:
                raise InputError(self.source, f"duplicate id {iid!r}", line=i + 1, field="id")
            seen.add(iid)
            items.append(Item(id=iid, question=prompt, completion=completion))
        if not items:
            raise InputError(self.source, "no training records")
        return items

    def train_items(self) -> list[Item]:
        return self._pool

    def training_pair(self, item: Item, tokenizer: Any = None, chat: bool = False) -> tuple[str, str]:
        if item.completion is None:
            raise ValueError(f"item {item.id} has no completion")
        if not chat:
            return f"{item.question}\n\n", item.completion
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"task {self.name!r}: chat=True needs a tokenizer with a chat template")
        msgs = [{"role": "user", "content": item.question}]
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True), \
            item.completion

    # --- everything else is the benchmark's -----------------------------------------------
    def test_items(self) -> list[Item]:
        return self.inner.test_items()

    def prompt_text(self, item: Item) -> str:
        return self.inner.prompt_text(item)

    def user_message(self, item: Item) -> str:
        return self.inner.user_message(item)

    def build_prompt(self, item: Item, tokenizer: Any = None, chat: bool = False) -> str:
        return self.inner.build_prompt(item, tokenizer, chat)

    def score(self, item: Item, response: str) -> dict:
        return self.inner.score(item, response)

    def score_many(self, items: Sequence[Item], responses: Sequence[str]) -> list[dict]:
        return self.inner.score_many(items, responses)

    def aggregate(self, records: Sequence[dict]) -> dict[str, float]:
        return self.inner.aggregate(records)

    def lookup_keys(self) -> tuple[str, ...]:
        return self.inner.lookup_keys()

    def key_of(self, item: Item, key: str) -> str | None:
        return self.inner.key_of(item, key)

    def describe(self) -> dict:
        d = dict(self.inner.describe())
        d.update(n_train=len(self._pool), train_data=self.source)
        return d

    def __getattr__(self, name: str) -> Any:  # task-specific helpers (e.g. data_hashes)
        if name in ("inner", "__setstate__", "__getstate__"):
            raise AttributeError(name)
        return getattr(self.inner, name)


def _pair(r: dict) -> tuple[str | None, str | None]:
    msgs = r.get("messages")
    if isinstance(msgs, list) and msgs:
        user = next((i for i, m in enumerate(msgs) if isinstance(m, dict) and m.get("role") == "user"), None)
        if user is not None:
            ans = next((m.get("content") for m in msgs[user + 1:]
                        if isinstance(m, dict) and m.get("role") == "assistant"), None)
            return msgs[user].get("content"), ans
    prompt = None
    for k in _PROMPT_KEYS:
        if isinstance(r.get(k), str) and r[k].strip():
            prompt = r[k]
            if k == "instruction" and isinstance(r.get("input"), str) and r["input"].strip():
                prompt = f"{prompt}\n\n{r['input']}"
            break
    if prompt is None and isinstance(r.get("input"), str) and r["input"].strip():
        prompt = r["input"]
    completion = next((r[k] for k in _COMPLETION_KEYS if isinstance(r.get(k), str)), None)
    return prompt, completion


__all__ = ["ExternalTrainData", "study_task"]
