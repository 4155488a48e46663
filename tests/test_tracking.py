"""Experiment tracking (sftscale.study.tracking): a study with ``tracking:`` on, read back.

MLflow: a REAL ``mlflow server`` (SQLite backend in tmp_path, 127.0.0.1, a free port) started
by a fixture, waited for on /health, always stopped (its whole process group) at the end;
the study's runs are read back with ``MlflowClient``. W&B: offline mode (WANDB_MODE=offline,
every W&B directory in tmp_path); wandb 0.31 has no reader for offline runs (``wandb.Api``
needs the server, and offline runs write no summary/config files), so the run's ``.wandb``
transaction log (leveldb log format, W&B header) is decoded with wandb's own protobuf
``Record``. The stages are the cheap file-writing ones of tests/study_helpers.py with a
hand-written train_meta (loss curve, recipe): the real toy stages would cost minutes here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cli import run_process
from study_helpers import cheap_eval, cheap_train

from sftscale.config import parse_study
from sftscale.io import InputError, atomic_write_json
from sftscale.rundir.store import Store
from sftscale.study.runner import CellRunner, run_study
from sftscale.study.stages import with_runs

VENV_BIN = Path(sys.executable).parent
STUDY = """\
name: tracked
models:
  - {name: m1, ref: toy-S}
tasks:
  - {name: toy-math, limit: 6}
n: [0, 8, 32]
seeds: [3, 4]
recipe: {lr: 0.002}
"""


def curve(cell) -> list[float]:
    """The loss curve the fake training 'records': distinct per cell."""
    return [round(3.0 / (step + 1) + cell.n / 1000 + cell.seed / 100, 6) for step in range(5)]


def train_with_curve(cell, ctx) -> None:
    cheap_train(cell, ctx)
    if cell.n == 0:  # like train_cell: no training, no recipe, no losses
        return
    meta = json.loads((ctx.out / "train_meta.json").read_text())
    meta.update(recipe_sha=f"sha-{cell.n}-{cell.seed}",
                recipe={"lr": cell.recipe.get("lr"), "epochs": 3.0},
                loss_curve=curve(cell), final_loss=curve(cell)[-1])
    atomic_write_json(ctx.out / "train_meta.json", meta)


RUNNER = CellRunner(stages=with_runs(train=train_with_curve, eval=cheap_eval))


def store_metrics(run_dir: Path) -> dict[str, dict[str, float]]:
    """{cell key: {metric: value}} as the store recorded them."""
    out: dict[str, dict[str, float]] = {}
    with Store(run_dir / "study.sqlite", readonly=True) as st:
        for row in st.metrics():
            out.setdefault(row["cell"], {})[row["metric"]] = row["value"]
    return out


# --- MLflow against a real server ----------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``http://127.0.0.1:PORT`` of a fresh ``mlflow server``; stopped at the end."""
    d = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no GenAI job workers (~10 processes)
    log = open(d / "server.log", "wb")
    proc = subprocess.Popen(
        [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{d / 'mlflow.db'}",
         "--default-artifact-root", str(d / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited ({proc.returncode}):\n"
                            f"{(d / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer in 180 s:\n"
                            f"{(d / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        with _suppress():
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with _suppress():
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        log.close()


def _suppress():
    import contextlib

    return contextlib.suppress(ProcessLookupError, PermissionError)


def test_mlflow_parent_and_child_runs_on_a_real_server(mlflow_server, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    text = STUDY + (f"tracking:\n  mlflow: {{uri: '{mlflow_server}', "
                    f"experiment: exp-{tmp_path.name}}}\n")
    cfg = parse_study(text, tmp_path / "study.yaml")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "FAIL").write_text("n32__s4")  # cheap_eval fails this cell
    res = run_study(cfg, out=run_dir, runner=RUNNER, progress=False, check=False)
    assert res.counts["done"] == 4 and res.failed == ["m1__toy-math__n32__s4"]

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name(f"exp-{tmp_path.name}")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sftscale.kind") == "study"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.info.run_name == "tracked"
    assert parent.data.metrics == {"cells_done": 4.0, "cells_failed": 1.0}
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["study.yaml"]

    children = {r.info.run_name: r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    from sftscale.grid.cells import expand_cells

    cells = {c.key: c for c in expand_cells(cfg)}
    assert sorted(children) == sorted(cells)
    recorded = store_metrics(run_dir)
    for key, run in children.items():
        cell, p = cells[key], run.data.params
        assert (p["model"], p["model_ref"], p["task"], p["n"], p["seed"]) == \
            ("m1", "toy-S", "toy-math", str(cell.n), str(cell.seed))
        assert p["spec_hash"] == cell.spec_hash
        if key.endswith("n32__s4"):
            assert run.info.status == "FAILED"
            assert "deliberate failure" in run.data.tags["sftscale.error"]
        else:
            assert run.info.status == "FINISHED"
            for metric, value in recorded[key].items():
                assert run.data.metrics[f"eval/{metric}"] == pytest.approx(value)
            arts = [a.path for a in client.list_artifacts(run.info.run_id)]
            assert arts == ["results_t.json", "train_meta.json"]
            got = Path(client.download_artifacts(run.info.run_id, "results_t.json", str(tmp_path)))
            res_file = next((run_dir / "cells" / key / "eval").glob("results_*.json"))
            assert got.read_bytes() == res_file.read_bytes()
        if cell.n == 0:  # no training: no recipe, no loss
            assert "recipe_sha" not in p
            assert client.get_metric_history(run.info.run_id, "train/loss") == []
            continue
        assert p["recipe_sha"] == f"sha-{cell.n}-{cell.seed}"
        assert p["recipe.lr"] == "0.002" and p["recipe.epochs"] == "3.0"
        hist = client.get_metric_history(run.info.run_id, "train/loss")
        assert [(m.step, m.value) for m in sorted(hist, key=lambda m: m.step)] == \
            [(i + 1, v) for i, v in enumerate(curve(cell))]
        assert run.data.metrics["train/final_loss"] == pytest.approx(curve(cell)[-1])

    # resuming (the failure fixed) logs the new outcome as a child of the SAME parent run
    (run_dir / "FAIL").unlink()
    run_study(cfg, out=run_dir, runner=RUNNER, progress=False, check=False, retry_failed=True)
    runs = client.search_runs([exp.experiment_id], filter_string="tags.sftscale.kind = 'cell'")
    again = [r for r in runs if r.info.run_name == "m1__toy-math__n32__s4"]
    assert sorted(r.info.status for r in again) == ["FAILED", "FINISHED"]
    assert {r.data.tags["mlflow.parentRunId"] for r in again} == {parent.info.run_id}
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


def test_unreachable_mlflow_is_an_input_error_before_any_cell(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    text = STUDY + f"tracking:\n  mlflow:\n    uri: http://127.0.0.1:{_free_port()}\n"
    cfg = parse_study(text, tmp_path / "study.yaml")
    with pytest.raises(InputError) as e:
        run_study(cfg, out=tmp_path / "run", runner=RUNNER, progress=False, check=False)
    assert "MLflow tracking at http://127.0.0.1:" in str(e.value)
    assert e.value.line == 10 and e.value.field == "tracking.mlflow"
    assert not (tmp_path / "run" / "cells").exists()


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed: import fails
    cfg = parse_study(STUDY + "tracking:\n  wandb: {mode: offline}\n", tmp_path / "study.yaml")
    with pytest.raises(InputError) as e:
        run_study(cfg, out=tmp_path / "run", runner=RUNNER, progress=False, check=False)
    assert "pip install 'sftscale[tracking]'" in str(e.value)
    assert e.value.field == "tracking.wandb" and e.value.line == 10


def test_tracking_config_errors_name_line_and_field():
    with pytest.raises(InputError) as e:
        parse_study(STUDY + "tracking:\n  mlflow:\n    url: http://x\n", "s.yaml")
    assert (e.value.line, e.value.field) == (11, "tracking.mlflow.url")
    assert "allowed: uri, experiment" in str(e.value)
    with pytest.raises(InputError) as e:
        parse_study(STUDY + "tracking:\n  wandb: {mode: sometimes}\n", "s.yaml")
    assert (e.value.line, e.value.field) == (10, "tracking.wandb.mode")
    assert parse_study(STUDY, "s.yaml").tracking.mlflow is None  # off by default
    assert parse_study(STUDY + "tracking:\n  mlflow:\n", "s.yaml").tracking.mlflow.uri is None


def test_tracking_off_imports_neither_package(tmp_path):
    code = ("import sys; from pathlib import Path; from sftscale.config import parse_study;"
            "from sftscale.study.runner import run_study; from sftscale.study import tracking;"
            f"t = tracking.open_tracker(parse_study({STUDY!r}), Path({str(tmp_path)!r}));"
            "print(type(t).__name__, sorted(m for m in ('mlflow', 'wandb') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "NullTracker []"
    assert not (tmp_path / "tracking.json").exists()


# --- W&B offline ---------------------------------------------------------------------------

def wandb_records(path: Path) -> list:
    """The protobuf Records of a ``.wandb`` file: a 7-byte W&B header, then the leveldb log
    format (32 KiB blocks; 7-byte record headers crc32/length/type; FULL=1, FIRST=2,
    MIDDLE=3, LAST=4)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    block, pos, chunks, buf = 32768, 7, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        part, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            chunks.append(part)
        elif kind == 2:
            buf = part
        elif kind == 3:
            buf += part
        elif kind == 4:
            chunks.append(buf + part)
    records = []
    for raw in chunks:
        r = pb.Record()
        r.ParseFromString(raw)
        records.append(r)
    return records


def wandb_run(path: Path) -> dict:
    """What one offline run holds: name, group, job type, config, history, summary,
    artifacts ({name: {file: digest}}), exit code."""
    out: dict = {"config": {}, "history": [], "summary": {}, "artifacts": {}, "exit": None}
    for r in wandb_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out.update(name=r.run.display_name, group=r.run.run_group, job_type=r.run.job_type)
            out["config"].update({i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "history":
            out["history"].append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                                   for i in r.history.item})
        elif kind == "summary":
            out["summary"].update({(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                                   for i in r.summary.update})
        elif kind == "artifact":
            out["artifacts"][r.artifact.name] = {e.path: e.digest
                                                 for e in r.artifact.manifest.contents}
        elif kind == "exit":
            out["exit"] = r.exit.exit_code
    return out


def test_wandb_offline_and_default_mlflow_store_at_once(tmp_path, monkeypatch):
    """Both trackers on; W&B offline read back from its files; MLflow's default store is
    SQLite in the run directory and nothing lands in the cwd (no ./mlruns, ./mlflow.db)."""
    import base64
    import hashlib

    from mlflow import MlflowClient

    wb = tmp_path / "wandb-home"
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(wb / var.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")  # `mode: auto` follows $WANDB_MODE: no probe
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = parse_study(STUDY.replace("[3, 4]", "[3]") + "tracking:\n  mlflow: true\n"
                      "  wandb: {project: p}\n", "study.yaml")
    run_dir = tmp_path / "run"
    run_study(cfg, out="run", runner=RUNNER, progress=False, check=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "wandb-home"]

    state = json.loads((run_dir / "tracking.json").read_text())["mlflow"]
    assert state["uri"] == f"sqlite:///{run_dir / 'mlflow.db'}"
    client = MlflowClient(state["uri"])
    runs = client.search_runs([state["experiment_id"]], filter_string="tags.sftscale.kind = 'cell'")
    assert sorted(r.info.run_name for r in runs) == \
        ["m1__toy-math__n0", "m1__toy-math__n32__s3", "m1__toy-math__n8__s3"]
    assert [a.path for a in client.list_artifacts(runs[0].info.run_id)] == \
        ["results_t.json", "train_meta.json"]
    assert next((run_dir / "mlartifacts").rglob("results_t.json")).is_file()
    state = json.loads((run_dir / "tracking.json").read_text())["wandb"]
    assert state["mode"] == "offline" and state["mode_reason"] == "$WANDB_MODE"
    files = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    runs = {r["name"]: r for r in map(wandb_run, files)}
    from sftscale.grid.cells import expand_cells

    cells = {c.key: c for c in expand_cells(cfg)}
    assert sorted(runs) == sorted([*cells, "tracked"])
    assert {r["group"] for r in runs.values()} == {state["group"]}
    assert runs["tracked"]["job_type"] == "study" and runs["tracked"]["exit"] == 0
    assert runs["tracked"]["summary"]["cells_done"] == 3
    recorded = store_metrics(run_dir)
    for key, cell in cells.items():
        r = runs[key]
        assert r["job_type"] == "cell" and r["exit"] == 0
        assert (r["config"]["model"], r["config"]["n"], r["config"]["seed"]) == ("m1", cell.n, 3)
        losses = [(h["_step"], h["train/loss"]) for h in r["history"] if "train/loss" in h]
        assert losses == ([] if cell.n == 0 else [(i + 1, v) for i, v in enumerate(curve(cell))])
        for metric, value in recorded[key].items():
            assert r["summary"][f"eval/{metric}"] == pytest.approx(value)
        (art,) = r["artifacts"].values()
        res = next((run_dir / "cells" / key / "eval").glob("results_*.json"))
        md5 = base64.b64encode(hashlib.md5(res.read_bytes()).digest()).decode()
        assert art["results_t.json"] == md5  # W&B's manifest digest: base64 md5
        if cell.n:
            assert r["config"]["recipe_sha"] == f"sha-{cell.n}-3"


# --- no third-party warnings on a normal run (sftscale.quiet) ------------------------------

def test_cli_run_prints_no_third_party_warnings(tiny_model, tmp_path):
    """`sftscale run` of a LoRA study (peft's FutureWarning via transformers, without the
    filter) with MLflow tracking (MLflow's INFO lines about creating its tables): stderr holds
    our lines only."""
    model = tiny_model("words")
    study = tmp_path / "study.yaml"
    study.write_text(f"""\
name: quiet
models:
  - {{name: tiny, ref: {model}}}
tasks:
  - {{name: gsm8k, limit: 2, max_new_tokens: 4}}
n: [4]
recipe: {{method: lora, min_steps: 1, max_steps: 2, batch_size: 2, micro_batch_size: 2}}
executor: {{threads: 1}}
tracking:
  mlflow: true
""")
    env = {"PYTHONWARNINGS": None, "MLFLOW_TRACKING_URI": None,
           "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1"}
    out = run_process("run", study, "--out", tmp_path / "run", "--no-progress", env=env,
                      cwd=tmp_path, timeout=300)  # a fresh process: warnings shown once
    assert out.exit_code == 0, out.stderr[-3000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert any(ln.startswith("quiet: 1 done, 0 failed") for ln in lines), out.stderr
    noise = [ln for ln in lines if re.search(r"Warning\b|\bINFO\b|^\s+warnings\.warn|^wandb:", ln)]
    assert noise == [], "\n".join(noise)
