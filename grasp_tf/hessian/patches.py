"""Scoring mode: the process-wide and per-model switches a scoring computation runs under, each restored after.

Inside :func:`scoring_mode` every layer computes in float32 (whatever its mixed-precision
policy), Keras' moments keep the gradient through the mean in the variance, so second
derivatives are exact through training-mode batch norm (stock ``tf.nn.moments`` puts a
``stop_gradient`` there: right first derivatives, Hg off by up to a few percent), and
Grappler's constant folding is off for the functions first traced in the scope. tf_keras
batch norms are routed through the same exact moments (unfused) for the duration.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterator

import keras
import tensorflow as tf

from grasp_tf import _keras_internals
from grasp_tf.prunable import is_tf_keras


def _exact_moments(x: tf.Tensor, axes: Any, keepdims: bool, *_: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """Mean and biased variance of ``x``, differentiable twice (no stop-gradient on the mean)."""
    y = tf.cast(x, tf.float32) if x.dtype in (tf.float16, tf.bfloat16) else x
    mean = tf.reduce_mean(y, axes, keepdims=True)
    variance = tf.reduce_mean(tf.math.squared_difference(y, mean), axes, keepdims=True)
    if not keepdims:
        mean, variance = tf.squeeze(mean, axes), tf.squeeze(variance, axes)
    return mean, variance


_patch_lock = threading.Lock()
_patch_depth = 0
_stock_moments: tuple[Callable, Callable] | None = None


@contextlib.contextmanager
def exact_moments() -> Iterator[None]:
    """Make Keras' moments (BatchNorm, LayerNorm, GroupNorm) exact to second order, then restore.

    Forward values and first derivatives are the same ops as stock Keras; only the second
    derivative changes (it becomes the true one). Synchronized batch norm computes plain
    moments: scoring runs each chunk as one batch on one device anyway. Re-entrant.
    """
    global _patch_depth, _stock_moments
    with _patch_lock:
        if _patch_depth == 0:
            _stock_moments = _keras_internals.keras_moments()
            _keras_internals.set_keras_moments(_exact_moments, _exact_moments)
        _patch_depth += 1
    try:
        yield
    finally:
        with _patch_lock:
            _patch_depth -= 1
            if _patch_depth == 0:
                _keras_internals.set_keras_moments(*_stock_moments)


@contextlib.contextmanager
def compute_dtype(model: Any, dtype: str = "float32") -> Iterator[None]:
    """Every layer of ``model`` computes in ``dtype`` (e.g. float32 under mixed_float16), then restore."""
    keras3 = not is_tf_keras(model)
    saved = []
    for layer in [model, *_keras_internals.flatten_layers(model)]:
        current = _keras_internals.dtype_policy(layer)
        if current is None or getattr(current, "quantization_mode", None) is not None:
            continue
        if current.compute_dtype != dtype or current.variable_dtype != dtype:
            saved.append((layer, current))
            _keras_internals.set_dtype_policy(layer, keras.dtype_policies.get(dtype) if keras3 else dtype)
    try:
        yield
    finally:
        for layer, current in saved:
            _keras_internals.set_dtype_policy(layer, current)


def _legacy_exact_moments(inputs: tf.Tensor, reduction_axes: Any, keep_dims: bool,
                          mask: Any = None) -> tuple[tf.Tensor, tf.Tensor]:
    """tf_keras ``BatchNormalization`` moments with the exact variance."""
    if mask is not None:
        raise ValueError("Scoring a tf_keras model does not support masked batch normalization.")
    return _exact_moments(inputs, reduction_axes, keep_dims)


@contextlib.contextmanager
def _legacy_exact_batchnorm(model: Any) -> Iterator[None]:
    """tf_keras batch norms compute exact (unfused) moments for the duration, then are restored."""
    patched = []
    for layer in _keras_internals.flatten_layers(model):
        batch_norm = any(c.__name__ == "BatchNormalization" for c in type(layer).__mro__)
        if batch_norm and hasattr(layer, "fused"):
            fused = layer.fused
            layer.fused = False
            had_own = _keras_internals.set_tf_keras_batchnorm_moments(layer, _legacy_exact_moments)
            patched.append((layer, fused, had_own))
    try:
        yield
    finally:
        for layer, fused, had_own in patched:
            layer.fused = fused
            _keras_internals.reset_tf_keras_batchnorm_moments(layer, had_own)


@contextlib.contextmanager
def _no_constant_folding() -> Iterator[None]:
    """Grappler's constant folding off for the functions first run in this scope, then restored.

    On the double-backprop graphs it is the costliest graph optimisation of the first call
    (about 3 s of ~19 on ResNet32x2) and gives no measurable speed-up nor any change in the
    result (``docs/benchmarks.md``). Re-entrant: an inner scope restores the outer one's value.
    """
    before = tf.config.optimizer.get_experimental_options().get("constant_folding", True)
    tf.config.optimizer.set_experimental_options({"constant_folding": False})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"constant_folding": before})


@contextlib.contextmanager
def scoring_mode(model: Any) -> Iterator[None]:
    """Exact moments, float32 compute and no constant folding for the duration of a scoring computation."""
    exact = _legacy_exact_batchnorm(model) if is_tf_keras(model) else exact_moments()
    with exact, compute_dtype(model, "float32"), _no_constant_folding():
        yield
