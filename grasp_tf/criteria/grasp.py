"""GraSP (Wang, Zhang & Grosse, ICLR 2020): score ``S = -θ ⊙ Hg``, remove the largest.

By default this is the official code's procedure: logits divided by ``temperature=200``;
each draw split into ``num_chunks=2`` halves that run separately, batch norm in training
mode with per-chunk statistics; ``g`` = sum of the chunks' mean-loss gradients with respect
to the scored weights; ``Hg`` = Σ_c ∇θ(stop_gradient(g) · ∇θ L_c); and every Dense kernel
redrawn from an untruncated Glorot normal for scoring (``reinit_dense``), the scored θ of a
Dense kernel being the redrawn one. ``chunk_size`` cuts chunks into pieces of at most that
many examples, summed with weights ``n_piece / n_chunk``: the same result without batch norm,
per-piece batch-norm statistics with it. A single draw without ``chunk_size`` (the
reference's CIFAR setting) runs as one compiled pass in which the double backprop goes
through the very forward and backward passes that gave ``g`` (each chunk's activations
held at once); otherwise ``g`` is summed piece by piece over every draw first and ``Hg``
piece by piece after, over the same examples read back one draw at a time
(``grasp_tf.streaming``), so memory is that of one piece plus one draw, however many draws.
``grasp_abs`` removes the smallest ``|θ ⊙ Hg|``.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import tensorflow as tf

from grasp_tf import hessian, sampling
from grasp_tf.criteria.base import Criterion, Option, check_loss, dense_kernels, keyed, redrawn
from grasp_tf.progress import Progress
from grasp_tf.prunable import PrunableWeight


def _pieces(x: np.ndarray, y: np.ndarray, num_chunks: int, chunk_size: int | None) -> list[tuple]:
    """``(x, y, weight)`` of every piece of every chunk of one draw, in order."""
    return [(x[piece], y[piece], weight) for chunk in sampling.chunk_slices(len(y), num_chunks)
            for piece, weight in sampling.pieces(chunk, chunk_size)]


def _pass(sample: sampling.Sample, title: str, num_chunks: int, chunk_size: int | None) -> Iterator[tuple]:
    """``(draw index, x, y, weight)`` tensors of every piece of the sample, one draw in memory at a time."""
    total = sum(len(sampling.pieces(chunk, chunk_size)) for n in sample.sizes
                for chunk in sampling.chunk_slices(n, num_chunks))
    progress = Progress(title, total, "pieces", sample.verbose)
    for d, (x, y) in enumerate(sample):
        for px, py, weight in _pieces(x, y, num_chunks, chunk_size):
            yield d, tf.constant(px), tf.constant(py), tf.constant(weight, tf.float32)
            progress.step()
        del x, y, px, py  # before the next draw is read


def theta_and_hg(model: Any, weights: Sequence[PrunableWeight], sample: sampling.Sample, *,
                 seed: int | None = None, temperature: float = 200.0, num_chunks: int = 2,
                 reinit_dense: bool = True, chunk_size: int | None = None,
                 ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The scored weights θ (Dense kernels redrawn if asked) and the Hessian-gradient product Hg."""
    replace = redrawn(dense_kernels(model), seed) if reinit_dense else []
    with hessian.bind(model, [w.variable for w in weights], replace) as function:
        loss = hessian.chunk_loss(function, temperature)
        params, state = function.params, function.state
        if len(sample) == 1 and chunk_size is None:  # one pass: g and Hg share the forward/backward
            plan = _pieces(*next(iter(sample)), num_chunks, chunk_size)
            values, _, hg = loss.gradient_and_hessian_gradient(
                params, state, [tf.constant(x) for x, _, _ in plan], [tf.constant(y) for _, y, _ in plan],
                [tf.constant(w, tf.float32) for _, _, w in plan])
            for value in values:
                check_loss(value, "a chunk of draw 0")
            return [p.numpy() for p in params], [h.numpy() for h in hg]
        # Two passes over the sample (read back one draw at a time): g first, then Hg.
        g = [tf.zeros_like(p) for p in params]
        for d, x, y, weight in _pass(sample, "GraSP g", num_chunks, chunk_size):
            value, grads = loss.gradient(params, state, x, y, weight)
            check_loss(value, f"a chunk of draw {d}")
            g = [a + b for a, b in zip(g, grads)]
        hg = [tf.zeros_like(p) for p in params]
        for _, x, y, weight in _pass(sample, "GraSP Hg", num_chunks, chunk_size):
            _, products = loss.hessian_vector_product(params, state, x, y, weight, g)
            hg = [a + b for a, b in zip(hg, products)]
        return [p.numpy() for p in params], [h.numpy() for h in hg]


def grasp_scores(model: Any, weights: Sequence[PrunableWeight], sample: sampling.Sample, *,
                 seed: int | None = None, temperature: float = 200.0, num_chunks: int = 2,
                 reinit_dense: bool = True, chunk_size: int | None = None) -> dict[str, np.ndarray]:
    """``-θ ⊙ Hg`` per weight, as the reference stores it (the largest are removed)."""
    theta, hg = theta_and_hg(model, weights, sample, seed=seed, temperature=temperature,
                             num_chunks=num_chunks, reinit_dense=reinit_dense, chunk_size=chunk_size)
    return keyed(weights, (-t * h for t, h in zip(theta, hg)))


def grasp_abs_scores(model: Any, weights: Sequence[PrunableWeight], sample: sampling.Sample, *,
                     seed: int | None = None, temperature: float = 200.0, num_chunks: int = 2,
                     reinit_dense: bool = True, chunk_size: int | None = None) -> dict[str, np.ndarray]:
    """``|θ ⊙ Hg|`` per weight (GraSP-abs of Frankle et al. 2021: the smallest are removed)."""
    theta, hg = theta_and_hg(model, weights, sample, seed=seed, temperature=temperature,
                             num_chunks=num_chunks, reinit_dense=reinit_dense, chunk_size=chunk_size)
    return keyed(weights, (np.abs(t * h) for t, h in zip(theta, hg)))


OPTIONS = (
    Option("temperature", float, 200.0, "Softmax temperature T: the loss is the cross-entropy of logits / T "
           "(the reference's 200).", minimum=0, exclusive_minimum=True),
    Option("num_chunks", int, 2, "Each draw is split into this many chunks, each its own batch (batch-norm "
           "statistics per chunk; the reference's 2).", minimum=1),
    Option("reinit_dense", bool, True, "Score with every Dense kernel redrawn from an untruncated Glorot normal "
           "(the reference's quirk)."),
    Option("chunk_size", int, None, "Process each chunk in pieces of at most this many examples (bounds memory; "
           "batch-norm statistics then per piece).", minimum=1, optional=True),
)

GRASP = Criterion("grasp", grasp_scores, remove_largest=True, option_specs=OPTIONS)
GRASP_ABS = Criterion("grasp_abs", grasp_abs_scores, remove_largest=False, option_specs=OPTIONS)
