"""sftscale judge: error labels from a judge model, through real servers and in-process.

The run directory is a real study (the runner, the store) whose eval stage writes toy-math and
toy-multihop responses with known mistakes (a wrong equation, a wrong operand, a missing
``####`` line, a wrong bridge entity ...), scored by the tasks' own scorers. The servers are
real HTTP servers on the loopback, started once per module: ``transformers serve`` with the
shipped SmolLM2-135M-Instruct (two wrong responses per cell; a 135M judge parses rarely: a weak
judge is a finding),
and a uvicorn app that answers like a perfect judge (the label the toy world's truth gives),
or badly: HTTP 500, too slowly, garbage, or 503 once and then well.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cli import run
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from study_helpers import cheap_train

from sftscale.config import parse_study
from sftscale.io import atomic_write_json, atomic_write_jsonl, read_jsonl, sha256_text
from sftscale.judge import ChatClient, LocalClient, judge_run_dir, parse, taxonomy
from sftscale.judge.stats import agreement, kappa, label_shares
from sftscale.judge.truth import math_step
from sftscale.study.runner import CellRunner, run_study
from sftscale.study.stages import with_runs
from sftscale.tasks import get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CHECK = Path(__file__).with_name("data") / "judge_gsm8k.jsonl"
STUDY = """\
name: judged
models:
  - {name: m1, ref: toy-S}
tasks:
  - {name: toy-math, limit: 8}
  - {name: toy-multihop, limit: 8}
n: [0, 9]
seeds: [0]
"""


# --- a run directory with known mistakes -------------------------------------------------

def _math_response(ref: str, kind: int) -> str:
    """0: right; 1: the first equation's result off by one; 2: no #### line; 3: another operand."""
    if kind == 0:
        return ref
    if kind == 2:
        return ref.split("\n####")[0]
    m = re.search(r"(\d+) ([+-]) (\d+) = (\d+)", ref)
    assert m is not None
    a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
    if kind == 1:
        eq, ans = f"{a} {op} {b} = {c + 1}", c + 1
    else:
        b2 = b + 1
        eq, ans = f"{a} {op} {b2} = {a + b2 if op == '+' else a - b2}", a + b2 if op == "+" else a - b2
    return ref[:m.start()] + eq + ".\n#### " + str(ans)


def _hop_response(item, kind: int) -> str:
    """0: right; 1: wrong bridge entity; 2: right bridge, wrong answer; 3: no Answer line."""
    ref = item.completion
    if kind == 0:
        return ref
    if kind == 3:
        return ref.split("\n")[0]
    ans = item.target[0]
    if kind == 1:
        return ref.replace(item.meta["bridge"], "Nowhere Inc").replace(ans, "Atlantis")
    return ref.replace(ans, "Atlantis")


def judged_eval(cell, ctx) -> None:
    task = get_task(cell.task, limit=cell.limit)
    items = task.test_items()
    rows = []
    for i, it in enumerate(items):
        kind = (i + cell.n) % 4
        resp = _math_response(it.completion, kind) if cell.task == "toy-math" else _hop_response(it, kind)
        rows.append({"id": it.id, "prompt": task.prompt_text(it), "response": resp, "n_tokens": 1,
                     **task.score(it, resp)})
    acc = sum(bool(r["correct"]) for r in rows) / len(rows)
    atomic_write_jsonl(ctx.out / f"samples_{cell.task}_t.jsonl", rows)
    atomic_write_json(ctx.out / "results_t.json", {
        "results": {cell.task: {"alias": cell.task, "accuracy,none": acc}},
        "configs": {cell.task: {"task": cell.task, "task_options": {"limit": cell.limit}}}})


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("judged") / "run"
    res = run_study(parse_study(STUDY), out=out, progress=False,
                    runner=CellRunner(stages=with_runs(train=cheap_train, eval=judged_eval)))
    assert res.counts.get("done") == 4
    return out


def _copy(study: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(study, dst)
    return dst


# --- real servers on the loopback --------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _user(body: dict) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def _section(text: str, head: str) -> str:
    after = text.split(head, 1)[1]
    return after.split("\n\n", 1)[0] if head.startswith("Reference") else after.split("\n\nWhich kind", 1)[0]


def perfect_label(user: str) -> str:
    """What a perfect judge says: the toy world's truth, read from the request itself."""
    task = user.split("\n", 1)[0].removeprefix("Task: ")
    resp = _section(user, "The model's response (graded wrong):\n")
    ref = _section(user, "Reference answer:\n")
    if task == "toy-math":
        return "format" if "####" not in resp else (math_step(resp, ref) or "plan")
    if task == "toy-multihop":
        if "Answer:" not in resp:
            return "format"
        return "first_hop" if resp.split(".")[0].split()[-1] != ref.split(".")[0].split()[-1] else "second_hop"
    return taxonomy(task).fine[0]


class Judge:
    """A uvicorn server whose /v1/chat/completions answers per ``mode`` (``perfect`` or ``faulty``)."""

    def __init__(self):
        import uvicorn

        self.mode, self.seen, self.flaky = "perfect", [], set()
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            body = await request.json()
            user = _user(body)
            self.seen.append(sha256_text(user))
            if self.mode == "faulty":
                kind = int(sha256_text(user)[:8], 16) % 5
                if kind == 0:
                    return PlainTextResponse("internal error", status_code=500)
                if kind == 1:
                    await asyncio.sleep(1.5)
                if kind == 2:
                    return PlainTextResponse("<html>not json</html>")
                if kind == 3 and user not in self.flaky:
                    self.flaky.add(user)
                    return PlainTextResponse("overloaded", status_code=503)
            label = perfect_label(user)
            return JSONResponse({"id": "x", "object": "chat.completion", "model": body["model"], "choices": [
                {"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": f"LABEL: {label} | REASON: per the toy truth"}}]})

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        assert self.server.started

    def ref(self) -> str:
        return f"openai:http://127.0.0.1:{self.port}/v1/judge-m"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def judge_server():
    j = Judge()
    yield j
    j.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``transformers serve`` with the shipped SmolLM2-135M-Instruct (its GGUF, converted once
    into the cache), in its own process."""
    from sftscale.models import alias_gguf_path, ensure_converted

    model = ensure_converted(alias_gguf_path("smollm2-135m-instruct"))
    port = _free_port()
    exe = Path(sys.executable).with_name("transformers")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    log = open(tmp_path_factory.mktemp("serve-log") / "serve.log", "w")
    proc = subprocess.Popen([str(exe), "serve", str(model), "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu", "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    import httpx

    try:
        for _ in range(240):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, Path(log.name).read_text()
            time.sleep(0.5)
        yield f"openai:http://127.0.0.1:{port}/v1/{model}", model
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# --- the pieces --------------------------------------------------------------------------

def test_parse_takes_one_valid_label_and_never_guesses():
    math = taxonomy("gsm8k")
    assert parse("LABEL: calculation | REASON: 6*7 is 42", math) == ("calculation", "6*7 is 42")
    assert parse("label: Plan\nreason: adds instead of subtracting", math) == ("plan", "adds instead of subtracting")
    assert parse('Sure. {"label": "misread", "reason": "read 1/4"}', math) == ("misread", "read 1/4")
    assert parse("**LABEL:** format | REASON: no final line", math) == ("format", "no final line")
    assert parse("LABEL: Calculation: the plan is right but", math) == ("calculation", "")
    assert parse("LABEL: <label> | REASON: <one sentence>", math) is None  # the template copied
    assert parse("LABEL: first_hop | REASON: x", math) is None  # not a math label
    assert parse("LABEL: plan | REASON: x\nLABEL: calculation", math) is None  # two labels
    assert parse("It is a calculation error.", math) is None  # no LABEL line: not guessed
    assert parse("", math) is None
    assert taxonomy("toy-code").coarse("syntax") == "format"
    assert taxonomy("ifeval").coarse("wrong_content") == "reasoning"


def test_toy_math_truth_names_the_first_step_that_departs():
    ref = "Ada had 12 apples. Ada bought 7 more. 12 + 7 = 19. Ada ate 4. 19 - 4 = 15.\n#### 15"
    assert math_step(ref.replace("= 19", "= 20"), ref) == "calculation"
    assert math_step(ref.replace("12 + 7 = 19", "12 + 8 = 20"), ref) == "misread"
    assert math_step(ref.replace("19 - 4 = 15", "19 + 4 = 23"), ref) == "plan"
    assert math_step("Ada had 12 apples. 12 + 7 = 19.\n#### 19", ref) == "plan"  # a step missing
    assert math_step(ref.replace("#### 15", "#### 16"), ref) is None  # only the final line


def test_kappa_and_shares_are_the_textbook_numbers():
    # 2x2 table [[20, 5], [10, 15]]: po = 0.7, pe = 0.5*0.6 + 0.5*0.4 = 0.5, kappa = 0.4
    a = ["f"] * 25 + ["r"] * 25
    b = ["f"] * 20 + ["r"] * 5 + ["f"] * 10 + ["r"] * 15
    assert kappa(a, b) == pytest.approx(0.4)
    ag = agreement(a, b, b=200)
    assert ag["n"] == 50 and ag["accuracy"]["mid"] == pytest.approx(0.7)
    assert ag["accuracy"]["lo"] < 0.7 < ag["accuracy"]["hi"] and ag["kappa"]["lo"] < 0.4 < ag["kappa"]["hi"]
    assert agreement(["f", "f"], ["f", "f"])["kappa"] is None  # chance agreement 1: undefined
    assert agreement(["f", "f"], ["f", "r"])["kappa"]["mid"] == 0.0
    sh = label_shares(["plan", "plan", "format"], n_items=10, b=200)
    assert sh["plan"]["count"] == 2 and sh["plan"]["share"]["mid"] == pytest.approx(2 / 3)
    assert sh["plan"]["rate"]["mid"] == pytest.approx(0.2) and sh["format"]["rate"]["lo"] == 0.0


def test_the_hand_checked_gsm8k_set_is_what_it_says():
    from sftscale.tasks.gsm8k import score_response

    rows = list(read_jsonl(CHECK))
    test = {f"gsm8k/test/{i}": json.loads(line) for i, line in
            enumerate((Path(__file__).parents[1] / "src/sftscale/data/gsm8k/test.jsonl").read_text().splitlines())}
    assert len(rows) == 12 and {r["fine"] for r in rows} == set(taxonomy("gsm8k").fine)
    for r in rows:
        assert test[r["id"]]["question"] == r["question"]  # a real GSM8k item
        s = score_response(r["response"], test[r["id"]]["answer"])
        assert s["correct"] is False and s["format_ok"] is (r["fine"] != "format"), r["id"]


# --- end to end --------------------------------------------------------------------------

def test_judge_through_transformers_serve(study, served, tmp_path):
    ref, _ = served
    d = _copy(study, tmp_path)
    r = run("judge", d, "--model", ref, "--concurrency", "4", "--timeout", "120", "--limit", "2",
            "--max-tokens", "24")
    assert r.exit_code == 0, r.stderr
    labels = list(read_jsonl(d / "judge" / "labels.jsonl"))
    n_wrong = len(list(d.glob("cells/*/eval/samples_*.jsonl"))) * 2  # --limit 2 per cell
    assert len(labels) == n_wrong >= 6
    assert f"{n_wrong} wrong responses; 0 answered before (cache), sending {n_wrong} requests" in r.stderr
    assert {x["status"] for x in labels} <= {"ok", "unparsed"}  # every request answered
    doc = json.loads((d / "judge.json").read_text())
    assert doc["status"]["failed"] == 0 and doc["run"]["sent"] == n_wrong
    again = run("judge", d, "--model", ref, "--limit", "2", "--max-tokens", "24")
    assert again.exit_code == 0 and f"{n_wrong} answered before (cache), sending 0 requests" in again.stderr


def test_a_perfect_judge_agrees_with_the_toy_truth(study, judge_server, tmp_path):
    judge_server.mode = "perfect"
    d = _copy(study, tmp_path)
    r = run("judge", d, "--model", judge_server.ref(), "--check", CHECK)
    assert r.exit_code == 0, r.stderr
    doc = json.loads((d / "judge.json").read_text())
    toy = doc["agreement"]["toy"]
    assert toy["all"]["coarse"]["accuracy"]["mid"] == 1.0 and toy["all"]["coarse"]["kappa"]["mid"] == 1.0
    assert toy["toy-math"]["fine"]["accuracy"]["mid"] == 1.0 and toy["toy-multihop"]["fine"]["n"] > 0
    assert doc["agreement"]["check"]["n"] == 12
    g = next(g for g in doc["groups"] if g["task"] == "toy-math" and g["n"] == 9)
    rows = [x for x in read_jsonl(d / "judge" / "labels.jsonl") if x["task"] == "toy-math" and x["n"] == 9]
    assert g["n_wrong"] == len(rows) and g["n_items"] == 8
    assert g["coarse"]["format"]["count"] == g["rule"]["format"]["count"]  # a perfect judge = the rule
    assert "agreement with the toy world's truth, all:" in r.stdout


def test_a_faulty_server_loses_nothing_and_a_rerun_asks_only_the_failed(study, judge_server, tmp_path):
    d = _copy(study, tmp_path)
    judge_server.mode = "faulty"
    client = ChatClient(judge_server.ref(), concurrency=4, timeout_s=0.5, retries=1, backoff_s=0.01)
    doc = judge_run_dir(d, client, say=lambda s: None)
    rows = list(read_jsonl(d / "judge" / "labels.jsonl"))
    failed = [x for x in rows if x["status"] == "failed"]
    assert len(rows) == doc["run"]["sent"] and doc["status"]["failed"] == len(failed) > 0
    assert {x["status"] for x in rows} == {"ok", "failed"}
    errors = " ".join(x["error"] for x in failed)
    assert "HTTP 500" in errors and "timed out" in errors and "not a chat completion" in errors
    assert client.stats["retries"] > 0  # the 503s were retried, and those requests came back ok
    judge_server.mode = "perfect"
    before = len(judge_server.seen)
    doc2 = judge_run_dir(d, ChatClient(judge_server.ref(), concurrency=4), say=lambda s: None)
    assert doc2["run"]["sent"] == len(failed) == len(judge_server.seen) - before
    rows2 = list(read_jsonl(d / "judge" / "labels.jsonl"))
    assert doc2["status"]["failed"] == 0 and [x["key"] for x in rows2] == [x["key"] for x in rows]
    ok1 = {x["key"]: x["fine"] for x in rows if x["status"] == "ok"}
    assert all({x["key"]: x["fine"] for x in rows2}[k] == v for k, v in ok1.items())


def test_an_interrupted_cache_line_is_asked_again(study, judge_server, tmp_path):
    judge_server.mode = "perfect"
    d = _copy(study, tmp_path)
    judge_run_dir(d, ChatClient(judge_server.ref()), say=lambda s: None)
    cache = d / "judge" / "cache.jsonl"
    raw = cache.read_bytes()
    cache.write_bytes(raw[:-20])  # the last answer cut short, as by a crash mid-write
    lines = []
    doc = judge_run_dir(d, ChatClient(judge_server.ref()), say=lines.append)
    assert doc["run"]["sent"] == 1 and "sending 1 requests" in lines[0]


def test_in_process_judge_batches_a_local_model(study, tiny_model, tmp_path):
    d = _copy(study, tmp_path)
    client = LocalClient(str(tiny_model("chars")), batch_size=8, max_tokens=8)
    doc = judge_run_dir(d, client, say=lambda s: None, limit=2)  # at most 2 per cell: 4 cells
    assert doc["run"]["sent"] == 8 and client.gen.stats["base_loads"] == 1
    rows = list(read_jsonl(d / "judge" / "labels.jsonl"))
    assert len(rows) == 8 and {x["status"] for x in rows} <= {"ok", "unparsed"}
    assert all(x["judge"] == str(tiny_model("chars")) for x in rows)
    g = next(g for g in doc["groups"] if g["task"] == "toy-math" and g["n"] == 0)
    assert g["n_wrong"] == 2 and g["n_items"] == 3  # 6 wrong of 8 items, 2 kept: 8 x 2/6 items
    assert (g["items_evaluated"], g["wrong_evaluated"]) == (8, 6) and doc["limit_per_cell"] == 2
    assert judge_run_dir(d, client, say=lambda s: None, limit=2)["run"]["sent"] == 0


def test_judge_of_a_missing_dir_or_check_file_is_a_user_error(study, tmp_path, judge_server):
    r = run("judge", tmp_path, "--model", judge_server.ref())
    assert r.exit_code == 2 and "not a run directory" in r.stderr
    d = _copy(study, tmp_path)
    (d / "judge.json").write_text('{"mine": 1}')
    before = len(judge_server.seen)
    r = run("judge", d, "--model", judge_server.ref())
    assert r.exit_code == 2 and "does not overwrite a file it did not write" in r.stderr
    assert len(judge_server.seen) == before and (d / "judge.json").read_text() == '{"mine": 1}'
    bad = tmp_path / "check.jsonl"
    bad.write_text(json.dumps({"id": "a", "task": "gsm8k", "question": "q", "response": "r", "fine": "oops"}) + "\n")
    from sftscale.io import InputError
    from sftscale.judge import load_check_set

    with pytest.raises(InputError, match="line 1.*'fine'|'fine'.*line 1|oops"):
        load_check_set(bad)


def test_the_report_draws_the_judge_split_beside_the_rule_only_when_judged(study, judge_server, tmp_path):
    from sftscale.report import write_report

    judge_server.mode = "perfect"
    d = _copy(study, tmp_path)
    page = write_report(d, n_boot=50).read_text()
    assert "Why did it fail?" not in page
    judge_run_dir(d, ChatClient(judge_server.ref()), check=CHECK, say=lambda s: None)
    page = write_report(d, n_boot=50).read_text()
    assert "<h2>Why did it fail? (judge labels)</h2>" in page
    assert (d / "report" / "judge_labels.png").exists()
    assert "Against the toy world&#x27;s truth: format vs reasoning agreed on 100" in page or \
        "Against the toy world's truth: format vs reasoning agreed on 100" in page
    assert "On the hand-checked GSM8k set" in page
    assert "Judge and rule give the same class to 100% of the" in page


def test_a_study_with_a_judge_labels_its_wrong_responses_after_the_run(judge_server, tmp_path):
    judge_server.mode = "perfect"
    cfg = parse_study(STUDY + "analysis:\n  judge:\n"
                      f"    model: {judge_server.ref()}\n    limit: 3\n")
    assert parse_study(STUDY).analysis.judge is None  # off by default
    out = tmp_path / "run"
    run_study(cfg, out=out, progress=False,
              runner=CellRunner(stages=with_runs(train=cheap_train, eval=judged_eval)))
    doc = json.loads((out / "judge.json").read_text())
    assert doc["limit_per_cell"] == 3 and doc["status"]["ok"] == len(list(read_jsonl(out / "judge" / "labels.jsonl")))
    assert doc["agreement"]["toy"]["all"]["coarse"]["accuracy"]["mid"] == 1.0
