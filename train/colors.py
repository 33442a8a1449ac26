"""One colour per pruning method, shared by every figure (train.analyze and the bench study)."""
from __future__ import annotations

COLORS = {"dense": "black", "grasp": "tab:blue", "snip": "tab:orange", "synflow": "tab:green", "random": "tab:red",
          "magnitude": "tab:purple"}
_OTHERS = ("tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")  # methods without a fixed colour


def color(method: str) -> str:
    """The colour of ``method`` (``"none"`` is the dense net; unknown methods get a stable spare colour)."""
    method = "dense" if method == "none" else method
    if method in COLORS:
        return COLORS[method]
    return _OTHERS[sum(map(ord, method)) % len(_OTHERS)]
