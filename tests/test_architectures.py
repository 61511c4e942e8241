"""Model construction by name: the five reference architectures, suggestions, offline pretrained
weights, local weights files (with a classifier head for another number of classes)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from safetensors.torch import save_file

from pytest_robust import architectures
from pytest_robust.architectures import REFERENCE_ARCHITECTURES, create_model, load_weights
from pytest_robust.errors import RobustConfigError, RobustModelError
from pytest_robust.models import NormalizedModel
from pytest_robust.training import seeded

SMALL_TIMM = "mobilenetv2_050"  # 2 M parameters: cheap to build and save


def _head(net: Any) -> torch.nn.Linear:
    head = net.get_classifier()
    assert isinstance(head, torch.nn.Linear)
    return head


def test_the_five_reference_architectures() -> None:
    assert REFERENCE_ARCHITECTURES == (
        "resnet50",
        "densenet121",
        "mobilenetv2_100",
        "efficientnet_b2",
        "convnext_tiny",
    )


@pytest.mark.parametrize("arch", [*REFERENCE_ARCHITECTURES, "small_cnn"])
def test_builds_and_classifies_32px_pixels(arch: str) -> None:
    with seeded(0):
        model = create_model(arch, num_classes=2)
    assert isinstance(model, NormalizedModel)
    model.eval()
    with torch.no_grad():
        logits = model(torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert logits.shape == (3, 2)
    assert bool(torch.isfinite(logits).all())
    if arch != "small_cnn":  # normalisation inside the model, from timm's pretrained_cfg
        cfg = timm.models.get_pretrained_cfg(arch)
        assert cfg is not None
        assert torch.allclose(model.normalize.mean.flatten(), torch.tensor(cfg.mean))
        assert torch.allclose(model.normalize.std.flatten(), torch.tensor(cfg.std))
        assert model.net.num_classes == 2
        head = _head(model.net)
        assert float(head.weight.detach().std()) <= 2 / math.sqrt(3 * head.in_features)  # no +-10 logits


def test_seeded_construction_is_reproducible() -> None:
    with seeded(1):
        a = create_model(SMALL_TIMM, num_classes=2)
    with seeded(1):
        b = create_model(SMALL_TIMM, num_classes=2)
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)


def test_only_over_wide_heads_are_redrawn() -> None:
    with seeded(2):
        ours = create_model("resnet10t", num_classes=2)
    with seeded(2):
        theirs = timm.create_model("resnet10t", num_classes=2)
    for name, tensor in theirs.state_dict().items():  # timm's default-scale head is kept
        assert torch.equal(ours.state_dict()[f"net.{name}"], tensor), name
    with seeded(2):
        wide = _head(timm.create_model(SMALL_TIMM, num_classes=2)).weight
        tamed = _head(create_model(SMALL_TIMM, num_classes=2).net).weight
    assert float(wide.detach().std()) > 0.3 > 0.03 > float(tamed.detach().std())


@pytest.mark.parametrize(
    ("typo", "suggested"),
    [
        ("resnet-50", "'resnet50'"),
        ("efficientnetb2", "'efficientnet_b2'"),
        ("mobilenetv2", "'mobilenetv2_100'"),
        ("small-cnn", "'small_cnn'"),
    ],
)
def test_unknown_architecture_suggests_close_names(typo: str, suggested: str) -> None:
    with pytest.raises(RobustConfigError, match=f"unknown architecture '{typo}'; did you mean") as info:
        create_model(typo, num_classes=2)
    assert suggested in str(info.value)


def test_hopeless_name_says_how_to_list_names() -> None:
    with pytest.raises(RobustConfigError, match=r"timm\.list_models"):
        create_model("qqqqqqqq", num_classes=2)


@pytest.mark.parametrize("bad", [1, 0, True, 2.0])
def test_num_classes_is_checked(bad: object) -> None:
    with pytest.raises(RobustConfigError, match="num_classes"):
        create_model("small_cnn", num_classes=bad)  # type: ignore[arg-type]


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import huggingface_hub.constants

    cache = tmp_path / "hf"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_pretrained_offline_fails_fast_and_explains_local_weights(
    empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(RobustConfigError) as info:
        create_model("resnet50", num_classes=2, pretrained=True)
    assert time.perf_counter() - start < 10
    message = str(info.value)
    for needed in (
        "HF_HUB_OFFLINE",
        "weights=",
        ".safetensors",
        "weights_only=True",
        "timm/resnet50",
        "classifier head",
    ):
        assert needed in message


def test_pretrained_with_the_hub_unreachable(empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(architectures, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(RobustConfigError, match=r"unreachable.*weights="):
        create_model("densenet121", num_classes=2, pretrained=True)


def test_pretrained_from_the_local_hugging_face_cache(
    empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = timm.models.get_pretrained_cfg(SMALL_TIMM)
    assert cfg is not None
    assert cfg.hf_hub_id
    snapshot = empty_hf_cache / f"models--{cfg.hf_hub_id.replace('/', '--')}" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    with seeded(5):
        imagenet = timm.create_model(SMALL_TIMM)
    save_file(imagenet.state_dict(), str(snapshot / "model.safetensors"))
    model = create_model(SMALL_TIMM, num_classes=2, pretrained=True)
    assert torch.equal(model.state_dict()["net.conv_stem.weight"], imagenet.state_dict()["conv_stem.weight"])


def test_pretrained_download_failure_is_explained(
    empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(**kwargs: object) -> str:
        raise LocalEntryNotFoundError("cannot reach the hub")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(architectures, "hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(RobustConfigError, match=r"download failed \(LocalEntryNotFoundError.*weights="):
        create_model(SMALL_TIMM, num_classes=2, pretrained=True)


def test_pretrained_download(tmp_path: Path, empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    with seeded(6):
        imagenet = timm.create_model(SMALL_TIMM)
    save_file(imagenet.state_dict(), str(tmp_path / "downloaded.safetensors"))
    asked: list[object] = []

    def download(**kwargs: object) -> str:
        asked.append(kwargs["filename"])
        return str(tmp_path / "downloaded.safetensors")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(architectures, "hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    model = create_model(SMALL_TIMM, num_classes=2, pretrained=True)
    assert asked == ["model.safetensors"]
    assert torch.equal(model.state_dict()["net.conv_head.weight"], imagenet.state_dict()["conv_head.weight"])


def test_small_cnn_has_no_pretrained_weights() -> None:
    with pytest.raises(RobustConfigError, match="weights=PATH"):
        create_model("small_cnn", num_classes=2, pretrained=True)


@pytest.fixture(scope="module")
def imagenet_net() -> torch.nn.Module:
    with seeded(7):
        net: torch.nn.Module = timm.create_model(SMALL_TIMM)  # 1000-class head
    return net


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_with_another_head_load_the_backbone(
    tmp_path: Path, imagenet_net: torch.nn.Module, suffix: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / f"imagenet{suffix}"
    state = {k: v.contiguous() for k, v in imagenet_net.state_dict().items()}
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:  # the usual training-script checkpoint: nested, with a DataParallel prefix
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    with caplog.at_level(logging.WARNING, logger="pytest_robust.architectures"):
        model = create_model(SMALL_TIMM, num_classes=2, weights=path)
    loaded = model.state_dict()
    assert torch.equal(loaded["net.blocks.1.0.conv_pw.weight"], state["blocks.1.0.conv_pw.weight"])
    assert torch.equal(loaded["net.bn2.running_var"], state["bn2.running_var"])
    assert loaded["net.classifier.weight"].shape[0] == 2
    assert "classifier" in caplog.text
    assert "freshly initialised" in caplog.text
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 2)


def test_load_weights_reports_the_skipped_head(tmp_path: Path, imagenet_net: torch.nn.Module) -> None:
    path = tmp_path / "w.safetensors"
    save_file(imagenet_net.state_dict(), str(path))
    model = create_model(SMALL_TIMM, num_classes=3)
    report = load_weights(model, path, classifier=("classifier",))
    assert report.head_skipped == ("net.classifier.bias", "net.classifier.weight")
    assert report.tensors_loaded == len(imagenet_net.state_dict()) - 2
    assert report.to_json()["sha256"] == report.sha256
    assert len(report.sha256) == 64


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file(timm.create_model("resnet10t", num_classes=2).state_dict(), str(path))
    with pytest.raises(RobustModelError, match="does not fit this architecture: missing"):
        create_model(SMALL_TIMM, num_classes=2, weights=path)


def test_pickled_modules_are_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole pickled module, not a state dict
    with pytest.raises(RobustModelError, match="weights_only=True"):
        create_model("small_cnn", num_classes=2, weights=path)


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(RobustConfigError, match="unknown extension"):
        create_model("small_cnn", num_classes=2, weights=tmp_path / "w.npz")
    with pytest.raises(RobustConfigError, match="does not exist"):
        create_model("small_cnn", num_classes=2, weights=tmp_path / "absent.safetensors")


def test_small_cnn_round_trip_through_a_saved_normalized_model(tmp_path: Path) -> None:
    with seeded(3):
        original = create_model("small_cnn", num_classes=2).eval()
    path = tmp_path / "small.safetensors"
    save_file(original.state_dict(), str(path))
    with seeded(4):
        restored = create_model("small_cnn", num_classes=2, weights=path).eval()
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(original(x), restored(x))
