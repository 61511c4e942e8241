"""The report's figures, drawn with matplotlib (Agg) and returned as inline SVG text.

Deterministic output: fixed hash salt, no date metadata, text as paths (no fonts needed by the
reader, and no text nodes a hostile model name could break out of).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_COLORS = ("#1b6ca8", "#d1495b", "#66a182", "#edae49", "#6c4f98", "#2e4057", "#8d96a3")


def _new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, Any]:
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone

    matplotlib.rcParams["svg.hashsalt"] = "pytest-robust"
    matplotlib.rcParams["svg.fonttype"] = "path"
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def to_svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "pytest-robust (matplotlib)"})
    text = buf.getvalue()
    start = text.find("<svg")
    svg = text[start:] if start >= 0 else text
    # responsive: keep the viewBox, let CSS set the width
    return re.sub(r'(<svg[^>]*?) width="[^"]*" height="[^"]*"', r"\1", svg, count=1)


def confusion_pair(
    labels: Sequence[int],
    clean_pred: Sequence[int],
    adv_pred: Sequence[int],
    classes: Sequence[str],
    *,
    attacked_title: str,
) -> str:
    """Two confusion matrices side by side: clean and attacked (rows: true, columns: predicted)."""
    import numpy as np
    from sklearn.metrics import confusion_matrix

    k = len(classes)
    fig, axes = _new_figure(5.6, 2.7, ncols=2)
    for ax, preds, title in ((axes[0], clean_pred, "clean"), (axes[1], adv_pred, attacked_title)):
        cm = confusion_matrix(list(labels), list(preds), labels=list(range(k)))
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(1, int(cm.max())))
        for i, j in np.ndindex(cm.shape):
            ax.text(
                j,
                i,
                str(int(cm[i, j])),
                ha="center",
                va="center",
                color="white" if cm[i, j] > cm.max() / 2 else "black",
                fontsize=10,
            )
        ax.set_xticks(range(k), [c[:12] for c in classes], fontsize=8)
        ax.set_yticks(range(k), [c[:12] for c in classes], fontsize=8)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(title, fontsize=9)
    return to_svg(fig)


def roc_pair(
    labels: Sequence[int],
    clean_scores: Sequence[float],
    adv_scores: Sequence[float],
    *,
    attacked_title: str,
) -> str:
    """ROC curves of the positive class (label 1), clean and attacked, with their AUC."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = _new_figure(3.0, 2.7)
    ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=0.8, ls="--")
    if len(set(labels)) == 2:
        for scores, name, color in (
            (clean_scores, "clean", _COLORS[0]),
            (adv_scores, attacked_title, _COLORS[1]),
        ):
            fpr, tpr, _ = roc_curve(list(labels), list(scores), pos_label=1)
            auc = roc_auc_score(list(labels), list(scores))
            ax.plot(fpr, tpr, color=color, lw=1.5, label=f"{name} (AUC {auc:.3f})")
        ax.legend(fontsize=7, loc="lower right")
    else:
        ax.text(0.5, 0.5, "one class only:\nROC undefined", ha="center", va="center", fontsize=8)
    ax.set_xlabel("false positive rate", fontsize=8)
    ax.set_ylabel("true positive rate", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.tick_params(labelsize=7)
    return to_svg(fig)


def eps_curves(curves: dict[str, list[tuple[float, float, float, float]]], *, title: str) -> str:
    """Robust accuracy against eps (in /255), one line per model, with 95% intervals as bands."""
    fig, ax = _new_figure(6.0, 3.4)
    for i, (model, points) in enumerate(curves.items()):
        xs = [p[0] * 255 for p in points]
        color = _COLORS[i % len(_COLORS)]
        ls = "-" if i < len(_COLORS) else "--"
        ax.plot(xs, [p[1] for p in points], marker="o", ms=3, lw=1.5, color=color, ls=ls, label=model)
        ax.fill_between(xs, [p[2] for p in points], [p[3] for p in points], color=color, alpha=0.12, lw=0)
    ax.set_xlabel("eps (x/255, Linf)", fontsize=8)
    ax.set_ylabel("robust accuracy", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper right", ncol=1 if len(curves) <= 6 else 2)
    return to_svg(fig)


def accuracy_bars(
    table: list[dict[str, Any]], *, attacks: Sequence[str], labels: Mapping[str, str] | None = None
) -> str:
    """Grouped bars: clean and per-attack accuracy for every model (measured); ``labels``: the
    legend's name of an attack column (default: its key)."""
    import numpy as np

    labels = labels or {}
    models = [row["model"] for row in table]
    series = [("clean", [row["clean_acc"] for row in table])]
    for attack in attacks:
        series.append(
            (
                labels.get(attack, attack),
                [row["attacks"].get(attack, {}).get("acc", float("nan")) for row in table],
            )
        )
    fig, ax = _new_figure(max(6.0, 0.7 * len(models) + 2), 3.4)
    x = np.arange(len(models))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series):
        ax.bar(
            x + (i - (len(series) - 1) / 2) * width,
            values,
            width,
            label=name,
            color=_COLORS[i % len(_COLORS)],
        )
    ax.set_xticks(
        x, [m if len(m) <= 28 else m[:27] + "…" for m in models], rotation=30, ha="right", fontsize=7
    )
    ax.set_ylabel("accuracy", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.grid(axis="y", alpha=0.3)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, ncol=len(series), loc="upper right")
    return to_svg(fig)
