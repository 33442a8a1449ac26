"""A method's option declared once (:class:`Option`): name, type, default, valid values and help."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Option:
    """One option of a method, declared once: name, type, default, valid range and help.

    From these come the API's validation, the method's docs and ``train.run``'s flags.

    Args:
        name: the keyword the method's function takes.
        type: ``int``, ``float``, ``bool`` or ``str``.
        default: the value used when the option is not given (``None`` allowed when ``optional``).
        help: one line for ``--help`` and docs/criteria.md.
        choices: the valid values of a ``str`` option.
        minimum, maximum: inclusive bounds of a number (``None``: unbounded).
        exclusive_minimum: make ``minimum`` exclusive (``> minimum``).
        optional: whether ``None`` is valid (meaning "off").

    Raises:
        TypeError, ValueError: a type other than those four, ``choices`` on a non-string, a help
            that is not one line, or a default its own declaration refuses.

    Example:

    >>> Option("rounds", int, 100, "Prune-and-rescore rounds.", minimum=1).check(0, "synflow")
    Traceback (most recent call last):
    ValueError: Option rounds=0 of method 'synflow' is invalid: must be an integer >= 1.
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    optional: bool = False

    def __post_init__(self) -> None:
        if self.type not in (int, float, bool, str):
            raise TypeError(f"Option {self.name!r}: type must be int, float, bool or str, got {self.type!r}.")
        if self.choices and self.type is not str:
            raise TypeError(f"Option {self.name!r}: choices need type=str.")
        if not self.help or "\n" in self.help:
            raise ValueError(f"Option {self.name!r}: help must be one non-empty line.")
        try:
            self.check(self.default)
        except ValueError:
            raise ValueError(f"Option {self.name!r}: its default {self.default!r} is not {self.describe()}.") from None

    def check(self, value: Any, method: str | None = None) -> Any:
        """``value`` if valid for this option, else a ValueError naming option, method and value."""
        if value is None and self.optional:
            return value
        ok = (isinstance(value, bool) if self.type is bool else
              isinstance(value, (int, np.integer)) and not isinstance(value, bool) if self.type is int else
              isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
              if self.type is float else isinstance(value, self.type))
        if ok and self.choices and value not in self.choices:
            ok = False
        if ok and self.minimum is not None:
            ok = value > self.minimum if self.exclusive_minimum else value >= self.minimum
        if ok and self.maximum is not None:
            ok = value <= self.maximum
        if not ok:
            of = f" of method {method!r}" if method else ""
            raise ValueError(f"Option {self.name}={value!r}{of} is invalid: must be {self.describe()}.")
        return value

    def describe(self) -> str:
        """The valid values in words, e.g. ``"an integer >= 1"``."""
        if self.choices:
            return "one of " + ", ".join(map(repr, self.choices))
        words = {bool: "True or False", int: "an integer", float: "a number", str: "a string"}[self.type]
        if self.minimum is not None:
            words += f" {'>' if self.exclusive_minimum else '>='} {self.minimum:g}"
        if self.maximum is not None:
            words += f"{',' if self.minimum is not None else ''} <= {self.maximum:g}"
        return words + (" or None" if self.optional else "")
