"""Random: i.i.d. uniform scores, remove the smallest; or random masks at ERK/ER per-layer densities. Needs no data.

``densities="uniform"`` (the default) is plain random pruning: uniform scores, one global
(or layerwise) threshold. ``densities="erk"`` / ``"er"`` first fixes how many weights each
layer loses (:func:`grasp_tf.densities.removal_counts`, Erdős–Rényi(-Kernel) as
google-research/rigl computes it) and then removes that many at uniformly random
positions of each layer (Liu et al., ICLR 2022); the counts sum to exactly ``floor(N·s)``
(``count_rule="reference"``: rigl's per-layer ``floor``). ``compute_scores`` gives the
uniform draws (densities are a ``compute_masks`` option).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from grasp_tf import densities as densities_lib
from grasp_tf import masking
from grasp_tf.criteria.base import Criterion, Option, keyed
from grasp_tf.prunable import Prunable, PrunableWeight, prunable_weights


def random_scores(model: Any, weights: Sequence[PrunableWeight], data: Any, *,
                  seed: int | None = None) -> dict[str, np.ndarray]:
    """Uniform [0, 1) draws from ``np.random.default_rng(seed)``, weight after weight."""
    rng = np.random.default_rng(seed)
    return keyed(weights, (rng.random(tuple(w.variable.shape), dtype=np.float32) for w in weights))


def random_masks(model: Any, data: Any, sparsity: float, *, scope: str = "global", count_rule: str = "exact",
                 seed: int | None = None, prunable: Prunable = None,
                 densities: str = "uniform") -> dict[str, np.ndarray]:
    """Keep-masks of random pruning; uniform is exactly score-then-threshold on :func:`random_scores`."""
    weights = prunable_weights(model, prunable)
    if densities == "uniform":
        return masking.masks_from_scores(random_scores(model, weights, data, seed=seed), sparsity,
                                         scope=scope, count_rule=count_rule)
    if scope != "global":
        raise ValueError(f"densities={densities!r} sets every layer's count itself; it needs scope='global', "
                         f"got scope={scope!r}.")
    shapes = [tuple(int(d) for d in w.variable.shape) for w in weights]
    counts = densities_lib.removal_counts(shapes, sparsity, densities, count_rule)
    rng = np.random.default_rng(seed)
    out = {}
    for w, shape, count in zip(weights, shapes, counts):
        keep = np.ones(int(np.prod(shape)), bool)
        keep[rng.permutation(keep.size)[:count]] = False
        out[w.key] = keep.reshape(shape)
    return out


OPTIONS = (
    Option("densities", str, "uniform", "Per-layer densities: uniform (one global threshold), erk or er "
           "(Erdős–Rényi(-Kernel) counts as rigl, random positions within each layer).",
           choices=densities_lib.KINDS),
)

RANDOM = Criterion("random", random_scores, remove_largest=False, needs_data=False,
                   iterative_masks=random_masks, option_specs=OPTIONS)
