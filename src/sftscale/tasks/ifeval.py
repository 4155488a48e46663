"""IFEval (Zhou et al. 2023): 541 prompts with verifiable instructions, scored strict and loose.

Items: ``id = str(key)``, ``question = prompt``, ``target = (instruction_id_list, kwargs)``;
the prompt is given as is (lm-eval's ``ifeval``: no template, greedy, up to 1280 new tokens).

Scoring uses lm-evaluation-harness's maintained copy of Google's checkers
(``lm_eval.tasks.ifeval``: ``instructions_registry`` and the strict/loose drivers in
``utils``), imported offline through ``sftscale.tasks.nltk_offline`` (shipped ``punkt_tab``, downloads
refused). Per sample: ``follow_instruction_list_strict``/``_loose`` (one bool per
instruction), ``prompt_level_strict``/``_loose`` (all instructions followed); strict tests
the response as is, loose passes an instruction if any of 8 variants passes (the response,
with its first line, last line, or both removed, each with and without every ``*`` removed).
``correct = prompt_level_strict``.

``format_ok`` (style, in the spirit of Raghavendra et al.): the response is non-empty and
every instruction of a *form* category passes the loose check. Form categories constrain the
shape of the text whatever it says: ``change_case``, ``combination`` (repeat the prompt, two
responses), ``detectable_format``, ``length_constraints``, ``punctuation``, ``startend``.
Content categories (``keywords``, ``detectable_content``, ``language``) constrain what is
said and only count towards ``correct``. Because strict passing implies loose passing,
``correct`` implies ``format_ok``, so every error is either a format error or a substance error.

Aggregates: ``prompt_level_{strict,loose}_acc`` (mean over prompts), ``inst_level_{strict,loose}_acc``
(micro-average over all instructions, as lm-eval), ``format_rate``, ``accuracy`` (=
prompt-level strict), each with ``_stderr``; per category ``inst_level_{strict,loose}_acc/<cat>``
and ``n_inst/<cat>``. Instruction-level stderrs are cluster-robust (prompts are the clusters),
not the naive binomial ones.

Deviation from lm-eval, on purpose: lm-eval builds a checker with missing/invalid kwargs from
the global ``random`` state, so two prompts (keys 1122 and 1129: "letter" ``#`` and ``!``) get
a random letter and their scores vary from run to run; here ``random`` is seeded per prompt
(``"ifeval:<key>"``) around the checkers, so scores are reproducible. Not handled: the
multilingual IFEval variants, lm-eval's ``multi-turn:`` instructions (not in the data), and
training items (IFEval has no training pool).
"""

from __future__ import annotations

import math
import random
from typing import Any, Sequence

from .base import GenSpec, Item, Task, first_n, mean_metrics
from .registry import register_task

#: instruction categories that constrain the form of the response (see module docstring)
FORMAT_CATEGORIES = frozenset({"change_case", "combination", "detectable_format",
                               "length_constraints", "punctuation", "startend"})
#: categories that constrain what the response says
CONTENT_CATEGORIES = frozenset({"detectable_content", "keywords", "language"})


def category(instruction_id: str) -> str:
    """``"detectable_format:title"`` -> ``"detectable_format"``."""
    return instruction_id.split(":", 1)[0]


_UTILS: Any = None


def _checkers():
    """lm-eval's ``lm_eval.tasks.ifeval.utils``, imported offline once (see ``nltk_offline``)."""
    global _UTILS
    if _UTILS is None:
        from .nltk_offline import import_ifeval_checkers

        _UTILS = import_ifeval_checkers()
    return _UTILS


def score_response(prompt: str, instruction_ids: Sequence[str], kwargs: Sequence[dict],
                   response: str, key: int = 0) -> dict:
    """Per-sample IFEval record for one response (see the module docstring for the fields)."""
    utils = _checkers()
    inp = utils.InputExample(key=key, instruction_id_list=list(instruction_ids), prompt=prompt,
                             kwargs=[dict(k) for k in kwargs])
    # A checker whose kwargs are missing or invalid draws them from `random` (in the data:
    # keys 1122 and 1129 ask for the "letter" '#' and '!', which the checker replaces with a
    # random letter). Seed per prompt so a score never depends on the caller's random state,
    # strict and loose see the same checker, and the caller's random state is left untouched.
    state = random.getstate()
    try:
        random.seed(f"ifeval:{key}")
        strict = list(utils.test_instruction_following_strict(inp, response).follow_instruction_list)
        random.seed(f"ifeval:{key}")
        loose = list(utils.test_instruction_following_loose(inp, response).follow_instruction_list)
    finally:
        random.setstate(state)
    form = [ok for iid, ok in zip(instruction_ids, loose) if category(iid) in FORMAT_CATEGORIES]
    format_ok = bool(response.strip()) and all(form)
    return {
        "instruction_id_list": list(instruction_ids),
        "follow_instruction_list_strict": strict,
        "follow_instruction_list_loose": loose,
        "prompt_level_strict": all(strict),
        "prompt_level_loose": all(loose),
        "format_ok": format_ok,
        "correct": all(strict),
    }


@register_task("ifeval")
class IFEval(Task):
    """The 541 IFEval prompts (shipped copy of google-research's ``input_data.jsonl``).

    Options: ``limit`` (first N items), ``path`` (a local JSONL/JSON/parquet file of
    {key, prompt, instruction_id_list, kwargs} records used instead, e.g. an export of
    ``google/IFEval``; checked against the instruction registry on load),
    ``max_new_tokens`` (generation budget; default 1280 as in lm-eval).
    """

    name = "ifeval"
    version = "1"
    primary_metric = "prompt_level_strict_acc"
    license = "Apache-2.0"
    gen = GenSpec(max_new_tokens=1280)
    response_keys: tuple[str, ...] = ("response",)

    def __init__(self, limit: int | None = None, path: str | None = None,
                 max_new_tokens: int | None = None):
        self.limit, self.path = limit, path
        if max_new_tokens is not None:
            self.gen = GenSpec(max_new_tokens=int(max_new_tokens))
        self._test: list[Item] | None = None

    def test_items(self) -> list[Item]:
        if self._test is None:
            self._test = first_n(load_items(self.path), self.limit)
        return self._test

    def prompt_text(self, item: Item) -> str:
        return item.question

    def score(self, item: Item, response: str) -> dict:
        ids, kwargs = item.target
        return score_response(item.question, ids, kwargs, response, key=item.meta.get("key", 0))

    def aggregate(self, records: Sequence[dict]) -> dict[str, float]:
        return aggregate_records(records)

    role_scheme = "ifeval"

    def role_spans(self, item: Item, response: str) -> tuple[list[tuple[int, int, str]], str]:
        """The spans the item's checkers require are format, the rest content."""
        from .roles import CONTENT, instruction_spans

        ids, kwargs = item.target
        return instruction_spans(response, ids, kwargs), CONTENT

    def lookup_keys(self) -> tuple[str, ...]:
        return ("prompt",) + tuple(k for k in super().lookup_keys() if k != "prompt")

    def key_of(self, item: Item, key: str) -> str | None:
        if key == "prompt":
            return item.question
        return super().key_of(item, key)


def aggregate_records(records: Sequence[dict]) -> dict[str, float]:
    """IFEval aggregates from per-sample records (see the module docstring)."""
    out = mean_metrics([{k: r[k] for k in ("prompt_level_strict", "prompt_level_loose",
                                           "format_ok", "correct") if k in r} for r in records],
                       rename={"prompt_level_strict": "prompt_level_strict_acc",
                               "prompt_level_loose": "prompt_level_loose_acc"})
    if not records:
        return out
    for mode in ("strict", "loose"):
        lists = [[bool(v) for v in r.get(f"follow_instruction_list_{mode}", [])] for r in records]
        m, se = _cluster_mean([sum(x) for x in lists], [len(x) for x in lists])
        out[f"inst_level_{mode}_acc"], out[f"inst_level_{mode}_acc_stderr"] = m, se
    out["n_instructions"] = float(sum(len(r.get("follow_instruction_list_strict", [])) for r in records))
    cats = sorted({category(i) for r in records for i in r.get("instruction_id_list", [])})
    for cat in cats:
        for mode in ("strict", "loose"):
            hits, sizes = [], []
            for r in records:
                oks = [bool(ok) for iid, ok in zip(r.get("instruction_id_list", []),
                                                    r.get(f"follow_instruction_list_{mode}", []))
                       if category(iid) == cat]
                if oks:
                    hits.append(sum(oks))
                    sizes.append(len(oks))
            out[f"inst_level_{mode}_acc/{cat}"] = _cluster_mean(hits, sizes)[0]
        out[f"n_inst/{cat}"] = float(sum(sizes))
    return out


def _cluster_mean(hits: Sequence[int], sizes: Sequence[int]) -> tuple[float, float]:
    """Ratio mean sum(hits)/sum(sizes) and its cluster-robust (linearised) standard error."""
    total = sum(sizes)
    if total == 0:
        return float("nan"), float("nan")
    p = sum(hits) / total
    n = sum(1 for s in sizes if s)
    if n < 2:
        return p, 0.0
    ss = sum((h - p * s) ** 2 for h, s in zip(hits, sizes) if s)
    return p, math.sqrt(n / (n - 1) * ss) / total


def load_items(path: str | None = None) -> list[Item]:
    """Items from the shipped data (``path=None``) or a local file of the same schema."""
    from ..data import load_records, read_numbered, verify
    from ..io import InputError

    if path is None:
        verify("ifeval", count=False)
        rows = list(enumerate(load_records("ifeval"), 1))
        where: Any = "ifeval"
    else:
        rows = read_numbered(path)
        where = path
    items, seen = [], set()
    for line, r in rows:
        key = r.get("key")
        if isinstance(key, bool) or not isinstance(key, (int, str)) or str(key).strip() == "":
            raise InputError(where, "missing or not an integer/string", line=line, field="key")
        if str(key) in seen:
            raise InputError(where, f"duplicate key {key!r}", line=line, field="key")
        seen.add(str(key))
        prompt = r.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(where, "missing or empty (need a string)", line=line, field="prompt")
        ids = r.get("instruction_id_list")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise InputError(where, "need a non-empty list of instruction ids", line=line,
                             field="instruction_id_list")
        kwargs = r.get("kwargs")
        if not isinstance(kwargs, list) or len(kwargs) != len(ids) \
                or not all(isinstance(k, dict) for k in kwargs):
            raise InputError(where, "need a list of objects, one per instruction", line=line,
                             field="kwargs")
        if path is not None:
            _check_instructions(where, line, prompt, ids, kwargs)
        items.append(Item(id=str(key), question=prompt, target=(list(ids), [dict(k) for k in kwargs]),
                          meta={"key": key}))
    return items


def _check_instructions(where: Any, line: int, prompt: str, ids: list[str], kwargs: list[dict]) -> None:
    """Every instruction id is known and accepts its kwargs (as lm-eval builds it)."""
    from ..io import InputError

    registry = _checkers().instructions_registry.INSTRUCTION_DICT
    state = random.getstate()
    try:
        for iid, kw in zip(ids, kwargs):
            if iid not in registry:
                raise InputError(where, f"unknown instruction id {iid!r}", line=line,
                                 field="instruction_id_list")
            try:
                registry[iid](iid).build_description(**{k: v for k, v in kw.items() if v})
            except (TypeError, ValueError) as e:
                raise InputError(where, f"kwargs do not fit {iid!r} ({e})", line=line,
                                 field="kwargs") from None
    finally:
        random.setstate(state)


__all__ = ["CONTENT_CATEGORIES", "FORMAT_CATEGORIES", "IFEval", "aggregate_records", "category",
           "load_items", "score_response"]
