"""grasp_tf: pruning Keras models at initialization (GraSP, SNIP and baselines)."""
from setuptools import find_packages, setup

setup(
    name="grasp_tf",
    version="0.1.0",
    description="GraSP, SNIP and other foresight pruning methods for Keras 3 / TensorFlow.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["grasp_tf", "grasp_tf.*", "models", "models.*", "train", "train.*", "bench"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "keras>=3.4,<3.16",
        "tf-keras>=2.16,<2.22",
        "tensorflow-model-optimization>=0.8,<0.9",
        "tensorflow-datasets>=4.9",
        "absl-py>=1.0",
        "tensorboard",
        "numpy",
        "matplotlib>=3.5",
        "pillow",
    ],
    extras_require={"test": ["pytest>=7", "pytest-timeout"]},
)
