"""`python -m train.analyze <gradnorm|layers|curves|compare> --flags`: the paper's figures as commands.

* ``gradnorm`` (Fig. 2): gradient norm at initialization of the pruned net relative to the
  dense net, methods x sparsities x trials (a new initialization per trial), mean and 95% CI.
* ``layers`` (Fig. 3): fraction of weights kept per layer, several methods on one
  initialization; masks computed here or read from runs' ``masks.npz`` (``--runs``).
* ``curves`` (Fig. 1): train and test loss and accuracy per epoch of runs' ``metrics.csv``.
* ``compare``: a Markdown + CSV table of runs' ``results.json``, mean ± std over seeds, beside
  the paper's published numbers (``train/paper_results.csv``).

Each writes ``<command>.png`` and ``<command>.csv`` (plus JSON or Markdown) into
``--output_dir`` (default ``analysis/<command>``). See docs/analysis.md. One module per
command (``gradnorm``, ``layers``, ``curves``, ``compare``), ``common`` for what they share and
``cli`` for the flags and the dispatch; the names below are re-exported for convenience.
"""
import matplotlib

import train.quiet  # noqa: F401  (first: notes whether the user set TF's log level)

matplotlib.use("Agg")  # before any command module imports pyplot: figures are files, never windows

from train.analyze.cli import COMMANDS, DEFAULT_LIMIT, define_flags, main  # noqa: E402
from train.analyze.common import expand, labels_for, percent, read_csv, run_config, run_label, write_csv  # noqa: E402
from train.analyze.compare import EXECUTION_KEYS, GROUP_KEYS, PAPER_RESULTS, aggregate, markdown_table, paper_cells  # noqa: E402
from train.analyze.curves import METRIC_COLUMNS, read_curves  # noqa: E402
from train.analyze.gradnorm import PAPER_FLAGFILE, gradnorm_rows, sparsity_list, summarize_gradnorm  # noqa: E402
from train.errors import UsageError  # noqa: E402

__all__ = ["COMMANDS", "DEFAULT_LIMIT", "EXECUTION_KEYS", "GROUP_KEYS", "METRIC_COLUMNS", "PAPER_FLAGFILE",
           "PAPER_RESULTS", "UsageError", "aggregate", "define_flags", "expand", "gradnorm_rows", "labels_for",
           "main", "markdown_table", "paper_cells", "percent", "read_csv", "read_curves", "run_config", "run_label",
           "sparsity_list", "summarize_gradnorm", "write_csv"]
