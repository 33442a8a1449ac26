"""Writing an export safely and measuring it: staged beside the target, renamed into place, sizes counted.

Every export is written to a temporary directory beside the target and renamed into place,
so a failure leaves nothing half-written.
"""
from __future__ import annotations

import errno
import gzip
import os
import shutil
import tarfile
import tempfile
from typing import Any, Callable


class _ByteCounter:
    """A write-only file object that only counts the bytes written to it."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def sizes(root: str) -> dict[str, Any]:
    """Bytes per file under ``root`` (or of the file ``root``), in total and as a gzipped tar (level 6)."""
    if os.path.isfile(root):
        with open(root, "rb") as f:
            data = f.read()
        return {"files": {os.path.basename(root): len(data)}, "raw_bytes": len(data),
                "gzip_bytes": len(gzip.compress(data, compresslevel=6, mtime=0))}
    files = {}
    for d, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            files[os.path.relpath(os.path.join(d, name), root)] = os.path.getsize(os.path.join(d, name))

    counter = _ByteCounter()
    with gzip.GzipFile(fileobj=counter, mode="wb", compresslevel=6, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w|") as tar:
            for rel in files:
                tar.add(os.path.join(root, rel), arcname=rel, recursive=False)
    return {"files": files, "raw_bytes": sum(files.values()), "gzip_bytes": counter.n}


def is_saved_model_dir(path: str) -> bool:
    """True for a directory overwrite=True may replace: a SavedModel or an empty directory."""
    return os.path.isdir(path) and (not os.listdir(path) or os.path.exists(os.path.join(path, "saved_model.pb")))


class PathExistsError(FileExistsError):
    """A ``FileExistsError`` that reads as one sentence and carries ``errno`` and ``filename``."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.EEXIST, f"{path} already exists; pass overwrite=True to replace it.", path)

    def __str__(self) -> str:
        return self.strerror


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def staging_dir(path: str, overwrite: bool, replaceable: Callable[[str], bool], what: str) -> str:
    """A new temporary directory beside ``path`` after checking that ``path`` may be written."""
    if os.path.lexists(path):
        if not overwrite:
            raise PathExistsError(path)
        if not replaceable(path):
            raise ValueError(f"Refusing to overwrite {path}: it is not {what}.")
    parent = os.path.dirname(path)
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise NotADirectoryError(f"Cannot write {path}: {parent} is a file, not a directory.")
    try:
        os.makedirs(parent, exist_ok=True)
        staged = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
        os.chmod(staged, 0o777 & ~_umask())  # mkdtemp makes 0700; the export gets the user's usual mode
        return staged
    except OSError as e:
        raise type(e)(f"Cannot write {path}: {e.strerror} ({e.filename}).") from None


def publish(staged: str, path: str) -> None:
    """Move the finished ``staged`` file or directory to ``path``, replacing what was there."""
    if os.path.isfile(staged):
        os.replace(staged, path)
        return
    old = None
    if os.path.lexists(path):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=os.path.dirname(path))
        os.replace(path, os.path.join(old, "previous"))
    try:
        os.replace(staged, path)
    except OSError:
        if old is not None:
            os.replace(os.path.join(old, "previous"), path)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
