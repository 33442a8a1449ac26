"""Progress of long scoring work: counts and an ETA, a Keras bar on a terminal, plain lines otherwise.

``verbose="auto"`` (the library's default) stays silent for small jobs: a task reports only
once it has run for :data:`AUTO_DELAY` seconds with work left, so a scoring of a few seconds
prints nothing while one of an hour shows where it is. ``verbose=True`` reports from the
first step, ``False`` never. On a terminal (``sys.stdout.isatty()``) the report is
``keras.utils.Progbar``; otherwise (a log file, a pipe, a notebook capture) it is one plain
line ``"<title>: 3/40 draws, 12.1 s, ETA 2.6 min"`` at most every :data:`LINE_INTERVAL`
seconds (or the task's ``interval``), and always for the last step. The command-line tools
(``train.analyze``) use the same class with ``verbose=True, interval=0``: one line per step,
naming what finished.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Union

Verbose = Union[bool, int, str]

AUTO_DELAY = 5.0
"""Seconds a task runs before ``verbose="auto"`` starts reporting it."""

LINE_INTERVAL = 10.0
"""Least seconds between two plain progress lines (not on a terminal)."""


def check_verbose(verbose: Any) -> Verbose:
    """``verbose`` if it is ``"auto"``, a bool or 0/1; a ValueError otherwise."""
    if verbose == "auto" or isinstance(verbose, bool) or verbose in (0, 1):
        return verbose
    raise ValueError(f"verbose must be 'auto', True or False, got {verbose!r}.")


def duration(seconds: float, digits: int = 1) -> str:
    """A duration in the unit that reads best: ``"12.1 s"`` under 90 s, ``"2.6 min"`` under 90 min, else ``"1.5 h"``.

    Args:
        seconds: the duration.
        digits: digits after the decimal point (0 for a rough estimate: ``"about 3 min"``).

    Returns:
        The duration as text.

    Example:

    >>> duration(156.0), duration(40.4, digits=0)
    ('2.6 min', '40 s')
    """
    if seconds < 90:
        return f"{seconds:.{digits}f} s"
    if seconds < 5400:
        return f"{seconds / 60:.{digits}f} min"
    return f"{seconds / 3600:.{digits}f} h"


class Progress:
    """Counts the steps of one task (``total`` of them) and reports them as ``verbose`` says.

    Args:
        title: what the task is, e.g. ``"grasp: Hg"``.
        total: how many steps the task has.
        unit: the name of one step, plural (``"draws"``, ``"pieces"``).
        verbose: ``"auto"``, True or False (see the module's docstring).
        interval: least seconds between two plain lines (default :data:`LINE_INTERVAL`;
            0 = a line for every step).

    Example:

    >>> progress = Progress("grasp: g", len(pieces), "pieces", verbose=True)
    >>> for piece in pieces:
    ...     work(piece)
    ...     progress.step()
    """

    def __init__(self, title: str, total: int, unit: str, verbose: Verbose = "auto", *,
                 interval: float | None = None) -> None:
        self.title, self.total, self.unit = title, int(total), unit
        self.verbose = check_verbose(verbose)
        self.interval = interval
        self.done = 0
        self._start = time.perf_counter()
        self._last_line = -float("inf")
        self._bar: Any = None

    def _reporting(self, elapsed: float) -> bool:
        if self.verbose == "auto":
            return self.total > 1 and (self._bar is not None or self._last_line > -float("inf")
                                       or elapsed >= AUTO_DELAY)
        return bool(self.verbose)

    def step(self, count: int = 1, what: str | None = None) -> None:
        """Record ``count`` more finished steps (``what``: which, for the line), and report if it is time to."""
        self.done += count
        now = time.perf_counter()
        elapsed = now - self._start
        if not self._reporting(elapsed):
            return
        if sys.stdout.isatty():
            if self._bar is None:
                import keras

                print(f"{self.title} ({self.total} {self.unit})", flush=True)
                self._bar = keras.utils.Progbar(self.total, unit_name=self.unit.rstrip("s"))
            self._bar.update(self.done)
            return
        interval = LINE_INTERVAL if self.interval is None else self.interval
        if now - self._last_line >= interval or self.done >= self.total:
            eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
            tail = "done" if self.done >= self.total else f"ETA {duration(eta)}"
            print(f"{self.title}: {self.done}/{self.total} {self.unit}, {duration(elapsed)}, {tail}"
                  + (f" ({what})" if what else ""), flush=True)
            self._last_line = now
