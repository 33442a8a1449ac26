"""PHEW's view of a Keras model: a graph of tensors whose units (last-axis channels) are joined by kernels.

A functional or Sequential Keras 3 model becomes :class:`Graph`: every tensor is a node with
its unit count; every layer an edge of one kind. ``weight``: a Dense/Conv kernel, walked by
|w| (:class:`Kernel`; a SeparableConv is two kernels in a row). ``same``: the unit stays
(batch norm, activations, dropout, pooling, padding, global pooling). ``merge``: element-wise
Add/Subtract/Multiply/Average/Maximum/Minimum. ``concat``: Concatenate on the last axis.
``flatten``: channel ``c`` of an ``H×W×C`` tensor is units ``p·C + c``. Anything else, a
layer called twice, a nested model, a ``channels_first`` layer or a subclassed model is
refused with one error naming it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SAME = {"BatchNormalization", "LayerNormalization", "GroupNormalization", "UnitNormalization", "Activation",
        "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
        "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
        "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
        "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
        "GlobalMaxPooling2D", "GlobalMaxPooling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
        "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D", "Rescaling",
        "Normalization", "Identity"}
MERGE = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
WEIGHT = {"Dense", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
          "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D"}


def _kind(layer: Any) -> str:
    for cls in type(layer).__mro__:
        name = cls.__name__
        if name in WEIGHT:
            return "weight"
        if name in SAME:
            return "same"
        if name in MERGE:
            return "merge"
        if name in ("Concatenate", "Flatten", "InputLayer"):
            return {"Concatenate": "concat", "Flatten": "flatten", "InputLayer": "input"}[name]
    return "unknown"


class Kernel:
    """One kernel as ``[K, units in, units out]`` |w| with the flat index of each entry, and its samplers.

    ``forward(i, r)`` draws an output unit of input units ``i`` ∝ the summed |w| between them
    (uniform over the connected units when all are zero), ``backward(o, r)`` an input unit;
    ``entry(i, o, r)`` a kernel position of the pair ∝ |w|. ``r`` are uniform [0, 1) draws.
    """

    def __init__(self, value: np.ndarray, index: np.ndarray, key: str | None) -> None:
        self.key = key  # the prunable weight's key, None when the kernel is walked but not pruned
        value = np.where(index >= 0, np.abs(value.astype(np.float64)), 0.0)
        valid = index >= 0
        self.k, self.units_in, self.units_out = value.shape
        raw, connected = value.sum(0), valid.any(0)
        self._fwd = self._table(np.where(raw.sum(1, keepdims=True) > 0, raw, connected))
        self._bwd = self._table(np.where(raw.T.sum(1, keepdims=True) > 0, raw.T, connected.T))
        self.index = index.transpose(1, 2, 0).reshape(-1, self.k).astype(np.int32)
        if self.k > 1:
            by_pair = value.transpose(1, 2, 0).reshape(-1, self.k)
            self._pos = self._table(np.where(by_pair.sum(1, keepdims=True) > 0, by_pair,
                                             valid.transpose(1, 2, 0).reshape(-1, self.k)))

    @staticmethod
    def _table(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        rows = rows.reshape(rows.shape[0], -1).astype(np.float64)
        cum = np.cumsum(rows.ravel())
        ends = cum[rows.shape[1] - 1::rows.shape[1]]
        starts = np.concatenate([[0.0], ends[:-1]])
        return cum, starts, ends - starts, rows.shape[1]

    @staticmethod
    def _draw(table: tuple, rows: np.ndarray, r: np.ndarray) -> np.ndarray:
        cum, starts, totals, width = table
        j = np.searchsorted(cum, starts[rows] + r * totals[rows], side="right")
        return np.clip(j, rows * width, rows * width + width - 1) - rows * width

    def forward(self, i: np.ndarray, r: np.ndarray) -> np.ndarray:
        return self._draw(self._fwd, i, r)

    def backward(self, o: np.ndarray, r: np.ndarray) -> np.ndarray:
        return self._draw(self._bwd, o, r)

    def entry(self, i: np.ndarray, o: np.ndarray, r: np.ndarray) -> np.ndarray:
        """The flat index in the weight of a drawn position of each pair ``(i, o)``."""
        pair = i * self.units_out + o
        return self.index[pair, self._draw(self._pos, pair, r) if self.k > 1 else 0]


def _kernels(layer: Any, keys: dict[int, str]) -> list[Kernel]:
    """The layer's kernels in the order the signal passes them, as ``[K, in, out]``."""
    names = [c.__name__ for c in type(layer).__mro__]

    def as_kin_out(variable: Any, depthwise: bool = False, transpose: bool = False) -> Kernel:
        value = np.asarray(variable)
        index = np.arange(value.size).reshape(value.shape)
        value, index = value.reshape(-1, *value.shape[-2:]), index.reshape(-1, *value.shape[-2:])
        if transpose:
            value, index = value.transpose(0, 2, 1), index.transpose(0, 2, 1)
        groups = int(getattr(layer, "groups", 1) or 1)
        if depthwise or groups > 1:  # block-structured: expand to every (in, out) pair, -1 where unconnected
            k, a, b = value.shape
            cin, cout = (a, a * b) if depthwise else (a * groups, b)
            full_v, full_i = np.zeros((k, cin, cout)), -np.ones((k, cin, cout), np.int64)
            for c in range(cin):
                outs = (np.arange(c * b, (c + 1) * b) if depthwise else
                        np.arange(b)[(np.arange(b) // (b // groups)) == c // a])
                col = slice(None) if depthwise else c % a
                full_v[:, c, outs] = value[:, c] if depthwise else value[:, col][:, outs]
                full_i[:, c, outs] = index[:, c] if depthwise else index[:, col][:, outs]
            value, index = full_v, full_i
        return Kernel(value, index, keys.get(id(variable)))

    if "SeparableConv1D" in names or "SeparableConv2D" in names:
        return [as_kin_out(layer.depthwise_kernel, depthwise=True), as_kin_out(layer.pointwise_kernel)]
    if any(n.startswith("DepthwiseConv") for n in names):
        return [as_kin_out(layer.depthwise_kernel, depthwise=True)]
    return [as_kin_out(layer.kernel, transpose=any(n.endswith("Transpose") for n in names))]


@dataclass
class Edge:
    """A layer between tensors: its kind, input tensor ids, output tensor id and (weights) kernels."""

    layer: Any
    kind: str
    inputs: list[int]
    output: int
    kernels: list[Kernel] = field(default_factory=list)
    spatial: int = 1  # flatten: positions per channel
    channels: int = 0  # flatten: channels of its input
    offsets: list[int] = field(default_factory=list)  # concat: first unit of each input


class Graph:
    """The tensors of a single-input, single-output functional model and the layers joining them."""

    def __init__(self, model: Any, keys: dict[int, str]) -> None:
        try:
            inputs, outputs = list(model.inputs), list(model.outputs)
        except (AttributeError, ValueError, TypeError):
            inputs = outputs = []
        if not inputs or not outputs:
            raise ValueError(f"PHEW walks a model's layer graph: model {model.name!r} has none (a subclassed "
                             "model); build it functionally or as a Sequential on a keras.Input.")
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError("PHEW supports models with a single input and a single output.")
        self.input, self.output = id(inputs[0]), id(outputs[0])
        self.units = {self.input: int(inputs[0].shape[-1])}
        self.producer: dict[int, Edge] = {}
        self.consumers: dict[int, list[tuple[Edge, int]]] = {}
        for layer in model.layers:
            kind = _kind(layer)
            if kind == "input":
                continue
            if kind == "unknown" or hasattr(layer, "layers"):
                what = "a nested model" if hasattr(layer, "layers") else type(layer).__name__
                raise ValueError(f"PHEW cannot walk through layer {layer.name!r} ({what}); it walks Dense/Conv "
                                 "kernels, normalization, activation, dropout, pooling, padding, Flatten, "
                                 "Add-like merges and Concatenate.")
            if getattr(layer, "data_format", "channels_last") == "channels_first":
                raise ValueError(f"PHEW supports channels_last layers only; layer {layer.name!r} is channels_first.")
            try:
                ins, out = layer.input, layer.output
            except (AttributeError, ValueError) as e:
                raise ValueError(f"PHEW needs every layer called once; layer {layer.name!r} is not ({e}).") from None
            ins = list(ins) if isinstance(ins, (list, tuple)) else [ins]
            if kind == "concat" and layer.axis not in (-1, len(out.shape) - 1):
                raise ValueError(f"PHEW walks Concatenate on the last axis only; layer {layer.name!r} "
                                 f"joins axis {layer.axis}.")
            edge = Edge(layer, kind, [id(t) for t in ins], id(out), _kernels(layer, keys) if kind == "weight" else [])
            self.producer[id(out)] = edge
            self.units[id(out)] = int(out.shape[-1])
            for pos, t in enumerate(ins):
                self.consumers.setdefault(id(t), []).append((edge, pos))
            if kind == "flatten":
                edge.spatial = int(np.prod([int(d) for d in ins[0].shape[1:-1]]))
                edge.channels = int(ins[0].shape[-1])
            if kind == "concat":
                edge.offsets = [int(v) for v in np.cumsum([0] + [int(t.shape[-1]) for t in ins[:-1]])]
        self.order = self._topological()

    def _topological(self) -> list[int]:
        """Tensor ids on a path from the input to the output, inputs before outputs."""
        order, seen = [], set()

        def visit(t: int) -> None:
            if t in seen:
                return
            seen.add(t)
            for u in (self.producer[t].inputs if t in self.producer else ()):
                visit(u)
            order.append(t)

        visit(self.output)
        if self.input not in seen:
            raise ValueError("PHEW found no path from the model's input to its output.")
        return order

    def weight_free_to_merge(self, edge: Edge) -> bool:
        """Whether entering ``edge`` forward reaches a merge without passing a kernel (an identity shortcut)."""
        while edge.kind in ("same", "flatten"):
            nxt = self.consumers.get(edge.output, [])
            if len(nxt) != 1:
                return False
            edge = nxt[0][0]
        return edge.kind == "merge"

    def weight_free_from_branch(self, tensor: int) -> bool:
        """Whether going backward from ``tensor`` reaches a branching tensor before any kernel."""
        while True:
            if len(self.consumers.get(tensor, [])) > 1 or tensor not in self.producer:
                return True
            edge = self.producer[tensor]
            if edge.kind not in ("same", "flatten"):
                return False
            tensor = edge.inputs[0]
