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

from grasp_tf import cloning, keys
from grasp_tf import _keras_internals
from grasp_tf.reports import get_masks
from grasp_tf.wrappers import FixedMaskWrapper, MaskConstraint


def _strategy_scope(model: Any) -> Any:
    """The model's tf.distribute strategy scope, so a clone's variables are created alike."""
    if tf.distribute.has_strategy() or not hasattr(model, "distribute_strategy"):
        return contextlib.nullcontext()
    return model.distribute_strategy.scope()


def _mask_in_place(model: Any, masks: Mapping[str, np.ndarray], owners: Mapping[str, keys.Owner]) -> None:
    """Set masks on ``model``'s own variables: a wrapper's mask if wrapped, else a constraint."""
    wrapped = {id(l.layer): l for l in _keras_internals.flatten_layers(model) if isinstance(l, FixedMaskWrapper)}
    for key, mask in masks.items():
        layer, var = owners[key]
        wrapper = wrapped.get(id(layer))
        slot = [m for w, m, _ in wrapper.pruning_vars if w is var] if wrapper is not None else []
        if slot:
            slot[0].assign(mask.astype(slot[0].dtype))
        else:
            previous = var.constraint
            if isinstance(previous, MaskConstraint):
                previous = previous.previous
            var.constraint = MaskConstraint(mask, previous)
        var.assign(var * mask.astype(var.dtype))


def _wrap(layer: Any, layer_masks: cloning.LayerMasks) -> FixedMaskWrapper:
    return FixedMaskWrapper(layer, masks=layer_masks)


def _clone(model: Any, masks: Mapping[str, np.ndarray], owners: Mapping[str, keys.Owner], wrap: bool) -> Any:
    """A new model like ``model`` with all weights copied and masked weights zeroed.

    ``wrap=True`` wraps the layers owning masked weights; ``wrap=False`` unwraps every wrapper.
    """
    with _strategy_scope(model):
        clone = cloning.clone(model, masks, owners, _wrap if wrap else None)
        if wrap:  # masked weights that cloning could not wrap (inside custom layers)
            clone_owners = {k: v for k, v in keys.owners(clone).items() if k in masks}
            wrapped = {id(l.layer) for l in _keras_internals.flatten_layers(clone) if isinstance(l, FixedMaskWrapper)}
            rest = {k: m for k, m in masks.items() if id(clone_owners[k][0]) not in wrapped}
            _mask_in_place(clone, rest, clone_owners)
    return clone


def apply_masks(model: Any, masks: Mapping[str, Any]) -> Any:
    """The Keras 3 ``model`` with ``masks`` applied (see the module docstring); masks already on it are kept."""
    checked, owners = keys.validate_masks(model, masks)
    if cloning.is_graph_model(model):
        return _clone(model, {**get_masks(model), **checked}, owners, wrap=True)
    _mask_in_place(model, checked, owners)
    return model


def strip_pruning(model: Any) -> Any:
    """The Keras 3 ``model`` with plain layers and its masks baked in as zeros (see the module docstring)."""
    masks = get_masks(model)
    owners = {k: v for k, v in keys.owners(model).items() if k in masks}
    if cloning.is_graph_model(model):
        return _clone(model, masks, owners, wrap=False)
    if any(isinstance(l, FixedMaskWrapper) for l in _keras_internals.flatten_layers(model)):
        raise ValueError(f"Model {model.name!r} is subclassed and holds FixedMaskWrapper layers; "
                         "they cannot be removed from its call(). Rebuild it without wrappers.")
    for key, mask in masks.items():
        var = owners[key][1]
        var.assign(var * mask.astype(var.dtype))
        var.constraint = var.constraint.previous
    return model
