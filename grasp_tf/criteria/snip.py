"""SNIP (Lee et al. 2019), as the PyTorch port GraSP compared with: ``S = |θ ⊙ g|``, remove the smallest.

``g`` is the gradient of the mean loss over the whole sample (all draws) in one pass,
batch norm in training mode, ``temperature=1``. ``reinit_kernels=True`` reproduces the
port's quirk of redrawing every scored kernel from an untruncated Glorot normal first (the
score then uses the redrawn θ). Without ``chunk_size`` the whole sample is one batch (batch
norm's statistics are those of all of it), so it is held in memory at once; ``chunk_size``
cuts the concatenated sample into pieces of that many examples (across draw boundaries),
read one draw at a time, and is what bounds SNIP's memory (batch-norm statistics then
become per piece).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from grasp_tf import hessian, sampling
from grasp_tf.criteria.base import Criterion, Option, check_loss, keyed, redrawn
from grasp_tf.progress import Progress
from grasp_tf.prunable import PrunableWeight


def snip_scores(model: Any, weights: Sequence[PrunableWeight], sample: sampling.Sample, *,
                seed: int | None = None, temperature: float = 1.0, reinit_kernels: bool = False,
                chunk_size: int | None = None) -> dict[str, np.ndarray]:
    """``|θ ⊙ ∇θ L|`` per weight, L the mean loss of the whole sample."""
    if chunk_size is None:
        plan, total = iter([(*sample.concatenated(), 1.0)]), 1
    else:
        plan = sampling.pieces_across(sample, chunk_size)
        total = len(sampling.pieces(slice(0, sum(sample.sizes)), chunk_size))
    scored = [w.variable for w in weights]
    replace = redrawn(scored, seed) if reinit_kernels else []
    with hessian.bind(model, scored, replace) as function:
        loss = hessian.chunk_loss(function, temperature)
        params = function.params
        g = [tf.zeros_like(p) for p in params]
        progress = Progress("SNIP", total, "pieces", sample.verbose)
        for x, y, weight in plan:
            x, y = tf.constant(x), tf.constant(y)
            value, grads = loss.gradient(params, function.state, x, y, tf.constant(weight, tf.float32))
            check_loss(value, "the sample")
            g = [a + b for a, b in zip(g, grads)]
            progress.step()
        return keyed(weights, (np.abs(p.numpy() * a.numpy()) for p, a in zip(params, g)))


OPTIONS = (
    Option("temperature", float, 1.0, "Softmax temperature T: the loss is the cross-entropy of logits / T "
           "(the PyTorch port's 1).", minimum=0, exclusive_minimum=True),
    Option("reinit_kernels", bool, False, "Score with every scored kernel redrawn from an untruncated Glorot "
           "normal (the PyTorch port's quirk)."),
    Option("chunk_size", int, None, "Cut the whole sample into pieces of at most this many examples (bounds "
           "memory; batch-norm statistics then per piece).", minimum=1, optional=True),
)

SNIP = Criterion("snip", snip_scores, remove_largest=False, option_specs=OPTIONS)
