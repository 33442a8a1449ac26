"""Export benchmark: on-disk size and CPU latency of every export path for GraSP-pruned VGG19 and ResNet32x2.

    python bench/export.py            # full: VGG19 + ResNet32 (width 2), dense and 90/98/99.5% (~15 min on 2 cores)
    python bench/export.py --quick    # smoke run: ResNet20 (width 1), dense and 98%, magnitude masks (< 1 min)

For each model and sparsity it writes four exports (dense / sparse SavedModel, dense / sparse
TFLite), reports raw and gzipped sizes, and times inference on CIFAR-10-shaped inputs at
batch 1 and 128 (median of interleaved runs, after a warm-up call). It also times the
alternative of computing pruned convolutions sparsely (im2col + ``tf.sparse.sparse_dense_matmul``)
on two VGG19 layers with their real masks, and in a whole VGG19 whose convolutions under 1%
density run that way. Results go to bench/results/export.{json,md} (``--quick``: export_quick.*).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import grasp_tf  # noqa: E402
import models  # noqa: E402

if __package__ in (None, ""):  # run as `python bench/<script>.py`: bench/ is not installed, import it from here
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from grasp_tf import criteria, masking  # noqa: E402
from grasp_tf.prunable import prunable_weights  # noqa: E402

PATHS = ("savedmodel_dense", "savedmodel_sparse", "tflite_dense", "tflite_sparse")
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def scores_for(model: keras.Model, method: str) -> tuple[dict[str, np.ndarray], bool, str]:
    """Scores, their orientation and the method actually used (GraSP on 100 random-normal images, 10/class)."""
    if method == "grasp":
        rng = np.random.default_rng(0)
        x = rng.normal(size=(100,) + tuple(model.input_shape[1:])).astype("float32")
        y = np.repeat(np.arange(10), 10)
        try:
            return grasp_tf.compute_scores(model, (x, y), "grasp", samples_per_class=10, seed=0), \
                criteria.get("grasp").remove_largest, "grasp"
        except Exception as e:  # the criteria code may not be ready: say so and fall back
            print(f"GraSP scoring failed ({type(e).__name__}: {e}); using magnitude", flush=True)
    return {w.key: np.abs(w.variable.numpy()) for w in prunable_weights(model)}, False, "magnitude"


class TFLiteRunner:
    """A TFLite file in TF's interpreter (default XNNPACK delegate), one interpreter per batch size."""

    def __init__(self, path: str):
        self.path, self.interpreters = path, {}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if len(x) not in self.interpreters:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                it = tf.lite.Interpreter(model_path=self.path, num_threads=os.cpu_count())
            it.resize_tensor_input(it.get_input_details()[0]["index"], x.shape)
            it.allocate_tensors()
            self.interpreters[len(x)] = it
        it = self.interpreters[len(x)]
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"])


def timings_ms(runners: dict, x: np.ndarray, reps: int) -> dict[str, tuple[float, float]]:
    """(median, best) wall time per runner on ``x``; runs interleaved so load changes hit every runner alike."""
    times = {k: [] for k in runners}
    for _ in range(reps):
        for k, run in runners.items():
            t = time.perf_counter()
            run(x)
            times[k].append(1000 * (time.perf_counter() - t))
    return {k: (float(np.median(v)), float(np.min(v))) for k, v in times.items()}


def bench_cell(model: keras.Model, label: str, sparsity: float, work: str, x1: np.ndarray, x128: np.ndarray,
               reps1: int, reps128: int) -> list[dict]:
    """Export one pruned model four ways; sizes, load/first-call times, latency, agreement with Keras."""
    tag = f"{label}_{sparsity}"
    reports = {
        "savedmodel_dense": grasp_tf.export_saved_model(model, f"{work}/{tag}_dense", storage="dense"),
        "savedmodel_sparse": grasp_tf.export_saved_model(model, f"{work}/{tag}_sparse", storage="sparse"),
        "tflite_dense": grasp_tf.export_tflite(model, f"{work}/{tag}_dense.tflite", sparse=False),
        "tflite_sparse": grasp_tf.export_tflite(model, f"{work}/{tag}_sparse.tflite", sparse=True),
    }
    runners, first, extra, loaded_objects = {}, {}, {}, []
    for kind in ("dense", "sparse"):
        t = time.perf_counter()
        loaded = tf.saved_model.load(f"{work}/{tag}_{kind}")
        loaded_objects.append(loaded)  # a loaded SavedModel's functions need the object alive
        load_ms = 1000 * (time.perf_counter() - t)
        t = time.perf_counter()
        loaded.serve(x1)
        first[f"savedmodel_{kind}"] = (load_ms, 1000 * (time.perf_counter() - t))
        runners[f"savedmodel_{kind}"] = lambda x, f=loaded.serve: f(x).numpy()
        if kind == "sparse":  # what densifying at every call (instead of once) would add
            loaded.dense_weights()
            extra["densify_ms"] = timings_ms({"d": lambda _: loaded.dense_weights()}, x1, 3)["d"][0]
    for kind in ("dense", "sparse"):
        t = time.perf_counter()
        runner = TFLiteRunner(f"{work}/{tag}_{kind}.tflite")
        runner(x1)
        first[f"tflite_{kind}"] = (0.0, 1000 * (time.perf_counter() - t))
        runners[f"tflite_{kind}"] = runner
    expected = model.predict(x128, verbose=0)
    diffs = {k: float(np.abs(run(x128) - expected).max()) for k, run in runners.items()}
    b1 = timings_ms(runners, x1, reps1)
    b128 = timings_ms(runners, x128, reps128)
    rows = []
    for path in PATHS:
        r = reports[path]
        rows.append({"model": label, "sparsity": sparsity, "path": path,
                     "raw_bytes": r["size"]["raw_bytes"], "gzip_bytes": r["size"]["gzip_bytes"],
                     "params_dense": r["parameters"]["dense"], "params_kept": r["parameters"]["sparse"],
                     "load_ms": first[path][0], "first_call_ms": first[path][1],
                     "b1_ms": b1[path][0], "b1_best_ms": b1[path][1], "b128_ms": b128[path][0],
                     "b128_best_ms": b128[path][1], "max_abs_diff_vs_keras": diffs[path],
                     **(extra if path == "savedmodel_sparse" else {})})
    return rows


def sparse_kernel_layers(model: keras.Model, masks: dict[str, np.ndarray], sparsity: float,
                         layer_names: list[str], reps: int) -> list[dict]:
    """Dense conv2d vs im2col + sparse_dense_matmul on real pruned VGG19 kernels, batch 1 and 128."""
    rows = []
    rng = np.random.default_rng(0)
    for name in layer_names:
        layer = model.get_layer(name)
        kernel = layer.kernel.numpy() * masks[f"{name}/kernel"]
        cin = kernel.shape[2]
        h, w = layer.input.shape[1:3]
        conv = im2col_sparse_conv(kernel)
        dense_k = tf.constant(kernel)
        for batch in (1, 128):
            x = tf.constant(rng.normal(size=(batch, h, w, cin)).astype("float32"))
            dense = tf.function(lambda: tf.nn.conv2d(x, dense_k, 1, "SAME"), autograph=False)
            sparse = tf.function(lambda: conv(x, None), autograph=False)
            err = float(np.abs(dense().numpy() - sparse().numpy()).max())
            t = timings_ms({"dense": lambda _: dense().numpy(), "sparse": lambda _: sparse().numpy()}, None,
                           reps if batch == 1 else max(2, reps // 4))
            rows.append({"layer": name, "shape": list(kernel.shape), "input_hw": [h, w], "sparsity": sparsity,
                         "layer_density": float((kernel != 0).mean()), "batch": batch,
                         "dense_conv_ms": t["dense"][0], "sparse_matmul_ms": t["sparse"][0], "max_abs_diff": err})
    return rows


def im2col_sparse_conv(kernel: np.ndarray):
    """A stride-1 SAME ``convolution_op(inputs, kernel)`` computing with a fixed sparse ``kernel`` via im2col."""
    kh, kw, cin, cout = kernel.shape
    w2 = kernel.reshape(-1, cout).T
    sp = tf.sparse.SparseTensor(np.argwhere(w2 != 0), w2[w2 != 0], w2.shape)

    def conv(inputs, _kernel):
        b, h, w = tf.shape(inputs)[0], inputs.shape[1], inputs.shape[2]
        patches = tf.reshape(tf.image.extract_patches(inputs, [1, kh, kw, 1], [1] * 4, [1] * 4, "SAME"),
                             [-1, kh * kw * cin])
        return tf.reshape(tf.transpose(tf.sparse.sparse_dense_matmul(sp, patches, adjoint_b=True)), [b, h, w, cout])
    return conv


def hybrid_network(pruned: keras.Model, label: str, sparsity: float, x1: np.ndarray, x128: np.ndarray,
                   reps1: int, reps128: int) -> dict:
    """Whole-network latency: all convolutions dense vs those under 1% density computed sparsely."""
    plain = grasp_tf.strip_pruning(pruned)
    spec = [tf.TensorSpec((None,) + x1.shape[1:], tf.float32)]
    dense_fn = tf.function(lambda x: plain(x, training=False), input_signature=spec, autograph=False)
    dense_fn.get_concrete_function()  # traced before the swap below
    chosen = [l for l in plain.layers if isinstance(l, keras.layers.Conv2D) and tuple(l.strides) == (1, 1)
              and l.padding == "same" and (l.kernel.numpy() != 0).mean() < 0.01]
    for layer in chosen:  # bench-only: swap the layer's convolution for the sparse one while tracing
        layer.convolution_op = im2col_sparse_conv(layer.kernel.numpy())
    hybrid_fn = tf.function(lambda x: plain(x, training=False), input_signature=spec, autograph=False)
    ops = [op.type for op in hybrid_fn.get_concrete_function().graph.get_operations()]
    assert ops.count("SparseTensorDenseMatMul") == len(chosen), "the sparse convolutions were not traced"
    diff = float(np.abs(hybrid_fn(x128).numpy() - dense_fn(x128).numpy()).max())
    runners = {"dense": lambda x: dense_fn(x).numpy(), "hybrid": lambda x: hybrid_fn(x).numpy()}
    b1, b128 = timings_ms(runners, x1, reps1), timings_ms(runners, x128, reps128)
    return {"model": label, "sparsity": sparsity, "sparse_layers": [l.name for l in chosen], "max_abs_diff": diff,
            **{f"{k}_b1_ms": b1[k][0] for k in runners}, **{f"{k}_b128_ms": b128[k][0] for k in runners}}


def mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def markdown(meta: dict, rows: list[dict], kernel_rows: list[dict], hybrid_rows: list[dict]) -> str:
    """The tables of bench/results/export.md."""
    def base(r: dict) -> dict:
        return next(b for b in rows if b["model"] == r["model"] and b["sparsity"] == r["sparsity"]
                    and b["path"] == "savedmodel_dense")

    out = f"Command: `{meta['command']}`  \n{meta['date']}, TF {meta['tensorflow']}, Keras {meta['keras']}, " \
          f"{meta['cpus']} CPU cores, load average {meta['load_before']} before / {meta['load_after']} after " \
          f"(shared machine), masks: {meta['methods']}, {meta['seconds']:.0f} s.\n\n"
    out += common.markdown_table(
        ["model", "sparsity", "export", "raw MB", "gzip MB", "raw vs dense SavedModel", "batch 1 ms (best)",
         "batch 128 ms (best)", "first call ms", "max abs diff vs Keras"],
        [[r["model"], f"{r['sparsity']:.1%}", r["path"], mb(r["raw_bytes"]), mb(r["gzip_bytes"]),
          f"1/{base(r)['raw_bytes'] / r['raw_bytes']:.1f}", f"{r['b1_ms']:.1f} ({r['b1_best_ms']:.1f})",
          f"{r['b128_ms']:.0f} ({r['b128_best_ms']:.0f})", f"{r['first_call_ms']:.0f}",
          f"{r['max_abs_diff_vs_keras']:.1e}"] for r in rows])
    sections = [
        ("Densifying the sparse SavedModel's weights (what densify-at-every-call would add to each call; "
         "the export densifies once, at the first call):", ["model", "sparsity", "densify ms"],
         [[r["model"], f"{r['sparsity']:.1%}", f"{r['densify_ms']:.1f}"] for r in rows if "densify_ms" in r]),
        ("Sparse kernels: one pruned VGG19 conv layer computed densely (`tf.nn.conv2d`) vs as "
         "im2col + `tf.sparse.sparse_dense_matmul`:",
         ["layer", "input", "sparsity (model)", "layer density", "batch", "dense conv ms", "sparse matmul ms"],
         [[f"{r['layer']} {r['shape']}", f"{r['input_hw'][0]}x{r['input_hw'][1]}", f"{r['sparsity']:.1%}",
           f"{r['layer_density']:.2%}", r["batch"], f"{r['dense_conv_ms']:.1f}", f"{r['sparse_matmul_ms']:.1f}"]
          for r in kernel_rows]),
        ("Whole VGG19 (Keras graph in a tf.function), every conv dense vs the convs under 1% density "
         "computed as im2col + sparse matmul:",
         ["model", "sparsity", "sparse convs", "dense b1 ms", "hybrid b1 ms", "dense b128 ms", "hybrid b128 ms"],
         [[r["model"], f"{r['sparsity']:.1%}", len(r["sparse_layers"]), f"{r['dense_b1_ms']:.1f}",
           f"{r['hybrid_b1_ms']:.1f}", f"{r['dense_b128_ms']:.0f}", f"{r['hybrid_b128_ms']:.0f}"]
          for r in hybrid_rows]),
    ]
    for title, header, table_rows in sections:
        if table_rows:
            out += f"\n{title}\n\n" + common.markdown_table(header, table_rows)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ResNet20 (width 1), dense and 98%%, magnitude masks")
    args = parser.parse_args()
    t_start = time.perf_counter()
    if args.quick:
        cells, sparsities, method, reps1, reps128 = [("resnet20", 1)], [0.0, 0.98], "magnitude", 5, 2
    else:
        cells, sparsities, method, reps1, reps128 = [("vgg19", None), ("resnet32", 2)], [0.0, 0.9, 0.98, 0.995], \
            "grasp", 15, 3
    meta = {"command": "python bench/export.py" + (" --quick" if args.quick else ""),
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "tensorflow": tf.__version__,
            "keras": keras.__version__, "cpus": os.cpu_count(),
            "load_before": " ".join(f"{v:.1f}" for v in os.getloadavg()), "methods": {}}
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=(1, 32, 32, 3)).astype("float32")
    x128 = rng.normal(size=(128, 32, 32, 3)).astype("float32")
    rows, kernel_rows, hybrid_rows = [], [], []
    with tempfile.TemporaryDirectory() as work:
        for name, width in cells:
            keras.utils.set_random_seed(0)
            model = models.build(name, 10, (32, 32, 3), width=width, seed=0)
            label = name if width is None else f"{name}x{width}"
            t = time.perf_counter()
            scores, remove_largest, used = scores_for(model, method)
            meta["methods"][label] = f"{used} ({time.perf_counter() - t:.0f} s to score)"
            for s in sparsities:
                masks = masking.masks_from_scores(scores, s, remove_largest=remove_largest) if s else None
                pruned = grasp_tf.apply_masks(model, masks) if s else model
                print(f"{label} at {s:.1%} ...", flush=True)
                rows += bench_cell(pruned, label, s, work, x1, x128, reps1, reps128)
                if name == "vgg19" and s:
                    kernel_rows += sparse_kernel_layers(model, masks, s, ["feature.17", "feature.30"], reps1)
                if name == "vgg19" and s >= 0.98:
                    hybrid_rows.append(hybrid_network(pruned, label, s, x1, x128, reps1, reps128))
                for f in os.listdir(work):
                    path = os.path.join(work, f)
                    os.remove(path) if os.path.isfile(path) else shutil.rmtree(path)
                keras.backend.clear_session()
    meta["load_after"] = " ".join(f"{v:.1f}" for v in os.getloadavg())
    meta["seconds"] = time.perf_counter() - t_start
    table = markdown(meta, rows, kernel_rows, hybrid_rows)
    print(table)
    os.makedirs(RESULTS, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    with open(os.path.join(RESULTS, f"export{suffix}.json"), "w") as f:
        json.dump({"meta": meta, "exports": rows, "sparse_kernels": kernel_rows, "hybrid": hybrid_rows}, f,
                  indent=2)
    with open(os.path.join(RESULTS, f"export{suffix}.md"), "w") as f:
        f.write(table)


if __name__ == "__main__":
    main()
