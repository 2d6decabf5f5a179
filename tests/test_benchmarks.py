import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from upstream_fixtures import write_csv, write_image, write_whatsup

from analysis_lib.core.images import ImageError, load_image, verify_images
from analysis_lib.data.benchmarks import (
    PUBLISHED_SIZES,
    BenchmarkError,
    load_mmvp,
    load_mmvp_statements,
    load_mmvp_vlm,
    load_whatsup,
    load_whatsup_controlled,
    load_whatsup_spatial,
    size_report,
)
from analysis_lib.data.toy_benchmarks import ATTRIBUTE_FILE, MMVP_FOLDER, RELATION_FILE, export_toy_benchmarks
from analysis_lib.stats.metrics import caption_relation


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
    with pytest.raises(ImageError, match="cannot be read"):
        load_image(item.image_path)


def test_whatsup_folder_reads_every_subset_lazily(tmp_path):
    write_whatsup(tmp_path)
    subsets = load_whatsup(tmp_path)
    assert list(subsets) == ["Controlled-A", "Controlled-B", "COCO-one", "COCO-two", "GQA-one", "GQA-two"]
    assert [item.relation for item in subsets["Controlled-B"]] == ["left_of", "right_of", "in-front_of", "behind"]
    first, no_relation = subsets["COCO-one"]
    assert first.image_path == tmp_path / "data" / "val2017" / "000000000139.jpg"
    assert first.caption_options == ("A photo of a dog on the left", "A photo of a dog on the right")
    assert (first.relation, first.obj_pair, no_relation.relation) == ("left", ("", ""), "unknown")
    assert [subsets[name][0].relation for name in ("COCO-two", "GQA-one", "GQA-two")] == ["above", "bottom", "behind"]
    assert subsets["GQA-two"][0].image_path == tmp_path / "data" / "vg_images" / "2368312.jpg"
    assert load_whatsup(tmp_path / "data") == subsets  # the data folder itself works too
    report = {row["subset"]: row for row in size_report(subsets)}
    assert report["Controlled-A"] == {"subset": "Controlled-A", "found": 4, "published": 412, "matches": False}
    assert report["COCO-one"]["found"] == 2 and report["GQA-two"]["published"] == 291


def test_published_sizes_are_one_table():
    assert PUBLISHED_SIZES == {
        "Controlled-A": 412,
        "Controlled-B": 408,
        "COCO-one": 2247,
        "COCO-two": 440,
        "GQA-one": 1160,
        "GQA-two": 291,
        "MMVP-VLM": 270,
        "MMVP": 300,
    }


def test_whatsup_folder_strict_and_missing_subsets(tmp_path):
    write_whatsup(tmp_path)
    with pytest.raises(BenchmarkError, match="controlled_images_dataset.json: found 4 items, the published .* 412"):
        load_whatsup(tmp_path, strict=True)
    for file in ("coco_qa_two_obj.json", "vg_qa_one_obj.json"):
        (tmp_path / "data" / file).unlink()
    with pytest.raises(BenchmarkError, match="missing: coco_qa_two_obj.json, vg_qa_one_obj.json.*only_present=True"):
        load_whatsup(tmp_path)
    assert list(load_whatsup(tmp_path, only_present=True)) == ["Controlled-A", "Controlled-B", "COCO-one", "GQA-two"]
    with pytest.raises(BenchmarkError, match="What'sUp annotation files missing"):
        load_whatsup(tmp_path / "empty", only_present=True)


def test_spatial_loader_errors_name_the_file(tmp_path):
    path = tmp_path / "coco_qa_one_obj.json"
    path.write_text(json.dumps([[1, "A photo of a dog on the left"]]))
    with pytest.raises(BenchmarkError, match=r"coco_qa_one_obj.json item 0: expected \[image_id, correct_caption"):
        load_whatsup_spatial(path, tmp_path, "COCO")
    path.write_text(json.dumps({"1": "a"}))
    with pytest.raises(BenchmarkError, match="expected a JSON list"):
        load_whatsup_spatial(path, tmp_path, "COCO")
    path.write_text(json.dumps([[1, "A dog on the left", "A dog on the right"], [2, "A dog above", "A dog below"]]))
    write_image(tmp_path / "val2017" / "000000000001.jpg")
    with pytest.raises(BenchmarkError, match="1 of 2 images not found, first '000000000002.jpg'.*holds val2017/"):
        load_whatsup_spatial(path, tmp_path, "COCO")
    (tmp_path / "val2017" / "000000000002.jpg").write_bytes(b"not an image")
    items = load_whatsup_spatial(path, tmp_path, "COCO", expected_size=2)  # lazy: paths only
    with pytest.raises(ImageError, match="1 of 2 images cannot be used:\n  - image .*000000000002.jpg"):
        verify_images(item.image_path for item in items)
    with pytest.raises(BenchmarkError, match="published benchmark has 2247"):
        load_whatsup_spatial(path, tmp_path, "COCO", expected_size=PUBLISHED_SIZES["COCO-one"])


MMVP_HEADER = ["Index", "Question", "Options", "Correct Answer"]
MMVP_ROWS = [
    [1, "Are the butterfly's wings closer to being open or closed?", "(a) Open (b) Closed", "(a)"],
    [2, "Are the butterfly's wings closer to being open or closed?", "(a) Open (b) Closed", "(b)"],
    [99, "How many tusks?", " (a) Long (b) Short", "(a)"],
    [100, "How many tusks?", " (a) Long (b) Short", "(b)"],
]


@pytest.mark.parametrize("index_column, folder", [("Index", "MMVP Images"), ("lndex", "MMVP_Images")])
def test_mmvp_questions(tmp_path, index_column, folder):
    write_csv(tmp_path / "Questions.csv", [index_column, *MMVP_HEADER[1:]], MMVP_ROWS)
    for index, *_ in MMVP_ROWS:
        write_image(tmp_path / folder / f"{index}.jpg")
    questions = load_mmvp(tmp_path)
    assert [q.index for q in questions] == [1, 2, 99, 100]
    assert questions[1].options == ("Open", "Closed") and questions[1].answer == 1
    assert questions[2].image_path == tmp_path / folder / "99.jpg"
    assert [q.index for q in load_mmvp(tmp_path, drop_known_wrong=True)] == [1, 2]
    with pytest.raises(BenchmarkError, match="found 4 items, the published benchmark has 300"):
        load_mmvp(tmp_path, expected_rows=PUBLISHED_SIZES["MMVP"])


@pytest.mark.parametrize(
    "row, match",
    [
        ([1, "Left or right?", "(a) Left, Right", "(a)"], r"question 1: options '\(a\) Left, Right' are not"),
        ([1, "Left or right?", "(a) Left (b) Right", "(c)"], r"question 1: answer '\(c\)' is not the letter"),
        ([1, "Left or right?", "(a) Left (b) Right"], "data row 1: expected the 4 fields"),
        (["one", "Left or right?", "(a) Left (b) Right", "(a)"], "non-integer Index 'one'"),
        ([7, "Left or right?", "(a) Left (b) Right", "(a)"], "1 of 1 images not found, first '7.jpg'"),
    ],
)
def test_mmvp_malformed_rows_and_missing_images(tmp_path, row, match):
    write_csv(tmp_path / "Questions.csv", MMVP_HEADER, [row])
    write_image(tmp_path / "MMVP Images" / "1.jpg")
    with pytest.raises(BenchmarkError, match=match):
        load_mmvp(tmp_path)


def test_mmvp_missing_files(tmp_path):
    with pytest.raises(BenchmarkError, match="no MMVP image folder .* expected one of MMVP Images, MMVP_Images"):
        load_mmvp(tmp_path)
    (tmp_path / "MMVP Images").mkdir()
    with pytest.raises(BenchmarkError, match="questions file not found: .*Questions.csv"):
        load_mmvp(tmp_path)
    (tmp_path / "Questions.csv").write_text("Index,Question\n1,Left or right?\n")
    with pytest.raises(BenchmarkError, match=r"missing columns \['Options', 'Correct Answer'\]"):
        load_mmvp(tmp_path)


def test_mmvp_statements_pair_up_like_mmvp_vlm(tmp_path):
    rows = [[1, "Unknown", "a dog facing left"], [2, "Unknown", "a dog facing right"]]
    rows += [[279, "Unknown", "elderly person standing"], [280, "Unknown", "elderly person sitting"]]
    write_csv(tmp_path / "Questions-clip.csv", ["Question ID", "Type", "Statement"], rows)
    for qid, *_ in rows:
        write_image(tmp_path / "MMVP Images" / f"{qid}.jpg")
    pairs = load_mmvp_statements(tmp_path)
    assert [p.question_ids for p in pairs] == [(1, 2), (279, 280)]
    assert pairs[0].pattern == "Unknown" and pairs[0].statements == ("a dog facing left", "a dog facing right")
    assert pairs[1].image_paths == (tmp_path / "MMVP Images" / "279.jpg", tmp_path / "MMVP Images" / "280.jpg")
    assert [p.question_ids for p in load_mmvp_statements(tmp_path, drop_known_wrong=True)] == [(1, 2)]
    assert size_report({"MMVP": pairs}) == [{"subset": "MMVP", "found": 4, "published": 300, "matches": False}]


STATEMENT_LOADERS = {
    "MMVP-VLM": (load_mmvp_vlm, "Questions.csv", "MMVP_VLM_Images/Orientation/{}.jpg"),
    "MMVP statements": (load_mmvp_statements, "Questions-clip.csv", "MMVP Images/{}.jpg"),
}


@pytest.mark.parametrize("loader", STATEMENT_LOADERS)
@pytest.mark.parametrize(
    "ids, match",
    [
        ([1, 2, 3], "3 rows; statement pairs need an even number"),
        ([2, 3], r"rows \(2, 3\) do not form a pair"),
        (["x", 2], "non-integer Question ID 'x'"),
    ],
)
def test_statement_pair_errors_are_shared(tmp_path, loader, ids, match):
    load, csv_name, image = STATEMENT_LOADERS[loader]
    write_csv(tmp_path / csv_name, ["Question ID", "Type", "Statement"], [[i, "Orientation", "s"] for i in ids])
    for qid in ids:
        write_image(tmp_path / image.format(qid))
    with pytest.raises(BenchmarkError, match=match):
        load(tmp_path)


@pytest.mark.parametrize("loader", STATEMENT_LOADERS)
def test_statement_csv_malformed_row_and_missing_image(tmp_path, loader):
    load, csv_name, image = STATEMENT_LOADERS[loader]
    write_csv(tmp_path / csv_name, ["Question ID", "Type", "Statement"], [[1, "Orientation"], [2, "Orientation", "s"]])
    write_image(tmp_path / image.format(1))
    with pytest.raises(BenchmarkError, match=f"{csv_name} data row 1: expected the 3 fields"):
        load(tmp_path)
    write_csv(
        tmp_path / csv_name, ["Question ID", "Type", "Statement"], [[1, "Orientation", "s"], [2, "Orientation", "t"]]
    )
    with pytest.raises(BenchmarkError, match=f"{csv_name}: 1 of 2 images not found, first '2.jpg'"):
        load(tmp_path)


def _controlled(tmp_path, image_paths: list[str]):
    """A Controlled-A file under ``tmp_path/bench`` listing ``image_paths``; the file and the benchmark folder."""
    root = tmp_path / "bench"
    entries = [
        {"image_path": path, "caption_options": ["A mug on a plate", "A mug under a plate"]} for path in image_paths
    ]
    root.mkdir(exist_ok=True)
    (root / "controlled_images_dataset.json").write_text(json.dumps(entries))
    return root / "controlled_images_dataset.json", root


@pytest.mark.parametrize("escape", ["../outside/mug_on_plate.jpeg", "images/../../outside/mug_on_plate.jpeg", "ABS"])
def test_controlled_paths_outside_the_benchmark_folder_are_refused(tmp_path, escape):
    write_image(tmp_path / "outside" / "mug_on_plate.jpeg")
    raw = str(tmp_path / "outside" / "mug_on_plate.jpeg") if escape == "ABS" else escape
    path, root = _controlled(tmp_path, [raw])
    with pytest.raises(BenchmarkError) as info:
        load_whatsup_controlled(path)
    message = str(info.value)
    assert "controlled_images_dataset.json item 0" in message and repr(raw) in message
    assert f"leads outside the benchmark's image folder {root}" in message


def test_absolute_paths_inside_the_benchmark_folder_are_read(tmp_path):
    path, root = _controlled(tmp_path, [str(tmp_path / "bench" / "images" / "mug_on_plate.jpeg")])
    write_image(root / "images" / "mug_on_plate.jpeg")
    (item,) = load_whatsup_controlled(path)
    assert item.image_path == root / "images" / "mug_on_plate.jpeg"


def test_relative_paths_are_read_from_the_benchmark_folder_not_the_current_one(tmp_path, monkeypatch):
    path, root = _controlled(tmp_path, ["images/mug_on_plate.jpeg"])
    write_image(root / "images" / "mug_on_plate.jpeg", (10, 200, 10))
    elsewhere = tmp_path / "elsewhere"
    write_image(elsewhere / "images" / "mug_on_plate.jpeg", (200, 10, 10))
    monkeypatch.chdir(elsewhere)
    (item,) = load_whatsup_controlled(path)
    assert item.image_path == root / "images" / "mug_on_plate.jpeg"
    (root / "images" / "mug_on_plate.jpeg").unlink()
    with pytest.raises(BenchmarkError, match="1 of 1 images not found"):
        load_whatsup_controlled(path)  # the same-named file in the current folder is never used


@pytest.mark.parametrize("source, image_id, folder", [("GQA", "../..", "vg_images"), ("COCO", "/../../x", "val2017")])
def test_spatial_image_ids_cannot_leave_the_image_folder(tmp_path, source, image_id, folder):
    path = tmp_path / "data" / "vg_qa_one_obj.json"
    path.parent.mkdir()
    path.write_text(json.dumps([[image_id, "A photo of a car at the bottom", "A photo of a car at the top"]]))
    for bait in (tmp_path / "data" / "...jpg", tmp_path / "data" / "x.jpg"):  # where the ids would lead
        Image.new("RGB", (16, 16)).save(bait, format="JPEG")
    with pytest.raises(
        BenchmarkError, match=rf"vg_qa_one_obj.json item 0: .*outside the benchmark's image folder .*{folder}"
    ):
        load_whatsup_spatial(path, tmp_path / "data", source)


def test_mmvp_types_cannot_leave_the_image_folder(tmp_path):
    root = tmp_path / "a" / "mmvp"
    write_csv(root / "Questions.csv", ["Question ID", "Type", "Statement"], [[1, "../..", "s"], [2, "../..", "t"]])
    (root / "MMVP_VLM_Images").mkdir()
    for qid in (1, 2):
        write_image(tmp_path / "a" / f"{qid}.jpg")  # where the Type would lead
    with pytest.raises(
        BenchmarkError, match=r"Questions.csv question 1: image path '../../1' leads outside .*MMVP_VLM_Images"
    ):
        load_mmvp_vlm(root)


def test_a_deeply_nested_annotation_file_is_one_clear_error(tmp_path):
    path = tmp_path / "controlled_images_dataset.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BenchmarkError, match="controlled_images_dataset.json nests lists or objects too deeply"):
        load_whatsup_controlled(path)


def test_items_listed_twice_are_refused(tmp_path):
    write_whatsup(tmp_path)
    controlled = tmp_path / "data" / "controlled_images_dataset.json"
    entries = json.loads(controlled.read_text())
    controlled.write_text(
        json.dumps([*entries, {**entries[1], "image_path": "data/./" + entries[1]["image_path"][5:]}])
    )
    with pytest.raises(BenchmarkError, match=r"image .*mug_right_of_plate.jpeg is listed twice \(items 1 and 4"):
        load_whatsup(tmp_path)
    spatial = tmp_path / "data" / "coco_qa_two_obj.json"
    spatial.write_text(json.dumps(json.loads(spatial.read_text()) * 2))
    with pytest.raises(BenchmarkError, match=r"coco_qa_two_obj.json: image id and captions \(724, .* listed twice"):
        load_whatsup_spatial(spatial, tmp_path / "data", "COCO")
    write_csv(tmp_path / "Questions.csv", MMVP_HEADER, [MMVP_ROWS[0], MMVP_ROWS[1], MMVP_ROWS[0]])
    write_image(tmp_path / "MMVP Images" / "1.jpg")
    with pytest.raises(BenchmarkError, match=r"Questions.csv: Index 1 is listed twice \(items 0 and 2"):
        load_mmvp(tmp_path)
    rows = [[1, "Spatial", "s"], [2, "Spatial", "t"]] * 2
    write_csv(tmp_path / "mmvp" / "Questions.csv", ["Question ID", "Type", "Statement"], rows)
    write_image(tmp_path / "mmvp" / "MLLM_VLM Images" / "Spatial" / "1.jpg")
    with pytest.raises(BenchmarkError, match=r"Questions.csv: Question ID 1 is listed twice"):
        load_mmvp_vlm(tmp_path / "mmvp")
