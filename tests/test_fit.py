"""Tests for sftscale.fit (fitting, bootstrap, forms, data) and the ``sftscale fit`` command.

All data are simulated here from known laws with binomial noise on a finite test set.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from cli import run
from scipy.stats import norm

from sftscale.fit.bootstrap import CurveData, paired_bootstrap_means
from sftscale.fit.data import load_items, load_long
from sftscale.fit.fitting import bootstrap_fit, fit_curve, fit_law, fit_table, n_for_target
from sftscale.fit.forms import FORMS, pearson_r2, r2_score
from sftscale.fit.lm import lm_fit
from sftscale.io import InputError

TRUTH = {  # internal theta of each form
    "power": [np.log(0.05), 0.35],
    "saturating": [0.15, np.log(0.8), 0.5],
    "loglinear": [0.05, 0.07],
    "saturating_offset": [0.15, np.log(3.0), 0.5, np.log(20.0)],
}
NS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]


def simulate_items(rng, form, theta, ns, n_items, rho=0.6):
    """Correlated per-item 0/1 scores (C=len(ns), I): item i is correct at N with the law's
    probability; a shared item latent makes the same items easy at every N."""
    p = FORMS[form].predict(np.array(theta), np.array(ns, float))[0]
    zi = rng.standard_normal(n_items)
    eps = rng.standard_normal((len(ns), n_items))
    return ((rho * zi[None] + np.sqrt(1 - rho ** 2) * eps) < norm.ppf(p)[:, None]).astype(float)


def as_tables(S, ns, model="m", task="t"):
    items = pd.DataFrame([{"model": model, "task": task, "n": n, "seed": 0, "item_id": f"q{i}",
                           "correct": S[k, i]} for k, n in enumerate(ns) for i in range(S.shape[1])])
    long = pd.DataFrame([{"model": model, "task": task, "metric": "accuracy", "n": n,
                          "value": S[k].mean(), "n_items": S.shape[1]} for k, n in enumerate(ns)])
    return long, items


# --- the gradient used by LM and L-BFGS-B is the true one --------------------------------
@pytest.mark.parametrize("name", list(FORMS))
def test_jacobian_matches_finite_differences(name):
    fo = FORMS[name]
    n = np.array([0.0, 1, 3, 10, 100]) if fo.includes_zero else np.array([1.0, 3, 10, 100])
    th = np.array(TRUTH[name])[None]
    J = fo.jac(th, n)[0]
    for i in range(fo.n_params):
        e = np.zeros_like(th)
        e[0, i] = 1e-6
        num = (fo.f(th + e, n) - fo.f(th - e, n))[0] / 2e-6
        assert np.allclose(J[:, i], num, atol=1e-6)


# --- coverage and bias ----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("form", ["power", "saturating", "loglinear"])
def test_interval_coverage_and_bias(form):
    """200 simulated studies x 200 bootstrap replicates (the benchmark runs 1,000): the 90%
    percentile intervals cover each true parameter in 85-95% of studies, and the mean point
    estimate is within 0.25 standard deviations (of the estimates) of the truth. The 90%
    interval of the N needed for a target inside the measured range (the true metric at
    N = 16 and at N = 256) covers the true N in 85-95% of studies too."""
    rng = np.random.default_rng(123)
    fo = FORMS[form]
    true = fo.public(np.array(TRUTH[form]))
    n_true = (16.0, 256.0)
    targets = fo.predict(np.array(TRUTH[form]), np.array(n_true))[0]
    hits, est, t_hits = [], [], []
    for _ in range(200):
        S = simulate_items(rng, form, TRUTH[form], NS, 400)
        lv, pt, reps = paired_bootstrap_means(np.array(NS, float), np.zeros(len(NS)), S, 200, rng)
        r = fit_curve(CurveData("m", "t", "accuracy", lv, pt, reps, "paired-items", 400), form, level=0.9)
        hits.append([r.param_ci[k][0] <= v <= r.param_ci[k][1] for k, v in zip(fo.public_names, true)])
        est.append([r.params[k] for k in fo.public_names])
        tg = [n_for_target(r, x) for x in targets]
        t_hits.append([t["lo"] is not None and t["lo"] <= nt <= (t["hi"] or np.inf) for t, nt in zip(tg, n_true)])
    cover = np.mean(hits, axis=0)
    t_cover = np.mean(t_hits, axis=0)
    est = np.array(est)
    assert np.all((cover >= 0.85) & (cover <= 0.95)), cover
    assert np.all((t_cover >= 0.85) & (t_cover <= 0.95)), t_cover
    assert np.all(np.abs(est.mean(0) - true) < 0.25 * est.std(0)), (est.mean(0), true)


# --- point fits, AIC, LOO --------------------------------------------------------------------
@pytest.mark.parametrize("form", ["power", "saturating", "saturating_offset", "loglinear"])
def test_aic_picks_true_form_on_clean_data(form):
    ns = [0, 4, 8, 16, 32, 64, 128, 256, 512, 1024] if form == "saturating_offset" else NS
    y = FORMS[form].predict(np.array(TRUTH[form]), np.array(ns, float))[0]
    long = pd.DataFrame({"model": "m", "task": "t", "metric": "accuracy", "n": ns, "value": y})
    res = fit_table(long, n_boot=0)
    best = [r for r in res if r.best]
    assert len(best) == 1 and best[0].form == form, [(r.form, r.aicc) for r in res]
    assert np.allclose(best[0].y_hat, y[-best[0].n.size:], atol=1e-5)
    assert best[0].r2 > 0.9999


def test_point_fit_recovers_parameters_and_loo_reported_for_every_fit():
    rng = np.random.default_rng(5)
    S = simulate_items(rng, "saturating", TRUTH["saturating"], NS, 2000)
    long, items = as_tables(S, NS)
    res = fit_table(long, items, n_boot=100, seed=1)
    assert {r.form for r in res} == set(FORMS)
    for r in res:
        assert len(r.loo["error"]) == r.n.size and np.all(np.isfinite(r.loo["error"])), r.form
        assert np.isfinite(r.loo["rmse"])
        d = r.to_dict()
        assert d["loo"]["rmse"] is not None and d["dof"] == r.n.size - len(r.params)
    sat = next(r for r in res if r.form == "saturating")
    assert abs(sat.params["alpha"] - 0.5) < 0.1 and abs(sat.params["E"] - 0.15) < 0.05
    # the true law predicts held-out N better than a straight line in log N
    assert sat.loo["rmse"] < next(r for r in res if r.form == "loglinear").loo["rmse"]


def test_predict_interval_and_determinism():
    rng = np.random.default_rng(9)
    S = simulate_items(rng, "power", TRUTH["power"], NS, 300)
    long, items = as_tables(S, NS)
    a = fit_table(long, items, forms=["power"], n_boot=300, seed=4)[0]
    b = fit_table(long.iloc[::-1], items.sample(frac=1, random_state=0), forms=["power"], n_boot=300, seed=4)[0]
    mid, lo, hi = a.predict([10, 100, 5000])
    assert np.all(lo <= mid) and np.all(mid <= hi) and np.all(hi - lo > 0)
    assert (hi - lo)[2] > (hi - lo)[1]  # extrapolation is less certain than interpolation
    assert np.array_equal(a.theta_reps, b.theta_reps)  # row order does not matter
    c = fit_table(long, items, forms=["power"], n_boot=300, seed=5)[0]
    assert not np.array_equal(a.theta_reps, c.theta_reps)


def test_interval_of_infinite_replicate_predictions_is_infinite_not_nan():
    """Replicates that predict -inf on both sides of a quantile must give -inf (the limit), not
    NaN from numpy's inf - inf interpolation, and must not warn."""
    import warnings

    rng = np.random.default_rng(9)
    S = simulate_items(rng, "power", TRUTH["power"], NS, 100)
    long, items = as_tables(S, NS)
    r = fit_table(long, items, forms=["power"], n_boot=50, seed=4)[0]
    reps = np.array([[-np.inf, 0.1], [-np.inf, 0.2], [-np.inf, 0.3], [-np.inf, 0.4]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        lo, hi = r._q(reps)
    assert lo[0] == hi[0] == -np.inf
    assert (lo[1], hi[1]) == pytest.approx((np.quantile(reps[:, 1], 0.025), np.quantile(reps[:, 1], 0.975)))


def test_lm_batch_equals_single_fits():
    rng = np.random.default_rng(2)
    fo = FORMS["saturating"]
    n = np.array(NS, float)
    z = fo.f(np.array(TRUTH["saturating"])[None], n) + 0.05 * rng.standard_normal((5, n.size))
    batch, _ = lm_fit(fo, np.array(TRUTH["saturating"]), n, z)
    for i in range(5):
        single, _ = lm_fit(fo, np.array(TRUTH["saturating"]), n, z[i:i + 1])
        assert np.allclose(batch[i], single[0], atol=1e-6)


# --- extrapolation ---------------------------------------------------------------------------
def test_n_for_target_reachable_and_unreachable():
    rng = np.random.default_rng(11)
    S = simulate_items(rng, "saturating", TRUTH["saturating"], NS, 1000)
    long, items = as_tables(S, NS)
    sat = fit_table(long, items, forms=["saturating"], n_boot=300)[0]
    ok = n_for_target(sat, 0.7)
    assert ok["reachable"] and ok["frac_reachable"] > 0.95
    assert ok["lo"] <= ok["n"] <= ok["hi"]
    assert abs(sat.predict([ok["n"]])[0][0] - 0.7) < 1e-6
    # ceiling is 1 - E ~ 0.85: 0.95 cannot be reached
    no = sat.n_for_target(0.95)
    assert no["reachable"] is False and no["n"] is None
    assert "not reachable" in no["note"]
    assert no["frac_reachable"] < 0.05 and no["hi"] is None
    # the power law (unbounded) would claim it is reachable
    pw = fit_table(long, items, forms=["power"], n_boot=50)[0]
    assert pw.n_for_target(0.95)["reachable"]


# --- the paired bootstrap pairs -----------------------------------------------------------------
def test_r2_batched_equals_row_by_row_and_constant_data_give_nan():
    rng = np.random.default_rng(0)
    obs, pred = rng.random((5, 7)), rng.random((5, 7))
    rows = [1.0 - float(np.sum((o - p) ** 2)) / float(np.sum((o - o.mean()) ** 2)) for o, p in zip(obs, pred)]
    assert r2_score(obs, pred).tolist() == rows
    assert [float(pearson_r2(o, p)) for o, p in zip(obs, pred)] == pearson_r2(obs, pred).tolist()
    assert float(pearson_r2(obs[0], 2 * obs[0] + 1)) == pytest.approx(1.0)
    assert np.isnan(r2_score(np.ones(4), np.arange(4.0))) and np.isnan(pearson_r2(np.ones(4), np.arange(4.0)))


def test_paired_bootstrap_difference_much_narrower_than_unpaired():
    rng = np.random.default_rng(3)
    n_items = 500
    easy = rng.random(n_items)
    # the same items are solved at both N, except a few that flip: the difference is ~0.02
    S = np.stack([(easy < 0.50).astype(float), (easy < 0.52).astype(float)])
    width = {}
    for paired in (True, False):
        _, pt, reps = paired_bootstrap_means([10, 20], [0, 0], S, 1000, np.random.default_rng(0), paired=paired)
        d = reps[:, 1] - reps[:, 0]
        width[paired] = np.quantile(d, 0.975) - np.quantile(d, 0.025)
        assert np.isclose(pt[1] - pt[0], S[1].mean() - S[0].mean())
    assert width[True] < 0.3 * width[False], width
    assert width[True] > 0  # still some uncertainty about the flips


def test_seed_resampling_used_with_several_seeds():
    rng = np.random.default_rng(8)
    rows = []
    for seed in range(3):
        for n in NS:
            rows.append({"model": "m", "task": "t", "metric": "accuracy", "n": n, "seed": seed,
                         "value": 0.05 * n ** 0.35 + 0.02 * rng.standard_normal()})
    r = fit_table(pd.DataFrame(rows), forms=["power"], n_boot=200)[0]
    assert r.method == "seeds" and r.theta_reps is not None
    assert any("only seeds are resampled" in w for w in r.warnings)


def test_binomial_fallback_and_no_interval():
    ns = NS
    y = FORMS["power"].predict(np.array(TRUTH["power"]), np.array(ns, float))[0]
    long = pd.DataFrame({"model": "m", "task": "t", "metric": "accuracy", "n": ns, "value": y, "n_items": 200})
    r = fit_table(long, forms=["power"], n_boot=200)[0]
    assert r.method == "binomial" and r.param_ci["b"][0] < 0.35 < r.param_ci["b"][1]
    r2 = fit_table(long.drop(columns="n_items"), forms=["power"], n_boot=200)[0]
    assert r2.method == "none" and r2.theta_reps is None
    assert any("no uncertainty" in w for w in r2.warnings)
    assert np.all(np.isnan(r2.predict([100])[1]))


# --- warnings on unidentifiable data ----------------------------------------------------------
def test_warnings_on_unidentifiable_data():
    few = fit_law([10, 100], [0.3, 0.5], "saturating")
    assert any("not fitted" in w for w in few.warnings)
    exact = fit_law([10, 100, 1000], [0.3, 0.5, 0.6], "saturating")
    assert any("no degrees of freedom" in w for w in exact.warnings)
    flat = fit_law(NS, np.full(len(NS), 0.4) + 1e-4 * np.arange(len(NS)) % 2, "power", n_items=500)
    assert any("flat data" in w for w in flat.warnings)
    # a straight power law in error, still far from any asymptote at the largest N
    y = 1 - 0.9 * np.array(NS, float) ** -0.05
    far = fit_law(NS, y, "saturating")
    assert any("asymptote not reached" in w for w in far.warnings)
    good = fit_law(NS, FORMS["saturating"].predict(np.array(TRUTH["saturating"]), np.array(NS, float))[0],
                   "saturating")
    assert not any("asymptote" in w or "flat" in w for w in good.warnings), good.warnings


def test_huge_bootstrap_spread_warned_with_noisy_few_items():
    rng = np.random.default_rng(4)
    S = simulate_items(rng, "saturating_offset", TRUTH["saturating_offset"], [0, 8, 64, 512, 1024], 60)
    long, items = as_tables(S, [0, 8, 64, 512, 1024])
    r = fit_table(long, items, forms=["saturating_offset"], n_boot=200)[0]
    assert any("spread" in w or "bound" in w for w in r.warnings), r.warnings


# --- inputs and CLI -------------------------------------------------------------------------
def test_long_table_validation_names_line_and_field(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("model,task,metric,n,value\nm,t,accuracy,10,0.5\nm,t,accuracy,20,zero\n")
    with pytest.raises(InputError) as e:
        load_long(p)
    assert e.value.line == 3 and e.value.field == "value"
    p.write_text("model,task,metric,value\nm,t,accuracy,0.5\n")
    with pytest.raises(InputError) as e:
        load_long(p)
    assert e.value.field == "n"
    p.write_text("model,task,metric,n,value\nm,t,accuracy,2.5,0.5\n")
    with pytest.raises(InputError) as e:
        load_long(p)
    assert e.value.line == 2 and e.value.field == "n"


def test_items_jsonl_accepts_id_and_names_bad_line(tmp_path):
    p = tmp_path / "items.jsonl"
    p.write_text('{"model":"m","task":"t","n":1,"id":"a","correct":true,"format_ok":true}\n\n'
                 '{"model":"m","task":"t","n":2,"id":"a","correct":false,"format_ok":true}\n')
    df = load_items(p)
    assert list(df["item_id"]) == ["a", "a"] and list(df["correct"]) == [1.0, 0.0]
    p.write_text('{"model":"m","task":"t","n":1,"id":"a","correct":true}\n'
                 '{"model":"m","task":"t","id":"b","correct":true}\n')
    with pytest.raises(InputError) as e:
        load_items(p)
    assert e.value.line == 2 and e.value.field == "n"


@pytest.fixture
def cli():
    """``sftscale fit ARGS`` (tests/cli.py ``run``: in-process, the real exit-code path)."""
    return lambda *args, cwd=None: run("fit", *args, cwd=cwd, env={"COLUMNS": "200"})


def test_cli_on_csv_and_run_dir(tmp_path, cli):
    rng = np.random.default_rng(0)
    ns = [0, 16, 64, 256, 1024]
    S = simulate_items(rng, "saturating_offset", TRUTH["saturating_offset"], ns, 150)
    long, items = as_tables(S, ns)
    items["format_ok"] = np.maximum(items["correct"], (rng.random(len(items)) < 0.8).astype(float))
    long.to_csv(tmp_path / "export.csv", index=False)
    r = cli(str(tmp_path / "export.csv"), "--n-boot", "100", "-t", "0.5", "--at", "4096", cwd=tmp_path)
    assert r.exit_code == 0, r.stderr
    doc = json.loads((tmp_path / "fits.json").read_text())
    assert {f["form"] for f in doc["fits"]} == set(FORMS)
    assert sum(f["best"] for f in doc["fits"]) == 1
    f0 = doc["fits"][0]
    assert f0["bootstrap"]["method"] == "binomial" and f0["targets"][0]["target"] == 0.5
    assert "predictions" in f0 and "toy" not in r.stdout and "power" in r.stdout
    # run dir with items: paired bootstrap + analysis.json
    with open(tmp_path / "items.jsonl", "w") as fh:
        for rec in items.to_dict("records"):
            fh.write(json.dumps(rec) + "\n")
    r = cli(str(tmp_path), "--n-boot", "50", "--form", "power,saturating", cwd=tmp_path)
    assert r.exit_code == 0, r.stderr
    doc = json.loads((tmp_path / "fits.json").read_text())
    assert [f["form"] for f in doc["fits"]] == ["power", "saturating"]
    assert doc["fits"][0]["bootstrap"]["method"] == "paired-items"
    an = json.loads((tmp_path / "analysis.json").read_text())
    assert an["groups"][0]["n"] == ns


def test_cli_bad_csv_exit_2_and_no_output(tmp_path, cli):
    p = tmp_path / "bad.csv"
    p.write_text("model,task,metric,n,value\nm,t,accuracy,1,0.1\nm,t,accuracy,ten,0.2\n")
    r = cli(str(p), cwd=tmp_path)
    assert r.exit_code == 2
    assert "bad.csv" in r.stderr and "line 3" in r.stderr and "'n'" in r.stderr
    assert not (tmp_path / "fits.json").exists()
    r = cli(str(tmp_path / "nope.csv"), cwd=tmp_path)
    assert r.exit_code == 2 and "nope.csv" in r.stderr
    p.write_text("model,task,metric,n,value\nm,t,accuracy,1,0.1\n")
    r = cli(str(p), "--form", "cubic", cwd=tmp_path)
    assert r.exit_code == 2 and "cubic" in r.stderr
    assert not (tmp_path / "fits.json").exists()


def test_nullable_dtypes_from_the_study_exporter():
    """rundir.export.load_tables gives Int64 n_items, int seeds, nullable boolean scores."""
    rng = np.random.default_rng(6)
    ns = [0, 10, 100, 1000]
    S = simulate_items(rng, "saturating_offset", TRUTH["saturating_offset"], ns, 120)
    long, items = as_tables(S, ns)
    long["seed"] = 0
    long["n_items"] = pd.array([120, 120, None, 120], dtype="Int64")
    items["correct"] = pd.array(items["correct"].astype(bool), dtype="boolean")
    items.loc[3, "correct"] = pd.NA  # one unscored item
    items["format_ok"] = pd.array([True] * len(items), dtype="boolean")
    items["item_id"] = items["item_id"].astype("string")
    res = fit_table(long.astype({"seed": "int64"}), items, forms=["saturating_offset"], n_boot=50)
    assert res[0].method == "paired-items" and res[0].n.tolist() == ns
    assert res[0].y[0] == pytest.approx(np.delete(S[0], 3).mean())
    no_items = fit_table(long, forms=["saturating_offset"], n_boot=50)[0]
    assert no_items.method == "none"  # one cell lacks n_items: no binomial bootstrap
    from sftscale.fit.analysis import style_substance
    g = style_substance(items, n_boot=50)["groups"][0]
    assert g["total_error"]["mid"][0] == pytest.approx(1 - np.delete(S[0], 3).mean())


def test_items_missing_for_some_n_are_reported():
    rng = np.random.default_rng(12)
    S = simulate_items(rng, "power", TRUTH["power"], NS, 200)
    long, items = as_tables(S, NS)
    r = fit_table(long, items[items["n"] != 1024], forms=["power"], n_boot=50)[0]
    assert 1024 not in r.n.tolist() and len(r.n) == len(NS) - 1
    assert any("N=[1024]" in w and "no per-item scores" in w for w in r.warnings)


def test_bootstrap_fit_on_caller_replicates_matches_fit_table():
    rng = np.random.default_rng(13)
    S = simulate_items(rng, "loglinear", TRUTH["loglinear"], NS, 300)
    lv, pt, reps = paired_bootstrap_means(np.array(NS, float), np.zeros(len(NS)), S, 200, rng)
    r = bootstrap_fit(lv, pt, reps, "loglinear", n_items=300)
    assert r.method == "user" and r.n_boot == 200 and len(r.theta_reps) == 200
    lo, hi = r.param_ci["d"]
    assert lo < r.params["d"] < hi and hi - lo < 0.02


def test_items_dataframe_fast_path_equals_row_by_row_validation():
    from sftscale.fit.data import _check_item_rows
    rng = np.random.default_rng(14)
    df = pd.DataFrame({"model": "m", "task": "t", "n": np.repeat([0, 10, 100], 50), "seed": 3,
                       "id": [f"q{i % 50}" for i in range(150)],
                       "correct": pd.array(rng.random(150) < 0.5, dtype="boolean"),
                       "format_ok": rng.random(150) < 0.9, "score": rng.random(150), "response": "x"})
    df.loc[7, "correct"] = pd.NA
    fast = load_items(df)
    slow = _check_item_rows(df.to_dict("records"), None, list(range(150)))
    cols = ["model", "task", "n", "item_id", "seed", "correct", "format_ok", "score"]
    assert fast[cols].astype(str).equals(slow[cols].astype(str)) and "response" not in fast
    bad = df.assign(n=df["n"].astype(float))
    bad.loc[9, "n"] = 2.5
    with pytest.raises(InputError) as e:
        load_items(bad)  # falls back to the row path, which names the row and field
    assert e.value.field == "n" and e.value.line == 11
