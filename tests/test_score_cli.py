"""`sftscale score` and `sftscale tasks`, end to end through the command line."""

from __future__ import annotations

import json

import pytest
from cli import run

from sftscale.tasks.gsm8k import GSM8K


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def gsm8k_items():
    return GSM8K().test_items()


def test_score_gsm8k_gold_by_id(tmp_path, gsm8k_items):
    resp = write_jsonl(tmp_path / "r.jsonl",
                       [{"id": it.id, "response": " " + it.meta["solution"]} for it in gsm8k_items])
    out = tmp_path / "samples.jsonl"
    p = run("score", "--task", "gsm8k", "--responses", resp, "--samples-out", str(out))
    assert p.exit_code == 0, p.stderr
    assert len(p.stdout.strip().splitlines()) == 1          # one JSON object, nothing else
    agg = json.loads(p.stdout)
    assert agg["accuracy_strict"] == 1.0 and agg["format_rate"] == 1.0 and agg["n"] == 1319
    samples = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(samples) == 1319
    assert samples[0]["id"] == "gsm8k/test/0" and samples[0]["correct"] is True
    assert samples[0]["extracted"] == "18" and samples[0]["response"].endswith("#### 18")


def test_score_by_question_with_limit(tmp_path, gsm8k_items):
    rows = [{"question": it.question, "response": f"#### {it.target}" if i % 2 else "no idea"}
            for i, it in enumerate(gsm8k_items[:10])]
    p = run("score", "-t", "gsm8k", "-r", write_jsonl(tmp_path / "q.jsonl", rows), "--limit", "4")
    assert p.exit_code == 0, p.stderr
    agg = json.loads(p.stdout)
    assert agg["n"] == 4 and agg["accuracy"] == 0.5 and agg["format_rate"] == 0.5


@pytest.mark.parametrize("bad,reason", [
    ('{"id": "gsm8k/test/1", "response": ', "not valid JSON"),
    ({"id": "gsm8k/test/999999", "response": "#### 1"}, "field 'id'"),
    ({"id": "gsm8k/test/1"}, "field 'response'"),
    ({"response": "#### 1"}, "needs one of the keys id, question"),
    ({"id": "gsm8k/test/1", "response": 7}, "must be a string"),
])
def test_bad_line_exit_2_and_no_samples(tmp_path, bad, reason):
    resp = write_jsonl(tmp_path / "r.jsonl", [{"id": "gsm8k/test/0", "response": "#### 18"},
                                               {"id": "gsm8k/test/2", "response": "#### 3"}, bad])
    out = tmp_path / "samples.jsonl"
    p = run("score", "--task", "gsm8k", "--responses", resp, "--samples-out", str(out))
    assert p.exit_code == 2
    assert f"{resp}, line 3" in p.stderr and reason in p.stderr
    assert p.stdout == ""
    assert not out.exists() and not list(tmp_path.glob(".samples.jsonl.*"))


def test_unknown_task_and_missing_file(tmp_path):
    p = run("score", "--task", "no-such-task", "--responses", str(tmp_path / "x.jsonl"))
    assert p.exit_code == 2 and "unknown task" in p.stderr
    p = run("score", "--task", "gsm8k", "--responses", str(tmp_path / "x.jsonl"))
    assert p.exit_code == 2 and "no such file" in p.stderr


def test_bad_task_option_exit_2_naming_the_options(tmp_path):
    resp = write_jsonl(tmp_path / "r.jsonl", [{"id": "gsm8k/test/0", "response": "#### 18"}])
    p = run("score", "--task", "gsm8k", "--task-option", "foo=1", "--responses", resp)
    assert p.exit_code == 2 and p.stdout == ""
    assert "field '--task-option'" in p.stderr and "no option 'foo'" in p.stderr
    assert "limit, path, train_path" in p.stderr and "Traceback" not in p.stderr


def test_score_multihop_file_with_task_option(tmp_path):
    qa = write_jsonl(tmp_path / "qa.jsonl", [
        {"id": "q1", "question": "Capital of France?", "answer": "Paris"},
        {"id": "q2", "question": "Capital of Italy?", "answer": "Rome"}])
    resp = write_jsonl(tmp_path / "r.jsonl", [
        {"id": "q1", "response": "Answer: Paris"},
        {"question": "Capital of Italy?", "response": "It is Rome"}])
    p = run("score", "--task", "multihop-file", "--task-option", f"path={qa}", "--responses", resp)
    assert p.exit_code == 0, p.stderr
    agg = json.loads(p.stdout)
    assert agg["accuracy"] == 0.5 and agg["format_rate"] == 0.5 and agg["contains"] == 1.0


def test_score_fanoutqa(tmp_path):
    resp = write_jsonl(tmp_path / "r.jsonl", [{"id": "fanoutqa/7dcbbbdc7f1120cd",
                                               "response": "Answer: Pat Burrell - Right"}])
    p = run("score", "--task", "fanoutqa", "--responses", resp)
    assert p.exit_code == 0, p.stderr
    # parts found: "Pat Burrell" and both "Right" values -> 3 of 10
    assert json.loads(p.stdout)["loose_accuracy"] == pytest.approx(0.3)


def test_tasks_lists_sizes_without_crashing():
    p = run("tasks", "--json")
    assert p.exit_code == 0, p.output
    rows = {r["name"]: r for r in json.loads(p.stdout)}
    assert rows["gsm8k"]["n_test"] == 1319 and rows["gsm8k"]["n_train"] == 7473
    assert rows["gsm8k"]["license"] == "MIT"
    assert rows["fanoutqa"]["n_test"] == 310 and rows["fanoutqa"]["license"] == "CC-BY-SA-4.0"
    assert rows["multihop-file"]["status"] == "needs options"
    assert all(r["status"] in ("ok", "needs options", "unavailable") for r in rows.values())
    table = run("tasks")
    assert table.exit_code == 0 and "gsm8k" in table.stdout and "1,319" in table.stdout
