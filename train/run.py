"""`python -m train.run --flagfile=...`: prune at initialization, train, evaluate, save; resumable.

Run from any directory; --flagfile takes a path or a built-in config name (quickstart,
paper/<cell>; train/flagfiles.py). Rerunning the same command after a crash resumes from the
last completed epoch with the same masks.
"""
from __future__ import annotations

import os
import signal
import sys

from absl import flags, logging

import train.flags  # noqa: F401  (defines every flag)
import train.quiet  # noqa: F401  (first: notes whether the user set TF's log level)
from train import artifacts, rundir

FLAGS = flags.FLAGS

NOT_IN_IDENTITY = artifacts.EXECUTION_FLAGS  # where/how to run, not what is computed: a resume may change them


from train.errors import EnvironmentFault, UsageError, run_app  # noqa: E402
from train.lock import RunLock  # noqa: E402


def config() -> dict:
    """The run's identity: every flag defined in train/flags.py, by name; a method option's flag holds
    the value the method uses (its default when not given; None when it takes no such option)."""
    cfg = {f.name: f.value for f in FLAGS.get_flags_for_module("train.flags")}
    return {**cfg, **train.flags.method_values(cfg["method"])}


def validate(cfg: dict) -> None:
    """Check what flag parsing cannot (names, combinations) before anything is created or loaded."""
    import models
    from grasp_tf import criteria
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


def prepare_output_dir(path: str, cfg: dict, overwrite: bool) -> tuple[set[str] | None, list[str]]:
    """Make the (locked) run directory ready, or refuse touching nothing.

    Returns (None if it holds this run to resume, else the run names present before this
    process wrote any, which a failed fresh start must keep; the directories it created).
    """
    existing = _read(os.path.join(path, "config.json"))
    if existing is not None and not overwrite:
        diff = _same_run(existing, cfg)
        if diff:
            raise UsageError(f"{path} holds a different run (differs in {', '.join(diff)}); "
                             "use another --output_dir or --overwrite")
        for name in rundir.run_names(path):  # temporaries of a run of this directory that died: never renamed
            if name.startswith(".tmp-") and os.path.isfile(os.path.join(path, name)):
                try:
                    os.remove(os.path.join(path, name))
                except OSError:
                    pass
        return None, []
    present = {n for n in rundir.run_names(path) if not n.startswith(".tmp-")}  # a killed first write's temporary
    if present and not overwrite:  # another tool's files, or files a run would reuse or overwrite: never ours
        raise UsageError(f"{path} holds {', '.join(sorted(present))} but no config.json of a run; use another "
                         "--output_dir, or --overwrite to delete them")
    try:
        created = rundir.make_dirs(path)  # the chief's lock made it; a worker's private directory is made here
        if overwrite:
            rundir.clear_run(path)
        before = rundir.run_names(path)
        artifacts.write_json(os.path.join(path, "config.json"), cfg)
    except OSError as e:
        raise artifacts.write_error(e, f"--output_dir={path}") from None
    return before, created


def _read(path: str):
    try:
        return artifacts.read_json(path)
    except artifacts.CorruptFile as e:
        raise UsageError(f"{e}; use another --output_dir or --overwrite") from None


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _one_line(e: BaseException, output_dir: str) -> BaseException:
    """The exception a failure of the run becomes: one line, exit 2 for bad input, 1 for the machine's fault."""
    if isinstance(e, (UsageError, EnvironmentFault, KeyboardInterrupt, Terminated, SystemExit)):
        return e
    if isinstance(e, artifacts.CorruptFile):
        return UsageError(f"{e}; restore it, or start again with --overwrite")
    if isinstance(e, OSError) and e.errno in artifacts.MID_RUN_ERRNOS:
        return EnvironmentFault(f"{e.filename or output_dir}: {e.strerror or os.strerror(e.errno)} (the run "
                                "stopped there; fix that, then rerun the same command to resume)")
    return e


def _checkpointed(output_dir: str) -> list[int]:
    from train.checkpoint import Checkpoints  # imports Keras: not before the flags are checked

    return Checkpoints(os.path.join(output_dir, "backup")).epochs()


def _interrupted_at(output_dir: str, epochs: int) -> int:
    """The epoch in progress: one past the newest checkpoint."""
    return min(epochs, 1 + max(_checkpointed(output_dir), default=0))


def _worth_resuming(output_dir: str, before: set[str]) -> bool:
    """True once this fresh run saved something costly to redo (its masks or a checkpoint)."""
    return ("masks.npz" not in before and os.path.exists(os.path.join(output_dir, "masks.npz"))) or bool(
        _checkpointed(output_dir))


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]} (flags need --name=value)")
    logging.set_verbosity(logging.WARNING)  # tf.distribute logs every all-reduce at INFO
    cfg = config()
    validate(cfg)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if cfg["cpu_devices"] > 1:
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cfg["cpu_devices"])
    from train import data, pipeline

    strategy = pipeline.make_strategy(cfg["strategy"])  # before any other TF op (multi-worker needs it)
    chief = pipeline.is_chief(strategy)
    output_dir = cfg["output_dir"] if chief else pipeline.worker_dir(cfg["output_dir"], strategy)
    lock = RunLock(output_dir)
    if chief:  # one writer per run directory; other workers write to their own subdirectories
        lock.acquire()
    before: set[str] | None = None  # set once a fresh start has written: the names it must keep
    created = list(lock.created_dirs)
    try:
        before, made = prepare_output_dir(output_dir, cfg, cfg["overwrite"])
        created += made
        if before is None and os.path.exists(os.path.join(output_dir, "results.json")):
            problem = artifacts.verify_run(output_dir)
            if problem:
                raise UsageError(f"{output_dir} holds this finished run, but {problem}; use --overwrite to redo it")
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
    except BaseException as e:
        fault = _one_line(e, output_dir)
        interrupted = isinstance(fault, (KeyboardInterrupt, Terminated))
        epoch = _interrupted_at(output_dir, cfg["epochs"]) if interrupted else 0
        if before is not None and (isinstance(fault, UsageError) or not _worth_resuming(output_dir, before)):
            lock.release()  # a fresh run that could not start leaves nothing behind, and removes only its own
            rundir.clear_run(output_dir, keep=before)
            rundir.remove_dirs(created)
        lock.release()
        if interrupted:
            print(f"interrupted at epoch {epoch}; rerun the same command to resume", file=sys.stderr, flush=True)
            sys.exit(130 if isinstance(fault, KeyboardInterrupt) else 143)
        if fault is e:
            raise
        raise fault from None
    finally:
        lock.release()
    if chief:
        print(f"test accuracy {results['final_test_accuracy']:.4f} (best {results['best_test_accuracy']:.4f}), "
              f"sparsity {results['sparsity']['global']['sparsity']:.4f}, results in "
              f"{os.path.join(cfg['output_dir'], 'results.json')}")
    return 0


if __name__ == "__main__":
    run_app(main)
