"""The one module of train/ that touches private Keras symbols: each behind a named function, with why.

A Keras upgrade that renames or removes one of them breaks here and in
``tests/test_train_keras_internals.py`` (which calls every function below), not silently in
the middle of a multi-worker run. The rest of train/ uses only public APIs plus these functions
(grasp_tf has its own, ``grasp_tf/_keras_internals.py``).
"""
from __future__ import annotations

from typing import Any, Callable

import tensorflow as tf
from keras.src.backend.tensorflow import trainer as _tf_trainer

Reduce = Callable[[Any, tf.distribute.Strategy, str], Any]


# --- building a model for fit() outside Keras' own path (keras-team/keras#20585) -------------

def symbolic_build(model: Any, data_batch: tuple[Any, Any]) -> None:
    """Build ``model``'s compiled metrics and optimizer variables from one plain ``(x, y)`` batch.

    Why private: ``fit`` builds them itself (``_symbolic_build``) from a distributed batch,
    which under MultiWorkerMirroredStrategy all-reduces eagerly and fails; no public method
    builds the compiled state from a batch of our choosing.
    """
    model._symbolic_build(data_batch=data_batch)


def skip_symbolic_build(model: Any) -> None:
    """Make ``fit`` skip its own build step on ``model`` (already done by :func:`symbolic_build`).

    Why private: ``_maybe_symbolic_build`` is the step of ``fit`` that would redo the failing
    build; there is no public switch for it.
    """
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def install_multi_worker_scalar_reduce() -> Callable[[], None]:
    """Under MultiWorkerMirroredStrategy, reduce scalar step outputs over replicas with ``axis=None``.

    Keras reduces them with ``axis=0``, which fails on scalars. Returns a function that puts
    Keras' own reduction back. Installing twice wraps Keras' function once.

    Why private: ``reduce_per_replica`` is the module-level function Keras' TensorFlow trainer
    calls for every step's outputs, and ``_collective_all_reduce_multi_worker`` is how it tells
    the multi-worker case; neither has a public hook.
    """
    keras_reduce: Reduce = getattr(_tf_trainer.reduce_per_replica, "__wrapped__", _tf_trainer.reduce_per_replica)

    def reduce_per_replica(values: Any, strategy: tf.distribute.Strategy, reduction: str) -> Any:
        if reduction in ("auto", "mean") and _tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None) if v.shape.rank == 0
                else keras_reduce(v, strategy, reduction), values)
        return keras_reduce(values, strategy, reduction)

    reduce_per_replica.__wrapped__ = keras_reduce
    _tf_trainer.reduce_per_replica = reduce_per_replica

    def uninstall() -> None:
        _tf_trainer.reduce_per_replica = keras_reduce

    return uninstall


def keras_reduce_per_replica() -> Reduce:
    """The reduction Keras' TensorFlow trainer currently applies to step outputs (patched or not)."""
    return _tf_trainer.reduce_per_replica


# --- the optimizer -----------------------------------------------------------------------------

def learning_rate_schedule(optimizer: Any) -> Any:
    """The optimizer's learning rate as given: a schedule (callable on a step) or a value.

    Why private: the public ``optimizer.learning_rate`` evaluates the schedule at the *next*
    step (``iterations``); logging the rate an epoch's last step used needs the schedule itself.
    """
    return optimizer._learning_rate
