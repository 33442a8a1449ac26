"""PHEW: every kept weight on an input-output path, exact counts, walks biased by |w|, determinism, refusals."""
import keras
import numpy as np
import pytest

import grasp_tf


def conv_net():
    return keras.Sequential([keras.Input((5, 5, 3)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(),
                             keras.layers.ReLU(), keras.layers.Conv2D(6, 2), keras.layers.Flatten(),
                             keras.layers.Dense(8), keras.layers.Dense(3)])


def on_paths(masks, model):
    """Kept weights whose input unit is reachable from the input and whose output unit reaches the output.

    Units are channels; a conv kernel slice [:, :, i, o] joins channel i to o; Flatten's unit p·C + c is
    channel c of position p (Keras' NHWC order). Plain numpy over the masks, independent of the walker.
    """
    (c1, c2, d1, d2) = [masks[f"{n}/kernel"] for n in ("conv2d", "conv2d_1", "dense", "dense_1")]
    joins = [c1.any((0, 1)), c2.any((0, 1))]
    positions = d1.shape[0] // c2.shape[-1]
    fwd = [np.ones(3, bool)]
    for a in joins:
        fwd.append((fwd[-1][:, None] & a).any(0))
    fwd.append(np.tile(fwd[-1], positions))
    fwd.append((fwd[-1][:, None] & d1).any(0))
    bwd = [np.ones(3, bool)]
    bwd.insert(0, (d2 & bwd[0][None, :]).any(1))
    bwd.insert(0, (d1 & bwd[0][None, :]).any(1))
    bwd.insert(0, bwd[0].reshape(positions, -1).any(0))
    for a in reversed(joins):
        bwd.insert(0, (a & bwd[0][None, :]).any(1))
    ok_c1 = ~c1 | (fwd[0][:, None] & bwd[1][None, :])
    ok_c2 = ~c2 | (fwd[1][:, None] & bwd[2][None, :])
    ok_d1 = ~d1 | (fwd[3][:, None] & bwd[4][None, :])
    ok_d2 = ~d2 | (fwd[4][:, None] & bwd[5][None, :])
    return all(np.all(ok) for ok in (ok_c1, ok_c2, ok_d1, ok_d2))


# the first three fail when the last walk is cut anywhere (not only before a kept weight)
@pytest.mark.parametrize("sparsity,seed", [(0.9, 1), (0.97, 1), (0.99, 0), (0.5, 2)])
def test_exact_count_and_every_kept_weight_on_an_input_output_path(sparsity, seed):
    model = conv_net()
    masks = grasp_tf.compute_masks(model, None, sparsity, method="phew", seed=seed)
    n = sum(m.size for m in masks.values())
    assert sum(int(m.size - m.sum()) for m in masks.values()) == int(np.floor(n * sparsity))
    assert on_paths(masks, model)
    reference = grasp_tf.compute_masks(model, None, sparsity, method="phew", seed=seed, count_rule="reference")
    assert sum(int(m.sum()) for m in reference.values()) >= n - int(np.floor(n * sparsity))
    assert on_paths(reference, model)


def test_the_path_check_catches_a_dangling_weight():
    model = conv_net()
    masks = grasp_tf.compute_masks(model, None, 0.97, method="phew", seed=1)
    unit = int(np.argmax(masks["dense/kernel"].sum(0)))  # a hidden unit with kept inputs
    masks["dense_1/kernel"][unit, :] = False  # ... now leads nowhere
    assert not on_paths(masks, model)


def test_deterministic_for_a_seed_and_biased_by_magnitude():
    model = keras.Sequential([keras.Input((40,)), keras.layers.Dense(30), keras.layers.Dense(4)])
    w = np.asarray(model.layers[0].kernel)
    big = np.zeros(w.shape, bool)
    big[:, :5] = True  # 5 of 30 hidden units carry 20x larger weights
    model.layers[0].kernel.assign(np.where(big, 20 * w, w))
    masks = grasp_tf.compute_masks(model, None, 0.9, method="phew", seed=4)
    again = grasp_tf.compute_masks(model, None, 0.9, method="phew", seed=4)
    other = grasp_tf.compute_masks(model, None, 0.9, method="phew", seed=5)
    assert all(np.array_equal(masks[k], again[k]) for k in masks)
    assert any(not np.array_equal(masks[k], other[k]) for k in masks)
    kept = masks["dense/kernel"]
    assert kept[big].mean() > 2 * kept[~big].mean()  # forward walks: 80% into the big units


def residual_net():
    x = inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem")(x)
    y = keras.layers.Conv2D(4, 3, padding="same", name="a")(x)
    y = keras.layers.BatchNormalization()(y)
    x = keras.layers.ReLU()(keras.layers.Add()([x, y]))  # identity shortcut
    y = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="b")(x)
    s = keras.layers.Conv2D(8, 1, strides=2, name="shortcut")(x)
    x = keras.layers.Concatenate()([keras.layers.Add()([y, s]), keras.layers.MaxPooling2D()(x)])
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))


def test_residual_adds_concatenate_and_prune_model():
    model = residual_net()
    masks = grasp_tf.compute_masks(model, None, 0.8, method="phew", seed=0)
    n = sum(m.size for m in masks.values())
    assert sum(int(m.size - m.sum()) for m in masks.values()) == int(np.floor(n * 0.8))
    assert all(m.any() for m in masks.values())  # the walks reach every kernel, the 1x1 shortcut too
    pruned = grasp_tf.prune_model(model, None, 0.8, method="phew", seed=0)
    assert all(np.array_equal(grasp_tf.get_masks(pruned)[k], masks[k]) for k in masks)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.d = keras.layers.Dense(3)

    def call(self, x):
        return self.d(x)


def test_refusals_name_what_is_unsupported():
    reshaping = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3), keras.layers.Reshape((8,)),
                                  keras.layers.Dense(3, name="out")])
    with pytest.raises(ValueError, match=r"cannot walk through layer 'reshape' \(Reshape\)"):
        grasp_tf.compute_masks(reshaping, None, 0.5, method="phew")
    sub = Subclassed()
    sub(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="subclassed"):
        grasp_tf.compute_masks(sub, None, 0.5, method="phew")
    with pytest.raises(ValueError, match="scope='global'"):
        grasp_tf.compute_masks(conv_net(), None, 0.5, method="phew", scope="layerwise")
    with pytest.raises(ValueError, match="no per-weight scores"):
        grasp_tf.compute_scores(conv_net(), None, "phew")
