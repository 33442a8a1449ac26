"""Fixed pruning masks on Keras models: the ``FixedMaskWrapper`` layer and apply / read / strip / report.

A mask is a boolean keep-array (True = kept) keyed like every weight in grasp_tf:
``"<layer name>/<weight name>"``. How a model receives its masks depends on its kind:

* Sequential, functional and nested models are cloned; each layer owning a masked weight is
  wrapped in ``FixedMaskWrapper`` (the weight is multiplied by its mask inside ``call``),
  every weight is copied and masked weights are zeroed. The caller's model is untouched.
  A masked weight owned by a sub-layer of a custom layer (which cloning cannot reach) is
  masked on the clone's variable instead, as for subclassed models.
* Subclassed models cannot be cloned: their masked variables are zeroed in place and carry a
  ``variable.constraint`` that re-applies the mask after every optimizer update, so the same
  (mutated) model is returned.
* ``tf_keras`` models go to ``grasp_tf.tfmot_compat`` (tfmot's own ``PruneLowMagnitude``).
"""
from __future__ import annotations

import contextlib
from typing import Any, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend import get_stateless_scope  # no public accessor in Keras 3.15
from keras.src.models.functional import Functional  # what keras.models.clone_model can clone

from grasp_tf import masking
from grasp_tf.prunable import candidate_weights, is_wrapper, iter_layers, own_variables, weight_name

WRAPPER_PREFIX = "prune_low_magnitude_"


@keras.saving.register_keras_serializable(package="grasp_tf")
class FixedMaskWrapper(keras.layers.Wrapper):
    """Multiplies chosen weights of ``layer`` by fixed keep-masks inside ``call``.

    The masked value reaches the inner layer through a ``keras.StatelessScope`` mapping each
    weight to ``weight * mask``, so pruned entries get exactly zero gradient and stay zero
    under any optimizer, momentum and weight decay, with no callback. The surface matches
    tfmot's ``PruneLowMagnitude``: ``.layer``, per-weight non-trainable ``mask`` and
    ``threshold`` variables, a ``pruning_step`` variable, ``pruning_vars`` as
    (weight, mask, threshold) tuples and the name ``prune_low_magnitude_<layer name>``.
    Masks never change during training; ``threshold`` (0) and ``pruning_step`` (-1) are
    kept only for that compatibility.

    Args:
        layer: the layer to wrap.
        weight_names: short names of ``layer``'s own weights to mask (e.g. ``["kernel"]``);
            defaults to the keys of ``masks``, else the layer's default prunable weights.
        masks: initial keep-masks by weight name (default all-ones); when given, the
            weights are zeroed where the mask is False as soon as the wrapper is built.
            Not part of the config: saved models restore masks from their variables.
    """

    _grasp_tf_wrapper = True

    def __init__(
        self,
        layer: keras.layers.Layer,
        weight_names: Sequence[str] | None = None,
        masks: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ):
        kwargs.setdefault("name", WRAPPER_PREFIX + layer.name)
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        self._initial_masks = {k: np.asarray(v, dtype=bool) for k, v in (masks or {}).items()}
        if weight_names is None and self._initial_masks:
            weight_names = list(self._initial_masks)
        self._weight_names = None if weight_names is None else list(weight_names)
        if self._weight_names is not None and set(self._initial_masks) - set(self._weight_names):
            raise ValueError(f"masks name weights {sorted(set(self._initial_masks) - set(self._weight_names))} "
                             f"outside weight_names={self._weight_names}.")
        self.supports_masking = layer.supports_masking
        self.pruning_vars: list[tuple[Any, Any, Any]] = []
        if layer.built:
            self.build()

    @property
    def weight_names(self) -> list[str]:
        """Short names of the inner layer's masked weights (resolved at build)."""
        return list(self._weight_names or [])

    def build(self, input_shape: Any = None) -> None:
        """Build the inner layer, then one mask and threshold per masked weight and the step."""
        super().build(input_shape)
        own = {weight_name(v): v for v in own_variables(self.layer)}
        if self._weight_names is None:
            self._weight_names = [key.split("/")[-1] for key, _ in candidate_weights(self.layer)]
        missing = [n for n in self._weight_names if n not in own]
        if missing or not self._weight_names:
            raise ValueError(f"Layer {self.layer.name!r} has no weights {missing or '(none chosen)'} to mask; "
                             f"its weights are {sorted(own)}.")
        self.pruning_vars = []
        for name in self._weight_names:
            weight = own[name]
            mask = self.add_weight(name="mask", shape=weight.shape, dtype=weight.dtype,
                                   initializer="ones", trainable=False)
            threshold = self.add_weight(name="threshold", shape=(), dtype=weight.dtype,
                                        initializer="zeros", trainable=False)
            if name in self._initial_masks:
                value = self._initial_masks[name]
                if value.shape != tuple(weight.shape):
                    raise ValueError(f"Mask for {self.layer.name}/{name} has shape {value.shape}, "
                                     f"the weight has {tuple(weight.shape)}.")
                mask.assign(value.astype(mask.dtype))
                weight.assign(weight * mask)
            self.pruning_vars.append((weight, mask, threshold))
        self.pruning_step = self.add_weight(name="pruning_step", shape=(), dtype="int64",
                                            initializer=keras.initializers.Constant(-1), trainable=False)
        self._initial_masks = {}
        self.built = True

    def call(self, inputs: Any, *args: Any, training: Any = None, **kwargs: Any) -> Any:
        """Run the inner layer with every masked weight read as ``weight * mask``.

        No ``mask`` argument: the inner layer's own ``__call__`` reads the Keras mask attached
        to ``inputs``, and recorded nodes stay callable on the unwrapped layer.
        """
        if training is not None:
            kwargs["training"] = training
        outer = get_stateless_scope()
        mapping = [(w, w * m) for w, m, _ in self.pruning_vars]
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
            if outer is not None:  # keep values an enclosing stateless call substituted
                scope.state_mapping = {**outer.state_mapping, **scope.state_mapping}
            before = dict(scope.state_mapping)
            outputs = self.layer(inputs, *args, **kwargs)
        # The scope swallowed the inner layer's own state updates (BN statistics, RNG seeds)
        # and losses (activity regularizers, add_loss): hand them on.
        for variable in self.layer.variables:
            value = scope.get_current_value(variable)
            if value is not None and value is not before.get(id(variable)):
                if outer is not None:
                    outer.add_update((variable, value))
                else:
                    variable.assign(value)
        for loss in scope.losses:
            self.add_loss(loss)
        return outputs

    def compute_mask(self, inputs: Any, previous_mask: Any = None) -> Any:
        """The inner layer's output mask."""
        return self.layer.compute_mask(inputs, previous_mask)

    def get_config(self) -> dict[str, Any]:
        """The Wrapper config plus the masked weight names (mask values live in variables)."""
        return {**super().get_config(), "weight_names": self._weight_names}

    def get_build_config(self) -> dict[str, Any] | None:
        """The inner layer's build config: what rebuilding the wrapper needs."""
        return self.layer.get_build_config()

    def build_from_config(self, config: dict[str, Any] | None) -> None:
        """Rebuild on load: the inner layer from its own build config, then the mask variables."""
        if config and not self.layer.built:
            self.layer.build_from_config(config)
        if not self.built:
            self.build()


class _MaskConstraint(keras.constraints.Constraint):
    """Variable constraint that multiplies by a fixed mask after each optimizer update.

    Used where a weight cannot be wrapped (subclassed models); ``previous`` is a constraint
    the variable already had, applied first.
    """

    def __init__(self, mask: np.ndarray, previous: Any = None):
        self.mask = np.asarray(mask, dtype=bool)
        self.previous = previous

    def __call__(self, w: Any) -> Any:
        if self.previous is not None:
            w = self.previous(w)
        return w * keras.ops.cast(self.mask, w.dtype)


def is_tf_keras(model: Any) -> bool:
    """True for a ``tf_keras`` (Keras 2) object; decided from its classes, without importing tfmot."""
    return any(cls.__module__.split(".")[0] == "tf_keras" for cls in type(model).__mro__)


def _is_graph_model(model: Any) -> bool:
    """True for models ``keras.models.clone_model`` can rebuild with new layers."""
    return isinstance(model, (keras.Sequential, Functional))


def weights_by_key(model: Any) -> dict[str, list[tuple[Any, Any]]]:
    """Every weight of ``model`` (wrappers' own mask variables excluded) as key -> [(layer, variable)].

    A key listing several variables is ambiguous (layers sharing a name in nested models).
    Works for Keras 3 and tf_keras models.
    """
    table: dict[str, list[tuple[Any, Any]]] = {}
    seen: set[int] = set()
    for layer in iter_layers(model):
        if is_wrapper(layer):
            continue
        for var in own_variables(layer):
            if id(var) not in seen:
                seen.add(id(var))
                table.setdefault(f"{layer.name}/{weight_name(var)}", []).append((layer, var))
    return table


def validate_masks(model: Any, masks: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, tuple[Any, Any]]]:
    """Masks checked against ``model`` (keys, shapes, binary values) and every weight's (layer, variable).

    Mask keys may name any weight of the model, not only the default prunable ones.
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


def copy_weights(source: Any, target: Any, masks: Mapping[str, np.ndarray]) -> None:
    """Copy every weight of ``source`` into its clone ``target``, multiplying masked ones by their mask.

    Layers are matched in depth-first order, wrappers and input layers (renamed by cloning)
    skipped; any mismatch is an error.
    """
    def layers(model: Any) -> list[Any]:
        return [l for l in iter_layers(model) if not is_wrapper(l) and type(l).__name__ != "InputLayer"]

    src, dst = layers(source), layers(target)
    pairs = list(zip(src, dst))
    if len(src) != len(dst) or any(a.name != b.name or type(a) is not type(b) for a, b in pairs):
        raise ValueError(f"Cloning {getattr(source, 'name', source)!r} did not reproduce its layers (a custom "
                         "layer may create sub-layers at call time), so its weights cannot be copied.")
    for a, b in pairs:
        va, vb = own_variables(a), own_variables(b)
        if [tuple(v.shape) for v in va] != [tuple(v.shape) for v in vb]:
            raise ValueError(f"Layer {a.name!r} has different weights in the clone.")
        for x, y in zip(va, vb):
            value = np.asarray(x.numpy())
            key = f"{a.name}/{weight_name(x)}"
            if key in masks:
                value = value * masks[key].astype(value.dtype)
            y.assign(value)


def _strategy_scope(model: Any) -> Any:
    """The model's tf.distribute strategy scope, so a clone's variables are created alike."""
    if tf.distribute.has_strategy() or not hasattr(model, "distribute_strategy"):
        return contextlib.nullcontext()
    return model.distribute_strategy.scope()


def _mask_in_place(model: Any, masks: Mapping[str, np.ndarray], owners: Mapping[str, tuple[Any, Any]]) -> None:
    """Set masks on ``model``'s own variables: a wrapper's mask if wrapped, else a constraint."""
    wrapped = {id(l.layer): l for l in iter_layers(model) if isinstance(l, FixedMaskWrapper)}
    for key, mask in masks.items():
        layer, var = owners[key]
        wrapper = wrapped.get(id(layer))
        slot = [m for w, m, _ in wrapper.pruning_vars if w is var] if wrapper is not None else []
        if slot:
            slot[0].assign(mask.astype(slot[0].dtype))
        else:
            previous = var.constraint
            if isinstance(previous, _MaskConstraint):
                previous = previous.previous
            var.constraint = _MaskConstraint(mask, previous)
        var.assign(var * mask.astype(var.dtype))


def _clone(model: Any, masks: Mapping[str, np.ndarray], owners: Mapping[str, tuple[Any, Any]], wrap: bool) -> Any:
    """A new model like ``model`` with all weights copied and masked weights zeroed.

    ``wrap=True`` wraps the layers owning masked weights; ``wrap=False`` unwraps every wrapper.
    """
    by_layer: dict[int, dict[str, np.ndarray]] = {}
    for key, mask in masks.items():
        layer, var = owners[key]
        by_layer.setdefault(id(layer), {})[weight_name(var)] = mask

    def clone_layer(layer: Any) -> Any:
        inner = layer.layer if isinstance(layer, FixedMaskWrapper) else layer
        new = inner.__class__.from_config(inner.get_config())
        if wrap and id(inner) in by_layer:
            return FixedMaskWrapper(new, masks=by_layer[id(inner)])
        return new

    with _strategy_scope(model):
        clone = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
        if not clone.built:
            clone.build(model.input_shape)
        copy_weights(model, clone, masks)
        if wrap:  # masked weights that cloning could not wrap (inside custom layers)
            clone_owners = {k: v[0] for k, v in weights_by_key(clone).items() if k in masks}
            wrapped = {id(l.layer) for l in iter_layers(clone) if isinstance(l, FixedMaskWrapper)}
            rest = {k: m for k, m in masks.items() if id(clone_owners[k][0]) not in wrapped}
            _mask_in_place(clone, rest, clone_owners)
    return clone


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
        from grasp_tf import tfmot_compat

        return tfmot_compat.apply_masks(model, masks)
    checked, owners = validate_masks(model, masks)
    if _is_graph_model(model):
        return _clone(model, {**get_masks(model), **checked}, owners, wrap=True)
    _mask_in_place(model, checked, owners)
    return model


def get_masks(model: Any) -> dict[str, np.ndarray]:
    """The keep-masks on ``model`` by key: from wrappers (ours or tfmot's) and in-place constraints."""
    out: dict[str, np.ndarray] = {}
    for layer in iter_layers(model):
        if is_wrapper(layer):
            for w, m, _ in layer.pruning_vars:
                out[f"{layer.layer.name}/{weight_name(w)}"] = np.asarray(m.numpy()) != 0
        else:
            for var in own_variables(layer):
                if isinstance(var.constraint, _MaskConstraint):
                    out[f"{layer.name}/{weight_name(var)}"] = var.constraint.mask.copy()
    return out


def strip_pruning(model: Any) -> Any:
    """``model`` with plain Keras layers and the masks baked in as zeros.

    Sequential / functional models: a new model without wrappers. Subclassed models: the
    mask constraints are removed in place (weights re-zeroed first) and the same model is
    returned. tf_keras models: tfmot's own ``strip_pruning`` after re-zeroing.
    """
    if is_tf_keras(model):
        from grasp_tf import tfmot_compat

        return tfmot_compat.strip_pruning(model)
    masks = get_masks(model)
    table = weights_by_key(model)
    owners = {k: table[k][0] for k in masks}
    if _is_graph_model(model):
        return _clone(model, masks, owners, wrap=False)
    if any(isinstance(l, FixedMaskWrapper) for l in iter_layers(model)):
        raise ValueError(f"Model {model.name!r} is subclassed and holds FixedMaskWrapper layers; "
                         "they cannot be removed from its call(). Rebuild it without wrappers.")
    for key, mask in masks.items():
        var = owners[key][1]
        var.assign(var * mask.astype(var.dtype))
        var.constraint = var.constraint.previous
    return model


def sparsity_report(model: Any) -> dict[str, Any]:
    """Kept counts and fractions per weight and globally, JSON-serialisable.

    Covers every masked weight and every default-prunable weight (unmasked ones count as fully
    kept). ``kept`` counts mask entries; ``nonzero`` counts non-zero values, which also shows
    sparsity baked into a stripped model. Layout::

        {"weights": {key: {"layer", "shape", "masked", "total", "kept", "kept_fraction", "nonzero"}},
         "global": {"total", "kept", "kept_fraction", "sparsity", "nonzero", "nonzero_fraction"}}
    """
    masks = get_masks(model)
    weights: dict[str, dict[str, Any]] = {}
    for layer in iter_layers(model):
        if is_wrapper(layer):
            continue
        default = {id(v) for _, v in candidate_weights(layer)}
        for var in own_variables(layer):
            key = f"{layer.name}/{weight_name(var)}"
            if key not in masks and id(var) not in default:
                continue
            value = np.asarray(var.numpy())
            total = int(value.size)
            kept = int(np.count_nonzero(masks[key])) if key in masks else total
            weights[key] = {"layer": layer.name, "shape": list(value.shape), "masked": key in masks,
                            "total": total, "kept": kept, "kept_fraction": kept / total if total else 1.0,
                            "nonzero": int(np.count_nonzero(value))}
    total = sum(w["total"] for w in weights.values())
    kept = sum(w["kept"] for w in weights.values())
    nonzero = sum(w["nonzero"] for w in weights.values())
    frac = kept / total if total else 1.0
    return {"weights": weights,
            "global": {"total": total, "kept": kept, "kept_fraction": frac, "sparsity": 1.0 - frac,
                       "nonzero": nonzero, "nonzero_fraction": nonzero / total if total else 1.0}}
