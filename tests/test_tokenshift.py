"""Token shift (issue 33): the comparison, the roles, the stage, `sftscale shift` and its switch.

- a model compared with itself on its own greedy responses: every token rank 1, KL 0;
- a hand-built pair (bigram models that differ after one input token): the shift is found at
  exactly the token that follows it;
- ranks and KL equal a direct, unbatched, per-position transformers computation;
- LoRA with the adapter disabled gives the base model's logits (no second copy);
- the toy tasks' roles match the spans the toy world builds its gold responses from;
- a tiny LoRA study runs the stage by default, `sftscale shift DIR` writes shift.json and
  shift/tokens.jsonl.gz (from which a rank can be recomputed), and `analysis: {token_shift:
  false}` turns the stage off.
"""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pytest
from cli import run

from sftscale.tokenshift.compare import base_view, compare

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _greedy(model, prompt: list[int], n: int) -> list[int]:
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def test_a_model_compared_with_itself_on_its_own_greedy_responses_has_no_shift_and_kl_0():
    from sftscale.testing import tiny_llama

    m = tiny_llama(seed=3).eval()
    prompts = [[5, 9, 11], [7], [20, 21, 22, 23, 24]]
    pairs = [(p, _greedy(m, p, k)) for p, k in zip(prompts, (6, 3, 9))]
    shifts = compare(m, pairs, base=m)
    for (_, r), s in zip(pairs, shifts):
        assert len(s.base_rank) == len(r)
        assert s.base_rank == [1] * len(r)
        assert s.kl == [0.0] * len(r)
        assert s.ft_logprob == s.base_logprob


def test_a_shift_built_into_one_token_is_found_at_exactly_that_token():
    """Bigram models (no layers: logits depend on the current token only). The finetuned copy
    differs only in the embedding of token X, so only the position after X may differ."""
    import torch

    from sftscale.testing import tiny_llama

    base = tiny_llama(layers=0, tie=False, seed=1).eval()
    ft = copy.deepcopy(base)
    emb = base.model.embed_tokens.weight

    def after(model, tok):  # next-token logits after `tok`
        with torch.no_grad():
            return model(torch.tensor([[tok]])).logits[0, -1]

    chain = [4]
    while len(chain) < 8:  # the base's greedy chain; a loop would repeat X
        nxt = int(after(base, chain[-1]).argmax())
        if nxt in chain:
            break
        chain.append(nxt)
    assert len(chain) >= 5, "pick another seed: the greedy chain loops too early"
    k = 3  # the response token whose prediction follows X = chain[k - 1]
    x = chain[k - 1]
    with torch.no_grad():
        ft.model.embed_tokens.weight[x] = -emb[x] + 0.5 * torch.randn_like(emb[x])
    y = int(after(ft, x).argmax())
    base_rank_y = int((after(base, x) > after(base, x)[y]).sum()) + 1
    assert base_rank_y > 3, "the edit did not move the argmax far enough; pick another seed"
    rest = [y]
    while len(rest) < 3 and int(after(base, rest[-1]).argmax()) != x:
        rest.append(int(after(base, rest[-1]).argmax()))
    prompt, response = chain[:1], chain[1:k] + rest
    assert (prompt + response[:-1]).count(x) == 1  # X is an input exactly once
    s = compare(ft, [(prompt, response)], base=base)[0]
    j = k - 1  # y's index in the response
    assert response[j] == y
    assert [i for i, v in enumerate(s.kl) if v > 1e-6] == [j]
    assert s.base_rank[j] == base_rank_y
    assert [r for i, r in enumerate(s.base_rank) if i != j] == [1] * (len(response) - 1)


def test_ranks_logprobs_and_kl_equal_a_direct_per_position_computation():
    import torch

    from sftscale.testing import tiny_llama

    a, b = tiny_llama(seed=0).eval(), tiny_llama(seed=1).eval()
    pairs = [([1, 5, 7], [9, 3, 4, 2, 60]), ([2], [8, 8]), ([1, 2, 3, 4, 5, 6], [6])]
    shifts = compare(b, pairs, base=a, max_elements=2 * 5 * 97)  # two forward chunks
    for (p, r), s in zip(pairs, shifts):
        for t, tok in enumerate(r):
            x = torch.tensor([p + r[:t]])  # one sequence, no padding, last position only
            with torch.no_grad():
                la, lb = a(x).logits[0, -1].float(), b(x).logits[0, -1].float()
            lpa, lpb = la.log_softmax(-1), lb.log_softmax(-1)
            assert s.base_rank[t] == int((la > la[tok]).sum()) + 1
            assert s.base_logprob[t] == pytest.approx(float(lpa[tok]), abs=1e-5)
            assert s.ft_logprob[t] == pytest.approx(float(lpb[tok]), abs=1e-5)
            assert s.kl[t] == pytest.approx(float((lpb.exp() * (lpb - lpa)).sum()), abs=1e-5)
    assert min(min(s.kl) for s in shifts) > 0


def test_lora_with_the_adapter_disabled_gives_the_base_logits(tiny_model, tmp_path):
    import torch
    from peft import PeftModel

    from sftscale.models import load_model
    from sftscale.testing import make_lora

    d = tiny_model("words", texts=["a b c"])
    make_lora(d, tmp_path / "lora", seed=5)
    base, _ = load_model(d, device="cpu")
    pm = PeftModel.from_pretrained(load_model(d, device="cpu")[0], str(tmp_path / "lora")).eval()
    x = torch.tensor([[1, 5, 9, 7, 3]])
    with torch.no_grad():
        with base_view(pm):
            off = pm(x).logits
        on, ref = pm(x).logits, base(x).logits
    assert torch.equal(off, ref)
    assert not torch.allclose(on, ref)
    pairs = [([1, 5], [9, 7, 3]), ([4], [2])]
    lora, plain = compare(pm, pairs), compare(base, pairs, base=base)
    assert [s.base_logprob for s in lora] == [s.base_logprob for s in plain]
    assert [s.base_rank for s in lora] == [s.base_rank for s in plain]
    assert min(lora[0].kl) > 0
    with pytest.raises(ValueError, match="base="):
        compare(base, pairs)


def _line_roles(text: str, format_lines: set[int]) -> list[str]:
    """Per character: the role of its line (a newline belongs to the line it ends)."""
    out, line = [], 0
    for c in text:
        out.append("format" if line in format_lines else "content")
        line += c == "\n"
    return out


def _expected(task: str, item, gold: str) -> list[str | None]:
    """Per character, the role the toy world's construction gives it (None: whitespace that
    decides nothing)."""
    from sftscale.toyworld.world import render_fact

    if task == "toy-math":
        marker = gold.rindex("\n####")
        out = []
        for i, c in enumerate(gold):
            if i >= marker and i < marker + 5:
                out.append("format")
            elif c.isdigit() or (c in "+-=" and gold[i - 1] == " "):
                out.append("content")
            else:
                out.append(None if c == " " else "other")
        return out
    if task == "toy-multihop":
        a = gold.index("\nAnswer:")
        return [None if c.isspace() else "format" if a <= i < a + len("\nAnswer:") else "content"
                for i, c in enumerate(gold)]
    if task == "toy-code":
        n = gold.count("\n")
        return _line_roles(gold, {0, 1, n})  # fence, def solve(x):, closing fence
    fact = render_fact(item.meta["person"], item.target["relation"], item.target["answer"], 0)
    a = gold.index(fact)
    return [None if c.isspace() else "content" if a <= i < a + len(fact) else "format"
            for i, c in enumerate(gold)]


@pytest.mark.parametrize("task", ["toy-math", "toy-multihop", "toy-code", "toy-instruct"])
def test_toy_roles_match_the_worlds_own_spans_for_every_token(task):
    from sftscale.models import load_tokenizer
    from sftscale.tasks import get_task
    from sftscale.tasks.roles import encode_response, token_roles

    tok, t = load_tokenizer("toy-S"), get_task(task)
    seen = set()
    for item in t.test_items()[:40]:
        gold = item.completion
        spans, default = t.role_spans(item, gold)
        _, offs = encode_response(tok, gold)
        got = token_roles(gold, offs, spans, default)
        want_chars = _expected(task, item, gold)
        for (a, b), role in zip(offs, got):
            votes = [w for w in want_chars[a:b] if w is not None]
            want = votes[0] if votes else "format"
            assert all(v == want for v in votes), (gold[a:b], votes)
            assert role == want, (task, gold, gold[a:b], role, want)
            seen.add(role)
    assert {"format", "content"} <= seen
    assert t.role_scheme == {"toy-multihop": "toy-qa"}.get(task, task)


def test_an_unknown_task_gets_the_generic_roles_named_as_such():
    from sftscale.models import load_tokenizer
    from sftscale.tasks.base import Item, Task
    from sftscale.tasks.roles import encode_response, token_roles

    class Plain(Task):
        def test_items(self):
            return []

        def prompt_text(self, item):
            return ""

        def score(self, item, response):
            return {"format_ok": True, "correct": True}

    text = "The answer is Paris, of course."
    spans, default = Plain().role_spans(Item("x", ""), text)
    tok = load_tokenizer("toy-S")
    _, offs = encode_response(tok, text)
    roles = dict(zip([text[a:b].strip() for a, b in offs], token_roles(text, offs, spans, default)))
    assert Plain.role_scheme == "generic"
    assert roles["The"] == roles["is"] == roles[","] == roles["of"] == "format"
    assert roles["answer"] == roles["Paris"] == roles["course"] == "content"


# --- the stage and the command, in a tiny LoRA study ---------------------------------------------
STUDY = """\
name: shift
models:
  - {{name: tiny, ref: {model}}}
tasks:
  - {{name: gsm8k, limit: 4, max_new_tokens: 8}}
n: [0, 8]
seeds: [0]
recipe: {{method: lora, epochs: 1, batch_size: 4, micro_batch_size: 4, max_length: 512, lr: 0.003,
         min_steps: 2}}
executor: {{workers: 1, threads: 1}}
{extra}"""


@pytest.fixture(scope="module")
def gsm8k_model(tiny_model) -> Path:
    from sftscale.data import load_records

    texts = [r["question"] + "\n" + r["answer"] for r in load_records("gsm8k", split="train")[:100]]
    return tiny_model("words", texts=texts, hidden=32, heads=2, intermediate=64, max_positions=1024)


def _study(tmp_path: Path, model: Path, extra: str = "") -> tuple[Path, Path]:
    p = tmp_path / "study.yaml"
    p.write_text(STUDY.format(model=model, extra=extra))
    return p, tmp_path / "run"


def test_the_stage_runs_in_a_study_and_sftscale_shift_writes_both_files(gsm8k_model, tmp_path):
    import torch

    from sftscale.models import load_model
    from sftscale.rundir.export import load_tables

    study, out = _study(tmp_path, gsm8k_model)
    r = run("run", study, "--out", out, "--no-progress")
    assert r.exit_code == 0, r.output
    n8 = out / "cells" / "tiny__gsm8k__n8__s0" / "shift"
    meta = json.loads((n8 / "shift_meta.json").read_text())
    assert meta["base"] == "adapter disabled" and meta["n_items"] == 4 and meta["roles_by"] == ["gsm8k"]
    n0 = json.loads((out / "cells" / "tiny__gsm8k__n0" / "shift" / "shift_meta.json").read_text())
    assert n0["n_items"] == 0
    metrics, _ = load_tables(out)
    got = metrics[metrics["metric"].isin(["shift_shifted_share", "shift_mean_kl"])]
    assert sorted(got["n"].tolist()) == [8, 8]

    r = run("shift", out, "--n-boot", "200")
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "shift.json").read_text())
    groups = {g["role"]: g for g in doc["groups"]}
    assert {g["n"] for g in doc["groups"]} == {8}
    assert "all" in groups and groups["all"]["n_items"] == 4
    alls = groups["all"]
    parts = sum(alls[b]["mid"] for b in ("unshifted", "marginal", "shifted"))
    assert parts == pytest.approx(1.0)
    assert alls["shifted"]["lo"] <= alls["shifted"]["mid"] <= alls["shifted"]["hi"]
    assert alls["by_position"]["first"]["n_tokens"] + alls["by_position"]["rest"]["n_tokens"] \
        == alls["n_tokens"]
    assert sum(groups[k]["n_tokens"] for k in groups if k != "all") == alls["n_tokens"]
    with gzip.open(out / "shift" / "tokens.jsonl.gz", "rt") as f:
        lines = [json.loads(x) for x in f]
    assert len(lines) == 4
    line = lines[0]
    assert line["checkpoint"] == "cells/tiny__gsm8k__n8__s0/train/ckpt"
    assert len(line["base_rank"]) == len(line["kl"]) == len(line["role"]) \
        == len(line["input_ids"]) - line["response_start"]
    # anyone can recompute a rank from the file: the base model's rank of the first response token
    base, _ = load_model(gsm8k_model, device="cpu")
    ids, s = line["input_ids"], line["response_start"]
    with torch.no_grad():
        logits = base(torch.tensor([ids[:s]])).logits[0, -1]
    assert line["base_rank"][0] == int((logits > logits[ids[s]]).sum()) + 1

    r = run("report", out, "--n-boot", "50")
    assert r.exit_code == 0, r.output
    html = (out / "report" / "report.html").read_text()
    assert "What finetuning changed, token by token" in html
    assert "tiny on gsm8k: at N = 8, " in html and "of shifted tokens are format tokens" in html
    assert (out / "report" / "token_shift_vs_n.png").exists()

    (out / "shift.json").write_text('{"mine": 1}')  # a file sftscale did not write
    r = run("shift", out)
    assert r.exit_code == 2 and "does not overwrite" in r.output


def test_analysis_token_shift_false_turns_the_stage_off(gsm8k_model, tmp_path):
    study, out = _study(tmp_path, gsm8k_model, "analysis: {token_shift: false}\n")
    r = run("run", study, "--out", out, "--no-progress")
    assert r.exit_code == 0, r.output
    assert (out / "cells" / "tiny__gsm8k__n8__s0" / "eval").is_dir()
    assert not list((out / "cells").glob("*/shift"))
    r = run("shift", out)
    assert r.exit_code == 0 and "no done cell" in r.output
    assert json.loads((out / "shift.json").read_text())["groups"] == []


def test_a_misspelt_analysis_switch_is_an_input_error_at_its_line(gsm8k_model, tmp_path):
    study, out = _study(tmp_path, gsm8k_model, "analysis: {token_shfit: false}\n")
    r = run("run", study, "--out", out, "--no-progress")
    assert r.exit_code == 2
    assert "token_shfit" in r.output and "line 11" in r.output
