"""The public pipeline: model + data -> scores -> masks -> pruned model."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from grasp_tf import criteria, keras3_masks, masking
from grasp_tf.prunable import is_tf_keras


def compute_scores(model: Any, data: Any, method: str = "grasp", **opts: Any) -> dict[str, np.ndarray]:
    """One score array per prunable weight, keyed ``"<layer name>/<weight name>"``.

    Orientation is the method's own (``grasp_tf.criteria.get(method).remove_largest``):
    GraSP stores the reference's ``-θ ⊙ Hg`` and removes the largest; SNIP, magnitude,
    random and SynFlow remove the smallest. The model is left untouched.
    """
    return criteria.score(model, data, method, **opts)


def compute_masks(
    model: Any,
    data: Any,
    sparsity: float,
    method: str = "grasp",
    scope: str = "global",
    *,
    shuffle: bool = False,
    count_rule: str = "exact",
    seed: int | None = None,
    **opts: Any,
) -> dict[str, np.ndarray]:
    """Boolean keep-masks removing a ``sparsity`` fraction of the prunable weights.

    ``scope="global"`` ranks all weights together, ``"layerwise"`` prunes each tensor by
    the same fraction. ``shuffle=True`` permutes each mask within its tensor (the
    layerwise-shuffle ablation). ``count_rule`` is documented in ``grasp_tf.masking``.
    """
    (masks,) = criteria.masks(model, data, [sparsity], method, scope=scope, count_rule=count_rule, seed=seed,
                              **opts)
    if shuffle:
        masks = masking.shuffle_within_layers(masks, seed)
    return masks


def prune_model(
    model: Any,
    data: Any,
    sparsity: float,
    method: str = "grasp",
    scope: str = "global",
    **opts: Any,
) -> Any:
    """``model`` pruned at initialization: prunable layers wrapped with fixed masks, kernels zeroed.

    Functional and Sequential models come back as a new model (the caller's is untouched);
    subclassed models are masked in place; tf_keras models come back wrapped in tfmot's
    ``PruneLowMagnitude`` with the masks pinned. Keyword options go to ``compute_masks``.
    """
    masks = compute_masks(model, data, sparsity, method, scope, **opts)
    return apply_masks(model, masks)


def apply_masks(model: Any, masks: Mapping[str, Any]) -> Any:
    """``model`` with fixed keep-masks applied: masked weights zeroed and held at zero in training.

    Sequential / functional / nested models: returns a new model (layers owning masked weights
    wrapped in ``FixedMaskWrapper``, all weights copied); the caller's model is untouched.
    Subclassed models: masks their variables in place and returns the same model.
    tf_keras models: returns a clone wrapped in tfmot's ``PruneLowMagnitude`` with the masks
    pinned (see ``grasp_tf.tfmot_compat``). Masks already on the model are kept for keys
    ``masks`` does not name. Raises ``ValueError`` (model untouched) for unknown keys, wrong
    shapes or non-binary values.
    """
    if is_tf_keras(model):
        from grasp_tf import tfmot_compat  # imports tfmot, which switches the process to legacy Keras

        return tfmot_compat.apply_masks(model, masks)
    return keras3_masks.apply_masks(model, masks)


def strip_pruning(model: Any) -> Any:
    """``model`` with plain Keras layers and the masks baked in as zeros.

    Sequential / functional models: a new model without wrappers. Subclassed models: the
    mask constraints are removed in place (weights re-zeroed first) and the same model is
    returned. tf_keras models: tfmot's own ``strip_pruning`` after re-zeroing.
    """
    if is_tf_keras(model):
        from grasp_tf import tfmot_compat

        return tfmot_compat.strip_pruning(model)
    return keras3_masks.strip_pruning(model)
