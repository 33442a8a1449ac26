"""The tools' quiet start-up: TensorFlow's C++ log level defaulted to 3, then grasp_tf's quiet import (grasp_tf.quiet).

Imported first by every tool, before anything imports TensorFlow. The start-up block itself is
hidden by ``grasp_tf.quiet`` (the one place that knows it), as for any user of the library;
this module adds only what suits a command-line tool: TensorFlow's C++ log lines *after*
start-up are hidden too (``TF_CPP_MIN_LOG_LEVEL=3`` unless the user set a level), and absl's
``--verbosity=0`` (or higher) asks for the full log like ``GRASP_TF_VERBOSE_LOG=1``.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

VERBOSE_ENV = "GRASP_TF_VERBOSE_LOG"  # grasp_tf.quiet.VERBOSE_ENV, read here before TensorFlow is imported
USER_SET_TF_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL" in os.environ  # a level the user chose is kept

if os.environ.get(VERBOSE_ENV, "") in ("", "0"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ log lines after start-up, ERROR included


def import_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow (through ``import grasp_tf``) quietly; ``verbose`` shows TensorFlow's full log.

    ``verbose`` (the tools pass absl's ``--verbosity`` >= 0) acts like ``GRASP_TF_VERBOSE_LOG=1``
    when TensorFlow is not imported yet.
    """
    if verbose and "tensorflow" not in sys.modules:
        os.environ[VERBOSE_ENV] = "1"
        if not USER_SET_TF_LOG_LEVEL:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    import grasp_tf  # noqa: F401  (grasp_tf.quiet imports TensorFlow and probes its devices)

    if os.environ.get(VERBOSE_ENV, "") in ("", "0"):  # TensorFlow's Python-side notes (tf.function retracing)
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """``grasp_tf.quiet.filtered_stderr``: start-up and TFLite notice lines hidden inside the block, the rest kept."""
    from grasp_tf import quiet

    with quiet.filtered_stderr():
        yield
