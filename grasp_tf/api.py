"""The public pipeline: model + data -> scores -> masks -> pruned model."""
from __future__ import annotations

from typing import Any

import numpy as np

from grasp_tf import criteria, masking, wrappers


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
    invert: bool = False,
    count_rule: str = "exact",
    seed: int | None = None,
    **opts: Any,
) -> dict[str, np.ndarray]:
    """Boolean keep-masks removing a ``sparsity`` fraction of the prunable weights.

    ``scope="global"`` ranks all weights together, ``"layerwise"`` prunes each tensor by
    the same fraction. The sanity-check ablations (Frankle et al. 2021, docs/criteria.md):
    ``shuffle=True`` keeps the method's per-layer counts and draws the positions at random
    (layerwise shuffle, which is the same as random masks at the method's per-layer
    densities); ``invert=True`` removes the weights the method would keep (the same number
    removed). ``count_rule`` is documented in ``grasp_tf.masking``.
    """
    sparsity = masking.check_sparsity(sparsity)
    masking.check_scope(scope)
    crit = criteria.get(method)
    if crit.iterative_masks is not None:
        if invert:
            raise ValueError(f"invert=True needs a one-shot method; {method!r} prunes iteratively.")
        masks = crit.iterative_masks(model, data, sparsity, scope=scope, count_rule=count_rule,
                                     seed=seed, **opts)
    else:
        scores = criteria.score(model, data, method, seed=seed, **opts)
        masks = masking.masks_from_scores(scores, sparsity, remove_largest=crit.remove_largest != invert,
                                          scope=scope, count_rule=count_rule)
    if shuffle:
        masks = masking.shuffle_within_layers(masks, seed)
    return masks


def prune_model(
    model: Any,
    data: Any,
    sparsity: float,
    method: str = "grasp",
    scope: str = "global",
    *,
    reinitialize: Any = None,
    **opts: Any,
) -> Any:
    """``model`` pruned at initialization: prunable layers wrapped with fixed masks, kernels zeroed.

    Functional and Sequential models come back as a new model (the caller's is untouched);
    subclassed models are masked in place; tf_keras models come back wrapped in tfmot's
    ``PruneLowMagnitude`` with the masks pinned. Keyword options go to ``compute_masks``.
    ``reinitialize``: the reinitialize ablation -- a model of the same architecture with
    other initial weights; the masks scored on ``model`` are applied to it instead.

    A model that already holds masks is refused with ``ValueError``: scoring it again would
    rank its pruned (zero) weights like any other and could bring them back. Prune the
    unpruned model instead, or combine masks yourself and call ``apply_masks``.
    """
    held = wrappers.get_masks(model)
    if held:
        layers = sorted({k.split("/")[0] for k in held})
        raise ValueError(f"model is already pruned: {len(held)} weights of layers {', '.join(layers[:5])}"
                         f"{', ...' if len(layers) > 5 else ''} hold masks. Prune the unpruned model, or "
                         "compute_masks on it and apply_masks the masks you want.")
    masks = compute_masks(model, data, sparsity, method, scope, **opts)
    return wrappers.apply_masks(model if reinitialize is None else reinitialize, masks)
