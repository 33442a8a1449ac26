"""Quiet start-up for the command-line tools: TensorFlow's import-time log lines hidden unless asked for.

TensorFlow prints its start-up block (oneDNN, CUDA stubs, "failed call to cuInit" on every
machine without a GPU) from C++ before its own log level applies, twice per process. The
tools import TensorFlow once with stderr captured and replay whatever is not that block, so a
real import problem still shows. Setting ``TF_CPP_MIN_LOG_LEVEL`` yourself, or absl's
``--verbosity=0`` or higher, shows everything as TensorFlow prints it.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator

USER_SET_TF_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL" in os.environ  # read before the tools set a default
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ log lines after start-up, ERROR included

# The start-up block: glog-style I/W/E lines of these sources and absl's pre-init notice.
_STARTUP = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:. ]+\s+\d+ (port|cudart_stub|cuda_platform|cuda_executor|cpu_feature_guard|"
    r"cuda_dnn|cuda_fft|cuda_blas|cuda_diagnostics|computation_placer)\.cc:\d+\] .*"
    r"|To enable the following instructions: .*"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.)$")


def startup_noise(line: str) -> bool:
    """True for a line of TensorFlow's start-up block."""
    return bool(_STARTUP.match(line))


def verbose() -> bool:
    """True when the user asked to see TensorFlow's own log lines (``TF_CPP_MIN_LOG_LEVEL`` or ``--verbosity``)."""
    return USER_SET_TF_LOG_LEVEL or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Hide TensorFlow's start-up and TFLite notice lines printed (from C++) to stderr inside the block.

    Everything else printed there is replayed afterwards, so real problems still show.
    """
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            rest = [line for line in captured.read().decode(errors="replace").splitlines()
                    if not startup_noise(line)]
            if rest:
                print("\n".join(rest), file=sys.stderr)


def import_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow and probe its devices, hiding the start-up block unless ``verbose``."""
    if verbose and not USER_SET_TF_LOG_LEVEL:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    with filtered_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()  # where "failed call to cuInit" is printed
