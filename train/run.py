"""`python -m train.run --flagfile=...`: prune at initialization, train, evaluate, save; resumable.

Run from the repository root (flagfiles nest with paths relative to it). Rerunning the same
command after a crash resumes from the last completed epoch with the same masks.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging

import train.flags  # noqa: F401  (defines every flag)
from train import artifacts

FLAGS = flags.FLAGS

# Flags that name where/how to run, not what is computed: a resumed run may change them.
NOT_IN_IDENTITY = {"output_dir", "overwrite", "export", "strategy", "jit_compile", "data_dir"}


from train.errors import UsageError, run_cli  # noqa: E402


def config() -> dict:
    """The run's identity: every flag defined in train/flags.py, by name."""
    return {f.name: f.value for f in FLAGS.get_flags_for_module("train.flags")}


def validate(cfg: dict) -> None:
    """Check flag values before anything is created or loaded."""
    from grasp_tf import criteria, masking
    import models
    from train import data

    if cfg["dataset"] not in data.names():
        raise UsageError(f"unknown --dataset={cfg['dataset']!r}; choose one of {', '.join(data.names())}")
    if cfg["model"] not in models.names():
        raise UsageError(f"unknown --model={cfg['model']!r}; choose one of {', '.join(models.names())}")
    if cfg["method"] != "none" and cfg["method"] not in criteria.names():
        raise UsageError(f"unknown --method={cfg['method']!r}; choose one of none, {', '.join(criteria.names())}")
    try:
        masking.check_sparsity(cfg["sparsity"])
    except ValueError as e:
        raise UsageError(f"--sparsity: {e}") from None
    for name in ("epochs", "batch_size"):
        if cfg[name] <= 0:
            raise UsageError(f"--{name} must be positive, got {cfg[name]}")
    if not 0.0 <= cfg["validation_split"] < 1.0:
        raise UsageError(f"--validation_split must be in [0, 1), got {cfg['validation_split']}")
    for b in cfg["lr_boundaries"]:
        try:
            float(b)
        except ValueError:
            raise UsageError(f"--lr_boundaries must be fractions like 0.5,0.75, got {b!r}") from None


def prepare_output_dir(path: str, cfg: dict, overwrite: bool) -> bool:
    """Create (or reuse) the run directory; True if it holds a run to resume."""
    identity = {k: v for k, v in cfg.items() if k not in NOT_IN_IDENTITY}
    existing = artifacts.read_json(os.path.join(path, "config.json"))
    if existing is not None and not overwrite:
        old = {k: v for k, v in existing.items() if k not in NOT_IN_IDENTITY}
        if old != identity:
            diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
            raise UsageError(f"{path} holds a different run (differs in {', '.join(diff)}); "
                             "use another --output_dir or --overwrite")
        return True
    try:
        if overwrite:
            artifacts.clear_run(path)
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".write_test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise UsageError(f"cannot write to --output_dir={path}: {e.strerror}") from None
    artifacts.write_json(os.path.join(path, "config.json"), cfg)
    return False


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
    import keras

    keras.utils.set_random_seed(cfg["seed"])  # tf.data order and augmentation depend on the global seed
    ds = data.load(cfg["dataset"], data_dir=cfg["data_dir"], batch_size=cfg["batch_size"], seed=cfg["seed"],
                   validation_split=cfg["validation_split"], augment=cfg["augment"],
                   train_limit=cfg["train_limit"] or None)
    output_dir = cfg["output_dir"]
    if not pipeline.is_chief(strategy):
        output_dir = pipeline.worker_dir(output_dir, strategy)
    resuming = prepare_output_dir(output_dir, cfg, cfg["overwrite"])
    if resuming and os.path.exists(os.path.join(output_dir, "results.json")):
        print(f"{output_dir} already holds this finished run (results.json); use --overwrite to redo it")
        return 0
    try:
        results = pipeline.run(cfg, ds, strategy)
    except UsageError:
        if not resuming:  # a fresh run that could not start leaves nothing behind
            artifacts.clear_run(output_dir)
            if not os.listdir(output_dir):
                os.rmdir(output_dir)
        raise
    if pipeline.is_chief(strategy):
        print(f"test accuracy {results['final_test_accuracy']:.4f} (best {results['best_test_accuracy']:.4f}), "
              f"sparsity {results['sparsity']['global']['sparsity']:.4f}, results in "
              f"{os.path.join(cfg['output_dir'], 'results.json')}")
    return 0


def _entry(argv: list[str]) -> None:
    """absl entry point: bad input is one line on stderr, exit code 2."""
    from train.data import DataNotFoundError

    run_cli(main, argv, (DataNotFoundError,))


if __name__ == "__main__":
    app.run(_entry)
