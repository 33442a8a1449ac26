"""The tf_keras path: tfmot's own PruneLowMagnitude with pinned masks, run in a subprocess.

Importing tensorflow_model_optimization switches a process to legacy Keras, so the whole
path runs in a fresh interpreter and reports failures through its exit status.
"""
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(r"""
    import sys
    import numpy as np
    import tf_keras
    import grasp_tf
    from grasp_tf.prunable import prunable_weights
    from grasp_tf import keys
    assert "tensorflow_model_optimization" not in sys.modules, "import grasp_tf must not import tfmot"

    def check_zeros(model, masks):
        table = keys.index(model)
        for key, mask in masks.items():
            value = table.by_key[key].variable.numpy()
            assert np.count_nonzero(value[~mask]) == 0, key

    tf_keras.utils.set_random_seed(0)
    L = tf_keras.layers
    model = tf_keras.Sequential([
        L.Conv2D(4, 3, input_shape=(8, 8, 1), name="conv"),
        L.DepthwiseConv2D(3, name="dw"),  # tfmot's registry would not prune it; our mask is pinned anyway
        L.Flatten(),
        L.Dense(6, name="dense"),
        L.Dense(3, name="out"),
    ])
    rng = np.random.default_rng(0)
    masks = {pw.key: rng.random(tuple(pw.variable.shape)) < 0.5 for pw in prunable_weights(model)}
    before = [w.copy() for w in model.get_weights()]
    pruned = grasp_tf.apply_masks(model, masks)

    import tensorflow_model_optimization as tfmot
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())), "caller's model changed"
    assert [type(l).__name__ for l in pruned.layers] == ["PruneLowMagnitude"] * 2 + ["Flatten"] + ["PruneLowMagnitude"] * 2
    check_zeros(pruned, masks)

    x = rng.random((32, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 32)
    start = keys.index(pruned).by_key["dense/kernel"].variable.numpy()
    pruned.compile(optimizer=tf_keras.optimizers.SGD(0.1, momentum=0.9),
                   loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    assert int(pruned.layers[0].pruning_step.numpy()) == 8
    got = grasp_tf.get_masks(pruned)
    assert set(got) == set(masks) and all(np.array_equal(got[k], masks[k]) for k in masks), "masks re-pruned"
    check_zeros(pruned, masks)
    assert not np.array_equal(keys.index(pruned).by_key["dense/kernel"].variable.numpy(), start), "did not train"
    report = grasp_tf.sparsity_report(pruned)["global"]
    assert report["kept"] == sum(int(m.sum()) for m in masks.values()), report

    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    assert [type(l).__name__ for l in stripped.layers] == ["Conv2D", "DepthwiseConv2D", "Flatten", "Dense", "Dense"]
    check_zeros(stripped, masks)
    np.testing.assert_array_equal(stripped(x).numpy(), pruned(x).numpy())

    # A model whose masks are tfmot's registry defaults reloads inside prune_scope.
    inp = L.Input((6,))
    small = tf_keras.Model(inp, L.Dense(3, name="d2")(L.Dense(5, name="d1")(inp)))
    small_masks = {pw.key: rng.random(tuple(pw.variable.shape)) < 0.5 for pw in prunable_weights(small)}
    path = sys.argv[1] + "/small.keras"
    grasp_tf.apply_masks(small, small_masks).save(path)
    with tfmot.sparsity.keras.prune_scope():
        loaded = tf_keras.models.load_model(path)
    got = grasp_tf.get_masks(loaded)
    assert all(np.array_equal(got[k], small_masks[k]) for k in small_masks)
    assert type(loaded.layers[1].pruning_schedule).__name__ == "PinnedMasks"
    plain = grasp_tf.strip_pruning(loaded)
    assert not any(type(l).__name__ == "PruneLowMagnitude" for l in plain.layers)
    check_zeros(plain, small_masks)
    print("ok")
""")


def test_tf_keras_model_is_pruned_with_tfmot_and_strips_with_tfmot(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
