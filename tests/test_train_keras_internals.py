"""Every private Keras symbol train/ relies on still exists and behaves as assumed.

``train._keras_internals`` is the only module of train/ that touches them; this test calls each
of its functions (``tests/test_layout.py`` checks that none is missed), so a Keras upgrade
that breaks one fails here, by name.
"""
import keras
import numpy as np
import tensorflow as tf

from train import _keras_internals as ki
from train.optim import CoupledSGD, step_schedule


def compiled_model(optimizer=None):
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(3, name="out")(inp))
    model.compile(optimizer=optimizer or keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def test_symbolic_build_then_fit_without_keras_own_build():
    model = compiled_model()
    x, y = np.ones((8, 4), np.float32), np.zeros((8,), np.int64)
    ki.symbolic_build(model, (tf.constant(x), tf.constant(y)))
    assert model.optimizer.built and model.compiled
    ki.skip_symbolic_build(model)
    history = model.fit(x, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])


def test_multi_worker_scalar_reduce_installs_delegates_and_uninstalls():
    keras_own = ki.keras_reduce_per_replica()
    uninstall = ki.install_multi_worker_scalar_reduce()
    try:
        patched = ki.keras_reduce_per_replica()
        assert patched is not keras_own and patched.__wrapped__ is keras_own
        again = ki.install_multi_worker_scalar_reduce()  # wraps Keras' function, not the wrapper
        assert ki.keras_reduce_per_replica().__wrapped__ is keras_own
        again()
        ki.install_multi_worker_scalar_reduce()
        # Outside a multi-worker strategy it is Keras' reduction (asks _collective_all_reduce_multi_worker).
        value = ki.keras_reduce_per_replica()(tf.constant(2.0), tf.distribute.get_strategy(), "auto")
        assert float(value) == 2.0
    finally:
        uninstall()
    assert ki.keras_reduce_per_replica() is keras_own


def test_learning_rate_schedule_is_the_schedule_not_the_next_value():
    schedule = step_schedule(0.1, 10, [1], 0.1)
    model = compiled_model(CoupledSGD(learning_rate=schedule, momentum=0.9, coupled_weight_decay=0.0))
    got = ki.learning_rate_schedule(model.optimizer)
    assert callable(got) and float(got(15)) == float(schedule(15))
    assert float(ki.learning_rate_schedule(keras.optimizers.SGD(0.25))) == 0.25
