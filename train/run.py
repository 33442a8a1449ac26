"""`python -m train.run --flagfile=...`: prune at initialization, train, evaluate, save; resumable.

Run from the repository root (flagfiles nest with paths relative to it). Rerunning the same
command after a crash resumes from the last completed epoch with the same masks.
"""
from __future__ import annotations

import os

from absl import flags, logging

import train.quiet  # noqa: F401  (first: notes whether the user set TF's log level)

import train.flags  # noqa: F401  (defines every flag)
from train import artifacts

FLAGS = flags.FLAGS

NOT_IN_IDENTITY = artifacts.EXECUTION_FLAGS  # where/how to run, not what is computed: a resume may change them


from train.errors import UsageError, run_app  # noqa: E402
from train.lock import RunLock  # noqa: E402


def config() -> dict:
    """The run's identity: every flag defined in train/flags.py, by name."""
    return {f.name: f.value for f in FLAGS.get_flags_for_module("train.flags")}


def validate(cfg: dict) -> None:
    """Check what flag parsing cannot (names, combinations) before anything is created or loaded."""
    from grasp_tf import criteria
    import models
    from train import data

    if cfg["dataset"] not in data.names():
        raise UsageError(f"unknown --dataset={cfg['dataset']!r}; choose one of {', '.join(data.names())}")
    if cfg["model"] not in models.names():
        raise UsageError(f"unknown --model={cfg['model']!r}; choose one of {', '.join(models.names())}")
    if cfg["method"] != "none" and cfg["method"] not in criteria.names():
        raise UsageError(f"unknown --method={cfg['method']!r}; choose one of none, {', '.join(criteria.names())}")
    ablations = [f"--{k}" for k in ("shuffle_masks", "invert_masks", "reinit_weights") if cfg[k]]
    if cfg["method"] == "none" and ablations:
        raise UsageError(f"{ablations[0]} needs a pruning --method (got --method=none)")


def _same_run(old: dict, new: dict) -> list[str]:
    """Flags in which two runs' identities differ; a flag the older run predates counts as its default."""
    defaults = {f.name: f.default for f in FLAGS.get_flags_for_module("train.flags")}
    keys = (set(old) | set(new)) - NOT_IN_IDENTITY
    return sorted(k for k in keys if old.get(k, defaults.get(k)) != new.get(k, defaults.get(k)))


def prepare_output_dir(path: str, cfg: dict, overwrite: bool) -> bool:
    """Make the (locked) run directory ready; True if it holds this run to resume."""
    existing = artifacts.read_json(os.path.join(path, "config.json"))
    if existing is not None and not overwrite:
        diff = _same_run(existing, cfg)
        if diff:
            raise UsageError(f"{path} holds a different run (differs in {', '.join(diff)}); "
                             "use another --output_dir or --overwrite")
        return True
    try:
        os.makedirs(path, exist_ok=True)  # the chief's lock made it; a worker's private directory is made here
        if overwrite:
            artifacts.clear_run(path)
        artifacts.write_json(os.path.join(path, "config.json"), cfg)
    except OSError as e:
        raise UsageError(f"cannot write to --output_dir={path}: {e.strerror}") from None
    return False


def _remove_fresh(path: str, created: bool) -> None:
    """Undo a fresh run that could not start: our files, and the directory if we made it."""
    artifacts.clear_run(path)
    if created and os.path.isdir(path) and not os.listdir(path):
        os.rmdir(path)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]} (flags need --name=value)")
    logging.set_verbosity(logging.WARNING)  # tf.distribute logs every all-reduce at INFO
    cfg = config()
    validate(cfg)
    if cfg["cpu_devices"] > 1:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cfg["cpu_devices"])
    from train import data, pipeline

    strategy = pipeline.make_strategy(cfg["strategy"])  # before any other TF op (multi-worker needs it)
    chief = pipeline.is_chief(strategy)
    output_dir = cfg["output_dir"] if chief else pipeline.worker_dir(cfg["output_dir"], strategy)
    created = not os.path.exists(output_dir)
    lock = RunLock(output_dir)
    if chief:  # one writer per run directory; other workers write to their own subdirectories
        lock.acquire()
    resuming = False
    try:
        resuming = prepare_output_dir(output_dir, cfg, cfg["overwrite"])
        if resuming and os.path.exists(os.path.join(output_dir, "results.json")):
            print(f"{output_dir} already holds this finished run (results.json); use --overwrite to redo it")
            return 0
        import keras

        keras.utils.set_random_seed(cfg["seed"])  # unseeded Keras and TF randomness follows --seed too
        try:
            ds = data.load(cfg["dataset"], data_dir=cfg["data_dir"], batch_size=cfg["batch_size"],
                           seed=cfg["seed"], validation_split=cfg["validation_split"], augment=cfg["augment"],
                           train_limit=cfg["train_limit"] or None, test_limit=cfg["test_limit"] or None)
        except data.DataNotFoundError as e:
            raise UsageError(str(e)) from None
        except ValueError as e:
            raise UsageError(f"--dataset={cfg['dataset']}: {e}") from None
        results = pipeline.run(cfg, ds, strategy)
    except UsageError:
        if not resuming:  # a fresh run that could not start leaves nothing behind
            lock.release()
            _remove_fresh(output_dir, created)
        raise
    finally:
        lock.release()
    if chief:
        print(f"test accuracy {results['final_test_accuracy']:.4f} (best {results['best_test_accuracy']:.4f}), "
              f"sparsity {results['sparsity']['global']['sparsity']:.4f}, results in "
              f"{os.path.join(cfg['output_dir'], 'results.json')}")
    return 0


if __name__ == "__main__":
    run_app(main)
