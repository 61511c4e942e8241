"""Clinical numbers of an evaluation: robust sensitivity, robust specificity, dangerous flips.

Pure (no torch): computed from the per-sample labels and predictions an evaluation records. The
*positive* class is the one whose miss is dangerous (label 1, ``malignant``, on ISIC). One versus
the rest for more than two classes: "negative" is every other class.

- sensitivity: the positives' recall; *robust* sensitivity counts a positive only when it is
  classified positive on the clean input and under the attack;
- specificity: the same for the negatives;
- flipped to negative: positives classified positive on the clean input and negative under attack
  (a malignant lesion made to look benign: the study's Fig. 4). Its rate is over the clean-correct
  positives, the lesions the model would have caught.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_robust.errors import RobustConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class Clinical:
    """Counts behind the clinical numbers of one evaluation (rates are derived from them)."""

    positive_label: int
    positive_class: str
    n_positive: int
    n_negative: int
    clean_true_positive: int
    robust_true_positive: int
    clean_true_negative: int
    robust_true_negative: int
    #: positives caught on the clean input and called negative under attack
    flipped_to_negative: int
    #: negatives correct on the clean input and called positive under attack
    flipped_to_positive: int

    @staticmethod
    def _rate(k: int, n: int) -> float | None:
        return k / n if n else None

    @property
    def clean_sensitivity(self) -> float | None:
        return self._rate(self.clean_true_positive, self.n_positive)

    @property
    def robust_sensitivity(self) -> float | None:
        return self._rate(self.robust_true_positive, self.n_positive)

    @property
    def clean_specificity(self) -> float | None:
        return self._rate(self.clean_true_negative, self.n_negative)

    @property
    def robust_specificity(self) -> float | None:
        return self._rate(self.robust_true_negative, self.n_negative)

    @property
    def flip_rate(self) -> float | None:
        """Flipped to negative over the clean-correct positives."""
        return self._rate(self.flipped_to_negative, self.clean_true_positive)

    def to_json(self) -> dict[str, Any]:
        return {
            "positive_label": self.positive_label,
            "positive_class": self.positive_class,
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "clean_true_positive": self.clean_true_positive,
            "robust_true_positive": self.robust_true_positive,
            "clean_true_negative": self.clean_true_negative,
            "robust_true_negative": self.robust_true_negative,
            "flipped_to_negative": self.flipped_to_negative,
            "flipped_to_positive": self.flipped_to_positive,
            "clean_sensitivity": self.clean_sensitivity,
            "robust_sensitivity": self.robust_sensitivity,
            "clean_specificity": self.clean_specificity,
            "robust_specificity": self.robust_specificity,
            "flip_rate": self.flip_rate,
        }


def clinical(
    labels: Sequence[int],
    clean_pred: Sequence[int],
    adv_pred: Sequence[int],
    *,
    positive_label: int,
    classes: Sequence[str],
) -> Clinical:
    """The clinical counts of one evaluation's per-sample outcomes."""
    pos = positive_label
    tp = rtp = tn = rtn = to_neg = to_pos = n_pos = 0
    for y, c, a in zip(labels, clean_pred, adv_pred, strict=True):
        if y == pos:
            n_pos += 1
            tp += c == pos
            rtp += c == pos and a == pos
            to_neg += c == pos and a != pos
        else:
            tn += c != pos
            rtn += c != pos and a != pos
            to_pos += c != pos and a == pos
    return Clinical(
        positive_label=pos,
        positive_class=str(classes[pos]) if 0 <= pos < len(classes) else str(pos),
        n_positive=n_pos,
        n_negative=len(labels) - n_pos,
        clean_true_positive=tp,
        robust_true_positive=rtp,
        clean_true_negative=tn,
        robust_true_negative=rtn,
        flipped_to_negative=to_neg,
        flipped_to_positive=to_pos,
    )


def resolve_positive(positive: int | str, classes: Sequence[str]) -> int:
    """The label of the positive class, given as a label or a class name (``"malignant"``)."""
    if isinstance(positive, bool):
        raise RobustConfigError(f"positive must be a class label or name, got {positive!r}")
    if isinstance(positive, int):
        if not 0 <= positive < len(classes):
            raise RobustConfigError(
                f"positive class label {positive} is not a label of the data (0..{len(classes) - 1}: "
                f"{list(classes)})"
            )
        return positive
    if isinstance(positive, str):
        names = [c.lower() for c in classes]
        if positive.lower() in names:
            return names.index(positive.lower())
        if positive.isdigit():
            return resolve_positive(int(positive), classes)
        raise RobustConfigError(f"positive class {positive!r} is not a class of the data: {list(classes)}")
    raise RobustConfigError(f"positive must be a class label or name, got {positive!r}")
