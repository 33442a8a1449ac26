"""NTK-SAP (Wang et al., ICLR 2023): ``|∂/∂m Σ‖f(θ⊙m) - f((θ+εz)⊙m)‖²|`` on Gaussian inputs, iterative.

Reference: YiteWang/NTK-SAP ``Pruners/pruners.py`` (class ``NTKSAP``), ``prune.py``
(``prune_loop``) and ``scripts/run.sh`` (the defaults). A round sums, over ``repetitions``
(the run script's ``ntksap_R=5``) × the batches of one repetition, the mask gradient of the
squared output change under a weight perturbation; each summand has

* its own weights: every scored weight redrawn from an untruncated He normal with fan-in
  (``reinit="kaiming_normal"``, the reference's ``_initialize_weights``; ``"none"`` keeps
  the model's weights); other variables (biases, BN γ/β) as the model holds them;
* its own inputs ``x ~ N(0, I)`` shaped like the model's input: ``inputs_per_class`` per
  output class (the reference's prune set, 10 per class) in batches of ``batch_size`` (256);
* its own perturbation ``z ~ N(0, I)`` of the scored weights, ``ε = epsilon`` (0.01);
* batch norm as the reference: the batch's own moments, taken in a training-mode pass of
  the unperturbed net (momentum 1 after a reset), then both nets run in inference mode on
  those fixed moments (no gradient through them). Keras keeps the biased batch variance
  where PyTorch's running variance is unbiased (a factor n/(n-1), n = examples × positions).

The score is ``|Σ ∂L/∂m|`` where ``m = 1`` (pruned weights score below every kept one).
``compute_masks`` prunes over ``rounds=20`` rounds (``--prune-epochs 20``), density
``(1-s)^(r/rounds)`` (``schedule="exponential"``) or linear; the last round removes exactly
``floor(N·s)``; ``count_rule="reference"`` is ``prune_loop``'s: remove every weight scoring
at most the ``int(N·(1-density))``-th smallest. ``compute_scores`` gives the first round's
scores. Everything is drawn from ``np.random.default_rng(seed)``.
"""
from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from grasp_tf import _keras_internals, hessian, masking
from grasp_tf.criteria.base import Criterion, Option, input_spec, keyed
from grasp_tf.progress import Progress
from grasp_tf.prunable import Prunable, PrunableWeight, is_tf_keras, prunable_weights

SCHEDULES = ("exponential", "linear")
REINITS = ("kaiming_normal", "none")




def _fan_in(weight: PrunableWeight) -> int:
    shape = [int(d) for d in weight.variable.shape]
    if len(shape) < 2:
        return shape[0]
    depthwise = getattr(weight.layer, "depthwise_kernel", None) is weight.variable
    return int(np.prod(shape[:-2] if depthwise else shape[:-1]))


def _batch_norms(model: Any) -> list[tuple[Any, Any, float]]:
    """``(moving_mean, moving_variance, momentum)`` of every trainable batch norm that updates in training."""
    out = []
    for layer in _keras_internals.flatten_layers(model):
        if not any(c.__name__ == "BatchNormalization" for c in type(layer).__mro__) or not layer.trainable:
            continue
        if getattr(layer, "renorm", False):
            raise ValueError(f"NTK-SAP does not support batch renormalization (layer {layer.name!r}).")
        if float(layer.momentum) >= 1.0:
            raise ValueError(f"NTK-SAP needs batch-norm momentum < 1 to read the batch moments; layer "
                             f"{layer.name!r} has momentum {layer.momentum}.")
        out.append((layer.moving_mean, layer.moving_variance, float(layer.momentum)))
    return out


class _Network:
    """The model as ``∂/∂m Σ‖f(θ⊙m) - f(ζ⊙m)‖²`` with batch-norm moments of the batch, compiled once."""

    def __init__(self, function: Any, model: Any) -> None:
        self.function, self.model = function, model
        norms = _batch_norms(model)
        index = {id(v): i for i, v in enumerate(function.others)}
        self.stat_slots = [(index[id(v)], m) for mean, var, m in norms for v in (mean, var) if id(v) in index]
        self.variables = [*function.scored, *function.others]
        self.grad = tf.function(self._grad, reduce_retracing=True)

    def _state(self, stats: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        state = list(self.function.state)
        for (slot, _), value in zip(self.stat_slots, stats):
            state[slot] = value
        return state

    def _moments(self, params: Sequence[tf.Tensor], x: tf.Tensor) -> list[tf.Tensor]:
        """Each batch norm's batch mean and variance: a training pass from zeroed moving statistics."""
        if not self.stat_slots:
            return []
        zeros = [tf.zeros_like(self.function.state[slot]) for slot, _ in self.stat_slots]
        mapping = list(zip(self.variables, [*params, *self._state(zeros)]))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            self.model(x, training=True)
            updated = [scope.get_current_value(self.function.others[slot]) for slot, _ in self.stat_slots]
        return [tf.stop_gradient(tf.cast(u, tf.float32) / (1.0 - m)) for u, (_, m) in zip(updated, self.stat_slots)]

    def _grad(self, theta: list[tf.Tensor], zeta: list[tf.Tensor], mask: list[tf.Tensor], x: tf.Tensor
              ) -> list[tf.Tensor]:
        w = [t * m for t, m in zip(theta, mask)]
        w2 = [t * m for t, m in zip(zeta, mask)]
        state = self._state(self._moments(w, x))
        with tf.GradientTape() as tape:
            tape.watch([*w, *w2])
            f = hessian.stateless_logits(self.model, self.variables, [*w, *state], x, training=False)
            f2 = hessian.stateless_logits(self.model, self.variables, [*w2, *state], x, training=False)
            loss = tf.reduce_sum(tf.square(f - f2))
        grads = tape.gradient(loss, [*w, *w2], unconnected_gradients=tf.UnconnectedGradients.ZERO)
        n = len(w)
        return [t * a + z * b for t, z, a, b in zip(theta, zeta, grads[:n], grads[n:])]


class _LegacyNetwork:
    """:class:`_Network` for a tf_keras model: variables set in place (``hessian.bind`` restores them), eager.

    The two nets cannot be one tape's inputs here, so each side's gradient is taken with the
    other side's output held constant: ``∂L/∂w = 2(f - f')·∂f/∂w``, ``∂L/∂w' = -2(f - f')·∂f'/∂w'``.
    """

    def __init__(self, function: Any, model: Any) -> None:
        self.function, self.model = function, model
        self.norms = [(v, m) for mean, var, m in _batch_norms(model) for v in (mean, var)]

    def _logits(self, values: Sequence[tf.Tensor], x: tf.Tensor, stats: Sequence[np.ndarray]) -> tf.Tensor:
        params = self.function.params_at(values)
        for (variable, _), value in zip(self.norms, stats):
            variable.assign(value)
        return self.function.logits(params, x, training=False)

    def _side(self, values: Sequence[tf.Tensor], x: tf.Tensor, stats: Sequence[np.ndarray], other: tf.Tensor,
              sign: float) -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(self.function.params)
            f = self._logits(values, x, stats)
            loss = sign * tf.reduce_sum(tf.square(f - other))
        return tape.gradient(loss, self.function.params, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    def grad(self, theta: list[tf.Tensor], zeta: list[tf.Tensor], mask: list[tf.Tensor], x: tf.Tensor
             ) -> list[tf.Tensor]:
        w = [t * m for t, m in zip(theta, mask)]
        w2 = [t * m for t, m in zip(zeta, mask)]
        for variable, _ in self.norms:
            variable.assign(tf.zeros_like(variable))
        self.function.logits(self.function.params_at(w), x, training=True)
        stats = [np.asarray(v) / (1.0 - m) for v, m in self.norms]
        f, f2 = self._logits(w, x, stats), self._logits(w2, x, stats)
        a = self._side(w, x, stats, tf.constant(f2), 1.0)
        b = self._side(w2, x, stats, tf.constant(f), 1.0)
        return [t * ga + z * gb for t, z, ga, gb in zip(theta, zeta, a, b)]


def _round_scores(net: _Network, base: Sequence[np.ndarray], fans: Sequence[int], mask: Sequence[np.ndarray],
                  shape: tuple[int, ...], rng: np.random.Generator, *, repetitions: int, epsilon: float,
                  inputs: int, batch_size: int, reinit: str) -> list[np.ndarray]:
    """One round's ``|Σ ∂L/∂m| ⊙ m`` (pruned weights get -1: below every kept one)."""
    masks = [tf.constant(m.astype(np.float32)) for m in mask]
    total = [np.zeros(b.shape, np.float64) for b in base]
    for _ in range(repetitions):
        for start in range(0, inputs, batch_size):
            count = min(batch_size, inputs - start)
            theta = base if reinit == "none" else [
                (rng.standard_normal(b.shape) * np.sqrt(2.0 / f)).astype(np.float32) for b, f in zip(base, fans)]
            x = rng.standard_normal((count, *shape)).astype(np.float32)
            zeta = [t + np.float32(epsilon) * rng.standard_normal(t.shape).astype(np.float32) for t in theta]
            grads = net.grad([tf.constant(t) for t in theta], [tf.constant(z) for z in zeta], masks, tf.constant(x))
            total = [a + g.numpy() for a, g in zip(total, grads)]
    out = [np.where(m, np.abs(t), -1.0) for m, t in zip(mask, total)]
    if not all(np.isfinite(s).all() for s in out):
        raise ValueError("NTK-SAP scores are not finite: the network's outputs overflow on Gaussian inputs.")
    return out


class _Setup:
    """What every round needs: the bound network, the base weights, fans, input shape and batch sizes."""

    def __init__(self, model: Any, weights: Sequence[PrunableWeight], data: Any) -> None:
        self.shape = input_spec(model, data, "NTK-SAP")[0]
        self.classes = hessian.output_width(model, np.zeros((1, *self.shape), np.float32))
        self.fans = [_fan_in(w) for w in weights]


def ntk_sap_scores(model: Any, weights: Sequence[PrunableWeight], data: Any, *, seed: int | None = None,
                   repetitions: int = 5, epsilon: float = 0.01, inputs_per_class: int = 10, batch_size: int = 256,
                   reinit: str = "kaiming_normal") -> dict[str, np.ndarray]:
    """First-round NTK-SAP scores of the unpruned network."""
    setup = _Setup(model, weights, data)
    rng = np.random.default_rng(seed)
    with hessian.bind(model, [w.variable for w in weights]) as function:
        net = (_LegacyNetwork if is_tf_keras(model) else _Network)(function, model)
        base = [np.asarray(p) for p in function.params]
        scores = _round_scores(net, base, setup.fans, [np.ones(b.shape, bool) for b in base], setup.shape, rng,
                               repetitions=repetitions, epsilon=epsilon, inputs=inputs_per_class * setup.classes,
                               batch_size=batch_size, reinit=reinit)
    return keyed(weights, scores)


def _reference_masks(scores: dict[str, np.ndarray], density: float, scope: str) -> dict[str, np.ndarray]:
    """``prune_loop``'s rule: remove every score <= the ``int((1 - density)·n)``-th smallest (ties removed)."""
    def one(flat: np.ndarray) -> np.ndarray:
        k = int((1.0 - density) * flat.size)
        return np.ones(flat.size, bool) if k < 1 else flat > np.partition(flat, k - 1)[k - 1]

    return masking.by_scope(scores, scope, one)


def ntk_sap_masks(model: Any, data: Any, sparsity: float, *, scope: str = "global", count_rule: str = "exact",
                  seed: int | None = None, prunable: Prunable = None, rounds: int = 20,
                  schedule: str = "exponential", repetitions: int = 5, epsilon: float = 0.01,
                  inputs_per_class: int = 10, batch_size: int = 256,
                  reinit: str = "kaiming_normal") -> dict[str, np.ndarray]:
    """Keep-masks from ``rounds`` rounds of NTK-SAP scoring and pruning (called by ``grasp_tf.criteria.masks``)."""
    weights = prunable_weights(model, prunable)
    keys = [w.key for w in weights]
    setup = _Setup(model, weights, data)
    rng = np.random.default_rng(seed)
    progress = Progress("ntk_sap", rounds, "rounds")
    with hessian.bind(model, [w.variable for w in weights]) as function:
        net = (_LegacyNetwork if is_tf_keras(model) else _Network)(function, model)
        base = [np.asarray(p) for p in function.params]
        mask = [np.ones(b.shape, bool) for b in base]
        for r in range(1, rounds + 1):
            density = ((1.0 - sparsity) ** (r / rounds) if schedule == "exponential"
                       else 1.0 - sparsity * r / rounds)
            scores = _round_scores(net, base, setup.fans, mask, setup.shape, rng, repetitions=repetitions,
                                   epsilon=epsilon, inputs=inputs_per_class * setup.classes,
                                   batch_size=batch_size, reinit=reinit)
            scores = dict(zip(keys, scores))
            if count_rule == "reference":
                new = _reference_masks(scores, density, scope)
            else:
                new = masking.masks_from_scores(scores, sparsity if r == rounds else 1.0 - density, scope=scope)
            mask = [new[k] & m for k, m in zip(keys, mask)]
            progress.step()
    return dict(zip(keys, mask))


OPTIONS = (
    Option("rounds", int, 20, "Prune-and-rescore rounds (the run script's --prune-epochs 20).", minimum=1),
    Option("schedule", str, "exponential", "Density per round: exponential, (1-s)^(r/rounds) (the reference's), "
           "or linear.", choices=SCHEDULES),
    Option("repetitions", int, 5, "Redraws of weights, inputs and perturbation summed per round (ntksap_R=5).",
           minimum=1),
    Option("epsilon", float, 0.01, "Perturbation scale: the second net has weights θ + ε·N(0, I) (ntksap_epsilon).",
           minimum=0, exclusive_minimum=True),
    Option("inputs_per_class", int, 10, "Gaussian inputs per output class in a repetition (the reference's "
           "prune set: 10 per class).", minimum=1),
    Option("batch_size", int, 256, "Gaussian inputs per forward pass; each batch has its own batch-norm moments "
           "(the reference's prune batch 256).", minimum=1),
    Option("reinit", str, "kaiming_normal", "Scored weights redrawn per summand: kaiming_normal (He normal, "
           "fan-in, the reference's) or none (the model's).", choices=REINITS),
)

NTK_SAP = Criterion("ntk_sap", ntk_sap_scores, remove_largest=False, needs_data=False,
                    iterative_masks=ntk_sap_masks, takes_sampling_options=False, option_specs=OPTIONS)
