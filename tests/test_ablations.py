"""The sanity-check ablations (Frankle et al. 2021) as options: invert, shuffle (= density random), reinitialize."""
import keras
import numpy as np
import pytest

import grasp_tf
from grasp_tf import masking

CLASSES = 4


def net(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(8, 3, use_bias=False, name="conv"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.ReLU(),
        keras.layers.Flatten(),
        keras.layers.Dense(16, name="fc1"),
        keras.layers.Dense(CLASSES, name="fc2"),
    ])


def sample(n=24):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 8, 8, 3)).astype("float32"), np.arange(n) % CLASSES


def counts(masks):
    return {k: int(m.sum()) for k, m in masks.items()}


@pytest.mark.parametrize("method", ["grasp", "snip", "magnitude"])
def test_invert_removes_what_the_method_keeps_and_the_same_number(method):
    model, data = net(), sample()
    scores = grasp_tf.compute_scores(model, data, method, seed=0)
    masks = grasp_tf.compute_masks(model, data, 0.9, method, seed=0)
    inverted = grasp_tf.compute_masks(model, data, 0.9, method, seed=0, invert=True)
    total = sum(m.size for m in masks.values())
    assert sum(int(m.sum()) for m in inverted.values()) == sum(int(m.sum()) for m in masks.values()) \
        == total - int(np.floor(total * 0.9))
    flat = np.concatenate([scores[k].ravel() for k in sorted(scores)])
    kept = np.concatenate([masks[k].ravel() for k in sorted(masks)])
    kept_inv = np.concatenate([inverted[k].ravel() for k in sorted(inverted)])
    # The method keeps the best-ranked weights; inverted keeps the worst-ranked ones.
    if grasp_tf.criteria.get(method).remove_largest:
        assert flat[kept_inv].min() >= flat[~kept_inv].max() and flat[kept].max() <= flat[~kept].min()
    else:
        assert flat[kept_inv].max() <= flat[~kept_inv].min() and flat[kept].min() >= flat[~kept].max()
    assert not np.any(kept & kept_inv)  # at 90% the two kept sets are disjoint


def test_invert_is_refused_for_an_iterative_method():
    with pytest.raises(ValueError, match="invert=True needs a one-shot method; 'synflow'"):
        grasp_tf.compute_masks(net(), None, 0.9, "synflow", invert=True)


def test_shuffle_keeps_per_layer_counts_exactly_and_moves_the_weights():
    model, data = net(), sample()
    masks = grasp_tf.compute_masks(model, data, 0.95, "grasp", seed=0)
    shuffled = grasp_tf.compute_masks(model, data, 0.95, "grasp", seed=0, shuffle=True)
    assert counts(shuffled) == counts(masks)
    for k in masks:
        assert shuffled[k].shape == masks[k].shape
    assert all(not np.array_equal(shuffled[k], masks[k]) for k in masks)  # Synaptic-Flow's shuffle is a no-op


def test_shuffle_is_random_masks_at_the_methods_per_layer_densities():
    """The result depends on the masks only through their per-layer counts: two different mask
    sets with equal counts shuffle to identical masks, so shuffling *is* density-matched random."""
    model, data = net(), sample()
    grasp = grasp_tf.compute_masks(model, data, 0.95, "grasp", seed=0)
    rng = np.random.default_rng(7)
    other = {}
    for k, m in grasp.items():  # other positions, the same per-layer counts
        flat = np.zeros(m.size, bool)
        flat[rng.choice(m.size, int(m.sum()), replace=False)] = True
        other[k] = flat.reshape(m.shape)
    assert any(not np.array_equal(other[k], grasp[k]) for k in grasp)
    a, b = masking.shuffle_within_layers(grasp, seed=3), masking.shuffle_within_layers(other, seed=3)
    for k in grasp:
        np.testing.assert_array_equal(a[k], b[k])


def test_reinitialize_applies_the_scored_masks_to_another_initialization():
    model, fresh, data = net(seed=0), net(seed=1), sample()
    masks = grasp_tf.compute_masks(model, data, 0.9, "snip", seed=0)
    pruned = grasp_tf.prune_model(model, data, 0.9, "snip", seed=0, reinitialize=fresh)
    got = grasp_tf.get_masks(pruned)
    for k in masks:
        np.testing.assert_array_equal(got[k], masks[k])
    plain = grasp_tf.strip_pruning(pruned)
    for layer in ("conv", "fc1", "fc2"):
        k, kernel, fresh_kernel = f"{layer}/kernel", plain.get_layer(layer).kernel.numpy(), \
            fresh.get_layer(layer).kernel.numpy()
        np.testing.assert_array_equal(kernel[masks[k]], fresh_kernel[masks[k]])  # the fresh values are kept
        assert np.all(kernel[~masks[k]] == 0)
        assert not np.array_equal(fresh_kernel, model.get_layer(layer).kernel.numpy())


def test_pruning_a_pruned_model_is_refused_with_a_clear_error():
    model, data = net(), sample()
    pruned = grasp_tf.prune_model(model, data, 0.9, "snip", seed=0)
    with pytest.raises(ValueError, match=r"model is already pruned: 3 weights of layers conv, fc1, fc2 hold masks"):
        grasp_tf.prune_model(pruned, data, 0.9, "snip", seed=0)
