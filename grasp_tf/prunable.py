"""Which weights of a model are prunable, and the stable key each weight is known by.

A key is ``"<layer name>/<weight name>"`` (e.g. ``"conv2d_3/kernel"``), where the layer is
the innermost layer owning the weight. Keys are the same for a plain model, its wrapped
(pruned) clone and its stripped export, so masks and scores move freely between them.
Works for Keras 3 and tf_keras models alike (layers are matched by class name;
:func:`is_tf_keras` tells the two apart).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Union

from grasp_tf import _keras_internals

# Most-derived class name in a layer's MRO -> attributes holding its prunable weights.
DEFAULT_PRUNABLE: dict[str, tuple[str, ...]] = {
    "DepthwiseConv1D": ("depthwise_kernel",),
    "DepthwiseConv2D": ("depthwise_kernel",),
    "SeparableConv1D": ("depthwise_kernel", "pointwise_kernel"),
    "SeparableConv2D": ("depthwise_kernel", "pointwise_kernel"),
    "Conv1DTranspose": ("kernel",),
    "Conv2DTranspose": ("kernel",),
    "Conv3DTranspose": ("kernel",),
    "Conv1D": ("kernel",),
    "Conv2D": ("kernel",),
    "Conv3D": ("kernel",),
    "Dense": ("kernel",),
}

Prunable = Union[None, Callable[[Any, Any], bool], Iterable[str]]
"""``None`` (defaults), a predicate ``(layer, variable) -> bool``, or an explicit list of keys."""


@dataclass(frozen=True)
class PrunableWeight:
    """One prunable tensor: its key, the layer that owns it and the variable itself."""

    key: str
    layer: Any
    variable: Any


def weight_name(variable: Any) -> str:
    """The short name of a variable: ``kernel`` for both ``dense/kernel`` and ``dense/kernel:0``."""
    return variable.name.split("/")[-1].split(":")[0]


def is_wrapper(layer: Any) -> bool:
    """True for grasp_tf's fixed-mask wrapper and tfmot's PruneLowMagnitude (they own no kernels)."""
    return getattr(layer, "_grasp_tf_wrapper", False) or type(layer).__name__ == "PruneLowMagnitude"


def is_tf_keras(model: Any) -> bool:
    """True for a ``tf_keras`` (Keras 2) object, False for Keras 3; decided from its classes (imports nothing)."""
    return any(cls.__module__.split(".")[0] == "tf_keras" for cls in type(model).__mro__)


def _default_attrs(layer: Any) -> tuple[str, ...]:
    for cls in type(layer).__mro__:
        if cls.__name__ in DEFAULT_PRUNABLE:
            return DEFAULT_PRUNABLE[cls.__name__]
    return ()


def candidate_weights(layer: Any) -> list[tuple[str, Any]]:
    """(key, variable) pairs a layer offers for pruning by default.

    A layer's own ``get_prunable_weights()`` (the tfmot PrunableLayer convention) wins over
    the class table.
    """
    if hasattr(layer, "get_prunable_weights") and not is_wrapper(layer):
        return [(f"{layer.name}/{weight_name(v)}", v) for v in layer.get_prunable_weights()]
    out = []
    for attr in _default_attrs(layer):
        var = getattr(layer, attr, None)
        if var is not None:
            out.append((f"{layer.name}/{attr}", var))
    return out


def _all_weights(layer: Any) -> list[tuple[str, Any]]:
    return [(f"{layer.name}/{weight_name(v)}", v) for v in _keras_internals.own_variables(layer)]


def prunable_weights(model: Any, prunable: Prunable = None) -> list[PrunableWeight]:
    """The prunable weights of ``model`` in layer order, each variable once.

    ``prunable`` overrides the default choice: a predicate ``(layer, variable) -> bool``
    applied to every weight of every layer, or an explicit iterable of keys.
    Raises ``ValueError`` for unknown keys, duplicate keys, or when nothing is prunable.
    """
    if not getattr(model, "built", True):
        raise ValueError("The model is not built: call it on a batch or build it first.")
    layers = [l for l in _keras_internals.flatten_layers(model) if not is_wrapper(l)]
    wanted: set[str] | None = None
    if prunable is None:
        pool = [(l, k, v) for l in layers for k, v in candidate_weights(l)]
    elif callable(prunable):
        pool = [(l, k, v) for l in layers for k, v in _all_weights(l) if prunable(l, v)]
    else:
        wanted = set(prunable)
        pool = [(l, k, v) for l in layers for k, v in _all_weights(l) if k in wanted]
    out: list[PrunableWeight] = []
    seen_vars: set[int] = set()
    seen_keys: set[str] = set()
    for layer, key, var in pool:
        if id(var) in seen_vars:
            continue
        if key in seen_keys:
            raise ValueError(
                f"Two different weights share the key {key!r}: give the layers unique names.")
        seen_vars.add(id(var))
        seen_keys.add(key)
        out.append(PrunableWeight(key, layer, var))
    if wanted is not None and wanted - seen_keys:
        raise ValueError(
            f"Unknown prunable keys {sorted(wanted - seen_keys)}; the model has e.g. "
            f"{sorted(k for l in layers for k, _ in _all_weights(l))[:8]}.")
    if not out:
        raise ValueError(
            f"Model {getattr(model, 'name', model)!r} has no prunable weights (defaults: kernels "
            f"of {', '.join(sorted(DEFAULT_PRUNABLE))}); pass prunable= to choose some.")
    return out
