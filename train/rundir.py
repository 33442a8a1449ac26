"""What a run directory holds by name, and what a run may delete: only its names, only those it made.

A fresh run (no ``config.json``) refuses a directory that already holds any of these names,
so at any later point the names present that were not there at its start are its own; a
fresh run that cannot start removes exactly those, and the directories it created. A resumed
run never deletes a file it did not write in this process; ``--overwrite`` deletes every name
listed here (and nothing else) before it starts.
"""
from __future__ import annotations

import os
import shutil

from train.artifacts import CHECKSUMS

RUN_FILES = ("config.json", "pruning.json", "masks.npz", "metrics.csv", "results.json", "model.keras", CHECKSUMS)
RUN_DIRS = ("backup", "tensorboard", "export")


def run_names(path: str) -> set[str]:
    """The names in ``path`` a run manages (RUN_FILES, RUN_DIRS, ``.tmp-*`` temporaries) that exist now."""
    if not os.path.isdir(path):
        return set()
    return {n for n in os.listdir(path) if n in RUN_FILES or n in RUN_DIRS or n.startswith(".tmp-")}


def clear_run(path: str, keep: set[str] = frozenset()) -> None:
    """Remove the run's names (``run_names``) from ``path``, except those in ``keep``; nothing else.

    ``--overwrite`` clears everything ``run_names`` lists; a fresh run that could not start
    passes the names that were there before it, so it removes only what it created itself.
    """
    for name in sorted(run_names(path) - set(keep)):
        p = os.path.join(path, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        elif os.path.lexists(p):
            os.remove(p)


def make_dirs(path: str) -> list[str]:
    """``os.makedirs(path, exist_ok=True)``, returning the directories it created, outermost first.

    On failure the ones it created are removed again before the ``OSError`` propagates.
    """
    missing = []
    p = os.path.abspath(path)
    while not os.path.isdir(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    created: list[str] = []
    try:
        for d in reversed(missing):
            try:
                os.mkdir(d)
            except FileExistsError:  # made meanwhile by someone else: not ours
                continue
            created.append(d)
    except OSError:
        remove_dirs(created)
        raise
    return created


def remove_dirs(created: list[str]) -> None:
    """Remove the directories ``make_dirs`` created, innermost first, each only if empty."""
    for d in reversed(created):
        try:
            os.rmdir(d)
        except OSError:
            return
