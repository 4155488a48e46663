"""Tests for sftscale.fit.analysis (style versus substance) on small hand-checkable tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sftscale.fit.analysis import plateau_n, saturation_n, style_substance
from sftscale.fit.data import explode_ifeval

# three N, four items each: (format_ok, correct)
HAND = {
    0: [(0, 0), (0, 0), (1, 1), (1, 0)],    # format err 2/4, substance err 1/4, total err 3/4
    10: [(1, 1), (1, 0), (1, 1), (1, 1)],   # 0, 1/4, 1/4
    100: [(1, 1), (1, 1), (1, 1), (1, 1)],  # 0, 0, 0
}


def hand_table():
    return pd.DataFrame([{"model": "m", "task": "t", "n": n, "seed": 0, "item_id": f"q{i}",
                          "format_ok": bool(f), "correct": bool(c)}
                         for n, rows in HAND.items() for i, (f, c) in enumerate(rows)])


def test_style_substance_numbers_by_hand():
    out = style_substance(hand_table(), n_boot=200)
    g = out["groups"][0]
    assert g["n"] == [0, 10, 100] and g["n_items"] == 4
    assert g["format_error"]["mid"] == [0.5, 0.0, 0.0]
    assert g["substance_error"]["mid"] == [0.25, 0.25, 0.0]
    assert g["total_error"]["mid"] == [0.75, 0.25, 0.0]
    assert g["accuracy"]["mid"] == [0.25, 0.75, 1.0]
    assert g["format_rate"]["mid"] == [0.5, 1.0, 1.0]
    # format_rate 0.5, 1, 1: plateau 1, first N at >= 0.95 is 10
    assert g["style_saturation_n"]["n"] == 10 and g["style_saturation_n"]["plateau"] == 1.0
    # r^2 of total (3/4, 1/4, 0) vs substance (1/4, 1/4, 0): (1/12)^2 / (42/144 * 6/144) = 4/7
    assert g["r2_total_vs_substance"]["r2"] == pytest.approx(4 / 7)
    for k in ("format_error", "substance_error", "total_error"):
        assert all(lo <= m <= hi for lo, m, hi in zip(g[k]["lo"], g[k]["mid"], g[k]["hi"]))
    # with a fixed format (N=10, 100 all format_ok) the bootstrap cannot move those rates
    assert g["format_error"]["lo"][1:] == [0.0, 0.0] and g["format_error"]["hi"][1:] == [0.0, 0.0]


def test_mapping_input_equals_table_input():
    by_n = {n: [{"id": f"q{i}", "format_ok": bool(f), "correct": bool(c)} for i, (f, c) in enumerate(rows)]
            for n, rows in HAND.items()}
    a = style_substance(by_n, n_boot=100, seed=3)["groups"][0]
    b = style_substance(hand_table().assign(model="-", task="-"), n_boot=100, seed=3)["groups"][0]
    assert a["substance_error"] == b["substance_error"] and a["n"] == b["n"]


def test_saturation_n_uses_isotonic_plateau_not_a_lucky_point():
    levels = np.array([0, 10, 100, 1000, 10000])
    # one lucky high value at N=100 is pooled with its dip at N=1000
    n, plateau = saturation_n(levels, np.array([0.2, 0.6, 0.99, 0.91, 0.95]))
    assert plateau == pytest.approx(0.95)  # mean of the top isotonic block (0.99, 0.91, 0.95)
    assert n == 100
    n, plateau = saturation_n(levels, np.array([0.1, 0.5, 0.7, 0.9, 0.96]))
    assert plateau == pytest.approx(0.96) and n == 10000  # 0.9 < 0.95 * 0.96


def test_accuracy_plateau_paired_rule():
    rng = np.random.default_rng(0)
    levels = np.array([0, 10, 100, 1000])
    easy = rng.random(2000)
    S = np.stack([(easy < p).astype(float) for p in (0.2, 0.5, 0.7, 0.7)])
    from sftscale.fit.bootstrap import paired_bootstrap_means
    lv, pt, reps = paired_bootstrap_means(levels, np.zeros(4), S, 500, rng)
    res = plateau_n(lv, pt, reps, 0.95)
    assert res["n"] == 100 and not res["still_rising"]
    assert res["steps"][0]["lo"] > 0 and res["steps"][2]["gain"] == 0
    S2 = np.stack([(easy < p).astype(float) for p in (0.2, 0.5, 0.7, 0.8)])
    lv, pt, reps = paired_bootstrap_means(levels, np.zeros(4), S2, 500, rng)
    res = plateau_n(lv, pt, reps, 0.95)
    assert res["n"] == 1000 and res["still_rising"]


def _sim(spec, seed=1, n_items=300):
    rng = np.random.default_rng(seed)
    rows = []
    for n, (fmt, acc) in spec.items():
        u = rng.random(n_items)
        for i in range(n_items):
            rows.append({"model": "m", "task": "t", "n": n, "item_id": str(i), "seed": 0,
                         "format_ok": bool(u[i] < fmt or u[i] < acc), "correct": bool(u[i] < acc)})
    return pd.DataFrame(rows)


def test_total_error_tracks_substance_error_only_when_format_is_learned():
    # format almost always right: total error = substance error + a little, r^2 high
    g = style_substance(_sim({0: (0.97, 0.1), 10: (1.0, 0.3), 100: (1.0, 0.5), 1000: (1.0, 0.6),
                              5000: (1.0, 0.65)}), n_boot=200)["groups"][0]
    r2 = g["r2_total_vs_substance"]
    assert r2["r2"] > 0.95 and r2["lo"] <= r2["r2"] <= r2["hi"]
    assert g["style_saturation_n"]["n"] == 0
    # format is what improves (substance error stuck at 0.2 among formatted answers): r^2 low
    g = style_substance(_sim({0: (0.3, 0.1), 10: (0.6, 0.4), 100: (0.9, 0.7), 1000: (1.0, 0.8)}),
                        n_boot=200)["groups"][0]
    assert g["r2_total_vs_substance"]["r2"] < 0.5
    assert g["style_saturation_n"]["n"] == 1000  # format_rate ~0.9 at N=100 < 0.95 x plateau 1.0
def test_ifeval_gap_and_categories():
    samples = []
    for n in (0, 100):
        for k in range(4):
            strict = [k % 2 == 0 or n == 100, n == 100]
            loose = [True, n == 100 or k == 0]
            samples.append({"model": "m", "task": "ifeval", "n": n, "seed": 0, "id": str(k),
                            "instruction_id_list": ["detectable_format:title", "length_constraints:x"],
                            "follow_instruction_list_strict": strict, "follow_instruction_list_loose": loose,
                            "prompt_level_strict": all(strict), "prompt_level_loose": all(loose),
                            "format_ok": True, "correct": all(strict)})
    inst = explode_ifeval(samples)
    assert len(inst) == 16 and set(inst["category"]) == {"detectable_format", "length_constraints"}
    per_sample = pd.DataFrame(samples).drop(columns=["instruction_id_list", "follow_instruction_list_strict",
                                                     "follow_instruction_list_loose"])
    table = pd.concat([per_sample, inst], ignore_index=True)
    g = style_substance(table, n_boot=100)["groups"][0]
    gap = g["loose_minus_strict"]["prompt_level_loose - prompt_level_strict"]
    # N=0: loose all-true for k=0 only (1/4), strict all-true never (0/4) -> 0.25; N=100: 0
    assert gap["mid"] == [0.25, 0.0]
    cats = g["categories"]
    assert cats["detectable_format"]["mid"] == [0.5, 1.0]
    assert cats["length_constraints"]["mid"] == [0.0, 1.0]
    assert cats["length_constraints"]["n_instructions"] == 4


def test_no_bootstrap_gives_points_without_intervals():
    g = style_substance(hand_table(), n_boot=0)["groups"][0]
    assert g["total_error"]["mid"] == [0.75, 0.25, 0.0] and g["total_error"]["lo"] == [None] * 3
    assert g["accuracy_plateau_n"]["n"] is None and g["style_saturation_n"]["n"] == 10


def test_a_format_never_learnt_is_said_so_not_saturated_at_n0():
    """A curve whose format rate is 0 at every N (an OOD twin whose format is its shift) has
    plateau 0; the answers say "never", not "N = 0" (the first N reaching 95% of 0)."""
    from sftscale.fit.answers import answer_rows

    table = pd.DataFrame([{"model": "m", "task": "t", "n": n, "seed": 0, "item_id": f"q{i}",
                           "format_ok": False, "correct": False} for n in (0, 10, 100) for i in range(4)])
    g = style_substance(table, n_boot=50)["groups"][0]
    assert g["style_saturation_n"]["plateau"] == 0.0 and g["style_saturation_n"]["n"] == 0
    curve = {"model": "m", "task": "t", "metric": "accuracy", "points": {"n": [0, 10, 100], "y": [0, 0, 0]},
             "status": "cannot", "reason": "every measured value is at the floor", "targets": [],
             "backtest_summary": {"n": 0}}
    rows = answer_rows({"curves": [curve]}, {"groups": [g]})  # type: ignore[typeddict-item]
    assert rows[0]["format_saturates"] == "never (format rate 0 at every N)"
