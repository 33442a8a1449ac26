"""Quiet start-up: TensorFlow's import-time log block hidden, anything else it prints kept; GRASP_TF_VERBOSE_LOG=1 shows all.

TensorFlow prints a start-up block to stderr from C++ when it is imported and when it first
looks for devices (oneDNN notes, CUDA stubs, ``E0000 ... failed call to cuInit`` on every
machine without a GPU, absl's "All log messages before absl::InitializeLog()" notice, twice
per process); ``TF_CPP_MIN_LOG_LEVEL`` does not hide the absl part. ``import grasp_tf`` (and
the command-line tools, through ``train.quiet``) import TensorFlow and list its physical
devices here, with file descriptor 2 going through a filter that drops that block and passes
every other line on as it comes, so a real import problem still shows, even one that aborts
the process. Listing physical devices leaves
logical device configuration (``tf.config.set_logical_device_configuration``, memory growth)
open. ``GRASP_TF_VERBOSE_LOG=1`` in the environment turns the filter off: everything is
printed as TensorFlow prints it. This is the one place that knows the block.
"""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
from typing import Iterator

VERBOSE_ENV = "GRASP_TF_VERBOSE_LOG"

# Sources of the start-up block (glog lines of TF >= 2.18 "I0000 00:00:...  123 port.cc:153] ..."
# and of TF 2.16/2.17 "2026-01-01 00:00:00.000000: I tensorflow/core/util/port.cc:113] ...").
_SOURCES = (r"port|cudart_stub|cuda_platform|cuda_executor|cuda_diagnostics|cpu_feature_guard|cuda_dnn|"
            r"cuda_fft|cuda_blas|computation_placer|py_utils")
_STARTUP = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rf"|[IWE]\d{{4}} [\d:. ]+\s+\d+ ({_SOURCES})\.cc:\d+\] .*"
    rf"|\d{{4}}-\d\d-\d\d [\d:.]+: [IWE] \S*/({_SOURCES})\.cc:\d+\] .*"
    r"|To enable the following instructions: .*"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.)$")


def verbose() -> bool:
    """True when ``GRASP_TF_VERBOSE_LOG`` is set to anything but ``""`` or ``0``: show TensorFlow's full log."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def startup_noise(line: str) -> bool:
    """True for a line of TensorFlow's start-up block (or TFLite's delegate notice)."""
    return bool(_STARTUP.match(line))


# The filter runs in a small helper process that passes every other line on at once, so what it
# passes on survives even if TensorFlow aborts the importing process (a fatal "F" line, then
# SIGABRT, as on a CPU without the instructions the TensorFlow build needs).
_FILTER = ("import re, sys\n"
           "noise = re.compile(sys.argv[1])\n"
           "for raw in sys.stdin.buffer:\n"
           "    if not noise.match(raw.decode(errors='replace').rstrip('\\r\\n')):\n"
           "        sys.stdout.buffer.write(raw)\n"
           "        sys.stdout.buffer.flush()\n")


def _filter_process(saved: int) -> subprocess.Popen | None:
    """The helper filtering into file descriptor ``saved``, or None where no Python can be started."""
    if not os.path.basename(sys.executable or "").startswith("python"):  # embedded: sys.executable is no python
        return None
    try:
        return subprocess.Popen([sys.executable, "-I", "-S", "-c", _FILTER, _STARTUP.pattern],
                                stdin=subprocess.PIPE, stdout=saved, stderr=saved)
    except OSError:
        return None


@contextlib.contextmanager
def _stderr_into(fd: int, saved: int) -> Iterator[None]:
    """File descriptor 2 pointed at ``fd`` inside the block, then back to ``saved`` (which is closed)."""
    os.dup2(fd, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Hide the start-up lines printed (from C++ or Python) to stderr inside the block; pass the rest on.

    Does nothing when :func:`verbose` is true.
    """
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    helper = _filter_process(saved)
    if helper is None:  # captured to a file and replayed afterwards
        with tempfile.TemporaryFile() as captured:
            try:
                with _stderr_into(captured.fileno(), saved):
                    yield
            finally:
                captured.seek(0)
                rest = [line for line in captured.read().decode(errors="replace").splitlines()
                        if not startup_noise(line)]
                if rest:
                    print("\n".join(rest), file=sys.stderr, flush=True)
        return
    try:
        with _stderr_into(helper.stdin.fileno(), saved):
            yield
    finally:
        helper.stdin.close()
        try:
            helper.wait(timeout=30)  # everything passed on before anything printed after the block
        except subprocess.TimeoutExpired:  # a child process still holds the pipe: its lines come later
            pass


_started = False


def import_tensorflow() -> None:
    """Import TensorFlow and list its physical devices (where cuInit is tried) without the start-up block."""
    global _started
    if _started:
        return
    with filtered_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()
    _started = True
