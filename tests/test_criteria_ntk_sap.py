"""NTK-SAP against its closed form on a linear net (with and without batch norm), exact counts, determinism."""
import keras
import numpy as np
import pytest

import grasp_tf
from grasp_tf import criteria

IN, HIDDEN, CLASSES = 5, 7, 2


def linear_net(batch_norm=False):
    layers = [keras.Input((IN,)), keras.layers.Dense(HIDDEN, use_bias=False)]
    layers += [keras.layers.BatchNormalization()] if batch_norm else []
    return keras.Sequential(layers + [keras.layers.Dense(CLASSES, use_bias=False)])


def closed_form(model, seed, repetitions, inputs, batch_size, epsilon, reinit, batch_norm):
    """Σ over summands of ∂/∂m Σ‖f(θ⊙m) - f(ζ⊙m)‖² at m = 1, every gradient by hand (float64).

    With batch norm: its inference form on the unperturbed batch's (biased) moments, shared by both nets.
    """
    rng = np.random.default_rng(seed)
    base = [np.asarray(model.layers[0].kernel), np.asarray(model.layers[-1].kernel)]
    total = [np.zeros(b.shape) for b in base]
    for _ in range(repetitions):
        for start in range(0, inputs, batch_size):
            count = min(batch_size, inputs - start)
            theta = base if reinit == "none" else [
                (rng.standard_normal(b.shape) * np.sqrt(2.0 / b.shape[0])).astype(np.float32) for b in base]
            x = rng.standard_normal((count, IN)).astype(np.float32)
            zeta = [t + np.float32(epsilon) * rng.standard_normal(t.shape).astype(np.float32) for t in theta]
            (w1, w2), (v1, v2), x = [[np.float64(a) for a in t] for t in (theta, zeta)] + [np.float64(x)]
            a, a2 = x @ w1, x @ v1
            mu, scale = (a.mean(0), 1 / np.sqrt(a.var(0) + 1e-3)) if batch_norm else (0.0, 1.0)
            h, h2 = (a - mu) * scale, (a2 - mu) * scale
            d = h @ w2 - h2 @ v2
            g1, g2 = 2 * x.T @ ((d @ w2.T) * scale), 2 * h.T @ d
            g1p, g2p = -2 * x.T @ ((d @ v2.T) * scale), -2 * h2.T @ d
            total[0] += w1 * g1 + v1 * g1p
            total[1] += w2 * g2 + v2 * g2p
    return [np.abs(t) for t in total]


@pytest.mark.parametrize("reinit,batch_norm", [("none", False), ("kaiming_normal", False), ("kaiming_normal", True)])
def test_score_on_a_linear_net_matches_its_closed_form(reinit, batch_norm):
    model = linear_net(batch_norm)
    opts = dict(repetitions=2, inputs_per_class=3, batch_size=4, epsilon=0.01, reinit=reinit)  # batches of 4 and 2
    scores = grasp_tf.compute_scores(model, None, "ntk_sap", seed=7, **opts)
    expected = closed_form(model, 7, 2, 3 * CLASSES, 4, 0.01, reinit, batch_norm)
    for got, want in zip(scores.values(), expected):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-9 * np.abs(want).max())


def test_a_tf_keras_model_gives_the_same_closed_form():
    import tf_keras

    model = tf_keras.Sequential([tf_keras.Input((IN,)), tf_keras.layers.Dense(HIDDEN, use_bias=False),
                                 tf_keras.layers.BatchNormalization(), tf_keras.layers.Dense(CLASSES, use_bias=False)])
    before = [v.numpy() for v in model.variables]
    scores = grasp_tf.compute_scores(model, None, "ntk_sap", seed=3, repetitions=1, inputs_per_class=4)
    expected = closed_form(model, 3, 1, 4 * CLASSES, 256, 0.01, "kaiming_normal", True)
    for got, want in zip(scores.values(), expected):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-9 * np.abs(want).max())
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.variables))  # restored


def conv_net():
    return keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(6, 3), keras.layers.BatchNormalization(),
                             keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])


def test_masks_exact_count_deterministic_and_the_reference_rule():
    model = conv_net()
    n = sum(int(np.prod(w.shape)) for w in (model.layers[0].kernel, model.layers[-1].kernel))
    opts = dict(rounds=3, repetitions=1, inputs_per_class=2)
    masks = grasp_tf.compute_masks(model, None, 0.8, method="ntk_sap", seed=1, **opts)
    assert sum(int(m.size - m.sum()) for m in masks.values()) == int(np.floor(n * 0.8))
    again = grasp_tf.compute_masks(model, None, 0.8, method="ntk_sap", seed=1, **opts)
    assert all(np.array_equal(masks[k], again[k]) for k in masks)
    other = grasp_tf.compute_masks(model, None, 0.8, method="ntk_sap", seed=2, **opts)
    assert any(not np.array_equal(masks[k], other[k]) for k in masks)
    reference = grasp_tf.compute_masks(model, None, 0.8, method="ntk_sap", seed=1, count_rule="reference", **opts)
    assert sum(int(m.size - m.sum()) for m in reference.values()) >= int(n * (1 - 0.2))
    pruned = grasp_tf.prune_model(model, None, 0.8, method="ntk_sap", seed=1, **opts)
    assert all(np.array_equal(grasp_tf.get_masks(pruned)[k], masks[k]) for k in masks)


def test_registered_with_declared_options_and_clear_errors():
    criterion = criteria.get("ntk_sap")
    assert not criterion.needs_data
    assert {"rounds", "repetitions", "epsilon", "inputs_per_class", "batch_size", "reinit", "schedule"} \
        <= set(criterion.mask_options)
    with pytest.raises(ValueError, match="Option epsilon=-1.0 of method 'ntk_sap' is invalid"):
        grasp_tf.compute_masks(conv_net(), None, 0.5, method="ntk_sap", epsilon=-1.0)
