"""The reference study's Table V (accuracy in [0, 1] here; the study prints percent).

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
