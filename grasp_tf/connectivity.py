"""What a mask leaves connected: FLOP-weighted density, effective sparsity and dead channels, per weight and global.

* **MACs** (multiply-adds per example at the model's input size) are counted for convolution
  and Dense kernels only (``KINDS``; biases, BatchNorm, pooling and additions are not): a conv
  or depthwise kernel weight costs one MAC per output position, a transposed-conv weight one
  per input position, a Dense weight one per example (per position of a rank>2 input).
  ``flop_density`` is kept MACs over dense MACs. Shapes come from the layer's node in a
  functional or Sequential model; a layer never called symbolically or called several times
  (subclassed models, shared layers) has no known shape and gives None.
* **Effective** weights (Vysogorets & Kempe, JMLR 2023, "Connectivity matters"): a kept weight
  counts only if it lies on a path from an input to an output of the masked network, for
  convolutions at the level of channels (a kernel slice ``[..., c_in, c_out]`` with any kept
  entry connects ``c_in`` to ``c_out``). Computed on the model itself: every kernel slice is
  replaced by its keep indicator, averaged over each output channel's kept inputs (so values
  neither overflow nor vanish with depth), biases and BatchNorm means set to 0, BatchNorm
  scales and variances to 1; the network runs in float64 in inference mode on an input of
  ``INPUT_VALUE`` everywhere, and a kept slice is effective iff the derivative of log(sum of
  the logits) with respect to it is > 0 (SynFlow's path flow with θ = mask, as a share).
  This needs layers that map positive inputs to positive outputs with positive slope and 0 to
  0 (ReLU, pooling, additions, concatenation, flatten, BatchNorm in inference); when the
  model has a centring layer (``CENTRING``), the unpruned network fails that check, or the
  model has no declared input size (subclassed, unbuilt) or is a tf_keras model, the
  effective fields are None and ``connectivity_note`` says why.
* **Dead channels**: output channels (conv) or units (Dense) whose kernel slice keeps no
  weight; ``effectively_dead_channels`` the same from the effective mask.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from grasp_tf import _keras_internals
from grasp_tf.hessian.patches import compute_dtype
from grasp_tf.keys import is_tf_keras, is_wrapper, weight_name

# Most-derived class name -> {weight attribute: kind}. Kinds: "conv" (spatial..., in, out),
# "transpose" (spatial..., out, in), "depthwise" (spatial..., in, multiplier), "dense" (in, out).
KINDS: dict[str, dict[str, str]] = {
    **{f"DepthwiseConv{d}D": {"depthwise_kernel": "depthwise", "kernel": "depthwise"} for d in (1, 2)},  # tf_keras, 3
    **{f"SeparableConv{d}D": {"depthwise_kernel": "depthwise", "pointwise_kernel": "conv"} for d in (1, 2)},
    **{f"Conv{d}DTranspose": {"kernel": "transpose"} for d in (1, 2, 3)},
    **{f"Conv{d}D": {"kernel": "conv"} for d in (1, 2, 3)},
    "Dense": {"kernel": "dense"},
}
_ZERO = {"bias", "beta", "moving_mean", "mean"}
_ONE = {"gamma", "moving_variance", "variance"}
INPUT_VALUE = 2.0 ** -12  # small: capped activations (ReLU6, hard-swish) never saturate, even after many adds
NO_INPUT_SIZE = ("a model with a declared input size (functional or Sequential built on keras.Input); "
                 "subclassed or unbuilt models get None")


def kind_of(layer: Any, variable: Any) -> str | None:
    """``variable``'s kind in ``KINDS`` (by class name, Keras 3 or tf_keras), or None for any other weight."""
    for cls in type(layer).__mro__:
        if cls.__name__ in KINDS:
            return next((k for attr, k in KINDS[cls.__name__].items() if getattr(layer, attr, None) is variable),
                        None)
    return None


def _out_axes(kind: str, rank: int) -> tuple[int, ...]:
    """The axes indexing a kernel's output channels."""
    return {"transpose": (rank - 2,), "depthwise": (rank - 2, rank - 1)}.get(kind, (rank - 1,))


def _slices(kind: str | None, keep: np.ndarray) -> np.ndarray:
    """The channel-level keep indicator (any kept entry over the spatial axes), or ``keep`` itself."""
    return keep.any(axis=tuple(range(keep.ndim - 2))) if kind in ("conv", "transpose", "depthwise") else keep


def _connection_value(kind: str | None, keep: np.ndarray) -> np.ndarray:
    """The |mask| network's weight: each output channel averages its kept input channels."""
    if kind is None and keep.ndim < 2:
        return keep.astype(np.float64)
    spatial = keep.shape[:-2] if kind in ("conv", "transpose", "depthwise") else ()
    s = _slices(kind, keep).astype(np.float64)
    if kind == "transpose":
        s = s / np.maximum(1.0, s.sum(axis=1, keepdims=True))
    elif kind != "depthwise":
        s = s / np.maximum(1.0, s.sum(axis=tuple(range(s.ndim - 1)), keepdims=True))
    return np.broadcast_to(s / max(1, math.prod(spatial)), keep.shape)


def _other_value(variable: Any) -> np.ndarray:
    """An unmasked non-kernel variable in the |mask| network: biases 0, scales 1, other weights averaging."""
    shape, name = tuple(variable.shape), weight_name(variable)
    if name in _ZERO:
        return np.zeros(shape)
    if name in _ONE or len(shape) < 2:
        return np.ones(shape)
    return np.full(shape, 1.0 / max(1, math.prod(shape[:-1])))


class _NotPositive(ValueError):
    """The |mask| network's output is not a positive number (``flow``)."""

    def __init__(self, flow: float) -> None:
        super().__init__(f"the |mask| network's output is {flow!r}")
        self.flow = flow


POSITIVE = ("effective sparsity needs layers that keep positive values positive (not LayerNormalization, "
            "nor an input offset such as Rescaling(offset=-1))")
CENTRING = {"LayerNormalization", "GroupNormalization", "UnitNormalization", "RMSNormalization", "MultiHeadAttention"}


def _constant_inputs(model: Any) -> list[tf.Tensor] | None:
    """One example per declared model input, ``INPUT_VALUE`` everywhere (ones if integer); None if a size is unknown."""
    try:
        inputs = list(model.inputs or [])
    except (AttributeError, ValueError, TypeError):
        return None
    if not inputs or any(d is None for t in inputs for d in t.shape[1:]):
        return None
    return [tf.fill((1, *t.shape[1:]), tf.constant(INPUT_VALUE, tf.float64)) if tf.as_dtype(t.dtype).is_floating
            else tf.ones((1, *t.shape[1:]), t.dtype) for t in inputs]


def _path_flow(model: Any, x: list[tf.Tensor], values: dict[int, np.ndarray], scored: Sequence[Any]
               ) -> list[np.ndarray]:
    """d log(sum of logits)/d(value) of each ``scored`` variable, with every float variable set from ``values``."""
    float_vars = [v for v in model.variables if tf.as_dtype(v.dtype).is_floating]
    tensors = {id(v): tf.constant(values[id(v)] if id(v) in values else _other_value(v), tf.float32)
               for v in float_vars}
    watched = [tensors[id(v)] for v in scored]
    with compute_dtype(model, "float64"), tf.GradientTape() as tape:
        tape.watch(watched)
        with keras.StatelessScope(state_mapping=[(v, tensors[id(v)]) for v in float_vars]), \
                _keras_internals.autocast_scope("float64"):
            out = model(x if len(x) > 1 else x[0], training=False)
        flow = tf.add_n([tf.reduce_sum(tf.cast(_keras_internals.keras_logits(o), tf.float64))
                         for o in tf.nest.flatten(out)])
        if not np.isfinite(float(flow)) or float(flow) <= 0:
            raise _NotPositive(float(flow))
        log_flow = tf.math.log(flow)  # d log(flow)/d value = each weight's share of the flow: no float32 underflow
    return [np.asarray(g if g is not None else np.zeros(v.shape), np.float64)
            for g, v in zip(tape.gradient(log_flow, watched), scored)]


def _effective(model: Any, items: list[tuple[str, Any, Any, np.ndarray]]) -> tuple[dict[str, np.ndarray] | None,
                                                                                       str | None]:
    """Effective keep-masks by key, or (None, why not)."""
    if is_tf_keras(model):
        return None, "effective sparsity is computed for Keras 3 models only"
    x = _constant_inputs(model)
    if x is None:
        return None, "effective sparsity needs " + NO_INPUT_SIZE
    centring = sorted({type(layer).__name__ for layer in _keras_internals.flatten_layers(model)} & CENTRING)
    if centring:
        return None, f"{POSITIVE}; this model has {', '.join(centring)}"
    base: dict[int, np.ndarray] = {}
    for layer in _keras_internals.flatten_layers(model):
        for variable in _keras_internals.own_variables(layer):
            if tf.as_dtype(variable.dtype).is_floating:
                base[id(variable)] = _other_value(variable)
        if is_wrapper(layer):  # the wrapper multiplies by its mask: let the values below through
            for _, mask, _ in getattr(layer, "pruning_vars", []):
                base[id(mask)] = np.ones(tuple(mask.shape))
    scored = [var for _, _, var, _ in items]

    def run(keeps: list[np.ndarray]) -> list[np.ndarray]:
        values = dict(base)
        for (_, layer, var, _), keep in zip(items, keeps):
            values[id(var)] = _connection_value(kind_of(layer, var), keep) if keep.ndim >= 2 or \
                weight_name(var) not in _ZERO else np.zeros(keep.shape)
        grads = _path_flow(model, x, values, scored)
        out = []
        for (_, layer, var, _), keep, g in zip(items, keeps, grads):
            kind = kind_of(layer, var)
            if kind in ("conv", "transpose", "depthwise"):
                live = _slices(kind, keep) & (g.sum(axis=tuple(range(g.ndim - 2))) > 0)
                out.append(keep & np.broadcast_to(live, keep.shape))
            else:
                out.append(keep & (g > 0))
        return out

    try:
        try:
            effective = run([keep for *_, keep in items])
        except _NotPositive as e:
            if e.flow != 0.0:
                raise
            effective = None  # nothing reaches the output: no path at all, if the unpruned network passes
        if effective is None or any(e.sum() < k.sum() for e, (*_, k) in zip(effective, items)):
            dense = run([np.ones(k.shape, bool) for *_, k in items])
            if not all(d.all() for d in dense):
                return None, POSITIVE + "; here some weights of the unpruned network reach no output"
        if effective is None:
            effective = [np.zeros(k.shape, bool) for *_, k in items]
    except _NotPositive as e:
        return None, f"{POSITIVE}; {e}"
    except Exception as e:  # a report must not crash a finished training run
        return None, f"effective sparsity failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return {key: e for (key, *_), e in zip(items, effective)}, None


def _uses(layer: Any, graph_layer: Any, kind: str | None) -> int | None:
    """MACs one weight of ``kind`` costs per example, from the layer's symbolic input/output shapes."""
    if kind is None:
        return None
    try:
        shape_in, shape_out = tuple(graph_layer.input.shape), tuple(graph_layer.output.shape)
    except (AttributeError, ValueError, TypeError, RuntimeError):
        return None
    first = getattr(layer, "data_format", "channels_last") == "channels_first"
    spatial = lambda s: s[2:] if first else s[1:-1]
    dims = {"transpose": spatial(shape_in), "dense": shape_in[1:-1]}.get(kind, spatial(shape_out))
    return None if any(d is None for d in dims) else int(math.prod(dims))


def measure(model: Any, entries: Sequence[tuple[str, Any, Any]], masks: dict[str, np.ndarray]
            ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Connectivity fields per weight and global, for the weights ``sparsity_report`` covers.

    Args:
        model: the Keras model (pruned, stripped or dense).
        entries: ``(key, owning layer, variable)`` of every weight reported.
        masks: keep-masks by key; weights without one count as fully kept.

    Returns:
        ``(per_weight, global)``: ``per_weight[key]`` holds ``macs``, ``kept_macs``,
        ``effective_macs``, ``effective_kept``, ``channels``, ``dead_channels`` and
        ``effectively_dead_channels``; ``global`` their sums, ``flop_density``,
        ``effective_flop_density``, ``effective_kept_fraction``, ``effective_sparsity``,
        ``dead_channel_fraction`` and ``connectivity_note`` (None, or why a field is None).
    """
    graph = {id(layer.layer): layer for layer in _keras_internals.flatten_layers(model) if is_wrapper(layer)}
    items = [(key, layer, var, np.asarray(masks[key], bool) if key in masks else np.ones(tuple(var.shape), bool))
             for key, layer, var in entries]
    effective, note = _effective(model, items) if items else ({}, None)
    per: dict[str, dict[str, Any]] = {}
    for key, layer, var, keep in items:
        kind = kind_of(layer, var)
        uses = _uses(layer, graph.get(id(layer), layer), kind)
        eff = None if effective is None else effective[key]
        row: dict[str, Any] = {"effective_kept": None if eff is None else int(eff.sum()),
                               "channels": None, "dead_channels": None, "effectively_dead_channels": None}
        if kind is not None:
            axes = tuple(a for a in range(keep.ndim) if a not in _out_axes(kind, keep.ndim))
            row.update(channels=int(math.prod(keep.shape[a] for a in _out_axes(kind, keep.ndim))),
                       dead_channels=int((~keep.any(axis=axes)).sum()),
                       effectively_dead_channels=None if eff is None else int((~eff.any(axis=axes)).sum()))
        row.update(macs=None if uses is None else uses * keep.size,
                   kept_macs=None if uses is None else uses * int(keep.sum()),
                   effective_macs=None if uses is None or eff is None else uses * int(eff.sum()))
        per[key] = row
    return per, _totals(per, items, note)


def _totals(per: dict[str, dict[str, Any]], items: list, note: str | None) -> dict[str, Any]:
    """Global sums and fractions; a sum over a field some weight lacks is None."""
    def total(field: str, rows: Sequence[dict[str, Any]]) -> int | None:
        vals = [r[field] for r in rows]
        return None if any(v is None for v in vals) else sum(vals)

    rows = list(per.values())
    kernels = [per[k] for k, layer, var, _ in items if kind_of(layer, var) is not None]
    size = sum(keep.size for *_, keep in items)
    macs, kept_macs, eff_macs = (total(f, kernels) for f in ("macs", "kept_macs", "effective_macs"))
    eff_kept = total("effective_kept", rows)
    channels, dead, eff_dead = (total(f, kernels) for f in ("channels", "dead_channels", "effectively_dead_channels"))
    if kernels and macs is None:
        note = "; ".join(filter(None, [note, "MACs need " + NO_INPUT_SIZE + ", and layers called once"]))
    ratio = lambda a, b: None if a is None or not b else a / b
    return {"macs": macs, "kept_macs": kept_macs, "flop_density": ratio(kept_macs, macs),
            "effective_macs": eff_macs, "effective_flop_density": ratio(eff_macs, macs),
            "effective_kept": eff_kept, "effective_kept_fraction": ratio(eff_kept, size),
            "effective_sparsity": None if eff_kept is None or not size else 1.0 - eff_kept / size,
            "channels": channels, "dead_channels": dead, "dead_channel_fraction": ratio(dead, channels),
            "effectively_dead_channels": eff_dead, "effectively_dead_channel_fraction": ratio(eff_dead, channels),
            "connectivity_note": note}
