"""Reading masks back from a model (``get_masks``) and counting what they keep (``sparsity_report``)."""
from __future__ import annotations

from typing import Any

import numpy as np

from grasp_tf import connectivity, keys
from grasp_tf.prunable import default_prunable


def get_masks(model: Any) -> dict[str, np.ndarray]:
    """The keep-masks currently on ``model``, by key.

    Read from mask wrappers (grasp_tf's ``FixedMaskWrapper`` or tfmot's ``PruneLowMagnitude``)
    and from the mask constraints ``apply_masks`` puts on subclassed models. Works for Keras 3
    and tf_keras models; an unpruned model gives ``{}``.

    Args:
        model: a Keras 3 or tf_keras model, pruned or not.

    Returns:
        ``{"<layer name>/<weight name>": bool array}`` (True = kept), one entry per masked weight.

    Example:

    >>> pruned = grasp_tf.prune_model(model, (x, y), 0.9)
    >>> masks = grasp_tf.get_masks(pruned)  # the masks prune_model applied
    """
    return keys.index(model).masks()


def sparsity_report(model: Any) -> dict[str, Any]:
    """Kept counts and fractions per weight and for the whole model, JSON-serialisable.

    Covers every masked weight and every default-prunable weight (unmasked ones count as fully
    kept). ``kept`` counts mask entries; ``nonzero`` counts non-zero values, which also shows
    sparsity baked into a stripped model.

    Args:
        model: a Keras 3 or tf_keras model: pruned, stripped or dense.

    Returns:
        A dict laid out as::

            {"weights": {key: {"layer", "shape", "masked", "total", "kept", "kept_fraction", "nonzero"}},
             "global": {"total", "kept", "kept_fraction", "sparsity", "nonzero", "nonzero_fraction"}}

    Example:

    >>> report = grasp_tf.sparsity_report(pruned)
    >>> report["global"]["sparsity"]  # 0.9 after prune_model(model, data, 0.9)
    """
    table = keys.index(model)
    masks = table.masks()
    default = {id(v) for layer in table.layers for v in default_prunable(layer)}
    weights: dict[str, dict[str, Any]] = {}
    found = []  # (key, layer, variable) for grasp_tf.connectivity
    for entry in table.entries:
        if entry.masked or id(entry.variable) in default:
            key = table.key_of(entry.variable)
            value = np.asarray(entry.variable.numpy())
            total = int(value.size)
            kept = int(np.count_nonzero(masks[key])) if key in masks else total
            weights[key] = {"layer": entry.layer.name, "shape": list(value.shape), "masked": key in masks,
                            "total": total, "kept": kept, "kept_fraction": kept / total if total else 1.0,
                            "nonzero": int(np.count_nonzero(value))}
            found.append((key, entry.layer, entry.variable))
    per_weight, connected = connectivity.measure(model, found, masks)
    for key, extra in per_weight.items():
        weights[key].update(extra)
    total = sum(w["total"] for w in weights.values())
    kept = sum(w["kept"] for w in weights.values())
    nonzero = sum(w["nonzero"] for w in weights.values())
    frac = kept / total if total else 1.0
    return {"weights": weights,
            "global": {"total": total, "kept": kept, "kept_fraction": frac, "sparsity": 1.0 - frac,
                       "nonzero": nonzero, "nonzero_fraction": nonzero / total if total else 1.0,
                       **connected}}
