"""Forecasts: bounded, backtested, calibrated, and honest about lack of fit."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from cli import run

from sftscale.fit.backtest import conformal_q, curve_from_data, predict_members
from sftscale.fit.bootstrap import CurveData
from sftscale.fit.forecast import forecast_curves, forecast_table, isotonic
from sftscale.fit.members import MEMBERS
from sftscale.fit.simulate import random_params, simulate_curve, truth

N8 = 2.0 ** np.arange(3, 11)  # 8 ... 1,024, the demo's grid


def _trunc(cd: CurveData, k: int) -> CurveData:
    return dataclasses.replace(cd, n=cd.n[:k], y=cd.y[:k], reps=cd.reps[:, :k])


def test_members_recover_their_own_shapes_and_stay_in_unit_interval():
    """Each bounded member, fitted to noiseless points of its own family, predicts 4x beyond
    them within 0.01; no member's prediction leaves [0, 1], even from wild data."""
    x = np.log(N8)
    cases = {"logistic": ("logistic", {"f": 0.1, "h": 0.85, "k": 1.2, "m": np.log(100)}),
             "gompertz": ("gompertz", {"f": 0.05, "h": 0.9, "k": 0.9, "m": np.log(60)})}
    for name, (shape, p) in cases.items():
        y = truth(shape, p, N8)
        fit, pred = MEMBERS[name].fit_predict(x[:6], y[None, :6], np.full(6, 1e-4), x[6:], 1e-3)
        assert np.abs(pred[0] - y[6:]).max() < 0.01, name
    wild = np.array([[0.0, 1.0, 0.0, 1.0, 0.0, 1.0]])
    for name, m in MEMBERS.items():
        _, pred = m.fit_predict(x[:6], wild, np.full(6, 1e-3), np.log(np.array([2048.0, 1e6])), 1e-3)
        assert np.all((pred >= 0) & (pred <= 1)), name


def test_sigmoid_truth_never_gives_a_forecast_above_one():
    """A sigmoid in log N with a ceiling below 1, measured noisily: no forecast and no interval
    end at 2x or 4x lies above 1 (a power law is not bounded by 1)."""
    rng = np.random.default_rng(3)
    for _ in range(6):
        cds = [simulate_curve("logistic", random_params("logistic", rng), N8, rng, name=f"c{i}") for i in range(4)]
        fcs, _ = forecast_curves([curve_from_data(cd) for cd in cds])
        for fc in fcs:
            for p in fc.predictions:
                vals = [p["mid"], *p["curve"], *p["measurement"]]
                assert all(0.0 <= v <= 1.0 for v in vals)


def test_held_out_points_of_shapes_no_member_has_are_covered():
    """Studies of four curves whose truths are none of the members (Richards, saturation in N),
    largest one and two N held out: the 90% measurement intervals cover 80-97% of the held-out
    measurements, and the forecast's mean error beats both naive forecasts."""
    rng = np.random.default_rng(2024)
    N = 2.0 ** np.arange(3, 10)  # 8 ... 512
    inside, err, last, line = [], [], [], []
    for s in range(16):
        shape = ("richards", "expsat")[s % 2]
        cds = [simulate_curve(shape, random_params(shape, rng), N, rng, name=f"c{i}") for i in range(4)]
        for hold in (1, 2):
            curves = [curve_from_data(_trunc(cd, N.size - hold)) for cd in cds]
            fcs, _ = forecast_curves(curves)
            for fc, cd, c in zip(fcs, cds, curves):
                for p in fc.predictions if fc.status == "ok" else []:
                    j = np.nonzero(np.isclose(N, p["n"]))[0]
                    if not j.size:
                        continue
                    y = cd.y[j[0]]
                    inside.append(p["measurement"][0] <= y <= p["measurement"][1])
                    err.append(abs(p["mid"] - y))
                    last.append(abs(c.y[-1] - y))
                    b, a = np.polyfit(np.log(c.n), c.y, 1)
                    line.append(abs(np.clip(a + b * np.log(p["n"]), 0, 1) - y))
    assert len(inside) > 150
    assert 0.80 <= np.mean(inside) <= 0.97, np.mean(inside)
    assert np.mean(err) < np.mean(last) and np.mean(err) < np.mean(line), (np.mean(err), np.mean(last), np.mean(line))


def test_a_curve_with_a_kink_trips_lack_of_fit_and_gives_no_extrapolated_n():
    """Two steps (flat, jump, flat, jump) measured on 400 items: every form fails the lack-of-fit
    test, the forecast is "cannot forecast", and a target beyond the measured range gets no N;
    a target inside it is still answered from the measured points."""
    rng = np.random.default_rng(5)
    kink = {"steps": [40, 300], "levels": [0.2, 0.55, 0.9]}
    cds = [simulate_curve("kink", kink, N8, rng, items=400, name="kink")]
    cds += [simulate_curve("logistic", random_params("logistic", rng), N8, rng, name=f"s{i}") for i in range(3)]
    fcs, _ = forecast_curves([curve_from_data(cd) for cd in cds], targets=[0.5, 0.97])
    fk = fcs[0]
    assert fk.status == "cannot forecast" and "no form describes the points" in fk.reason
    assert all(v["fails"] for v in fk.lack.values() if v["p"] is not None)
    assert fk.predictions == []
    inside, beyond = fk.targets
    assert inside["how"] == "measured" and 32 <= inside["n"] <= 64
    assert beyond["how"] == "cannot" and beyond["n"] is None


def test_target_inside_the_range_is_interpolated_from_the_points():
    """A target between two measured points is answered by monotone interpolation in log N,
    with a bootstrap interval that contains it, not by a form."""
    n = N8
    y = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    rng = np.random.default_rng(0)
    reps = np.clip(y + rng.normal(0, 0.03, (300, 8)), 0, 1)
    c = curve_from_data(CurveData("m", "t", "accuracy", n, y, reps, "user", 200))
    fcs, _ = forecast_curves([c], targets=[0.45])
    t = fcs[0].targets[0]
    assert t["how"] == "measured"
    assert t["n"] == pytest.approx(np.sqrt(64 * 128), rel=1e-6)  # halfway between 64 and 128 in log N
    assert t["lo"] < t["n"] < t["hi"]


def test_isotonic_equals_pool_adjacent_violators():
    """The batched isotonic regression equals scipy's (pool adjacent violators) row by row."""
    from scipy.optimize import isotonic_regression

    Y = np.array([[1.0, 3.0, 2.0, 4.0, 3.5, 5.0], [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    out = isotonic(Y, np.ones(6))
    np.testing.assert_allclose(out[0], [1, 2.5, 2.5, 3.75, 3.75, 5])
    np.testing.assert_allclose(out[1], np.full(6, 2.5))
    rng = np.random.default_rng(0)
    Y, W = rng.random((200, 8)), rng.uniform(0.5, 3, 8)
    ref = np.stack([isotonic_regression(y, weights=W).x for y in Y])
    np.testing.assert_allclose(isotonic(Y, W), ref, atol=1e-12)


def test_conformal_quantile_is_finite_sample():
    s = np.arange(1, 20, dtype=float)  # 19 scores: the 18th smallest at 90% ((19 + 1) * 0.9 = 18)
    assert conformal_q(s, 0.9) == 18.0
    assert conformal_q(s[:8], 0.9) == np.inf  # fewer than 9 scores cannot give 90%


def test_backtests_and_naive_baselines_in_fits_json(tmp_path):
    """``sftscale fit`` writes forecasts with backtests (predicted, interval, measured, error,
    the naive forecasts) and prints the answers; a rate target outside (0, 1) is refused."""
    rng = np.random.default_rng(8)
    rows = []
    for t in range(3):
        p = random_params("richards", rng)
        for s in (0, 1):
            y = rng.binomial(80, truth("richards", p, N8)) / 80
            rows += [{"model": "m", "task": f"t{t}", "metric": "accuracy", "n": int(n), "value": v, "seed": s,
                      "n_items": 80} for n, v in zip(N8, y)]
    pd.DataFrame(rows).to_csv(tmp_path / "r.csv", index=False)
    wide = {"COLUMNS": "200"}  # the printed table on one line per row
    r = run("fit", tmp_path / "r.csv", "--n-boot", "200", "-t", "0.5", cwd=tmp_path, env=wide)
    assert r.exit_code == 0, r.stderr
    doc = json.loads((tmp_path / "fits.json").read_text())
    fc = doc["forecasts"]
    assert fc["level"] == 0.9 and set(fc["calibration"]["accuracy"]) == {"2x", "4x"}
    c0 = fc["curves"][0]
    bt = c0["backtests"]
    assert bt and {"fit_n_max", "n", "predicted", "measurement", "measured", "error", "naive"} <= set(bt[0])
    assert {"last", "loglinear"} <= set(bt[0]["naive"])
    last = max(b["n"] for b in bt)
    assert last == 1024 and any(b["fit_n_max"] == 512 for b in bt if b["n"] == last)
    assert "answers" in r.stdout and "1,024" in r.stdout and "backtest" in r.stdout
    assert all("prediction_2x" not in f for f in doc["fits"])
    bad = run("fit", tmp_path / "r.csv", "-t", "1.5", cwd=tmp_path, env=wide)
    assert bad.exit_code == 2 and "target" in bad.stderr and "Traceback" not in bad.stderr


def test_forecast_table_is_deterministic():
    rng = np.random.default_rng(1)
    p = random_params("expsat", rng)
    rows = [{"model": "m", "task": "t", "metric": "accuracy", "n": int(n), "value": v, "seed": 0, "n_items": 100}
            for n, v in zip(N8, rng.binomial(100, truth("expsat", p, N8)) / 100)]
    a = forecast_table(pd.DataFrame(rows), n_boot=200, targets=[0.6])
    b = forecast_table(pd.DataFrame(rows), n_boot=200, targets=[0.6])
    assert json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def test_predict_members_skips_members_with_too_few_points():
    c = curve_from_data(CurveData("m", "t", "a", N8[:3], np.array([0.1, 0.2, 0.3]), None, "none", 100))
    got = predict_members(c, 3, np.array([16.0]))
    assert set(got) == {m for m, v in MEMBERS.items() if v.min_points() <= 3}


def test_cannot_forecast_says_why():
    """Three N, a curve flat at the floor, a metric that is not a rate: each is refused with its
    reason and no forecast; the other curves of the study are still forecast."""
    rng = np.random.default_rng(4)
    ok = [simulate_curve("logistic", random_params("logistic", rng), N8, rng, name=f"s{i}") for i in range(2)]
    three = simulate_curve("logistic", random_params("logistic", rng), N8[:3], rng, name="three")
    flat = CurveData("sim", "flat", "accuracy", N8, np.zeros(8), np.zeros((50, 8)), "user", 100)
    big = CurveData("sim", "big", "accuracy", N8, np.linspace(1, 30, 8), None, "none", None)
    fcs, _ = forecast_curves([curve_from_data(cd) for cd in [*ok, three, flat, big]], targets=[0.5])
    why = {f.curve.task: f.reason for f in fcs}
    assert all(f.status == "ok" for f in fcs[:2])
    assert "only 3 N > 0" in why["three"]
    assert "at the floor" in why["flat"]
    assert "not a rate" in why["big"]
    for f in fcs[2:]:
        assert f.predictions == [] and f.status == "cannot forecast"
    # the refused curves did not join the calibration: the two good curves alone give the same
    alone, _ = forecast_curves([curve_from_data(cd) for cd in ok], targets=[0.5])
    assert [p["measurement"] for p in alone[0].predictions] == [p["measurement"] for p in fcs[0].predictions]
