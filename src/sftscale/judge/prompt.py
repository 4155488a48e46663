"""The judge's prompt (versioned) and the parser of its answers.

``messages(task, prompt, gold, response)`` is a system and a user message: the item as the
model saw it, the reference answer, the wrong response and the task's labels with their
definitions (``taxonomy``), asking for one line ``LABEL: <label> | REASON: <one sentence>``.
``PROMPT_VERSION`` changes whenever the wording does, so cached labels of another wording are
never reused.

``parse(text, taxonomy)`` -> ``(fine label, reason)`` or ``None``. Accepted: a ``LABEL:``
line (case and surrounding spaces ignored; ``-`` or a space inside a label read as ``_``; the
label ends at ``|``, ``.``, ``,``, ``:``, ``;`` or the line's end, so ``LABEL: syntax: the code
does not parse`` is ``syntax``) or a JSON object with ``label`` (and ``reason``). The cache
keeps the raw answer and ``run`` parses it again on every run, so a fixed parser needs no new
requests. A label outside the task's taxonomy, two
different labels, or no label at all is ``None``: recorded as ``unparsed``, never guessed.

Not handled: few-shot examples in the prompt, responses longer than ``MAX_CHARS`` (cut, with
a marker), languages other than English.
"""

from __future__ import annotations

import json
import re

from .taxonomy import Taxonomy

PROMPT_VERSION = "judge-v1"  # the wording of the request; the parser may change without it
MAX_CHARS = 2000
SYSTEM = ("You grade why a model's answer to a task is wrong. The answer has already been "
          "checked against the reference and is wrong; you only say which kind of mistake it is.")
_LABEL = re.compile(r"label\s*[:=]\s*\**\s*([A-Za-z][A-Za-z _-]*?)\s*\**\s*(?:\||$|\n|\.|,|:|;)",
                    re.IGNORECASE | re.MULTILINE)
_REASON = re.compile(r"reason\s*[:=]\s*(.+)", re.IGNORECASE)


def _clip(s: str) -> str:
    s = str(s)
    return s if len(s) <= MAX_CHARS else s[:MAX_CHARS] + " [...cut]"


def user_text(task: str, tax: Taxonomy, prompt: str, gold: str, response: str) -> str:
    labels = "\n".join(f"- {f}: {d}" for f, _, d in tax.labels)
    return (f"Task: {task}\n\nPrompt given to the model:\n{_clip(prompt)}\n\n"
            f"Reference answer:\n{_clip(gold) or '(not available)'}\n\n"
            f"The model's response (graded wrong):\n{_clip(response) or '(empty)'}\n\n"
            f"Which kind of mistake is it? Choose exactly one label:\n{labels}\n\n"
            "Reply with one line and nothing else:\nLABEL: <label> | REASON: <one sentence>")


def messages(task: str, tax: Taxonomy, prompt: str, gold: str, response: str) -> list[dict]:
    """The chat messages of one judge request."""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": user_text(task, tax, prompt, gold, response)}]


def _norm(s: str) -> str:
    return re.sub(r"[\s-]+", "_", s.strip().lower())


def parse(text: str, tax: Taxonomy) -> tuple[str, str] | None:
    """(fine label, reason) from a judge's answer, or None when it names no single valid label."""
    text = (text or "").strip()
    found: list[tuple[str, str]] = []
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            obj = json.loads(text[start:end + 1])
        except ValueError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("label"), str):
            found.append((_norm(obj["label"]), str(obj.get("reason") or "").strip()))
    if not found:
        m = _REASON.search(text)
        reason = m.group(1).strip() if m else ""
        found = [(_norm(lab), reason) for lab in _LABEL.findall(text)]
    labels = {f for f, _ in found}
    if len(labels) != 1 or next(iter(labels)) not in tax.fine:
        return None
    return found[0][0], found[0][1][:300]


__all__ = ["MAX_CHARS", "PROMPT_VERSION", "SYSTEM", "messages", "parse", "user_text"]
