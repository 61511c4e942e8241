"""The reference study's Table V (accuracy in [0, 1] here; the study prints percent) and its setup.

Neethunath, Gladston Raj, Pradeepan, IJACSA 16(12), 2025: five architectures x {standard, PGD-AT}
on ISIC (benign vs malignant), Linf eps 4/255. Keyed by the timm names of
:data:`pytest_robust.architectures.REFERENCE_ARCHITECTURES` and the recipe names of
:class:`pytest_robust.training.Recipe`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

CITATION: Final = (
    'Neethunath M R, Gladston Raj S, Pradeepan P, "Adversarial Robustness of Deep Learning in '
    'Medical Imaging: A Comprehensive Survey and Benchmark of State-of-the-Art Architectures", '
    "IJACSA 16(12), 2025, Table V"
)
#: The study's evaluation budget.
EPS: Final = 4 / 255

#: The items of a setup the report's Table V caption compares, in order
#: (:func:`pytest_robust.report.setup.run_setup` gives a run's).
SETUP_ITEMS: Final = (
    "resolution",
    "training images",
    "training epochs (standard / PGD-AT)",
    "PGD-AT (training)",
    "threat (evaluation)",
    "PGD (evaluation)",
    "AutoAttack",
    "images evaluated per model",
    "test data",
    "hardware",
    "execution (attacks)",
    "runs per model",
)

#: The study's setup (its Table IV, data split and environment) item by item. AutoAttack's budgets
#: are not stated in the study; the ``paper`` profile reads them as the library's defaults.
STUDY_SETUP: Final[Mapping[str, str]] = MappingProxyType({
    "resolution": "224 × 224 px",
    "training images": "2637 (the ISIC train split)",
    "training epochs (standard / PGD-AT)": "50 / 50",
    "PGD-AT (training)": "Linf 2/255, 10 steps of 1/255",
    "threat (evaluation)": "Linf 4/255",
    "PGD (evaluation)": "PGD-20, step eps/2 = 2/255",
    "AutoAttack": (
        "APGD-CE + Square; budgets not stated (read as the library's: APGD 100 steps × 5 restarts, "
        "Square 5000 queries)"
    ),
    "images evaluated per model": "660 of 660 (the ISIC test split)",
    "test data": "ISIC dermoscopy, benign vs malignant (Kaggle copy): real images",
    "hardware": "one NVIDIA T4 GPU",
    "execution (attacks)": "not stated",
    "runs per model": "1 (no seeds, no intervals)",
})  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceRow:
    clean_acc: float
    clean_f1: float
    clean_auc: float
    fgsm_acc: float
    pgd_acc: float
    autoattack_acc: float


def _row(acc: float, f1: float, auc: float, fgsm: float, pgd: float, aa: float) -> ReferenceRow:
    return ReferenceRow(
        clean_acc=acc / 100,
        clean_f1=f1,
        clean_auc=auc,
        fgsm_acc=fgsm / 100,
        pgd_acc=pgd / 100,
        autoattack_acc=aa / 100,
    )


TABLE_V: Final[Mapping[tuple[str, str], ReferenceRow]] = MappingProxyType({
    ("resnet50", "standard"): _row(88.94, 0.8805, 0.9668, 65.00, 0.91, 0.00),
    ("resnet50", "pgd-at"): _row(60.15, 0.3601, 0.4520, 82.73, 66.21, 27.88),
    ("densenet121", "standard"): _row(89.55, 0.8829, 0.9579, 47.88, 0.45, 0.30),
    ("densenet121", "pgd-at"): _row(70.15, 0.5321, 0.6730, 85.61, 64.70, 46.97),
    ("mobilenetv2_100", "standard"): _row(85.15, 0.8333, 0.9384, 55.91, 0.30, 0.00),
    ("mobilenetv2_100", "pgd-at"): _row(70.15, 0.5253, 0.8890, 66.36, 19.85, 0.15),
    ("efficientnet_b2", "standard"): _row(88.03, 0.8703, 0.9536, 56.36, 0.00, 0.00),
    ("efficientnet_b2", "pgd-at"): _row(46.52, 0.5862, 0.3931, 80.76, 46.06, 7.42),
    ("convnext_tiny", "standard"): _row(87.73, 0.8732, 0.9642, 61.67, 15.15, 12.73),
    ("convnext_tiny", "pgd-at"): _row(82.27, 0.8175, 0.9203, 81.21, 78.64, 73.79),
})  # fmt: skip


def reference_row(arch: str | None, recipe: str | None) -> ReferenceRow | None:
    """The study's row for ``arch`` (timm name) and ``recipe``, when it has one."""
    if arch is None or recipe is None:
        return None
    return TABLE_V.get((arch, recipe))
