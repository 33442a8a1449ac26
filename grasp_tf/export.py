"""Export pruned Keras models: SavedModels with sparse or dense storage, TFLite files, a sparsity report.

A SavedModel export is a ``tf.Module`` holding its own copy of every model variable and a
``serve`` function (also the ``serving_default`` signature) that runs the Keras model with those
values substituted through a ``keras.StatelessScope``; the mask wrappers are stripped first, so
pruned weights are plain zeros. ``tf.saved_model.save`` on that module writes each variable
once (``model.export()`` in Keras 3.15 writes every variable twice).

Sparse storage keeps, for each float variable whose zeros make it cheaper, only its non-zero
values plus the smallest of four index encodings (see ``encode_sparse``). The serving graph
densifies them all once, at the first call, into a cache variable that is saved empty, and
later calls read the cache: the file grows with the number of kept weights, inference runs at
dense speed after the first call. (The cache has no fixed shape, which Keras' ``TFSMLayer``
rejects: it loads only dense storage.) ``dense_weights()`` on the loaded object
returns every variable densified, keyed ``"<layer name>/<weight name>"``.

Every export is written to a temporary directory beside the target and renamed into place,
so a failure leaves nothing half-written.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import tarfile
import tempfile
import warnings
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from grasp_tf import _keras_internals
from grasp_tf.keras3_masks import strip_pruning
from grasp_tf.keys import weights_by_key
from grasp_tf.prunable import is_tf_keras
from grasp_tf.reports import sparsity_report
from grasp_tf.wrappers import FixedMaskWrapper

STORAGES = ("sparse", "dense")
QUANTIZE = (None, "dynamic", "float16")
REPORT_FILE = "sparsity.json"
_INDEX_DTYPES = {"bitmask": "uint8", "gaps_uint8": "uint8", "gaps_uint16": "uint16", "indices_int32": "int32"}


def encode_sparse(value: np.ndarray) -> tuple[str, np.ndarray, np.ndarray] | None:
    """``value``'s cheapest sparse encoding as (kind, non-zero values, index), or None if dense is no larger.

    Kinds: ``bitmask`` (one bit per entry, ``np.packbits`` order), ``gaps_uint8`` /
    ``gaps_uint16`` (distance of each non-zero from the previous one, the first from 0) and
    ``indices_int32`` (flat C-order positions). Index bytes + value bytes must beat dense bytes.
    """
    flat = np.ascontiguousarray(value).ravel()
    nonzero = np.flatnonzero(flat)
    n, k, item = flat.size, nonzero.size, flat.dtype.itemsize
    if n == 0 or n >= 2**31:
        return None
    gaps = np.diff(nonzero, prepend=0)
    largest = int(gaps.max()) if k else 0
    costs = {"bitmask": (n + 7) // 8, "indices_int32": 4 * k}
    if largest <= np.iinfo(np.uint16).max:
        costs["gaps_uint16"] = 2 * k
    if largest <= np.iinfo(np.uint8).max:
        costs["gaps_uint8"] = k
    kind = min(costs, key=lambda c: (costs[c], c))
    if costs[kind] + k * item >= n * item:
        return None
    if kind == "bitmask":
        index = np.packbits(flat != 0)
    elif kind == "indices_int32":
        index = nonzero.astype(np.int32)
    else:
        index = gaps.astype(_INDEX_DTYPES[kind])
    return kind, flat[nonzero], index


ALIGN = 16
"""Segments of a packed cache start at multiples of 16 elements, so slicing a weight out of it does not copy."""


class _Packed(tf.Module):
    """Float arrays of one dtype packed into one flat vector: non-zero values + compact indices.

    ``read()`` densifies everything into ``cache`` at the first call (``cache`` is saved empty,
    ``filled`` saved False) and reads the cache afterwards; ``densify`` (a saved function,
    shared by its callers) rebuilds the vector every time. Arrays whose zeros do not pay for
    an index are stored whole (kind ``dense``).
    """

    def __init__(self, arrays: list[np.ndarray]):
        super().__init__()
        self.shapes = [tuple(a.shape) for a in arrays]
        self.padded = [-(-a.size // ALIGN) * ALIGN for a in arrays]
        self.kinds, self.stored_values = [], []
        values, index = [], {"uint8": [], "uint16": [], "int32": []}
        for a, padded in zip(arrays, self.padded):
            kind, vals, idx = encode_sparse(a) or ("dense", a.ravel(), None)
            self.kinds.append(kind)
            self.stored_values.append(int(vals.size))
            if idx is None:  # stored whole, with the padding zeros, so it needs no scatter
                vals = np.pad(vals, (0, padded - a.size))
            else:
                index[idx.dtype.name].append(idx)
            values.append(vals)
        if sum(self.padded) >= 2**31:
            raise ValueError(f"{sum(self.padded)} values of one dtype exceed the sparse format's int32 positions; "
                             "use storage='dense'.")
        self._value_sizes = [v.size for v in values]
        self._index_sizes = {dt: [i.size for i in parts] for dt, parts in index.items() if parts}
        self.values = tf.Variable(np.concatenate(values).astype(arrays[0].dtype), trainable=False, name="values")
        self.index = {dt: tf.Variable(np.concatenate(parts), trainable=False, name=f"index_{dt}")
                      for dt, parts in index.items() if parts}
        self.cache = tf.Variable(tf.zeros([0], arrays[0].dtype), shape=tf.TensorShape([None]), trainable=False,
                                 name="cache")
        self.filled = tf.Variable(False, trainable=False, name="filled")
        self.densify = tf.function(self._densify, input_signature=[], autograph=False)

    def _densify(self) -> tf.Tensor:
        """The flat dense vector rebuilt from values and indices."""
        values = iter(tf.split(self.values, self._value_sizes))
        index = {dt: iter(tf.split(self.index[dt], sizes)) for dt, sizes in self._index_sizes.items()}
        bits = tf.constant([128, 64, 32, 16, 8, 4, 2, 1], tf.uint8)
        pieces = []
        for kind, padded in zip(self.kinds, self.padded):
            vals = next(values)
            if kind == "dense":
                pieces.append(vals)
                continue
            idx = next(index[_INDEX_DTYPES[kind]])
            if kind == "bitmask":
                positions = tf.where(tf.reshape(tf.bitwise.bitwise_and(tf.expand_dims(idx, 1), bits) > 0, [-1]))
            else:
                positions = tf.expand_dims(idx if kind == "indices_int32" else tf.cumsum(tf.cast(idx, tf.int32)), 1)
            pieces.append(tf.scatter_nd(positions, vals, [padded]))
        return tf.concat(pieces, 0)

    def read(self) -> tf.Tensor:
        """The flat dense vector for serving: densified into the cache by the first call, then read from it.

        A separate ``filled`` flag, not the cache's size, decides: Grappler's shape inference
        treats a shape-changing variable's size as a constant.
        """
        def fill() -> tf.Tensor:
            flat = self.densify()
            with tf.control_dependencies([self.cache.assign(flat)]):
                with tf.control_dependencies([self.filled.assign(True)]):
                    return tf.identity(flat)

        return tf.cond(self.filled.read_value(), self.cache.read_value, fill)

    def split(self, flat: tf.Tensor) -> list[tf.Tensor]:
        """Each packed array cut out of ``flat`` (aligned pieces, so without a copy) and reshaped."""
        return [tf.reshape(part[:int(np.prod(shape))] if int(np.prod(shape)) < padded else part, shape)
                for part, shape, padded in zip(tf.split(flat, self.padded), self.shapes, self.padded)]


class _Store(tf.Module):
    """Every variable of a model as saved: one tf.Variable each (dense) or packed per float dtype (sparse)."""

    def __init__(self, keys: list[str], arrays: list[np.ndarray], sparse: bool):
        super().__init__()
        self.keys = keys
        self.shapes = [tuple(a.shape) for a in arrays]
        floats = {i for i, a in enumerate(arrays) if sparse and np.issubdtype(a.dtype, np.floating)}
        others = [i for i in range(len(arrays)) if i not in floats]
        self.plain = [tf.Variable(arrays[i], trainable=False, name=re.sub(r"[^A-Za-z0-9_.-]", "_", keys[i]))
                      for i in others]
        self._where = {i: ("plain", j, 0) for j, i in enumerate(others)}  # -> (kind, group, segment)
        self.packed = []
        for dtype in sorted({arrays[i].dtype.name for i in floats}):
            members = [i for i in sorted(floats) if arrays[i].dtype.name == dtype]
            self.packed.append(_Packed([arrays[i] for i in members]))
            self._where.update({i: ("packed", len(self.packed) - 1, seg) for seg, i in enumerate(members)})
        self.kinds = [self._info(i, "kinds", "dense") for i in range(len(arrays))]
        self.stored_values = [self._info(i, "stored_values", int(arrays[i].size)) for i in range(len(arrays))]

    def _info(self, i: int, attr: str, plain: Any) -> Any:
        where, group, seg = self._where[i]
        return plain if where == "plain" else getattr(self.packed[group], attr)[seg]

    def _assemble(self, flats: list[tf.Tensor]) -> list[tf.Tensor]:
        parts = [p.split(f) for p, f in zip(self.packed, flats)]
        return [self.plain[g].read_value() if w == "plain" else parts[g][s]
                for w, g, s in (self._where[i] for i in range(len(self.keys)))]

    def read(self) -> list[tf.Tensor]:
        """Every variable's value for serving, in model order (packed ones from the cache)."""
        return self._assemble([p.read() for p in self.packed])

    def densify(self) -> list[tf.Tensor]:
        """Every variable's value rebuilt from storage, in model order."""
        return self._assemble([p.densify() for p in self.packed])


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
    plain = strip_pruning(model) if any(isinstance(l, FixedMaskWrapper) for l in _keras_internals.flatten_layers(model)) else model
    keys = {id(var): key for key, entries in weights_by_key(plain).items() for _, var in entries
            if len(entries) == 1}
    variables = list(plain.variables)
    module = tf.Module()
    module.store = _Store([keys.get(id(v), v.path) for v in variables], [np.asarray(v.numpy()) for v in variables],
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


class _ByteCounter:
    """A write-only file object that only counts the bytes written to it."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def _sizes(root: str) -> dict[str, Any]:
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


def _report(model: keras.Model, store: _Store, fmt: str, storage: str, sizes: dict[str, Any],
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


def _is_saved_model_dir(path: str) -> bool:
    """True for a directory overwrite=True may replace: a SavedModel or an empty directory."""
    return os.path.isdir(path) and (not os.listdir(path) or os.path.exists(os.path.join(path, "saved_model.pb")))


def _staging_dir(path: str, overwrite: bool, replaceable: Callable[[str], bool], what: str) -> str:
    """A new temporary directory beside ``path`` after checking that ``path`` may be written."""
    if os.path.lexists(path):
        if not overwrite:
            raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it.")
        if not replaceable(path):
            raise ValueError(f"Refusing to overwrite {path}: it is not {what}.")
    parent = os.path.dirname(path)
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise NotADirectoryError(f"Cannot write {path}: {parent} is a file, not a directory.")
    try:
        os.makedirs(parent, exist_ok=True)
        return tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    except OSError as e:
        raise type(e)(f"Cannot write {path}: {e.strerror} ({e.filename}).") from None


def _publish(staged: str, path: str) -> None:
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


def export_saved_model(model: keras.Model, path: str | os.PathLike, *, storage: str = "sparse",
                       overwrite: bool = False) -> dict[str, Any]:
    """Save ``model`` (pruned or not) as a SavedModel at ``path`` with ``sparsity.json`` inside; returns the report.

    The mask wrappers are stripped (pruned weights saved as zeros or, with ``storage="sparse"``,
    not saved at all). The SavedModel has a ``serving_default`` signature and ``serve`` /
    ``dense_weights`` functions; load it with ``tf.saved_model.load``. An existing ``path`` is
    refused (``FileExistsError``) unless ``overwrite=True`` and it is a SavedModel directory;
    an unwritable one raises ``OSError``; nothing is left half-written.
    """
    _check_model(model)
    path = os.path.abspath(os.fspath(path))
    module = _serving_module(model, storage)
    staged = _staging_dir(path, overwrite, _is_saved_model_dir, "a SavedModel directory")
    try:
        tf.saved_model.save(module, staged, signatures=module.serve)
        report = _report(model, module.store, "saved_model", storage, _sizes(staged))
        with open(os.path.join(staged, REPORT_FILE), "w") as f:
            json.dump(report, f, indent=2)
        _publish(staged, path)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return report


def _check_tflite_runs(content: bytes) -> None:
    """Fail unless TF's TFLite interpreter (default XNNPACK delegate) runs ``content`` to finite outputs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_content=content)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()
    for detail in interpreter.get_output_details():
        if not np.all(np.isfinite(interpreter.get_tensor(detail["index"]))):
            raise ValueError("the converted model outputs NaN or infinity")


def export_tflite(model: keras.Model, path: str | os.PathLike, *, sparse: bool = True, quantize: str | None = None,
                  overwrite: bool = False) -> dict[str, Any]:
    """Convert ``model`` (mask wrappers stripped) to a TFLite file at ``path``; returns the report.

    ``sparse=True`` adds TFLite's ``EXPERIMENTAL_SPARSITY`` optimisation (sparse weights stored
    compressed, densified by the runtime once at load); ``quantize`` is None, ``"dynamic"``
    (int8 weights) or ``"float16"``. The file is checked to run in TF's TFLite interpreter
    before it is written; a combination the runtime cannot run raises ``ValueError``.
    Existing / unwritable paths are handled as in ``export_saved_model``.
    """
    _check_model(model)
    if quantize not in QUANTIZE:
        raise ValueError(f"Unknown quantize {quantize!r}; choose one of {', '.join(map(repr, QUANTIZE))}.")
    path = os.path.abspath(os.fspath(path))
    module = _serving_module(model, "dense")
    staged = _staging_dir(path, overwrite, os.path.isfile, "a file")
    try:
        tf.saved_model.save(module, os.path.join(staged, "saved_model"), signatures=module.serve)
        converter = tf.lite.TFLiteConverter.from_saved_model(os.path.join(staged, "saved_model"))
        converter.optimizations = ([tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else []) + \
                                  ([tf.lite.Optimize.DEFAULT] if quantize else [])
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        content = converter.convert()
        try:
            _check_tflite_runs(content)
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"TFLite cannot run this conversion (sparse={sparse}, quantize={quantize!r}): "
                             f"{str(e).strip().splitlines()[0].rstrip('.')}. Try sparse=False or quantize=None.") from None
        staged_file = os.path.join(staged, os.path.basename(path))
        with open(staged_file, "wb") as f:
            f.write(content)
        report = _report(model, module.store, "tflite", "sparse" if sparse else "dense", _sizes(staged_file),
                         quantize=quantize)
        _publish(staged_file, path)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return report
