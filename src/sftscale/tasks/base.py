"""The Task interface: one benchmark = one subclass in one file.

A task owns its items (with stable ids), how a prompt is built from an item, the training
pairs (prompt, completion) when it has a training pool, a per-sample scorer and the
aggregation. Every per-sample record carries two uniform fields besides the task's own:

- ``format_ok`` (bool): the answer came in the expected form (style);
- ``correct`` (bool): the task's primary correctness (substance), e.g. gsm8k strict match.

so that analysis can split errors into format errors (``not format_ok``) and substance
errors (``format_ok and not correct``) for any task without knowing it.

A new task is a subclass in its own module, decorated with ``@register_task("name")``
(``sftscale.tasks.registry``), the module listed in the ``sftscale.tasks`` entry-point group.

Not handled here: registration and lookup (``registry``), generation (the ``generation``
package), chat-template choice for a specific model (``models.py``);
``build_prompt(..., chat=True)`` only needs a tokenizer with ``apply_chat_template``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence


@dataclass(frozen=True)
class Item:
    """One benchmark item.

    id: stable across releases of sftscale (e.g. ``gsm8k/test/17``, ``HumanEval/3``).
    question: the raw input text (problem statement, code prompt, instruction).
    target: what the scorer compares against (gold number, tests, instruction kwargs...).
    completion: a reference completion for training, when the item has one.
    meta: anything else the task wants to keep (sub-questions, entry point, ...).
    """

    id: str
    question: str
    target: Any = None
    completion: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GenSpec:
    """How to generate for this task: greedy by default."""

    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    temperature: float = 0.0


class Task(ABC):
    """Base class. Subclasses set the class attributes and implement the abstract methods."""

    name: str = ""
    version: str = "1"
    #: name of the aggregate that a study plots by default
    primary_metric: str = "accuracy"
    #: licence of the underlying data, shown by ``sftscale tasks``
    license: str = ""
    gen: GenSpec = GenSpec()

    # --- items -------------------------------------------------------------------------
    @abstractmethod
    def test_items(self) -> list[Item]:
        """The evaluation set, in a fixed order."""

    def train_items(self) -> list[Item]:
        """The training pool (items with ``completion``). Tasks without one raise."""
        raise NotImplementedError(f"task {self.name!r} has no training pool")

    def has_train(self) -> bool:
        try:
            return len(self.train_items()) > 0
        except NotImplementedError:
            return False

    # --- prompts -----------------------------------------------------------------------
    @abstractmethod
    def prompt_text(self, item: Item) -> str:
        """The plain (no chat template) prompt; the model continues it."""

    def user_message(self, item: Item) -> str:
        """The user turn used when a chat template is applied. Defaults to the plain prompt."""
        return self.prompt_text(item)

    def build_prompt(self, item: Item, tokenizer: Any = None, chat: bool = False) -> str:
        """Plain prompt, or the chat-templated prompt ending with the assistant header."""
        if not chat:
            return self.prompt_text(item)
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"task {self.name!r}: chat=True needs a tokenizer with a chat template")
        msgs = [{"role": "user", "content": self.user_message(item)}]
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    def training_pair(self, item: Item, tokenizer: Any = None, chat: bool = False) -> tuple[str, str]:
        """(prompt, completion). The loss is taken on the completion only."""
        if item.completion is None:
            raise ValueError(f"item {item.id} has no reference completion")
        return self.build_prompt(item, tokenizer, chat), item.completion

    # --- scoring -----------------------------------------------------------------------
    @abstractmethod
    def score(self, item: Item, response: str) -> dict:
        """Per-sample record. Must include ``format_ok`` and ``correct`` (bools)."""

    def score_many(self, items: Sequence[Item], responses: Sequence[str]) -> list[dict]:
        """Score a batch. Override when batching is faster (e.g. parallel code execution)."""
        return [dict(id=it.id, **self.score(it, r)) for it, r in zip(items, responses)]

    def aggregate(self, records: Sequence[dict]) -> dict[str, float]:
        """Mean of every boolean/numeric field plus ``<name>_stderr`` (sample standard error).

        ``format_rate`` is the mean of ``format_ok``; ``accuracy`` the mean of ``correct``.
        Tasks add or rename metrics by overriding and calling ``super().aggregate``.
        """
        return mean_metrics(records)

    # --- lookups used by `sftscale score` ----------------------------------------------
    def lookup_keys(self) -> tuple[str, ...]:
        """Extra JSONL keys (besides ``id``) that can identify an item, e.g. ``question``."""
        return ("question",)

    def key_of(self, item: Item, key: str) -> str | None:
        if key == "question":
            return item.question
        return None

    #: JSONL keys that may hold the response text in `sftscale score` input, tried in order
    response_keys: tuple[str, ...] = ("response",)

    def resolve_line(self, obj: dict, line: int | None = None, path: Any = None) -> tuple[Item, str]:
        """Map one `sftscale score` input line to (test item, response text).

        The item is found by ``id``, else by the first of ``lookup_keys()`` present in the
        line (matched against ``key_of(item, key)``, surrounding whitespace ignored). The
        response is the first of ``response_keys`` present. Raises ``InputError`` naming
        ``path``, ``line`` and the field. Override for lines needing more than a lookup.
        """
        from ..io import InputError

        index = self.__dict__.get("_resolve_index")
        if index is None:
            index = {"id": {}}
            for it in self.test_items():
                index["id"][it.id] = it
                for k in self.lookup_keys():
                    v = self.key_of(it, k)
                    if v is not None:
                        index.setdefault(k, {}).setdefault(str(v).strip(), it)
            self.__dict__["_resolve_index"] = index
        for key in ("id", *self.lookup_keys()):
            if key in obj:
                val = obj[key]
                if not isinstance(val, (str, int)):
                    raise InputError(path, "must be a string", line=line, field=key)
                item = index.get(key, {}).get(str(val).strip() if key != "id" else str(val))
                if item is None:
                    raise InputError(path, f"no test item of task {self.name!r} has this {key} "
                                     f"({str(val)[:60]!r})", line=line, field=key)
                break
        else:
            raise InputError(path, f"needs one of the keys {', '.join(('id', *self.lookup_keys()))}"
                             f" to identify the item", line=line)
        for rk in self.response_keys:
            if rk in obj:
                if not isinstance(obj[rk], str):
                    raise InputError(path, "must be a string", line=line, field=rk)
                return item, obj[rk]
        raise InputError(path, f"missing the response (one of: {', '.join(self.response_keys)})",
                         line=line, field=self.response_keys[0])

    def describe(self) -> dict:
        """Name, version, sizes and licence, for ``sftscale tasks`` and results JSON."""
        info = {"name": self.name, "version": self.version, "license": self.license,
                "primary_metric": self.primary_metric, "n_test": len(self.test_items())}
        info["n_train"] = len(self.train_items()) if self.has_train() else 0
        return info


def mean_metrics(records: Sequence[dict], rename: dict[str, str] | None = None) -> dict[str, float]:
    """Means and standard errors of the bool/number fields of per-sample records."""
    rename = {"format_ok": "format_rate", "correct": "accuracy", **(rename or {})}
    out: dict[str, float] = {}
    if not records:
        return out
    keys: list[str] = []
    for r in records:
        for k, v in r.items():
            if k not in keys and isinstance(v, (bool, int, float)) and not isinstance(v, str):
                keys.append(k)
    for k in keys:
        vals = [float(r[k]) for r in records if isinstance(r.get(k), (bool, int, float))]
        if not vals:
            continue
        n = len(vals)
        m = sum(vals) / n
        var = sum((v - m) ** 2 for v in vals) / (n - 1) if n > 1 else 0.0
        name = rename.get(k, k)
        out[name] = m
        out[f"{name}_stderr"] = math.sqrt(var / n)
    out["n"] = float(len(records))
    return out


def first_n(items: Iterable[Item], limit: int | None) -> list[Item]:
    items = list(items)
    return items if limit is None else items[:limit]
