"""Gradients and Hessian-gradient products of a Keras model's loss: float32, exact, side-effect free.

A model is scored through :class:`ModelFunction`, which reads every variable of the model
from tensors given to it (``keras.StatelessScope``): gradients flow to those tensors, and
what the forward pass writes (batch-norm moving statistics, seed generators) is discarded, so
the caller's model is never modified. Inside :func:`scoring_mode` every layer computes in
float32 (whatever its mixed-precision policy) and Keras' moments keep the gradient through
the mean in the variance, so second derivatives are exact through training-mode batch norm
(stock ``tf.nn.moments`` puts a ``stop_gradient`` there: right first derivatives, Hg off by
up to a few percent). A Hessian is never materialised: ``Hg = ∇θ (stop_gradient(g) · ∇θ L)``.

tf_keras models (the tfmot path) have no stateless scope: :func:`bind` sets their variables
for scoring and restores every one bit for bit afterwards, and routes their batch norms
through the same exact moments (unfused) for the duration.
"""
from __future__ import annotations

import contextlib
import numbers
import threading
import weakref
from typing import Any, Callable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from grasp_tf.prunable import iter_layers

Tensors = list[tf.Tensor]


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
    from keras.src.backend.tensorflow import nn as backend_nn

    global _patch_depth, _stock_moments
    with _patch_lock:
        if _patch_depth == 0:
            _stock_moments = (backend_nn._compute_moments, backend_nn._compute_moments_sync)
            backend_nn._compute_moments = _exact_moments
            backend_nn._compute_moments_sync = _exact_moments
        _patch_depth += 1
    try:
        yield
    finally:
        with _patch_lock:
            _patch_depth -= 1
            if _patch_depth == 0:
                backend_nn._compute_moments, backend_nn._compute_moments_sync = _stock_moments


def is_keras3(model: Any) -> bool:
    """True for a Keras 3 model, False for a tf_keras (legacy Keras 2) one."""
    return isinstance(model, keras.Layer)


@contextlib.contextmanager
def compute_dtype(model: Any, dtype: str = "float32") -> Iterator[None]:
    """Every layer of ``model`` computes in ``dtype`` (e.g. float32 under mixed_float16), then restore."""
    keras3 = is_keras3(model)
    saved = []
    for layer in [model, *iter_layers(model)]:
        current = getattr(layer, "_dtype_policy", None)
        if current is None or getattr(current, "quantization_mode", None) is not None:
            continue
        if current.compute_dtype != dtype or current.variable_dtype != dtype:
            saved.append((layer, current))
            if keras3:
                layer._dtype_policy = keras.dtype_policies.get(dtype)
            else:
                layer._set_dtype_policy(dtype)
    try:
        yield
    finally:
        for layer, current in saved:
            if keras3:
                layer._dtype_policy = current
            else:
                layer._set_dtype_policy(current)


def _legacy_exact_moments(inputs: tf.Tensor, reduction_axes: Any, keep_dims: bool,
                          mask: Any = None) -> tuple[tf.Tensor, tf.Tensor]:
    """tf_keras ``BatchNormalization._moments`` with the exact variance."""
    if mask is not None:
        raise ValueError("Scoring a tf_keras model does not support masked batch normalization.")
    return _exact_moments(inputs, reduction_axes, keep_dims)


@contextlib.contextmanager
def _legacy_exact_batchnorm(model: Any) -> Iterator[None]:
    """tf_keras batch norms compute exact (unfused) moments for the duration, then are restored."""
    patched = []
    for layer in iter_layers(model):
        if any(c.__name__ == "BatchNormalization" for c in type(layer).__mro__) and hasattr(layer, "fused"):
            patched.append((layer, layer.fused, "_moments" in layer.__dict__))
            layer.fused = False
            object.__setattr__(layer, "_moments", _legacy_exact_moments)
    try:
        yield
    finally:
        for layer, fused, had_own in patched:
            layer.fused = fused
            if not had_own:
                object.__delattr__(layer, "_moments")


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
    exact = exact_moments() if is_keras3(model) else _legacy_exact_batchnorm(model)
    with exact, compute_dtype(model, "float32"), _no_constant_folding():
        yield


def _float32_snapshot(variable: Any) -> tf.Tensor:
    """A copy of a variable's value, floats as float32."""
    value = np.array(variable)
    if np.issubdtype(value.dtype, np.floating):
        value = value.astype(np.float32)
    return tf.constant(value)


class ModelFunction:
    """A Keras model as a pure function ``logits = f(params, x)`` of its scored weights.

    ``params`` replace the scored variables; every other variable of the model reads the
    snapshot in ``state`` (taken at construction, or given in ``replace``). Get one from
    :func:`bind`. Softmax/sigmoid outputs are undone (Keras' ``_keras_logits``).
    """

    def __init__(self, model: Any, scored: Sequence[Any],
                 replace: Sequence[tuple[Any, np.ndarray]] = ()) -> None:
        self.model = model
        self.scored = list(scored)
        scored_ids = {id(v) for v in self.scored}
        self.others = [v for v in model.variables if id(v) not in scored_ids]
        replaced = {id(v): np.asarray(a) for v, a in replace}
        value = lambda v: (tf.constant(replaced[id(v)].astype(np.float32)) if id(v) in replaced
                           else _float32_snapshot(v))
        self.params: Tensors = [value(v) for v in self.scored]
        self.state: Tensors = [value(v) for v in self.others]

    def params_at(self, values: Sequence[Any]) -> list[Any]:
        """Parameters holding ``values`` (for scoring the model at other weights)."""
        return [tf.convert_to_tensor(v, tf.float32) for v in values]

    def logits(self, params: Sequence[tf.Tensor], x: tf.Tensor, *, training: bool) -> tf.Tensor:
        """The model's pre-activation output on ``x`` with the scored weights set to ``params``."""
        return self.logits_at(params, self.state, x, training=training)

    def logits_at(self, params: Sequence[tf.Tensor], state: Sequence[tf.Tensor], x: tf.Tensor, *,
                  training: bool) -> tf.Tensor:
        """:meth:`logits` with the other variables read from ``state`` instead of the snapshot."""
        return stateless_logits(self.model, [*self.scored, *self.others], [*params, *state], x, training=training)


class LegacyModelFunction:
    """:class:`ModelFunction` for a tf_keras model: ``params`` are its variables, set in place.

    Only valid inside :func:`bind`, which restores every variable on exit.
    """

    def __init__(self, model: Any, scored: Sequence[Any],
                 replace: Sequence[tuple[Any, np.ndarray]] = ()) -> None:
        self.model = model
        self.params: list[Any] = list(scored)
        for variable, value in replace:
            variable.assign(np.asarray(value, dtype=variable.dtype.as_numpy_dtype))

    def params_at(self, values: Sequence[Any]) -> list[Any]:
        """The scored variables, assigned ``values``."""
        for variable, value in zip(self.params, values):
            variable.assign(value)
        return self.params

    def logits(self, params: Sequence[Any], x: tf.Tensor, *, training: bool) -> tf.Tensor:
        """The model's pre-activation output on ``x`` (``params`` are the variables it reads)."""
        return _logits(self.model(x, training=training))


def stateless_logits(model: Any, variables: Sequence[Any], values: Sequence[tf.Tensor], x: tf.Tensor, *,
                     training: bool) -> tf.Tensor:
    """The float32 logits of a Keras 3 ``model`` on ``x`` with ``variables`` reading ``values``."""
    with keras.StatelessScope(state_mapping=list(zip(variables, values))):
        return _logits(model(x, training=training))


def _logits(out: Any) -> tf.Tensor:
    """The float32 logits behind a model output (the input of a final softmax/sigmoid)."""
    if not tf.is_tensor(out):
        raise ValueError(f"Scoring needs a model with a single output tensor, got {type(out).__name__}.")
    return tf.cast(getattr(out, "_keras_logits", out), tf.float32)


@contextlib.contextmanager
def bind(model: Any, scored: Sequence[Any],
         replace: Sequence[tuple[Any, np.ndarray]] = ()) -> Iterator[ModelFunction | LegacyModelFunction]:
    """The model as a function of ``scored``, in :func:`scoring_mode`; the model is untouched after.

    ``replace`` gives other values to some variables (scored or not) for the scoring only.
    """
    with scoring_mode(model):
        if is_keras3(model):
            yield ModelFunction(model, scored, replace)
            return
        saved = [(v, v.numpy()) for v in model.variables]
        try:
            yield LegacyModelFunction(model, scored, replace)
        finally:
            for variable, value in saved:
                variable.assign(value)


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


class _Compiled:
    """The traced functions of one model's scoring loss; params and state are inputs, so calls reuse them.

    Holds the model weakly (the cache is keyed on it). Traced at the first call of each
    input shape, which happens inside :func:`bind` (tracing reads the scoring mode).
    """

    def __init__(self, function: ModelFunction, temperature: float) -> None:
        self._model = weakref.ref(function.model)
        self._variables = [*function.scored, *function.others]
        self.temperature = temperature
        self.gradient = tf.function(self._gradient, reduce_retracing=True, autograph=False)
        self.hessian_vector_product = tf.function(self._hvp, reduce_retracing=True, autograph=False)
        self.gradient_and_hessian_gradient = tf.function(self._fused, reduce_retracing=True, autograph=False)

    def _loss(self, state: Tensors, x: tf.Tensor, y: tf.Tensor,
              weight: tf.Tensor) -> Callable[[Tensors], tf.Tensor]:
        model = self._model()
        return lambda p: weight * cross_entropy(
            stateless_logits(model, self._variables, [*p, *state], x, training=True), y, self.temperature)

    def _gradient(self, params: Tensors, state: Tensors, x: tf.Tensor, y: tf.Tensor, weight: tf.Tensor):
        return gradient(self._loss(state, x, y, weight), params)

    def _hvp(self, params: Tensors, state: Tensors, x: tf.Tensor, y: tf.Tensor, weight: tf.Tensor,
             vector: Tensors):
        return hessian_vector_product(self._loss(state, x, y, weight), params, vector)

    def _fused(self, params: Tensors, state: Tensors, xs: Tensors, ys: Tensors, weights: Tensors):
        # self.gradient is itself a tf.function: traced once for all chunks of one shape.
        return gradient_and_hessian_gradient(
            [lambda p, x=x, y=y, w=w: self.gradient(p, state, x, y, w) for x, y, w in zip(xs, ys, weights)],
            params)


_compiled_cache: "weakref.WeakKeyDictionary[Any, dict[tuple, _Compiled]]" = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def _compiled(function: ModelFunction, temperature: float) -> _Compiled:
    """The model's :class:`_Compiled` for these scored/other variables and temperature (made once)."""
    key = (tuple(id(v) for v in function.scored), tuple(id(v) for v in function.others), temperature)
    with _cache_lock:
        per_model = _compiled_cache.setdefault(function.model, {})
        if key not in per_model:
            per_model[key] = _Compiled(function, temperature)
        return per_model[key]


class ChunkLoss:
    """Compiled gradient and Hg of ``weight · CE(logits / T)`` on one chunk, in training mode.

    ``weight`` lets a chunk's mean loss be summed from smaller pieces (``chunk_size``).
    Build and call it inside :func:`bind` (tracing reads the layers' state). For a Keras 3
    model the traced functions are cached on the model (keyed weakly): later scorings of
    the same model with the same temperature do not trace again.
    """

    def __init__(self, function: ModelFunction | LegacyModelFunction, temperature: float) -> None:
        if not (isinstance(temperature, numbers.Real) and np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {temperature!r}.")
        self.function = function
        self.temperature = float(temperature)
        if isinstance(function, ModelFunction):
            compiled, state = _compiled(function, self.temperature), function.state
            self.gradient = lambda params, x, y, weight: compiled.gradient(params, state, x, y, weight)
            self.hessian_vector_product = lambda params, x, y, weight, vector: compiled.hessian_vector_product(
                params, state, x, y, weight, vector)
            self.gradient_and_hessian_gradient = lambda params, xs, ys, weights: (
                compiled.gradient_and_hessian_gradient(params, state, xs, ys, weights))
        else:
            self.gradient = tf.function(self._gradient, reduce_retracing=True)
            self.hessian_vector_product = tf.function(self._hvp, reduce_retracing=True)
            self.gradient_and_hessian_gradient = tf.function(self._fused, reduce_retracing=True)

    def _loss(self, x: tf.Tensor, y: tf.Tensor, weight: tf.Tensor) -> Callable[[Tensors], tf.Tensor]:
        return lambda p: weight * cross_entropy(
            self.function.logits(p, x, training=True), y, self.temperature)

    def _gradient(self, params: Tensors, x: tf.Tensor, y: tf.Tensor, weight: tf.Tensor):
        return gradient(self._loss(x, y, weight), params)

    def _hvp(self, params: Tensors, x: tf.Tensor, y: tf.Tensor, weight: tf.Tensor, vector: Tensors):
        return hessian_vector_product(self._loss(x, y, weight), params, vector)

    def _fused(self, params: Tensors, xs: Tensors, ys: Tensors, weights: Tensors):
        return gradient_and_hessian_gradient(
            [lambda p, x=x, y=y, w=w: self._gradient(p, x, y, w) for x, y, w in zip(xs, ys, weights)], params)


def output_width(model: Any, x: np.ndarray) -> int:
    """Width of the model's (single) output, i.e. its number of classes, from a one-example forward."""
    with scoring_mode(model), (keras.StatelessScope() if is_keras3(model) else contextlib.nullcontext()):
        out = model(x[:1], training=False)
    if not tf.is_tensor(out) or len(out.shape) != 2:
        raise ValueError(
            "Scoring needs a classifier with one output of shape (batch, classes); got "
            f"{tf.nest.map_structure(lambda t: tuple(t.shape), out)}.")
    return int(out.shape[-1])
