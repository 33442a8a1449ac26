"""Progress of long work with counts and an ETA: a Keras Progbar on a terminal, one plain line per item otherwise."""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


def duration(seconds: float) -> str:
    """``75`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def roughly(seconds: float) -> str:
    """A rough human duration for estimates: ``"about 40 s"``, ``"about 3 min"``, ``"about 2.5 h"``."""
    if seconds < 90:
        return f"about {max(1, round(seconds, -1 if seconds > 20 else 0)):.0f} s"
    if seconds < 90 * 60:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


class Progress:
    """``total`` items of work; call :meth:`step` after each one.

    On a terminal this is a ``keras.utils.Progbar`` (one line redrawn, with an ETA); when
    stdout is not a terminal (a log file, a pipe, CI) each item prints one line
    ``[done/total] <what> (elapsed m:ss, ETA m:ss)``.
    """

    def __init__(self, total: int, stream: TextIO | None = None, tty: bool | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.total = total
        self.done = 0
        self.stream = stream or sys.stdout
        self.clock = clock
        self.start = clock()
        self.bar = None
        if self.stream.isatty() if tty is None else tty:
            import keras

            self.bar = keras.utils.Progbar(total, unit_name="item")

    def eta(self) -> float:
        """Seconds left, from the mean time per item so far."""
        return (self.clock() - self.start) / max(self.done, 1) * (self.total - self.done)

    def step(self, what: str) -> None:
        """One more item finished; ``what`` says which."""
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.done)
            return
        print(f"[{self.done}/{self.total}] {what} (elapsed {duration(self.clock() - self.start)}, "
              f"ETA {duration(self.eta())})", file=self.stream, flush=True)
