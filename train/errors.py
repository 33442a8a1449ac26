"""User-facing errors of the command-line tools: one line on stderr, exit code 2, no traceback."""
from __future__ import annotations

import sys
from typing import Callable, Sequence


class UsageError(Exception):
    """A bad flag value, bad data or an unusable environment, said in one line."""


def run_cli(main: Callable[[list[str]], object], argv: list[str],
            expected: Sequence[type[BaseException]] = ()) -> None:
    """Run an absl ``main``; ``UsageError`` and the ``expected`` errors exit 2 with one line."""
    try:
        main(argv)
    except (UsageError, *expected) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(0)
