"""Benchmarks and the Fashion-MNIST study: scripts run from the repository root as `python bench/<name>.py`."""
