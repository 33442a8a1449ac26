"""Run-directory files written atomically (temp file, fsync, rename), so a crash never leaves half a file."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import tempfile
from typing import Any, Mapping

import numpy as np

RUN_FILES = ("config.json", "pruning.json", "masks.npz", "metrics.csv", "results.json", "model.keras")
RUN_DIRS = ("backup", "tensorboard", "export")
CRASH_ENV = "GRASP_TF_CRASH_AT"
# Flags of train.run that say where/how a run executes, not what it computes: not part of a
# run's identity (a resumed run may change them) and never a reason to keep runs apart when
# comparing them (train.analyze compare also averages over the seed).
EXECUTION_FLAGS = frozenset({"output_dir", "overwrite", "export", "strategy", "jit_compile", "data_dir",
                             "cpu_devices"})


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give: temp files are created 0600


def machine() -> dict[str, str]:
    """The CPU model and library versions this process runs on (no TensorFlow import needed).

    Recorded with every result: the same command and seed are bit-identical on one CPU model only.
    """
    import platform
    from importlib import metadata

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": cpu or platform.processor(), "tensorflow": metadata.version("tensorflow"),
            "keras": metadata.version("keras")}


def crash_point(name: str, epoch: int | None = None) -> None:
    """Fault injection for the crash tests: SIGKILL this process if ``$GRASP_TF_CRASH_AT`` names this point.

    The variable holds ``name`` or ``name:epoch``; unset (always, outside tests) it costs one lookup.
    """
    want = os.environ.get(CRASH_ENV)
    if want and want in (name, f"{name}:{epoch}"):
        os.kill(os.getpid(), signal.SIGKILL)


def fsync_dir(path: str) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_file(tmp: str, path: str) -> None:
    """Flush ``tmp`` to disk, give it the user's usual permissions and rename it to ``path``."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def _atomic(path: str, write_tmp) -> None:
    """``write_tmp(tmp)`` fills a temporary file beside ``path``, which then replaces ``path``; nothing half-written stays."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        write_tmp(tmp)
        commit_file(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _atomic_write(path: str, write) -> None:
    """``write(f)`` into a binary file object, committed atomically to ``path``."""
    def write_tmp(tmp: str) -> None:
        with open(tmp, "wb") as f:
            write(f)
    _atomic(path, write_tmp)


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


def save_model(model: Any, path: str) -> None:
    """``model.save(path)`` (a ``.keras`` file), atomically."""
    _atomic(path, lambda tmp: model.save(tmp, overwrite=True))


def load_masks(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def write_metrics(path: str, rows: list[Mapping[str, Any]]) -> None:
    """The per-epoch CSV holding exactly ``rows`` (values as ``str``), columns ``epoch`` first."""
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k != "epoch", k))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows([{k: str(v) for k, v in r.items()} for r in rows])
    _atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


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
    for name in os.listdir(path) if os.path.isdir(path) else ():
        if name.startswith(".tmp-"):  # a temp file a killed process never renamed
            os.remove(os.path.join(path, name))
