"""The report: fits, style/substance analysis, knowledge table and samples end up on one page.

The run directory is made by the real study runner (store, exports, sample files) with an
evaluation stage that draws each item's format and correctness from known laws, so the
numbers on the page can be checked against the laws and against fits.json/analysis.json.
The browser test renders the page in headless Chromium (.ci/run installs it).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import cli
import numpy as np
import pytest

from sftscale.config import parse_study
from sftscale.io import atomic_write_json, atomic_write_jsonl
from sftscale.report import write_report
from sftscale.study.runner import CellRunner, run_study
from sftscale.study.stages import with_runs

STUDY = """\
name: synthetic
models:
  - {name: small, ref: toy-S}
tasks:
  - {name: toy-math, limit: 150}
n: [0, 16, 64, 256, 1024]
seeds: [0, 1]
"""


def law_acc(n: float) -> float:  # err = 0.15 + 0.9 (N + 8)^-0.45
    return 1.0 - min(1.0, 0.15 + 0.9 * (n + 8) ** -0.45)


def law_fmt(n: float) -> float:  # format saturates by N ~ 16
    return 0.97 if n >= 16 else 0.05


def train_stage(cell, ctx) -> None:
    out = ctx.out
    (out / "ckpt").mkdir()
    atomic_write_json(out / "train_meta.json", {"n": cell.n, "seed": cell.seed})


def eval_stage(cell, ctx) -> None:
    out = ctx.out
    rng = np.random.default_rng([cell.seed, 7])
    u_item = np.random.default_rng(99).random(cell.limit)  # item difficulty, shared across N
    u_f = rng.random(cell.limit)
    rows = []
    for i in range(cell.limit):
        fmt = bool(u_f[i] < law_fmt(cell.n))
        corr = bool(fmt and u_item[i] < law_acc(cell.n) / law_fmt(cell.n))
        rows.append({"id": f"toy-math/test/{i}", "prompt": f"Question: item {i}\nAnswer:",
                     "response": f"answer at N={cell.n} #### {i}" if fmt else "rambling",
                     "correct": corr, "format_ok": fmt})
    acc = float(np.mean([r["correct"] for r in rows]))
    fr = float(np.mean([r["format_ok"] for r in rows]))
    atomic_write_jsonl(out / "samples_toy-math_t.jsonl", rows)
    atomic_write_json(out / "results_t.json", {"results": {"toy-math": {
        "accuracy,none": acc, "format_rate,none": fr}}})


KNOWLEDGE = {
    "name": "k", "model": "toy-S", "facts": "toy", "n_facts": 40,
    "n_items": {"direct": 40, "multihop": 40}, "metrics": ["em"],
    "rows": [
        {"start": "base", "kind": "base", "n": 0, "condition": "injected",
         "direct": {"em": {"mean": 0.6, "lo": 0.45, "hi": 0.75}},
         "multihop": {"em": {"mean": 0.3, "lo": 0.18, "hi": 0.45}}},
        {"start": "multihop-N256", "kind": "posttrained", "n": 256, "condition": "injected",
         "direct": {"em": {"mean": 0.8, "lo": 0.68, "hi": 0.9}},
         "multihop": {"em": {"mean": 0.5, "lo": 0.35, "hi": 0.65}}},
        {"start": "base", "kind": "base", "n": 0, "condition": "retrieval",
         "direct": {"em": {"mean": 0.9, "lo": 0.8, "hi": 0.97}},
         "multihop": {"em": {"mean": 0.4, "lo": 0.25, "hi": 0.55}}}],
    "differences": [{"condition": "injected", "a": "multihop-N256", "b": "base", "question_type": "direct",
                     "metric": "em", "diff": 0.2, "lo": 0.05, "hi": 0.35,
                     "lo_unpaired": -0.02, "hi_unpaired": 0.41}],
}


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A finished run directory (store, exports, sample files, a knowledge table), no fits yet;
    copy it before writing into it."""
    tmp = tmp_path_factory.mktemp("study")
    cfg = parse_study(STUDY, "synthetic.yaml")
    res = run_study(cfg, out=tmp / "run", runner=CellRunner(stages=with_runs(train=train_stage, eval=eval_stage)),
                    progress=False, check=False)
    assert res.counts["done"] == 9
    atomic_write_json(tmp / "run" / "knowledge" / "table.json", KNOWLEDGE)
    return tmp / "run"


@pytest.fixture(scope="module")
def report(study, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("rep") / "run"
    shutil.copytree(study, run)
    return write_report(run, n_boot=200)


def test_report_files_and_measured_numbers(report: Path):
    run = report.parents[1]
    for stem in ("accuracy_vs_n", "style_vs_substance", "knowledge"):
        for ext in ("png", "svg"):
            assert (report.parent / f"{stem}.{ext}").stat().st_size > 1000
    fits = json.loads((run / "fits.json").read_text())["fits"]
    best = [f for f in fits if f["best"] and f["metric"] == "accuracy"]
    assert len(best) == 1
    page = report.read_text()
    # the page shows the measured R² of the best fit, not a constant
    assert f"R² = {best[0]['r2_metric']:.3g}" in page
    assert best[0]["r2_metric"] > 0.9  # data drawn from a smooth law
    # the chosen form has 2+ residual dof and identified parameters; Findings print <= 3 digits
    assert best[0]["dof"] >= 2 and best[0]["identified"] and best[0]["selection"]["eligible"]
    from sftscale.report.fmt import printed_numbers, sig_digits
    a = page.index("<h3>The paper's forms, fitted")
    nums = printed_numbers(page[a:page.index("<h2>", a + 5)])
    assert nums and all(sig_digits(t) <= 3 for t in nums), [t for t in nums if sig_digits(t) > 3]
    # the page leads with the answers, before any figure or fit table; N is printed exactly
    assert page.index("<h2>Answers") < page.index("<h2>Accuracy against N") < page.index("<h2>Details")
    assert "1,024" in page and "1,020" not in page
    fc = json.loads((run / "fits.json").read_text())["forecasts"]
    for c in fc["curves"]:
        vals = [v for p in c["predictions"] for v in (p["mid"], *p["curve"], *p["measurement"])]
        vals += [v for p in c["path"] for v in (p["mid"], p["lo"], p["hi"]) if v is not None]
        assert all(0 <= v <= 1 for v in vals)
        assert c["backtests"], "every curve with 4+ N is backtested"
    # every fitted form is in the table with its leave-one-N-out error
    for form in ("power", "saturating", "saturating_offset", "loglinear"):
        assert f">{form}" in page
    groups = json.loads((run / "analysis.json").read_text())["groups"]
    sat = groups[0]["style_saturation_n"]["n"]
    assert sat == 16  # the format law switches on at N = 16
    assert f"the format saturates at N = {int(sat)}" in page
    # once the format is flat, total error moves with substance error only
    after = groups[0]["r2_total_vs_substance_after_style"]
    assert after["from_n"] == 16 and after["n_points"] == 4 and after["r2"] > 0.95
    # the knowledge table and a sample response at each N
    assert "multihop-N256" in page and "80 <span class=sub>[68, 90]</span>" in page
    for n in (0, 16, 64, 256, 1024):
        assert f"answer at N={n} ####" in page or n == 0


def test_the_answers_say_when_one_seed_leaves_training_noise_out_of_the_intervals(report: Path):
    from sftscale.report.html import _answers

    run = report.parents[1]
    fc = json.loads((run / "fits.json").read_text())["forecasts"]
    analysis = json.loads((run / "analysis.json").read_text())
    caveat = "One seed per N"
    assert caveat in _answers(fc, analysis, one_seed=True)
    assert caveat not in _answers(fc, analysis, one_seed=False)
    assert caveat not in report.read_text()  # this study has two seeds


def test_report_images_are_embedded_and_valid(report: Path):
    page = report.read_text()
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) == 3
    for b in imgs:
        assert base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<script" not in page and "http://" not in page and "https://" not in page


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    assert exe, "Chromium is required for the browser test (make test installs Debian's chromium)"
    return exe


def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path):
    shot = tmp_path / "shot.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--window-size=1280,2400", f"--screenshot={shot}", report.as_uri()]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    console = [ln for ln in p.stderr.splitlines() if "CONSOLE" in ln]
    assert not console, console
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] > 1000 and img.shape[1] > 1000
    # not blank: many distinct colours and a real share of non-white pixels
    rgb = (img[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    assert len(np.unique(rgb[::7], axis=0)) > 50
    assert (rgb.min(axis=1) < 200).mean() > 0.02


# --- one fit for `sftscale fit` and `sftscale report`: reuse, or refit and say why --------------
def _invoke(*args: object):
    res = cli.run(*args)
    assert res.exit_code == 0, res.output
    return res


def _copy(study: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(study, run)
    return run


def _flip_one_item(run: Path) -> None:
    """A result changes after fits.json was written: one item of one cell is rescored."""
    import sqlite3

    with sqlite3.connect(run / "study.sqlite") as c:
        cell = c.execute("SELECT key FROM cells WHERE n = 64 AND seed = 0").fetchone()[0]
        c.execute("UPDATE items SET correct = 1 - correct WHERE cell = ? AND idx = 0", (cell,))


def test_report_reuses_a_fits_json_that_fit_wrote_with_other_settings(study, tmp_path):
    run = _copy(study, tmp_path)
    _invoke("fit", run, "--form", "power", "--level", "0.8", "--target", "0.3", "--n-boot", "50")
    fits, analysis = (run / "fits.json").read_bytes(), (run / "analysis.json").read_bytes()
    doc = json.loads(fits)
    assert doc["settings"]["forms"] == ["power"] and doc["settings"]["level"] == 0.8
    assert doc["settings"]["targets"] == [0.3] and doc["written_by"] == "sftscale fit"
    assert len(doc["inputs"]["sha256"]) == 64 and doc["inputs"]["item_rows"] == 9 * 150
    res = _invoke("report", run, "--n-boot", "50")
    assert (run / "fits.json").read_bytes() == fits and (run / "analysis.json").read_bytes() == analysis
    assert res.stderr.count("\n") == 1 and "reusing fits.json, written by sftscale fit" in res.stderr
    page = (run / "report" / "report.html").read_text()
    assert "Fits: fits.json reused, written by sftscale fit (forms power; every metric; 80% intervals" in page
    assert "<td class=l>power" in page and "<td class=l>saturating" not in page  # fit's forms, not the report's
    assert "Intervals: 80% bootstrap percentiles" in page


def test_report_refits_a_stale_fits_json_with_its_settings_and_says_why(study, tmp_path):
    run = _copy(study, tmp_path)
    _invoke("fit", run, "--form", "power", "--level", "0.8", "--target", "0.3", "--n-boot", "50")
    old = json.loads((run / "fits.json").read_text())
    _flip_one_item(run)
    res = _invoke("report", run, "--n-boot", "50")
    line = res.stderr.strip()
    assert "\n" not in line and line.startswith("refitting fits.json: the results changed since it was written")
    assert "with the settings it recorded (forms power; every metric; 80% intervals" in line
    new = json.loads((run / "fits.json").read_text())
    assert new["settings"] == old["settings"] and new["written_by"] == "sftscale report"
    assert new["inputs"]["sha256"] != old["inputs"]["sha256"]
    assert json.loads((run / "analysis.json").read_text())["inputs"]["sha256"] == new["inputs"]["sha256"]
    assert {f["form"] for f in new["fits"]} == {"power"} and new["fits"][0]["targets"][0]["target"] == 0.3
    page = (run / "report" / "report.html").read_text()
    assert "Fits: fits.json refitted for this report because the results changed since it was written" in page
    # fresh again: the next report reuses what this one wrote, and says nothing about refitting
    res = _invoke("report", run, "--n-boot", "50")
    assert "reusing fits.json, written by sftscale report" in res.stderr and "refitting" not in res.stderr


def test_report_refits_a_fits_json_without_an_input_hash(study, tmp_path):
    """A fits.json of an older sftscale (version 1: no settings, no inputs) cannot be checked."""
    run = _copy(study, tmp_path)
    _invoke("fit", run, "--form", "power", "--n-boot", "20")
    doc = json.loads((run / "fits.json").read_text())
    for k in ("settings", "inputs", "written_by"):
        del doc[k]
    doc["version"] = 1
    (run / "fits.json").write_text(json.dumps(doc))
    lines = []
    write_report(run, n_boot=50, say=lines.append)
    assert len(lines) == 1 and "written by an older sftscale, without a hash of its inputs" in lines[0]
    assert "this command's settings (forms power, saturating, saturating_offset, loglinear" in lines[0]
    doc = json.loads((run / "fits.json").read_text())
    assert doc["settings"]["metric_of"] == {"toy-math": "accuracy"}
    # one of another sftscale version is refitted too: its numbers may come from other code
    doc["sftscale_version"] = "0.0.1"
    (run / "fits.json").write_text(json.dumps(doc))
    lines.clear()
    write_report(run, n_boot=50, say=lines.append)
    assert len(lines) == 1 and "it was written by sftscale 0.0.1 (this is " in lines[0]


def test_the_input_hash_is_of_the_tables_not_their_row_order(study):
    from sftscale.fit.run import input_hash, load_fit_inputs

    inp = load_fit_inputs(study)
    assert inp.sha256 == input_hash(inp.long.iloc[::-1], inp.items.sample(frac=1, random_state=0))
    assert inp.sha256 != input_hash(inp.long.assign(value=inp.long["value"] + 1e-9), inp.items)


# --- extension points: a form and a section, each added in one place ---------------------------
def test_a_registered_form_is_fitted_joined_and_reported_with_no_other_edit(study, tmp_path):
    from dataclasses import dataclass

    import pandas as pd

    from sftscale.fit.forms import FORMS, Form, default_forms, register_form
    from sftscale.fit.joint import joint_fits

    @dataclass(frozen=True)
    class ErrorPower(Form):
        """err = A N^-alpha: a form that no module of sftscale names."""

        name: str = "error_power"
        theta_names: tuple[str, ...] = ("log_A", "alpha")
        public_names: tuple[str, ...] = ("A", "alpha")
        space: str = "log(1 - metric) vs log(N)"
        fit_space: str = "log_error"
        exponent: str | None = "alpha"

        def f(self, theta, n):
            return theta[:, :1] - theta[:, 1:2] * np.log(n)[None, :]

        def jac(self, theta, n):
            ln = np.broadcast_to(np.log(n)[None, :], (theta.shape[0], n.size))
            return np.stack([np.ones_like(ln), -ln], -1)

        def bounds(self):
            return np.array([-20.0, 0.0]), np.array([10.0, 5.0])

        def starts(self, n, z):
            d, c = np.polyfit(np.log(n), z, 1)
            return np.array([[c, max(-d, 0.01)], [float(np.mean(z)), 0.1]])

        def public(self, theta):
            out = np.array(theta, float, copy=True)
            out[..., 0] = np.exp(out[..., 0])
            return out

        def n_for(self, theta, target):
            with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                n = np.exp((theta[:, 0] - np.log(1.0 - target)) / theta[:, 1])
            return np.where(theta[:, 1] > 0, n, np.inf)

    register_form(ErrorPower())
    try:
        assert default_forms()[-1] == "error_power"
        with pytest.raises(ValueError, match="already registered"):
            register_form(ErrorPower())
        run = _copy(study, tmp_path)
        # fit: fitted by default, with the parameters it declares
        _invoke("fit", run, "--n-boot", "50")
        ep = [f for f in json.loads((run / "fits.json").read_text())["fits"] if f["form"] == "error_power"]
        assert {f["metric"] for f in ep} == {"accuracy", "format_rate"}
        acc = next(f for f in ep if f["metric"] == "accuracy")
        assert acc["params"]["alpha"] > 0 and acc["r2_metric"] > 0.8 and acc["param_ci"]["alpha"][0] > 0
        # joint: its declared exponent is compared across models
        long = pd.read_csv(run / "export.csv")
        two = pd.concat([long, long.assign(model="big", value=long["value"] * 0.9)])
        j = joint_fits(two[two["metric"] == "accuracy"], form="error_power", n_boot=50)
        assert j[0]["exponent"] == "alpha" and j[0]["models"][0]["exponent"]["mid"] > 0
        assert j[0]["differences"][0]["diff"] is not None
        # report: its own fit includes the form, in the table and in the selection
        (run / "fits.json").unlink()
        page = write_report(run, n_boot=50).read_text()
        assert "<td class=l>error_power" in page
        rep = json.loads((run / "fits.json").read_text())
        assert "error_power" in rep["settings"]["forms"]
        assert any(f["form"] == "error_power" and f["selection"]["eligible"] for f in rep["fits"])
    finally:
        FORMS.pop("error_power", None)


def test_a_new_section_is_one_function_and_one_list_entry(study, tmp_path, monkeypatch):
    from sftscale.report import ReportData, sections

    def cells_measured(d: ReportData) -> str:
        cells = d.metrics.drop_duplicates(["model", "task", "n", "seed"])
        return f"<h2>Cells measured</h2><p id=cells>{len(cells)} cells, fits by {d.fits['written_by']}</p>"

    monkeypatch.setattr(sections, "SECTIONS", [*sections.SECTIONS[:-1], cells_measured, sections.SECTIONS[-1]])
    page = write_report(_copy(study, tmp_path), n_boot=50).read_text()
    assert "<p id=cells>9 cells, fits by sftscale report</p>" in page
    assert page.index("<h2>Sample responses") < page.index("<h2>Cells measured") < page.index("<h2>Files")


def test_held_fixed_states_the_shared_stop_rule_once(tmp_path):
    """Cells that stopped at different steps share one rule: the section prints it once,
    without any cell's budget or stopping step."""
    import json

    from sftscale.report.html import _held_fixed

    rule = ("validation loss (...) every 10 steps and at the budget of {b}; stop after 3 evaluations "
            "in a row without an improvement; keep the weights of the lowest loss; the lr schedule "
            "spans the budget. {end}")
    ends = [(160, "Stopped at step 110, kept step 110."), (200, "Trained the whole budget (200 steps), kept step 180."),
            (200, "Stopped at step 120, kept step 90.")]
    for k, (b, end) in enumerate(ends):
        d = tmp_path / "cells" / f"c{k}" / "train"
        d.mkdir(parents=True)
        (d / "train_meta.json").write_text(json.dumps({
            "model": "m", "task": "t", "n": 64 * (k + 1), "seed": 0, "steps": 100 + k,
            "steps_budget": b, "stop_rule": rule.format(b=b, end=end)}))
    html = _held_fixed(tmp_path)
    assert html.count("validation loss (...)") == 1
    assert "Stopped at" not in html and "budget of 160" not in html and "kept step" not in html
    assert "at the cell&#x27;s step budget" in html
