"""The training recipe's optimiser and schedule match PyTorch's SGD semantics."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from train.optim import CoupledSGD, boundary_epochs, step_schedule


def torch_sgd(w, grads, lrs, momentum, wd):
    """torch.optim.SGD(momentum, weight_decay), written out in float64."""
    w, buf = w.astype("float64"), None
    for g, lr in zip(grads, lrs):
        d = g + wd * w
        buf = d if buf is None else momentum * buf + d
        w = w - lr * buf
    return w


def test_coupled_sgd_matches_torch_across_an_lr_decay():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=5).astype("float32")
    w0[2] = 0.0
    grads = [rng.normal(size=5).astype("float32") for _ in range(6)]
    for g in grads:
        g[2] = 0.0
    schedule = step_schedule(0.1, steps_per_epoch=2, boundaries_epochs=[1, 2])
    var = keras.Variable(w0)
    opt = CoupledSGD(learning_rate=schedule, momentum=0.9, coupled_weight_decay=5e-4)
    for g in grads:
        opt.apply_gradients([(tf.constant(g), var)])
    lrs = [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    np.testing.assert_allclose(var.numpy(), torch_sgd(w0, grads, lrs, 0.9, 5e-4), rtol=1e-5, atol=1e-7)
    assert var.numpy()[2] == 0.0  # a pruned (zero, zero-gradient) weight stays exactly zero


def test_coupled_sgd_config_round_trip_and_no_nesterov():
    opt = CoupledSGD(learning_rate=0.1, momentum=0.9, coupled_weight_decay=1e-4)
    again = CoupledSGD.from_config(opt.get_config())
    assert again.coupled_weight_decay == 1e-4 and again.momentum == 0.9
    with pytest.raises(ValueError, match="Nesterov"):
        CoupledSGD(momentum=0.9, nesterov=True)


def test_boundaries():
    assert boundary_epochs(160, (0.5, 0.75)) == [80, 120]
    assert boundary_epochs(150, every=50) == [50, 100]
    assert boundary_epochs(1, (0.5, 0.75)) == [1]
    s = step_schedule(0.1, 10, [80, 120])
    assert [float(s(i)) for i in (0, 799, 800, 1200)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
