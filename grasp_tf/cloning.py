"""One clone helper for Keras 3 and tf_keras graph models: chosen layers wrapped, every weight copied.

The one clone helper behind ``apply_masks`` / ``strip_pruning`` of both Keras flavours: each
layer is rebuilt from its config (a wrapper's from its inner layer's, so old wrappers are
dropped), a layer owning a masked weight is handed to a flavour-specific ``wrap`` function,
and every weight is copied into the clone with masked weights multiplied by their mask.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import keras
import numpy as np

from grasp_tf import _keras_internals
from grasp_tf.keys import WeightIndex, is_tf_keras, is_wrapper

LayerMasks = dict[str, np.ndarray]
"""Keep-masks of one layer's weights, by short weight name (``{"kernel": mask}``)."""

Wrap = Callable[[Any, LayerMasks], Any]
"""``wrap(new_layer, layer_masks) -> layer``: what a cloned layer owning masked weights becomes."""


def is_graph_model(model: Any) -> bool:
    """True for the Sequential and functional models (Keras 3 or tf_keras) that can be cloned layer by layer."""
    if is_tf_keras(model):
        import tf_keras

        return isinstance(model, tf_keras.Sequential) or _keras_internals.is_tf_keras_graph_network(model)
    return isinstance(model, keras.Sequential) or _keras_internals.is_functional(model)


def masks_by_layer(masks: Mapping[str, np.ndarray], table: WeightIndex) -> dict[int, LayerMasks]:
    """``masks`` (keyed as in ``table``) regrouped by owning layer: ``id(layer) -> {weight name: mask}``."""
    by_layer: dict[int, LayerMasks] = {}
    for key, mask in masks.items():
        entry = table.by_key[key]
        by_layer.setdefault(id(entry.layer), {})[entry.name] = mask
    return by_layer


def copy_weights(source: Any, target: Any, table: WeightIndex, masks: Mapping[str, np.ndarray]) -> None:
    """Copy every weight of ``source`` into its clone ``target``, multiplying masked ones by their mask.

    ``table`` is ``source``'s index and keys ``masks``. Layers are matched in depth-first
    order, wrappers and input layers (renamed by cloning) skipped; any mismatch is a ``ValueError``.
    """
    def layers(model: Any) -> list[Any]:
        return [l for l in _keras_internals.flatten_layers(model)
                if not is_wrapper(l) and type(l).__name__ != "InputLayer"]

    src, dst = layers(source), layers(target)
    pairs = list(zip(src, dst))
    if len(src) != len(dst) or any(a.name != b.name or type(a) is not type(b) for a, b in pairs):
        raise ValueError(f"Cloning {getattr(source, 'name', source)!r} did not reproduce its layers (a custom "
                         "layer may create sub-layers at call time), so its weights cannot be copied.")
    for a, b in pairs:
        va, vb = _keras_internals.own_variables(a), _keras_internals.own_variables(b)
        if [tuple(v.shape) for v in va] != [tuple(v.shape) for v in vb]:
            raise ValueError(f"Layer {a.name!r} has different weights in the clone.")
        for x, y in zip(va, vb):
            value = np.asarray(x.numpy())
            key = table.of_variable(x).key
            if key in masks:
                value = value * masks[key].astype(value.dtype)
            y.assign(value)


def clone(model: Any, table: WeightIndex, masks: Mapping[str, np.ndarray], wrap: Wrap | None) -> Any:
    """A new built model like the graph model ``model``, its weights copied and masked weights zeroed.

    Every layer owning a key of ``masks`` (keys of ``table``, ``model``'s index) is passed to
    ``wrap`` with its masks; ``wrap=None`` leaves every layer plain (wrappers
    removed). Nested models are cloned too. Keras 3 models are cloned with
    ``keras.models.clone_model``, tf_keras ones with ``tf_keras.models.clone_model``.
    """
    by_layer = masks_by_layer(masks, table)
    if is_tf_keras(model):
        import tf_keras

        def clone_model(m: Any) -> Any:  # tf_keras' clone_model does not recurse by itself
            return tf_keras.models.clone_model(m, clone_function=clone_layer)

        nested = lambda layer: isinstance(layer, tf_keras.Model)
    else:
        def clone_model(m: Any) -> Any:
            return keras.models.clone_model(m, clone_function=clone_layer, recursive=True)

        nested = lambda layer: False

    def clone_layer(layer: Any) -> Any:
        if nested(layer):
            return clone_model(layer)
        inner = layer.layer if is_wrapper(layer) else layer
        new = inner.__class__.from_config(inner.get_config())
        chosen = by_layer.get(id(inner))
        return new if chosen is None or wrap is None else wrap(new, chosen)

    new_model = clone_model(model)
    if not new_model.built:
        new_model.build(model.input_shape)
    copy_weights(model, new_model, table, masks)
    return new_model
