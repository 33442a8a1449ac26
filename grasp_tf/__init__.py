"""grasp_tf: prune Keras models at initialization with GraSP, SNIP and other foresight methods."""
from grasp_tf.api import compute_masks, compute_scores, prune_model
from grasp_tf.wrappers import FixedMaskWrapper, apply_masks, get_masks, sparsity_report, strip_pruning

__all__ = [
    "compute_scores",
    "compute_masks",
    "prune_model",
    "apply_masks",
    "get_masks",
    "strip_pruning",
    "sparsity_report",
    "FixedMaskWrapper",
]
__version__ = "0.1.0"
