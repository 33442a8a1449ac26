"""A Keras model as a pure function of its scored weights (:func:`bind`), leaving the model untouched.

A Keras 3 model is read through :class:`ModelFunction`: every variable takes its value from
tensors given to it (``keras.StatelessScope``), so gradients flow to those tensors and what
the forward pass writes (batch-norm moving statistics, seed generators) is discarded.
tf_keras models have no stateless scope: :func:`bind` sets their variables for scoring and
restores every one bit for bit afterwards (:class:`LegacyModelFunction`).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from grasp_tf import _keras_internals
from grasp_tf.hessian.autodiff import Tensors
from grasp_tf.hessian.patches import scoring_mode
from grasp_tf.prunable import is_tf_keras


def _float32_snapshot(variable: Any) -> tf.Tensor:
    """A copy of a variable's value, floats as float32."""
    value = np.array(variable.numpy())  # np.array(variable) is deprecated in NumPy 2 (no copy= in its __array__)
    if np.issubdtype(value.dtype, np.floating):
        value = value.astype(np.float32)
    return tf.constant(value)


class ModelFunction:
    """A Keras 3 model as a pure function ``logits = f(params, x)`` of its scored weights.

    ``params`` replace the scored variables; every other variable of the model reads the
    snapshot in ``state`` (taken at construction, or given in ``replace``). Get one from
    :func:`bind`. Softmax/sigmoid outputs are undone (to the logits Keras keeps beside them).
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
        return stateless_logits(self.model, [*self.scored, *self.others], [*params, *self.state], x,
                                training=training)


class LegacyModelFunction:
    """:class:`ModelFunction` for a tf_keras model: ``params`` are its variables, set in place.

    Only valid inside :func:`bind`, which restores every variable on exit. ``state`` is empty:
    the other variables are read where they are.
    """

    def __init__(self, model: Any, scored: Sequence[Any],
                 replace: Sequence[tuple[Any, np.ndarray]] = ()) -> None:
        self.model = model
        self.params: list[Any] = list(scored)
        self.state: Tensors = []
        for variable, value in replace:
            variable.assign(np.asarray(value, dtype=variable.dtype.as_numpy_dtype))

    def params_at(self, values: Sequence[Any]) -> list[Any]:
        """The scored variables, assigned ``values``."""
        for variable, value in zip(self.params, values):
            variable.assign(value)
        return self.params

    def logits(self, params: Sequence[Any], x: tf.Tensor, *, training: bool) -> tf.Tensor:
        """The model's pre-activation output on ``x`` (``params`` are the variables it reads)."""
        return logits_of(self.model(x, training=training))


def stateless_logits(model: Any, variables: Sequence[Any], values: Sequence[tf.Tensor], x: tf.Tensor, *,
                     training: bool) -> tf.Tensor:
    """The float32 logits of a Keras 3 ``model`` on ``x`` with ``variables`` reading ``values``."""
    with keras.StatelessScope(state_mapping=list(zip(variables, values))):
        return logits_of(model(x, training=training))


def logits_of(out: Any) -> tf.Tensor:
    """The float32 logits behind a model output (the input of a final softmax/sigmoid)."""
    if not tf.is_tensor(out):
        raise ValueError(f"Scoring needs a model with a single output tensor, got {type(out).__name__}.")
    return tf.cast(_keras_internals.keras_logits(out), tf.float32)


@contextlib.contextmanager
def bind(model: Any, scored: Sequence[Any],
         replace: Sequence[tuple[Any, np.ndarray]] = ()) -> Iterator[ModelFunction | LegacyModelFunction]:
    """The model as a function of ``scored``, in :func:`scoring_mode`; the model is untouched after.

    ``replace`` gives other values to some variables (scored or not) for the scoring only.
    """
    with scoring_mode(model):
        if not is_tf_keras(model):
            yield ModelFunction(model, scored, replace)
            return
        saved = [(v, v.numpy()) for v in model.variables]
        try:
            yield LegacyModelFunction(model, scored, replace)
        finally:
            for variable, value in saved:
                variable.assign(value)


def output_width(model: Any, x: np.ndarray) -> int:
    """Width of the model's (single) output, i.e. its number of classes, from a one-example forward."""
    keras3 = not is_tf_keras(model)
    with scoring_mode(model), (keras.StatelessScope() if keras3 else contextlib.nullcontext()):
        out = model(x[:1], training=False)
    if not tf.is_tensor(out) or len(out.shape) != 2:
        raise ValueError(
            "Scoring needs a classifier with one output of shape (batch, classes); got "
            f"{tf.nest.map_structure(lambda t: tuple(t.shape), out)}.")
    return int(out.shape[-1])
