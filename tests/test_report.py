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
def report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("rep")
    cfg = parse_study(STUDY, "synthetic.yaml")
    res = run_study(cfg, out=tmp / "run", runner=CellRunner(stages=with_runs(train=train_stage, eval=eval_stage)),
                    progress=False, check=False)
    assert res.counts["done"] == 9
    atomic_write_json(tmp / "run" / "knowledge" / "table.json", KNOWLEDGE)
    return write_report(tmp / "run", n_boot=200)


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
