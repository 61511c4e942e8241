"""Degenerate models: a classifier that (almost) never predicts some class of the data.

Pure (no torch): computed from the per-sample labels and clean predictions an evaluation records,
so a result read back from JSON (a report, the result cache, an older run) is judged the same way.

Why it matters: a model that answers one class for everything keeps that class's samples "robust"
whatever the attack does (its output does not depend on the input), so its robust accuracy is the
share of that class in the data, not a measure of robustness, and a finding that compares such a
number with another model's compares class balances. The rule (:data:`RULE`):

- a class with at least :data:`MIN_CLASS_SAMPLES` evaluated samples whose clean recall (the share
  of its samples the model classifies as it) is at most :data:`MAX_RECALL` is *missed*: the model
  (almost) never recognises it. Fewer samples are no evidence either way (0 of 3 happens to honest
  models) and are not judged on their own;
- a model that gives one answer for every sample of data with two or more classes is degenerate
  whatever the counts;
- a model with a missed class, or with one answer for everything, is DEGENERATE.

With two classes "misses one class" and "predicts the other for (almost) everything" are the same
statement; with more classes the rule flags a model that is blind to one of them. What the gate
does with the flag is the soundness policy's decision (:func:`pytest_robust.gate.judge`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

#: A class whose clean recall is at most this is *missed*. 0.10 ("at most one in ten of its
#: samples recognised") catches the issue's case of a model that called 30 of 32 malignant lesions
#: benign (recall 0.0625) and leaves any model that recognises a class at all honestly (the study's
#: weakest model recognises 15% of the malignant lesions and is reported, not hidden).
MAX_RECALL: Final = 0.10
#: A class is judged on its own only with at least this many evaluated samples.
MIN_CLASS_SAMPLES: Final = 10
#: The rule in words, recorded with every measure.
RULE: Final = (
    f"degenerate when some class with at least {MIN_CLASS_SAMPLES} evaluated samples has clean recall "
    f"<= {MAX_RECALL:.2f} (the model almost never recognises it), or when every clean prediction is "
    "the same class on data with two or more classes"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassRecall:
    """One class of the data: its samples, how many of them the model recognised, how often it
    predicted the class at all (over every sample)."""

    label: int
    name: str
    n: int
    correct: int
    predicted: int

    @property
    def recall(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def judged(self) -> bool:
        """Enough samples to call the class missed on its own (:data:`MIN_CLASS_SAMPLES`)."""
        return self.n >= MIN_CLASS_SAMPLES

    @property
    def missed(self) -> bool:
        return self.judged and self.recall <= MAX_RECALL

    def describe(self) -> str:
        return f"{self.name} {self.correct}/{self.n} ({self.recall:.3f})"

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "name": self.name,
            "n": self.n,
            "correct": self.correct,
            "predicted": self.predicted,
            "recall": self.recall,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Degeneracy:
    """The clean recall of every class present in the evaluated data, and the verdict of :data:`RULE`."""

    #: every class with at least one evaluated sample, by label
    classes: tuple[ClassRecall, ...]
    #: the samples evaluated
    n: int
    #: the most frequent clean prediction (its name) and how many samples got it
    top_prediction: str
    top_count: int

    @property
    def missed(self) -> tuple[ClassRecall, ...]:
        """The classes the model (almost) never recognises."""
        return tuple(c for c in self.classes if c.missed)

    @property
    def one_answer(self) -> bool:
        """Every clean prediction is the same class, on data with two or more classes."""
        return len(self.classes) >= 2 and self.top_count == self.n

    @property
    def degenerate(self) -> bool:
        return bool(self.missed) or self.one_answer

    @property
    def min_recall(self) -> float | None:
        return min((c.recall for c in self.classes), default=None)

    @property
    def reason(self) -> str:
        """What makes the model degenerate, in one line (``""`` when it is not)."""
        if not self.degenerate:
            return ""
        missed = self.missed or tuple(c for c in self.classes if c.predicted == 0)
        what = ", ".join(c.describe() for c in missed)
        return (
            f"the model (almost) never recognises {' or '.join(c.name for c in missed)} (clean recall "
            f"{what}); it predicts {self.top_prediction} for {self.top_count} of {self.n} samples"
        )

    def recalls(self) -> str:
        """Every class's clean recall: ``benign 0/16 (0.000), malignant 16/16 (1.000)``."""
        return ", ".join(c.describe() for c in self.classes)

    def to_json(self) -> dict[str, Any]:
        return {
            "degenerate": self.degenerate,
            "reason": self.reason,
            "missed_classes": [c.name for c in self.missed],
            "one_answer": self.one_answer,
            "min_recall": self.min_recall,
            "top_prediction": self.top_prediction,
            "top_count": self.top_count,
            "n": self.n,
            "classes": [c.to_json() for c in self.classes],
            "rule": RULE,
            "max_recall": MAX_RECALL,
            "min_class_samples": MIN_CLASS_SAMPLES,
        }


def _name(label: int, classes: Sequence[str]) -> str:
    return str(classes[label]) if 0 <= label < len(classes) else str(label)


def degeneracy(labels: Sequence[int], clean_pred: Sequence[int], *, classes: Sequence[str]) -> Degeneracy:
    """The per-class clean recall of one evaluation's predictions and whether the model is degenerate."""
    if len(labels) != len(clean_pred):
        raise ValueError(f"{len(labels)} labels but {len(clean_pred)} predictions")
    support = Counter(int(y) for y in labels)
    hits = Counter(int(y) for y, p in zip(labels, clean_pred, strict=True) if int(y) == int(p))
    predicted = Counter(int(p) for p in clean_pred)
    top, count = predicted.most_common(1)[0] if predicted else (-1, 0)
    return Degeneracy(
        classes=tuple(
            ClassRecall(
                label=y,
                name=_name(y, classes),
                n=support[y],
                correct=hits[y],
                predicted=predicted[y],
            )
            for y in sorted(support)
        ),
        n=len(labels),
        top_prediction=_name(top, classes) if predicted else "",
        top_count=count,
    )


def degeneracy_of(evaluation: dict[str, Any]) -> dict[str, Any]:
    """An evaluation's ``degenerate`` block (``EvalResult.to_json()``): the recorded one, or computed
    from its labels and clean predictions for a result recorded before the block existed."""
    block = evaluation.get("degenerate")
    if isinstance(block, dict):
        return block
    classes = [str(c) for c in (evaluation.get("data") or {}).get("classes", [])]
    return degeneracy(evaluation["labels"], evaluation["clean_pred"], classes=classes).to_json()
