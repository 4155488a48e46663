"""The batched fit paths give what the one-curve paths give (issue 31: big fit tables).

``fit_curves`` / ``fit_curve_data``, ``backtest_many``, ``predict_members_many``, the joint
fits' pair differences and ``progress.run_fits`` stack many curves into one ``lm_fit`` call;
every row is its own problem, so each curve's numbers must equal those of fitting it alone.
The members' closed-form Jacobians are checked against finite differences.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sftscale.fit.backtest import backtest, backtest_many, curve_from_data, predict_members, predict_members_many
from sftscale.fit.fitting import fit_curve, fit_curve_data, fit_table, iter_curves
from sftscale.fit.forecast import forecast_table
from sftscale.fit.forms import default_forms
from sftscale.fit.joint import _difference, _differences, joint_fits
from sftscale.fit.members import _Curve
from sftscale.fit.progress import run_fits
from sftscale.fit.selection import select_best

GRID_A = [0, 8, 16, 32, 64, 128, 256, 512]
GRID_B = [0, 10, 40, 160, 640]


def long_table(models: int, grid: list[int], task: str = "t", seeds: int = 2, seed: int = 0,
               zeros: bool = False) -> pd.DataFrame:
    """Saturating accuracy curves with binomial noise on 200 items (the shape of
    benchmarks/make_fit_csv.py); ``zeros``: the first model scores 0 at its two smallest N."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(models):
        a, k = rng.uniform(0.3, 0.9), rng.uniform(0.2, 0.6)
        for j, n in enumerate(grid):
            p = a - (a - 0.05) * (1 + n) ** -k
            for s in range(seeds):
                v = 0.0 if zeros and c == 0 and j < 2 else rng.binomial(200, p) / 200
                rows.append({"model": f"{task}m{c}", "task": task, "metric": "accuracy", "n": n,
                             "value": v, "seed": s, "n_items": 200})
    return pd.DataFrame(rows)


def mixed_grids() -> pd.DataFrame:
    return pd.concat([long_table(4, GRID_A, "ta", zeros=True), long_table(3, GRID_B, "tb", seed=1)],
                     ignore_index=True)


def same_fit(a, b) -> None:
    assert (a.model, a.task, a.form) == (b.model, b.task, b.form)
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.theta_reps, b.theta_reps)
    np.testing.assert_array_equal(a.loo["error"], b.loo["error"])
    assert a.warnings == b.warnings and a.unidentified == b.unidentified
    assert a.param_ci == b.param_ci and a.best == b.best and a.selection == b.selection


# --- closed-form Jacobians of the forecast members ----------------------------------------------
@pytest.mark.parametrize("kind,p", [("logit", 2), ("pow3", 3), ("logistic", 4), ("gompertz", 4)])
def test_member_jacobian_matches_finite_differences(kind, p):
    fo = _Curve(name=kind, kind=kind, theta_names=("",) * p)
    rng = np.random.default_rng(3)
    th = {"logit": np.column_stack([rng.uniform(-6, 2, 40), rng.uniform(0, 2, 40)]),
          "pow3": np.column_stack([rng.uniform(0.3, 1, 40), rng.uniform(-3, 1, 40), rng.uniform(-1.5, -0.05, 40)])
          }.get(kind, np.column_stack([rng.uniform(0, 0.3, 40), rng.uniform(0.1, 1, 40),
                                       rng.uniform(-8, 2, 40), rng.uniform(0.05, 2, 40)]))
    n = np.array([8.0, 16, 32, 64, 128, 256, 512])
    J, num = fo.jac(th, n), fo.jac_fd(th, n)
    assert J.shape == (40, n.size, p)
    np.testing.assert_allclose(J, num, rtol=1e-6, atol=1e-8)


# --- fit_table: curves of one grid fitted together ----------------------------------------------
def test_batched_fits_equal_one_curve_fits_on_mixed_grids():
    cds = list(iter_curves(mixed_grids(), None, 120, 0))
    forms = list(default_forms())
    batched = fit_curve_data(cds, forms)
    assert len(batched) == len(cds) * len(forms)
    one = []
    for cd in cds:  # one curve, one form at a time (the reference path)
        fits = [fit_curve(cd, f) for f in forms]
        select_best(fits)
        one += fits
    for a, b in zip(batched, one):
        same_fit(a, b)
    # the zeros of the first curve were clipped, so its refit at a lower floor ran in the batch too
    assert any("clipped" in w for w in batched[0].warnings)


def test_fit_table_is_the_batched_path():
    long = long_table(3, GRID_A)
    for a, b in zip(fit_table(long, n_boot=50), fit_curve_data(list(iter_curves(long, None, 50, 0)),
                                                                list(default_forms()))):
        same_fit(a, b)


# --- forecasts: backtests of all curves of a grid at once ----------------------------------------
def _curves():
    return [curve_from_data(cd) for cd in iter_curves(mixed_grids(), None, 60, 0)]


def test_predict_members_many_equals_one_curve_calls():
    curves = [c for c in _curves() if c.n.size == len(GRID_A) - 1]
    n_new = np.array([600.0, 1024.0])
    many = predict_members_many(curves, 5, n_new)
    for c, pm in zip(curves, many):
        one = predict_members(c, 5, n_new)
        assert list(pm) == list(one)
        for m in one:
            for key in ("mid", "zvar", "fitted"):
                np.testing.assert_array_equal(pm[m][key], one[m][key])


def test_backtest_many_equals_backtest_of_each_curve():
    curves = _curves()
    many = backtest_many(curves)
    one = [r for c in curves for r in backtest(c)]
    assert len(many) == len(one) > 0
    assert {r.curve[0] for r in many} == {c.model for c in curves}
    for a, b in zip(many, one):
        assert (a.curve, a.k, a.n, a.bucket, a.measured) == (b.curve, b.k, b.n, b.bucket, b.measured)
        assert a.preds == b.preds and a.zvars == b.zvars


# --- joint fits --------------------------------------------------------------------------------
def test_joint_fits_reusing_fit_table_fits_are_identical():
    long = long_table(4, GRID_A)
    fits = {(f.model, f.task, f.metric, f.form): f for f in fit_table(long, n_boot=80)}
    fresh = joint_fits(long, n_boot=80)
    reused = joint_fits(long, n_boot=80, reuse=fits)
    assert fresh == reused and len(fresh[0]["differences"]) == 6
    # the fits given are the ones used (not fitted again): a mark on one shows in the entry
    fits[("tm2", "t", "accuracy", "power")].warnings.append("marked")
    assert joint_fits(long, n_boot=80, reuse=fits)[0]["models"][2]["warnings"][-1] == "marked"
    # a fit of another level is not the same fit: refitted
    assert "marked" not in joint_fits(long, n_boot=80, level=0.9, reuse=fits)[0]["models"][2]["warnings"]


def test_pair_differences_equal_one_pair_at_a_time_with_failed_refits():
    long = long_table(4, GRID_A)
    fits = [f for f in fit_table(long, forms=["power"], n_boot=80)]
    # a refit that failed in one model: its replicate is left out of that model's pairs only
    f = fits[1]
    f.rep_ok = f.rep_ok.copy()
    f.rep_ok[5] = False
    f.theta_reps = np.delete(f.theta_reps, 5, axis=0)
    got = _differences(fits, 1, 0.9)
    pairs = [(a, b) for a in range(4) for b in range(a + 1, 4)]
    want = [_difference(fits[a], fits[b], 1, 0.9) for a, b in pairs]
    assert got == want
    assert [d["n_rep"] for d in got] == [79, 80, 80, 79, 79, 80]


# --- sftscale fit: the same numbers as one call of each ------------------------------------------
def test_run_fits_equals_fit_table_joint_fits_and_forecast_table():
    long = long_table(5, GRID_A)
    kw = dict(n_boot=60, seed=3)
    fits, joint, fc = run_fits(long, None, metric=None, forms=None, level=0.95, targets=[0.5],
                               forecast_level=0.9, **kw)
    for a, b in zip(fits, fit_table(long, level=0.95, **kw)):
        same_fit(a, b)
    assert joint == joint_fits(long, level=0.95, **kw)
    want = forecast_table(long, targets=[0.5], level=0.9, **kw)
    assert _nan_eq(fc, want)


def _nan_eq(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_nan_eq(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_nan_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def test_lm_fit_in_blocks_equals_one_block(monkeypatch):
    import sftscale.fit.lm as lm
    from sftscale.fit.forms import FORMS

    fo = FORMS["saturating"]
    n = np.array([8.0, 16, 32, 64, 128, 256])
    rng = np.random.default_rng(5)
    z = fo.f(np.array([[0.1, np.log(0.8), 0.4]]), n) + 0.05 * rng.standard_normal((50, n.size))
    w = (rng.random((50, n.size)) > 0.1).astype(float)
    whole = lm.lm_fit(fo, np.array([0.05, 0.0, 0.3]), n, z, w)
    monkeypatch.setattr(lm, "LM_BLOCK", 7)  # 8 blocks, the last one short
    blocks = lm.lm_fit(fo, np.array([0.05, 0.0, 0.3]), n, z, w)
    np.testing.assert_array_equal(whole[0], blocks[0])
    np.testing.assert_array_equal(whole[1], blocks[1])
    assert np.all(np.isfinite(whole[0]))


@pytest.mark.parametrize("p", [1, 2, 3, 4, 6, 7])
def test_solve_spd_equals_lapack_and_sends_bad_rows_to_it(p):
    from sftscale.fit.lm import solve_spd

    rng = np.random.default_rng(p)
    M = rng.standard_normal((300, p + 3, p))
    A = M.transpose(0, 2, 1) @ M + 1e-3 * np.eye(p)
    A[:, 0, 0] *= 1e6  # badly scaled, as a damped LM step matrix can be
    b = rng.standard_normal((300, p))
    A[5] = -np.eye(p)  # not positive definite: LAPACK solves it
    A[7, 0, 0] = np.nan  # not finite: LAPACK solves it too
    x = solve_spd(A.copy(), b)
    ref = np.linalg.solve(A, b[:, :, None])[:, :, 0]
    ok = np.arange(300) != 7
    np.testing.assert_allclose(x[ok], ref[ok], rtol=1e-7, atol=1e-12)
    np.testing.assert_array_equal(x[5], -b[5])
    np.testing.assert_array_equal(x[7], ref[7])  # LAPACK's answer, NaN where it has NaN


def test_run_fits_refuses_an_unknown_form_as_input():
    from sftscale.io import InputError

    with pytest.raises(InputError, match="nope"):
        run_fits(long_table(2, GRID_A), None, metric=None, forms=["nope"], n_boot=10, seed=0, level=0.95,
                 targets=[], forecast_level=0.9)


def test_fit_in_worker_processes_writes_the_numbers_of_one_process(tmp_path):
    """More than ``parallel.PARALLEL_OVER`` curves go to forked workers (``fit.parallel``): the
    same fits.json as one process, number for number, and the CLI says how many processes."""
    import json

    from cli import run

    from sftscale.fit.parallel import PARALLEL_OVER

    rng = np.random.default_rng(3)
    rows = []
    for c in range(PARALLEL_OVER // 2 + 3):  # two tasks: more than PARALLEL_OVER curves
        a, k = rng.uniform(0.3, 0.9), rng.uniform(0.2, 0.6)
        for t in ("t1", "t2"):
            for n in (0, 8, 16, 32, 64, 128, 256):
                p = a - (a - 0.05) * (1 + n) ** -k
                rows += [(f"m{c}", t, "accuracy", n, rng.binomial(200, p) / 200, s, 200) for s in range(2)]
    csv = tmp_path / "big.csv"
    pd.DataFrame(rows, columns=["model", "task", "metric", "n", "value", "seed", "n_items"]).to_csv(csv, index=False)
    docs = {}
    for j in (1, 2):
        r = run("fit", csv, "--n-boot", "60", "--target", "0.6", "-j", j, "--out", tmp_path / f"j{j}" / "fits.json")
        assert r.exit_code == 0, r.stderr
        assert (" in 2 processes" in r.stderr) == (j == 2)
        doc = json.loads((tmp_path / f"j{j}" / "fits.json").read_text())
        docs[j] = {k: doc[k] for k in ("fits", "joint", "forecasts")}
    assert len(docs[1]["fits"]) > PARALLEL_OVER and docs[1]["joint"] and docs[1]["forecasts"]["curves"]
    assert docs[1] == docs[2]


def _die_in_a_worker(i: int) -> int:
    import os

    from sftscale.fit.parallel import SHARED

    if os.getpid() != SHARED["parent"] and i == 1:
        os._exit(9)  # as a worker killed by the OOM killer
    return i * i


def test_fork_map_runs_again_in_this_process_when_a_worker_dies(capfd):
    import os

    from sftscale.fit.parallel import fork_map

    out = fork_map(_die_in_a_worker, [0, 1, 2, 3], 2, {"parent": os.getpid()})
    assert out == [0, 1, 4, 9]
    assert "a fit worker process died" in capfd.readouterr().err


def _kernel_forms():
    from sftscale.fit.forms import FORMS

    members = [_Curve(name=k, kind=k, theta_names=("",) * (2 if k == "logit" else 3 if k == "pow3" else 4),
                      kernel=k) for k in ("logit", "pow3", "logistic", "gompertz")]
    return [f for f in FORMS.values() if f.kernel] + members


def test_every_compiled_kernel_computes_its_forms_f_and_jac_and_a_changed_form_falls_back():
    from dataclasses import dataclass

    from sftscale.fit import lm
    from sftscale.fit.forms import Saturating
    from sftscale.fit.lm_compiled import agrees

    forms = _kernel_forms()
    assert {f.kernel for f in forms} == {"line", "sat", "sat0", "logit", "pow3", "logistic", "gompertz"}
    assert all(agrees(f) for f in forms)

    @dataclass(frozen=True)
    class Shifted(Saturating):  # changed maths, the kernel's name inherited
        name: str = "shifted"

        def f(self, theta, n):
            return super().f(theta, n) + 0.1

    fo = Shifted()
    assert not agrees(fo)
    n = np.array([8.0, 16, 32, 64, 128, 256])
    z = fo.f(np.array([[0.1, np.log(0.8), 0.4]]), n) + 0.01 * np.random.default_rng(0).standard_normal((30, 6))
    plain = lm.lm_fit(fo, np.array([0.05, 0.0, 0.3]), n, z)
    with lm.compiled():
        again = lm.lm_fit(fo, np.array([0.05, 0.0, 0.3]), n, z)
    np.testing.assert_array_equal(plain[0], again[0])  # numpy's path, not the kernel of Saturating


@pytest.mark.parametrize("k", range(7))
def test_compiled_lm_finds_the_fits_of_the_numpy_lm(k):
    from sftscale.fit import lm

    fo = _kernel_forms()[[f.kernel for f in _kernel_forms()].index(
        ["line", "sat", "sat0", "logit", "pow3", "logistic", "gompertz"][k])]
    rng = np.random.default_rng(k)
    n = np.array([8.0, 16, 32, 64, 128, 256, 512, 1024])
    lb, ub = fo.bounds()
    true = lb + (ub - lb) * rng.uniform(0.4, 0.6, (1, lb.size))
    z = fo.f(true, n) + 0.02 * rng.standard_normal((400, n.size))
    w = (rng.random(z.shape) > 0.1).astype(float)
    z[3, 2] = np.nan  # weighted and not finite: NaN in both
    w[4, 1], z[4, 1] = 0.0, np.inf  # not weighted: fitted without it
    start = lb + (ub - lb) * rng.uniform(0.45, 0.55, lb.size)
    th_np, loss_np = lm.lm_fit(fo, start, n, z, w, max_iter=60)
    with lm.compiled():
        th_c, loss_c = lm.lm_fit(fo, start, n, z, w, max_iter=60)
    assert np.isnan(th_np[3]).all() and np.isnan(th_c[3]).all() and np.isfinite(loss_c[4])
    ok = np.isfinite(loss_np)
    np.testing.assert_array_equal(ok, np.isfinite(loss_c))
    # the same minimum (both stop at a relative loss change of 1e-10, or at 60 steps)
    np.testing.assert_allclose(loss_c[ok], loss_np[ok], rtol=1e-6, atol=1e-12)
    close = np.isclose(th_c[ok], th_np[ok], rtol=1e-4, atol=1e-6).all(1)
    assert close.mean() > 0.97, close.mean()


def test_a_big_fit_runs_compiled_with_the_numbers_of_numpy(monkeypatch):
    """run_groups turns the compiled LM on from ``COMPILED_FROM`` bootstrap rows (here lowered):
    the same best forms and forecasts as numpy, every number within 1e-4 relative."""
    from sftscale.fit import lm

    calls = []
    real = lm._lm_compiled
    monkeypatch.setattr(lm, "_lm_compiled", lambda *a: calls.append(1) or real(*a))
    df = long_table(6, GRID_A)
    kw = dict(metric=None, forms=None, n_boot=80, seed=0, level=0.9, targets=[0.6], forecast_level=0.9)
    plain = run_fits(df, None, **kw)
    assert not calls
    monkeypatch.setattr(lm, "COMPILED_FROM", 1)
    fast = run_fits(df, None, **kw)
    assert calls
    for a, b in zip(plain[0], fast[0]):
        assert (a.form, a.best) == (b.form, b.best)
        np.testing.assert_allclose(a.theta, b.theta, rtol=1e-4, atol=1e-7)
    fa, fb = plain[2]["curves"], fast[2]["curves"]
    assert [c["status"] for c in fa] == [c["status"] for c in fb]
    assert sum(len(c.get("predictions", [])) for c in fa) >= 6
    for ca, cb in zip(fa, fb):
        for pa, pb in zip(ca.get("predictions", []), cb.get("predictions", [])):
            np.testing.assert_allclose([pa["mid"], *pa["measurement"]], [pb["mid"], *pb["measurement"]], rtol=1e-4)
