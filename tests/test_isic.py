"""ISIC loaders (Kaggle and Archive layouts), the integrity report and the decode cache.

Everything runs on small generated files except the ``realdata`` tests, which use the real copy in
``../shared/data`` and skip when it is absent.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from PIL import Image

from pytest_robust.data import decode_cache
from pytest_robust.data.decode_cache import decode_images
from pytest_robust.data.folder import load_image_folder, load_one
from pytest_robust.data.integrity import NEAR_THRESHOLD, folder_records, integrity_report
from pytest_robust.data.isic import (
    DIAGNOSIS_CLASSES,
    ISIC_CLASSES,
    POSITIVE_LABEL,
    archive_records,
    kaggle_records,
    load_isic_archive,
    load_isic_folder,
)
from pytest_robust.errors import RobustDataError

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "isic-malignant-vs-benign"


def _pattern(seed: int, side: int = 48) -> NDArray[np.uint8]:
    """A textured random RGB image: distinct seeds are far apart in pHash (flat colours are not)."""
    coarse = np.random.default_rng(seed).integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC))


def _save(path: Path, image: NDArray[np.uint8] | Image.Image, **params: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(image) if isinstance(image, np.ndarray) else image).save(path, **params)
    return path


def _kaggle(root: Path, counts: dict[str, tuple[int, int]] | None = None, *, seed: int = 0) -> Path:
    """``root/{split}/{benign,malignant}/<i>.jpg`` with (benign, malignant) files per split."""
    counts = counts or {"train": (3, 2), "test": (2, 2)}
    for s, (split, per_class) in enumerate(sorted(counts.items())):
        for c, (label, n) in enumerate(zip(ISIC_CLASSES, per_class, strict=True)):
            for i in range(n):
                _save(root / split / label / f"{i}.jpg", _pattern(seed + 1000 * s + 100 * c + i), quality=95)
    return root


def _truncate(path: Path, image: NDArray[np.uint8]) -> Path:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


# --- Kaggle layout ------------------------------------------------------------------------------


def test_kaggle_layout_loads_one_split_with_fixed_classes(tmp_path: Path) -> None:
    root = _kaggle(tmp_path / "isic")
    ds = load_isic_folder(root, split="test", size=16)
    assert ds.images.shape == (4, 3, 16, 16)
    assert ds.images.dtype == torch.float32
    assert ds.labels.dtype == torch.int64
    assert float(ds.images.min()) >= 0.0
    assert float(ds.images.max()) <= 1.0
    assert ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.classes == ISIC_CLASSES == ("benign", "malignant")
    assert ds.classes[POSITIVE_LABEL] == "malignant"
    assert (ds.name, ds.synthetic) == ("isic-kaggle", False)
    assert ds.source == {
        "kind": "isic",
        "layout": "kaggle",
        "root": str(root.resolve()),
        "split": "test",
        "size": 16,
        "n": 4,
        "n_per_class": {"benign": 2, "malignant": 2},
        "skipped": 0,
        "skipped_files": [],
    }
    assert json.loads(json.dumps(ds.source)) == ds.source
    train = load_isic_folder(root, split="train", size=16)
    assert train.labels.tolist() == [0, 0, 0, 1, 1]
    # same pixels as the generic loader (same decoder, same order)
    generic = load_image_folder(root, size=16, split="test")
    assert torch.equal(generic.images, ds.images)


def test_class_order_is_fixed_whatever_the_folder_case(tmp_path: Path) -> None:
    # "MALIGNANT" sorts before "benign" byte-wise: labels must not follow the folder order
    _save(tmp_path / "Test" / "MALIGNANT" / "a.jpg", _pattern(1))
    _save(tmp_path / "Test" / "Benign" / "b.jpg", _pattern(2))
    _save(tmp_path / "Test" / "Benign" / "c.jpg", _pattern(3))
    ds = load_isic_folder(tmp_path, split="test", size=8)
    assert ds.classes == ("benign", "malignant")
    assert ds.labels.tolist() == [0, 0, 1]
    assert ds.source["n_per_class"] == {"benign": 2, "malignant": 1}


def test_other_class_folder_is_an_error_listing_what_was_found(tmp_path: Path) -> None:
    root = _kaggle(tmp_path)
    _save(root / "test" / "nevus" / "0.jpg", _pattern(9))
    found = r"found \['benign', 'malignant', 'nevus'\], unexpected \['nevus'\]"
    with pytest.raises(RobustDataError, match=found):
        load_isic_folder(root, split="test", size=8)
    load_isic_folder(root, split="train", size=8)  # the other split is untouched


def test_missing_and_empty_class_folders(tmp_path: Path) -> None:
    root = _kaggle(tmp_path)
    shutil.rmtree(root / "test" / "malignant")
    with pytest.raises(RobustDataError, match=r"missing \['malignant'\]"):
        load_isic_folder(root, split="test", size=8)
    (root / "test" / "malignant").mkdir()
    (root / "test" / "malignant" / "notes.txt").write_text("not an image")
    with pytest.raises(RobustDataError, match=r"malignant'? holds no image files.*test split"):
        load_isic_folder(root, split="test", size=8)


def test_layout_errors(tmp_path: Path) -> None:
    root = _kaggle(tmp_path, {"train": (1, 1)})
    with pytest.raises(RobustDataError, match=r"no test/ folder .*sub-folders: \['train'\]"):
        load_isic_folder(root, split="test", size=8)
    with pytest.raises(RobustDataError, match=r"unknown split 'val'"):
        load_isic_folder(root, split="val", size=8)  # type: ignore[arg-type]
    with pytest.raises(RobustDataError, match=r"positive integer"):
        load_isic_folder(root, split="train", size=0)
    with pytest.raises(RobustDataError, match=r"does not exist"):
        load_isic_folder(tmp_path / "nowhere", split="train", size=8)
    _save(root / "TRAIN" / "benign" / "0.jpg", _pattern(5))
    if (root / "TRAIN").samefile(root / "train"):
        pytest.skip("case-insensitive file system")
    with pytest.raises(RobustDataError, match=r"differ only in case"):
        load_isic_folder(root, split="train", size=8)


def test_truncated_jpeg_is_named_and_skip_mode_counts_it(tmp_path: Path) -> None:
    root = _kaggle(tmp_path)
    _truncate(root / "test" / "malignant" / "broken scan.jpg", _pattern(7))
    with pytest.raises(RobustDataError, match=r"1 image file\(s\).*broken scan\.jpg.*skip_unreadable=True"):
        load_isic_folder(root, split="test", size=8)
    ds = load_isic_folder(root, split="test", size=8, skip_unreadable=True)
    assert len(ds) == 4
    assert ds.source["skipped"] == 1
    assert ds.source["skipped_files"] == [str(Path("test", "malignant", "broken scan.jpg"))]


def test_many_unreadable_files_list_ten_and_count_the_rest(tmp_path: Path) -> None:
    root = _kaggle(tmp_path)
    for i in range(12):
        (root / "train" / "benign" / f"bad{i}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(RobustDataError, match=r"12 image file\(s\).*and 2 more") as err:
        load_isic_folder(root, split="train", size=8)
    assert len(re.findall(r"bad\d+\.jpg \(", str(err.value))) == 10  # "file (reason)" entries
    assert load_isic_folder(root, split="train", size=8, skip_unreadable=True).source["skipped"] == 12


def test_file_names_with_spaces_and_non_ascii(tmp_path: Path) -> None:
    root = _kaggle(tmp_path)
    _save(root / "test" / "benign" / "naevus ß 1.jpg", _pattern(11))
    _save(root / "test" / "malignant" / "mélanome été.png", _pattern(12))
    ds = load_isic_folder(root, split="test", size=8)
    assert ds.source["n_per_class"] == {"benign": 3, "malignant": 3}
    names = {r.path.name for r in kaggle_records(root, splits=("test",))}
    assert {"naevus ß 1.jpg", "mélanome été.png"} <= names


def test_colour_modes_are_converted_and_counted(tmp_path: Path) -> None:
    root = _kaggle(tmp_path)
    rgba = np.dstack([_pattern(20), np.full((48, 48), 128, np.uint8)])
    _save(root / "train" / "benign" / "alpha.png", Image.fromarray(rgba, "RGBA"))
    _save(root / "train" / "benign" / "grey.jpg", Image.new("L", (40, 40), 90), quality=100)
    _save(root / "train" / "malignant" / "print.jpg", Image.new("CMYK", (40, 40), (0, 80, 120, 20)))
    _save(root / "train" / "malignant" / "palette.png", Image.fromarray(_pattern(21)).convert("P"))
    ds = load_isic_folder(root, split="train", size=8)
    assert ds.images.shape == (9, 3, 8, 8)
    names = [r.path.name for r in kaggle_records(root, splits=("train",))]
    grey = ds.images[names.index("grey.jpg")]
    assert torch.equal(grey[0], grey[1])
    assert torch.equal(grey[1], grey[2])
    report = integrity_report(root)
    assert report.modes == {"CMYK": 1, "L": 1, "P": 1, "RGB": 9, "RGBA": 1}
    assert report.non_rgb == {"CMYK": 1, "L": 1, "P": 1, "RGBA": 1}
    assert "4 non-RGB image(s) converted to RGB (CMYK 1, L 1, P 1, RGBA 1)" in report.summary()


# --- integrity report ---------------------------------------------------------------------------


def test_exact_duplicates_within_and_across_splits(tmp_path: Path) -> None:
    root = _kaggle(tmp_path)
    source = root / "train" / "benign" / "0.jpg"
    shutil.copy(source, root / "train" / "benign" / "copy.jpg")  # within train
    shutil.copy(source, root / "test" / "benign" / "leak.jpg")  # across splits
    shutil.copy(root / "train" / "malignant" / "1.jpg", root / "train" / "benign" / "relabelled.jpg")
    report = integrity_report(root)
    groups = {g.files: g for g in report.exact_duplicates}
    assert set(groups) == {
        ("test/benign/leak.jpg", "train/benign/0.jpg", "train/benign/copy.jpg"),
        ("train/benign/relabelled.jpg", "train/malignant/1.jpg"),
    }
    leak = groups["test/benign/leak.jpg", "train/benign/0.jpg", "train/benign/copy.jpg"]
    assert leak.cross_split
    assert not leak.label_conflict
    relabelled = groups["train/benign/relabelled.jpg", "train/malignant/1.jpg"]
    assert relabelled.label_conflict
    assert not relabelled.cross_split
    assert report.near_duplicates == ()  # byte-identical pairs are exact duplicates only
    assert report.leaked == ("test/benign/leak.jpg",)
    assert report.class_balance == {
        "test": {"benign": 3, "malignant": 2},
        "train": {"benign": 5, "malignant": 2},
    }
    text = report.summary()
    assert "2 group(s) of byte-identical files (1 across splits, 1 with conflicting labels)" in text
    assert json.loads(json.dumps(report.to_json()))["exact_duplicates"][0]["cross_split"] is True


def test_near_duplicate_across_splits_is_found(tmp_path: Path) -> None:
    root = _kaggle(tmp_path, {"train": (4, 4), "test": (3, 3)})

    def brighter(path: Path) -> NDArray[np.uint8]:
        pixels = np.asarray(Image.open(path).convert("RGB")).astype(np.int16)
        return np.clip(pixels + 12, 0, 255).astype(np.uint8)

    train = root / "train"
    _save(root / "test" / "malignant" / "rescan.jpg", brighter(train / "malignant" / "2.jpg"), quality=70)
    # a near-copy within one split is not reported
    _save(train / "benign" / "rescan.jpg", brighter(train / "benign" / "1.jpg"), quality=70)
    report = integrity_report(root)
    (pair,) = report.near_duplicates
    assert (pair.a, pair.b) == ("test/malignant/rescan.jpg", "train/malignant/2.jpg")
    assert (pair.split_a, pair.split_b) == ("test", "train")
    assert (pair.label_a, pair.label_b) == ("malignant", "malignant")
    assert pair.distance <= NEAR_THRESHOLD == report.near_threshold
    assert report.hash_bits == 256
    assert report.exact_duplicates == ()
    assert "1 near-duplicate pair(s) across splits" in report.summary()


def test_integrity_unreadable_files_error_or_counted(tmp_path: Path) -> None:
    root = _kaggle(tmp_path)
    _truncate(root / "test" / "benign" / "cut.jpg", _pattern(30))
    with pytest.raises(RobustDataError, match=r"cut\.jpg.*skip_unreadable=True"):
        integrity_report(root)
    report = integrity_report(root, skip_unreadable=True, workers=1)
    assert [f for f, _ in report.unreadable] == ["test/benign/cut.jpg"]
    assert report.n_files == 10
    assert report.class_balance["test"] == {"benign": 3, "malignant": 2}
    assert "1 unreadable file(s) skipped (test/benign/cut.jpg)" in report.summary()


def test_integrity_on_records_and_flat_folders(tmp_path: Path) -> None:
    root = _kaggle(tmp_path / "kaggle")
    assert (
        integrity_report(kaggle_records(root)).to_json()["class_balance"]
        == integrity_report(root).class_balance
    )
    flat = tmp_path / "flat"
    _save(flat / "a" / "1.png", _pattern(40))
    _save(flat / "b" / "2.png", _pattern(41))
    records = folder_records(flat)
    assert [(r.split, r.label) for r in records] == [("all", "a"), ("all", "b")]
    assert integrity_report(records).root == str(flat.resolve())
    with pytest.raises(RobustDataError, match=r"no records"):
        integrity_report([])
    with pytest.raises(RobustDataError, match=r"near_threshold"):
        integrity_report(flat, near_threshold=-1)


# --- ISIC Archive layout ------------------------------------------------------------------------


def _archive(tmp_path: Path, rows: list[dict[str, str]], *, suffixes: tuple[str, ...] = (".jpg",)) -> Path:
    images = tmp_path / "images"
    for i, row in enumerate(rows):
        suffix = suffixes[i % len(suffixes)]
        _save(images / f"{row['isic_id']}{suffix}", _pattern(500 + i, side=16))
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = [",".join(columns)] + [",".join(row.get(c, "") for c in columns) for row in rows]
    (tmp_path / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return images


def _ids(n: int, start: int = 0) -> list[str]:
    return [f"ISIC_{i:07d}" for i in range(start, start + n)]


def test_archive_layout_splits_and_loads(tmp_path: Path) -> None:
    rows = [{"isic_id": i, "benign_malignant": "benign"} for i in _ids(10)]
    rows += [{"isic_id": i, "benign_malignant": "malignant"} for i in _ids(5, 100)]
    images = _archive(tmp_path, rows, suffixes=(".jpg", ".jpeg", ".png"))
    test = load_isic_archive(images, tmp_path / "metadata.csv", split="test", size=8)
    train = load_isic_archive(images, tmp_path / "metadata.csv", split="train", size=8)
    assert test.source["n_per_class"] == {"benign": 2, "malignant": 1}
    assert train.source["n_per_class"] == {"benign": 8, "malignant": 4}
    assert test.images.shape == (3, 3, 8, 8)
    assert test.labels.tolist() == [0, 0, 1]
    assert (test.name, test.synthetic, test.classes) == ("isic-archive", False, ISIC_CLASSES)
    assert test.source["layout"] == "archive"
    assert test.source["split_method"] == "seeded-stratified"
    assert test.source["excluded"] == {}
    assert test.source["missing"] == 0
    assert json.loads(json.dumps(test.source)) == test.source


def test_stratified_split_is_deterministic_stratified_and_order_free(tmp_path: Path) -> None:
    rows = [{"isic_id": i, "benign_malignant": "benign"} for i in _ids(50)]
    rows += [{"isic_id": i, "benign_malignant": "malignant"} for i in _ids(30, 100)]
    images = _archive(tmp_path, rows)
    csv = tmp_path / "metadata.csv"

    def assignment(seed: int) -> dict[tuple[str, str], str]:
        records, _ = archive_records(images, csv, seed=seed)
        return {(r.path.stem, r.label): r.split for r in records}

    first = assignment(0)
    assert assignment(0) == first
    test = [key for key, split in first.items() if split == "test"]
    assert sum(label == "benign" for _, label in test) == 10  # 20 % of 50
    assert sum(label == "malignant" for _, label in test) == 6  # 20 % of 30
    assert assignment(1) != first
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    _archive(tmp_path / "shuffled", shuffled)
    records, _ = archive_records(images, tmp_path / "shuffled" / "metadata.csv", seed=0)
    assert {(r.path.stem, r.label): r.split for r in records} == first
    with pytest.raises(RobustDataError, match=r"test_fraction"):
        archive_records(images, csv, test_fraction=1.0)


def test_lesion_groups_stay_in_one_split(tmp_path: Path) -> None:
    rows = [
        {"isic_id": i, "benign_malignant": "benign", "lesion_id": f"L{k // 3}"}
        for k, i in enumerate(_ids(30))
    ]
    rows += [{"isic_id": i, "benign_malignant": "malignant", "lesion_id": ""} for i in _ids(10, 100)]
    records, info = archive_records(_archive(tmp_path, rows), tmp_path / "metadata.csv")
    lesion = {r["isic_id"]: r["lesion_id"] for r in rows if r["lesion_id"]}
    splits_of: dict[str, set[str]] = {}
    for r in records:
        if r.path.stem in lesion:
            splits_of.setdefault(lesion[r.path.stem], set()).add(r.split)
    assert all(len(s) == 1 for s in splits_of.values())
    assert sum(r.split == "test" and r.label == "benign" for r in records) == 6
    assert sum(r.split == "test" and r.label == "malignant" for r in records) == 2
    assert info["split_method"] == "seeded-stratified-by-lesion"


def test_diagnosis_mapping(tmp_path: Path) -> None:
    diagnoses = [
        "melanoma",
        "Basal_cell-carcinoma",
        "squamous cell carcinoma",
        "nevus",
        "seborrheic keratosis",
    ]
    diagnoses += ["solar lentigo", "dermatofibroma", "vascular lesion", "actinic keratosis"]
    rows = [{"isic_id": i, "diagnosis": d} for i, d in zip(_ids(len(diagnoses)), diagnoses, strict=True)]
    rows.append({"isic_id": "ISIC_0000100", "benign_malignant": "malignant", "diagnosis": "nevus"})
    rows.append({"isic_id": "ISIC_0000101", "benign_malignant": "indeterminate", "diagnosis": "nevus"})
    images = _archive(tmp_path, rows)
    csv = tmp_path / "metadata.csv"
    unknown = r"1 metadata row\(s\).*'actinic keratosis' x1.*unknown='exclude'"
    with pytest.raises(RobustDataError, match=unknown):
        archive_records(images, csv)
    records, info = archive_records(images, csv, unknown="exclude")
    assert info["excluded"] == {"actinic keratosis": 1}
    label = {r.path.stem: r.label for r in records}
    expected = ["malignant"] * 3 + ["benign"] * 5
    assert [label[i] for i in _ids(8)] == expected
    assert label["ISIC_0000100"] == "malignant"  # benign_malignant wins over diagnosis
    assert label["ISIC_0000101"] == "benign"  # indeterminate: falls back to the diagnosis
    records, _ = archive_records(images, csv, diagnosis_map={"Actinic Keratosis": "malignant"})
    assert {r.path.stem: r.label for r in records}["ISIC_0000008"] == "malignant"
    assert DIAGNOSIS_CLASSES["melanoma"] == "malignant"
    assert DIAGNOSIS_CLASSES["nevus"] == "benign"
    with pytest.raises(RobustDataError, match=r"diagnosis_map values"):
        archive_records(images, csv, diagnosis_map={"x": "maybe"})
    with pytest.raises(TypeError):
        DIAGNOSIS_CLASSES["x"] = "benign"  # type: ignore[index]


def test_split_column_is_honoured_and_checked(tmp_path: Path) -> None:
    rows = [
        {"isic_id": i, "benign_malignant": label, "split": split}
        for i, (label, split) in zip(
            _ids(4), [("benign", "train"), ("benign", "TEST"), ("malignant", "test"), ("malignant", "train")],
            strict=True,
        )
    ]  # fmt: skip
    images = _archive(tmp_path, rows)
    ds = load_isic_archive(images, tmp_path / "metadata.csv", split="test", size=4)
    assert ds.source["split_method"] == "column:split"
    assert ds.source["n_per_class"] == {
        "benign": 1,
        "malignant": 1,
    }
    _, info = archive_records(images, tmp_path / "metadata.csv", split_column=None)
    assert info["split_method"] == "seeded-stratified"
    rows[0]["split"] = "val"
    _archive(tmp_path, rows)
    with pytest.raises(RobustDataError, match=r"values \['val'\] besides train/test"):
        archive_records(images, tmp_path / "metadata.csv")


def test_archive_missing_images_and_metadata_errors(tmp_path: Path) -> None:
    rows = [{"isic_id": i, "benign_malignant": "benign"} for i in _ids(5)]
    rows += [{"isic_id": i, "benign_malignant": "malignant"} for i in _ids(5, 100)]
    images = _archive(tmp_path, rows)
    csv = tmp_path / "metadata.csv"
    train_ids = [r.path.stem for r in archive_records(images, csv)[0] if r.split == "train"]
    (images / f"{train_ids[0]}.jpg").unlink()
    with pytest.raises(RobustDataError, match=rf"1 image\(s\) of the train split .*missing.*{train_ids[0]}"):
        load_isic_archive(images, csv, split="train", size=4)
    ds = load_isic_archive(images, csv, split="train", size=4, skip_unreadable=True)
    assert ds.source["missing"] == 1
    assert len(ds) == 7
    assert len(load_isic_archive(images, csv, split="test", size=4)) == 2  # the test split is complete
    csv.write_text("isic_id,benign_malignant\nISIC_1,benign\nISIC_1,benign\n")
    with pytest.raises(RobustDataError, match=r"more than once: \['ISIC_1'\]"):
        archive_records(images, csv)
    csv.write_text("image,benign_malignant\nISIC_1,benign\n")
    with pytest.raises(RobustDataError, match=r"isic_id column"):
        archive_records(images, csv)
    csv.write_text("isic_id,age\nISIC_1,40\n")
    with pytest.raises(RobustDataError, match=r"label column"):
        archive_records(images, csv)
    with pytest.raises(RobustDataError, match=r"does not exist"):
        archive_records(images, tmp_path / "nope.csv")


def test_archive_records_feed_the_integrity_report(tmp_path: Path) -> None:
    rows = [{"isic_id": i, "benign_malignant": "benign"} for i in _ids(5)]
    rows += [{"isic_id": i, "benign_malignant": "malignant"} for i in _ids(5, 100)]
    images = _archive(tmp_path, rows)
    records, _ = archive_records(images, tmp_path / "metadata.csv")
    test_file = next(r.path for r in records if r.split == "test")
    train_file = next(r.path for r in records if r.split == "train")
    shutil.copy(train_file, test_file)  # a leak: same bytes under another id
    report = integrity_report(records)
    assert report.root == str(images.resolve())
    assert [g.files for g in report.exact_duplicates] == [(test_file.name, train_file.name)]  # record order
    assert report.leaked == (test_file.name,)


# --- decode cache -------------------------------------------------------------------------------


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    real = load_one

    def counted(file: Path, size: int) -> NDArray[np.float32]:
        calls.append(file)
        return real(file, size)

    monkeypatch.setattr(decode_cache, "load_one", counted)
    return calls


def _refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(file: Path, size: int) -> NDArray[np.float32]:
        raise AssertionError(f"decoded {file} again despite the cache")

    monkeypatch.setattr(decode_cache, "load_one", boom)


def test_decode_cache_hit_decodes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _kaggle(tmp_path / "isic")
    cache = tmp_path / "cache"
    cold = load_isic_folder(root, split="train", size=12, cache_dir=cache)
    entries = list((cache / "decoded").glob("*/*"))
    assert len(entries) == 1
    assert {p.name for p in entries[0].iterdir()} >= {"images.safetensors", "meta.json"}
    _refuse(monkeypatch)
    warm = load_isic_folder(root, split="train", size=12, cache_dir=cache)
    assert torch.equal(cold.images, warm.images)
    assert torch.equal(cold.labels, warm.labels)
    assert warm.source == cold.source
    moved = shutil.copytree(root, tmp_path / "moved")  # keyed by content, not by path
    assert torch.equal(load_isic_folder(moved, split="train", size=12, cache_dir=cache).images, cold.images)
    direct = decode_images(
        [r.path for r in kaggle_records(root, splits=("train",))], size=12, cache_dir=cache
    )
    assert direct.hit
    assert direct.to_json()["n_kept"] == 5


def test_decode_cache_misses_on_changed_bytes_or_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _kaggle(tmp_path / "isic")
    cache = tmp_path / "cache"
    load_isic_folder(root, split="test", size=12, cache_dir=cache)
    calls = _counting(monkeypatch)
    load_isic_folder(root, split="test", size=12, cache_dir=cache)
    assert calls == []
    load_isic_folder(root, split="test", size=10, cache_dir=cache)
    assert len(calls) == 4
    _save(root / "test" / "benign" / "0.jpg", _pattern(77))
    changed = load_isic_folder(root, split="test", size=12, cache_dir=cache)
    assert len(calls) == 8
    assert torch.equal(changed.images, load_isic_folder(root, split="test", size=12).images)


def test_decode_cache_rebuilds_a_corrupt_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = _kaggle(tmp_path / "isic")
    cache = tmp_path / "cache"
    good = load_isic_folder(root, split="test", size=12, cache_dir=cache).images
    (entry,) = (cache / "decoded").glob("*/*")
    corruptions: list[Callable[[], object]] = [
        lambda: (entry / "images.safetensors").write_bytes((entry / "images.safetensors").read_bytes()[:-40]),
        lambda: (entry / "meta.json").write_text("{ not json"),
        lambda: (entry / "images.safetensors").unlink(),
    ]
    blob = bytearray((entry / "images.safetensors").read_bytes())
    blob[-1] ^= 0xFF  # one flipped pixel: only the hash check sees it
    corruptions.append(lambda: (entry / "images.safetensors").write_bytes(bytes(blob)))
    calls = _counting(monkeypatch)
    for n, corrupt in enumerate(corruptions, start=1):
        corrupt()
        with caplog.at_level(logging.WARNING, logger="pytest_robust.data.decode_cache"):
            again = load_isic_folder(root, split="test", size=12, cache_dir=cache).images
        assert torch.equal(again, good)
        assert len(calls) == 4 * n  # decoded again ...
        load_isic_folder(root, split="test", size=12, cache_dir=cache)
        assert len(calls) == 4 * n  # ... and stored again
    assert sum("corrupt" in r.message for r in caplog.records) == 3  # a missing file is a plain miss


def test_decode_cache_remembers_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _kaggle(tmp_path / "isic")
    _truncate(root / "test" / "benign" / "cut.jpg", _pattern(8))
    cache = tmp_path / "cache"
    cold = load_isic_folder(root, split="test", size=12, cache_dir=cache, skip_unreadable=True)
    _refuse(monkeypatch)
    warm = load_isic_folder(root, split="test", size=12, cache_dir=cache, skip_unreadable=True)
    assert warm.source["skipped"] == cold.source["skipped"] == 1
    assert torch.equal(warm.images, cold.images)
    with pytest.raises(RobustDataError, match=r"cut\.jpg"):
        load_isic_folder(root, split="test", size=12, cache_dir=cache)


# --- the real ISIC copy -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_root() -> Path:
    if not (REAL / "train").is_dir() or not (REAL / "test").is_dir():
        pytest.skip(f"the real ISIC copy is not at {REAL} (shared/ beside the repository)")
    return REAL


@pytest.mark.realdata
def test_real_counts_and_second_load_decodes_nothing(
    real_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected: dict[Literal["train", "test"], dict[str, int]] = {
        "train": {"benign": 1440, "malignant": 1197},
        "test": {"benign": 360, "malignant": 300},
    }
    cold = {
        split: load_isic_folder(real_root, split=split, size=16, cache_dir=tmp_path) for split in expected
    }
    assert {split: ds.source["n_per_class"] for split, ds in cold.items()} == expected
    assert sum(len(ds) for ds in cold.values()) == 3297
    _refuse(monkeypatch)
    for split, ds in cold.items():
        warm = load_isic_folder(real_root, split=split, size=16, cache_dir=tmp_path)
        assert torch.equal(warm.images, ds.images)
        assert torch.equal(warm.labels, ds.labels)


@pytest.mark.realdata
def test_real_integrity_finds_the_duplicate_and_the_leak(real_root: Path) -> None:
    report = integrity_report(real_root)
    assert report.n_files == 3297
    assert report.unreadable == ()
    assert report.class_balance == {
        "test": {"benign": 360, "malignant": 300},
        "train": {"benign": 1440, "malignant": 1197},
    }
    assert ("train/malignant/768.jpg", "train/malignant/769.jpg") in [
        g.files for g in report.exact_duplicates
    ]
    pairs = {(d.a, d.b): d.distance for d in report.near_duplicates}
    assert pairs[("test/malignant/507.jpg", "train/malignant/439.jpg")] <= 2
    assert "test/malignant/507.jpg" in report.leaked
    # calibrated threshold: a few dozen pairs, not a flood (46 at 40 when measured)
    assert 10 <= len(report.near_duplicates) <= 100, report.summary()
