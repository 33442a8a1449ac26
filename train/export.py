"""`python -m train.export --run_dir=runs/x [--output=...] [--storage=sparse|dense] [--tflite] [--overwrite]`.

Exports a finished run's ``model.keras`` (pruned weights held by the mask wrappers) as a
SavedModel with ``sparsity.json`` inside (default ``<run_dir>/export``) and, with ``--tflite``,
a sparse TFLite file beside it (``<output>.tflite``). Flags are defined only when run as a
script, so importing ``export_run`` never clashes with ``train.flags``.
"""
from __future__ import annotations

import os
from typing import Any

import train.quiet  # noqa: F401  (first: notes whether the user set TF's log level)


def export_run(run_dir: str, output: str | None = None, storage: str = "sparse", tflite: bool = False,
               overwrite: bool = False, log=lambda line: None) -> dict[str, tuple[str, dict[str, Any]]]:
    """Export ``<run_dir>/model.keras``; returns (path, report) by kind (``saved_model``, ``tflite``).

    ``log`` receives one progress line per file written (``[i/n] <summary>``).
    """
    import keras

    import grasp_tf  # registers FixedMaskWrapper for loading
    from train import artifacts

    path = os.path.join(run_dir, "model.keras")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir} holds no model.keras: finish the run with python -m train.run first.")
    problem = artifacts.verify_run(run_dir)  # model.keras, masks.npz and results.json against checksums.json
    if problem:
        raise ValueError(f"{problem}; not exporting a modified run (rerun it with --overwrite)")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # Keras reports a truncated zip as "File not found", among others
        raise ValueError(f"{path} exists but is not a readable Keras model ({type(e).__name__}); rerun the "
                         "same python -m train.run command to write it again.") from None
    output = output or os.path.join(run_dir, "export")
    steps = [("saved_model", output, lambda p: grasp_tf.export_saved_model(model, p, storage=storage,
                                                                          overwrite=overwrite))]
    if tflite:
        steps.append(("tflite", output.rstrip("/\\") + ".tflite",
                      lambda p: grasp_tf.export_tflite(model, p, overwrite=overwrite)))
    out = {}
    for i, (kind, path, export) in enumerate(steps, 1):
        out[kind] = (path, export(path))
        log(f"[{i}/{len(steps)}] {_summary(path, out[kind][1])}")
    return out


def _summary(path: str, report: dict[str, Any]) -> str:
    g, size = report["global"], report["size"]
    return (f"{path}: {report['format']} ({report['storage']} storage), {g['sparsity']:.2%} of "
            f"{g['total']:,} prunable weights removed, {size['raw_bytes']:,} bytes ({size['gzip_bytes']:,} gzipped)")


def main(argv: list[str]) -> int:
    from absl import flags, logging

    from train import quiet
    from train.errors import UsageError

    logging.set_verbosity(logging.WARNING)  # SavedModel writing logs INFO lines
    f = flags.FLAGS
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]} (flags need --name=value)")
    if not os.path.isdir(f.run_dir):
        raise UsageError(f"--run_dir={f.run_dir} is not a directory")
    try:
        with quiet.filtered_stderr():  # TFLite's interpreter announces its delegate
            export_run(f.run_dir, f.output, f.storage, f.tflite, f.overwrite, log=lambda s: print(s, flush=True))
    except FileExistsError as e:
        raise UsageError(f"{e.filename} already exists; add --overwrite to replace it") from None
    return 0


if __name__ == "__main__":
    from absl import flags

    from train.errors import run_app

    flags.DEFINE_string("run_dir", None, "A train.run output directory holding model.keras.", required=True)
    flags.DEFINE_string("output", None, "SavedModel directory to write (default: <run_dir>/export).")
    flags.DEFINE_enum("storage", "sparse", ["sparse", "dense"], "sparse: only kept weights stored; dense: zeros too.")
    flags.DEFINE_boolean("tflite", False, "Also write a sparse TFLite file at <output>.tflite.")
    flags.DEFINE_boolean("overwrite", False, "Replace an existing export.")
    run_app(main, (ValueError, OSError))
