"""Random: i.i.d. uniform scores, remove the smallest (uniform random pruning). Needs no data."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from grasp_tf.criteria.base import Criterion, keyed
from grasp_tf.prunable import PrunableWeight


def random_scores(model: Any, weights: Sequence[PrunableWeight], data: Any, *,
                  seed: int | None = None) -> dict[str, np.ndarray]:
    """Uniform [0, 1) draws from ``np.random.default_rng(seed)``, weight after weight."""
    rng = np.random.default_rng(seed)
    return keyed(weights, (rng.random(tuple(w.variable.shape), dtype=np.float32) for w in weights))


RANDOM = Criterion("random", random_scores, remove_largest=False, needs_data=False)
