"""The cost-weighted ETA (plan/eta.py) on synthetic runs: cells of very different costs,
finished in random orders, against the naive 'mean of finished cells x cells left' rule."""

from __future__ import annotations

import random

from sftscale.plan.eta import CostETA, makespan


def _simulate(planned: dict[str, float], order: list[str], speed: float, noise: float,
              rng: random.Random, slots: int = 1):
    """Run the cells on ``slots`` slots in ``order`` with true cost planned × speed × noise.
    Yields (fraction of planned cost done, ETA, old-rule ETA, true remaining) after each
    finished cell."""
    true = {k: planned[k] * speed * rng.uniform(1 - noise, 1 + noise) for k in order}
    eta = CostETA(planned, slots)
    free = [0.0] * slots
    events = []  # (end, start, key)
    for k in order:  # list scheduling: the next cell goes to the first free slot
        i = min(range(slots), key=free.__getitem__)
        events.append((free[i] + true[k], free[i], k))
        free[i] += true[k]
    end_all = max(free)
    events.sort()
    started: set[str] = set()
    walls: list[float] = []
    for end, _, k in events:
        for _, s2, k2 in events:  # cells started by now
            if s2 <= end and k2 not in started:
                started.add(k2)
                eta.start(k2, s2)
        eta.finish(k, end, true[k])
        walls.append(true[k])
        left = len(order) - len(walls)
        old = end / len(walls) * left / slots
        yield eta.fraction_done(), eta.remaining(end), old, end_all - end


def _costs(rng: random.Random) -> dict[str, float]:
    # four tasks x N in {0, 16, 64, 256}: N = 0 cells cheap, N = 256 ten times dearer
    out = {}
    for t in range(4):
        base = rng.uniform(5, 15)
        for n, f in ((0, 1.0), (16, 3.0), (64, 4.0), (256, 10.0)):
            out[f"t{t}_n{n}"] = base * f
    return out


def test_eta_within_30pct_after_a_quarter_random_orders():
    rng = random.Random(0)
    for trial in range(200):
        planned = _costs(rng)
        order = list(planned)
        rng.shuffle(order)
        speed = rng.choice([0.3, 1.0, 2.5])  # the plan off by 3x either way
        for frac, est, _, true_left in _simulate(planned, order, speed, 0.15, rng):
            if frac >= 0.25 and true_left > 0:
                assert abs(est - true_left) <= 0.30 * true_left, (trial, frac, est, true_left)


def test_old_rule_fails_when_cheap_cells_finish_first_and_costeta_holds():
    rng = random.Random(1)
    planned = _costs(rng)
    order = sorted(planned, key=planned.get)  # cheap first, as a grid in N order runs
    old_errs, new_errs = [], []
    for frac, est, old, true_left in _simulate(planned, order, 2.0, 0.1, rng):
        if frac >= 0.25 and true_left > 0:
            new_errs.append(abs(est - true_left) / true_left)
            old_errs.append(abs(old - true_left) / true_left)
    assert new_errs and max(new_errs) <= 0.30
    assert max(old_errs) > 0.30  # the mean of finished cells underestimates the dear ones


def test_two_slots_largest_first():
    rng = random.Random(2)
    for trial in range(100):
        planned = _costs(rng)
        order = sorted(planned, key=planned.get, reverse=True)  # the executor's order
        for frac, est, _, true_left in _simulate(planned, order, 1.7, 0.1, rng, slots=2):
            if frac >= 0.25 and true_left > 5:
                assert abs(est - true_left) <= 0.30 * true_left, (trial, frac, est, true_left)


def test_before_any_cell_the_plan_is_the_eta():
    eta = CostETA({"a": 10.0, "b": 30.0, "c": 20.0}, slots=1)
    assert eta.remaining(0.0) == 60.0
    eta.start("b", 0.0)
    assert eta.remaining(12.0) == 48.0  # b has 18 s left, then a and c
    eta.finish("b", 15.0, 15.0)  # twice as fast as planned
    assert eta.speed == 0.5
    assert eta.remaining(15.0) == 15.0


def test_makespan_and_unknown_cells():
    assert makespan([10, 10, 10, 10], slots=2) == 20
    assert makespan([30, 10, 10, 10], slots=2) == 30
    assert makespan([], slots=2) == 0
    eta = CostETA({"a": 10.0}, slots=1)
    eta.start("x", 0.0)  # not in the plan: the mean planned cost
    assert eta.remaining(0.0) == 20.0
    eta.finish("x", 5.0, 5.0)
    eta.finish("a", 10.0, 5.0)
    assert eta.remaining(10.0) == 0.0
