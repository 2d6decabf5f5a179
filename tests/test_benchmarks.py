import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from analysis_lib.benchmarks import BenchmarkError, load_image, load_mmvp_vlm, load_whatsup_controlled
from analysis_lib.metrics import caption_relation
from analysis_lib.toy_benchmarks import ATTRIBUTE_FILE, MMVP_FOLDER, RELATION_FILE, export_toy_benchmarks


@pytest.fixture
def exported(world):
    return export_toy_benchmarks(world, n_pairs=3, seed=0)


def test_toy_relation_set_reads_back_in_whatsup_format(exported):
    raw = json.loads((exported / RELATION_FILE).read_text())
    assert set(raw[0]) == {"image_path", "caption_options"} and len(raw[0]["caption_options"]) == 4
    items = load_whatsup_controlled(exported / RELATION_FILE, expected_size=12)
    assert len({item.obj_pair for item in items}) == 3
    for item in items:
        assert item.image_path.name == f"{item.obj1}_{item.relation}_{item.obj2}.png"
        assert caption_relation(item.caption_options[0]) == item.relation
        assert len(set(item.caption_options)) == 4


def test_attribute_set_swaps_only_a_colour(exported):
    items = load_whatsup_controlled(exported / ATTRIBUTE_FILE)
    for item in items:
        gold, *foils = item.caption_options
        for foil in foils:
            diff = [(a, b) for a, b in zip(gold.split(), foil.split()) if a != b]
            assert len(diff) == 1 and diff[0][1] not in item.obj1 + item.obj2


def test_export_is_deterministic_and_reused(world, exported):
    again = export_toy_benchmarks(world, n_pairs=3, seed=0)
    assert again == exported
    shutil.rmtree(exported)
    rebuilt = export_toy_benchmarks(world, n_pairs=3, seed=0)
    assert json.loads((rebuilt / RELATION_FILE).read_text())  # rebuilt after deletion


def test_mmvp_pairs_read_back(exported):
    pairs = load_mmvp_vlm(exported / MMVP_FOLDER)
    assert [p.pattern for p in pairs] == ["Spatial"] * 3 + ["Color"] * 3
    assert pairs[0].question_ids == (1, 2)
    a, b = (np.asarray(load_image(p)) for p in pairs[0].image_paths)
    assert a.shape == b.shape and not np.array_equal(a, b)


@pytest.mark.parametrize("folder", ["MLLM_VLM Images", "MMVP_VLM_Images", "MLLM_VLM_Images"])
def test_mmvp_accepts_all_three_folder_spellings(tmp_path, folder):
    root = tmp_path / "mmvp"
    for qid in (1, 2):
        (root / folder / "Orientation").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(root / folder / "Orientation" / f"{qid}.jpg")
    with (root / "Questions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Question ID", "Type", "Statement"])
        writer.writerow([1, "Orientation", "The dog faces left"])
        writer.writerow([2, "Orientation", "The dog faces right"])
    (pair,) = load_mmvp_vlm(root)
    assert pair.statements == ("The dog faces left", "The dog faces right")
    with pytest.raises(BenchmarkError, match="published benchmark has 270"):
        load_mmvp_vlm(root, expected_rows=270)


def test_malformed_annotation_is_one_clear_error(tmp_path):
    path = tmp_path / "controlled_images_dataset.json"
    path.write_text("{not json")
    with pytest.raises(BenchmarkError, match="not valid JSON"):
        load_whatsup_controlled(path)
    path.write_text(json.dumps([{"image_path": "dog_left_of_table.jpeg"}]))
    with pytest.raises(BenchmarkError, match="caption_options"):
        load_whatsup_controlled(path)
    path.write_text(json.dumps([{"image_path": "dog_next_to_table.jpeg", "caption_options": ["a", "b"]}]))
    with pytest.raises(BenchmarkError, match="obj1"):
        load_whatsup_controlled(path)


def test_missing_and_corrupt_images_name_the_file(tmp_path):
    path = tmp_path / "controlled_images_dataset.json"
    entry = {"image_path": "data/controlled_images/dog_on_table.jpeg", "caption_options": ["A dog on a table", "x"]}
    path.write_text(json.dumps([entry]))
    with pytest.raises(BenchmarkError, match="dog_on_table.jpeg"):
        load_whatsup_controlled(path)
    (tmp_path / "data" / "controlled_images").mkdir(parents=True)
    corrupt = tmp_path / "data" / "controlled_images" / "dog_on_table.jpeg"
    corrupt.write_bytes(b"not an image")
    (item,) = load_whatsup_controlled(path, image_root=tmp_path)
    with pytest.raises(BenchmarkError, match="cannot be read"):
        load_image(item.image_path)
