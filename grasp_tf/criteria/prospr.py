"""ProsPr (Alizadeh et al., ICLR 2022): remove the smallest ``|∂L(θ_M)/∂m|``, M SGD steps taken from ``θ⊙m``.

Reference: mil-ad/prospr ``prospr/prospr.py`` (``prune``, ``compute_meta_grads``,
``functional_sgd``), defaults as its README: ``inner_steps=3``, ``inner_lr=0.5``,
``inner_momentum=0.9``, ``meta_gradient="full"``. A mask ``m = 1`` multiplies every
prunable weight; every trainable weight (biases, batch-norm γ/β too) takes ``inner_steps``
SGD steps with momentum (the buffer starts as the first gradient; no weight decay), batch
norm in training mode, softmax cross-entropy; the score is the meta-gradient's magnitude on
the next batch.

``"full"`` differentiates through the steps. It is computed in reverse, one Hessian-vector
product per step (``grasp_tf.hessian``: exact through batch norm), so no graph of the whole
unroll is held and ``chunk_size`` bounds memory; as in the reference, the first step's
gradient is detached where it starts the momentum buffer (``differentiate_first_step=True``
differentiates it too). ``"first_order"`` holds the inner gradients constant:
``|θ ⊙ ∇L(θ_M)|``. The reference updates batch-norm moving statistics on its copy of the
network and never reads them (training mode); here the model's own are left untouched.
Given an ``(x, y)`` pair every step scores on it; given a dataset each inner step and the
meta step draw their own draws (``new_data_in_inner=True``, ``prospr.prune``'s default).
``compute_scores`` scores every step on the one drawn sample.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import numpy as np
import tensorflow as tf

from grasp_tf import hessian, masking, sampling
from grasp_tf.criteria.base import Criterion, Option, keyed
from grasp_tf.criteria.force import CHUNK_SIZE, check_options, drawn_groups, keep_largest, mean_gradient
from grasp_tf.progress import Progress, Verbose
from grasp_tf.prunable import Prunable, PrunableWeight, prunable_weights

META_GRADIENTS = ("full", "first_order")

OPTIONS = (
    Option("inner_steps", int, 3, "SGD steps taken before the meta-gradient (the README's 3).", minimum=0),
    Option("inner_lr", float, 0.5, "Learning rate of the inner SGD steps (the README's 0.5).", minimum=0,
           exclusive_minimum=True),
    Option("inner_momentum", float, 0.9, "Momentum of the inner SGD steps (the README's 0.9).", minimum=0, maximum=1),
    Option("meta_gradient", str, "full", "full: differentiate through the inner steps; first_order: hold their "
           "gradients constant.", choices=META_GRADIENTS),
    Option("new_data_in_inner", bool, True, "From a dataset, new draws for every inner step and the meta step "
           "(prospr.prune's default); False: the same draws for all."),
    Option("differentiate_first_step", bool, False, "full: also differentiate the first step's gradient, which "
           "the reference detaches where it starts the momentum buffer."),
    CHUNK_SIZE,
)


def _trainable_others(model: Any, scored: Sequence[Any]) -> list[Any]:
    """The model's trainable float variables that are not ``scored``, once each, in model order."""
    seen = {id(v) for v in scored}
    out = []
    for v in model.trainable_variables:
        if id(v) not in seen and tf.as_dtype(v.dtype).is_floating:
            seen.add(id(v))
            out.append(v)
    return out


def meta_scores(model: Any, weights: Sequence[PrunableWeight], groups: Any,
                *, inner_steps: int, inner_lr: float, inner_momentum: float, meta_gradient: str,
                differentiate_first_step: bool, chunk_size: int | None, verbose: Verbose) -> list[np.ndarray]:
    """``|∂L(θ_M)/∂m|`` per prunable weight; ``groups`` gives the draws of each inner step, then the meta step's."""
    scored = [w.variable for w in weights]
    n, full = len(scored), meta_gradient == "full"
    lr, momentum = np.float32(inner_lr), np.float32(inner_momentum)
    with hessian.bind(model, [*scored, *_trainable_others(model, scored)]) as function:
        loss = hessian.chunk_loss(function, 1.0)
        gradient = lambda p, x, y, w: loss.gradient(p, function.state, x, y, w)
        theta = [np.asarray(p) for p in function.params]
        w0, thetas, buf, steps = theta[:n], [], None, iter(groups)
        progress = Progress("prospr", inner_steps + 1 + (inner_steps if full else 0), "passes", verbose)
        for i in range(inner_steps):  # functional_sgd
            thetas.append(theta)
            g = mean_gradient(gradient, function.params_at(theta), next(steps), chunk_size, f"inner step {i + 1}")
            buf = g if buf is None or momentum == 0 else [momentum * b + a for b, a in zip(buf, g)]
            theta = [t - lr * b for t, b in zip(theta, buf)]
            progress.step()
        adjoint = mean_gradient(gradient, function.params_at(theta), next(steps), chunk_size, "the meta step")
        progress.step()
        back = [np.zeros_like(t) for t in theta]  # dL/d(momentum buffer) of the step after
        for i in reversed(range(inner_steps) if full else ()):
            back = [-lr * a + momentum * b for a, b in zip(adjoint, back)]  # dL/d(buffer of step i)
            if i > 0 or momentum == 0 or differentiate_first_step:  # the reference detaches buffer 0
                vector = [tf.constant(b) for b in back]
                hvp = lambda p, x, y, w: loss.hessian_vector_product(p, function.state, x, y, w, vector)
                hv = mean_gradient(hvp, function.params_at(thetas[i]), groups[i], chunk_size,
                                   f"inner step {i + 1}")
                adjoint = [a + h for a, h in zip(adjoint, hv)]
            progress.step()
        return [np.abs(w * a) for w, a in zip(w0, adjoint[:n])]


class _Shared:
    """Every step's draws are the whole sample (``compute_scores``)."""

    def __init__(self, sample: sampling.Sample) -> None:
        self.sample = sample

    def __iter__(self) -> Iterator[Iterator[sampling.Batch]]:
        while True:
            yield iter(self.sample)

    def __getitem__(self, i: int) -> Iterator[sampling.Batch]:
        return iter(self.sample)


def prospr_scores(model: Any, weights: Sequence[PrunableWeight], sample: sampling.Sample, *, seed: int | None = None,
                  inner_steps: int = 3, inner_lr: float = 0.5, inner_momentum: float = 0.9,
                  meta_gradient: str = "full", new_data_in_inner: bool = True, differentiate_first_step: bool = False,
                  chunk_size: int | None = None) -> dict[str, np.ndarray]:
    """ProsPr's scores with every step on the drawn sample (each step's gradient the mean over its draws)."""
    options = dict(inner_steps=inner_steps, inner_lr=inner_lr, inner_momentum=inner_momentum,
                   meta_gradient=meta_gradient, new_data_in_inner=new_data_in_inner,
                   differentiate_first_step=differentiate_first_step, chunk_size=chunk_size)
    check_options(OPTIONS, "prospr", options)
    options.pop("new_data_in_inner")
    return keyed(weights, meta_scores(model, weights, _Shared(sample), verbose=sample.verbose, **options))


def prospr_masks(model: Any, data: Any, sparsity: float, *, scope: str = "global", count_rule: str = "exact",
                 seed: int | None = None, prunable: Prunable = None, samples_per_class: int | None = None,
                 num_draws: int = 1, sample_storage: str = "disk", verbose: Verbose = "auto", inner_steps: int = 3,
                 inner_lr: float = 0.5, inner_momentum: float = 0.9, meta_gradient: str = "full",
                 new_data_in_inner: bool = True, differentiate_first_step: bool = False,
                 chunk_size: int | None = None) -> dict[str, np.ndarray]:
    """ProsPr keep-masks; from a dataset each inner step and the meta step draw ``num_draws`` draws of their own.

    ``count_rule="reference"`` keeps ``ceil(N·(1 - sparsity))`` as the reference's ``keep_mask_from_scores``.
    """
    options = dict(inner_steps=inner_steps, inner_lr=inner_lr, inner_momentum=inner_momentum,
                   meta_gradient=meta_gradient, new_data_in_inner=new_data_in_inner,
                   differentiate_first_step=differentiate_first_step, chunk_size=chunk_size)
    check_options(OPTIONS, "prospr", options)
    options.pop("new_data_in_inner")
    weights = prunable_weights(model, prunable)
    with drawn_groups(model, data, inner_steps + 1, "prospr", samples_per_class=samples_per_class,
                      num_draws=num_draws, sample_storage=sample_storage, verbose=verbose,
                      fresh=new_data_in_inner) as groups:
        scores = keyed(weights, meta_scores(model, weights, groups, verbose=verbose, **options))
    if count_rule == "reference":
        return keep_largest(scores, lambda size: math.ceil(size * (1.0 - sparsity)), scope, with_ties=False)
    return masking.masks_from_scores(scores, sparsity, scope=scope)


PROSPR = Criterion("prospr", prospr_scores, remove_largest=False, iterative_masks=prospr_masks, option_specs=OPTIONS,
                   samples_drawn=lambda o: o["inner_steps"] + 1 if o["new_data_in_inner"] else 1)
