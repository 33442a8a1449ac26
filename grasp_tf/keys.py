"""Every weight of a model by its key, and keep-masks checked against that table (Keras 3 and tf_keras)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from grasp_tf import masking
from grasp_tf import _keras_internals
from grasp_tf.prunable import is_wrapper, weight_name

Owner = tuple[Any, Any]
"""The ``(layer, variable)`` a key names."""


def weights_by_key(model: Any) -> dict[str, list[Owner]]:
    """Every weight of ``model`` (wrappers' own mask variables excluded) as key -> [(layer, variable)].

    A key listing several variables is ambiguous (layers sharing a name in nested models).
    """
    table: dict[str, list[Owner]] = {}
    seen: set[int] = set()
    for layer in _keras_internals.flatten_layers(model):
        if is_wrapper(layer):
            continue
        for var in _keras_internals.own_variables(layer):
            if id(var) not in seen:
                seen.add(id(var))
                table.setdefault(f"{layer.name}/{weight_name(var)}", []).append((layer, var))
    return table


def owners(model: Any) -> dict[str, Owner]:
    """The (first) ``(layer, variable)`` of every key of ``model``."""
    return {k: v[0] for k, v in weights_by_key(model).items()}


def validate_masks(model: Any, masks: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Owner]]:
    """Masks checked against ``model`` (keys, shapes, binary values) and every weight's (layer, variable).

    Mask keys may name any weight of the model, not only the default prunable ones.
    Raises ``ValueError`` for an unbuilt model, no masks, or masks ``masking.check_masks``
    rejects, or keys naming several weights.
    """
    if not getattr(model, "built", True):
        raise ValueError("The model is not built: call it on a batch or build it first.")
    table = weights_by_key(model)
    checked = masking.check_masks(masks, {k: tuple(v[0][1].shape) for k, v in table.items()})
    if not checked:
        raise ValueError("No masks given: pass a dict of keep-masks keyed '<layer name>/<weight name>'.")
    ambiguous = sorted(k for k in checked if len(table[k]) > 1)
    if ambiguous:
        raise ValueError(f"Mask keys {ambiguous} match several weights of the model (layers sharing a name); "
                         "give the layers unique names.")
    return checked, {k: v[0] for k, v in table.items()}
