"""Magnitude: ``S = |θ|``, remove the smallest. Needs no data."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from grasp_tf.criteria.base import Criterion, keyed
from grasp_tf.prunable import PrunableWeight


def magnitude_scores(model: Any, weights: Sequence[PrunableWeight], data: Any, *,
                     seed: int | None = None) -> dict[str, np.ndarray]:
    """The absolute value of each weight."""
    return keyed(weights, (np.abs(np.asarray(w.variable, dtype=np.float32)) for w in weights))


MAGNITUDE = Criterion("magnitude", magnitude_scores, remove_largest=False, needs_data=False)
