"""The local executor with several worker processes gives the same table as one process."""

from __future__ import annotations

from pathlib import Path

from study_helpers import RUNNER, STUDY, tables

from sftscale.config import parse_study
from sftscale.study.executors import LocalExecutor
from sftscale.study.runner import run_study


def test_two_workers_equal_one(tmp_path: Path):
    cfg = parse_study(STUDY, "cheap.yaml")
    seq = run_study(cfg, out=tmp_path / "seq", runner=RUNNER, progress=False, check=False)
    par = run_study(cfg, out=tmp_path / "par", runner=RUNNER, progress=False, check=False,
                    executor=LocalExecutor(workers=2, threads=1))
    assert seq.counts == par.counts and par.counts["done"] == 10
    m1, i1 = tables(seq.run_dir)
    m2, i2 = tables(par.run_dir)
    assert m1 == m2 and i1 == i2
    # a rerun with workers finds everything done and runs nothing
    again = run_study(cfg, out=tmp_path / "par", runner=RUNNER, progress=False, check=False,
                      executor=LocalExecutor(workers=2, threads=1))
    assert again.ran == 0


def test_workers_setting_parses_and_does_not_change_cells():
    base = parse_study(STUDY, "a.yaml")
    withw = parse_study(STUDY + "executor: {kind: local, workers: 2, threads: 1}\n", "b.yaml")
    assert withw.executor.workers == 2 and withw.executor.threads == 1
    from sftscale.grid.cells import expand_cells

    assert [c.spec_hash for c in expand_cells(base, {"toy-math": 10_000})] == \
        [c.spec_hash for c in expand_cells(withw, {"toy-math": 10_000})]
