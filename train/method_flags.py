"""Each registered method's options as flags of `python -m train.run`, and their values for the chosen ``--method``.

``grasp_tf.criteria``'s declarations (:class:`grasp_tf.criteria.Option`) are the source: one
flag per option name, defined as ``train.flags``' flags (so ``config.json`` records them);
nothing here names a method, so adding one needs no edit in ``train/``.
"""
from __future__ import annotations

import re
import sys
from typing import Any, Sequence

from absl import flags

from train.errors import UsageError

MODULE = "train.flags"  # the flags belong to train.run's flag module: its config() reads that module's flags

METHOD_FLAGS: dict[str, list[tuple[str, Any]]] = {}
"""Flag name -> ``(method, its Option)`` for every registered method that declares the option."""

FLAG_OF: dict[tuple[str, str], str] = {}
"""``(method, option name)`` -> its flag: the option's name, or ``<method>_<option>`` when the name
is already one of train.run's other flags (``--batch_size`` trains; NTK-SAP's ``batch_size`` is
``--ntk_sap_batch_size``)."""


class _OrNone(flags.ArgumentParser):
    """``inner``'s parser that also reads ``none`` as None (an optional option left off)."""

    def __init__(self, inner: flags.ArgumentParser):
        self.inner = inner
        self.syntactic_help = f"{inner.syntactic_help} or none".strip()

    def parse(self, argument: Any) -> Any:
        if argument is None or (isinstance(argument, str) and argument.strip().lower() == "none"):
            return None
        return self.inner.parse(argument)

    def flag_type(self) -> str:
        return self.inner.flag_type()


def _arguments(argv: Sequence[str]) -> list[str]:
    """The command line's arguments, flagfiles expanded as the tools do (``train.flagfiles``), up to ``--``."""
    from train import flagfiles

    try:
        args = flagfiles.expand(list(argv))[1:]
    except flags.Error:  # parse_flags reports it
        args = list(argv[1:])
    return args[:args.index("--")] if "--" in args else args


def names_a_method_flag(argv: Sequence[str]) -> bool:
    """Whether the command line asks for help or names a flag not defined yet (a method's option, maybe)."""
    for arg in _arguments(argv):
        name = re.match(r"--?([^=]*)", arg)
        if name and (arg in ("-h", "-?") or name.group(1).startswith("help")):
            return True
        if name and name.group(1) not in flags.FLAGS and not (
                name.group(1).startswith("no") and name.group(1)[2:] in flags.FLAGS):
            return True
    return False


def _asks_verbosity(argv: Sequence[str]) -> bool:
    """Whether the command line (flagfiles expanded) sets absl's ``--verbosity``/``-v`` to 0 or more."""
    args = _arguments(argv)
    value = None
    for i, arg in enumerate(args):
        m = re.fullmatch(r"--?(?:verbosity|v)(?:=(.*))?", arg)
        raw = m and (m.group(1) if m.group(1) is not None else (args[i + 1] if i + 1 < len(args) else ""))
        if m and re.fullmatch(r"-?\d+", raw.strip()):
            value = int(raw)
    return value is not None and value >= 0


def _criteria() -> Any:
    """``grasp_tf.criteria``; TensorFlow (which it imports) starts quietly unless asked (``train.quiet``)."""
    if "tensorflow" not in sys.modules:
        from train import quiet

        quiet.import_tensorflow(verbose=_asks_verbosity(sys.argv))
    from grasp_tf import criteria

    return criteria


def _help(entries: list[tuple[str, Any]]) -> str:
    """One line: each distinct declaration's help, default and valid values, after the methods declaring it."""
    said: dict[tuple, list[str]] = {}
    for method, o in entries:
        said.setdefault((o.help, repr(o.default), o.describe()), []).append(method)
    return " ".join(f"[{', '.join(methods)}] {text} Default {default}; {valid}."
                    for (text, default, valid), methods in said.items())


def _define(name: str, entries: list[tuple[str, Any]], fv: flags.FlagValues) -> None:
    specs = [o for _, o in entries]
    kinds = {o.type for o in specs}
    if len(kinds) > 1:
        raise ValueError(f"methods {', '.join(m for m, _ in entries)} declare option {name!r} with different "
                         f"types ({', '.join(sorted(t.__name__ for t in kinds))}); one flag needs one type.")
    kind = kinds.pop()
    defaults = {repr(o.default) for o in specs}
    default = specs[0].default if len(defaults) == 1 else None  # None: each method's own default
    kw = dict(flag_values=fv, module_name=MODULE)
    if kind is bool:
        flags.DEFINE_boolean(name, default, _help(entries), **kw)
        return
    if kind is str and all(o.choices for o in specs):
        parser = flags.EnumParser(list(dict.fromkeys(c for o in specs for c in o.choices)))
    else:
        parser = {int: flags.IntegerParser(), float: flags.FloatParser(), str: flags.ArgumentParser()}[kind]
    if any(o.optional for o in specs):
        parser = _OrNone(parser)
    flags.DEFINE(parser, name, default, _help(entries), serializer=flags.ArgumentSerializer(), **kw)


def define_method_flags(fv: flags.FlagValues = flags.FLAGS) -> list[str]:
    """Define a flag for every option name of every registered method not yet defined; returns the new names.

    Importing the methods imports TensorFlow (seconds), so it runs when this module is imported
    only if the command line asks for ``--help`` or names a flag not otherwise defined, else at
    the first :func:`method_values` (after parsing: the flags keep their defaults, as nothing
    set them). A method registered after it ran gets its flags by calling it again before the
    command line is parsed. A flag's default is
    the methods' shared default, or None (each method's own) when they differ; its help lists
    each method's default and valid values. An option named like another flag of train.run
    gets the flag ``--<method>_<option>`` (:data:`FLAG_OF`).

    Raises:
        ValueError: two methods declare one option name with different types, or even the
            ``--<method>_<option>`` name is taken.
    """
    criteria = _criteria()
    entries: dict[str, list[tuple[str, Any]]] = {}
    for method in criteria.names():
        for o in criteria.get(method).option_specs:
            flag = FLAG_OF.get((method, o.name))
            if flag is None:
                shared = o.name in METHOD_FLAGS or o.name in entries or o.name not in fv
                flag = FLAG_OF[(method, o.name)] = o.name if shared else f"{method}_{o.name}"
            entries.setdefault(flag, []).append((method, o))
    new = []
    for name, found in entries.items():
        if name not in METHOD_FLAGS:
            if name in fv:
                raise ValueError(f"method {found[0][0]!r}'s option {found[0][1].name!r} would be the flag --{name}, "
                                 "which train.run already has; rename the option.")
            _define(name, found, fv)
            new.append(name)
        METHOD_FLAGS[name] = found
    return new


def _shown(value: Any) -> str:
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def method_values(method: str, fv: flags.FlagValues = flags.FLAGS) -> dict[str, Any]:
    """Every method-option flag's value for a run of ``method``: the one given, else the method's default
    (None for an option the method does not take), checked against its declaration.

    An unknown method gives the flags' values unchecked (``train.run`` reports the method).

    Raises:
        UsageError: a flag the method does not take, set on the command line or in a flagfile,
            or a value its declaration refuses; one line naming the flag, the value and the method.
    """
    criteria = _criteria()
    define_method_flags(fv)
    if method != "none" and method not in criteria.names():
        return {name: fv[name].value for name in METHOD_FLAGS}
    criterion = None if method == "none" else criteria.get(method)
    takes = {FLAG_OF[(method, o)]: o for o in criterion.mask_options} if criterion else {}
    stray = [name for name in METHOD_FLAGS if fv[name].present and name not in takes]
    if stray:
        listed = ", ".join(f"--{t}" for t in takes) or "no options"
        raise UsageError(f"--{stray[0]} is not an option of --method={method} (it takes {listed})")
    values: dict[str, Any] = {}
    for name in METHOD_FLAGS:
        if name not in takes:
            values[name] = None
            continue
        spec = criterion.option(takes[name])
        value = fv[name].value if fv[name].present else spec.default
        try:
            values[name] = spec.check(value, method)
        except ValueError:
            raise UsageError(f"--{name}={_shown(value)} is invalid for --method={method}: must be "
                             f"{spec.describe().replace(' or None', ' or none')}") from None
    return values


def library_options(cfg: dict) -> dict[str, Any]:
    """``compute_masks``'s keywords for the options of ``cfg["method"]``, from ``cfg``'s flags (:func:`method_values`)."""
    return {o: cfg[FLAG_OF[(cfg["method"], o)]] for o in _criteria().get(cfg["method"]).mask_options}
