"""What a scoring method is (:class:`Criterion`) and the helpers several methods share."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from grasp_tf import _keras_internals
from grasp_tf.prunable import PrunableWeight

ScoreFn = Callable[..., Mapping[str, np.ndarray]]
MaskFn = Callable[..., dict[str, np.ndarray]]


@dataclass(frozen=True)
class Criterion:
    """A scoring method: how to score, which end of the ranking is pruned, what it needs.

    ``score_fn(model, weights, data, *, seed, **options)`` returns one array per
    ``PrunableWeight.key`` of ``weights``; ``data`` is a validated
    :class:`grasp_tf.sampling.Sample` when ``needs_data``, else the caller's data as given
    (possibly ``None``). ``remove_largest`` orients the ranking. ``iterative_masks``, when
    set, replaces score-then-threshold in ``compute_masks``, with the signature
    ``(model, data, sparsity, *, scope, count_rule, seed, **opts) -> masks``.
    """

    name: str
    score_fn: ScoreFn
    remove_largest: bool = False
    needs_data: bool = True
    iterative_masks: MaskFn | None = None

    @property
    def options(self) -> tuple[str, ...]:
        """The method's own keyword options (``seed`` aside)."""
        params = inspect.signature(self.score_fn).parameters.values()
        return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "seed")

    def check_options(self, options: Iterable[str]) -> None:
        """Raise a ValueError naming any option this method does not take."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(f"Unknown option(s) {unknown} for method {self.name!r}; it takes "
                             f"{list(self.options) or 'no options'} (plus prunable, "
                             "samples_per_class, num_draws, seed).")


def glorot_normal(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Untruncated Glorot/Xavier normal draws, N(0, 2 / (fan_in + fan_out)) with Keras' fans.

    This is PyTorch's ``xavier_normal_``, which the reference code uses (Keras'
    ``GlorotNormal`` is truncated).
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) == 1:
        fan_in = fan_out = shape[0]
    else:
        receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    std = np.sqrt(2.0 / (fan_in + fan_out))
    return (rng.standard_normal(shape) * std).astype(np.float32)


def dense_kernels(model: Any) -> list[Any]:
    """The kernel of every Dense layer of ``model``, in layer order."""
    kernels = {}
    for layer in _keras_internals.flatten_layers(model):
        if any(c.__name__ == "Dense" for c in type(layer).__mro__) and getattr(layer, "kernel", None) is not None:
            kernels.setdefault(id(layer.kernel), layer.kernel)
    return list(kernels.values())


def redrawn(variables: Sequence[Any], seed: int | None) -> list[tuple[Any, np.ndarray]]:
    """``(variable, Glorot-normal draw)`` pairs, drawn in order from ``np.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return [(v, glorot_normal(v.shape, rng)) for v in variables]


def check_loss(loss: Any, where: str) -> None:
    """Raise a ValueError when a scoring loss is NaN or infinite."""
    if not np.isfinite(float(loss)):
        raise ValueError(f"The loss is not finite ({float(loss)}) on {where}: check the inputs and "
                         "the model's initial weights.")


def keyed(weights: Sequence[PrunableWeight], arrays: Iterable[Any]) -> dict[str, np.ndarray]:
    """``{key: array}`` in weight order, as float32 numpy arrays."""
    return {w.key: np.asarray(a, dtype=np.float32) for w, a in zip(weights, arrays)}
