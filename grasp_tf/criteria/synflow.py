"""SynFlow (Tanaka et al. 2020): ``S = |θ ⊙ ∂R/∂θ|``, remove the smallest; data-free and iterative.

``R`` is the sum of the logits of the "linearised" network (every float variable replaced by
its absolute value: kernels, biases, batch-norm parameters and moving statistics, as the
authors' code does) on one all-ones input, in inference mode. ``compute_masks`` prunes over
``rounds=100`` rounds, rescoring the masked network each round, with the density following
``schedule="exponential"`` (density_r = (1 - s)^(r/rounds)) or ``"linear"``; the last round
hits the requested sparsity exactly and pruned weights stay pruned. ``compute_scores`` gives
the one-shot (first-round) scores. Data is only used for the input shape when the model
does not declare it. Where the |θ| network overflows float32 (ResNet32x2 at He initialisation: its
output is ~2^143), the input and the backward seed are scaled by 2^-k, exact for a network
homogeneous in its input (see :func:`_rescaled_gradient`); one that is not raises a clear error.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from grasp_tf import hessian, masking
from grasp_tf.criteria.base import Criterion, Option, input_spec, keyed
from grasp_tf.prunable import Prunable, PrunableWeight, prunable_weights

SCHEDULES = ("exponential", "linear")




_PROBE = 100  # log2 of the input's down-scaling when probing an overflowing network's size


def _rescaled_gradient(function: Any, x: tf.Tensor) -> Callable[[Sequence[tf.Tensor]], tuple[int, list[tf.Tensor]]]:
    """For a |θ| network that overflows float32: its gradient with input and output scaled by 2^-k.

    The linearised network at initialisation (biases, betas and moving means zero) is
    positively homogeneous of degree 1 in its input, and ``∂R/∂θ`` is linear in the seed of
    the backward pass, so ``R(2^-k x)`` seeded with ``2^-k`` gives every score times
    ``2^-2k``, exactly (powers of two): the ranking is the exact-arithmetic one. ``k`` is half
    of ``log2 R``, read from a forward pass at input ``2^-100``, so that neither pass overflows.
    A network that is not homogeneous (nonzero biases) keeps the overflow error.
    """
    probe = tf.function(lambda params, scale: tf.reduce_sum(function.logits(params, scale * x, training=False)))
    scaled = tf.function(lambda params, scale: hessian.gradient(
        lambda p: scale * tf.reduce_sum(function.logits(p, scale * x, training=False)), params))

    def gradient(params: Sequence[tf.Tensor]) -> tuple[int, list[tf.Tensor]]:
        low, high = (float(probe(params, tf.constant(2.0 ** -e, tf.float32))) for e in (_PROBE, _PROBE - 1))
        if not (np.isfinite(low) and low > 0 and abs(high / low - 2.0) < 1e-4):
            raise ValueError("SynFlow scores overflowed float32 (the |θ| network's output is too large for this "
                             "depth, and the network is not homogeneous in its input, so it cannot be rescaled "
                             "exactly); rescale the initialisation or prune another way.")
        k = max(1, int(np.ceil((np.log2(low) + _PROBE) / 2)))
        _, grads = scaled(params, tf.constant(2.0 ** -k, tf.float32))
        return k, grads

    return gradient


def _products(values: Sequence[np.ndarray], grads: Sequence[tf.Tensor]) -> list[np.ndarray]:
    """``|θ ⊙ g|``, 0 where θ = 0 (a pruned weight's gradient, summing paths the mask has cut, may overflow
    where every kept one is finite; its score is 0 in exact arithmetic, not ``0 * inf = nan``)."""
    with np.errstate(invalid="ignore", over="ignore"):  # an overflow is detected (and rescaled) by the caller
        return [np.where(v == 0, np.float32(0), np.abs(v * g.numpy())) for v, g in zip(values, grads)]


@contextlib.contextmanager
def _linearised(model: Any, weights: Sequence[PrunableWeight], data: Any
                ) -> Iterator[Callable[[Sequence[np.ndarray] | None], list[np.ndarray]]]:
    """Scores of the |θ| network on an all-ones input, for any masking of its scored weights."""
    absolute = [(v, np.abs(np.asarray(v))) for v in model.variables if tf.as_dtype(v.dtype).is_floating]
    shape, dtype = input_spec(model, data, "SynFlow")
    dtype = tf.as_dtype(dtype)
    x = tf.constant(np.ones((1, *shape), np.float32 if dtype.is_floating else dtype.as_numpy_dtype))
    with hessian.bind(model, [w.variable for w in weights], absolute) as function:
        base = [np.asarray(p) for p in function.params]
        flow = lambda p: tf.reduce_sum(function.logits(p, x, training=False))
        gradient = tf.function(lambda params: hessian.gradient(flow, params))
        rescaled = _rescaled_gradient(function, x) if dtype.is_floating else None

        def scores(masks: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
            values = base if masks is None else [b * m for b, m in zip(base, masks)]
            params = function.params_at(values)
            _, grads = gradient(params)
            out = _products(values, grads)
            if not all(np.isfinite(s).all() for s in out):
                if rescaled is None:
                    raise ValueError("SynFlow scores overflowed float32 (the |θ| network's output is too "
                                     "large for this depth); rescale the initialisation or prune another way.")
                _, grads = rescaled(params)
                out = _products(values, grads)
            return out

        yield scores


def synflow_scores(model: Any, weights: Sequence[PrunableWeight], data: Any, *,
                   seed: int | None = None) -> dict[str, np.ndarray]:
    """One-shot SynFlow scores of the unpruned network."""
    with _linearised(model, weights, data) as scores:
        return keyed(weights, scores())


def synflow_masks(model: Any, data: Any, sparsity: float, *, scope: str = "global",
                  count_rule: str = "exact", seed: int | None = None, prunable: Prunable = None,
                  rounds: int = 100, schedule: str = "exponential") -> dict[str, np.ndarray]:
    """Keep-masks from ``rounds`` rounds of SynFlow scoring and pruning.

    Called by ``grasp_tf.criteria.masks``, which has validated sparsity, scope and options
    against :data:`OPTIONS`.
    """
    weights = prunable_weights(model, prunable)
    keys = [w.key for w in weights]
    masks = [np.ones(tuple(w.variable.shape), dtype=bool) for w in weights]
    with _linearised(model, weights, data) as network_scores:
        for r in range(1, rounds + 1):
            if r == rounds:
                target = sparsity
            elif schedule == "exponential":
                target = 1.0 - (1.0 - sparsity) ** (r / rounds)
            else:
                target = sparsity * r / rounds
            scores = [np.where(m, s, -1.0) for m, s in zip(masks, network_scores(masks))]
            new = masking.masks_from_scores(dict(zip(keys, scores)), target, scope=scope,
                                            count_rule=count_rule)
            masks = [new[k] & m for k, m in zip(keys, masks)]
    return dict(zip(keys, masks))


OPTIONS = (
    Option("rounds", int, 100, "Prune-and-rescore rounds (the authors' 100).", minimum=1),
    Option("schedule", str, "exponential", "Density per round: exponential, (1-s)^(r/rounds) (the authors'), "
           "or linear.", choices=SCHEDULES),
)

SYNFLOW = Criterion("synflow", synflow_scores, remove_largest=False, needs_data=False,
                    iterative_masks=synflow_masks, takes_sampling_options=False, option_specs=OPTIONS)
