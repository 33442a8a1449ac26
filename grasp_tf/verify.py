"""Checking that a stripped model or an export computes what the masked model computes, on a fixed probe batch.

``strip_pruning`` and both exports call :func:`outputs` on the masked model before they
rebuild anything and :func:`same_outputs` on the result before they return or write it:
a different network is an error, not a file. The probe is two examples drawn from a fixed
seed (floats from N(0, 1), integers 0), shaped by the model's input signature (unknown
non-batch dimensions become 32).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from grasp_tf import _keras_internals
from grasp_tf.keys import is_tf_keras

PROBE_BATCH = 2
UNKNOWN_DIM = 32
TOLERANCE = {"float64": 1e-4, "float32": 1e-4, "float16": 2e-2, "bfloat16": 5e-2}
"""Largest |Δ| allowed, relative to max(1, largest |output|), by the model's compute dtype."""


def _specs(model: Any) -> Any:
    """The model's input signature: a structure of ``tf.TensorSpec``."""
    if is_tf_keras(model):
        specs = [tf.TensorSpec(t.shape, t.dtype) for t in model.inputs]
        return [specs] if len(specs) > 1 else specs  # tf_keras takes several inputs as one list
    return _keras_internals.input_signature(model)


def probe(model: Any) -> list[Any] | None:
    """The probe inputs for ``model``, a list of positional arguments; None (with a warning) if none can be made."""
    rng = np.random.default_rng(0)

    def make(spec: tf.TensorSpec) -> np.ndarray:
        shape = [PROBE_BATCH if i == 0 else (d if d is not None else UNKNOWN_DIM)
                 for i, d in enumerate(spec.shape.as_list())]
        dtype = spec.dtype.as_numpy_dtype
        if spec.dtype.is_floating:
            return rng.standard_normal(shape).astype(dtype)
        if spec.dtype.is_integer or spec.dtype.is_bool:
            return np.zeros(shape, dtype)
        raise TypeError(f"inputs of dtype {spec.dtype.name}")

    try:
        return [tf.nest.map_structure(make, s) for s in _specs(model)]
    except (TypeError, ValueError, AttributeError) as e:
        warnings.warn(f"{getattr(model, 'name', 'the model')}: cannot build a probe input ({e}); the result is "
                      "not checked against the masked model.", stacklevel=3)
        return None


def outputs(call: Callable[..., Any], inputs: list[Any] | None) -> list[np.ndarray] | None:
    """``call(*inputs)``'s outputs as flat numpy arrays (None when there is no probe)."""
    if inputs is None:
        return None
    return [np.asarray(t) for t in tf.nest.flatten(call(*inputs))]


def reference(model: Any) -> tuple[list[Any] | None, list[np.ndarray] | None]:
    """The probe inputs and the (masked) ``model``'s inference outputs on them."""
    inputs = probe(model)
    try:
        return inputs, outputs(lambda *x: model(*x, training=False), inputs)
    except Exception as e:  # noqa: BLE001  (any failure: the probe does not fit this model, do not guess why)
        warnings.warn(f"{getattr(model, 'name', 'the model')}: cannot run on a probe input "
                      f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}); "
                      "the result is not checked against the masked model.", stacklevel=3)
        return None, None


def same_outputs(model: Any, expected: list[np.ndarray] | None, got: list[np.ndarray] | None, what: str) -> None:
    """Raise ``ValueError`` unless ``got`` matches ``expected`` within the model's dtype tolerance."""
    if expected is None or got is None:
        return
    tolerance = TOLERANCE.get(str(getattr(model, "compute_dtype", "float32")), 1e-4)
    if len(got) != len(expected) or any(np.shape(a) != np.shape(b) for a, b in zip(expected, got)):
        raise ValueError(f"{what} does not compute the masked model: its outputs have shapes "
                         f"{[np.shape(g) for g in got]}, the model's {[np.shape(e) for e in expected]}.")
    for e, g in zip(expected, got):
        e, g = e.astype(np.float64), g.astype(np.float64)
        finite = np.isfinite(e)
        scale = float(np.max(np.abs(e[finite]), initial=0.0))
        same_pattern = np.array_equal(finite, np.isfinite(g)) and np.array_equal(e[~finite], g[~finite])
        diff = float(np.max(np.abs(e - g)[finite], initial=0.0)) if same_pattern else float("inf")
        if not diff <= tolerance * max(1.0, scale):
            raise ValueError(f"{what} does not compute the masked model: max |Δ| {diff:.3g} on outputs of "
                             f"size {scale:.3g} (allowed {tolerance * max(1.0, scale):.2g}).")
