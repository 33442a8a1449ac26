"""Fixed keep-masks on and off Keras 3 models: graph models cloned and wrapped, subclassed ones masked in place.

* Sequential, functional and nested models are cloned (``grasp_tf.cloning``); each layer
  owning a masked weight is wrapped in ``FixedMaskWrapper``, every weight is copied and
  masked weights are zeroed. The caller's model is untouched. A masked weight owned by a
  sub-layer of a custom layer (which cloning cannot reach) is masked on the clone's variable
  with a ``MaskConstraint`` instead, as for subclassed models.
* Subclassed models cannot be cloned: their masked variables are zeroed in place and carry a
  ``MaskConstraint`` that re-applies the mask after every optimizer update, so the same
  (mutated) model is returned.

``grasp_tf.apply_masks`` / ``strip_pruning`` send tf_keras models to ``grasp_tf.tfmot_compat``
instead.
"""
from __future__ import annotations

import contextlib
from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from grasp_tf import _keras_internals, cloning, keys, verify
from grasp_tf.wrappers import FixedMaskWrapper, MaskConstraint


def _strategy_scope(model: Any) -> Any:
    """The model's tf.distribute strategy scope, so a clone's variables are created alike."""
    if tf.distribute.has_strategy() or not hasattr(model, "distribute_strategy"):
        return contextlib.nullcontext()
    return model.distribute_strategy.scope()


def _mask_in_place(table: keys.WeightIndex, masks: Mapping[str, np.ndarray]) -> None:
    """Set masks on the indexed model's own variables: a wrapper's mask if wrapped, else a constraint."""
    for key, mask in masks.items():
        entry = table.by_key[key]
        var = entry.variable
        if entry.mask_variable is not None:
            entry.mask_variable.assign(mask.astype(entry.mask_variable.dtype))
        else:
            previous = var.constraint
            if isinstance(previous, MaskConstraint):
                previous = previous.previous
            var.constraint = MaskConstraint(mask, previous)
        var.assign(var * mask.astype(var.dtype))


def _wrap(layer: Any, layer_masks: cloning.LayerMasks) -> FixedMaskWrapper:
    return FixedMaskWrapper(layer, masks=layer_masks)


def _clone(model: Any, table: keys.WeightIndex, masks: Mapping[str, np.ndarray], wrap: bool) -> Any:
    """A new model like ``model`` (indexed by ``table``) with all weights copied and masked weights zeroed.

    ``wrap=True`` wraps the layers owning masked weights; ``wrap=False`` unwraps every wrapper.
    """
    with _strategy_scope(model):
        clone = cloning.clone(model, table, masks, _wrap if wrap else None)
        if wrap:  # masked weights that cloning could not wrap (inside custom layers)
            clone_table = keys.index(clone)
            if [e.key for e in clone_table.entries] != [e.key for e in table.entries]:
                raise ValueError(f"Cloning {model.name!r} changed its weights' keys; it cannot be masked "
                                 "by cloning.")
            _mask_in_place(clone_table, {k: m for k, m in masks.items() if clone_table.by_key[k].wrapper is None})
    return clone


def apply_masks(model: Any, table: keys.WeightIndex, masks: Mapping[str, np.ndarray]) -> Any:
    """The Keras 3 ``model`` (indexed by ``table``) with checked ``masks`` applied (see the module docstring)."""
    if cloning.is_graph_model(model):
        return _clone(model, table, masks, wrap=True)
    _mask_in_place(table, masks)
    return model


def strip_pruning(model: Any) -> Any:
    """The Keras 3 ``model`` with plain layers and its masks baked in as zeros, checked to compute the same outputs."""
    table = keys.index(model)
    masks = table.masks()
    inputs, expected = verify.reference(model)
    if cloning.is_graph_model(model):
        plain = _clone(model, table, masks, wrap=False)
    elif any(isinstance(l, FixedMaskWrapper) for l in _keras_internals.flatten_layers(model)):
        raise ValueError(f"Model {model.name!r} is subclassed and holds FixedMaskWrapper layers; "
                         "they cannot be removed from its call(). Rebuild it without wrappers.")
    else:
        for key, mask in masks.items():
            var = table.by_key[key].variable
            var.assign(var * mask.astype(var.dtype))
            var.constraint = var.constraint.previous
        plain = model
    verify.same_outputs(model, expected, verify.outputs(lambda *x: plain(*x, training=False), inputs),
                        f"strip_pruning({model.name!r})")
    return plain
