"""Multi-hop question answering: FanOutQA (shipped dev set) and user files (SubQA/HotpotQA-like).

Prompt: ``"Question: {question}\\n"`` (preceded by ``"Context:\\n{paragraphs}\\n\\n"`` when an
item has context paragraphs and ``use_context`` is on); the model is expected to write an
``Answer: X`` line. Training completion: ``"Answer: X"``; with ``chain=True`` and a
decomposition available it is ``"Sub-question: q1\\nSub-answer: a1\\n...\\nAnswer: X"``
(sub-answers are labelled ``Sub-answer:`` so they are never taken for the final answer).

Scoring (``score_answer``): SQuAD/HotpotQA normalisation (lowercase, drop punctuation, drop
the articles a/an/the, collapse whitespace), except that an answer made only of articles
(``A``) is compared with its articles kept, so ``"The"`` does not exact-match ``"A"`` as it
would under plain SQuAD rules (``f1`` keeps the SQuAD rule). The answer compared is the text after the FIRST
line starting with ``Answer:`` (case-insensitive, ``Final answer:`` too; ``format_ok`` then);
without such a line, the response's last non-empty line (``format_ok`` false). ``em`` and
``f1`` are the maxima over the gold aliases; ``f1`` is SQuAD token F1 with HotpotQA's rule that
yes/no/noanswer only match themselves. ``contains``: some normalised gold occurs in the
normalised WHOLE response on word boundaries. ``correct`` = ``em``.

FanOutQA answers are strings, numbers, booleans, lists or dicts. They are flattened like the
official ``str_answer`` but on one line: list -> ``"a, b"``, dict -> ``"k - v, k2 - v2"``,
bool -> ``yes``/``no``, numbers as written (``12.0`` -> ``12``). The one gold for em/f1 is that
string; exact match on a 20-entry dict is near hopeless, so FanOutQA also reports the official
"loose accuracy" per sample (``loose``: the share of atomic answer parts -- list elements, dict
keys AND values -- found in the response on word boundaries) and ``all_found`` (every part found,
the official "strict" accuracy). These use our normaliser, not FanOutQA's spaCy lemmatiser, so
numbers differ slightly from the official scorer. Aggregates: ``loose_accuracy`` (primary),
``all_found_rate``.

Not handled: retrieval/open-book settings (FanOutQA is closed-book here), LLM-judge, ROUGE and
BLEURT, answer aliases inside FanOutQA, CSV input files.
"""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from .base import GenSpec, Item, Task, first_n, mean_metrics
from .registry import register_task

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_ANSWER_LINE = re.compile(r"^[ \t]*(?:final[ \t]+)?answer[ \t]*:[ \t]*(.*)$", re.I | re.M)
_STOP = ("Question:", "</s>", "<|im_end|>")


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower, drop punctuation, drop articles, collapse whitespace."""
    s = str(s).lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def _light(s: str) -> str:
    return " ".join(str(s).lower().translate(_PUNCT).split())


def _norm_em(s: str) -> str:
    """normalize_answer, except that an answer made only of articles ("A") keeps them."""
    return normalize_answer(s) or _light(s)


def extract_answer(response: str) -> tuple[str, bool]:
    """(answer text, format_ok): the first ``Answer:`` line, else the last non-empty line."""
    for m in _ANSWER_LINE.finditer(response):
        if m.group(1).strip():
            return m.group(1).strip(), True
    lines = [ln.strip() for ln in response.splitlines() if ln.strip()]
    return (lines[-1] if lines else ""), False


def f1_score(pred: str, gold: str) -> float:
    """SQuAD token F1 of normalised strings, with HotpotQA's yes/no/noanswer rule."""
    p, g = normalize_answer(pred), normalize_answer(gold)
    special = ("yes", "no", "noanswer")
    if (p in special or g in special) and p != g:
        return 0.0
    pt, gt = p.split(), g.split()
    if not pt or not gt:
        return float(pt == gt)
    common = sum((Counter(pt) & Counter(gt)).values())
    if common == 0:
        return 0.0
    prec, rec = common / len(pt), common / len(gt)
    return 2 * prec * rec / (prec + rec)


def _contained(needle: str, haystack: str) -> bool:
    n = normalize_answer(needle)
    if not n:  # an article-only answer such as "A": compare without dropping articles
        n, hay = _light(needle), _light(haystack)
    else:
        hay = normalize_answer(haystack)
    return bool(n) and f" {n} " in f" {hay} "


def score_answer(response: str, golds: list[str] | str) -> dict:
    """em/f1 of the extracted answer against any gold alias; ``contains`` over the response."""
    if isinstance(golds, str):
        golds = [golds]
    extracted, ok = extract_answer(response)
    em = any(_norm_em(extracted) == _norm_em(g) for g in golds)
    f1 = max((f1_score(extracted, g) for g in golds), default=0.0)
    contains = any(_contained(g, response) for g in golds)
    return {"correct": em, "format_ok": ok, "em": em, "f1": f1, "contains": contains,
            "extracted": extracted if ok else None}


def flatten_answer(ans: Any) -> str:
    """One-line string of a FanOutQA answer (see module docstring)."""
    if isinstance(ans, list):
        return ", ".join(flatten_answer(a) for a in ans)
    if isinstance(ans, dict):
        return ", ".join(f"{k} - {flatten_answer(v)}" for k, v in ans.items())
    if isinstance(ans, bool):
        return "yes" if ans else "no"
    if ans is None:
        return ""
    if isinstance(ans, float) and ans.is_integer():
        return str(int(ans))
    return str(ans)


def answer_parts(ans: Any) -> list[str]:
    """Atomic strings of a FanOutQA answer: list elements, dict keys and values, primitives.
    Empty parts (one dev answer has an empty dict value) are dropped."""
    if isinstance(ans, list):
        return [p for a in ans for p in answer_parts(a)]
    if isinstance(ans, dict):
        return [p for k, v in ans.items() for p in answer_parts(k) + answer_parts(v)]
    s = flatten_answer(ans)
    return [s] if _norm_em(s) else []


class _QATask(Task):
    """Shared prompt/completion/scoring for the multi-hop tasks."""

    primary_metric = "accuracy"
    gen = GenSpec(max_new_tokens=64, stop=_STOP)

    def __init__(self, limit: int | None = None, chain: bool = False, use_context: bool = True):
        self.limit, self.chain, self.use_context = limit, chain, use_context
        if chain:
            self.gen = GenSpec(max_new_tokens=max(256, self.gen.max_new_tokens), stop=_STOP)

    def prompt_text(self, item: Item) -> str:
        ctx = item.meta.get("context") if self.use_context else None
        head = "Context:\n" + "\n".join(ctx) + "\n\n" if ctx else ""
        return f"{head}Question: {item.question}\n"

    def user_message(self, item: Item) -> str:
        return self.prompt_text(item).rstrip("\n")

    def _completion(self, answer: str, subs: list[dict]) -> str:
        chain = "".join(f"Sub-question: {s['question']}\nSub-answer: {s['answer']}\n"
                        for s in subs) if self.chain else ""
        return f"{chain}Answer: {answer}"

    def score(self, item: Item, response: str) -> dict:
        return score_answer(response, item.target)

    role_scheme = "qa"

    def role_spans(self, item: Item, response: str) -> tuple[list[tuple[int, int, str]], str]:
        """The ``Answer:`` template format, the answer span content, the rest other."""
        from .roles import OTHER, answer_line_spans

        return answer_line_spans(response), OTHER


@register_task("fanoutqa")
class FanOutQA(_QATask):
    """FanOutQA dev (310 questions), closed-book. ``meta['sub_questions']`` holds the
    human decomposition (flattened depth-first), ``meta['answer_raw']`` the original answer.

    Options: ``limit`` (first N test items), ``chain`` (train on the sub-question chain),
    ``n_train`` (move that many questions, chosen by a fixed seeded shuffle, into a
    training pool; the rest stay the test set; default 0 = no training pool).
    """

    name = "fanoutqa"
    version = "1"
    license = "CC-BY-SA-4.0"
    primary_metric = "loose_accuracy"
    gen = GenSpec(max_new_tokens=256, stop=_STOP)

    def __init__(self, limit: int | None = None, chain: bool = False, n_train: int = 0):
        super().__init__(limit=limit, chain=chain)
        self.n_train = n_train
        self._items: list[Item] | None = None

    def _all(self) -> list[Item]:
        if self._items is None:
            from ..data import load_records
            self._items = [self._item(r) for r in load_records("fanoutqa", "dev")]
            if not 0 <= self.n_train < len(self._items):
                raise ValueError(f"fanoutqa: n_train must be in [0, {len(self._items)})")
        return self._items

    def _item(self, r: dict) -> Item:
        subs: list[dict] = []

        def walk(ds: list[dict]) -> None:
            for d in ds:
                subs.append({"id": d["id"], "question": d["question"],
                             "answer": flatten_answer(d["answer"]), "depends_on": d.get("depends_on", [])})
                walk(d.get("decomposition") or [])

        walk(r.get("decomposition") or [])
        flat = flatten_answer(r["answer"])
        return Item(id=f"fanoutqa/{r['id']}", question=r["question"], target=[flat],
                    completion=self._completion(flat, subs),
                    meta={"sub_questions": subs, "answer_raw": r["answer"],
                          "answer_parts": answer_parts(r["answer"]),
                          "categories": r.get("categories", [])})

    def _split(self) -> tuple[set[str], list[Item]]:
        items = self._all()
        order = list(range(len(items)))
        random.Random(0).shuffle(order)
        train_ids = {items[i].id for i in order[:self.n_train]}
        return train_ids, items

    def test_items(self) -> list[Item]:
        train_ids, items = self._split()
        return first_n([it for it in items if it.id not in train_ids], self.limit)

    def train_items(self) -> list[Item]:
        if self.n_train == 0:
            raise NotImplementedError("fanoutqa has no training pool unless n_train > 0")
        train_ids, items = self._split()
        return [it for it in items if it.id in train_ids]

    def score(self, item: Item, response: str) -> dict:
        rec = score_answer(response, item.target)
        parts = item.meta["answer_parts"]
        found = sum(_contained(p, response) for p in parts)
        rec["loose"] = found / len(parts) if parts else 0.0
        rec["all_found"] = bool(parts) and found == len(parts)
        return rec

    def aggregate(self, records: Sequence[dict]) -> dict[str, float]:
        return mean_metrics(records, rename={"loose": "loose_accuracy", "all_found": "all_found_rate"})


@register_task("multihop-file")
class MultihopFile(_QATask):
    """Multi-hop QA from a user JSON/JSONL/parquet file (SubQA/HotpotQA-like records).

    Record fields: ``question`` (str), ``answer`` (str/number, or a list of gold aliases),
    optional ``id`` (or HotpotQA's ``_id``), optional ``sub_questions``
    ``[{question, answer}]``, optional ``context`` (a list of paragraph strings, or HotpotQA's
    ``[[title, [sentence, ...]], ...]``), optional ``split`` (``train`` or ``test``; records
    without it are test items). Options: ``path`` (required), ``limit``, ``chain``,
    ``use_context``.
    """

    name = "multihop-file"
    version = "1"
    license = "user-supplied"

    def __init__(self, path: str | None = None, limit: int | None = None, chain: bool = False,
                 use_context: bool = True):
        if not path:
            raise ValueError("multihop-file needs path=FILE (CLI: --task-option path=FILE)")
        super().__init__(limit=limit, chain=chain, use_context=use_context)
        self.path = path
        self._loaded: tuple[list[Item], list[Item]] | None = None

    def _load(self) -> tuple[list[Item], list[Item]]:
        if self._loaded is None:
            from ..data import read_numbered
            test: list[Item] = []
            train: list[Item] = []
            seen: set[str] = set()
            stem = Path(self.path).name.split(".")[0]
            for i, (line, r) in enumerate(read_numbered(self.path)):
                item, split = self._item(r, line, f"multihop/{stem}/{i}")
                if item.id in seen:
                    raise _err(self.path, f"duplicate id {item.id!r}", line, "id")
                seen.add(item.id)
                (train if split == "train" else test).append(item)
            self._loaded = (test, train)
        return self._loaded

    def _item(self, r: dict, line: int, default_id: str) -> tuple[Item, str]:
        p = self.path
        q = r.get("question")
        if not isinstance(q, str) or not q.strip():
            raise _err(p, "missing or empty (need a string)", line, "question")
        golds = _golds(r.get("answer"), p, line, "answer")
        subs = []
        sq = r.get("sub_questions", [])
        if not isinstance(sq, list):
            raise _err(p, "must be a list of {question, answer}", line, "sub_questions")
        for j, s in enumerate(sq):
            if not isinstance(s, dict):
                raise _err(p, "must be an object {question, answer}", line, f"sub_questions[{j}]")
            if not isinstance(s.get("question"), str) or not s["question"].strip():
                raise _err(p, "missing or empty (need a string)", line, f"sub_questions[{j}].question")
            subs.append({"question": s["question"],
                         "answer": _golds(s.get("answer"), p, line, f"sub_questions[{j}].answer")[0]})
        context = _context(r.get("context"), p, line)
        split = r.get("split", "test")
        if split not in ("train", "test"):
            raise _err(p, f"must be 'train' or 'test', got {split!r}", line, "split")
        rid = r.get("id", r.get("_id"))
        item = Item(id=str(rid) if rid not in (None, "") else default_id, question=q, target=golds,
                    completion=self._completion(golds[0], subs),
                    meta={"sub_questions": subs, "context": context, "line": line})
        return item, split

    def test_items(self) -> list[Item]:
        return first_n(self._load()[0], self.limit)

    def train_items(self) -> list[Item]:
        train = self._load()[1]
        if not train:
            raise NotImplementedError(f"{self.path}: no records with split 'train'")
        return train


def _err(path: str, reason: str, line: int, field: str) -> Exception:
    from ..io import InputError
    return InputError(path, reason, line=line, field=field)


def _golds(ans: Any, path: str, line: int, field: str) -> list[str]:
    if isinstance(ans, bool):
        return ["yes" if ans else "no"]
    if isinstance(ans, (int, float)):
        return [flatten_answer(ans)]
    if isinstance(ans, str) and ans.strip():
        return [ans.strip()]
    if isinstance(ans, list) and ans and all(isinstance(a, (str, int, float)) and str(a).strip() for a in ans):
        return [flatten_answer(a).strip() for a in ans]
    raise _err(path, "missing or empty (need a string, a number or a non-empty list of strings)",
               line, field)


def _context(ctx: Any, path: str, line: int) -> list[str]:
    if ctx is None:
        return []
    if isinstance(ctx, str):
        return [ctx]
    if isinstance(ctx, list):
        out = []
        for j, c in enumerate(ctx):
            if isinstance(c, str):
                out.append(c)
            elif (isinstance(c, list) and len(c) == 2 and isinstance(c[0], str)
                  and isinstance(c[1], list) and all(isinstance(s, str) for s in c[1])):
                out.append(f"{c[0]}: {''.join(c[1]).strip()}")
            else:
                raise _err(path, "must be a paragraph string or [title, [sentences]]", line, f"context[{j}]")
        return out
    raise _err(path, "must be a string, a list of paragraphs or [[title, [sentences]], ...]", line, "context")
