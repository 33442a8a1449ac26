"""FORCE and Iter-SNIP (de Jorge et al., ICLR 2021): prune over rounds on a keep schedule, rescoring each round.

Reference: naver/force ``pruning/pruning_algos.py`` (``iterative_pruning``,
``get_average_saliencies``, ``get_mask``). Round r of ``rounds`` (60, the authors' CIFAR
runs) keeps ``(1-s)^(r/rounds)`` of the prunable weights (``schedule="exponential"``, the
reference's ``exp``) or ``1 - r·s/rounds`` (``"linear"``); the last round removes exactly
``floor(N·s)``. A round's gradient is the mean over its ``num_draws`` draws (the
reference's ``num_batches``, default 1) of each draw's mean-loss gradient on the masked
network, batch norm in training mode:

* ``iter_snip``: saliency ``|θ⊙m ⊙ ∇L(θ⊙m)|``; weights pruned in earlier rounds rank below
  every kept one, so they stay pruned (the reference pins them to the minimum saliency).
* ``force``: saliency ``|θ0 ⊙ ∇L(θ0⊙m)|`` with θ0 the dense weights, so pruned weights can return.

``loss="logit_nll"`` is what the reference computes: ``F.nll_loss`` on the raw logits (its
models end without a log-softmax), ``L = -mean(z_y)``; ``"cross_entropy"`` is the paper's
softmax cross-entropy. ``count_rule="reference"`` is the reference's ``get_mask``: keep the
``int(N·keep)`` largest and every weight tied with the last of them. Given an ``(x, y)``
pair every round scores on it; given a dataset each round draws its own draws, continuing
the stream. ``compute_scores`` gives the first round's saliency (the same for both).
"""
from __future__ import annotations

import contextlib
import itertools
import weakref
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from grasp_tf import hessian, masking, sampling
from grasp_tf.criteria.base import Criterion, Option, check_loss, classes, keyed
from grasp_tf.progress import Progress, Verbose
from grasp_tf.prunable import Prunable, PrunableWeight, prunable_weights

SCHEDULES = ("exponential", "linear")
LOSSES = ("logit_nll", "cross_entropy")

CHUNK_SIZE = Option("chunk_size", int, None, "At most this many examples per forward pass (bounds memory; "
                    "batch-norm statistics then become per piece).", minimum=1, optional=True)
OPTIONS = (
    Option("rounds", int, 60, "Prune-and-rescore rounds (the authors' CIFAR runs: 60).", minimum=1),
    Option("schedule", str, "exponential", "Kept fraction per round: exponential (the reference's) or linear.",
           choices=SCHEDULES),
    Option("loss", str, "logit_nll", "Scoring loss: logit_nll = -mean true-class logit (the reference's "
           "nll_loss on raw logits) or cross_entropy (the paper's).", choices=LOSSES),
    CHUNK_SIZE,
)


def check_options(specs: Sequence[Option], method: str, values: dict[str, Any]) -> None:
    """Raise the declared option's one-line ValueError for any invalid value."""
    for spec in specs:
        spec.check(values[spec.name], method)


def keep_fractions(sparsity: float, rounds: int, schedule: str) -> list[float]:
    """The kept fraction after each round, computed as the reference's ``iterative_pruning``."""
    keep = 1.0 - sparsity
    if schedule == "linear":
        return [1 - ((r + 1) * (1 - keep) / rounds) for r in range(rounds)]
    return [float(np.exp(0 - ((r + 1) * (0 - np.log(keep)) / rounds))) for r in range(rounds)]


def keep_largest(scores: dict[str, np.ndarray], count: Callable[[int], int], scope: str,
                 with_ties: bool) -> dict[str, np.ndarray]:
    """Keep the ``count(n)`` largest of each scope; ``with_ties`` also keeps all tied with the last kept.

    Without ties the earliest positions win (what a stable sort gives), in O(N): the k-th largest
    value by partition, then the earliest of the weights tied with it.
    """
    def one(flat: np.ndarray) -> np.ndarray:
        k = min(max(int(count(flat.size)), 0), flat.size)
        if k == 0:
            return np.zeros(flat.size, bool)
        t = -masking.kth_smallest(-flat, k)  # the k-th largest
        keep = flat > t
        if with_ties:
            return keep | (flat == t)
        keep[np.flatnonzero(flat == t)[: k - int(keep.sum())]] = True
        return keep

    return masking.by_scope({k: np.asarray(v, np.float64) for k, v in scores.items()}, scope, one)




class Groups:
    """The draws of ``count`` rounds or steps: a pair is every group's; a dataset gives each its own draws."""

    def __init__(self, sample: sampling.Sample, count: int, per_group: int, shared: bool) -> None:
        self.sample, self.count, self.per_group, self.shared = sample, count, per_group, shared

    def __iter__(self) -> Iterator[Iterator[sampling.Batch]]:
        """Each group's draws in turn (read the group before asking for the next)."""
        if self.shared:
            return (iter(self.sample) for _ in range(self.count))
        draws = iter(self.sample)
        return (itertools.islice(draws, self.per_group) for _ in range(self.count))

    def __getitem__(self, i: int) -> Iterator[sampling.Batch]:
        """Group ``i``'s draws (re-reads the sample up to them)."""
        if self.shared:
            return iter(self.sample)
        return itertools.islice(iter(self.sample), i * self.per_group, (i + 1) * self.per_group)


@contextlib.contextmanager
def drawn_groups(model: Any, data: Any, count: int, method: str, *, samples_per_class: int | None,
                 num_draws: int, sample_storage: str, verbose: Verbose, fresh: bool = True) -> Iterator[Groups]:
    """``count`` groups of ``num_draws`` draws: from a dataset (and ``fresh``) each its own, else one sample for all."""
    if data is None:
        raise ValueError(f"Method {method!r} needs data: an (x, y) pair or a tf.data.Dataset.")
    stream = isinstance(data, tf.data.Dataset) and fresh
    with sampling.draw(data, lambda x: classes(model, x), samples_per_class=samples_per_class,
                       num_draws=num_draws * count if stream else num_draws, sample_storage=sample_storage,
                       verbose=verbose) as sample:
        yield Groups(sample, count, num_draws, shared=not stream)


_compiled: "weakref.WeakKeyDictionary[Any, dict[tuple, Any]]" = weakref.WeakKeyDictionary()


def gradient_function(function: Any, loss: str) -> Callable[..., tuple[tf.Tensor, list[tf.Tensor]]]:
    """``step(params, x, y, weight)``: ``weight · L`` and its gradient, training mode, compiled.

    For a Keras 3 model the compiled function takes the other variables' values as inputs and
    is kept per model (weakly), so later scorings of the same model do not trace again.
    """
    def value(logits: tf.Tensor, y: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
        if loss == "cross_entropy":
            return weight * hessian.cross_entropy(logits, y, 1.0)
        return -weight * tf.reduce_mean(tf.gather(logits, y, axis=1, batch_dims=1))

    if isinstance(function, hessian.LegacyModelFunction):  # its variables are set in place: nothing to cache
        compiled = tf.function(lambda params, state, x, y, w: hessian.gradient(
            lambda p: value(function.logits(p, x, training=True), y, w), params), autograph=True)
        return lambda params, x, y, w: compiled(params, function.state, x, y, w)
    key = (tuple(id(v) for v in function.scored), tuple(id(v) for v in function.others), loss)
    per_model = _compiled.setdefault(function.model, {})
    if key not in per_model:
        model, variables = weakref.ref(function.model), [*function.scored, *function.others]
        logits = lambda p, state, x: hessian.stateless_logits(model(), variables, [*p, *state], x, training=True)
        per_model[key] = tf.function(lambda params, state, x, y, w: hessian.gradient(
            lambda p: value(logits(p, state, x), y, w), params), reduce_retracing=True, autograph=False)
    compiled = per_model[key]
    return lambda params, x, y, w: compiled(params, function.state, x, y, w)


def mean_gradient(step: Callable[..., Any], params: Sequence[Any], draws: Iterator[sampling.Batch],
                  chunk_size: int | None, where: str) -> list[np.ndarray]:
    """The mean over ``draws`` of each draw's gradient, a draw cut into weighted pieces of ``chunk_size``."""
    total, count = None, 0
    for x, y in draws:
        for piece, weight in sampling.pieces(slice(0, len(y)), chunk_size):
            value, grads = step(params, tf.constant(x[piece]), tf.constant(y[piece]), tf.constant(weight, tf.float32))
            check_loss(value, where)
            grads = [np.asarray(g, np.float32) for g in grads]
            total = grads if total is None else [a + b for a, b in zip(total, grads)]
        count += 1
    return [t / np.float32(count) for t in total]


def _score_fn(method: str) -> Callable[..., dict[str, np.ndarray]]:
    def scores(model: Any, weights: Sequence[PrunableWeight], sample: sampling.Sample, *, seed: int | None = None,
               loss: str = "logit_nll", chunk_size: int | None = None) -> dict[str, np.ndarray]:
        """First-round saliency ``|θ ⊙ ∇L(θ)|``, the gradient averaged over the sample's draws."""
        check_options(OPTIONS[2:], method, dict(loss=loss, chunk_size=chunk_size))
        with hessian.bind(model, [w.variable for w in weights]) as function:
            theta = [np.asarray(p) for p in function.params]
            g = mean_gradient(gradient_function(function, loss), function.params, iter(sample), chunk_size,
                              "the sample")
            return keyed(weights, (np.abs(t * a) for t, a in zip(theta, g)))

    return scores


def _prune(method: str, model: Any, data: Any, sparsity: float, scope: str, count_rule: str,
           prunable: Prunable, sample_args: dict, options: dict) -> dict[str, np.ndarray]:
    check_options(OPTIONS, method, options)
    rounds, loss, chunk_size = options["rounds"], options["loss"], options["chunk_size"]
    weights = prunable_weights(model, prunable)
    keys = [w.key for w in weights]
    keeps = keep_fractions(sparsity, rounds, options["schedule"])
    with drawn_groups(model, data, rounds, method, **sample_args) as groups, \
            hessian.bind(model, [w.variable for w in weights]) as function:
        theta0 = [np.asarray(p) for p in function.params]
        step = gradient_function(function, loss)
        mask = [np.ones(t.shape, bool) for t in theta0]
        zeroed = mask  # which weights the network holds at zero (Iter-SNIP: every round's)
        progress = Progress(method, rounds, "rounds", sample_args["verbose"])
        for r, (keep, draws) in enumerate(zip(keeps, groups)):
            net = [t * z for t, z in zip(theta0, zeroed)]
            g = mean_gradient(step, function.params_at(net), draws, chunk_size, f"round {r + 1}")
            base = theta0 if method == "force" else net
            saliency = [np.abs(w * a) for w, a in zip(base, g)]
            if method == "iter_snip" and r > 0:  # previously pruned: at the minimum (exact: below it)
                low = min(float(s.min()) for s in saliency) if count_rule == "reference" else -1.0
                saliency = [np.where(m, s, low) for m, s in zip(mask, saliency)]
            scores = dict(zip(keys, saliency))
            if count_rule == "reference":
                new = keep_largest(scores, lambda n, keep=keep: int(n * keep), scope, with_ties=True)
            else:
                new = masking.masks_from_scores(scores, sparsity if r == rounds - 1 else 1.0 - keep, scope=scope)
            mask = [new[k] for k in keys]
            zeroed = mask if method == "force" else [z & m for z, m in zip(zeroed, mask)]
            progress.step()
    return dict(zip(keys, mask))


def force_masks(model: Any, data: Any, sparsity: float, *, scope: str = "global", count_rule: str = "exact",
                seed: int | None = None, prunable: Prunable = None, samples_per_class: int | None = None,
                num_draws: int = 1, sample_storage: str = "disk", verbose: Verbose = "auto", rounds: int = 60,
                schedule: str = "exponential", loss: str = "logit_nll",
                chunk_size: int | None = None) -> dict[str, np.ndarray]:
    """FORCE keep-masks: ``rounds`` rounds of ``|θ0 ⊙ ∇L(θ0⊙m)|`` from the dense weights."""
    return _prune("force", model, data, sparsity, scope, count_rule, prunable,
                  dict(samples_per_class=samples_per_class, num_draws=num_draws, sample_storage=sample_storage,
                       verbose=verbose), dict(rounds=rounds, schedule=schedule, loss=loss, chunk_size=chunk_size))


def iter_snip_masks(model: Any, data: Any, sparsity: float, *, scope: str = "global", count_rule: str = "exact",
                    seed: int | None = None, prunable: Prunable = None, samples_per_class: int | None = None,
                    num_draws: int = 1, sample_storage: str = "disk", verbose: Verbose = "auto", rounds: int = 60,
                    schedule: str = "exponential", loss: str = "logit_nll",
                    chunk_size: int | None = None) -> dict[str, np.ndarray]:
    """Iter-SNIP keep-masks: ``rounds`` rounds of ``|θ⊙m ⊙ ∇L(θ⊙m)|``, pruned weights staying pruned."""
    return _prune("iter_snip", model, data, sparsity, scope, count_rule, prunable,
                  dict(samples_per_class=samples_per_class, num_draws=num_draws, sample_storage=sample_storage,
                       verbose=verbose), dict(rounds=rounds, schedule=schedule, loss=loss, chunk_size=chunk_size))


FORCE = Criterion("force", _score_fn("force"), remove_largest=False, iterative_masks=force_masks, option_specs=OPTIONS,
                  samples_drawn=lambda o: o["rounds"])
ITER_SNIP = Criterion("iter_snip", _score_fn("iter_snip"), remove_largest=False, iterative_masks=iter_snip_masks,
                      option_specs=OPTIONS, samples_drawn=lambda o: o["rounds"])
