"""Gradients and Hessian-gradient products of a Keras model's loss: float32, exact, side-effect free.

The scoring engine the criteria share, one idea per module:

* ``patches``: :func:`scoring_mode` (exact batch-norm moments, float32, no constant folding);
* ``function``: :func:`bind`, a model as a pure function of its scored weights;
* ``autodiff``: the loss, gradients and Hessian-vector products (no Hessian is ever built);
* ``loss``: :class:`ChunkLoss`, one chunk's loss compiled, and :func:`chunk_loss`.
"""
from grasp_tf.hessian.autodiff import (
    Tensors,
    cross_entropy,
    gradient,
    gradient_and_hessian_gradient,
    hessian_vector_product,
)
from grasp_tf.hessian.function import (
    LegacyModelFunction,
    ModelFunction,
    bind,
    logits_of,
    output_width,
    stateless_logits,
)
from grasp_tf.hessian.loss import ChunkLoss, Logits, chunk_loss
from grasp_tf.hessian.patches import compute_dtype, exact_moments, scoring_mode

__all__ = [
    "Tensors", "cross_entropy", "gradient", "gradient_and_hessian_gradient", "hessian_vector_product",
    "LegacyModelFunction", "ModelFunction", "bind", "logits_of", "output_width", "stateless_logits",
    "ChunkLoss", "Logits", "chunk_loss", "compute_dtype", "exact_moments", "scoring_mode",
]
