"""One training run: data -> model -> prune at init -> fit (strategy, checkpoints) -> results."""
from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Any

import keras
import tensorflow as tf

import grasp_tf
import models
from train import _keras_internals, artifacts, data
from train.checkpoint import Checkpoints, EpochCheckpoint, check_masks, weights_bytes
from train.errors import UsageError
from train.optim import CoupledSGD, boundary_epochs, step_schedule


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy: every local GPU, else every logical CPU device, for mirrored."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices=devices)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker run."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker"
                                             and resolver.task_id == 0)


def worker_dir(output_dir: str, strategy: tf.distribute.Strategy) -> str:
    """Where this process writes: the run dir for the chief, a private subdir for other workers."""
    if is_chief(strategy):
        return output_dir
    r = strategy.cluster_resolver
    return os.path.join(output_dir, ".workers", f"{r.task_type}_{r.task_id}")


def scoring_data(cfg: dict, ds: data.Data) -> tuple[Any, dict]:
    """What the pruning library scores on, drawn from the shuffled, augmented training stream."""
    if cfg["samples_per_class"] > 0:
        # Enough passes for every draw if each class is present, so a missing class ends the
        # stream (one clear error) instead of an endless search.
        # Iterative methods (FORCE, ProsPr) draw a fresh sample per round or step.
        samples = grasp_tf.criteria.get(cfg["method"]).samples_needed(method_options(cfg))
        wanted = cfg["samples_per_class"] * ds.num_classes * cfg["num_draws"] * samples
        passes = 1 + 3 * -(-wanted // ds.train_size)  # 3x: a draw skips what its full classes meet
        return ds.train_stream().take(passes * ds.train_size).batch(256), {
            "samples_per_class": cfg["samples_per_class"], "num_draws": cfg["num_draws"]}
    # Not class-balanced (the reference's ImageNet setting): each random batch is one draw.
    return ds.train_stream().batch(cfg["scoring_batch_size"]), {"num_draws": cfg["scoring_batches"]}


def method_options(cfg: dict) -> dict:
    """``compute_masks``'s keywords for this run: the common ones and every option the method takes,
    as ``cfg`` holds them (``train.flags.method_values``: given or the method's default)."""
    opts: dict[str, Any] = {"seed": cfg["seed"], "scope": cfg["scope"], "shuffle": cfg["shuffle_masks"],
                            "invert": cfg["invert_masks"]}
    from train import flags  # train.run's flags (defined on import): only a run needs them

    opts.update(flags.library_options(cfg))
    return opts


def compute_or_load_masks(cfg: dict, model: keras.Model, ds: data.Data, out: str, log) -> tuple[dict | None, float]:
    """The run's masks: loaded if a resumed run saved them, else scored now and saved first."""
    if cfg["method"] == "none":
        return None, 0.0
    path = os.path.join(out, "masks.npz")
    if os.path.exists(path):
        log(f"resuming: masks loaded from {path}")
        return artifacts.load_masks(path), (artifacts.read_json(os.path.join(out, "pruning.json")) or {}).get(
            "scoring_seconds", 0.0)
    sample, sample_opts = scoring_data(cfg, ds)
    if not grasp_tf.criteria.get(cfg["method"]).takes_sampling_options:  # synflow: data-free
        sample_opts = {}
    log(f"pruning {cfg['sparsity']:.2%} of {cfg['model']} with {cfg['method']} ...")
    t0 = time.perf_counter()
    try:
        masks = grasp_tf.compute_masks(model, sample, cfg["sparsity"], cfg["method"],
                                       **sample_opts, **method_options(cfg))
    except ValueError as e:  # the library's clear message for bad input (classes, options, ...)
        raise UsageError(f"pruning with --method={cfg['method']} failed: {e}") from e
    artifacts.crash_point("scoring")  # scored, nothing saved yet
    seconds = time.perf_counter() - t0
    log(f"scored in {seconds:.1f}s")
    return masks, seconds


def warn_if_disconnected(model: keras.Model, cfg: dict) -> None:
    """One stderr line when the masks leave no input-to-output path: the network's output cannot learn from its input."""
    found = grasp_tf.sparsity_report(model)["global"]
    if found.get("effective_sparsity") is not None and found["effective_sparsity"] >= 1.0:
        print(f"warning: --method={cfg['method']} at --sparsity={cfg['sparsity']:g} leaves no path from the input "
              "to the output (effective sparsity 100%), so the output cannot depend on the input; training goes on, "
              "but try a lower --sparsity or another --method", file=sys.stderr, flush=True)


def prepare_multi_worker_fit(model: keras.Model, ds: data.Data, strategy: tf.distribute.Strategy) -> None:
    """Work around keras-team/keras#20585 (Keras 3 ``fit`` under MultiWorkerMirroredStrategy).

    Keras all-reduces a sample batch eagerly to build metrics, and reduces scalar step
    outputs with ``axis=0``; both fail. Build from one plain batch instead, and reduce
    scalars over replicas with ``axis=None``.
    """
    x, y = next(iter(ds.test.take(1)))
    with strategy.scope():
        _keras_internals.symbolic_build(model, (x, y))
    _keras_internals.skip_symbolic_build(model)
    _keras_internals.install_multi_worker_scalar_reduce()


class TestMetrics(keras.callbacks.Callback):
    """Adds test loss/accuracy and the learning rate to each epoch's logs."""

    def __init__(self, test: tf.data.Dataset):
        super().__init__()
        self.test = test

    def on_epoch_end(self, epoch, logs=None):
        loss, acc = self.model.evaluate(self.test, verbose=0)
        opt = self.model.optimizer
        schedule = _keras_internals.learning_rate_schedule(opt)  # not the *next* step's value
        lr = schedule(opt.iterations - 1) if callable(schedule) else schedule
        logs.update(test_loss=float(loss), test_accuracy=float(acc), lr=float(lr))


def run(cfg: dict, ds: data.Data, strategy: tf.distribute.Strategy) -> dict:
    """Train one configuration to the end; returns (and writes) results.json's content.

    Resumable at any point: masks come from ``masks.npz`` if saved, training from the newest
    valid checkpoint, and each epoch's batches are a pure function of (seed, epoch), so a
    resumed run ends bit-identical (on CPU) to one never interrupted.
    """
    t_start = time.perf_counter()
    out = worker_dir(cfg["output_dir"], strategy)
    chief = is_chief(strategy)
    os.makedirs(out, exist_ok=True)
    log = (lambda msg: print(msg, flush=True)) if chief else (lambda msg: None)
    keras.utils.set_random_seed(cfg["seed"])
    jit = cfg["jit_compile"] if cfg["jit_compile"] is not None else bool(tf.config.list_physical_devices("GPU"))

    def build(seed: int) -> keras.Model:
        return models.build(cfg["model"], ds.num_classes, ds.input_shape, init=cfg["init"],
                            width=cfg["width"] or None, seed=seed)

    with strategy.scope():
        model = build(cfg["seed"])
        masks, scoring_seconds = compute_or_load_masks(cfg, model, ds, out, log)
        if masks is not None:
            fresh = not os.path.exists(os.path.join(out, "masks.npz"))
            if fresh:
                artifacts.write_json(os.path.join(out, "pruning.json"), {"scoring_seconds": scoring_seconds})
                artifacts.save_masks(os.path.join(out, "masks.npz"), masks)
            if cfg["reinit_weights"]:  # the reinitialize ablation: same masks, another draw of the weights
                model = build(cfg["seed"] + 1)
            model = grasp_tf.apply_masks(model, masks)
            if fresh and chief:
                warn_if_disconnected(model, cfg)
        steps = min(cfg["steps_per_epoch"] or ds.steps_per_epoch, ds.steps_per_epoch)
        bounds = boundary_epochs(cfg["epochs"], [float(b) for b in cfg["lr_boundaries"]], cfg["lr_step_epochs"])
        optimizer = CoupledSGD(learning_rate=step_schedule(cfg["lr"], steps, bounds, cfg["lr_decay"]),
                               momentum=cfg["momentum"], coupled_weight_decay=cfg["weight_decay"])
        model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], jit_compile=jit)
        checkpoints = Checkpoints(os.path.join(out, "backup"))
        first_epoch, rows = checkpoints.restore(model, warn=lambda msg: print(msg, file=sys.stderr, flush=True))
        if first_epoch and masks is not None:  # the checkpoint holds the masks too: they must be masks.npz's
            check_masks(model, masks, first_epoch, os.path.join(out, "masks.npz"))
    metrics_csv = os.path.join(out, "metrics.csv")
    artifacts.write_metrics(metrics_csv, rows)  # derived from the checkpoint: a row it lacks is redone
    if first_epoch:
        log(f"resuming: epoch {first_epoch} of {cfg['epochs']} restored from {checkpoints.directory}")

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        prepare_multi_worker_fit(model, ds, strategy)
    callbacks = [  # order matters: the checkpoint takes the test metrics into its row
        TestMetrics(ds.test),
        EpochCheckpoint(checkpoints, rows, metrics_csv),
        keras.callbacks.TensorBoard(os.path.join(out, "tensorboard")),
    ]
    if first_epoch < cfg["epochs"]:
        model.fit(ds.train_epochs(first_epoch, steps), epochs=cfg["epochs"], initial_epoch=first_epoch,
                  steps_per_epoch=steps, validation_data=ds.validation, callbacks=callbacks, shuffle=False,
                  verbose=1 if (chief and sys.stdout.isatty()) else (2 if chief else 0))
    rows = callbacks[1].rows

    test_acc = [float(r["test_accuracy"]) for r in rows]
    report = grasp_tf.sparsity_report(model)
    results = {
        "config": cfg,
        "final_test_accuracy": test_acc[-1],
        "best_test_accuracy": max(test_acc),
        "epochs_completed": len(rows),
        "sparsity": report,
        "scoring_seconds": scoring_seconds,
        "wall_seconds": time.perf_counter() - t_start,
        "machine": artifacts.machine(),
    }
    if chief:
        artifacts.save_model(model, os.path.join(out, "model.keras"), nbytes=weights_bytes(model))
        if cfg["export"]:  # overwrite: a run that crashed after exporting exports again on resume
            exported = grasp_tf.export_saved_model(model, os.path.join(out, "export"), overwrite=True)
            # What identical runs reproduce: the gzipped size (export/sparsity.json) depends on file times.
            results["export"] = {"parameters": exported["parameters"], "raw_bytes": exported["size"]["raw_bytes"],
                                 "files": exported["size"]["files"]}
            log(f"exported a sparse SavedModel to {os.path.join(out, 'export')}")
        artifacts.crash_point("before_results")
        artifacts.write_json(os.path.join(out, "results.json"), results)
    shutil.rmtree(checkpoints.directory, ignore_errors=True)  # the run is complete: results.json holds it
    return results
