"""Each method's options in words, from its declarations: ``help(compute_masks)``'s section and docs' table.

``python -m grasp_tf.criteria FILE.md`` rewrites the table between the markers :data:`BEGIN`
and :data:`END` of a Markdown file with the built-in methods' options (``docs/criteria.md``
holds them; a test checks the committed table is current).
"""
from __future__ import annotations

import textwrap
from typing import Sequence

from grasp_tf.criteria.base import Criterion

BEGIN = ("<!-- options:begin (generated from the methods' declarations by "
         "`python -m grasp_tf.criteria docs/criteria.md`; do not edit by hand) -->")
END = "<!-- options:end -->"
PLACEHOLDER = "{method options}"
"""The docstring line ``grasp_tf.criteria.documented`` replaces with :func:`docstring_section`."""


def groups(criteria: Sequence[Criterion]) -> list[tuple[list[str], Criterion]]:
    """Methods with the same declared options, together, in registration order: ``(names, one of them)``."""
    out: dict[tuple, tuple[list[str], Criterion]] = {}
    for c in criteria:
        key = (c.option_specs, c.options, c.mask_options)
        out.setdefault(key, ([], c))[0].append(c.name)
    return list(out.values())


def _where(c: Criterion, name: str) -> str:
    """Which public function takes the option, when not both."""
    if name not in c.options:
        return "compute_masks only"
    return "" if name in c.mask_options else "compute_scores only"


def docstring_section(criteria: Sequence[Criterion], width: int = 96) -> list[str]:
    """The lines (unindented) listing every method's options for a Keras-style docstring."""
    lines = []
    for names, c in groups(criteria):
        label = " / ".join(f"``{n}``" for n in names)
        if not c.option_specs:
            lines.append(f"* {label}: none.")
            continue
        lines += [f"* {label}:", ""]
        for o in c.option_specs:
            where = _where(c, o.name)
            text = f"- ``{o.name}={o.default!r}`` ({o.describe()}{'; ' + where if where else ''}): {o.help}"
            lines += textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="    ",
                                   break_on_hyphens=False)
        lines.append("")
    return lines[:-1] if lines and not lines[-1] else lines


def fill_docstring(doc: str, criteria: Sequence[Criterion]) -> str:
    """``doc`` with its :data:`PLACEHOLDER` line replaced by the section, at that line's indentation."""
    out = []
    for line in doc.splitlines():
        if line.strip() == PLACEHOLDER:
            indent = line[:len(line) - len(line.lstrip())]
            out += [indent + s if s else "" for s in docstring_section(criteria)]
        else:
            out.append(line)
    return "\n".join(out) + ("\n" if doc.endswith("\n") else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(criteria: Sequence[Criterion]) -> str:
    """A Markdown table: one row per option of each group of methods (a row saying none for the rest)."""
    rows = ["| method | option | default | valid values | what |", "|---|---|---|---|---|"]
    for names, c in groups(criteria):
        label = ", ".join(f"`{n}`" for n in names)
        if not c.option_specs:
            rows.append(f"| {label} | — | | | no options of its own |")
        for i, o in enumerate(c.option_specs):
            where = _where(c, o.name)
            rows.append(f"| {label if i == 0 else ''} | `{o.name}`{' (' + where + ')' if where else ''} | "
                        f"`{o.default!r}` | "
                        f"{_cell(o.describe())} | {_cell(o.help)} |")
    return "\n".join(rows)


def replace_table(text: str, table: str) -> str:
    """``text`` with the part between :data:`BEGIN` and :data:`END` replaced by ``table``."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"the file has no {BEGIN!r} ... {END!r} markers")
    head, rest = text.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{table}\n{END}{rest.split(END, 1)[1]}"
