"""How an exported SavedModel stores weights: dense variables, or non-zero values plus a compact index.

Sparse storage keeps, for each float variable whose zeros make it cheaper, only its non-zero
values plus the smallest of four index encodings (see :func:`encode_sparse`). The serving graph
densifies them all once, at the first call, into a cache variable that is saved empty, and
later calls read the cache: the file grows with the number of kept weights, inference runs at
dense speed after the first call. (The cache has no fixed shape, which Keras' ``TFSMLayer``
rejects: it loads only dense storage.)
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import tensorflow as tf

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


class Packed(tf.Module):
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


class Store(tf.Module):
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
            self.packed.append(Packed([arrays[i] for i in members]))
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
