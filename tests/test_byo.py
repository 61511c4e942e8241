"""The README's "Bring your own model and data" section, run as written (through pytester).

The section's ``conftest.py``, test file and command are read from README.md itself, so the README
cannot drift from what works: a user class with a safetensors state dict as the ``model`` fixture,
``--robust-data`` on a flat ImageFolder of 48 px images (resized to the ci profile's 32 px, and
fewer than its n=256), then the ``robust_data`` override that loads them at 48 px, then a model with
the classes the wrong way round (the clean gate's failure must not advise adversarial training).
"""

from __future__ import annotations

import json
import re
import shlex
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from pytest_robust.report.results import model_label

README = Path(__file__).resolve().parents[1] / "README.md"
TITLE = "## Bring your own model and data"

#: the user's model class the README's conftest imports (``lesions/model.py``): the mean colour,
#: then a linear layer, so it takes any input size
MODEL = """
from torch import nn


class LesionNet(nn.Module):
    def __init__(self, num_classes=2):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(3, num_classes)

    def forward(self, x):
        return self.head(self.pool(x).flatten(1))
"""


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(TITLE)
    end = text.index("\n## ", start + len(TITLE))
    return text[start:end]


def blocks(language: str) -> dict[str, str]:
    """The section's code blocks in ``language``, by their first line (``# conftest.py``)."""
    found = re.findall(rf"^( *)```{language}\n(.*?)^\1```", section(), flags=re.MULTILINE | re.DOTALL)
    out = {}
    for _indent, body in found:
        code = textwrap.dedent(body)
        out[code.splitlines()[0]] = code
    return out


def readme_files() -> tuple[str, str, str]:
    """The conftest, the robust_data override and the test file, as the README shows them."""
    python = blocks("python")
    conftest = python.pop("# conftest.py")
    test_file = python.pop("# test_lesionnet.py")
    (override,) = (code for first, code in python.items() if first.startswith("# conftest.py (added)"))
    return conftest, override, test_file


def readme_command(folder: Path) -> list[str]:
    (command,) = blocks("bash").values()
    args = shlex.split(command.strip())
    assert args[:2] == ["pytest", "test_lesionnet.py"]
    return [str(folder) if a == "path/to/lesions" else a for a in args[1:]]


def write_weights(path: Path, *, swapped: bool = False) -> None:
    """logit(malignant) - logit(benign) = 10 (mean colour - 0.5): dark is benign, bright malignant;
    ``swapped``: the classes the other way round (a model trained with another class order)."""
    weight = torch.zeros(2, 3)
    bias = torch.zeros(2)
    weight[1] = 10 / 3
    bias[1] = -5.0
    if swapped:
        weight, bias = weight.flip(0), bias.flip(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"head.weight": weight.contiguous(), "head.bias": bias.contiguous()}, str(path))


def write_folder(root: Path, *, per_class: int = 20, size: int = 48) -> Path:
    """A flat ImageFolder: ``per_class`` noisy ``size`` px PNGs per class (benign dark, malignant bright)."""
    rng = np.random.default_rng(0)
    for name, (low, high) in (("benign", (30, 80)), ("malignant", (175, 225))):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(low, high, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A user's project: the model package, its weights, the README's conftest and test file."""
    conftest, _override, test_file = readme_files()
    (pytester.path / "lesions").mkdir()
    (pytester.path / "lesions" / "__init__.py").write_text("")
    (pytester.path / "lesions" / "model.py").write_text(MODEL)
    write_weights(pytester.path / "weights" / "lesionnet.safetensors")
    (pytester.path / "conftest.py").write_text(conftest)
    (pytester.path / "test_lesionnet.py").write_text(test_file)
    write_folder(pytester.path / "lesions-data" / "lesions")
    return pytester


def results(pytester: pytest.Pytester) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        (pytester.path / "reports" / "latest" / "results.json").read_text(encoding="utf-8")
    )
    return document


def test_the_readme_section_runs_as_written(project: pytest.Pytester) -> None:
    folder = project.path / "lesions-data" / "lesions"
    result = project.runpytest(*readme_command(folder), "--robust-device=cpu")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*RobustDataWarning: image folder 'lesions': 40 images of 48x48 resized to 32x32. Under pytest, "
            "--robust-data loads at the profile's image size (smoke 32 px, ci 32 px, paper 224 px)*",
            "*RobustDataWarning: data 'lesions' has 40 samples, fewer than the n=256 requested: all 40 are "
            "evaluated and results say n=40 (all 40 samples; 256 requested)*",
        ]
    )
    # the terminal's line for the model says it too
    result.stdout.fnmatch_lines(["PASS    *  n=40 (all; 256 requested)  tests: *"])
    doc = results(project)
    assert len(doc["rows"]) == 2
    for row, detail in zip(doc["rows"], doc["details"], strict=True):
        ev = detail["evaluation"]
        assert row["gate_passed"]
        assert row["model"] == f"LesionNet {ev['model']['fingerprint'][:8]}"  # not "model <hash>"
        assert (row["n"], row["samples_available"], row["samples_requested"]) == (40, 40, 256)
        assert ev["data"]["requested_n"] == 256
        assert ev["data"]["shape"] == [3, 32, 32]
        assert ev["data"]["source"]["original_sizes"] == {"48x48": 40}
    html = (project.path / "reports" / "latest" / "report.html").read_text(encoding="utf-8")
    assert "all 40 samples; 256 requested" in html
    assert "LesionNet " in html


def test_the_robust_data_override_loads_at_the_models_size(project: pytest.Pytester) -> None:
    conftest, override, _test_file = readme_files()
    (project.path / "conftest.py").write_text(conftest + "\n\n" + override)
    folder = project.path / "lesions-data" / "lesions"
    result = project.runpytest(*readme_command(folder), "--robust-device=cpu", "--robust-n=all")
    result.assert_outcomes(passed=2)
    output = result.stdout.str()
    assert "RobustDataWarning" not in output  # nothing resized, nothing missing
    for row, detail in zip(results(project)["rows"], results(project)["details"], strict=True):
        data = detail["evaluation"]["data"]
        assert data["shape"] == [3, 48, 48]
        assert data["source"]["original_sizes"] == {"48x48": 40}
        assert "requested_n" not in data
        assert row["samples_requested"] is None


def test_a_model_with_the_classes_swapped_fails_with_advice_that_fits(project: pytest.Pytester) -> None:
    write_weights(project.path / "weights" / "lesionnet.safetensors", swapped=True)
    folder = project.path / "lesions-data" / "lesions"
    result = project.runpytest(*readme_command(folder), "--robust-device=cpu")
    result.assert_outcomes(failed=2)
    output = result.stdout.str()
    clean = output.split("test_clean_accuracy ___", 1)[1].split("___ test_robust_accuracy", 1)[0]
    assert "E     data            lesions (real), n=40 (all 40 samples; 256 requested), 3x32x32 (40 " in clean
    assert "of 48x48 resized to 32x32)" in clean
    assert (
        "E     to fix: this gate measures clean accuracy (no attack): improve or retrain the model, and "
        "check that the data is what it expects - the labels (the class folders in alphabetical order: "
        "0 benign, 1 malignant), the input shape (3x32x32)"
    ) in clean
    assert "adversarial" not in clean
    # both classes missed while both are predicted: DEGENERATE, and the likely cause named
    assert "robustness gate DEGENERATE" in clean
    assert "probably in another class order than the data's labels" in clean
    robust = output.split("___ test_robust_accuracy ___", 1)[1]
    assert (
        "E     to fix: clean accuracy 0.000 is already below the required 0.700, and robust accuracy "
        "cannot exceed it: first improve the model on clean inputs"
    ) in robust


def test_reports_name_models_by_context_checkpoint_or_class() -> None:
    model = {"class": "SmallCNN", "fingerprint": "cc88baa83d29" + "0" * 52}
    assert model_label({"model": "LesionNet v3"}, model) == "LesionNet v3"
    checkpoint = {"checkpoint": {"arch": "small_cnn", "recipe": "pgd-at"}}
    assert model_label(checkpoint, model) == "small_cnn pgd-at"
    assert model_label({}, model) == "SmallCNN cc88baa8"
    assert model_label({}, {"fingerprint": "ab" * 32}) == "model abababab"  # a result without a class
