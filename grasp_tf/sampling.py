"""Scoring samples: validated (x, y) batches -> class-balanced draws -> chunks and pieces.

``data`` is an ``(x, y)`` pair (one batch, used as given, in the given order) or a
``tf.data.Dataset`` of ``(x, y)`` batches (a stream). Labels are integer class ids or
one-hot rows. With ``samples_per_class=k`` a draw is the first ``k`` examples of every
class met in the stream, stacked in class order (as the authors' code, alecwangcq/GraSP, draws it); each further draw
continues the stream where the previous one stopped (the reference restarts its
shuffled loader instead: the same distribution, never a repeated example). Without it a
draw is one batch as given. A draw of ``N`` examples is split into ``num_chunks`` chunks
``[c·N//k : (c+1)·N//k]`` (for k = 2, the reference halves ``[:N//2]``, ``[N//2:]``).
The drawn sample is a :class:`grasp_tf.streaming.Sample`: several draws are spilled to
temporary files (or replayed) and read back one at a time, never all held at once.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator, Union

import numpy as np
import tensorflow as tf

from grasp_tf import streaming
from grasp_tf.progress import Verbose
from grasp_tf.streaming import Batch, Sample

__all__ = ["Batch", "Data", "Sample", "batches", "class_labels", "draw", "chunk_slices", "pieces",
           "pieces_across"]

Data = Union[tuple[Any, Any], tf.data.Dataset]

# Class-balanced sampling gives up after this many examples per requested one (an endless
# stream that lacks a class would otherwise never stop).
_PATIENCE = 1000


def _array(value: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except Exception as exc:  # e.g. ragged tensors, dicts of inputs
        raise ValueError(f"{what} must be an array or tensor, got {type(value).__name__}: {exc}") from None


def _batch(x: Any, y: Any) -> Batch:
    x, y = _array(x, "x"), _array(y, "y")
    if y.ndim == 0:  # an unbatched dataset element
        x, y = x[None], y[None]
    if x.ndim == 0 or len(x) != len(y):
        raise ValueError(f"x and y hold different numbers of examples: x has shape {x.shape}, "
                         f"y has shape {y.shape}.")
    return x, y


def batches(data: Data) -> Iterator[Batch]:
    """The numpy ``(x, y)`` batches of ``data``; an ``(x, y)`` pair is a stream of one batch."""
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if not isinstance(spec, tuple) or len(spec) != 2:
            raise ValueError(f"The dataset must yield (x, y) pairs; its elements are {spec}.")
        if spec[1].shape.rank == 0:  # an un-batched stream of examples: read it in batches
            data = data.batch(256)
        return _numpy_batches(data)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return iter([_batch(*data)])
    raise ValueError(
        f"data must be an (x, y) pair or a tf.data.Dataset of (x, y) batches, got {type(data).__name__}.")


def _numpy_batches(data: tf.data.Dataset) -> Iterator[Batch]:
    """The dataset's batches as numpy; none is held while the next one is read."""
    for x, y in data.as_numpy_iterator():
        batch = _batch(x, y)
        del x, y
        yield batch
        del batch


def class_labels(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Integer class ids from integer or one-hot labels, checked against the model's classes."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim == 2:
        if y.shape[1] != num_classes:
            raise ValueError(f"One-hot labels have {y.shape[1]} columns but the model has "
                             f"{num_classes} classes (outputs).")
        if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise ValueError("Two-dimensional labels must be one-hot (a single 1 per row).")
        return np.argmax(y, axis=1).astype(np.int64)
    if y.ndim != 1:
        raise ValueError(f"Labels must have shape (N,) or one-hot (N, {num_classes}); got {y.shape}.")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)) or (
            np.issubdtype(y.dtype, np.floating) and not np.all(np.mod(y, 1) == 0)):
        raise ValueError(f"Labels must be integer class ids; got dtype {y.dtype} values {y[:5]}.")
    bad = np.unique(y[(y < 0) | (y >= num_classes)])
    if bad.size:
        raise ValueError(f"Labels {bad[:10].tolist()} are outside the model's classes "
                         f"0..{num_classes - 1} (the model has {num_classes} outputs).")
    return y.astype(np.int64)


class _Stream:
    """Labelled examples in stream order; a partly used batch is resumed, never skipped."""

    def __init__(self, source: Iterator[Batch], num_classes: int) -> None:
        self._source = source
        self._num_classes = num_classes
        self._pending: list[Batch] = []

    def next(self) -> Batch | None:
        if self._pending:
            return self._pending.pop()
        for x, y in self._source:
            if len(y):
                return x, class_labels(y, self._num_classes)
        return None

    def push_back(self, batch: Batch) -> None:
        if len(batch[1]):
            self._pending.append(batch)


def _balanced_draw(stream: _Stream, num_classes: int, per_class: int) -> Batch:
    need = np.full(num_classes, per_class)
    xs: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    seen = 0
    while need.any():
        batch = stream.next()
        if batch is None or seen > _PATIENCE * per_class * num_classes:
            short = np.flatnonzero(need)
            have = (per_class - need[short]).tolist()
            where = ("The data ran out before" if batch is None
                     else f"After {seen} examples the stream had still not given")
            raise ValueError(
                f"{where} {per_class} examples of every class "
                f"(samples_per_class={per_class}, {num_classes} classes): classes "
                f"{short[:10].tolist()} have only {have[:10]}.")
        x, y = batch
        last = -1
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)[: need[c]]
            if idx.size:
                xs[c].append(x[idx])
                need[c] -= idx.size
                last = max(last, int(idx[-1]))
        if not need.any():
            stream.push_back((x[last + 1:], y[last + 1:]))
        seen += len(y)
    x = np.concatenate([part for parts in xs for part in parts])
    y = np.repeat(np.arange(num_classes, dtype=np.int64), per_class)
    return x, y


def _positive_int(value: Any, name: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}.")
    return int(value)


def draw(data: Data, num_classes: Union[int, Callable[[np.ndarray], int]], *,
         samples_per_class: int | None = None, num_draws: int = 1, sample_storage: str = "disk",
         verbose: Verbose = "auto") -> Sample:
    """The scoring sample: ``num_draws`` draws, class-balanced when ``samples_per_class`` is set.

    Every draw is made now (errors in the data surface before any scoring) and kept as
    ``sample_storage`` says (``grasp_tf.streaming``: spilled to disk by default, so that
    several draws are never all in memory). ``num_classes`` may be a function of the first
    batch's inputs (the model's output width). Close the returned sample (``with``) to
    delete its spill files.
    """
    per_class = _positive_int(samples_per_class, "samples_per_class", allow_none=True)
    num_draws = _positive_int(num_draws, "num_draws")
    streaming.check_storage(sample_storage)
    source = batches(data)
    first = next(source, None)
    if first is None:
        raise ValueError("The dataset is empty: it yielded no batches.")
    if len(first[1]) == 0:
        raise ValueError("The data is empty: it holds no examples.")
    classes = num_classes(first[0]) if callable(num_classes) else int(num_classes)
    if per_class is None and num_draws > 1 and not isinstance(data, tf.data.Dataset):
        raise ValueError(f"num_draws={num_draws} needs a tf.data.Dataset or samples_per_class: "
                         "an (x, y) pair is a single draw.")

    def draws(source: Iterator[Batch]) -> Iterator[Batch]:
        stream = _Stream(source, classes)
        for i in range(num_draws):  # no draw is held while the next one is made
            one = _balanced_draw(stream, classes, per_class) if per_class is not None else stream.next()
            if one is None:
                raise ValueError(f"The dataset ended after {i} non-empty batches; "
                                 f"num_draws={num_draws} needs one batch per draw.")
            yield one
            del one

    source = itertools.chain([first], source)
    del first
    return streaming.store(draws(source), num_draws, sample_storage, replay=lambda: draws(batches(data)),
                           verbose=verbose)


def chunk_slices(n: int, num_chunks: int) -> list[slice]:
    """``num_chunks`` consecutive chunks of a draw of ``n``: ``[c·n//k : (c+1)·n//k]``."""
    num_chunks = _positive_int(num_chunks, "num_chunks")
    if n < num_chunks:
        raise ValueError(f"A draw of {n} examples cannot be split into num_chunks={num_chunks} chunks.")
    bounds = [c * n // num_chunks for c in range(num_chunks + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def pieces(chunk: slice, chunk_size: int | None) -> list[tuple[slice, float]]:
    """A chunk cut into pieces of at most ``chunk_size``, each with its weight ``n_piece / n_chunk``.

    The weighted sum of the pieces' mean losses is the chunk's mean loss; batch-norm
    statistics, however, become per piece.
    """
    size = chunk.stop - chunk.start
    step = size if chunk_size is None else _positive_int(chunk_size, "chunk_size")
    return [(slice(a, min(a + step, chunk.stop)), (min(a + step, chunk.stop) - a) / size)
            for a in range(chunk.start, chunk.stop, step)]


def pieces_across(sample: Sample, chunk_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
    """``(x, y, weight)`` of the pieces of at most ``chunk_size`` of the whole sample, read draw by draw.

    The pieces, their order and their weights ``n_piece / n_sample`` are :func:`pieces` of the
    concatenated sample (a piece may span draws); only the draw being read and the unused
    tail of the previous one (less than a piece) are held.
    """
    plan = pieces(slice(0, sum(sample.sizes)), chunk_size)
    parts: list[Batch] = []  # the examples read and not yet used, from sample position `base` on
    base = end = k = 0
    for dx, dy in sample:
        parts.append((dx, dy))
        end += len(dy)
        while k < len(plan) and plan[k][0].stop <= end:
            piece, weight = plan[k]
            yield (*_take(parts, piece.start - base, piece.stop - piece.start), weight)
            k += 1
        used = plan[k][0].start - base if k < len(plan) else end - base
        tail = _take(parts, used, end - base - used)
        parts = [(tail[0].copy(), tail[1].copy())] if len(tail[1]) else []  # a copy frees the draw
        base += used
        del dx, dy, tail  # before the next draw is read


def _take(parts: list[Batch], start: int, size: int) -> Batch:
    """Examples ``[start, start + size)`` of the concatenation of ``parts`` (a view when inside one part)."""
    offset = 0
    for x, y in parts:
        if offset <= start and start + size <= offset + len(y):
            return x[start - offset:start - offset + size], y[start - offset:start - offset + size]
        offset += len(y)
    x, y = np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])
    return x[start:start + size], y[start:start + size]
