"""Every option of `python -m train.run`, as absl flags with their valid ranges (files of them live in configs/).

Ranges are checked when the command line is parsed, before anything is created: a bad value
is one line naming the flag and the value (``train.errors.parse_flags``), exit code 2. Each
registered method's own options (``grasp_tf.criteria``'s declarations) become flags too, one
per option name (``train.method_flags``); ``method_values`` checks them against the chosen
``--method`` (a flag it does not take, set on the command line or in a flagfile, or a value
its declaration refuses, is one line, exit 2). Adding a method needs no edit here.
"""
from __future__ import annotations

import sys

from absl import flags

from train.usage import section

MAX_SEED = 2**31 - 1


def _check(name: str, ok, message: str) -> None:
    """Reject values of ``--name`` for which ``ok(value)`` is false, saying ``message``."""
    flags.register_validator(name, ok, message=message)


def _fractions(values: list[str]) -> bool:
    try:
        return all(0.0 < float(v) < 1.0 for v in values)
    except ValueError:
        return False


section("data")  # --help groups (train.usage), as docs/training.md groups them
flags.DEFINE_string("dataset", "fashion_mnist", "Dataset name (see train/data/).")
flags.DEFINE_string("data_dir", None, "Where the dataset lives (default: the dataset's usual place).")
flags.DEFINE_float("validation_split", 0.0, "Fraction of the training set held out for validation, in [0, 1).",
                   lower_bound=0.0)
_check("validation_split", lambda v: v < 1.0, "must be in [0, 1)")
flags.DEFINE_integer("train_limit", 0, "Use only N training examples, a fixed random subset (0 = all).",
                     lower_bound=0)
flags.DEFINE_integer("test_limit", 0, "Evaluate on the first N test examples only (0 = all).", lower_bound=0)
flags.DEFINE_boolean("augment", True, "Reference augmentation (random crop + flip) on training data.")

section("model")
flags.DEFINE_string("model", "resnet20", "Model name (see models/).")
flags.DEFINE_integer("width", 0, "Width multiplier for ResNets (0 = the model's default).", lower_bound=0)
flags.DEFINE_enum("init", "kaiming", ["kaiming", "normal", "xavier"], "Weight initialisation.")

section("pruning")
flags.DEFINE_string("method", "grasp", "Pruning method: one of grasp_tf.criteria.names() or none. Each method's "
                    "own options are flags too; their help says which method takes each.")
flags.DEFINE_float("sparsity", 0.9, "Fraction of prunable weights removed, in [0, 1).", lower_bound=0.0)
_check("sparsity", lambda v: v < 1.0, "must be in [0, 1)")
flags.DEFINE_enum("scope", "global", ["global", "layerwise"], "One global threshold, or the same fraction per layer.")
flags.DEFINE_integer("samples_per_class", 10, "Class-balanced scoring sample per draw (0 = random batches).",
                     lower_bound=0)
flags.DEFINE_integer("num_draws", 1, "How many class-balanced samples are drawn and pooled for scoring.",
                     lower_bound=1)
flags.DEFINE_integer("scoring_batches", 1, "With samples_per_class=0: batches of the stream used for scoring.",
                     lower_bound=1)
flags.DEFINE_integer("scoring_batch_size", 250, "With samples_per_class=0: size of each scoring batch.",
                     lower_bound=1)
flags.DEFINE_boolean("shuffle_masks", False, "Permute each mask within its layer (layerwise-shuffle ablation; "
                                             "random positions at the method's per-layer densities).")
flags.DEFINE_boolean("invert_masks", False, "Invert ablation: remove the weights the method would keep "
                                            "(same number removed).")
flags.DEFINE_boolean("reinit_weights", False, "Reinitialize ablation: keep the masks, train from a fresh "
                                              "initialization (seed + 1) instead of the scored weights.")


section("recipe")  # the training recipe of the authors' code (github.com/alecwangcq/GraSP)
flags.DEFINE_integer("epochs", 160, "Training epochs.", lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Global training batch size.", lower_bound=1)
flags.DEFINE_float("lr", 0.1, "Initial learning rate (> 0).")
_check("lr", lambda v: v > 0, "must be positive")
flags.DEFINE_list("lr_boundaries", ["0.5", "0.75"], "Fractions of training, each in (0, 1), at which lr decays.")
_check("lr_boundaries", _fractions, "must be fractions strictly between 0 and 1, like 0.5,0.75")
flags.DEFINE_integer("lr_step_epochs", 0, "Decay lr every N epochs instead (ImageNet: 50).", lower_bound=0)
flags.DEFINE_float("lr_decay", 0.1, "Factor applied to lr at each boundary (> 0).")
_check("lr_decay", lambda v: v > 0, "must be positive")
flags.DEFINE_float("momentum", 0.9, "SGD momentum (not Nesterov), in [0, 1).", lower_bound=0.0)
_check("momentum", lambda v: v < 1.0, "must be in [0, 1)")
flags.DEFINE_float("weight_decay", 5e-4, "Coupled (PyTorch-style) weight decay on all trainable parameters.",
                   lower_bound=0.0)
flags.DEFINE_integer("seed", 0, "Seed for init, data order and pruning.", lower_bound=0, upper_bound=MAX_SEED - 1)

section("execution")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                  "tf.distribute strategy; multi_worker reads TF_CONFIG.")
flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into N logical devices (to run mirrored on a CPU).",
                     lower_bound=0)
flags.DEFINE_boolean("jit_compile", None, "XLA for training steps (default: on only with a GPU).")
flags.DEFINE_string("output_dir", "runs/default", "Where checkpoints, logs, masks and results go.")
flags.DEFINE_boolean("overwrite", False, "Start afresh even if output_dir holds a run.")
flags.DEFINE_boolean("export", False, "Export a sparse SavedModel to <output_dir>/export at the end.")
flags.DEFINE_integer("steps_per_epoch", 0, "Cap on steps per epoch, the first N batches of each epoch "
                                           "(0 = the whole training set).", lower_bound=0)


# Each method's own options (--temperature, --chunk_size, --rounds, ...): train/method_flags.py.
from train.method_flags import (  # noqa: E402,F401
    FLAG_OF,
    METHOD_FLAGS,
    define_method_flags,
    library_options,
    method_values,
    names_a_method_flag,
)

section("method options (each for the --method values in brackets)")
if names_a_method_flag(sys.argv):  # else at first use: see define_method_flags
    define_method_flags()
