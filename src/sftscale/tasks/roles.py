"""Token roles: which tokens of a response are format and which are content.

A task labels a response with character spans ``(start, end, role)`` (``Task.token_roles``);
``token_roles`` maps them to the response's tokens through the tokenizer's offsets. Roles:

- ``format``: the form the task asks for (answer markers and answer-line templates, code
  fences and signatures, instruction-required phrases);
- ``content``: the substance (numbers, entities, facts, code bodies, answer spans);
- ``other``: text the task's rule names as neither (gsm8k's words, QA reasoning before the
  answer line, prose outside a code fence).

Later spans override earlier ones. A character no span covers takes the task's default role
(whitespace: none). A token takes the role most of its non-space characters have (ties:
format, then content, then other); a token of whitespace only takes the role of the spans
that cover it, else ``format`` (layout).

``generic_spans`` is the fallback for tasks without a rule of their own (scheme name
``generic``): punctuation and English function words are format, everything else content.

Not handled: roles finer than these three, non-English function words, tokens whose
offsets the tokenizer cannot give (``char_spans`` decodes incrementally instead, which
assumes decoding a prefix gives a prefix of the text).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

FORMAT, CONTENT, OTHER = "format", "content", "other"
ROLES: tuple[str, ...] = (FORMAT, CONTENT, OTHER)
Span = tuple[int, int, str]

#: English function words (articles, pronouns, auxiliaries, prepositions, conjunctions)
FUNCTION_WORDS = frozenset("""
a an the this that these those some any each every no not
i me my mine you your yours he him his she her hers it its we us our ours they them their theirs
is am are was were be been being do does did done have has had having will would shall should
can could may might must
of to in on at by for with from into onto about over under after before during between among
through up down out off than as
and or but nor so yet if then else because while when where which who whom whose what how why
there here also just only very too
""".split())

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")
_PUNCT = re.compile(r"[^\w\s]")


def generic_spans(text: str) -> list[Span]:
    """The fallback rule: punctuation and function words are format, other words and numbers
    content."""
    out: list[Span] = [(m.start(), m.end(), FORMAT) for m in _PUNCT.finditer(text)]
    out += [(m.start(), m.end(), CONTENT) for m in _NUMBER.finditer(text)]
    out += [(m.start(), m.end(), FORMAT if m.group().lower() in FUNCTION_WORDS else CONTENT)
            for m in _WORD.finditer(text)]
    return out


def regex_spans(text: str, pattern: str | re.Pattern, role: str, group: int = 0,
                flags: int = 0) -> list[Span]:
    """``role`` on every match of ``pattern`` (its ``group``; empty matches are skipped)."""
    rx = re.compile(pattern, flags) if isinstance(pattern, str) else pattern
    out = []
    for m in rx.finditer(text):
        if m.group(group) is not None and m.end(group) > m.start(group):
            out.append((m.start(group), m.end(group), role))
    return out


def literal_spans(text: str, needle: str, role: str) -> list[Span]:
    """``role`` on every occurrence of ``needle``."""
    return regex_spans(text, re.escape(needle), role) if needle else []


def char_roles(text: str, spans: Iterable[Span], default: str) -> list[str | None]:
    """The role of every character: the last span covering it, else ``default`` (None for
    whitespace that no span covers)."""
    roles: list[str | None] = [None if c.isspace() else default for c in text]
    for a, b, r in spans:
        if r not in ROLES:
            raise ValueError(f"unknown token role {r!r} (one of {', '.join(ROLES)})")
        for i in range(max(a, 0), min(b, len(text))):
            roles[i] = r
    return roles


def char_spans(tok: Any, text: str, ids: Sequence[int]) -> list[tuple[int, int]]:
    """Each token's (start, end) in ``text`` by incremental decoding (for tokenizers without
    offsets): token k spans [len(decode(ids[:k])), len(decode(ids[:k+1])))."""
    out, prev = [], 0
    for k in range(len(ids)):
        cur = len(tok.decode(list(ids[:k + 1]), skip_special_tokens=True))
        out.append((min(prev, len(text)), min(cur, len(text))))
        prev = cur
    return out


def encode_response(tok: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """(token ids, character offsets) of a response, without special tokens: the offsets
    from a fast tokenizer, else by incremental decoding."""
    try:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offs = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    except (NotImplementedError, TypeError, ValueError, KeyError):
        ids = list(tok(text, add_special_tokens=False)["input_ids"])
        offs = char_spans(tok, text, ids)
    return ids, [(int(a), int(b)) for a, b in offs]


def token_roles(text: str, offsets: Sequence[tuple[int, int]], spans: Iterable[Span],
                default: str = CONTENT) -> list[str]:
    """One role per token (module docstring: majority of its non-space characters)."""
    spans = list(spans)
    chars = char_roles(text, spans, default)
    covered = [False] * len(text)
    for a, b, _ in spans:
        for i in range(max(a, 0), min(b, len(text))):
            covered[i] = True
    out = []
    for a, b in offsets:
        idx = range(max(a, 0), min(b, len(text)))
        votes = [chars[i] for i in idx if not text[i].isspace()]
        if not votes:  # whitespace only: the role of the spans covering it, else layout
            votes = [chars[i] for i in idx if covered[i]]
        counts = {r: votes.count(r) for r in ROLES}
        best = max(counts.values())
        out.append(next(r for r in ROLES if counts[r] == best) if best else FORMAT)
    return out


# --- the benchmarks' rules ------------------------------------------------------------------
_MARKER = re.compile(r"\n?####")
_ANSWER_LINE = re.compile(r"^[ \t]*(?:final[ \t]+)?answer[ \t]*:[ \t]*(.*)$", re.I | re.M)
_FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.S)
_SIGNATURE = re.compile(r"^[ \t]*def [A-Za-z_]\w*\(.*\).*:[ \t]*(?:\n|$)", re.M)


def gsm8k_spans(text: str, operators: bool = False) -> list[Span]:
    """gsm8k: the ``####`` marker (with the newline before it) is format, numbers are content
    (and with ``operators`` the equations' ``+ - * / =`` too: toy-math); words are neither."""
    out = [(m.start(), m.end(), CONTENT) for m in _NUMBER.finditer(text)]
    if operators:
        out += regex_spans(text, r"(?<=\d )[-+*/=](?= )", CONTENT)
    return out + regex_spans(text, _MARKER, FORMAT)


def answer_line_spans(text: str) -> list[Span]:
    """QA: the ``Answer:`` template (its line up to the answer) is format, the answer span
    content."""
    out: list[Span] = []
    for m in _ANSWER_LINE.finditer(text):
        out.append((m.start(), m.start(1), FORMAT))
        if m.end(1) > m.start(1):
            out.append((m.start(1), m.end(1), CONTENT))
    return out


def code_spans(text: str) -> list[Span]:
    """Code: the fence lines and ``def name(...):`` lines are format, the code inside a fence
    content, text outside every fence other (without a fence: all code, so content)."""
    fences = list(_FENCE.finditer(text))
    out: list[Span] = [(0, len(text), OTHER)] if fences else []
    for m in fences:
        out += [(m.start(), m.start(1), FORMAT), (m.start(1), m.end(1), CONTENT),
                (m.end(1), m.end(), FORMAT)]
    return out + regex_spans(text, _SIGNATURE, FORMAT)


def instruction_spans(text: str, ids: Sequence[str], kwargs: Sequence[dict]) -> list[Span]:
    """IFEval: the spans its checkers look for are format (postscript lines, end phrases,
    enclosing quotes, required keywords, titles, placeholders, section headers, bullets,
    highlights, repeated prompts, the two-responses separator). Instructions about the whole
    text (case, lengths, commas, language, JSON) name no span."""
    out: list[Span] = []
    for iid, kw in zip(ids, kwargs):
        kw = kw or {}
        if iid == "detectable_content:postscript":
            marker = kw.get("postscript_marker") or "P.S."
            out += regex_spans(text, re.escape(marker) + r"[^\n]*", FORMAT, flags=re.I)
        elif iid == "startend:end_checker" and kw.get("end_phrase"):
            out += regex_spans(text, re.escape(str(kw["end_phrase"]).strip()), FORMAT, flags=re.I)
        elif iid == "startend:quotation":
            s = text.strip()
            if len(s) > 1 and s[0] == s[-1] == '"':
                a = text.index('"')
                b = text.rindex('"')
                out += [(a, a + 1, FORMAT), (b, b + 1, FORMAT)]
        elif iid == "keywords:existence":
            for w in kw.get("keywords") or []:
                out += regex_spans(text, rf"\b{re.escape(str(w))}\b", FORMAT, flags=re.I)
        elif iid == "detectable_format:title":
            out += regex_spans(text, r"<<[^\n]+?>>", FORMAT)
        elif iid == "detectable_content:number_placeholders":
            out += regex_spans(text, r"\[[^\]\n]*\]", FORMAT)
        elif iid == "detectable_format:multiple_sections":
            split = str(kw.get("section_spliter") or "Section")
            out += regex_spans(text, rf"{re.escape(split)}\s*\d+", FORMAT, flags=re.I)
        elif iid in ("detectable_format:number_bullet_lists",):
            out += regex_spans(text, r"^\s*[*-](?=\s)", FORMAT, flags=re.M)
        elif iid == "detectable_format:number_highlighted_sections":
            out += regex_spans(text, r"\*+", FORMAT)
        elif iid == "combination:repeat_prompt" and kw.get("prompt_to_repeat"):
            out += literal_spans(text, str(kw["prompt_to_repeat"]), FORMAT)
        elif iid == "combination:two_responses":
            out += literal_spans(text, "******", FORMAT)
    return out


__all__ = ["CONTENT", "FORMAT", "FUNCTION_WORDS", "OTHER", "ROLES", "Span", "answer_line_spans",
           "char_roles", "char_spans", "code_spans", "encode_response", "generic_spans",
           "gsm8k_spans", "instruction_spans", "literal_spans", "regex_spans", "token_roles"]
