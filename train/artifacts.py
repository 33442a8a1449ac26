"""Run-directory files written atomically (temp file, fsync, rename), so a crash never leaves half a file.

``masks.npz``, ``model.keras`` and ``results.json`` also get an integrity record (bytes and
SHA-256) in ``checksums.json``, written before the file is renamed into place; every reader
here checks it, so a truncated or edited file is named in one line instead of being used.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import signal
import tempfile
import zipfile
from typing import Any, Mapping

import numpy as np

CHECKSUMS = "checksums.json"
RECORDED = ("masks.npz", "model.keras", "results.json")  # the files checksums.json vouches for
# A write failing with one of these is the machine's fault (exit 1), not a bad flag (exit 2).
MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})
# Once a run has started in its directory, losing write access to it is the machine's fault too.
MID_RUN_ERRNOS = MACHINE_ERRNOS | {errno.EACCES, errno.EPERM}


class CorruptFile(ValueError):
    """A run file that is truncated, edited or unreadable; the message names it."""


def write_error(e: OSError, where: str) -> Exception:
    """The one-line error for a failed write to ``where``: ``EnvironmentFault`` for a full or
    read-only disk (exit 1), ``UsageError`` for a path the user should change (exit 2)."""
    from train.errors import EnvironmentFault, UsageError

    kind = EnvironmentFault if e.errno in MACHINE_ERRNOS else UsageError
    return kind(f"cannot write to {where}: {e.strerror or e}")
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


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def reserve(path: str, nbytes: int) -> None:
    """``OSError`` naming ``path`` now unless ``nbytes`` fit beside it; the space is freed again at once.

    h5py crashes the whole process (a segfault) when the disk fills while it writes, so the
    space for a weights file is claimed (``posix_fallocate``, which also counts quotas) first.
    """
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-reserve-")
    except OSError as e:
        raise OSError(e.errno, e.strerror, path) from None
    try:
        os.posix_fallocate(fd, 0, max(1, int(nbytes)))
    except OSError as e:
        raise OSError(e.errno, e.strerror, path) from None
    finally:
        os.close(fd)
        os.remove(tmp)


def _records(directory: str) -> dict[str, Any]:
    path = os.path.join(directory, CHECKSUMS)
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            records = json.load(f)
    except (OSError, ValueError) as e:
        raise CorruptFile(f"{path} is unreadable ({e}); the run's integrity records are lost") from None
    if not isinstance(records, dict):
        raise CorruptFile(f"{path} is not an integrity record (not a JSON object)")
    return records


def _record(path: str, content: str) -> None:
    """Record in ``checksums.json`` what ``path`` must hold: the bytes and SHA-256 of the file ``content``."""
    d = os.path.dirname(os.path.abspath(path))
    records = _records(d)
    records[os.path.basename(path)] = {"bytes": os.path.getsize(content), "sha256": sha256(content)}
    write_json(os.path.join(d, CHECKSUMS), records)


def verify(path: str) -> str | None:
    """Why the file ``path`` does not match its record in ``checksums.json``; None if it does or has none.

    A recorded file that is missing counts as not written (its writer was stopped before the rename).
    """
    record = _records(os.path.dirname(os.path.abspath(path))).get(os.path.basename(path))
    if not isinstance(record, dict) or not os.path.exists(path):
        return None
    size = os.path.getsize(path)
    if size != record.get("bytes"):
        return f"{path} has {size:,} bytes, {CHECKSUMS} records {record.get('bytes')} (truncated or edited)"
    if sha256(path) != record.get("sha256"):
        return f"{path} does not match its SHA-256 in {CHECKSUMS} (edited)"
    return None


def verify_run(run_dir: str) -> str | None:
    """The first recorded file of ``run_dir`` that fails ``verify``, said in one line; None if all match."""
    for name in RECORDED:
        problem = verify(os.path.join(run_dir, name))
        if problem:
            return problem
    return None


def _atomic(path: str, write_tmp) -> None:
    """``write_tmp(tmp)`` fills a temporary file beside ``path``, which then replaces ``path``; nothing half-written stays.

    A file named in RECORDED gets its integrity record in ``checksums.json`` before the rename.
    """
    d = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    except OSError as e:
        raise OSError(e.errno, e.strerror, path) from None
    os.close(fd)
    try:
        write_tmp(tmp)
        if os.path.basename(path) in RECORDED:
            _record(path, tmp)
        commit_file(tmp, path)
    except BaseException as e:
        try:
            os.remove(tmp)
        except OSError:  # already gone, or the directory turned read-only: the next run's start removes it
            pass
        if isinstance(e, OSError) and e.filename == tmp:  # name the file the user knows
            raise OSError(e.errno, e.strerror, path) from None
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
    """The parsed file, or None if it does not exist; ``CorruptFile`` naming it if it fails its record or parse."""
    if not os.path.exists(path):
        return None
    problem = verify(path)
    if problem:
        raise CorruptFile(problem)
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode())
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise CorruptFile(f"{path} is not valid JSON ({e}); truncated or edited?") from None


def save_masks(path: str, masks: Mapping[str, np.ndarray]) -> None:
    """Masks as a compressed .npz keyed by weight key ("/" kept), with an integrity record."""
    _atomic_write(path, lambda f: np.savez_compressed(f, **{k: np.asarray(v, bool) for k, v in masks.items()}))


def save_model(model: Any, path: str, nbytes: int = 0) -> None:
    """``model.save(path)`` (a ``.keras`` file), atomically, with an integrity record; ``nbytes`` reserved first."""
    if nbytes:
        reserve(path, nbytes)
    _atomic(path, lambda tmp: model.save(tmp, overwrite=True))


def load_masks(path: str) -> dict[str, np.ndarray]:
    """The masks of a ``save_masks`` file; ``CorruptFile`` naming it if it fails its record or does not load."""
    problem = verify(path)
    if problem:
        raise CorruptFile(problem)
    try:
        with np.load(path) as z:
            return {k: np.asarray(z[k], bool) for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CorruptFile(f"{path} is not a readable masks file ({type(e).__name__}: {e}); truncated?") from None


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
