"""The suite fixtures in ``fixtures/``: ISIC data from --robust-data, checkpoints, synthetic default."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CONFTEST = """
pytest_plugins = ["fixtures.isic"]
"""


def _isic_folder(root: Path, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, cls in enumerate(("Benign", "MALIGNANT")):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 120, (40, 40, 3), dtype=np.uint8) + 100 * label
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i + 1}.jpg", quality=95)
    return root


def test_isic_fixtures_and_checkpoint_factory(pytester: pytest.Pytester, tmp_path: Path) -> None:
    data = _isic_folder(tmp_path / "isic")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
        def test_data(isic_train, isic_test):
            assert not isic_train.synthetic and not isic_test.synthetic
            assert isic_train.classes == ("benign", "malignant")
            assert len(isic_train) == 12 and len(isic_test) == 12
            assert isic_test.images.shape[1:] == (3, 32, 32)   # the smoke profile's resolution

        def test_checkpoint(checkpoint, isic_test):
            model = checkpoint("small_cnn", "pgd-at")
            assert not model.training
            assert model(isic_test.images[:2]).shape == (2, 2)
            assert checkpoint("small_cnn", "pgd-at") is model   # built once per session
        """
    )
    args = (
        "--robust-profile=smoke",
        f"--robust-data={data}",
        f"--robust-cache-dir={tmp_path / 'c'}",
        "-p",
        "no:cacheprovider",
    )
    pytester.runpytest(*args).assert_outcomes(passed=2)
    # decoded once: the second run reads the decode cache and the checkpoint cache
    assert any((tmp_path / "c" / "decoded").rglob("*.safetensors"))
    pytester.runpytest(*args).assert_outcomes(passed=2)


def test_without_data_the_fixtures_are_synthetic(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
        def test_data(isic_test):
            assert isic_test.synthetic and len(isic_test) == 660
        """
    )
    result = pytester.runpytest("--robust-profile=smoke", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["robust: *data=synthetic (embedded generator; not real patient data), execution=auto"]
    )


def test_a_folder_that_is_not_isic_is_a_usage_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    (tmp_path / "d" / "train" / "cats").mkdir(parents=True)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile("def test_data(isic_train): pass")
    result = pytester.runpytest("--robust-profile=smoke", f"--robust-data={tmp_path / 'd'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # the whole run stops: every test needs the data
    out = result.stdout.str() + result.stderr.str()
    assert f"pytest-robust: --robust-data {tmp_path / 'd'}" in out
    assert "Traceback" not in out


def test_unreadable_images_stop_the_run_unless_skipped_on_the_command_line(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    data = _isic_folder(tmp_path / "isic")
    (data / "test" / "Benign" / "broken.jpg").write_bytes(b"not a jpeg")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
        def test_data(isic_test):
            assert len(isic_test) == 12
            assert isic_test.source["skipped_files"] == ["test/Benign/broken.jpg"]
        """
    )
    args = ("--robust-profile=smoke", f"--robust-data={data}", f"--robust-cache-dir={tmp_path / 'c'}")
    stopped = pytester.runpytest(*args, "-p", "no:cacheprovider")
    assert stopped.ret == pytest.ExitCode.USAGE_ERROR
    out = stopped.stdout.str() + stopped.stderr.str()
    assert "broken.jpg" in out
    assert "--robust-skip-unreadable" in out
    skipped = pytester.runpytest(*args, "--robust-skip-unreadable", "-p", "no:cacheprovider")
    skipped.assert_outcomes(passed=1)


def test_one_loader_and_one_size_table_for_the_plugin_and_the_suites(tmp_path: Path) -> None:
    """The suite's ISIC fixtures and the plugin's default data come from the package's one loader:
    the same synthetic evaluation set and image size; the training sets' sizes from one table."""
    from fixtures.isic import load_split
    from pytest_robust.config import PROFILES, RobustConfig
    from pytest_robust.data.defaults import SYNTHETIC_SIZES, image_size
    from pytest_robust.plugin import load_default_split

    for profile in ("smoke", "ci"):
        rc = RobustConfig(profile=PROFILES[profile])
        sizes = SYNTHETIC_SIZES[profile]
        suite_test, plugin_test = load_split(rc, "test"), load_default_split(rc, "test")
        assert suite_test.fingerprint() == plugin_test.fingerprint()
        assert len(plugin_test) == sizes.test
        assert plugin_test.images.shape[-1] == image_size(rc) == rc.profile.image_size
        assert len(load_split(rc, "train")) == sizes.benchmark_train
        assert len(load_default_split(rc, "train")) == sizes.train


def test_a_flat_folder_cannot_train_the_default_models(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The plugin's loader stops the run with a usage error naming the folder (no traceback)."""
    root = tmp_path / "flat"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (32, 32), (40 * i, 80, 120)).save(root / cls / f"{i}.png")
    pytester.makepyfile("def test_train(robust_train_data):\n    pass\n")
    result = pytester.runpytest("--robust-profile=smoke", f"--robust-data={root}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(
        [f"*pytest-robust: --robust-data {root}: {root} has no train/ and test/ sub-folders*"]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
