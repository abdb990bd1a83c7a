"""Figure for notebook 04: the principal classes of divergences and where KL sits (Figure C)."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import Ellipse, FancyBboxPatch

# Classes as ellipses: name -> (centre, width, height, colour). Positions chosen so that the
# pairwise overlaps hold the divergences that belong to two classes at once.
CLASSES: dict[str, tuple[tuple[float, float], float, float, str]] = {
    "Csiszár f-divergences\nD_f(P‖Q) = Σ q f(p/q)": ((3.6, 4.6), 5.6, 3.8, "tab:blue"),
    "Bregman divergences\nB_F(x, y) = F(x) − F(y) − ⟨∇F(y), x − y⟩": (
        (7.0, 4.6),
        5.6,
        3.8,
        "tab:red",
    ),
    "Jensen (Burbea–Rao) divergences\nJ_F(x, y) = ½F(x) + ½F(y) − F((x + y)/2)": (
        (5.3, 2.0),
        5.6,
        3.2,
        "tab:green",
    ),
}

# Members: text -> (x, y, emphasised?). Each sits in the region(s) it belongs to.
MEMBERS: dict[str, tuple[float, float, bool]] = {
    "KL(P‖Q) = B_F(P, Q)\nKL(Q‖P) = B_F(Q, P)\n(F = Σ p log p)": (5.3, 5.3, True),
    "Hellinger², total variation,\nPearson χ², α (α ≠ 0, 1)": (2.4, 5.4, False),
    "Itakura–Saito,\nsquared Mahalanobis": (8.3, 5.4, False),
    "Jensen–Shannon\n(f-div. and J_F of −entropy)": (3.55, 2.95, False),
    "squared Euclidean\n(½‖x−y‖² = 4·J_F, F = ½‖x‖²)": (7.05, 2.95, False),
    "Jensen gaps of other F\n(e.g. Burg entropy)": (5.3, 1.0, False),
}


def plot_divergence_classes(ax: Axes | None = None) -> Axes:
    """Overlapping regions for the Csiszár, Bregman and Jensen classes, with KL at the overlap."""
    ax = ax or plt.gca()
    for label, ((cx, cy), w, h, colour) in CLASSES.items():
        ax.add_patch(Ellipse((cx, cy), w, h, fc=colour, alpha=0.12, ec=colour, lw=2))
        ty = cy + h / 2 + 0.25 if cy > 3 else cy - h / 2 - 0.45
        ax.text(cx, ty, label, ha="center", va="center", fontsize=8.5, color=colour, weight="bold")
    for text, (x, y, strong) in MEMBERS.items():
        style = {"weight": "bold", "fontsize": 9, "color": "k"} if strong else {"fontsize": 8}
        bbox = {"boxstyle": "round", "fc": "gold", "alpha": 0.7} if strong else None
        ax.text(x, y, text, ha="center", va="center", bbox=bbox, **style)
    side = FancyBboxPatch((10.3, 1.2), 2.6, 5.2, boxstyle="round,pad=0.1", fc="0.93", ec="0.5")
    ax.add_patch(side)
    ax.text(
        11.6,
        3.8,
        "Other classes\n(not drawn to scale)\n\nconformal\ndivergences\n\nprojective\ndivergences\n"
        "(e.g. γ-divergence)",
        ha="center",
        va="center",
        fontsize=8,
    )
    ax.set(
        xlim=(0, 13.2), ylim=(-0.4, 7.6), title="Principal classes of divergences: where KL sits"
    )
    ax.set_aspect("equal")
    ax.axis("off")
    return ax
