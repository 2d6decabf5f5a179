"""Loaders of the paper's other benchmarks on tiny folders in the layouts t2v_metrics' dataset classes read."""

import json

import pytest
from upstream_fixtures import SUGARCREPE_FILES, level_text, write_csv, write_level_image, write_t2v_root

from analysis_lib.data import t2v_benchmarks as tb
from analysis_lib.data.benchmarks import BenchmarkError


@pytest.fixture
def root(tmp_path):
    """A t2v_metrics root with all six benchmarks."""
    write_t2v_root(tmp_path / "datasets")
    return tmp_path / "datasets"


def test_all_six_load_in_eval_order_with_their_shapes_tags_and_labels(root):
    loaded = tb.load_t2v_benchmarks(root)
    assert list(loaded) == ["Winoground", "NaturalBench", "EqBen-mini", "SeeTRUE", "SugarCREPE", "COCO-Counterfactuals"]
    shapes = {name: {(len(i.image_paths), len(i.texts)) for i in items} for name, items in loaded.items()}
    assert shapes == {**{name: {(2, 2)} for name in loaded}, "SeeTRUE": {(1, 1)}, "SugarCREPE": {(1, 2)}}
    assert all(path.is_file() for items in loaded.values() for item in items for path in item.image_paths)
    wino = loaded["Winoground"]
    assert wino[0].image_paths == (root / "winoground/images/ex_0_img_0.png", root / "winoground/images/ex_0_img_1.png")
    assert wino[0].texts == (level_text(10), level_text(30))
    assert wino[0].tags == ("1 Main Pred", "Object", "Visually Difficult")
    assert wino[1].tags == ("2 Main Pred", "Relation", tb.NO_TAG)
    assert [item.tags for item in loaded["EqBen-mini"]] == [("eqbensd",), ("eqbenk",)]
    assert [(item.label, item.tags) for item in loaded["SeeTRUE"]] == [
        (1, ("drawbench",)), (0, ("drawbench",)), (1, ("coco_t2i",)), (0, ("coco_t2i",))
    ]  # fmt: skip
    sugar = loaded["SugarCREPE"]
    assert [item.tags for item in sugar] == [(subset,) for subset in tb.SUGARCREPE_SUBSETS]
    assert sugar[0].image_paths == (root / "val2017" / f"{100:012d}.jpg",)
    assert sugar[0].texts == (level_text(100), level_text(160))  # positive first
    coco = loaded["COCO-Counterfactuals"][1]
    assert coco.image_paths[1] == root / "COCOCounterfactuals/images/COCO_1_1.jpg"  # ".jpg" appended to the id


def test_size_report_against_published_sizes_and_strict_sizes(root):
    loaded = tb.load_t2v_benchmarks(root, names=["Winoground", "SeeTRUE"])
    rows = {row["subset"]: row for row in tb.t2v_size_report(loaded)}
    assert rows["Winoground"] == {"subset": "Winoground", "found": 2, "published": 400, "matches": False}
    assert rows["SeeTRUE"]["published"] is None and rows["SugarCREPE"]["found"] == "missing"
    with pytest.raises(BenchmarkError, match=r"metadata.csv: found 2 items, the published benchmark has 400"):
        tb.load_t2v_benchmarks(root, strict=True)


def test_missing_benchmarks_are_named_and_only_present_loads_the_rest(root):
    (root / "SeeTRUE.csv").unlink()
    (root / "sugar_crepe" / "swap_att.json").unlink()
    with pytest.raises(BenchmarkError, match=r"SeeTRUE: SeeTRUE.csv; SugarCREPE: sugar_crepe/swap_att.json.*only_pr"):
        tb.load_t2v_benchmarks(root)
    assert set(tb.load_t2v_benchmarks(root, only_present=True)) == {
        "Winoground", "NaturalBench", "EqBen-mini", "COCO-Counterfactuals"
    }  # fmt: skip
    with pytest.raises(BenchmarkError, match="benchmark files missing"):
        tb.load_t2v_benchmarks(root.parent / "nowhere", only_present=True)
    with pytest.raises(ValueError, match="unknown benchmarks"):
        tb.load_t2v_benchmarks(root, names=["Winogrand"])


def test_sugarcrepe_images_from_another_coco_folder(root, tmp_path):
    (root / "val2017").rename(tmp_path / "coco_val")
    with pytest.raises(BenchmarkError, match=r"7 of 7 images not found, first '000000000100.jpg'"):
        tb.load_sugarcrepe(root)
    assert len(tb.load_sugarcrepe(root, image_root=tmp_path / "coco_val")) == len(SUGARCREPE_FILES)
    loaded = tb.load_t2v_benchmarks(root, names=["SugarCREPE"], coco_images=tmp_path / "coco_val")
    assert loaded["SugarCREPE"][0].image_paths == (tmp_path / "coco_val" / f"{100:012d}.jpg",)


def test_a_winoground_folder_can_be_passed_directly(root):
    assert len(tb.load_winoground(root / "winoground")) == 2


def _rewrite_json(path, change):
    """Load ``path``, apply ``change`` and write it back."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


WINO_COLUMNS = ["id", "image_0", "image_1", "caption_0", "caption_1"]
SEETRUE_COLUMNS = ["image", "text", "label", "dataset_source"]


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda r: write_csv(r / "winoground/metadata.csv", WINO_COLUMNS[:4], [[0, "a", "b", "c"]]),
         r"metadata.csv: missing columns \['caption_1'\]"),
        (lambda r: write_csv(r / "winoground/metadata.csv", WINO_COLUMNS,
                             [[1, "images/ex_0_img_0.png", "images/ex_0_img_1.png", "a", "b"]]),
         r"row 0 has id '1'; ids must run 0, 1, 2"),
        (lambda r: write_csv(r / "winoground/metadata.csv", WINO_COLUMNS,
                             [[0, "../../secret.png", "images/ex_0_img_1.png", "a", "b"]]),
         r"item 0: image path '../../secret.png' leads outside the benchmark's image folder"),
        (lambda r: (r / "winoground/images/ex_1_img_1.png").unlink(),
         r"1 of 4 images not found, first 'ex_1_img_1.png'"),
        (lambda r: (r / "winoground/examples.jsonl").write_text('{"id": 0, "num_main_preds": 3}\n'),
         r"examples.jsonl line 1: needs an 'id' of one of the 2 items and 'num_main_preds' 1 or 2"),
        (lambda r: (r / "winoground/why_winoground_hard.json").write_text('["x"]'),
         r"why_winoground_hard.json: expected a JSON object of items, found list"),
        (lambda r: _rewrite_json(r / "NaturalBench-Retrieval/metadata.json", lambda d: d[1].update(index=5)),
         r"metadata.json item 1: 'index' must equal its position \(1\)"),
        (lambda r: (r / "NaturalBench-Retrieval/metadata.json").write_text('{"0": {}}'),
         r"expected a JSON list of items, found dict"),
        (lambda r: _rewrite_json(r / "eqben_vllm/all_select.json", lambda d: d[0].pop("caption1")),
         r"all_select.json item 0: needs text fields 'image0', 'image1', 'caption0', 'caption1'; .*\['caption1'\]"),
        (lambda r: write_csv(r / "SeeTRUE.csv", SEETRUE_COLUMNS, [["s0.jpg", "t", "yes", "d"]]),
         r"SeeTRUE.csv data row 1: label 'yes' is not 0 or 1"),
        (lambda r: (r / "sugar_crepe/add_att.json").write_text('{"0": {"filename": "x.jpg", "caption": "c"}}'),
         r"add_att.json item 0: needs text fields .*\['negative_caption'\]"),
        (lambda r: (r / "cococounterfactuals.jsonl").write_text('{"image_0": "a"\n'),
         r"cococounterfactuals.jsonl line 1 is not one JSON value"),
        (lambda r: (r / "cococounterfactuals.jsonl").write_text("\n\n"), r"cococounterfactuals.jsonl lists no items"),
    ],
)  # fmt: skip
def test_malformed_files_get_one_clear_error(root, break_it, message):
    break_it(root)
    with pytest.raises(BenchmarkError, match=message):
        tb.load_t2v_benchmarks(root)


def test_an_image_name_with_a_new_level_loads(root):
    """Items may share or add images anywhere inside the root (SeeTRUE lists several texts per image)."""
    write_level_image(root / "seetrue/images/sub/s9.jpg", 99)
    write_csv(root / "SeeTRUE.csv", SEETRUE_COLUMNS, [["sub/s9.jpg", "t", "1.0", "d"], ["sub/s9.jpg", "u", "0", "d"]])
    items = tb.load_seetrue(root)
    assert [(i.image_paths[0].name, i.label) for i in items] == [("s9.jpg", 1), ("s9.jpg", 0)]
