"""Why a pruned net trains: gradient norm after pruning, per-layer density, and their statistics.

The numbers behind the paper's figures (Wang, Zhang & Grosse, ICLR 2020): Fig. 2 is
:func:`relative_gradient_norm` over methods, sparsities and initialisations, Fig. 3 is
:func:`layer_densities`. Plotting and files live in ``train/analyze.py``.

**Gradient norm** (:func:`gradient_norms`): the L2 norm ``‖m ⊙ ∇θ L(θ ⊙ m)‖₂`` of the
gradient of the mean cross-entropy over a whole dataset, with respect to the model's
trainable variables (``weights="trainable"``: kernels, biases, batch-norm γ/β) or only its
(trainable) prunable kernels (``weights="prunable"``), at the model's current weights. The
forward pass uses ``θ ⊙ m`` and the gradient is multiplied by ``m``: exactly the gradient a
masked (wrapped) model receives in training, pruned entries contributing zero. The dataset
gradient is the example-weighted mean of per-batch mean-loss gradients, accumulated in
float64, so a stream of any length is read once and never held in memory. With
``training=True`` (the default: as the reference code scores and as training sees the net)
batch norm normalises with each batch's statistics and dropout is active; the model's
variables, batch-norm moving averages included, are never changed.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Literal, Mapping, Sequence, Union

import numpy as np
import tensorflow as tf

from grasp_tf import criteria, hessian, keys, sampling
from grasp_tf.prunable import prunable_weights

Data = Union[tuple[Any, Any], tf.data.Dataset]
Masks = Mapping[str, Any]

__all__ = [
    "gradient_norms",
    "gradient_norm",
    "relative_gradient_norm",
    "masks_at_sparsities",
    "layer_densities",
    "mean_std",
    "mean_ci95",
    "t_quantile_975",
    "paired_t_test",
]


def _batches(data: Data, batch_size: int, max_examples: int | None) -> Iterator[sampling.Batch]:
    """Numpy ``(x, y)`` batches of ``data`` (arrays are split into ``batch_size``), at most ``max_examples``."""
    if isinstance(data, tf.data.Dataset):
        source = sampling.batches(data)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        xs, ys = next(sampling.batches(tuple(data)))
        source = ((xs[i:i + batch_size], ys[i:i + batch_size]) for i in range(0, len(xs), batch_size))
    else:
        raise ValueError(f"data must be an (x, y) pair or a tf.data.Dataset of (x, y) batches, "
                         f"got {type(data).__name__}.")
    seen = 0
    for x, y in source:
        if max_examples is not None:
            if seen >= max_examples:
                return
            x, y = x[:max_examples - seen], y[:max_examples - seen]
        seen += len(x)
        yield x, y


def _multipliers(model: Any, masks: Masks | None, variables: Sequence[Any]) -> list[np.ndarray | None]:
    """One float32 keep-array per trainable variable (``None`` = not masked), from keyed masks."""
    out: list[np.ndarray | None] = [None] * len(variables)
    if masks is None:
        return out
    table = keys.index(model)
    index = {id(v): i for i, v in enumerate(variables)}
    for key, mask in table.check(masks).items():
        var = table.by_key[key].variable
        if id(var) not in index:
            raise ValueError(f"Mask {key!r} names a weight that is not trainable; gradients are taken "
                             "with respect to trainable weights only.")
        out[index[id(var)]] = mask.astype(np.float32)
    return out


def gradient_norms(
    model: Any,
    data: Data,
    masks: Sequence[Masks | None] = (None,),
    *,
    weights: Literal["trainable", "prunable"] = "trainable",
    training: bool = True,
    batch_size: int = 128,
    max_examples: int | None = None,
) -> list[float]:
    """``‖∇θ L(θ ⊙ m)‖₂`` over all of ``data`` for each mask set in ``masks`` (``None`` = dense).

    All mask sets see the same batches in one pass over ``data``: an ``(x, y)`` pair of
    arrays (split into ``batch_size`` batches) or a finite ``tf.data.Dataset`` of ``(x, y)``
    batches, of which at most ``max_examples`` examples are read. Labels are class ids or
    one-hot rows; a softmax output layer is undone to its logits. The definition (weights,
    masking, batch norm) is in the module docstring. ``model`` is left untouched.
    """
    if weights not in ("trainable", "prunable"):
        raise ValueError(f"weights must be 'trainable' or 'prunable', got {weights!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
        raise ValueError(f"max_examples must be a positive integer or None, got {max_examples!r}.")
    variables = list(model.trainable_variables)
    index = {id(v): i for i, v in enumerate(variables)}
    selected = ([index[id(w.variable)] for w in prunable_weights(model) if id(w.variable) in index]
                if weights == "prunable" else list(range(len(variables))))
    multipliers = [_multipliers(model, m, variables) for m in masks]
    sums = [[np.zeros(v.shape, np.float64) for v in variables] for _ in masks]
    count = 0
    with hessian.bind(model, variables) as function:
        base = [np.asarray(p, dtype=np.float32) for p in function.params]
        masked = [[tf.constant(b if m is None else b * m) for b, m in zip(base, mult)] for mult in multipliers]

        def loss(params: list[tf.Tensor], x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
            return hessian.cross_entropy(function.logits(params, x, training=training), y, 1.0)

        step = tf.function(lambda params, x, y: hessian.gradient(lambda p: loss(p, x, y), params)[1],
                           reduce_retracing=True)
        num_classes = None
        for x, y in _batches(data, batch_size, max_examples):
            if num_classes is None:
                num_classes = hessian.output_width(model, x)
            x, y = tf.constant(x, tf.float32), tf.constant(sampling.class_labels(y, num_classes))
            n = int(x.shape[0])
            for total, values, mult in zip(sums, masked, multipliers):
                grads = step(function.params_at(values), x, y)
                for i in selected:
                    g = grads[i].numpy().astype(np.float64)
                    total[i] += n * (g if mult[i] is None else g * mult[i])
            count += n
    if count == 0:
        raise ValueError("data holds no examples.")
    return [math.sqrt(sum(float(np.sum(np.square(total[i] / count))) for i in selected)) for total in sums]


def gradient_norm(model: Any, data: Data, masks: Masks | None = None, **options: Any) -> float:
    """``‖∇θ L(θ ⊙ m)‖₂`` over ``data`` for one mask set (``None`` = dense); see :func:`gradient_norms`."""
    return gradient_norms(model, data, [masks], **options)[0]


def relative_gradient_norm(model: Any, data: Data, masks: Masks | None, **options: Any) -> float:
    """Gradient norm of the pruned net over that of the dense net on the same batches (dense = 1).

    This is the y-axis of the paper's Figure 2; options as in :func:`gradient_norms`.
    """
    dense, pruned = gradient_norms(model, data, [None, masks], **options)
    if dense == 0.0:
        raise ValueError("The dense network's gradient is exactly zero; the ratio is undefined.")
    return pruned / dense


def masks_at_sparsities(
    model: Any,
    data: Any,
    sparsities: Sequence[float],
    method: str = "grasp",
    scope: str = "global",
    *,
    count_rule: str = "exact",
    seed: int | None = None,
    **opts: Any,
) -> list[dict[str, np.ndarray]]:
    """``grasp_tf.compute_masks`` at each of ``sparsities``, scoring ``model`` once when the method allows.

    The same path as ``compute_masks`` (``grasp_tf.criteria.masks``): score-then-threshold
    methods are scored once and thresholded per sparsity; iterative methods (SynFlow) run once
    per sparsity.
    ``opts`` are ``compute_masks``'s scoring options (``samples_per_class``, ``temperature``, ...).
    """
    return criteria.masks(model, data, sparsities, method, scope=scope, count_rule=count_rule, seed=seed, **opts)

def layer_densities(masks: Masks, order: Sequence[str] | None = None) -> dict[str, float]:
    """Fraction of weights kept in each masked tensor, by key, in ``order`` (default: the masks' order).

    The paper's Figure 3 plots these against the layer index. ``order`` (e.g. the model's
    prunable keys) must name exactly the keys of ``masks``.
    """
    keys = list(masks) if order is None else list(order)
    if sorted(keys) != sorted(masks):
        raise ValueError(f"order names {sorted(set(keys) ^ set(masks))[:5]} not matching the masks' keys.")
    return {k: float(np.count_nonzero(masks[k])) / max(np.size(masks[k]), 1) for k in keys}


def t_quantile_975(df: float) -> float:
    """Student's t quantile at 0.975 for ``df`` degrees of freedom (``scipy.stats.t.ppf``).

    Args:
        df: degrees of freedom, positive (an integer or a float).

    Returns:
        ``t`` with ``P(T <= t) = 0.975``: a two-sided 95% interval is ``± t``.

    Raises:
        ValueError: when ``df`` is not a positive number.

    Example:

    >>> round(t_quantile_975(2), 4)
    4.3027
    """
    from scipy import stats  # imported when used: scipy.stats takes a while to import

    if isinstance(df, bool) or not isinstance(df, (int, float, np.integer, np.floating)) or not df > 0:
        raise ValueError(f"df must be a positive number, got {df!r}.")
    return float(stats.t.ppf(0.975, df))


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Two-sided paired t-test of ``a`` against ``b`` at 5% (``scipy.stats.ttest_rel``), pair by pair.

    Args:
        a: one value per pair (e.g. per seed).
        b: the other value of each pair, same length as ``a``.

    Returns:
        ``{"n", "mean", "std", "t", "p", "t_critical", "reject"}``: the number of pairs, the
        mean and sample standard deviation (ddof=1) of ``a - b``, the t statistic, its
        two-sided p-value, ``t_quantile_975(n - 1)``, and whether ``|t| > t_critical``
        (equality rejected at 5%). When every difference is the same, ``std`` is 0 and ``t``
        is ``±inf`` (``p`` = 0) or, for differences of zero, 0 (``p`` = 1).

    Raises:
        ValueError: fewer than two pairs, or ``a`` and ``b`` of different lengths.

    Example:

    >>> paired_t_test([0.86, 0.85, 0.87], [0.83, 0.83, 0.84])["reject"]
    True
    """
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"a and b must be two equally long lists, got shapes {x.shape} and {y.shape}.")
    n = int(x.size)
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 pairs, got {n}.")
    d = x - y
    mean, std = float(d.mean()), float(d.std(ddof=1))
    if std == 0.0:  # scipy divides by zero here; the limit is plain
        t, p = (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    else:
        result = stats.ttest_rel(x, y)
        t, p = float(result.statistic), float(result.pvalue)
    critical = t_quantile_975(n - 1)
    return {"n": n, "mean": mean, "std": std, "t": t, "p": p, "t_critical": critical, "reject": abs(t) > critical}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for a single value) of ``values``."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        raise ValueError("No values to aggregate.")
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else float("nan")


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of its 95% confidence interval, ``t_{0.975}(n-1) · s / √n`` (NaN for n = 1)."""
    mean, std = mean_std(values)
    n = len(values)
    return mean, t_quantile_975(n - 1) * std / math.sqrt(n) if n > 1 else float("nan")
