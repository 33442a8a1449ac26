"""`--help` for the tools: the tool's docstring, then our flags only, grouped in sections (absl's --helpfull lists all).

A module that defines flags calls :func:`section` before each group; every flag it defines
afterwards, however it is defined (a loop over methods' options included), belongs to that
section until the next call. Calling ``section`` again with an earlier title adds to that
group. Flags of a module that declares no section are listed under the module's name.
"""
from __future__ import annotations

import inspect
import sys
import textwrap

from absl import flags

_SECTIONS: dict[str, list[tuple[int, str]]] = {}  # module -> (flags it had defined before, title)
HELP_ARGS = ("--help", "-help", "--helpshort", "-helpshort", "-?", "-h")
WIDTH = 100


def section(title: str, module: str | None = None, fv: flags.FlagValues = flags.FLAGS) -> None:
    """Start the --help group ``title`` for the flags ``module`` (default: the caller's) defines from now on."""
    caller = inspect.currentframe().f_back  # type: ignore[union-attr]
    module = module or caller.f_globals["__name__"]
    count = len(fv.flags_by_module_dict().get(module, []))
    _SECTIONS.setdefault(module, []).append((count, title))


def _main(module: str) -> bool:
    return module in ("__main__", sys.argv[0])  # absl files a script's own flags under its path


def _ours(module: str) -> bool:
    return _main(module) or module.split(".")[0] in ("train", "grasp_tf", "models")


def groups(fv: flags.FlagValues = flags.FLAGS) -> dict[str, list[flags.Flag]]:
    """Our flags by section title, sections in the order first declared, flags in definition order."""
    out: dict[str, list[flags.Flag]] = {}
    seen: set[str] = set()
    for module, defined in fv.flags_by_module_dict().items():
        if not _ours(module):
            continue
        marks = sorted(_SECTIONS.get(module, []), key=lambda m: m[0])
        for i, flag in enumerate(defined):
            if flag.name in seen:
                continue
            seen.add(flag.name)
            default = "flags" if _main(module) else f"flags of {module}"
            title = next((t for start, t in reversed(marks) if start <= i), default)
            out.setdefault(title, []).append(flag)
    return out


def _describe(flag: flags.Flag) -> str:
    name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    text = flag.help or ""
    kind = getattr(flag.parser, "syntactic_help", "")
    if kind and not flag.boolean:
        text += f" ({kind})"
    if flag.default_as_str is not None:
        text += f" (default: {flag.default_as_str})"
    body = textwrap.fill(text, WIDTH, initial_indent="    ", subsequent_indent="    ")
    return f"  {name}\n{body}"


def help_text(doc: str | None, fv: flags.FlagValues = flags.FLAGS) -> str:
    """What ``--help`` prints: ``doc`` (the tool's docstring), then each section and its flags."""
    parts = [(doc or f"usage: {sys.argv[0]} [flags]").strip(), ""]
    sections = groups(fv)
    for title, members in sections.items():
        title = "flags" if len(sections) == 1 else title
        parts += [f"{title}:"] + [_describe(f) for f in members] + [""]
    parts.append("Flagfiles: --flagfile=PATH or a built-in config name (quickstart, paper/<cell>); "
                 "--helpfull also lists absl's own flags.")
    return "\n".join(parts) + "\n"


def wants_help(argv: list[str]) -> bool:
    """True if the command line (before ``--``) asks for ``--help`` (also ``-h``, ``-?``, ``--helpshort``)."""
    args = argv[1:argv.index("--")] if "--" in argv else argv[1:]
    return any(a in HELP_ARGS for a in args)


def print_help_and_exit() -> None:
    """Print :func:`help_text` for the running tool on stdout and exit 0."""
    sys.stdout.write(help_text(getattr(sys.modules.get("__main__"), "__doc__", None)))
    sys.stdout.flush()
    sys.exit(0)
