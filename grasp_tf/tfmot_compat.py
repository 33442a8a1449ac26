"""tf_keras models -> tensorflow-model-optimization's own ``PruneLowMagnitude`` with grasp_tf masks pinned.

Importing this module imports ``tensorflow_model_optimization``, which switches the process
to legacy Keras (``TF_USE_LEGACY_KERAS=1``). ``grasp_tf.api`` imports it only when it is
handed a ``tf_keras`` model, so ``import grasp_tf`` never does.

The pruned model is tfmot's: layers are wrapped with ``prune_low_magnitude`` and a
``PinnedMasks`` schedule that never re-prunes, the mask variables hold our masks and the
weights are zeroed. Train it with ``tfmot.sparsity.keras.UpdatePruningStep()`` as usual
(tfmot re-applies the mask before each forward pass and at each epoch end) and export with
``tfmot.sparsity.keras.strip_pruning``. To reload a saved wrapped model, import this module
and load inside ``tfmot.sparsity.keras.prune_scope()``.
"""
from __future__ import annotations

from typing import Any, Mapping

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from grasp_tf import _keras_internals, cloning, keys, verify
from grasp_tf.keys import weight_name


@tf_keras.utils.register_keras_serializable(package="grasp_tf")
class PinnedMasks(tfmot.sparsity.keras.PruningSchedule):
    """A pruning schedule that never updates the masks: they stay as grasp_tf set them.

    ``sparsity`` is informational only (the layer's pruned fraction).
    """

    def __init__(self, sparsity: float = 0.0):
        self.sparsity = float(sparsity)

    def __call__(self, step: Any) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.constant(False), tf.constant(self.sparsity, tf.float32)

    def get_config(self) -> dict[str, Any]:
        return {"class_name": "grasp_tf>PinnedMasks", "config": {"sparsity": self.sparsity}}


def _prune_low_magnitude(layer: Any, layer_masks: cloning.LayerMasks) -> Any:
    """``layer`` in tfmot's ``PruneLowMagnitude``, pruning exactly the weights ``layer_masks`` names."""
    layer.get_prunable_weights = lambda: [v for n in layer_masks for v in _keras_internals.own_variables(layer)
                                          if weight_name(v) == n]
    kept = sum(int(m.sum()) for m in layer_masks.values()) / sum(m.size for m in layer_masks.values())
    return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=PinnedMasks(1.0 - kept))


def apply_masks(model: Any, table: keys.WeightIndex, masks: Mapping[str, Any]) -> Any:
    """A clone of the tf_keras ``model`` (indexed by ``table``) in tfmot's ``PruneLowMagnitude``, ``masks`` pinned.

    Each layer owning a masked weight is wrapped so that exactly its masked weights are
    pruned (``get_prunable_weights`` is set on the cloned layer); all weights are copied and
    masked ones zeroed. The caller's model is untouched. ``masks`` are checked, keyed by
    ``table`` and include those already on ``model`` that stay. Only Sequential and
    functional models (what tfmot can wrap); raises ``ValueError`` otherwise.
    """
    if not cloning.is_graph_model(model):
        raise ValueError(f"tfmot wraps only Sequential and functional tf_keras models; "
                         f"{type(model).__name__} is subclassed. Use a Keras 3 model for in-place masking.")
    clone = cloning.clone(model, table, masks, _prune_low_magnitude)
    clone_table = keys.index(clone)
    if [e.key for e in clone_table.entries] != [e.key for e in table.entries]:
        raise ValueError(f"Cloning {model.name!r} changed its weights' keys; it cannot be masked by cloning.")
    for entry in clone_table.entries:
        if entry.mask_variable is not None:
            value = masks[entry.key].astype(entry.mask_variable.dtype.as_numpy_dtype)
            entry.mask_variable.assign(value)
            entry.variable.assign(entry.variable * value)
    return clone


def strip_pruning(model: Any) -> Any:
    """tfmot's ``strip_pruning`` after re-zeroing every wrapped weight, checked to compute the same outputs."""
    table = keys.index(model)
    for entry in table.entries:
        if entry.mask_variable is not None:
            entry.variable.assign(entry.variable * entry.mask_variable)
    inputs, expected = verify.reference(model) if cloning.is_graph_model(model) else (None, None)
    plain = tfmot.sparsity.keras.strip_pruning(model)
    verify.same_outputs(model, expected, verify.outputs(lambda *x: plain(*x, training=False), inputs),
                        f"strip_pruning({model.name!r})")
    return plain
