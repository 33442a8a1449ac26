"""One index of a model's weights: each weight's key, layer path, variable, wrapper and mask.

Every public function that reads or writes weights by key (``prunable_weights``, ``get_masks``,
``sparsity_report``, ``apply_masks``, ``strip_pruning``, the exports) builds one
:class:`WeightIndex` per call and reads it; nothing else derives a key. Keras 3 and tf_keras
models alike.

The key policy (one for the whole library):

* a weight's key is ``"<layer name>/<weight name>"`` (``"conv2d_3/kernel"``), the layer being
  the innermost layer owning the variable; mask wrappers are skipped, so a plain model, its
  wrapped (pruned) clone and its stripped export give every weight the same key;
* when different weights of one model would share that key (two sub-models with equally named
  layers composed into one model), each of them is keyed by its full layer path instead:
  the names of the layers enclosing it below the model itself, wrappers skipped, e.g.
  ``"encoder/block1/dense/kernel"``. Keys of models without such collisions are unchanged;
* weights whose full paths are equal too (attributes of a subclassed layer given the same
  name) are *ambiguous*: any use of them is refused with a ``ValueError`` naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from grasp_tf import _keras_internals, masking


def weight_name(variable: Any) -> str:
    """The short name of a variable: ``kernel`` for both ``dense/kernel`` and ``dense/kernel:0``."""
    return variable.name.split("/")[-1].split(":")[0]


def is_wrapper(layer: Any) -> bool:
    """True for grasp_tf's fixed-mask wrapper and tfmot's PruneLowMagnitude (they own no kernels)."""
    return getattr(layer, "_grasp_tf_wrapper", False) or type(layer).__name__ == "PruneLowMagnitude"


def is_tf_keras(model: Any) -> bool:
    """True for a ``tf_keras`` (Keras 2) object, False for Keras 3; decided from its classes (imports nothing)."""
    return any(cls.__module__.split(".")[0] == "tf_keras" for cls in type(model).__mro__)


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: variables are not hashable
class Entry:
    """One weight of a model: its key, where it lives and what masks it.

    ``wrapper`` / ``mask_variable``: the mask wrapper (grasp_tf's or tfmot's) holding its
    mask and that mask's variable; ``constraint``: the ``MaskConstraint`` on the variable
    (subclassed models, custom layers). Both None for an unmasked weight.
    """

    key: str
    path: str
    name: str
    layer: Any
    variable: Any
    wrapper: Any = None
    mask_variable: Any = None
    constraint: Any = None

    @property
    def masked(self) -> bool:
        return self.mask_variable is not None or self.constraint is not None

    def mask(self) -> np.ndarray | None:
        """The keep-mask on this weight now (a copy), or None."""
        if self.mask_variable is not None:
            return np.asarray(self.mask_variable.numpy()) != 0
        if self.constraint is not None:
            return self.constraint.mask.copy()
        return None


def _refuse_ambiguous(key: str, entries: list[Entry]) -> ValueError:
    return ValueError(f"{len(entries)} different weights of the model are all known as {key!r} (layers with "
                      "the same name at the same place, e.g. two attributes of a subclassed layer): give the "
                      "layers unique names.")


class WeightIndex:
    """Every weight of a model (wrappers' own mask variables excluded), in layer order, each variable once.

    Attributes:
        layers: every layer below the model except mask wrappers, in ``flatten_layers`` order.
        entries: every :class:`Entry`, ambiguous ones included, in ``flatten_layers`` order.
        by_key: key -> entry, for every unambiguous key.
        ambiguous: key -> the entries sharing it even by full path.
    """

    def __init__(self, model: Any):
        layers = _keras_internals.flatten_layers(model)
        parent: dict[int, Any] = {}
        for layer in [model, *layers]:
            for child in _keras_internals.child_layers(layer):
                parent.setdefault(id(child), layer)
        paths: dict[int, str] = {id(model): ""}
        for layer in layers:  # parents come before their children in this order
            above = paths.get(id(parent.get(id(layer), model)), "")
            paths[id(layer)] = above if is_wrapper(layer) else f"{above}/{layer.name}".lstrip("/")
        held: dict[int, tuple[Any, Any]] = {}
        for layer in layers:
            if is_wrapper(layer):
                for weight, mask, _ in getattr(layer, "pruning_vars", []):
                    held[id(weight)] = (layer, mask)
        found: list[tuple[Any, Any, str]] = []
        seen: set[int] = set()
        for layer in layers:
            if is_wrapper(layer):
                continue
            for var in _keras_internals.own_variables(layer):
                if id(var) not in seen:
                    seen.add(id(var))
                    found.append((layer, var, paths[id(layer)]))
        short = [f"{layer.name}/{weight_name(var)}" for layer, var, _ in found]
        counts: dict[str, int] = {}
        for key in short:
            counts[key] = counts.get(key, 0) + 1
        self.layers = [layer for layer in layers if not is_wrapper(layer)]
        self.entries: list[Entry] = []
        for (layer, var, path), key in zip(found, short):
            if counts[key] > 1:
                key = f"{path}/{weight_name(var)}"
            wrapper, mask_variable = held.get(id(var), (None, None))
            constraint = getattr(var, "constraint", None)
            self.entries.append(Entry(key, path, weight_name(var), layer, var, wrapper, mask_variable,
                                      constraint if getattr(constraint, "is_grasp_tf_mask", False) else None))
        grouped: dict[str, list[Entry]] = {}
        for entry in self.entries:
            grouped.setdefault(entry.key, []).append(entry)
        self.by_key: dict[str, Entry] = {k: v[0] for k, v in grouped.items() if len(v) == 1}
        self.ambiguous: dict[str, list[Entry]] = {k: v for k, v in grouped.items() if len(v) > 1}
        self._by_variable = {id(e.variable): e for e in self.entries}

    def of_variable(self, variable: Any) -> Entry | None:
        """The entry of ``variable``, or None when the model does not own it."""
        return self._by_variable.get(id(variable))

    def key_of(self, variable: Any) -> str:
        """The key of ``variable``; ``ValueError`` if it is ambiguous."""
        entry = self._by_variable[id(variable)]
        if entry.key in self.ambiguous:
            raise _refuse_ambiguous(entry.key, self.ambiguous[entry.key])
        return entry.key

    def masks(self) -> dict[str, np.ndarray]:
        """Every keep-mask the model holds now (wrappers and mask constraints), by key."""
        return {self.key_of(e.variable): e.mask() for e in self.entries if e.masked}

    def check(self, masks: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``masks`` checked against the model (keys, shapes, binary values), as boolean arrays.

        A key may name any weight of the model, not only the default prunable ones. A short key
        that this model spells by full path (it names several weights) is refused with the
        full keys to use instead.

        Raises:
            ValueError: not a dict, empty, unknown or ambiguous keys, wrong shapes, non-binary values.
        """
        if isinstance(masks, Mapping):
            for key in masks:
                if key in self.ambiguous:
                    raise _refuse_ambiguous(key, self.ambiguous[key])
                if key not in self.by_key:
                    spelled = [e.key for e in self.entries if f"{e.layer.name}/{e.name}" == key]
                    if spelled:
                        raise ValueError(f"Mask key {key!r} names {len(spelled)} weights of this model (layers "
                                         f"sharing a name in different sub-models); use their full keys "
                                         f"{spelled[:4]}.")
        checked = masking.check_masks(masks, {k: tuple(e.variable.shape) for k, e in self.by_key.items()})
        if not checked:
            raise ValueError("No masks given: pass a dict of keep-masks keyed '<layer name>/<weight name>'.")
        return checked


def index(model: Any) -> WeightIndex:
    """The :class:`WeightIndex` of a built ``model``; ``ValueError`` for an unbuilt one."""
    if not getattr(model, "built", True):
        raise ValueError("The model is not built: call it on a batch or build it first.")
    return WeightIndex(model)
