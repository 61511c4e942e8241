"""Unit tests of the pieces behind the report: subsets, examples, the clean attack, memoisation, rows."""

from __future__ import annotations

import base64
import copy
import io

import pytest
import torch
from PIL import Image
from torch import nn

from pytest_robust.attacks import PGD, NoAttack, make_attack
from pytest_robust.data.dataset import ImageDataset, stratified_indices
from pytest_robust.errors import RobustConfigError
from pytest_robust.evaluate import EvalResult, evaluate
from pytest_robust.examples import amplify, png_base64
from pytest_robust.plugin import memoised_evaluate
from pytest_robust.report import results as res
from pytest_robust.threat import ThreatModel

THREAT = ThreatModel(norm="Linf", eps=8 / 255)


def class_ordered(n0: int, n1: int) -> ImageDataset:
    labels = torch.cat([torch.zeros(n0, dtype=torch.long), torch.ones(n1, dtype=torch.long)])
    images = torch.rand(n0 + n1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    return ImageDataset(
        images=images, labels=labels, classes=("benign", "malignant"), name="o", synthetic=True
    )


def test_subset_is_stratified_seeded_and_in_order() -> None:
    data = class_ordered(360, 300)  # the ISIC test split's class counts, class-ordered like the folder
    sub = data.subset(256, seed=0)
    counts = torch.bincount(sub.labels).tolist()
    assert counts == [140, 116]  # 256 * 360/660 = 139.6, 256 * 300/660 = 116.4
    idx = stratified_indices(data.labels, 256, seed=0)
    assert torch.equal(idx, idx.sort().values)
    assert torch.equal(sub.images, data.images[idx])
    assert torch.equal(data.subset(256, seed=0).labels, sub.labels)
    assert not torch.equal(stratified_indices(data.labels, 256, seed=1), idx)
    assert sub.source["subset"] == {"n": 256, "seed": 0, "method": "stratified"}
    assert data.subset(None) is data
    assert data.subset(10_000) is data


def test_fingerprint_is_memoised_per_object() -> None:
    data = class_ordered(5, 5)
    first = data.fingerprint()
    assert data._memo["fingerprint"] == first
    assert class_ordered(5, 5).fingerprint() == first


def test_png_round_trip_and_amplified_perturbation() -> None:
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(1))
    decoded = Image.open(io.BytesIO(base64.b64decode(png_base64(image))))
    assert decoded.size == (8, 8)
    assert decoded.mode == "RGB"
    delta = torch.tensor([-4 / 255, 0.0, 4 / 255]).view(3, 1, 1).expand(3, 2, 2)
    amp = amplify(delta, 4 / 255)
    assert amp[0].max() == 0.0
    assert amp[1].min() == 0.5
    assert amp[2].min() == 1.0


def test_evaluate_keeps_examples_of_both_classes(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    strong = ThreatModel(norm="Linf", eps=64 / 255)
    result = evaluate(trained_tiny, blobs.subset(64), PGD(steps=10), strong, device="cpu", examples=4)
    assert len(result.examples) == 4
    assert {e.label for e in result.examples} == {0, 1}
    assert all(e.adv_pred != e.label for e in result.examples), "successful attacks are shown first"
    for e in result.examples:
        assert e.linf <= strong.eps + 1e-6
        assert 0.5 <= e.clean_confidence <= 1
        assert 0 <= e.adv_confidence <= 1
    again = EvalResult.from_json(result.to_json())
    assert again.examples == result.examples
    assert evaluate(trained_tiny, blobs.subset(64), PGD(steps=5), strong, device="cpu").examples == ()


def test_no_attack_measures_clean_accuracy_only(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    assert isinstance(make_attack("clean"), NoAttack)
    result = evaluate(trained_tiny, blobs, "none", ThreatModel(norm="Linf", eps=0.0), device="cpu")
    assert result.robust_acc == result.clean_acc
    with pytest.raises(RobustConfigError, match="use eps=0"):
        evaluate(trained_tiny, blobs, "none", THREAT, device="cpu")


def test_memoised_evaluate_reuses_identical_evaluations(trained_tiny: nn.Module, blobs: ImageDataset) -> None:
    memo: dict[str, object] = {}
    kwargs = {"device": "cpu", "seed": 0, "batch_size": 64, "examples": 0}
    first = memoised_evaluate(memo, trained_tiny, blobs, PGD(steps=3), THREAT, **kwargs)
    second = memoised_evaluate(memo, trained_tiny, blobs, PGD(steps=3), THREAT, **kwargs)
    assert second is first
    assert len(memo) == 1
    other = memoised_evaluate(memo, trained_tiny, blobs, PGD(steps=4), THREAT, **kwargs)
    assert other is not first
    assert len(memo) == 2
    changed = copy.deepcopy(trained_tiny)
    with torch.no_grad():
        for p in changed.parameters():
            p.add_(0.01)  # new weights: a new evaluation
    memoised_evaluate(memo, changed, blobs, PGD(steps=3), THREAT, **kwargs)
    assert len(memo) == 3


def test_rows_metrics_and_table() -> None:
    ev = {
        "threat": {"norm": "Linf", "eps": 4 / 255},
        "attack": {"name": "pgd"},
        "attack_description": "PGD",
        "n": 4,
        "clean_acc": 0.75,
        "robust_acc": 0.25,
        "labels": [0, 0, 1, 1],
        "clean_pred": [0, 0, 1, 0],
        "adv_pred": [1, 0, 0, 0],
        "clean_scores": [0.1, 0.2, 0.9, 0.4],
        "adv_scores": [0.6, 0.3, 0.2, 0.4],
        "data": {"name": "d", "synthetic": True, "fingerprint": "f", "classes": ["b", "m"]},
        "model": {"fingerprint": "abc" * 10},
        "seed": 0,
        "device": "cpu",
        "timings": {"total_s": 1.0},
    }
    result = {
        "evaluation": ev,
        "verdict": {"interval": [0.0, 0.8], "confidence": 0.95, "policy": "p", "passed": True, "reason": "r"},
        "min_acc": 0.0,
        "context": {"model": "m1", "arch": "resnet50", "recipe": "standard"},
    }
    record = res.TestRecord(nodeid="t::a", results=[result])
    doc = res.build_document([record], run={}, manifest={})
    row = doc["rows"][0]
    assert row["clean_f1"] == pytest.approx(2 / 3)  # precision 1, recall 1/2
    assert row["clean_auc"] == 1.0
    assert row["adv_f1"] == 0.0
    assert row["eps_label"] == "4/255"
    table = res.model_table(doc)
    assert table[0]["attacks"]["pgd"]["acc"] == 0.25
    assert table[0]["reference"]["pgd"] == pytest.approx(0.0091)
    frame = res.rows_frame(doc)
    assert frame.loc[0, "time_total_s"] == 1.0


def test_markdown_table_puts_the_study_beside_the_run() -> None:
    from pytest_robust.report.markdown import table

    ev = {
        "threat": {"norm": "Linf", "eps": 4 / 255},
        "attack": {"name": "autoattack"},
        "attack_description": "AA",
        "n": 2,
        "clean_acc": 1.0,
        "robust_acc": 0.5,
        "labels": [0, 1],
        "clean_pred": [0, 1],
        "adv_pred": [0, 0],
        "clean_scores": [0.1, 0.9],
        "adv_scores": [0.1, 0.4],
        "data": {"name": "d", "synthetic": False, "fingerprint": "f", "classes": ["b", "m"]},
        "model": {"fingerprint": "0" * 64},
        "seed": 0,
        "device": "cpu",
        "timings": {},
    }
    result = {
        "evaluation": ev,
        "verdict": {"interval": [0.1, 0.9], "confidence": 0.95, "policy": "p", "passed": True, "reason": "r"},
        "min_acc": 0.0,
        "context": {"model": "convnext_tiny PGD-AT", "arch": "convnext_tiny", "recipe": "pgd-at"},
    }
    doc = res.build_document([res.TestRecord(nodeid="t", results=[result])], run={}, manifest={})
    text = table(doc)
    assert "| convnext_tiny PGD-AT | 100.0 (82.3) |" in text
    assert "50.0 [10.0, 90.0] (73.8)" in text
