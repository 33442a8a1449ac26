"""Training-step cost of the fixed-mask wrapper: dense vs wrapped (pruned) models, one device and Mirrored.

For VGG19 and ResNet32x2 on random 32x32x3 batches: the dense model and the same model
wrapped by ``grasp_tf.apply_masks`` (a 98%-sparse random mask; the wrapper's cost does not
depend on the mask), each compiled with SGD + momentum and ``jit_compile=False`` (XLA is
slower on this CPU). Steps are ``train_on_batch`` calls, dense and wrapped alternating so
that both see the same machine load; after warm-up, the median of ``--repeats`` steps gives
the step time, images/s and the wrapped/dense ratio. Strategies: the default (one device) and
``MirroredStrategy`` over two logical CPU devices (configured before TensorFlow starts). Each
(model, strategy) runs in a fresh process.

    python bench/training.py           # full run, writes bench/results/training.{json,md}
    python bench/training.py --quick   # LeNet-300-100, small batch, < 1 minute
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

if __package__ in (None, ""):  # run as `python bench/<script>.py`: bench/ is not installed, import it from here
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402

MODELS = ("vgg19", "resnet32")


def compiled(model):
    """``model`` compiled for training as the runner does (SGD momentum 0.9, logits loss), no XLA."""
    import keras

    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    return model


def measure(model_name: str, strategy_name: str, batch_size: int, repeats: int) -> dict:
    """Median step time of the dense and the wrapped model, alternating, after one warm-up step each."""
    import keras
    import numpy as np

    import grasp_tf
    import models

    strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if strategy_name == "mirrored"
                else tf.distribute.get_strategy())
    keras.utils.set_random_seed(0)
    with strategy.scope():
        dense = models.build(model_name, 10, (32, 32, 3), seed=0)
        masks = grasp_tf.compute_masks(dense, None, 0.98, method="random", seed=0)
        wrapped = compiled(grasp_tf.apply_masks(dense, masks))
        dense = compiled(dense)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch_size, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, size=batch_size)
    first = {name: common.timed(lambda m=m: m.train_on_batch(x, y)) for name, m in (("dense", dense),
                                                                                   ("wrapped", wrapped))}
    times: dict[str, list[float]] = {"dense": [], "wrapped": []}
    for _ in range(repeats):
        for name, m in (("dense", dense), ("wrapped", wrapped)):
            times[name].append(common.timed(lambda m=m: m.train_on_batch(x, y)))
    d, w = common.median(times["dense"]), common.median(times["wrapped"])
    return {"model": model_name, "strategy": strategy_name, "batch_size": batch_size, "repeats": repeats,
            "dense_step_s": d, "wrapped_step_s": w, "wrapped_over_dense": w / d,
            "dense_images_per_s": batch_size / d, "wrapped_images_per_s": batch_size / w,
            "first_step_s": first, "all_s": times}


def table(rows: list[dict]) -> str:
    """Markdown: step times, images/s and the wrapped/dense ratio per model and strategy."""
    return common.markdown_table(
        ["model", "strategy", "batch", "dense step (s)", "wrapped step (s)", "wrapped / dense (ratio of medians)",
         "wrapped / dense (median of per-step ratios)", "dense img/s", "wrapped img/s"],
        [[r["model"], r["strategy"], r["batch_size"], f"{r['dense_step_s']:.3f}", f"{r['wrapped_step_s']:.3f}",
          f"{r['wrapped_over_dense']:.3f}",
          f"{common.median([w / d for d, w in zip(r['all_s']['dense'], r['all_s']['wrapped'])]):.3f}",
          f"{r['dense_images_per_s']:.1f}", f"{r['wrapped_images_per_s']:.1f}"] for r in rows])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="LeNet-300-100, batch 32, 2 repeats, < 1 minute")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--output_dir", default=common.RESULTS)
    p.add_argument("--worker", nargs=2, metavar=("MODEL", "STRATEGY"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    names, batch_size, repeats = (("lenet300",), 32, 2) if args.quick else (MODELS, args.batch_size, args.repeats)
    if args.worker:
        print(json.dumps(measure(*args.worker, batch_size, repeats)))
        return
    info = common.machine()
    rows = []
    for model in names:  # a fresh process each: two MirroredStrategy objects in one process clash in collectives
        for strategy in ("single", "mirrored"):
            rows.append(common.run_worker(os.path.abspath(__file__), [
                "--worker", model, strategy, f"--batch_size={batch_size}", f"--repeats={repeats}"]))
            print(table(rows), flush=True)
    command = "python bench/training.py" + (" --quick" if args.quick else
                                            f" --batch_size={args.batch_size} --repeats={args.repeats}")
    record = {"command": command, "machine": info, "rows": rows}
    common.write_outputs("training_quick" if args.quick else "training", record, table(rows), args.output_dir)


if __name__ == "__main__":
    main()
