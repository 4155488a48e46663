"""The live display of a running study: cells done/total, current cell and stage, elapsed, ETA.

On a terminal: a rich progress bar whose description shows the cell in flight and its latest
``ProgressEvent`` (``ev.describe()``: ``train step 3/30``, ``eval``, ``score``; ``on ray`` for
cells submitted to Ray), plus one log line per finished cell. Not on a terminal (CI,
redirected output): only the log lines, on stderr.

A reporter is a context manager with ``start(cell)``, ``event(ev)`` and ``done(cell,
outcome)``; ``run_study(progress=obj)`` takes any such object. ``run_study`` rate-limits the
events per cell (``events.Throttle``) before they reach ``event``.

ETA: ``eta.CostETA``: the remaining cells weighted by their planned seconds (``planned``:
cell key -> seconds, from the run directory's ``plan.json``), rescaled by measured / planned
seconds over the cells finished in THIS invocation, laid out on ``slots`` parallel cells.
Without a plan every cell counts the same (the mean of the finished cells). Each log line
shows the elapsed time and the ETA, so a log tells how good the ETA was.
Not handled: progress from inside worker processes (``workers > 1``, Ray): such a cell shows
``in a worker`` / ``on ray`` until it finishes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..events import ProgressEvent
from ..grid.cells import Cell
from ..plan.eta import CostETA


class NullReporter:
    def __enter__(self) -> "NullReporter":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def start(self, cell: Cell) -> None: ...

    def event(self, ev: ProgressEvent) -> None: ...

    def done(self, cell: Cell, outcome: dict) -> None: ...


class RichReporter(NullReporter):
    def __init__(self, total: int, done: int = 0, failed: int = 0, name: str = "study",
                 run_dir: Path | None = None, live: bool = True,
                 planned: dict[str, float] | None = None, slots: int = 1, todo: Any = ()):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.total, self.done_n, self.failed_n, self.name = total, done, failed, name
        self.run_dir = run_dir
        self.t0 = time.monotonic()
        todo = list(todo)
        self.eta = CostETA({k: planned[k] for k in todo if k in planned} if planned else
                           {k: 1.0 for k in todo}, slots)
        for k in todo:  # a cell the plan lacks: the mean planned cost
            self.eta.add(k)
        self.finished_n = 0
        self.has_plan = bool(planned)
        self.current: dict[str, str] = {}
        self.progress: Any = None
        self.task: Any = None
        self.live = live

    def __enter__(self) -> "RichReporter":
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console.print(f"[bold]{self.name}[/]: {self.total} cells, {self.done_n} done, "
                           f"{self.failed_n} failed, {self.total - self.done_n - self.failed_n} to run"
                           + (f" → {self.run_dir}" if self.run_dir else ""))
        if self.live and self.console.is_terminal:
            self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TextColumn("elapsed"), TimeElapsedColumn(),
                                     TextColumn("ETA {task.fields[eta]}"), console=self.console,
                                     transient=False)
            self.progress.__enter__()
            self.task = self.progress.add_task(self._desc(), total=self.total,
                                               completed=self.done_n + self.failed_n, eta="?")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)
        el = time.monotonic() - self.t0
        self.console.print(f"{self.name}: {self.done_n} done, {self.failed_n} failed of "
                           f"{self.total} in {_fmt(el)}")

    def _desc(self) -> str:
        if not self.current:
            return self.name
        items = list(self.current.items())
        k, s = items[-1]
        more = f" (+{len(items) - 1} more)" if len(items) > 1 else ""
        return f"{k} · {s}{more}"

    def _eta(self) -> str:
        left = self.total - self.done_n - self.failed_n
        if left <= 0:
            return "0s"
        if not self.finished_n and not self.has_plan:
            return "?"  # no plan and nothing finished: nothing to go by
        return _fmt(self.eta.remaining(time.monotonic()))

    def _refresh(self) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=self._desc(),
                                 completed=self.done_n + self.failed_n, eta=self._eta())

    def start(self, cell: Cell) -> None:
        self.current[cell.key] = "start"
        self.eta.start(cell.key, time.monotonic())
        self._refresh()

    def event(self, ev: ProgressEvent) -> None:
        self.current[ev.cell or "?"] = ev.describe()
        self._refresh()

    def done(self, cell: Cell, outcome: dict) -> None:
        self.current.pop(cell.key, None)
        self.finished_n += 1
        self.eta.finish(cell.key, time.monotonic(), float(outcome.get("wall_s") or 0.0))
        if outcome.get("ok"):
            self.done_n += 1
            m = outcome.get("metrics_summary") or ""
            secs = outcome.get("stage_s") or {k: outcome.get(f"{k}_s", 0) for k in ("train", "eval")}
            line = (f"[green]done[/] {cell.key} ("
                    + ", ".join(f"{k} {v or 0:.1f}s" for k, v in secs.items()) + f"){m}")
        else:
            self.failed_n += 1
            line = f"[red]FAILED[/] {cell.key}: {outcome.get('error', '?')}"
        n = self.done_n + self.failed_n
        el = _fmt(time.monotonic() - self.t0)
        self.console.print(f"[{n}/{self.total}] {line}  elapsed {el} ETA {self._eta()}",
                           highlight=False,
                           soft_wrap=True)
        self._refresh()


def _fmt(s: float) -> str:
    s = int(round(s))
    h, r = divmod(s, 3600)
    m, s = divmod(r, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def make_reporter(progress: Any, **kw: Any) -> Any:
    """True: live display + log lines; "lines": log lines only; False/None: silent."""
    if progress is True:
        return RichReporter(**kw)
    if progress == "lines":
        return RichReporter(live=False, **kw)
    if progress is False or progress is None:
        return NullReporter()
    return progress


__all__ = ["NullReporter", "RichReporter", "make_reporter"]
