"""Autodiff primitives of scoring: the loss, its gradient, Hessian-vector products and the one-pass (g, Hg).

A Hessian is never materialised: ``Hg = ∇θ (stop_gradient(g) · ∇θ L)`` by double backprop.
"""
from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf

Tensors = list[tf.Tensor]


def cross_entropy(logits: tf.Tensor, labels: tf.Tensor, temperature: float) -> tf.Tensor:
    """Mean softmax cross-entropy of ``logits / temperature`` (the reference's objective)."""
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits / temperature))


def gradient(f: Callable[[Tensors], tf.Tensor], params: Sequence[tf.Tensor]) -> tuple[tf.Tensor, Tensors]:
    """``f(params)`` and its gradient (zeros where ``f`` does not depend on a tensor)."""
    params = list(params)
    with tf.GradientTape() as tape:
        tape.watch(params)
        value = f(params)
    return value, tape.gradient(value, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)


def hessian_vector_product(f: Callable[[Tensors], tf.Tensor], params: Sequence[tf.Tensor],
                           vector: Sequence[tf.Tensor]) -> tuple[tf.Tensor, Tensors]:
    """``f(params)`` and ``H v`` = ∇(stop_gradient(v) · ∇f), by double backprop (no Hessian built)."""
    params = list(params)
    with tf.GradientTape() as outer:
        outer.watch(params)
        value, grads = gradient(f, params)
        dot = tf.add_n([tf.reduce_sum(tf.stop_gradient(v) * g) for v, g in zip(vector, grads)])
    return value, outer.gradient(dot, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)


def gradient_and_hessian_gradient(chunk_gradients: Sequence[Callable[[Tensors], tuple[tf.Tensor, Tensors]]],
                                   params: Sequence[tf.Tensor]) -> tuple[list[tf.Tensor], Tensors, Tensors]:
    """Each chunk's ``(L_c, ∇L_c) = chunk_gradient(params)``, ``g = Σ ∇L_c`` and ``Hg = ∇(stop_gradient(g) · g)``.

    One pass: the double backprop runs through the very forward and backward passes that
    gave ``g``, so nothing is recomputed; every chunk's activations are held at once. A
    ``chunk_gradient`` may be a ``tf.function`` (traced once, reused by every chunk of its shape).
    """
    params = list(params)
    with tf.GradientTape() as outer:
        outer.watch(params)
        values, grads = zip(*(chunk_gradient(params) for chunk_gradient in chunk_gradients))
        g = [tf.add_n(list(parts)) for parts in zip(*grads)]
        dot = tf.add_n([tf.reduce_sum(tf.stop_gradient(a) * a) for a in g])
    return list(values), g, outer.gradient(dot, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)
