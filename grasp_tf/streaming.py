"""Where a drawn scoring sample waits between passes: spilled to temporary files, replayed, or in memory.

GraSP reads its sample twice (``g`` over every draw, then ``Hg`` over the same examples) and
SNIP once more after the sizes are known, but a sample of ``num_draws`` draws need not be
held at once: a :class:`Sample` yields its draws one at a time, in draw order, every time
it is iterated. How the draws are kept is ``sample_storage``:

* ``"disk"`` (the default): each draw is written to a ``.npy`` file in a
  ``tempfile.TemporaryDirectory`` (``$TMPDIR``, else ``/tmp``) as it is drawn, and read back
  one at a time by every pass; the directory is deleted when scoring ends, also on error.
  It needs free disk space for the whole sample. Any data works, also a pipeline that gives
  other examples on every iteration (unseeded shuffle, random augmentation).
* ``"replay"``: nothing is stored; each pass iterates the data again from its start and
  draws again, and every draw's digest must equal the first pass's (else a ValueError). For
  deterministic pipelines only, and every pass pays the pipeline's cost again.
* ``"memory"``: every draw stays in host memory (the behaviour before streaming).

A single draw (one batch, or an ``(x, y)`` pair) is always held in memory: it is what a pass
works on, so there is nothing to stream.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from grasp_tf.progress import Progress, Verbose

Batch = tuple[np.ndarray, np.ndarray]

STORAGES = ("disk", "replay", "memory")
"""The values of ``sample_storage``."""


def check_storage(storage: Any) -> str:
    """``storage`` if it names a way of keeping the sample (:data:`STORAGES`); a ValueError otherwise."""
    if storage not in STORAGES:
        raise ValueError(f"sample_storage must be one of {', '.join(map(repr, STORAGES))}, got {storage!r}.")
    return storage


class Sample:
    """A drawn scoring sample: its draws in draw order, one ``(x, integer labels)`` pair at a time.

    Iterating yields every draw in order, as often as needed; with ``"disk"`` or ``"replay"``
    storage only the draw being read is in memory. Close it (or use it as a context manager)
    to delete its spill files.

    Args:
        sizes: the number of examples of each draw.
        read: returns a fresh iterator over the draws.
        close: deletes whatever holds the draws (optional).
        verbose: how scoring passes over the sample report progress (``grasp_tf.progress``).

    Example:

    >>> with grasp_tf.sampling.draw(stream, 10, num_draws=40) as sample:
    ...     for x, y in sample:  # one draw of the 40 at a time
    ...         ...
    """

    def __init__(self, sizes: Iterable[int], read: Callable[[], Iterator[Batch]],
                 close: Callable[[], None] | None = None, verbose: Verbose = "auto") -> None:
        self.sizes = tuple(int(n) for n in sizes)
        self.verbose = verbose
        self._read = read
        self._close = close
        self._closed = False

    def __len__(self) -> int:
        return len(self.sizes)

    def __iter__(self) -> Iterator[Batch]:
        if self._closed:
            raise ValueError("This scoring sample was closed: its spilled draws are deleted.")
        return self._read()

    @property
    def draws(self) -> tuple[Batch, ...]:
        """Every draw, all in memory at once (small samples; iterate the sample to hold one at a time)."""
        return tuple(self)

    def concatenated(self) -> Batch:
        """All draws as one batch, in draw order (in memory: the whole sample plus one draw at a time)."""
        x = y = None
        start = 0
        for dx, dy in self:
            if x is None:
                total = sum(self.sizes)
                x, y = np.empty((total, *dx.shape[1:]), dx.dtype), np.empty((total, *dy.shape[1:]), dy.dtype)
            x[start:start + len(dy)], y[start:start + len(dy)] = dx, dy
            start += len(dy)
            del dx, dy
        return x, y

    def close(self) -> None:
        """Delete the spilled draws, if any; the sample cannot be read afterwards."""
        if self._close is not None and not self._closed:
            self._close()
        self._closed = True

    def __enter__(self) -> "Sample":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _digest(x: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in (x, y):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _in_memory(draws: Iterator[Batch], progress: Progress) -> Sample:
    kept = []
    for d in draws:
        kept.append(d)
        progress.step()
    return Sample([len(y) for _, y in kept], lambda: iter(kept), verbose=progress.verbose)


def _spilled(draws: Iterator[Batch], num_draws: int, progress: Progress) -> Sample:
    directory = tempfile.TemporaryDirectory(prefix="grasp_tf_sample_")
    paths: list[tuple[str, str]] = []
    sizes: list[int] = []
    try:
        for i, (x, y) in enumerate(draws):
            path = (os.path.join(directory.name, f"draw{i:06d}_x.npy"), os.path.join(directory.name, f"draw{i:06d}_y.npy"))
            try:
                np.save(path[0], x)
                np.save(path[1], y)
            except OSError as e:
                need = (x.nbytes + y.nbytes) * num_draws / 2**30
                raise OSError(f"Spilling the scoring sample to {directory.name} failed ({e}); the sample needs "
                              f"about {need:.1f} GiB of free disk space there. Set TMPDIR to a larger disk, or "
                              "use sample_storage='replay' for a deterministic dataset.") from e
            paths.append(path)
            sizes.append(len(y))
            del x, y  # before the next draw is made
            progress.step()
    except BaseException:
        directory.cleanup()
        raise

    def read() -> Iterator[Batch]:
        for px, py in paths:
            yield np.load(px), np.load(py)

    return Sample(sizes, read, directory.cleanup, verbose=progress.verbose)


def _replayed(draws: Iterator[Batch], replay: Callable[[], Iterator[Batch]], progress: Progress) -> Sample:
    digests, sizes = [], []
    for x, y in draws:
        digests.append(_digest(x, y))
        sizes.append(len(y))
        del x, y
        progress.step()

    def read() -> Iterator[Batch]:
        again = replay()
        for i, digest in enumerate(digests):
            try:
                x, y = next(again)
            except Exception as e:  # noqa: BLE001 (the data's own error, e.g. a one-shot generator's)
                raise ValueError(f"sample_storage='replay': iterating the data again failed at draw {i} "
                                 f"({str(e).strip().splitlines()[0] if str(e).strip() else 'it ended'}). Replay needs data that gives the same draws on every "
                                 "iteration; use sample_storage='disk'.") from None
            if _digest(x, y) != digest:
                raise ValueError(f"sample_storage='replay': draw {i} differs from the first pass's (the data "
                                 "is not deterministic across iterations: an unseeded shuffle or random "
                                 "augmentation?). Use sample_storage='disk', which spills the draws to disk.")
            yield x, y
            del x, y

    return Sample(sizes, read, verbose=progress.verbose)


def store(draws: Iterator[Batch], num_draws: int, storage: str, replay: Callable[[], Iterator[Batch]],
          verbose: Verbose = "auto") -> Sample:
    """Draw the whole sample from ``draws`` now, keeping it as ``storage`` says (one draw: in memory).

    Args:
        draws: the draws, in order, drawn lazily (errors in the data surface here, before scoring).
        num_draws: how many ``draws`` yields.
        storage: ``"disk"``, ``"replay"`` or ``"memory"`` (see the module's docstring).
        replay: a fresh ``draws`` from the data's start (used by ``"replay"``).
        verbose: progress of the drawing (``grasp_tf.progress``).

    Returns:
        The :class:`Sample`.
    """
    progress = Progress("drawing the scoring sample", num_draws, "draws", verbose)
    if num_draws == 1 or check_storage(storage) == "memory":
        return _in_memory(draws, progress)
    if storage == "disk":
        return _spilled(draws, num_draws, progress)
    return _replayed(draws, replay, progress)
