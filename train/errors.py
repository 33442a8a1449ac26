"""User-facing errors of the command-line tools: one line on stderr, exit code 2, no traceback."""
from __future__ import annotations

import sys
from typing import Callable, Sequence

from absl import app, flags


class UsageError(Exception):
    """A bad flag value, bad data or an unusable environment, said in one line."""


class EnvironmentFault(Exception):
    """The machine failed the run, not its input (a full or read-only disk): one line, exit code 1."""


def fail(message: str) -> None:
    """Print ``error: message`` on stderr and exit 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's ``flags_parser``: an unknown flag, a value out of range or a bad flagfile is one line, exit 2.

    Flagfiles are expanded by ``train.flagfiles`` (includes found beside the including file,
    built-in configs by name); ``--help`` prints our flags by section and exits 0 (``train.usage``).
    """
    from train import flagfiles, usage

    try:
        argv = flagfiles.expand(argv)
        if usage.wants_help(argv):
            usage.print_help_and_exit()
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(str(e))


def run_cli(main: Callable[[list[str]], object], argv: list[str],
            expected: Sequence[type[BaseException]] = ()) -> None:
    """Run an absl ``main``; ``UsageError`` and the ``expected`` errors exit 2 with one line,
    ``EnvironmentFault`` exits 1 with one line."""
    try:
        main(argv)
    except EnvironmentFault as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except (UsageError, *expected) as e:
        fail(str(e))
    sys.exit(0)


def run_app(main: Callable[[list[str]], object], expected: Sequence[type[BaseException]] = ()) -> None:
    """``absl.app.run(main)``: flag errors and ``expected`` errors are one line and exit code 2, and
    TensorFlow starts quietly unless ``--verbosity=0`` or more is given (``train.quiet``), and
    glibc's mmap threshold is pinned so long scoring runs stay flat in memory (``train.allocator``)."""
    from train import allocator, quiet

    allocator.pin_mmap_threshold()

    def start(argv: list[str]) -> None:
        verbosity = flags.FLAGS["verbosity"]
        quiet.import_tensorflow(verbose=verbosity.present and verbosity.value >= 0)
        run_cli(main, argv, expected)

    app.run(start, flags_parser=parse_flags)
