"""Flagfiles for the tools: includes found beside the including file, built-in configs by name, one-line errors.

absl reads ``--flagfile`` paths relative to the working directory only, so a config that
includes ``../base/common.cfg`` worked from one directory, and a file that is not UTF-8 ends
in a ``UnicodeDecodeError`` traceback. The tools expand every ``--flagfile`` themselves
before absl parses the command line (``train.errors.parse_flags``), with absl's file syntax
(one flag per line, ``#`` and ``//`` comments, blank lines ignored, nested ``--flagfile=``
expanded in place, later flags win). A name is looked up, first match wins:

1. inside a flagfile, relative to the directory of the file that includes it;
2. relative to the working directory (as absl does);
3. among the built-in configs shipped with the tools (:func:`configs_dir`): ``quickstart``,
   ``paper/cifar10_vgg19_grasp_98``, ``base/common`` ... with or without ``configs/`` in
   front and ``.cfg`` behind, so ``--flagfile=configs/quickstart.cfg`` also works outside
   the repository once the package is installed.
"""
from __future__ import annotations

import os
from typing import Sequence

from absl import flags

_DIRECTIVES = ("--flagfile", "-flagfile")


class FlagfileError(flags.Error):
    """A flagfile that cannot be found, read or decoded, said in one line naming it."""


def configs_dir() -> str:
    """The built-in configs: ``train/configs`` in an installed package, ``<repository>/configs`` in a clone."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(here, "configs"), os.path.join(os.path.dirname(here), "configs")):
        if os.path.isfile(os.path.join(candidate, "quickstart.cfg")):
            return candidate
    return os.path.join(os.path.dirname(here), "configs")


def builtin_names() -> list[str]:
    """Every built-in config's name (``quickstart``, ``paper/<cell>``, ``base/<name>`` ...), sorted."""
    root = configs_dir()
    names = []
    for folder, _, files in os.walk(root):
        names += [os.path.relpath(os.path.join(folder, f), root)[:-len(".cfg")].replace(os.sep, "/")
                  for f in files if f.endswith(".cfg")]
    return sorted(names)


def _builtin(name: str) -> str | None:
    stem = name[len("configs/"):] if name.startswith("configs/") else name
    stem = stem[:-len(".cfg")] if stem.endswith(".cfg") else stem
    path = os.path.join(configs_dir(), *stem.split("/")) + ".cfg"
    return path if stem and ".." not in stem.split("/") and os.path.isfile(path) else None


def resolve(name: str, including: str | None = None) -> str:
    """The file ``--flagfile=name`` means (see the module docstring for the order).

    Raises:
        FlagfileError: nothing matches; the message names the flag as typed and the including file.
    """
    path = os.path.expanduser(name)
    candidates = [path]
    if including is not None and not os.path.isabs(path):
        candidates.insert(0, os.path.join(os.path.dirname(including), path))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    builtin = None if os.path.isabs(path) else _builtin(name.replace(os.sep, "/"))
    if builtin:
        return builtin
    where = f" (included from {including})" if including else ""
    for candidate in candidates:
        if os.path.isdir(candidate):
            raise FlagfileError(f"--flagfile={name}{where}: {candidate} is a directory, not a flagfile")
    raise FlagfileError(f"--flagfile={name}{where}: no such file, nor a built-in config (quickstart, "
                        f"paper/<cell>, ...: the .cfg files under {configs_dir()})")


def _read_lines(path: str, name: str, including: str | None) -> list[str]:
    where = f" (included from {including})" if including else ""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise FlagfileError(f"--flagfile={name}{where}: cannot read {path}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise FlagfileError(f"--flagfile={name}{where}: {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} "
                            f"on line {line}); save it as UTF-8") from None
    return text.splitlines()


def _expand_file(name: str, including: str | None, stack: tuple[str, ...]) -> list[str]:
    path = resolve(name, including)
    real = os.path.realpath(path)
    if real in stack:
        raise FlagfileError(f"--flagfile={name} (included from {including}): {path} includes itself")
    out = []
    for line in _read_lines(path, name, including):
        line = line.strip()
        if not line or line.startswith(("#", "//")):
            continue
        directive, _, value = line.partition("=")
        if directive in _DIRECTIVES:
            out += _expand_file(value.strip(), path, stack + (real,)) if value.strip() else []
        else:
            out.append(line)
    return out


def expand(argv: Sequence[str]) -> list[str]:
    """``argv`` (program name first) with every ``--flagfile`` replaced by the flags it holds, in place.

    ``--flagfile=x`` and ``--flagfile x`` (one or two dashes) are read on the command line,
    ``--flagfile=x`` inside files; nothing after ``--`` is touched.

    Raises:
        FlagfileError: a flagfile that is missing, unreadable, not UTF-8 or includes itself.
    """
    out, rest = list(argv[:1]), list(argv[1:])
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            out += [arg] + rest
            break
        directive, eq, value = arg.partition("=")
        if directive not in _DIRECTIVES:
            out.append(arg)
        elif not eq and not rest:
            raise FlagfileError(f"{arg} needs a file name")
        else:
            value = value if eq else rest.pop(0)
            out += _expand_file(value.strip(), None, ()) if value.strip() else []
    return out
