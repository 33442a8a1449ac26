"""Scores -> boolean keep-masks: global or layerwise thresholds, exact counts, deterministic ties.

Count rule ``"exact"`` (default) removes exactly ``k = floor(N * sparsity)`` weights (N per
scope). Ties at the threshold are broken by position: weights are ordered by key order
(model layer order) then by flat C-order index, and the earliest tied weights are removed
first. Count rule ``"reference"`` mimics the official GraSP code: it takes the k-th score as
the threshold and keeps every weight tied with it, so it removes at most k (usually k - 1).
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

SCOPES = ("global", "layerwise")
COUNT_RULES = ("exact", "reference")


def check_sparsity(sparsity: float) -> float:
    """Validate a pruning fraction: a real number in [0, 1)."""
    try:
        s = float(sparsity)
    except (TypeError, ValueError):
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}") from None
    if not 0.0 <= s < 1.0 or not np.isfinite(s):
        raise ValueError(f"sparsity must be in [0, 1) (fraction of weights removed), got {sparsity!r}")
    return s


def check_pruning(sparsity: float, scope: str = "global", count_rule: str = "exact") -> float:
    """Validate a pruning request (sparsity, scope, count rule); returns the sparsity as a float.

    The one check behind ``compute_masks``, ``analysis.masks_at_sparsities`` (both before any
    scoring) and :func:`masks_from_scores`.
    """
    sparsity = check_sparsity(sparsity)
    if scope not in SCOPES:
        raise ValueError(f"Unknown scope {scope!r}; choose one of {', '.join(SCOPES)}.")
    if count_rule not in COUNT_RULES:
        raise ValueError(f"Unknown count_rule {count_rule!r}; choose one of {', '.join(COUNT_RULES)}.")
    return sparsity


def kth_smallest(flat: np.ndarray, k: int) -> np.generic:
    """The ``k``-th smallest value (1-based) of a flat array, in O(N).

    ``np.partition`` slows twentyfold when most values are equal (20 M values, 90% tied: 7.4 s
    instead of 0.4 s), which is what iterative pruning makes: every weight pruned in an earlier
    round is pinned at the minimum. The minimum's ties are counted apart, and only the rest
    partitioned; the value is the same.
    """
    low = flat.min()
    at_low = flat == low
    ties = int(at_low.sum())
    if ties >= k:
        return low
    if ties == 1:
        return np.partition(flat, k - 1)[k - 1]
    return np.partition(flat[~at_low], k - ties - 1)[k - ties - 1]


def _removal_order_mask(flat: np.ndarray, k: int, remove_largest: bool, count_rule: str) -> np.ndarray:
    """Keep-mask for one flat score vector with ``k`` removals."""
    n = flat.size
    keep = np.ones(n, dtype=bool)
    if k <= 0:
        return keep
    oriented = -flat if remove_largest else flat  # remove the smallest `oriented`
    t = kth_smallest(oriented, k)  # the threshold
    below = oriented < t
    if count_rule == "reference":
        keep[below] = False
        return keep
    n_below = int(below.sum())
    tied = np.flatnonzero(oriented == t)[: k - n_below]
    keep[below] = False
    keep[tied] = False
    return keep


def by_scope(arrays: Mapping[str, np.ndarray], scope: str,
             keep: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """``keep`` (flat scores -> flat keep-mask) applied per array (``"layerwise"``) or to all at once, reshaped back."""
    if scope == "layerwise":
        return {k: keep(a.ravel()).reshape(a.shape) for k, a in arrays.items()}
    flat = keep(np.concatenate([a.ravel() for a in arrays.values()]))
    out, start = {}, 0
    for k, a in arrays.items():
        out[k], start = flat[start:start + a.size].reshape(a.shape), start + a.size
    return out


def masks_from_scores(
    scores: Mapping[str, np.ndarray],
    sparsity: float,
    *,
    remove_largest: bool = False,
    scope: str = "global",
    count_rule: str = "exact",
) -> dict[str, np.ndarray]:
    """Boolean keep-masks (True = kept) removing a ``sparsity`` fraction of the scored weights.

    ``remove_largest`` orients the scores (GraSP removes the largest, SNIP the smallest).
    """
    sparsity = check_pruning(sparsity, scope, count_rule)
    if not scores:
        raise ValueError("No scores given: nothing to prune.")
    keys = list(scores)
    arrays = [np.asarray(scores[k], dtype=np.float64) for k in keys]
    for k, a in zip(keys, arrays):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"Scores for {k!r} contain NaN or infinity; cannot rank them.")
    return by_scope(dict(zip(keys, arrays)), scope, lambda flat: _removal_order_mask(
        flat, int(np.floor(flat.size * sparsity)), remove_largest, count_rule))


def shuffle_within_layers(masks: Mapping[str, np.ndarray], seed: int | None = None) -> dict[str, np.ndarray]:
    """Each mask's kept count, at random positions of its tensor (keys in sorted order draw in turn).

    The layerwise-shuffle ablation of Frankle et al. (2021). The result depends on the masks
    only through their per-tensor counts, so it *is* the "random masks at the method's
    per-layer densities" ablation: two mask sets with the same counts shuffle to the same masks.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for k in sorted(masks):
        m = np.asarray(masks[k], bool)
        keep = np.zeros(m.size, bool)
        keep[rng.permutation(m.size)[:int(m.sum())]] = True
        out[k] = keep.reshape(m.shape)
    return {k: out[k] for k in masks}


def check_masks(masks: Mapping[str, np.ndarray], shapes: Mapping[str, tuple]) -> dict[str, np.ndarray]:
    """Masks validated against the model's weight shapes, as boolean arrays.

    ``masks`` must be a mapping; every key must name a weight in ``shapes``, with its shape,
    and every value must be boolean or 0/1. Weights missing from ``masks`` stay dense.
    """
    if not isinstance(masks, Mapping):
        raise ValueError(f"masks must be a dict of keep-masks keyed '<layer name>/<weight name>', "
                         f"got {type(masks).__name__}.")
    unknown = sorted(set(masks) - set(shapes))
    if unknown:
        raise ValueError(
            f"Masks name weights the model does not have: {unknown[:5]}"
            f"{' ...' if len(unknown) > 5 else ''}; the model's weights include "
            f"{sorted(shapes)[:5]}{' ...' if len(shapes) > 5 else ''}.")
    out = {}
    for k, m in masks.items():
        m = np.asarray(m)
        if tuple(m.shape) != tuple(shapes[k]):
            raise ValueError(f"Mask {k!r} has shape {tuple(m.shape)}, the weight has {tuple(shapes[k])}.")
        if m.dtype != bool and not np.isin(m, (0, 1)).all():
            raise ValueError(f"Mask {k!r} must be boolean or 0/1, got values such as "
                             f"{m[~np.isin(m, (0, 1))].ravel()[:3].tolist()}.")
        out[k] = m.astype(bool)
    return out


def sparsity_of(masks: Mapping[str, np.ndarray]) -> float:
    """Fraction of weights removed across all masks."""
    total = sum(np.size(m) for m in masks.values())
    kept = sum(int(np.count_nonzero(m)) for m in masks.values())
    return 1.0 - kept / total if total else 0.0
