"""The command line of `python -m train.analyze <command>`: its flags and the dispatch to one command module."""
from __future__ import annotations

import os
from typing import Sequence

from absl import flags

from train.analyze import compare, curves, gradnorm, layers
from train.analyze.common import Config
from train.analyze.compare import PAPER_RESULTS
from train.analyze.gradnorm import PAPER_FLAGFILE
from train.errors import UsageError

COMMANDS = ("gradnorm", "layers", "curves", "compare")
DEFAULT_LIMIT = 256  # gradnorm's default: a few minutes on two busy CPU cores, even for resnet20 (docs/analysis.md)


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Define the analyze flags on ``fv`` (tests use a private FlagValues: train.run's flags share names)."""
    d = dict(flag_values=fv)
    flags.DEFINE_string("output_dir", None, "Where the PNG/CSV/JSON go (default analysis/<command>).", **d)
    # gradnorm / layers: what is pruned
    flags.DEFINE_string("dataset", "fashion_mnist", "Dataset name (train/data/).", **d)
    flags.DEFINE_string("data_dir", None, "Where the dataset lives (default: its usual place).", **d)
    flags.DEFINE_string("model", "conv4", "Model name (models/).", **d)
    flags.DEFINE_integer("width", 0, "ResNet width multiplier (0 = the model's default).", lower_bound=0, **d)
    flags.DEFINE_enum("init", "kaiming", ["kaiming", "normal", "xavier"], "Weight initialisation.", **d)
    flags.DEFINE_list("methods", ["grasp", "snip", "random"], "Pruning methods to compare.", **d)
    flags.DEFINE_list("sparsities", ["0.8", "0.9", "0.95", "0.98", "0.99", "0.995"],
                      "gradnorm: pruning ratios (the paper's Fig. 2 range).", **d)
    flags.DEFINE_float("sparsity", 0.95, "layers: the pruning ratio in [0, 1) (the paper's Fig. 3 uses 95%).",
                       lower_bound=0.0, **d)
    flags.register_validator("sparsity", lambda v: v < 1.0, message="must be in [0, 1)", flag_values=fv)
    flags.DEFINE_integer("trials", 3, "gradnorm: initializations (seeds seed, seed+1, ...); the paper uses 10 "
                         f"({PAPER_FLAGFILE}).", lower_bound=1, **d)
    flags.DEFINE_integer("seed", 0, "Seed of the (first) initialization, scoring sample and data order.",
                         lower_bound=0, upper_bound=2**31 - 2, **d)
    flags.DEFINE_integer("samples_per_class", 10, "Class-balanced scoring sample per draw (as train.run).",
                         lower_bound=0, **d)
    flags.DEFINE_integer("num_draws", 1, "Class-balanced draws pooled for scoring (as train.run).", lower_bound=1,
                         **d)
    flags.DEFINE_integer("limit", DEFAULT_LIMIT, "gradnorm: training examples the gradient is averaged over, a "
                         "fixed random subset (0 = all, as the paper).", lower_bound=0, **d)
    flags.DEFINE_integer("batch_size", 128, "gradnorm: batch size of the gradient pass (batch-norm statistics).",
                         lower_bound=1, **d)
    flags.DEFINE_enum("weights", "trainable", ["trainable", "prunable"],
                      "gradnorm: the gradient w.r.t. all trainable weights or only the prunable kernels.", **d)
    # layers / curves / compare: existing runs
    flags.DEFINE_list("runs", [], "Run directories of train.run or their files (globs allowed); compare "
                                  "searches directories recursively for results.json.", **d)
    flags.DEFINE_list("labels", [], "layers/curves: legend labels, one per run or method "
                                    "(default: method and sparsity).", **d)
    flags.DEFINE_enum("metric", "best_test_accuracy", ["best_test_accuracy", "final_test_accuracy"],
                      "compare: the accuracy plotted (the paper reports the best over epochs).", **d)
    flags.DEFINE_string("paper", PAPER_RESULTS, "compare: CSV of published numbers ('' = none).", **d)


def main(argv: Sequence[str], cfg: Config = flags.FLAGS) -> list[str]:
    """Run the command named in ``argv`` (flags already parsed into ``cfg``); returns the files written."""
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise UsageError(f"usage: python -m train.analyze <{'|'.join(COMMANDS)}> --flags "
                         f"(got {list(argv[1:]) or 'no command'})")
    command = argv[1]
    out = cfg.output_dir or os.path.join("analysis", command)
    created = not os.path.exists(out)
    os.makedirs(out, exist_ok=True)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    commands = {"gradnorm": gradnorm.command, "layers": layers.command, "curves": curves.command,
                "compare": compare.command}
    try:
        files = commands[command](cfg, out, log)
    except (UsageError, ValueError):
        if created and not os.listdir(out):  # a usage error leaves nothing behind
            os.rmdir(out)
        raise
    print("wrote " + ", ".join(files))
    return files
