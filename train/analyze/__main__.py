"""Entry point of `python -m train.analyze <command> --flags` (one-line errors, exit code 2, quiet TensorFlow)."""
from absl import flags

import train.analyze
from train.analyze import cli
from train.errors import run_app

__doc__ = train.analyze.__doc__  # what --help prints (absl shows the main module's docstring)

if __name__ == "__main__":
    cli.define_flags()
    flags.adopt_module_key_flags(cli)  # --help lists them, as for a flag defined here
    run_app(cli.main, (ValueError,))
