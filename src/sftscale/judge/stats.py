"""Label shares with bootstrap intervals, and agreement (accuracy, Cohen's kappa) with truth.

``label_shares(labels, n_items)``: for one model x task x N (seeds pooled), the share of each
label among the wrong responses and its rate per evaluated item (``rate`` = errors of that
label / items, the paper's y-axis), each ``{mid, lo, hi}``: the point value and a 95%
percentile interval from ``B`` bootstrap resamples of the evaluated items (correct items
included, so the number of wrong responses varies too). ``unparsed`` and ``failed`` are
labels like the others: nothing is dropped from the denominator.

``agreement(truth, judged)``: accuracy and Cohen's kappa of two label lists over the pairs
where both are known, with bootstrap intervals over the pairs; kappa is None when both lists
hold one and the same class (chance agreement 1: undefined; accuracy is still given).

Not handled: intervals that account for seeds separately (items of all seeds are resampled
as one pool), weighted kappa.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

B = 1000


def _band(point: float, reps: np.ndarray) -> dict:
    reps = reps[np.isfinite(reps)]
    if not len(reps):
        return {"mid": point, "lo": None, "hi": None}
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return {"mid": point, "lo": float(lo), "hi": float(hi)}


def label_shares(labels: Sequence[str], n_items: int, seed: int = 0, b: int = B) -> dict[str, dict]:
    """{label: {count, share, rate}} for the wrong responses' labels of one group."""
    labels = list(labels)
    names = sorted(set(labels))
    n = max(int(n_items), len(labels))
    if not names or n == 0:
        return {}
    codes = np.full(n, -1)
    codes[:len(labels)] = [names.index(x) for x in labels]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(b, n))
    sample = codes[idx]
    out = {}
    wrong_b = (sample >= 0).sum(axis=1).astype(float)
    for k, name in enumerate(names):
        cnt_b = (sample == k).sum(axis=1).astype(float)
        cnt = labels.count(name)
        with np.errstate(invalid="ignore", divide="ignore"):
            share_b = np.where(wrong_b > 0, cnt_b / wrong_b, np.nan)
        out[name] = {"count": cnt, "share": _band(cnt / len(labels), share_b),
                     "rate": _band(cnt / n, cnt_b / n)}
    return out


def kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two label lists (None when expected agreement is 1)."""
    a_arr, b_arr = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    if not len(a_arr):
        return None
    po = float(np.mean(a_arr == b_arr))
    cats = set(a_arr) | set(b_arr)
    pe = sum(float(np.mean(a_arr == c)) * float(np.mean(b_arr == c)) for c in cats)
    return None if pe >= 1 else (po - pe) / (1 - pe)


def agreement(truth: Sequence[str | None], judged: Sequence[str | None], seed: int = 0,
              b: int = B) -> dict:
    """{n, accuracy, kappa} over the pairs where both are known (module docstring)."""
    pairs = [(t, j) for t, j in zip(truth, judged) if t is not None and j is not None]
    n = len(pairs)
    if not n:
        return {"n": 0, "accuracy": None, "kappa": None}
    t = np.asarray([p[0] for p in pairs], dtype=object)
    j = np.asarray([p[1] for p in pairs], dtype=object)
    acc = float(np.mean(t == j))
    k = kappa(list(t), list(j))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(b, n))
    acc_b = (t[idx] == j[idx]).mean(axis=1).astype(float)
    kap_b = np.array([np.nan if (v := kappa(list(t[i]), list(j[i]))) is None else v for i in idx])
    return {"n": n, "accuracy": _band(acc, acc_b),
            "kappa": None if k is None else _band(k, kap_b)}


__all__ = ["B", "agreement", "kappa", "label_shares"]
