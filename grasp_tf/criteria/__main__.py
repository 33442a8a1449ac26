"""`python -m grasp_tf.criteria FILE.md ...`: rewrite each file's generated table of the built-in methods' options."""
from __future__ import annotations

import sys
from typing import Sequence

from grasp_tf import criteria
from grasp_tf.criteria import describe


def main(argv: Sequence[str]) -> int:
    """Rewrite the options table (between ``describe.BEGIN`` and ``describe.END``) of each file in ``argv``."""
    if not argv:
        print("usage: python -m grasp_tf.criteria FILE.md ...", file=sys.stderr)
        return 2
    table = describe.markdown_table([criteria.get(n) for n in criteria.BUILT_IN])
    for path in argv:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            new = describe.replace_table(text, table)
        except ValueError as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            return 2
        if new != text:
            with open(path, "w", encoding="utf-8") as f:
                f.write(new)
            print(f"rewrote the options table of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
