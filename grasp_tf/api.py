"""The public pipeline: model + data -> scores -> masks -> pruned model, for Keras 3 and tf_keras models."""
from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np

from grasp_tf import criteria, keras3_masks, keys, masking
from grasp_tf.prunable import default_prunable, is_tf_keras


@criteria.documented
def compute_scores(model: Any, data: Any, method: str = "grasp", **opts: Any) -> dict[str, np.ndarray]:
    """One score array per prunable weight of ``model``, keyed ``"<layer name>/<weight name>"``.

    Orientation is the method's own (``grasp_tf.criteria.get(method).remove_largest``):
    GraSP stores the reference's ``-θ ⊙ Hg`` and removes the largest; SNIP, magnitude,
    random and SynFlow remove the smallest. The model, its weights and its batch-norm
    statistics are left untouched.

    Args:
        model: a built Keras 3 or tf_keras classifier (one output of shape ``(batch, classes)``).
        data: an ``(x, y)`` pair (one draw, used as given) or a ``tf.data.Dataset`` of
            ``(x, y)`` batches; labels are class ids or one-hot rows. ``None`` for methods
            that need no data (``random``, ``magnitude``, ``synflow``).
        method: a registered method name (``grasp_tf.criteria.names()``); each names a
            ``grasp_tf.criteria.Criterion``.
        **opts: ``prunable``, ``samples_per_class``, ``num_draws``, ``sample_storage``,
            ``verbose``, ``seed`` (all explained in ``help(grasp_tf.compute_masks)``) and the
            method's own options (those marked ``compute_masks`` only belong to an iterative
            method's pruning: its scores are one-shot), from each method's declarations:

            {method options}

    Returns:
        ``{key: float32 array shaped like the weight}``, in the model's layer order.

    Raises:
        ValueError: for an unknown method or option, data the method cannot use (see
            ``compute_masks``), a model with no prunable weights, or a non-finite loss.

    Example:

    >>> scores = grasp_tf.compute_scores(model, (x, y), "snip", seed=0)
    >>> scores["conv2d/kernel"].shape == model.get_layer("conv2d").kernel.shape
    True
    """
    return criteria.score(model, data, method, **opts)


@criteria.documented
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
    """Boolean keep-masks (True = kept) removing a ``sparsity`` fraction of the prunable weights.

    Args:
        model: a built Keras 3 or tf_keras classifier; it is left untouched.
        data: an ``(x, y)`` pair or a ``tf.data.Dataset`` of ``(x, y)`` batches (labels: class
            ids or one-hot); ``None`` for ``random``, ``magnitude`` and ``synflow``.
        sparsity: the fraction of weights removed, in ``[0, 1)``; N counts all prunable
            weights (``scope="global"``) or each tensor's (``"layerwise"``).
        method: a registered method name: ``grasp`` (default), ``grasp_abs``, ``snip``,
            ``random``, ``magnitude``, ``synflow`` or one added with
            ``grasp_tf.criteria.register`` (a method is a ``grasp_tf.criteria.Criterion``).
        scope: ``"global"`` ranks all weights together, ``"layerwise"`` prunes each tensor by
            the same fraction.
        shuffle: the layerwise-shuffle ablation: each tensor keeps the method's count of
            weights, at random positions. The result depends only on the per-tensor counts,
            so this is also the "random masks at the method's per-layer densities" ablation.
        invert: the invert ablation: remove the weights the method would keep (the ranking
            reversed, the same number removed). One-shot methods only (not ``synflow``).
        count_rule: ``"exact"`` removes exactly ``floor(N * sparsity)``, ties broken by
            position; ``"reference"`` keeps every weight tied with the threshold, as the
            official GraSP code (see ``grasp_tf.masking``).
        seed: seeds every random draw (Dense redraws, random scores, shuffling).
        **opts: options common to every method:

            * ``prunable``: which weights may be pruned: ``None`` (kernels of Conv / Dense /
              Depthwise / Separable layers, or a layer's ``get_prunable_weights()``), a
              predicate ``(layer, variable) -> bool``, or an iterable of keys.
            * ``samples_per_class=None``: with an integer k, a draw is the first k examples
              of every class met in ``data``, stacked in class order; None uses the pair, or
              one dataset batch per draw, as given.
            * ``num_draws=1``: how many draws are pooled (each continues the stream).
              ``samples_per_class`` / ``num_draws`` are an error for ``synflow``.
            * ``sample_storage="disk"``: where several draws wait between scoring passes:
              ``"disk"`` spills each draw to a ``.npy`` file in a temporary directory
              (``$TMPDIR``; it needs the sample's size in free space; deleted afterwards),
              so memory holds one draw, not ``num_draws``; ``"replay"`` iterates a
              deterministic dataset again for each pass, checking every draw is the same;
              ``"memory"`` keeps every draw in memory.
            * ``verbose="auto"``: progress of long scoring (draws, pieces; counts and an
              ETA): ``"auto"`` reports a task once it has run 5 s, ``True`` always, ``False``
              never. A Keras progress bar on a terminal, plain lines otherwise.

            and each method's own options, from its declarations
            (``grasp_tf.criteria.get(name).option_specs``; a bad value is a ValueError naming
            the option, the method and the value):

            {method options}

            ``docs/criteria.md`` explains each against the reference code.

    Returns:
        ``{"<layer name>/<weight name>": bool array shaped like the weight}``.

    Raises:
        ValueError: for a sparsity outside ``[0, 1)``, an unknown scope, count rule, method or
            option, unusable data (empty, mismatched, labels outside the model's classes, a
            class missing with ``samples_per_class``), no prunable weights or a non-finite
            loss. The model is untouched.

    Example:

    >>> masks = grasp_tf.compute_masks(model, (x, y), 0.9, method="grasp", seed=0)
    >>> pruned = grasp_tf.apply_masks(model, masks)
    """
    (masks,) = criteria.masks(model, data, [sparsity], method, scope=scope, count_rule=count_rule, seed=seed,
                              invert=invert, **opts)
    if shuffle:
        masks = masking.shuffle_within_layers(masks, seed)
    return masks


def prune_model(model: Any, data: Any, sparsity: float, method: str = "grasp", scope: str = "global", *,
                reinitialize: Any = None, **opts: Any) -> Any:
    """``model`` pruned at initialization: ``compute_masks`` then ``apply_masks``.

    Args:
        model: a built Keras 3 or tf_keras classifier.
        data: the scoring data, as in ``compute_masks``.
        sparsity: the fraction of prunable weights removed, in ``[0, 1)``.
        method: a registered method name (``grasp_tf.criteria.names()``).
        scope: ``"global"`` or ``"layerwise"``.
        reinitialize: the reinitialize ablation: a model of the same architecture with other
            initial weights; the masks scored on ``model`` are applied to it instead.
        **opts: every keyword of ``compute_masks`` (``shuffle``, ``invert``, ``count_rule``, ``seed``,
            ``prunable``, ``samples_per_class``, ``num_draws``, ``sample_storage``, ``verbose``
            and the method's options,
            listed in ``help(grasp_tf.compute_masks)``).

    Returns:
        Functional and Sequential models: a new model, prunable layers wrapped in
        ``FixedMaskWrapper`` and pruned weights zeroed (the caller's model is untouched).
        Subclassed models: the same model, masked in place. tf_keras models: a clone wrapped
        in tfmot's ``PruneLowMagnitude`` with the masks pinned.

    Raises:
        ValueError: as ``compute_masks`` and ``apply_masks``; and for a model that already holds
            masks: scoring it again would rank its pruned (zero) weights like any other and
            could bring them back. Prune the unpruned model, or combine masks yourself and
            call ``apply_masks``.

    Example:

    >>> pruned = grasp_tf.prune_model(model, (x, y), 0.98, method="grasp", samples_per_class=10)
    >>> pruned.fit(train_ds, epochs=160)  # pruned weights stay exactly zero
    """
    held = keys.index(model).masks()
    if held:
        layers = sorted({k.split("/")[0] for k in held})
        raise ValueError(f"model is already pruned: {len(held)} weights of layers {', '.join(layers[:5])}"
                         f"{', ...' if len(layers) > 5 else ''} hold masks. Prune the unpruned model, or "
                         "compute_masks on it and apply_masks the masks you want.")
    masks = compute_masks(model, data, sparsity, method, scope, **opts)
    return _apply_masks(model if reinitialize is None else reinitialize, masks, warn_dense=opts.get("prunable") is None)


def apply_masks(model: Any, masks: Mapping[str, Any]) -> Any:
    """``model`` with fixed keep-masks applied: masked weights zeroed and held at zero in training.

    Sequential / functional / nested Keras 3 models: returns a new model (layers owning masked
    weights wrapped in ``FixedMaskWrapper``, all weights copied); the caller's model is
    untouched. Subclassed models: masks their variables in place (a ``MaskConstraint``
    re-applies the mask after each optimizer update) and returns the same model. tf_keras
    models: returns a clone wrapped in tfmot's ``PruneLowMagnitude`` with the masks pinned
    (see ``grasp_tf.tfmot_compat``). Masks already on the model are kept for keys ``masks``
    does not name. A default-prunable weight left with no mask stays dense, and a
    ``UserWarning`` names every such weight (e.g. masks saved from another architecture).

    Args:
        model: a built Keras 3 or tf_keras model, pruned or not.
        masks: ``{"<layer name>/<weight name>": keep-mask}``, boolean or 0/1, shaped like the
            weight; any weight of the model may be named, not only the default prunable ones.
            Weights whose short keys collide (equally named layers in different sub-models)
            are keyed by their full layer path, ``"<sub-model>/<layer>/<weight>"``
            (``grasp_tf.keys``).

    Returns:
        The masked model (new or the same one, as above).

    Raises:
        ValueError: for unknown keys, wrong shapes, non-binary values, a short key this model
            spells by full path (the message lists the full keys), an unbuilt model, or a
            subclassed tf_keras model. The model is untouched.

    Example:

    >>> masks = grasp_tf.compute_masks(model, (x, y), 0.9)
    >>> np.savez("masks.npz", **masks)  # ... later, on a freshly built model:
    >>> pruned = grasp_tf.apply_masks(model, dict(np.load("masks.npz")))
    """
    return _apply_masks(model, masks, warn_dense=True)


def _apply_masks(model: Any, masks: Mapping[str, Any], warn_dense: bool) -> Any:
    """``apply_masks``; ``warn_dense=False`` when the caller chose which weights to prune (``prunable=``)."""
    table = keys.index(model)
    masks = {**table.masks(), **table.check(masks)}
    if warn_dense:
        entries = {id(v): table.of_variable(v) for layer in table.layers for v in default_prunable(layer)}
        unmasked = sorted(e.key for e in entries.values() if e is not None and e.key not in masks)
        if unmasked:
            warnings.warn(f"apply_masks: {len(unmasked)} prunable weight(s) get no mask and stay dense: "
                          f"{', '.join(unmasked[:6])}{', ...' if len(unmasked) > 6 else ''}.", stacklevel=3)
    if is_tf_keras(model):
        from grasp_tf import tfmot_compat  # imports tfmot, which switches the process to legacy Keras

        return tfmot_compat.apply_masks(model, table, masks)
    return keras3_masks.apply_masks(model, table, masks)


def strip_pruning(model: Any) -> Any:
    """``model`` with plain Keras layers and the masks baked in as zeros (for export or inference).

    Args:
        model: a model returned by ``apply_masks`` / ``prune_model`` (or an unpruned one).

    Returns:
        Sequential / functional models: a new model without wrappers. Subclassed models: the
        same model, its mask constraints removed in place (weights re-zeroed first). tf_keras
        models: tfmot's own ``strip_pruning`` after re-zeroing. In every case the result was
        checked to give the masked model's outputs on a probe batch (``grasp_tf.verify``).

    Raises:
        ValueError: for a subclassed Keras 3 model holding ``FixedMaskWrapper`` layers in its
            ``call`` (they cannot be removed), or a result whose outputs differ from the
            masked model's (a different network; not returned).

    Example:

    >>> plain = grasp_tf.strip_pruning(pruned)
    >>> grasp_tf.sparsity_report(plain)["global"]["nonzero_fraction"]  # the zeros remain
    """
    if is_tf_keras(model):
        from grasp_tf import tfmot_compat

        return tfmot_compat.strip_pruning(model)
    return keras3_masks.strip_pruning(model)
