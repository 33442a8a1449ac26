"""One colour per pruning method, shared by every figure (train.analyze and the bench study)."""
from __future__ import annotations

COLORS = {"dense": "black", "grasp": "tab:blue", "snip": "tab:orange", "synflow": "tab:green", "random": "tab:red",
          "magnitude": "tab:purple", "iter_snip": "tab:pink", "force": "tab:brown", "prospr": "tab:olive",
          "ntk_sap": "tab:cyan", "phew": "tab:gray", "random_erk": "darkred", "grasp_abs": "navy",
          "prospr_cli": "darkolivegreen"}
ORDER = ("dense", "grasp", "grasp_abs", "snip", "random", "random_erk", "magnitude", "synflow", "iter_snip", "force",
         "prospr", "prospr_cli", "ntk_sap", "phew")
"""The order of methods in every legend: dense first, then as the methods were registered."""
_OTHERS = ("tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")  # methods without a fixed colour


def color(method: str) -> str:
    """The colour of ``method`` (``"none"`` is the dense net; unknown methods get a stable spare colour)."""
    method = "dense" if method == "none" else method
    if method in COLORS:
        return COLORS[method]
    return _OTHERS[sum(map(ord, method)) % len(_OTHERS)]


def rank(method: str) -> tuple[int, str]:
    """Sort key putting methods in :data:`ORDER` (unknown ones after, alphabetically)."""
    method = "dense" if method == "none" else method
    return (ORDER.index(method), "") if method in ORDER else (len(ORDER), method)
