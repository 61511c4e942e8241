"""The generic ImageFolder loader: layouts, ordering, colour modes and every error it reports."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pytest_robust.data.dataset import resize_note
from pytest_robust.data.folder import load_image_folder, natural_key
from pytest_robust.errors import RobustDataError, RobustDataWarning

# most images here are loaded at another size on purpose; the tests of that warning catch it themselves
pytestmark = pytest.mark.filterwarnings("ignore::pytest_robust.errors.RobustDataWarning")


def _save(
    path: Path, colour: tuple[int, ...] | int, *, mode: str = "RGB", size: tuple[int, int] = (12, 9)
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)
    return path


def _two_classes(root: Path, *, per_class: int = 2) -> Path:
    for name, colour in (("Benign", (200, 150, 120)), ("MALIGNANT", (60, 30, 20))):
        for i in range(per_class):
            _save(root / name / f"{i}.png", colour)
    return root


def test_flat_layout_lower_cases_and_sorts_class_names(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "derm", per_class=3)
    ds = load_image_folder(root, size=16)
    assert ds.classes == ("benign", "malignant")
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.images.shape == (6, 3, 16, 16)
    assert ds.images.dtype == torch.float32
    assert torch.allclose(ds.images[0, :, 5, 5], torch.tensor([200, 150, 120]) / 255.0)
    assert torch.allclose(ds.images[5, :, 5, 5], torch.tensor([60, 30, 20]) / 255.0)
    assert ds.name == "derm"
    assert ds.synthetic is False
    assert ds.source == {
        "kind": "folder",
        "path": str(root.resolve()),
        "split": None,
        "size": 16,
        "n_files": 6,
        "original_sizes": {"12x9": 6},
    }
    assert json.loads(json.dumps(ds.source)) == ds.source


def test_split_layout_picks_the_requested_split(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("test", 1)):
        _two_classes(tmp_path / "isic" / split, per_class=n)
    train = load_image_folder(tmp_path / "isic", size=8, split="train")
    test = load_image_folder(str(tmp_path / "isic"), size=8)  # split defaults to "test"
    assert len(train) == 6
    assert len(test) == 2
    assert train.classes == test.classes == ("benign", "malignant")
    assert train.source["split"] == "train"
    assert test.source["split"] == "test"
    assert test.name == "isic"


def test_split_layout_without_split_is_an_error(tmp_path: Path) -> None:
    _two_classes(tmp_path / "isic" / "train")
    _two_classes(tmp_path / "isic" / "test")
    with pytest.raises(RobustDataError, match=r"pass split='train' or split='test'"):
        load_image_folder(tmp_path / "isic", size=8, split=None)


def test_missing_split_folder_and_unknown_split(tmp_path: Path) -> None:
    _two_classes(tmp_path / "isic" / "train")
    with pytest.raises(RobustDataError, match=r"no test/ sub-folder"):
        load_image_folder(tmp_path / "isic", size=8, split="test")
    with pytest.raises(RobustDataError, match=r"unknown split 'val'"):
        load_image_folder(tmp_path / "isic", size=8, split="val")


def test_files_in_natural_order_hidden_and_other_files_ignored(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for number in (10, 2, 1):  # the red channel records which file a row came from
        _save(root / "benign" / f"img{number}.png", (number * 20, 0, 0))
    _save(root / "benign" / "IMG3.PNG", (60, 0, 0))
    _save(root / "benign" / ".img0.png", (0, 0, 0))
    (root / "benign" / "notes.txt").write_text("not an image")
    (root / "benign" / ".DS_Store").write_bytes(b"\0\1")
    _save(root / ".cache" / "x.png", (0, 0, 0))
    _save(root / "malignant" / "a.jpg", (0, 0, 200))
    ds = load_image_folder(root, size=4)
    assert ds.classes == ("benign", "malignant")
    reds = [round(float(v) * 255) for v in ds.images[:4, 0, 2, 2]]
    assert reds == [20, 40, 60, 200]
    assert ds.source["n_files"] == 5


def test_natural_key_orders_numbers_by_value() -> None:
    names = ["b10.jpg", "b2.jpg", "a.jpg", "B1.jpg", "b2.jpeg", "10.jpg", "9.jpg", "x²1.jpg"]
    assert sorted(names, key=natural_key) == [
        "9.jpg",
        "10.jpg",
        "a.jpg",
        "B1.jpg",
        "b2.jpeg",
        "b2.jpg",
        "b10.jpg",
        "x²1.jpg",
    ]


def test_colour_modes_are_converted_to_rgb(tmp_path: Path) -> None:
    root = tmp_path / "modes"
    _save(root / "a" / "1 rgba.png", (255, 0, 0, 0), mode="RGBA")
    _save(root / "a" / "2 grey.png", 128, mode="L")
    _save(root / "a" / "3 cmyk.jpg", (0, 0, 0, 0), mode="CMYK")
    palette = Image.new("RGB", (12, 9), (0, 255, 0)).quantize(colors=4)
    palette.save(root / "a" / "4 palette.png")
    palette.save(root / "a" / "5 palette-transparent.png", transparency=0)
    _save(root / "a" / "6 grey16.png", 65535, mode="I;16")
    _save(root / "b" / "7.bmp", (1, 2, 3))
    ds = load_image_folder(root, size=6)
    assert ds.images.shape == (8 - 1, 3, 6, 6)
    centre = (ds.images[:, :, 3, 3] * 255).round().int().tolist()
    assert centre[0] == [255, 0, 0]  # alpha dropped, colour kept
    assert centre[1] == [128, 128, 128]
    assert all(v >= 250 for v in centre[2])  # CMYK (0, 0, 0, 0) is white; JPEG may shift it a bit
    assert centre[3] == centre[4] == [0, 255, 0]
    assert centre[5] == [255, 255, 255]
    assert centre[6] == [1, 2, 3]


def test_non_ascii_names_with_spaces(tmp_path: Path) -> None:
    root = tmp_path / "données dermato"
    _save(root / "Bénin" / "lésion 1.png", (10, 20, 30))
    _save(root / "Malin" / "病变 2.jpg", (90, 90, 90))
    ds = load_image_folder(root, size=8)
    assert ds.classes == ("bénin", "malin")
    assert ds.name == "données dermato"


def test_non_square_images_are_resized_to_a_square(tmp_path: Path) -> None:
    root = tmp_path / "shapes"
    _save(root / "a" / "wide.png", (5, 5, 5), size=(300, 40))
    _save(root / "b" / "tall.png", (250, 250, 250), size=(7, 90))
    ds = load_image_folder(root, size=32)
    assert ds.images.shape == (2, 3, 32, 32)
    assert float(ds.images.min()) >= 0.0
    assert float(ds.images.max()) <= 1.0


def test_resized_images_are_counted_and_announced(tmp_path: Path) -> None:
    root = tmp_path / "derm"
    for name in ("benign", "malignant"):
        for i in range(3):
            _save(root / name / f"{i}.png", (90, 60, 40), size=(48, 48))
    with pytest.warns(RobustDataWarning) as caught:
        ds = load_image_folder(root, size=32)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith("image folder 'derm': 6 images of 48x48 resized to 32x32. Under pytest, ")
    assert "profile's image size (smoke 32 px, ci 32 px, paper 224 px)" in message
    assert "override the robust_data fixture with load_image_folder(path, size=N)" in message
    assert caught[0].filename == __file__  # points at the caller, not the loader
    assert ds.source["original_sizes"] == {"48x48": 6}
    assert "6 images of 48x48 resized to 32x32" in ds.describe()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loaded at their own size: nothing resized, nothing said
        same = load_image_folder(root, size=48)
    assert same.source["original_sizes"] == {"48x48": 6}
    assert resize_note(same.source) is None
    assert "resized" not in same.describe()


def test_mixed_sizes_are_listed_most_common_first(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    _save(root / "a" / "1.png", (1, 1, 1), size=(48, 48))
    _save(root / "a" / "2.png", (1, 1, 1), size=(48, 48))
    _save(root / "b" / "3.png", (1, 1, 1), size=(64, 48))
    _save(root / "b" / "4.png", (1, 1, 1), size=(32, 32))
    with pytest.warns(RobustDataWarning, match="image folder 'mixed': 3 of 4 images"):
        ds = load_image_folder(root, size=32)
    assert ds.source["original_sizes"] == {"48x48": 2, "32x32": 1, "64x48": 1}
    assert resize_note(ds.source) == (
        "3 of 4 images (48x48: 2, 64x48: 1) resized to 32x32 (non-square ones squashed, not cropped)"
    )


def test_resize_note_without_sizes_or_with_many() -> None:
    assert resize_note({}) is None
    assert resize_note({"kind": "synthetic", "size": 32}) is None
    many = {"size": 8, "original_sizes": {"10x10": 4, "12x12": 3, "14x14": 2, "16x16": 1}}
    assert resize_note(many) == "10 images (10x10: 4, 12x12: 3, 14x14: 2, ...) resized to 8x8"


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    root = tmp_path / "exif"
    image = Image.new("RGB", (8, 8), (255, 0, 0))
    image.paste((0, 0, 255), (4, 0, 8, 8))  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 3  # rotated 180°: displayed with the blue half on the left
    (root / "a").mkdir(parents=True)
    image.save(root / "a" / "rotated.png", exif=exif)
    _save(root / "b" / "plain.png", (0, 0, 0))
    ds = load_image_folder(root, size=8)
    assert float(ds.images[0, 2, 4, 0]) == pytest.approx(1.0)
    assert float(ds.images[0, 0, 4, 7]) == pytest.approx(1.0)


def test_the_upright_size_is_recorded(tmp_path: Path) -> None:
    root = tmp_path / "exif"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 8 wide, 4 high; displayed rotated by 90°: 4 wide, 8 high
    (root / "a").mkdir(parents=True)
    Image.new("RGB", (8, 4), (9, 9, 9)).save(root / "a" / "rotated.png", exif=exif)
    _save(root / "b" / "plain.png", (0, 0, 0), size=(4, 8))
    with pytest.warns(RobustDataWarning, match="2 images of 4x8 resized to 8x8"):
        ds = load_image_folder(root, size=8)
    assert ds.source["original_sizes"] == {"4x8": 2}


def test_truncated_jpeg_is_named_in_the_error(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    good = root / "Benign" / "good.jpg"
    noise = np.random.default_rng(0).integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(good, quality=95)
    data = good.read_bytes()
    (root / "MALIGNANT" / "broken scan é.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(RobustDataError, match=r"1 image file\(s\).*broken scan é\.jpg.*truncated") as info:
        load_image_folder(root, size=8)
    assert "good.jpg" not in str(info.value)


def test_many_unreadable_files_are_counted_and_the_list_is_capped(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    for i in range(12):
        (root / "Benign" / f"junk{i}.png").write_bytes(b"definitely not a png")
    with pytest.raises(RobustDataError, match=r"12 image file\(s\)") as info:
        load_image_folder(root, size=8)
    message = str(info.value)
    assert "junk0.png" in message
    assert "junk9.png" in message
    assert "junk10.png" not in message
    assert "and 2 more" in message


def test_empty_class_folder_is_named(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    (root / "Nevus").mkdir()
    (root / "Nevus" / ".hidden.png").write_bytes(b"")
    (root / "Nevus" / "readme.txt").write_text("nothing here")
    with pytest.raises(RobustDataError, match=r"class folder 'nevus'.*holds no images"):
        load_image_folder(root, size=8)


def test_nonexistent_path(tmp_path: Path) -> None:
    with pytest.raises(RobustDataError, match=r"does not exist"):
        load_image_folder(tmp_path / "nowhere", size=8)


def test_path_is_a_file(tmp_path: Path) -> None:
    file = _save(tmp_path / "one.png", (1, 1, 1))
    with pytest.raises(RobustDataError, match=r"is a file, not a folder"):
        load_image_folder(file, size=8)


def test_no_class_folders(tmp_path: Path) -> None:
    _save(tmp_path / "loose" / "1.png", (1, 1, 1))
    with pytest.raises(RobustDataError, match=r"no class sub-folders.*1 image files directly"):
        load_image_folder(tmp_path / "loose", size=8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RobustDataError, match=r"no class sub-folders"):
        load_image_folder(tmp_path / "empty", size=8)


def test_single_class_folder(tmp_path: Path) -> None:
    _save(tmp_path / "data" / "Benign" / "1.png", (1, 1, 1))
    with pytest.raises(RobustDataError, match=r"only one class folder \('benign'\).*at least 2"):
        load_image_folder(tmp_path / "data", size=8)


def test_class_folders_differing_only_in_case(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    _save(root / "benign" / "x.png", (1, 1, 1))
    if len([p for p in root.iterdir() if p.name.lower() == "benign"]) < 2:
        pytest.skip("case-insensitive file system")
    with pytest.raises(RobustDataError, match=r"differ only in case"):
        load_image_folder(root, size=8)


@pytest.mark.parametrize("size", [0, -4, True, 2.0])
def test_invalid_size(tmp_path: Path, size: object) -> None:
    root = _two_classes(tmp_path / "data")
    with pytest.raises(RobustDataError, match=r"image size must be a positive integer"):
        load_image_folder(root, size=size)  # type: ignore[arg-type]


def test_a_dangling_image_link_is_an_unreadable_file_not_left_out(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    (root / "Benign" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(RobustDataError, match=r"1 image file\(s\).*gone\.png"):
        load_image_folder(root, size=8, split=None)


def test_a_loop_of_image_links_is_an_unreadable_file_not_left_out(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    (root / "MALIGNANT" / "a.jpg").symlink_to(root / "MALIGNANT" / "b.jpg")
    (root / "MALIGNANT" / "b.jpg").symlink_to(root / "MALIGNANT" / "a.jpg")
    with pytest.raises(RobustDataError, match=r"2 image file\(s\).*a\.jpg.*b\.jpg"):
        load_image_folder(root, size=8, split=None)


def test_a_dangling_class_folder_link_is_an_error(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    (root / "nevus").symlink_to(tmp_path / "unmounted")
    with pytest.raises(RobustDataError, match=r"broken symbolic link.*'nevus'"):
        load_image_folder(root, size=8, split=None)


def test_a_working_image_link_is_loaded(tmp_path: Path) -> None:
    root = _two_classes(tmp_path / "data")
    (root / "Benign" / "linked.png").symlink_to(root / "Benign" / "0.png")
    data = load_image_folder(root, size=8, split=None)
    assert len(data) == 5
