"""Export pruned Keras models: SavedModels with sparse or dense storage, TFLite files, a sparsity report.

A SavedModel export is a ``tf.Module`` holding its own copy of every model variable and a
``serve`` function (also the ``serving_default`` signature) that runs the Keras model with those
values substituted through a ``keras.StatelessScope``; the mask wrappers are stripped first, so
pruned weights are plain zeros. ``tf.saved_model.save`` on that module writes each variable
once (``model.export()`` in Keras 3.15 writes every variable twice). How weights are stored is
``grasp_tf.storage``; ``dense_weights()`` on the loaded object returns every variable
densified, keyed as ``grasp_tf.keys`` keys weights. Before anything is published, the written
SavedModel is loaded back and its outputs compared with the masked model's on a probe batch
(``grasp_tf.verify``; the TFLite file's too, when not quantized): a different network is a
``ValueError`` and nothing is written. Files are written by ``grasp_tf.staging`` (nothing
half-written on failure).
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from grasp_tf import _keras_internals, keys, staging, verify
from grasp_tf.keras3_masks import strip_pruning
from grasp_tf.keys import is_tf_keras
from grasp_tf.reports import sparsity_report
from grasp_tf.storage import Store
from grasp_tf.wrappers import FixedMaskWrapper

STORAGES = ("sparse", "dense")
QUANTIZE = (None, "dynamic", "float16")
REPORT_FILE = "sparsity.json"


def _check_model(model: Any) -> None:
    """Reject what cannot be exported: tf_keras models, non-models, unbuilt models."""
    if is_tf_keras(model):
        raise ValueError("grasp_tf.export takes Keras 3 models; strip a tf_keras model with "
                         "tfmot.sparsity.keras.strip_pruning and save it with tf.saved_model.save.")
    if not isinstance(model, keras.Model):
        raise ValueError(f"Expected a keras.Model, got {type(model).__name__}.")
    if not model.built:
        raise ValueError(f"Model {model.name!r} is not built: call it on a batch or build it first.")


def _serving_module(model: keras.Model, storage: str) -> tf.Module:
    """A tf.Module with ``serve`` and ``dense_weights`` over its own copies of ``model``'s variables."""
    if storage not in STORAGES:
        raise ValueError(f"Unknown storage {storage!r}; choose one of {', '.join(STORAGES)}.")
    wrapped = any(isinstance(l, FixedMaskWrapper) for l in _keras_internals.flatten_layers(model))
    plain = strip_pruning(model) if wrapped else model
    table = keys.index(plain)
    names = {id(e.variable): e.key for e in table.entries if e.key not in table.ambiguous}
    variables = list(plain.variables)
    module = tf.Module()
    module.store = Store([names.get(id(v), v.path) for v in variables], [np.asarray(v.numpy()) for v in variables],
                          sparse=storage == "sparse")
    signature = _keras_internals.input_signature(plain)

    def serve(*inputs: Any) -> Any:
        with keras.StatelessScope(state_mapping=list(zip(variables, module.store.read()))):
            return plain(*inputs, training=False)

    module.serve = tf.function(serve, input_signature=signature, autograph=False)
    module.dense_weights = tf.function(lambda: dict(zip(module.store.keys, module.store.densify())),
                                       input_signature=[], autograph=False)
    module.serve.get_concrete_function()  # trace now: a model that cannot be served fails before any file exists
    return module


def _report(model: keras.Model, store: Store, fmt: str, storage: str, sizes: dict[str, Any],
            **extra: Any) -> dict[str, Any]:
    """The export's report: ``sparsity_report`` plus how each weight is stored, parameter counts and sizes.

    ``parameters``: ``dense`` counts every variable of the stripped model, ``sparse`` those
    minus the pruned weights, ``stored`` the values the file holds (SavedModels only).
    """
    report = sparsity_report(model)
    total = int(sum(np.prod(s) for s in store.shapes))
    params = {"dense": total, "sparse": total - report["global"]["total"] + report["global"]["kept"]}
    if fmt == "saved_model":
        for key, kind, stored in zip(store.keys, store.kinds, store.stored_values):
            if key in report["weights"]:
                report["weights"][key].update(stored_as=kind, stored_values=stored)
        params["stored"] = int(sum(store.stored_values))
    return {"format": fmt, "storage": storage, **extra, "weights": report["weights"], "global": report["global"],
            "parameters": params, "size": sizes}


def export_saved_model(model: keras.Model, path: str | os.PathLike, *, storage: str = "sparse",
                       overwrite: bool = False) -> dict[str, Any]:
    """Save ``model`` (pruned or not) as a SavedModel at ``path``, with its report in ``sparsity.json``.

    The mask wrappers are stripped first (pruned weights saved as zeros or, with
    ``storage="sparse"``, not saved at all). The SavedModel has a ``serving_default``
    signature and ``serve`` / ``dense_weights`` functions; load it with
    ``tf.saved_model.load``. The written SavedModel is loaded back and must give the masked
    model's outputs on a probe batch before it is published. Nothing is left half-written on
    failure.

    Args:
        model: a built Keras 3 model, pruned or not.
        path: the SavedModel directory to write.
        storage: ``"sparse"`` (non-zero values + the cheapest index per weight, densified once
            at the first call) or ``"dense"`` (plain variables; loadable by Keras' ``TFSMLayer``).
        overwrite: replace an existing SavedModel (or empty) directory at ``path``.

    Returns:
        The report written to ``sparsity.json``: ``sparsity_report(model)`` plus how each
        weight is stored, parameter counts and file sizes (``docs/export.md``).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: a tf_keras or unbuilt model, an unknown storage, an existing ``path``
            that is not a SavedModel directory, or an export whose outputs differ from the
            masked model's (nothing written).
        OSError: ``path`` cannot be written.

    Example:

    >>> report = grasp_tf.export_saved_model(pruned, "pruned_savedmodel")
    >>> served = tf.saved_model.load("pruned_savedmodel").serve(x[:8])
    """
    _check_model(model)
    path = os.path.abspath(os.fspath(path))
    inputs, expected = verify.reference(model)
    module = _serving_module(model, storage)
    staged = staging.staging_dir(path, overwrite, staging.is_saved_model_dir, "a SavedModel directory")
    try:
        tf.saved_model.save(module, staged, signatures=module.serve)
        _check_saved_model(model, staged, inputs, expected, f"The {storage} SavedModel export of {model.name!r}")
        report = _report(model, module.store, "saved_model", storage, staging.sizes(staged))
        with open(os.path.join(staged, REPORT_FILE), "w") as f:
            json.dump(report, f, indent=2)
        staging.publish(staged, path)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return report


def _check_saved_model(model: keras.Model, directory: str, inputs: Any, expected: Any, what: str) -> None:
    """Load the SavedModel at ``directory`` back and compare its outputs with the masked model's."""
    if expected is not None:
        loaded = tf.saved_model.load(directory)
        verify.same_outputs(model, expected, verify.outputs(loaded.serve, inputs), what)


def _check_tflite_runs(content: bytes, inputs: Any = None) -> list[np.ndarray]:
    """Run ``content`` in TF's TFLite interpreter (default XNNPACK delegate); its outputs, refused if not finite.

    ``inputs``: one array per interpreter input (zeros of the declared shape when None).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_content=content)
    details = interpreter.get_input_details()
    if inputs is not None:
        for detail, x in zip(details, inputs):
            interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    for i, detail in enumerate(details):
        x = np.zeros(detail["shape"], detail["dtype"]) if inputs is None else inputs[i]
        interpreter.set_tensor(detail["index"], x.astype(detail["dtype"]))
    interpreter.invoke()
    out = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    if not all(np.all(np.isfinite(o)) for o in out):
        raise ValueError("the converted model outputs NaN or infinity")
    return out


def export_tflite(model: keras.Model, path: str | os.PathLike, *, sparse: bool = True, quantize: str | None = None,
                  overwrite: bool = False) -> dict[str, Any]:
    """Convert ``model`` (mask wrappers stripped) to a TFLite file at ``path``, checked to run first.

    The converted model is run once in TF's TFLite interpreter before the file is written;
    the SavedModel it is converted from, and (for a single-input, single-output model without
    ``quantize``) the TFLite outputs too, must give the masked model's outputs on a probe batch.

    Args:
        model: a built Keras 3 model, pruned or not.
        path: the ``.tflite`` file to write.
        sparse: add TFLite's ``EXPERIMENTAL_SPARSITY`` optimisation (sparse weights stored
            compressed, densified by the runtime once at load).
        quantize: None, ``"dynamic"`` (int8 weights) or ``"float16"``.
        overwrite: replace an existing file at ``path``.

    Returns:
        The export report (as ``export_saved_model``'s, without per-weight storage).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: a tf_keras or unbuilt model, an unknown ``quantize``, a combination the
            TFLite runtime cannot run, an existing ``path`` that is not a file, or a conversion
            whose outputs differ from the masked model's (nothing written).
        OSError: ``path`` cannot be written.

    Example:

    >>> report = grasp_tf.export_tflite(pruned, "pruned.tflite", quantize="dynamic")
    >>> report["size"]["raw_bytes"]
    """
    _check_model(model)
    if quantize not in QUANTIZE:
        raise ValueError(f"Unknown quantize {quantize!r}; choose one of {', '.join(map(repr, QUANTIZE))}.")
    path = os.path.abspath(os.fspath(path))
    inputs, expected = verify.reference(model)
    module = _serving_module(model, "dense")
    staged = staging.staging_dir(path, overwrite, os.path.isfile, "a file")
    try:
        tf.saved_model.save(module, os.path.join(staged, "saved_model"), signatures=module.serve)
        _check_saved_model(model, os.path.join(staged, "saved_model"), inputs, expected,
                           f"The SavedModel converted to TFLite for {model.name!r}")
        converter = tf.lite.TFLiteConverter.from_saved_model(os.path.join(staged, "saved_model"))
        converter.optimizations = ([tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else []) + \
                                  ([tf.lite.Optimize.DEFAULT] if quantize else [])
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        content = converter.convert()
        single = expected is not None and len(inputs) == 1 and isinstance(inputs[0], np.ndarray) and len(expected) == 1
        try:
            got = _check_tflite_runs(content, inputs if single else None)
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"TFLite cannot run this conversion (sparse={sparse}, quantize={quantize!r}): "
                             f"{str(e).strip().splitlines()[0].rstrip('.')}. Try sparse=False or quantize=None.") from None
        if single and quantize is None:
            verify.same_outputs(model, expected, got, f"The TFLite conversion of {model.name!r}")
        staged_file = os.path.join(staged, os.path.basename(path))
        with open(staged_file, "wb") as f:
            f.write(content)
        report = _report(model, module.store, "tflite", "sparse" if sparse else "dense", staging.sizes(staged_file),
                         quantize=quantize)
        staging.publish(staged_file, path)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return report
