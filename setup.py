"""grasp_tf: pruning Keras models at initialization (GraSP, SNIP and baselines)."""
from setuptools import find_packages, setup

setup(
    name="grasp_tf",
    version="0.1.0",
    description="GraSP, SNIP and other foresight pruning methods for Keras 3 / TensorFlow.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # The user's layout stays: grasp_tf/, models/ and train/ at the top. bench/ (our benchmarks)
    # is not installed; configs/ ships as package data of train (train/configs, found by
    # train.flagfiles, which also knows the clone's configs/), with the paper's numbers.
    packages=find_packages(include=["grasp_tf", "grasp_tf.*", "models", "models.*", "train", "train.*"])
    + ["train.configs"],
    package_dir={"train.configs": "configs"},
    package_data={"train": ["paper_results.csv"], "train.configs": ["*.cfg", "*/*.cfg"]},
    python_requires=">=3.10",
    # Floors proven by .ci/run's smoke test on the oldest of each (.ci/smoke.py): Keras 3.8 is the
    # first with keras.src.export.export_utils (grasp_tf/_keras_internals.py); TF 2.16.1 the first
    # TF on PyPI that installs Keras 3 (2.16.0 was never released there).
    install_requires=[
        "tensorflow>=2.16.1,<2.22",
        "keras>=3.8,<3.16",
        "tf-keras>=2.16,<2.22",
        "tensorflow-model-optimization>=0.8,<0.9",
        "tensorflow-datasets>=4.9",
        "absl-py>=1.0",
        "tensorboard",
        "numpy",
        "scipy>=1.9",  # grasp_tf.analysis: t quantiles and the paired t-test
        "matplotlib>=3.5",
        "pillow",
    ],
    extras_require={"test": ["pytest>=7", "pytest-timeout", "pytest-xdist>=3", "ruff>=0.5"]},
)
