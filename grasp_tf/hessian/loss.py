"""One chunk's scoring loss ``weight · CE(logits(params, state, x) / T)``, compiled: g, Hv and (g, Hg).

One class, :class:`ChunkLoss`, parameterised by where the logits come from. Get it from
:func:`chunk_loss`, which picks the logits of a bound model: for a Keras 3 model the traced
functions take ``params`` and ``state`` as inputs and are cached on the model (keyed weakly),
so later scorings of the same model with the same temperature do not trace again.
"""
from __future__ import annotations

import functools
import numbers
import threading
import weakref
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from grasp_tf.hessian.autodiff import (
    Tensors,
    cross_entropy,
    gradient,
    gradient_and_hessian_gradient,
    hessian_vector_product,
)
from grasp_tf.hessian.function import LegacyModelFunction, ModelFunction, stateless_logits

Logits = Callable[[Tensors, Tensors, tf.Tensor], tf.Tensor]
"""``logits(params, state, x)``: the model's training-mode float32 logits on ``x``."""


class ChunkLoss:
    """Compiled gradient, Hessian-vector product and one-pass (g, Hg) of ``weight · CE(logits / T)`` on chunks.

    ``weight`` lets a chunk's mean loss be summed from smaller pieces (``chunk_size``). Every
    method takes ``(params, state, ...)`` and passes both to ``logits``. Build and call it
    inside :func:`grasp_tf.hessian.bind` (tracing reads the layers' scoring mode).

    Args:
        logits: ``logits(params, state, x)``, the training-mode logits.
        temperature: the positive divisor of the logits.
        autograph: whether the traced functions convert Python control flow (tf_keras layers
            may need it; Keras 3 layers do not, and tracing is faster without).
        nest_chunks: in :meth:`gradient_and_hessian_gradient`, run each chunk through the
            compiled :meth:`gradient` (traced once for all chunks of one shape: a shorter first
            call on deep models) rather than inline.
    """

    def __init__(self, logits: Logits, temperature: float, *, autograph: bool = False,
                 nest_chunks: bool = True) -> None:
        self.logits = logits
        self.temperature = temperature
        self.nest_chunks = nest_chunks
        compiled = functools.partial(tf.function, reduce_retracing=True, autograph=autograph)
        self.gradient = compiled(self._gradient)
        self.hessian_vector_product = compiled(self._hvp)
        self.gradient_and_hessian_gradient = compiled(self._fused)

    def _loss(self, state: Tensors, x: tf.Tensor, y: tf.Tensor,
              weight: tf.Tensor) -> Callable[[Tensors], tf.Tensor]:
        return lambda p: weight * cross_entropy(self.logits(p, state, x), y, self.temperature)

    def _gradient(self, params: Tensors, state: Tensors, x: tf.Tensor, y: tf.Tensor, weight: tf.Tensor):
        return gradient(self._loss(state, x, y, weight), params)

    def _hvp(self, params: Tensors, state: Tensors, x: tf.Tensor, y: tf.Tensor, weight: tf.Tensor,
             vector: Tensors):
        return hessian_vector_product(self._loss(state, x, y, weight), params, vector)

    def _fused(self, params: Tensors, state: Tensors, xs: Tensors, ys: Tensors, weights: Tensors):
        chunk = self.gradient if self.nest_chunks else self._gradient
        return gradient_and_hessian_gradient(
            [lambda p, x=x, y=y, w=w: chunk(p, state, x, y, w) for x, y, w in zip(xs, ys, weights)], params)


def _stateless(function: ModelFunction) -> Logits:
    """Training-mode logits of a Keras 3 bound model; holds the model weakly (the cache is keyed on it)."""
    model = weakref.ref(function.model)
    variables = [*function.scored, *function.others]
    return lambda params, state, x: stateless_logits(model(), variables, [*params, *state], x, training=True)


_cache: "weakref.WeakKeyDictionary[Any, dict[tuple, ChunkLoss]]" = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def chunk_loss(function: ModelFunction | LegacyModelFunction, temperature: float) -> ChunkLoss:
    """The :class:`ChunkLoss` of a bound model at ``temperature`` (for Keras 3, made once per model and variables).

    Raises:
        ValueError: if ``temperature`` is not a positive finite number.
    """
    if not (isinstance(temperature, numbers.Real) and np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}.")
    temperature = float(temperature)
    if isinstance(function, LegacyModelFunction):
        return ChunkLoss(lambda params, state, x: function.logits(params, x, training=True), temperature,
                         autograph=True, nest_chunks=False)
    key = (tuple(id(v) for v in function.scored), tuple(id(v) for v in function.others), temperature)
    with _cache_lock:
        per_model = _cache.setdefault(function.model, {})
        if key not in per_model:
            per_model[key] = ChunkLoss(_stateless(function), temperature)
        return per_model[key]
