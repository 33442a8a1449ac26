"""CI smoke test of an installed grasp_tf: import, prune, one epoch, export, on Keras 3 and tf_keras.

Run from outside the repository with the environment under test (``.ci/run`` does so on the
oldest versions setup.py allows): ``python .ci/smoke.py``. Prints the versions and one line
per check; any failure is an exception and a non-zero exit. ``python .ci/smoke.py --pins
WHEEL`` prints ``name==floor`` for each of FLOORED read from the wheel's requirements, what
``.ci/run`` installs the oldest environment from.
"""
from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

FLOORED = ("tensorflow", "keras", "tf-keras", "tensorflow-model-optimization")


def pins(wheel: str) -> list[str]:
    """``name==floor`` for each FLOORED requirement of ``wheel`` (its ``>=`` bound); a missing floor is an error."""
    import re
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    out = []
    for name in FLOORED:
        req = next((line for line in lines if re.match(rf"Requires-Dist: {re.escape(name)}\b(?![-_])", line)), "")
        floor = re.search(r">=\s*([\w.]+)", req)
        if not floor:
            raise SystemExit(f"error: {wheel} declares no floor for {name} ({req or 'not required'})")
        out.append(f"{name}=={floor.group(1)}")
    return out


def _data(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 8, 8, 1)).astype("float32"), np.arange(n) % 4


def keras3(tmp: str) -> None:
    """Prune a small Keras 3 conv net with GraSP, train one epoch, export and reload it."""
    import keras
    import tensorflow as tf

    import grasp_tf

    x, y = _data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Flatten(), keras.layers.Dense(4)])
    pruned = grasp_tf.prune_model(model, (x, y), sparsity=0.9, method="grasp")
    report = grasp_tf.sparsity_report(pruned)["global"]
    assert report["total"] - report["kept"] == int(report["total"] * 0.9), report
    pruned.compile(keras.optimizers.SGD(0.1, momentum=0.9), metrics=["accuracy"],
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, epochs=1, batch_size=16, verbose=0)
    stripped = grasp_tf.strip_pruning(pruned)  # pruned weights stay exactly zero through training
    zeros = sum(int((np.asarray(w) == 0).sum()) for w in stripped.weights if len(w.shape) > 1)
    assert zeros >= report["total"] - report["kept"], (zeros, report)
    path = os.path.join(tmp, "keras3_export")
    grasp_tf.export_saved_model(pruned, path)
    loaded = tf.saved_model.load(path)
    np.testing.assert_allclose(loaded.serve(x[:4]).numpy(), pruned(x[:4], training=False), atol=1e-5)
    print(f"ok keras3: {report['kept']}/{report['total']} kept, trained one epoch, exported and reloaded")


def tf_keras_model(tmp: str) -> None:
    """Prune a small tf_keras model (tfmot's wrappers), train one epoch, strip it."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    import grasp_tf

    x, y = _data()
    model = tf_keras.Sequential([tf_keras.layers.InputLayer((8, 8, 1)), tf_keras.layers.Conv2D(8, 3),
                                 tf_keras.layers.Flatten(), tf_keras.layers.Dense(4)])
    pruned = grasp_tf.prune_model(model, (x, y), sparsity=0.9, method="snip")
    pruned.compile("sgd", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    report = grasp_tf.sparsity_report(pruned)["global"]
    assert report["total"] - report["kept"] == int(report["total"] * 0.9), report
    stripped = grasp_tf.strip_pruning(pruned)
    zeros = sum(int((np.asarray(w) == 0).sum()) for w in stripped.weights if len(w.shape) > 1)
    assert zeros >= report["total"] - report["kept"], (zeros, report)
    print(f"ok tf_keras: {report['kept']}/{report['total']} kept, trained one epoch, stripped")


def main() -> None:
    import keras
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    print(f"python {sys.version.split()[0]}, tensorflow {tf.__version__}, keras {keras.__version__}, "
          f"tf_keras {tf_keras.__version__}, tfmot {tfmot.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        keras3(tmp)
        tf_keras_model(tmp)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--pins"]:
        print(" ".join(pins(sys.argv[2])))
    else:
        main()
