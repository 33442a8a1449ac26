"""How a Keras 3 weight holds a fixed keep-mask: the ``FixedMaskWrapper`` layer, or a ``MaskConstraint``.

A mask is a boolean keep-array (True = kept) keyed like every weight in grasp_tf:
``"<layer name>/<weight name>"``. A layer of a Sequential or functional model is wrapped in
``FixedMaskWrapper`` (the weight is read as ``weight * mask`` inside ``call``); a weight no
wrapper can reach (subclassed models, sub-layers of custom layers) carries a
``MaskConstraint`` that re-applies the mask after every optimizer update. Which one a model
gets is decided in ``grasp_tf.keras3_masks``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
import numpy as np

from grasp_tf import _keras_internals
from grasp_tf.prunable import default_prunable, weight_name

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
        **kwargs: ``keras.layers.Wrapper`` arguments (``name`` defaults to
            ``prune_low_magnitude_<layer name>``, ``dtype`` to the layer's policy).

    Raises:
        ValueError: at build, when a named weight is not one of the layer's own, nothing is
            chosen, or a mask's shape differs from its weight's.

    Example:

    >>> dense = keras.layers.Dense(4)
    >>> wrapped = FixedMaskWrapper(dense, masks={"kernel": keep})  # keep: bool array (in_dim, 4)
    >>> model = keras.Sequential([keras.Input((in_dim,)), wrapped])

    ``grasp_tf.apply_masks`` builds these for a whole model; direct use is for custom layouts.
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

    def build(self, input_shape: Any = None) -> None:
        """Build the inner layer, then one mask and threshold per masked weight and the step."""
        super().build(input_shape)
        own = {weight_name(v): v for v in _keras_internals.own_variables(self.layer)}
        if self._weight_names is None:
            self._weight_names = [weight_name(v) for v in default_prunable(self.layer)]
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
        outer = _keras_internals.stateless_scope()
        mapping = [(w, w * m) for w, m, _ in self.pruning_vars]
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
            if outer is not None:  # keep values an enclosing stateless call substituted
                _keras_internals.inherit_state_mapping(scope, outer)
            before = _keras_internals.state_mapping(scope)
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


class MaskConstraint(keras.constraints.Constraint):
    """Variable constraint that multiplies by a fixed mask after each optimizer update.

    Used where a weight cannot be wrapped (subclassed models); ``previous`` is a constraint
    the variable already had, applied first.
    """

    is_grasp_tf_mask = True  # how grasp_tf.keys recognises it without importing this module

    def __init__(self, mask: np.ndarray, previous: Any = None):
        self.mask = np.asarray(mask, dtype=bool)
        self.previous = previous

    def __call__(self, w: Any) -> Any:
        if self.previous is not None:
            w = self.previous(w)
        return w * keras.ops.cast(self.mask, w.dtype)
