"""One writer per run directory: a lock file naming its holder, released by the kernel when the holder dies.

The lock is a POSIX record lock (``fcntl.lockf``, honoured over NFSv4 too) on
``<output_dir>/.lock``, which holds the holder's pid, host and start time so that a refused
process can say who holds it. A process that dies, however it dies, loses the lock with it:
the next run finds the file, takes the lock over and says so.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from typing import Callable

from train import rundir
from train.artifacts import write_error
from train.errors import UsageError

LOCK_FILE = ".lock"


class RunLock:
    """Hold the run directory ``directory`` (created if needed) for this process, or refuse at once."""

    def __init__(self, directory: str, flag: str = "--output_dir"):
        self.directory = directory
        self.path = os.path.join(directory, LOCK_FILE)
        self.flag = flag
        self._fd: int | None = None
        self.created_dirs: list[str] = []  # what acquire() had to create: a failed fresh run removes them

    def acquire(self, say: Callable[[str], None] = print) -> None:
        """Take the lock; ``UsageError`` naming the holder if another live process has it.

        On any failure nothing of this call stays: no lock file, no directory it created.
        """
        try:
            self.created_dirs = rundir.make_dirs(self.directory)
        except OSError as e:
            raise write_error(e, f"{self.flag}={self.directory}") from None
        try:
            self._take(say)
        except BaseException:
            rundir.remove_dirs(self.created_dirs)
            raise

    def _take(self, say: Callable[[str], None]) -> None:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:
                raise write_error(e, f"{self.flag}={self.directory}") from None
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _describe(_read(fd))
                os.close(fd)
                raise UsageError(f"{self.flag}={self.directory} is in use by {holder}; wait for it to finish, "
                                 "stop it, or choose another --output_dir") from None
            try:  # the holder may have removed the file between our open and our lock: lock the new one
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        previous = _read(fd)
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                      "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
            os.fsync(fd)
        except OSError as e:  # a full disk: the lock file cannot name us
            self.release()
            raise write_error(e, f"{self.flag}={self.directory}") from None
        if previous:
            say(f"took over the lock of {_describe(previous)}, which is no longer running")

    def release(self) -> None:
        """Remove the lock file and let go (also happens, minus the removal, when the process dies)."""
        if self._fd is None:
            return
        try:
            os.remove(self.path)
        except OSError:  # gone, or the directory turned read-only: closing drops the lock all the same
            pass
        os.close(self._fd)
        self._fd = None


def _read(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except ValueError:
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another process"
    return f"pid {holder.get('pid')} on {holder.get('host')} (started {holder.get('started')})"
