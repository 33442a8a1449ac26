"""grasp_tf: prune Keras models at initialization with GraSP, SNIP and other foresight methods."""
from grasp_tf import quiet as _quiet

_quiet.import_tensorflow()  # first: TensorFlow's start-up block hidden (GRASP_TF_VERBOSE_LOG=1 shows it)

from grasp_tf import analysis  # noqa: E402,F401  (grasp_tf.analysis: gradient norm, layer densities; not in __all__)
from grasp_tf.api import apply_masks, compute_masks, compute_scores, prune_model, strip_pruning  # noqa: E402
from grasp_tf.export import export_saved_model, export_tflite  # noqa: E402
from grasp_tf.reports import get_masks, sparsity_report  # noqa: E402
from grasp_tf.wrappers import FixedMaskWrapper  # noqa: E402

__all__ = [
    "compute_scores",
    "compute_masks",
    "prune_model",
    "apply_masks",
    "get_masks",
    "strip_pruning",
    "sparsity_report",
    "FixedMaskWrapper",
    "export_saved_model",
    "export_tflite",
]
__version__ = "0.1.0"
