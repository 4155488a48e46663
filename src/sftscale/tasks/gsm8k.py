"""GSM8K: grade-school math word problems, answer = the number after ``#### ``.

Prompt: ``"Question: {question}\\nAnswer:"``, lm-eval's ``gsm8k`` ``doc_to_text``. Few-shot
(``num_fewshot`` k, ``Task.fewshot_prompts``): lm-eval's context, k examples from the train
split drawn by its sampler with its default seed (1234), each ``"Question: q\\nAnswer: "`` +
the raw answer (annotations kept, lm-eval's ``doc_to_target``) + ``"\\n\\n"``. The
training completion is ``" " + solution`` where the solution is the reference chain of
thought with the ``<<48/2=24>>`` calculator annotations removed, ending in ``#### N``.
With a chat template the user turn is the bare question and the completion has no leading
space.

Scoring (``score_response``), close to lm-eval's gsm8k ``strict-match``/``flexible-extract``:

- strict: the FIRST ``#### N`` in the response (lm-eval regex ``#### (\\-?[0-9\\.\\,]+)``,
  take_first), anywhere in the text, not only at a line start; ``format_ok`` is true
  exactly when it is found, so ``correct`` implies ``format_ok``. ``N`` may follow ``####``
  with spaces/tabs (no newline) and an optional ``$``.
- flexible: the LAST number in the response (lm-eval ``(-?[$0-9.,]{2,})|(-?[0-9]+)``, last).
- both sides are normalised: commas, ``$`` and surrounding spaces removed, then a trailing
  ``.`` dropped, then trailing zeros after a decimal point (``18.0`` and ``18.00`` -> ``18``),
  ``.5`` -> ``0.5``, ``-0`` -> ``0``. Comparison is of these strings (``1e3`` != ``1000``).

Differences from lm-eval, on purpose: a candidate number must contain a digit (lm-eval's
flexible regex can pick ``...`` or ``$,``); ``#### $18`` counts (lm-eval's strict regex
misses it); ``18.00`` equals ``18`` (lm-eval only strips a final ``.``). Not handled:
fractions, units, words (``eighteen``), scientific notation, LaTeX ``\\boxed{}``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from .base import GenSpec, Item, Task, first_n, mean_metrics
from .registry import register_task

_STRICT = re.compile(r"####[ \t]*\$?[ \t]*(-?[0-9.,]*[0-9][0-9.,]*)")
_FLEX = re.compile(r"-?[$0-9.,]*[0-9][$0-9.,]*")
_CALC = re.compile(r"<<[^<>]*>>")


def normalize_number(s: str) -> str:
    """``"$1,234.50"`` -> ``"1234.5"``; ``"18."``/``"18.0"`` -> ``"18"``. Non-numbers pass through."""
    s = s.strip().replace(",", "").replace("$", "").replace(" ", "")
    s = s.rstrip(".")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    if s.startswith((".", "-.")):
        s = s.replace(".", "0.", 1)
    return "0" if s == "-0" else s


def gold_number(gold: str) -> str:
    """The normalised gold answer from a full solution (``... #### 18``) or a bare number."""
    return normalize_number(gold.rsplit("####", 1)[-1])


def extract_strict(response: str) -> str | None:
    m = _STRICT.search(response)
    return normalize_number(m.group(1)) if m else None


def extract_flexible(response: str) -> str | None:
    found = _FLEX.findall(response)
    return normalize_number(found[-1]) if found else None


def score_response(response: str, gold: str) -> dict:
    """Score one response against a gold number (or a full ``... #### N`` solution)."""
    g = gold_number(gold)
    strict = extract_strict(response)
    flex = extract_flexible(response)
    ok = strict is not None and strict == g
    return {"correct": ok, "format_ok": strict is not None, "correct_strict": ok,
            "correct_flexible": flex is not None and flex == g, "extracted": strict}


def clean_solution(answer: str) -> str:
    """Remove calculator annotations; the result still ends in ``#### N``."""
    return _CALC.sub("", answer).strip()


class GSM8KFormat(Task):
    """The GSM8k prompt, completion and scoring format, shared by every task that answers
    word problems with step lines and a final ``#### N`` (gsm8k, toy-math)."""

    def prompt_text(self, item: Item) -> str:
        return f"Question: {item.question}\nAnswer:"

    def user_message(self, item: Item) -> str:
        return item.question

    def training_pair(self, item: Item, tokenizer: Any = None, chat: bool = False) -> tuple[str, str]:
        prompt, completion = super().training_pair(item, tokenizer, chat)
        return prompt, completion if chat else " " + completion

    def score(self, item: Item, response: str) -> dict:
        return score_response(response, item.target)

    role_scheme = "gsm8k"

    def role_spans(self, item: Item, response: str) -> tuple[list[tuple[int, int, str]], str]:
        """``####`` marker format, numbers content, words other (``tasks.roles``)."""
        from .roles import OTHER, gsm8k_spans

        return gsm8k_spans(response, operators=self.role_scheme == "toy-math"), OTHER

    def aggregate(self, records: Sequence[dict]) -> dict[str, float]:
        return mean_metrics(records, rename={"correct_strict": "accuracy_strict",
                                             "correct_flexible": "accuracy_flexible"})


@register_task("gsm8k")
class GSM8K(GSM8KFormat):
    """GSM8K test set (1,319) and training pool (7,473) from the shipped copy.

    Options: ``limit`` (first N test items), ``path`` (a local file of
    {question, answer} records used as the test set instead of the shipped one),
    ``train_path`` (the same, for the training pool). ``answer`` may be a full solution
    ending in ``#### N`` or a bare number.
    """

    name = "gsm8k"
    version = "1"
    primary_metric = "accuracy"
    license = "MIT"
    gen = GenSpec(max_new_tokens=256, stop=("Question:", "</s>", "<|im_end|>"))
    fewshot_per_item = True  # lm-eval's sampler: a fresh draw per test item

    def __init__(self, limit: int | None = None, path: str | None = None,
                 train_path: str | None = None):
        self.limit, self.path, self.train_path = limit, path, train_path
        self._test: list[Item] | None = None
        self._train: list[Item] | None = None

    def test_items(self) -> list[Item]:
        if self._test is None:
            self._test = first_n(_load(self.path, "test"), self.limit)
        return self._test

    def train_items(self) -> list[Item]:
        if self._train is None:
            self._train = _load(self.train_path, "train")
        return self._train

    def fewshot_pool(self) -> list[Item]:
        """lm-eval's gsm8k ``fewshot_split: train``, in the split's order."""
        return self.train_items()

    def fewshot_target(self, item: Item) -> str:
        """lm-eval's ``doc_to_target: "{{answer}}"``: the raw solution, calculator
        annotations (``<<48/2=24>>``) kept, unlike the training completion."""
        return item.meta["answer"]


def _load(path: str | None, split: str) -> list[Item]:
    from ..data import load_records, read_numbered
    from ..io import InputError

    if path is None:
        rows = list(enumerate(load_records("gsm8k", split), 1))
        prefix = f"gsm8k/{split}"
    else:
        rows = read_numbered(path)
        prefix = f"gsm8k/{Path(path).name.split('.')[0]}"
    items = []
    for i, (line, r) in enumerate(rows):
        for key in ("question", "answer"):
            if not isinstance(r.get(key), (str, int, float)) or str(r[key]).strip() == "":
                raise InputError(path or "gsm8k", "missing or empty (need a string)", line=line, field=key)
        answer = str(r["answer"])
        gold = gold_number(answer)
        if not any(c.isdigit() for c in gold):
            raise InputError(path or "gsm8k", f"gold answer {gold!r} is not a number", line=line,
                             field="answer")
        solution = clean_solution(answer) if "####" in answer else f"#### {answer.strip()}"
        items.append(Item(id=str(r.get("id") or f"{prefix}/{i}"), question=str(r["question"]),
                          target=gold, completion=solution if split == "train" else None,
                          meta={"solution": solution, "answer": answer}))
    return items
