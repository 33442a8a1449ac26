"""Which weights of a model are prunable, and the stable key each weight is known by.

A key is ``"<layer name>/<weight name>"`` (e.g. ``"conv2d_3/kernel"``), where the layer is
the innermost layer owning the weight, or the full layer path (``"outer/inner/dense/kernel"``)
for weights whose short keys would collide: ``grasp_tf.keys`` holds the one index and policy.
Keys are the same for a plain model, its wrapped (pruned) clone and its stripped export, so
masks and scores move freely between them. Works for Keras 3 and tf_keras models alike
(layers are matched by class name).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Union

from grasp_tf import keys
from grasp_tf.keys import is_tf_keras, is_wrapper, weight_name  # noqa: F401  (re-exported: their old home)

# Most-derived class name in a layer's MRO -> attributes holding its prunable weights.
DEFAULT_PRUNABLE: dict[str, tuple[str, ...]] = {
    "DepthwiseConv1D": ("depthwise_kernel", "kernel"),  # tf_keras names it depthwise_kernel, Keras 3 kernel
    "DepthwiseConv2D": ("depthwise_kernel", "kernel"),
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


def _default_attrs(layer: Any) -> tuple[str, ...]:
    for cls in type(layer).__mro__:
        if cls.__name__ in DEFAULT_PRUNABLE:
            return DEFAULT_PRUNABLE[cls.__name__]
    return ()


def default_prunable(layer: Any) -> list[Any]:
    """The variables a layer offers for pruning by default, in the layer's order.

    A layer's own ``get_prunable_weights()`` (the tfmot PrunableLayer convention) wins over
    the class table.
    """
    if hasattr(layer, "get_prunable_weights") and not is_wrapper(layer):
        return list(layer.get_prunable_weights())
    return [v for v in (getattr(layer, attr, None) for attr in _default_attrs(layer)) if v is not None]


def prunable_weights(model: Any, prunable: Prunable = None) -> list[PrunableWeight]:
    """The prunable weights of ``model`` in layer order, each variable once, keyed as ``grasp_tf.keys`` says.

    ``prunable`` overrides the default choice: a predicate ``(layer, variable) -> bool``
    applied to every weight of every layer, or an explicit iterable of keys.
    Raises ``ValueError`` for an unbuilt model, unknown or ambiguous keys, or when nothing is
    prunable.
    """
    table = keys.index(model)
    wanted: set[str] | None = None
    if prunable is None:
        pool = [table.of_variable(v) for layer in table.layers for v in default_prunable(layer)]
    elif callable(prunable):
        pool = [e for e in table.entries if prunable(e.layer, e.variable)]
    else:
        wanted = set(prunable)
        pool = [e for e in table.entries if e.key in wanted]
    out: list[PrunableWeight] = []
    seen: set[int] = set()
    for entry in pool:
        if entry is None or id(entry.variable) in seen:
            continue
        seen.add(id(entry.variable))
        out.append(PrunableWeight(table.key_of(entry.variable), entry.layer, entry.variable))
    if wanted is not None and wanted - {w.key for w in out}:
        raise ValueError(
            f"Unknown prunable keys {sorted(wanted - {w.key for w in out})}; the model has e.g. "
            f"{sorted(e.key for e in table.entries)[:8]}.")
    if not out:
        raise ValueError(
            f"Model {getattr(model, 'name', model)!r} has no prunable weights (defaults: kernels "
            f"of {', '.join(sorted(DEFAULT_PRUNABLE))}); pass prunable= to choose some.")
    return out
