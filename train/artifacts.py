"""Run-directory files written atomically (temp file + rename), so a crash never leaves half a file."""
from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from typing import Any, Mapping

import numpy as np

RUN_FILES = ("config.json", "pruning.json", "masks.npz", "metrics.csv", "results.json", "model.keras")
RUN_DIRS = ("backup", "tensorboard", "export")


def _atomic_write(path: str, write) -> None:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str, obj: Any) -> None:
    _atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable).encode()))


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str) -> Any:
    """The parsed file, or None if it does not exist."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def save_masks(path: str, masks: Mapping[str, np.ndarray]) -> None:
    """Masks as a compressed .npz keyed by weight key ("/" kept)."""
    _atomic_write(path, lambda f: np.savez_compressed(f, **{k: np.asarray(v, bool) for k, v in masks.items()}))


def load_masks(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def upsert_metrics_row(path: str, row: Mapping[str, Any]) -> list[dict[str, str]]:
    """Write ``row`` into the per-epoch CSV, replacing a row of the same epoch (a resumed run)."""
    rows = read_metrics(path)
    rows = [r for r in rows if int(r["epoch"]) != int(row["epoch"])] + [{k: str(v) for k, v in row.items()}]
    rows.sort(key=lambda r: int(r["epoch"]))
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k != "epoch", k))

    def write(f):
        import io
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
        f.write(buf.getvalue().encode())
    _atomic_write(path, write)
    return rows


def read_metrics(path: str) -> list[dict[str, str]]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def clear_run(path: str) -> None:
    """Remove a previous run's files (only ours) from ``path``."""
    for name in RUN_FILES:
        p = os.path.join(path, name)
        if os.path.exists(p):
            os.remove(p)
    for name in RUN_DIRS:
        shutil.rmtree(os.path.join(path, name), ignore_errors=True)
