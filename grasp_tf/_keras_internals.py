"""The one module that touches private Keras / tf_keras / TF symbols: each behind a named function, with why.

A Keras upgrade that renames or removes one of them breaks here and in
``tests/test_keras_internals.py`` (which calls every function below), not silently somewhere
in the library. The rest of grasp_tf uses only public APIs plus these functions.
"""
from __future__ import annotations

from typing import Any, Callable

import keras
import tensorflow as tf
from keras.src.backend import AutocastScope as _AutocastScope
from keras.src.backend import get_stateless_scope as _get_stateless_scope
from keras.src.backend.tensorflow import nn as _backend_nn
from keras.src.export.export_utils import get_input_signature as _get_input_signature
from keras.src.export.export_utils import make_tf_tensor_spec as _make_tf_tensor_spec
from keras.src.models.functional import Functional as _Functional

Moments = Callable[..., Any]


# --- the layer tree -------------------------------------------------------------------------

def flatten_layers(model: Any) -> list[Any]:
    """Every layer below ``model`` (nested models and wrapped layers included), depth first.

    Why private: ``model.layers`` lists only the top level and skips the layer inside a
    ``Wrapper``; ``_flatten_layers`` is the walk Keras 3 and tf_keras both use themselves.
    """
    return list(model._flatten_layers(include_self=False, recursive=True))


def child_layers(layer: Any) -> list[Any]:
    """The layers directly below ``layer`` (a model's top-level layers, a wrapper's inner layer).

    Why private: the same walk as :func:`flatten_layers`, one level deep; the weight index
    needs each layer's parent to name its full path (``outer/inner/dense``).
    """
    return list(layer._flatten_layers(include_self=False, recursive=False))


def own_variables(layer: Any) -> list[Any]:
    """Variables ``layer`` creates itself (not those of its sub-layers); Keras 3 or tf_keras.

    Why private: the public ``trainable_variables`` / ``weights`` include every sub-layer's
    variables; only the underscored lists hold a layer's own.
    """
    if hasattr(layer, "_trainable_variables"):  # Keras 3
        return list(layer._trainable_variables) + list(layer._non_trainable_variables)
    return list(layer._trainable_weights) + list(layer._non_trainable_weights)


def is_functional(model: Any) -> bool:
    """True for a Keras 3 functional model (one ``keras.models.clone_model`` can rebuild layer by layer).

    Why private: ``Functional`` is not exported; a subclassed ``keras.Model`` and a functional
    one are the same public class.
    """
    return isinstance(model, _Functional)


def is_tf_keras_graph_network(model: Any) -> bool:
    """True for a tf_keras functional model (what tfmot can clone and wrap).

    Why private: tf_keras exposes no public test for "functional"; ``_is_graph_network`` is
    what tf_keras' own ``clone_model`` checks.
    """
    return bool(getattr(model, "_is_graph_network", False))


# --- dtype policies (float32 scoring of mixed-precision models) ------------------------------

def dtype_policy(layer: Any) -> Any:
    """The layer's own dtype policy object, or None when it has none.

    Why private: the public ``dtype_policy`` property of a Keras 3 layer under a
    ``DTypePolicyMap`` returns the map's entry, not the object to restore later.
    """
    return getattr(layer, "_dtype_policy", None)


def set_dtype_policy(layer: Any, policy: Any) -> None:
    """Give ``layer`` the policy ``policy`` (a policy object on Keras 3; a policy or name on tf_keras).

    Why private: Keras 3's public ``dtype_policy`` setter edits a shared ``DTypePolicyMap``
    and may quantize the layer; tf_keras has no public setter after construction.
    """
    if isinstance(layer, keras.Layer):
        layer._dtype_policy = policy
    else:
        layer._set_dtype_policy(policy)


def autocast_scope(dtype: str) -> Any:
    """A Keras 3 scope in which layers computing in ``dtype`` read float variables cast to ``dtype``.

    Why private: ``AutocastScope`` is what mixed precision enters inside ``Layer.__call__``;
    Keras exports no way to run a float32 model in float64, which the effective-sparsity pass
    (``grasp_tf.connectivity``) needs so that path flows neither overflow nor vanish.
    """
    return _AutocastScope(dtype)


# --- moments of the normalization layers (exact second derivatives) ---------------------------

def keras_moments() -> tuple[Moments, Moments]:
    """Keras 3's current (plain, synchronized) moment functions of the TensorFlow backend.

    Why private: BatchNormalization, LayerNormalization and GroupNormalization reach them
    through ``keras.ops.moments`` with no public hook to change how moments are computed.
    """
    return _backend_nn._compute_moments, _backend_nn._compute_moments_sync


def set_keras_moments(moments: Moments, moments_sync: Moments) -> None:
    """Make Keras 3's TensorFlow backend compute moments with these functions (process-wide)."""
    _backend_nn._compute_moments = moments
    _backend_nn._compute_moments_sync = moments_sync


def set_tf_keras_batchnorm_moments(layer: Any, moments: Moments) -> bool:
    """Route one tf_keras BatchNormalization's (unfused) moments through ``moments``; True if it had its own.

    Why private: tf_keras batch norm computes moments in its ``_moments`` method; an instance
    attribute is the narrowest override (no class-wide patch).
    """
    had_own = "_moments" in layer.__dict__
    object.__setattr__(layer, "_moments", moments)
    return had_own


def reset_tf_keras_batchnorm_moments(layer: Any, had_own: bool) -> None:
    """Undo :func:`set_tf_keras_batchnorm_moments` (the class method serves again unless the layer had its own)."""
    if not had_own:
        object.__delattr__(layer, "_moments")


def keras_logits(output: Any) -> Any:
    """The pre-activation tensor Keras 3 attaches to a softmax/sigmoid output, else ``output``.

    Why private: Keras 3 keeps the logits for its own numerically stable losses on the
    output tensor (``_keras_logits``); no public API returns them.
    """
    return getattr(output, "_keras_logits", output)


# --- stateless scopes and export --------------------------------------------------------------

def stateless_scope() -> Any:
    """The active ``keras.StatelessScope``, or None.

    Why private: Keras 3 exports ``StatelessScope`` but no accessor for the enclosing one, which
    a layer needs to keep the values an outer stateless call substituted.
    """
    return _get_stateless_scope()


def inherit_state_mapping(scope: Any, outer: Any) -> None:
    """Let ``scope`` also substitute every value ``outer`` substitutes (``scope``'s own win).

    Why undocumented: ``StatelessScope.state_mapping`` is a public attribute but not a documented
    API, and a nested scope does not read its parent's mapping; a wrapper layer called inside
    a stateless call (``model.stateless_call``, the scoring's functional passes) must keep the
    parent's values while it substitutes ``weight * mask`` for its own weights.
    """
    scope.state_mapping = {**outer.state_mapping, **scope.state_mapping}


def state_mapping(scope: Any) -> dict:
    """A copy of the values ``scope`` substitutes, keyed by ``id(variable)`` (see above)."""
    return dict(scope.state_mapping)


def input_signature(model: Any) -> Any:
    """The ``tf.TensorSpec`` structure a built Keras 3 model is served with.

    Why private: ``model.export()`` computes it internally (``export_utils``) but writes every
    variable twice; grasp_tf builds its own serving module with the same signature.
    """
    return tf.nest.map_structure(_make_tf_tensor_spec, _get_input_signature(model))
