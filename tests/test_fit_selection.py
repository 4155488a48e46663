"""Selection rules on few points, identifiability, extrapolation flags, the joint fit across
models, and the report's 3-significant-digit rule. Data are simulated from known laws."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from sftscale.fit.fitting import fit_table, fits_document, n_for_target
from sftscale.fit.forms import FORMS
from sftscale.fit.joint import joint_fits
from sftscale.report.findings import curve_finding, joint_finding
from sftscale.report.fmt import num, printed_numbers, sig_digits

NS5 = [0, 16, 64, 256, 1024]
NS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
OFFSET = [0.15, np.log(3.0), 0.5, np.log(20.0)]


def items_for(p_by_n: np.ndarray, latent: np.ndarray, rng, rho=0.6) -> np.ndarray:
    eps = rng.standard_normal((len(p_by_n), latent.size))
    return ((rho * latent[None] + np.sqrt(1 - rho ** 2) * eps) < norm.ppf(p_by_n)[:, None]).astype(float)


def tables(S_by_model: dict, ns, task="t") -> tuple[pd.DataFrame, pd.DataFrame]:
    items, long = [], []
    for m, S in S_by_model.items():
        for k, n in enumerate(ns):
            long.append({"model": m, "task": task, "metric": "accuracy", "n": n, "value": S[k].mean(),
                         "n_items": S.shape[1]})
            items += [{"model": m, "task": task, "n": n, "seed": 0, "item_id": f"q{i}", "correct": S[k, i]}
                      for i in range(S.shape[1])]
    return pd.DataFrame(long), pd.DataFrame(items)


def test_offset_form_with_one_dof_is_never_chosen_although_it_wins_on_aic():
    """Five N, the last four on a saturating-offset law plus small noise: the offset form has the
    lowest AIC (it has 4 parameters for 5 points) but only 1 residual dof, so it is not chosen."""
    rng = np.random.default_rng(0)
    y = FORMS["saturating_offset"].predict(np.array(OFFSET), np.array(NS5, float))[0]
    y = np.clip(y + 0.004 * rng.standard_normal(y.size), 0, 1)
    long = pd.DataFrame({"model": "m", "task": "t", "metric": "accuracy", "n": NS5, "value": y, "n_items": 400})
    res = fit_table(long, n_boot=200)
    by = {r.form: r for r in res}
    off = by["saturating_offset"]
    assert off.dof == 1 and off.aic == min(r.aic for r in res)  # lowest AIC alone would pick it
    assert not off.best and not off.selection["eligible"]
    assert any("1 residual dof" in x for x in off.selection["reasons"])
    best = [r for r in res if r.best]
    assert len(best) == 1 and best[0].dof >= 2 and not best[0].unidentified
    # 4 positive N: AICc is undefined for every form, so leave-one-N-out error decides
    assert "leave-one-N-out" in best[0].selection["criterion"]
    d = fits_document(res)["fits"]
    assert all("eligible" in f["selection"] and "reasons" in f["selection"] for f in d)
    assert any(n.startswith("best: ") for n in fits_document(res)["notes"])


def test_aicc_tie_goes_to_the_lower_leave_one_out_error():
    """Many points: AICc is defined; the chosen form is the lowest AICc or, within 2 units of it,
    the one with the lowest leave-one-N-out RMSE."""
    rng = np.random.default_rng(1)
    S = items_for(FORMS["saturating"].predict(np.array([0.15, np.log(0.8), 0.5]), np.array(NS, float))[0],
                  rng.standard_normal(800), rng)
    long, items = tables({"m": S}, NS)
    res = fit_table(long, items, n_boot=200)
    best = next(r for r in res if r.best)
    elig = [r for r in res if r.selection["eligible"]]
    amin = min(r.aicc for r in elig)
    tied = [r for r in elig if r.aicc - amin <= 2]
    assert best in tied
    assert best.selection["loo_rmse_pos"] == min(r.selection["loo_rmse_pos"] for r in tied)
    assert best.selection["criterion"].startswith("aicc")


def test_unidentified_offset_form_is_flagged_and_not_chosen():
    """A plain power law (no ceiling in sight) on 7 N: the offset form's A and N0 trade off; its
    bootstrap intervals span orders of magnitude or pile at a bound, it is flagged, never chosen."""
    rng = np.random.default_rng(3)
    ns = [0, 4, 16, 64, 256, 512, 1024]
    p = np.clip(0.02 * np.maximum(ns, 1) ** 0.45, 0, 0.95)
    S = items_for(p, rng.standard_normal(150), rng)
    long, items = tables({"m": S}, ns)
    res = {r.form: r for r in fit_table(long, items, n_boot=300)}
    off = res["saturating_offset"]
    assert off.dof >= 2 and off.unidentified, off.warnings
    assert not off.best and not off.selection["eligible"] and not off.selection["identified"]
    assert off.to_dict()["identified"] is False
    best = next(r for r in res.values() if r.best)
    assert best.form != "saturating_offset" and not best.unidentified


def test_fit_set_by_the_clip_floor_of_zeros_is_not_identified():
    """Three of four positive N score 0: a power law in log space is fitted to the clip floor."""
    ns = [0, 16, 64, 256, 1024]
    rng = np.random.default_rng(4)
    S = np.zeros((5, 200))
    S[4] = rng.random(200) < 0.12
    long, items = tables({"m": S}, ns)
    res = {r.form: r for r in fit_table(long, items, n_boot=200)}
    pw = res["power"]
    assert any("clip floor" in u for u in pw.unidentified) and not pw.best
    html = curve_finding([r.to_dict(targets=[0.5]) for r in res.values()])
    assert "power-law exponent is not identified" in html
    assert "1/b =" not in html  # no parameter of an unidentified form in prose


def test_n_for_target_interval_and_extrapolation_flag():
    rng = np.random.default_rng(5)
    S = items_for(FORMS["power"].predict(np.array([np.log(0.05), 0.3]), np.array(NS, float))[0],
                  rng.standard_normal(400), rng)
    long, items = tables({"m": S}, NS)
    pw = fit_table(long, items, forms=["power"], n_boot=300)[0]
    inside = n_for_target(pw, 0.3)  # true N ~ 390
    assert inside["extrapolation"] is False and inside["lo"] < inside["n"] < inside["hi"]
    far = n_for_target(pw, 0.9)  # true N ~ 15,000: beyond 4 x 1024
    true_far = (0.9 / 0.05) ** (1 / 0.3)
    assert true_far > 4 * 1024
    assert far["extrapolation"] is True and far["x_largest_n"] > 4
    assert far["lo"] is not None and far["n"] > 4 * 1024
    d = pw.to_dict(targets=[0.3, 0.9])
    assert [t["extrapolation"] for t in d["targets"]] == [False, True]
    # an upper end the replicates cannot bound is "not determined by these data"
    S = items_for(FORMS["saturating"].predict(np.array([0.15, np.log(0.8), 0.5]), np.array(NS, float))[0],
                  rng.standard_normal(400), rng)
    long, items = tables({"m": S}, NS)
    sat = fit_table(long, items, forms=["saturating"], n_boot=300)[0]
    t = n_for_target(sat, 0.85)  # the ceiling 1 - E: about half the replicates never reach it
    assert t["hi"] is None and t["hi_note"] == "not determined by these data" and t["extrapolation"]


def test_paper_terms_and_no_unbounded_prediction_of_a_form():
    rng = np.random.default_rng(6)
    S = items_for(FORMS["power"].predict(np.array([np.log(0.05), 0.35]), np.array(NS, float))[0],
                  rng.standard_normal(400), rng)
    long, items = tables({"m": S}, NS)
    d = fit_table(long, items, forms=["power"], n_boot=300)[0].to_dict()
    pt = d["paper_terms"]
    assert pt["one_over_b"]["lo"] < 0.35 < pt["one_over_b"]["hi"]
    assert pt["b"]["lo"] == pytest.approx(1 / pt["one_over_b"]["hi"], rel=1e-3)  # up to interpolation
    assert pt["b"]["mid"] == pytest.approx(1 / pt["one_over_b"]["mid"])
    # the forecast beyond the grid is forecast.py's (bounded, backtested); a form gives none
    assert "prediction_2x" not in d
    far = fit_table(long, items, forms=["power"], n_boot=300)[0].to_dict(predict_at=[512, 1e7])["predictions"]
    assert far[0]["lo"] < far[0]["mid"] < far[0]["hi"] <= 1
    assert far[1]["mid"] is None and "leaves [0, 1]" in far[1]["note"]  # 0.05 * 1e7^0.35 > 1


def test_joint_fit_recovers_a_known_exponent_difference():
    """Two models on the same 400 items (shared item difficulty), exponents 0.50 and 0.35: the
    joint fit's paired interval of the difference covers 0.15 and excludes 0; a paired
    interval is narrower than the one from models resampled apart."""
    rng = np.random.default_rng(7)
    latent = rng.standard_normal(400)
    n = np.array(NS, float)
    S = {"big": items_for(0.05 * n ** 0.50 / 1.2, latent, rng), "small": items_for(0.05 * n ** 0.35, latent, rng)}
    long, items = tables(S, NS)
    j = joint_fits(long, items, n_boot=400, level=0.9)
    assert len(j) == 1 and j[0]["paired"] and "joint over models" in j[0]["method"]
    d = j[0]["differences"][0]
    assert (d["a"], d["b"]) == ("big", "small") and d["identified"]
    assert d["lo"] < 0.15 < d["hi"] and d["lo"] > 0 and d["p_two_sided"] < 0.05
    assert abs(d["diff"] - 0.15) < 0.05
    apart = joint_fits(long, None, n_boot=400, level=0.9)[0]["differences"][0]
    assert not apart["paired"] and (apart["hi"] - apart["lo"]) > (d["hi"] - d["lo"])
    doc = fits_document([], joint=j)
    assert doc["joint"][0]["differences"][0]["diff"] == pytest.approx(d["diff"])
    text = joint_finding(doc["joint"], 0.9)
    assert f"the exponent of big minus small: {num(d['diff'])} <span class=sub>[{num(d['lo'])}, {num(d['hi'])}]" in text
    assert all(sig_digits(t) <= 3 for t in printed_numbers(text))


def test_num_has_at_most_three_significant_digits():
    cases = {2105.67: "2,110", 16414: "16,400", 0.42373: "0.424", 1.0737e9: "1.07e9", 0.5: "0.5",
             -0.0955: "-0.0955", 8842657839008.89: "8.84e12", 1024: "1,020", 16: "16", None: "–"}
    for x, s in cases.items():
        assert num(x) == s, (x, num(x))
        if x is not None:
            assert sig_digits(s) <= 3
    assert num(1024, approx=True) == "≈1,020" and num(256, approx=True) == "256"
    for tok, k in {"16,400": 3, "0.0521": 3, "1.07e9": 3, "2,110": 3, "7,100,100": 5}.items():
        assert sig_digits(tok) == k
