"""ERK/ER densities against the formula with rigl's re-solve, exact counts, and random pruning at those densities."""
import keras
import numpy as np
import pytest

import grasp_tf
from grasp_tf import densities


def test_er_hand_computed_case_where_one_layer_saturates():
    # ER raw p: (100+100)/(100*100) = 0.02 and (100+2)/(100*2) = 0.51. First solve at s=0.5:
    # eps = (5000 + 100) / (0.02*10000 + 0.51*200) = 16.89, and 0.51*eps = 8.6 > 1, so the small
    # layer is made dense; re-solved: eps = (5000 - (200 - 100)) / 200 = 24.5 -> density 0.49.
    assert densities.layer_densities([(100, 100), (100, 2)], 0.5, "er") == pytest.approx([0.49, 1.0], abs=1e-12)
    assert densities.removal_counts([(100, 100), (100, 2)], 0.5, "er") == [5100, 0]
    assert densities.removal_counts([(100, 100), (100, 2)], 0.5, "er", "reference") == [5100, 0]


def test_erk_matches_the_formula_and_keeps_the_budget():
    shapes = [(3, 3, 3, 16), (3, 3, 16, 32), (3, 3, 32, 64), (64, 10)]
    sizes = [int(np.prod(s)) for s in shapes]
    d = densities.layer_densities(shapes, 0.9, "erk")
    raw = [sum(s) / np.prod(s) for s in shapes]
    dense = [i for i, x in enumerate(d) if x == 1.0]
    scaled = [i for i in range(4) if i not in dense]
    eps = d[scaled[0]] / raw[scaled[0]]
    assert all(d[i] == pytest.approx(eps * raw[i]) for i in scaled)  # ∝ Σdims/Πdims
    assert all(raw[i] >= max(raw[j] for j in scaled) for i in dense)  # only the largest p were made dense
    kept_rigl = sum(n - int(np.floor(0.9 * n)) for n in sizes)
    assert sum(x * n for x, n in zip(d, sizes)) == pytest.approx(kept_rigl)
    counts = densities.removal_counts(shapes, 0.9, "erk")
    assert sum(counts) == int(np.floor(sum(sizes) * 0.9))
    assert all(abs((n - c) - x * n) < 2 for c, x, n in zip(counts, d, sizes))


def test_uniform_and_bad_input():
    assert sum(densities.removal_counts([(7, 3), (5, 5)], 0.37, "uniform")) == int(np.floor(46 * 0.37))
    with pytest.raises(ValueError, match="Unknown densities 'erx'"):
        densities.removal_counts([(3, 3)], 0.5, "erx")


def small_model():
    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3), keras.layers.Conv2D(16, 3),
                             keras.layers.Flatten(), keras.layers.Dense(10)])


@pytest.mark.parametrize("kind", ["erk", "er"])
def test_random_masks_hit_each_layers_count_exactly(kind):
    model = small_model()
    masks = grasp_tf.compute_masks(model, None, 0.95, method="random", densities=kind, seed=3)
    shapes = [m.shape for m in masks.values()]
    expected = densities.removal_counts(shapes, 0.95, kind)
    assert [int(m.size - m.sum()) for m in masks.values()] == expected
    again = grasp_tf.compute_masks(model, None, 0.95, method="random", densities=kind, seed=3)
    assert all(np.array_equal(masks[k], again[k]) for k in masks)
    pruned = grasp_tf.prune_model(model, None, 0.95, method="random", densities=kind, seed=3)
    report = grasp_tf.sparsity_report(pruned)["global"]
    assert report["total"] - report["kept"] == int(np.floor(report["total"] * 0.95))


def test_uniform_random_masks_are_unchanged_and_erk_needs_global_scope():
    from grasp_tf import criteria, masking

    model = small_model()
    masks = grasp_tf.compute_masks(model, None, 0.9, method="random", seed=5)
    weights = grasp_tf.prunable.prunable_weights(model)
    old = masking.masks_from_scores(criteria.random.random_scores(model, weights, None, seed=5), 0.9)
    assert all(np.array_equal(masks[k], old[k]) for k in masks)
    with pytest.raises(ValueError, match="densities='erk' .* scope='global'"):
        grasp_tf.compute_masks(model, None, 0.9, method="random", densities="erk", scope="layerwise")
    with pytest.raises(ValueError, match="densities='x'"):
        grasp_tf.compute_masks(model, None, 0.9, method="random", densities="x")
