"""Every option of `python -m train.run`, as absl flags (files of them live in configs/)."""
from __future__ import annotations

from absl import flags

# Data
flags.DEFINE_string("dataset", "fashion_mnist", "Dataset name (see train/data.py).")
flags.DEFINE_string("data_dir", None, "Where the dataset lives (default: the dataset's usual place).")
flags.DEFINE_float("validation_split", 0.0, "Fraction of the training set held out for validation.")
flags.DEFINE_integer("train_limit", 0, "Use only the first N training examples (0 = all).")
flags.DEFINE_boolean("augment", True, "Reference augmentation (random crop + flip) on training data.")

# Model
flags.DEFINE_string("model", "resnet20", "Model name (see models/).")
flags.DEFINE_integer("width", 0, "Width multiplier for ResNets (0 = the model's default).")
flags.DEFINE_enum("init", "kaiming", ["kaiming", "normal", "xavier"], "Weight initialisation.")

# Pruning at initialization
flags.DEFINE_string("method", "grasp", "Pruning method (grasp, snip, random, magnitude, synflow, grasp_abs) or none.")
flags.DEFINE_float("sparsity", 0.9, "Fraction of prunable weights removed, in [0, 1).")
flags.DEFINE_enum("scope", "global", ["global", "layerwise"], "One global threshold, or the same fraction per layer.")
flags.DEFINE_integer("samples_per_class", 10, "Class-balanced scoring sample per draw (0 = random batches).")
flags.DEFINE_integer("num_draws", 1, "How many class-balanced samples are drawn and pooled for scoring.")
flags.DEFINE_integer("scoring_batches", 1, "With samples_per_class=0: batches of the stream used for scoring.")
flags.DEFINE_integer("scoring_batch_size", 250, "With samples_per_class=0: size of each scoring batch.")
flags.DEFINE_float("temperature", 200.0, "GraSP softmax temperature T.")
flags.DEFINE_integer("chunk_size", 0, "Bound scoring memory: at most this many samples per pass (0 = off).")
flags.DEFINE_boolean("reinit_dense", True, "GraSP: score with Dense kernels redrawn (reference quirk).")
flags.DEFINE_boolean("shuffle_masks", False, "Permute each mask within its layer (layerwise-shuffle ablation).")

# Training recipe (reference item 18)
flags.DEFINE_integer("epochs", 160, "Training epochs.")
flags.DEFINE_integer("batch_size", 128, "Global training batch size.")
flags.DEFINE_float("lr", 0.1, "Initial learning rate.")
flags.DEFINE_list("lr_boundaries", ["0.5", "0.75"], "Fractions of training at which lr decays.")
flags.DEFINE_integer("lr_step_epochs", 0, "Decay lr every N epochs instead (ImageNet: 50).")
flags.DEFINE_float("lr_decay", 0.1, "Factor applied to lr at each boundary.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum (not Nesterov).")
flags.DEFINE_float("weight_decay", 5e-4, "Coupled (PyTorch-style) weight decay on all trainable parameters.")
flags.DEFINE_integer("seed", 0, "Seed for init, data order and pruning.")

# Execution
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                  "tf.distribute strategy; multi_worker reads TF_CONFIG.")
flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into N logical devices (to run mirrored on a CPU).")
flags.DEFINE_boolean("jit_compile", None, "XLA for training steps (default: on only with a GPU).")
flags.DEFINE_string("output_dir", "runs/default", "Where checkpoints, logs, masks and results go.")
flags.DEFINE_boolean("overwrite", False, "Start afresh even if output_dir holds a run.")
flags.DEFINE_boolean("export", False, "Export a sparse SavedModel to <output_dir>/export at the end.")
flags.DEFINE_integer("steps_per_epoch", 0, "Cap on steps per epoch (0 = the whole training set).")
