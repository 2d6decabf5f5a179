"""Tiny benchmark folders in the exact upstream formats (REFERENCE.md §2) and photograph-like images, shared by
the tests."""

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image


def photo_like(width: int, height: int, seed: int = 0) -> np.ndarray:
    """An ``height x width x 3`` uint8 array that looks like a photograph: gradients plus noise."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([xs / width, ys / height, (xs + ys) / (width + height)], axis=-1) * 200
    return np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)


def write_image(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> None:
    """A small JPEG/PNG at ``path`` (16x16, the smallest usable image)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path)


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    """A CSV file as upstream writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])


PHRASES = {
    "left_of": "to the left of",
    "right_of": "to the right of",
    "on": "on",
    "under": "under",
    "in-front_of": "in front of",
    "behind": "behind",
}
CONTROLLED = {
    "controlled_images_dataset.json": ("controlled_images", ("left_of", "right_of", "on", "under")),
    "controlled_clevr_dataset.json": ("controlled_clevr", ("left_of", "right_of", "in-front_of", "behind")),
}
# [image_id, correct, wrong] rows in the captions' upstream phrasing; the second COCO-one caption states no relation.
SPATIAL = {
    "coco_qa_one_obj.json": [
        [139, "A photo of a dog on the left", "A photo of a dog on the right"],
        [632, "A dog", "x"],
    ],
    "coco_qa_two_obj.json": [[724, "A photo of a cup above a bowl", "A photo of a cup below a bowl"]],
    "vg_qa_one_obj.json": [[2354786, "A photo of a car at the bottom", "A photo of a car at the top"]],
    "vg_qa_two_obj.json": [
        ["2368312", "A photo of a car to the behind of a tree", "A photo of a car in front of a tree"]
    ],
}


def write_whatsup(root: Path) -> None:
    """A tiny What'sUp checkout laid out as upstream: ``data/*.json`` and the image folders under ``data/``."""
    data = root / "data"
    for file, (folder, relations) in CONTROLLED.items():
        entries = []
        for rel in relations:
            write_image(root / "data" / folder / f"mug_{rel}_plate.jpeg")
            captions = [f"A mug {PHRASES[r]} a plate" for r in (rel, *(r for r in relations if r != rel))]
            entries.append({"image_path": f"data/{folder}/mug_{rel}_plate.jpeg", "caption_options": captions})
        (data / file).write_text(json.dumps(entries))
    for file, rows in SPATIAL.items():
        (data / file).write_text(json.dumps(rows))
        template = "val2017/{:0>12}.jpg" if file.startswith("coco") else "vg_images/{}.jpg"
        for image_id, *_ in rows:
            write_image(data / template.format(image_id))


def add_whatsup_pair(root: Path, obj1: str, obj2: str, seed: int) -> None:
    """Another object pair photographed in every relation of each Controlled subset of a ``write_whatsup`` checkout
    (photograph-like images drawn with ``seed``)."""
    for file, (folder, relations) in CONTROLLED.items():
        path = root / "data" / file
        entries = json.loads(path.read_text())
        for k, rel in enumerate(relations):
            image = root / "data" / folder / f"{obj1}_{rel}_{obj2}.jpeg"
            Image.fromarray(photo_like(24, 16, seed + k)).save(image)
            captions = [f"A {obj1} {PHRASES[r]} a {obj2}" for r in (rel, *(r for r in relations if r != rel))]
            entries.append({"image_path": f"data/{folder}/{image.name}", "caption_options": captions})
        path.write_text(json.dumps(entries))


def write_mmvp_vlm(root: Path, patterns: tuple[str, ...] = ("Orientation", "Spatial")) -> None:
    """An MMVP-VLM folder: ``Questions.csv`` with one pair per pattern and ``MLLM_VLM Images/<Type>/<qid>.jpg``."""
    rows = []
    for k, pattern in enumerate(patterns):
        for j, side in enumerate(("left", "right")):
            qid = 2 * k + 1 + j
            rows.append([qid, pattern, f"The mug is on the {side} of the plate"])
            write_image(root / "MLLM_VLM Images" / pattern / f"{qid}.jpg", (40 * qid, 90, 30))
    write_csv(root / "Questions.csv", ["Question ID", "Type", "Statement"], rows)


def write_mmvp_statements(root: Path) -> None:
    """An MMVP folder with the paper's converted statements: ``Questions-clip.csv`` and ``MMVP Images/<id>.jpg``."""
    rows = [[1, "Unknown", "The dog is facing left"], [2, "Unknown", "The dog is facing right"]]
    for qid, *_ in rows:
        write_image(root / "MMVP Images" / f"{qid}.jpg", (60 * qid, 20, 90))
    write_csv(root / "Questions-clip.csv", ["Question ID", "Type", "Statement"], rows)


def level_text(level: int) -> str:
    """A caption naming a red level: ``FakeLevelScorer`` scores it highest for an image of that red level."""
    return f"a thing of level {level}"


def write_level_image(path: Path, level: int) -> None:
    """A 16x16 image whose red channel is ``level``."""
    write_image(path, (level, 0, 0))


def _pair_rows(count: int, start: int) -> list[tuple[int, int]]:
    """``count`` pairs of distinct red levels."""
    return [(start + 40 * k, start + 40 * k + 20) for k in range(count)]


def write_t2v_root(root: Path) -> None:
    """A tiny t2v_metrics ``--root_dir`` with the six benchmarks in the layouts its dataset classes read, every
    caption naming its image's red level (``level_text``)."""
    wino = root / "winoground"
    rows = []
    for i, (a, b) in enumerate(_pair_rows(2, 10)):
        names = [f"images/ex_{i}_img_{j}.png" for j in (0, 1)]
        for name, level in zip(names, (a, b)):
            write_level_image(wino / name, level)
        rows.append([i, *names, level_text(a), level_text(b)])
    write_csv(wino / "metadata.csv", ["id", "image_0", "image_1", "caption_0", "caption_1"], rows)
    examples = [{"id": 0, "num_main_preds": 1, "collapsed_tag": "Object"},
                {"id": 1, "num_main_preds": 2, "collapsed_tag": "Relation"}]  # fmt: skip
    (wino / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    (wino / "why_winoground_hard.json").write_text(json.dumps({"0": ["Visually Difficult"], "1": []}))

    natural = root / "NaturalBench-Retrieval"
    entries = []
    for i, (a, b) in enumerate(_pair_rows(2, 15)):
        for j, level in enumerate((a, b)):
            write_level_image(natural / "images" / f"{i}_{j}.jpg", level)
        entries.append({"index": i, "image_0": f"{i}_0.jpg", "image_1": f"{i}_1.jpg",
                        "caption_0": level_text(a), "caption_1": level_text(b)})  # fmt: skip
    (natural / "metadata.json").write_text(json.dumps(entries))

    eqben = root / "eqben_vllm"
    entries = []
    for folder, (a, b) in zip(("eqbensd", "eqbenkubric_cnt"), _pair_rows(2, 20)):
        names = [f"{folder}/{level}.png" for level in (a, b)]
        for name, level in zip(names, (a, b)):
            write_level_image(eqben / "images" / name, level)
        entries.append({"image0": names[0], "image1": names[1], "caption0": level_text(a), "caption1": level_text(b)})
    (eqben / "all_select.json").write_text(json.dumps(entries))

    seetrue = [["s0.jpg", level_text(30), 1, "drawbench"], ["s1.jpg", level_text(90), 0, "drawbench"],
               ["s2.jpg", level_text(50), 1, "coco_t2i"], ["s3.jpg", level_text(70), 0, "coco_t2i"]]  # fmt: skip
    for (name, _, _, _), level in zip(seetrue, (30, 40, 50, 60)):
        write_level_image(root / "seetrue" / "images" / name, level)
    write_csv(root / "SeeTRUE.csv", ["image", "text", "label", "dataset_source", "original_dataset_id"],
              [[*row, f"id{k}"] for k, row in enumerate(seetrue)])  # fmt: skip

    for k, subset in enumerate(SUGARCREPE_FILES):
        level = 100 + 10 * k
        name = f"{level:012d}.jpg"
        write_level_image(root / "val2017" / name, level)
        entry = {"filename": name, "caption": level_text(level), "negative_caption": level_text(level + 60)}
        (root / "sugar_crepe").mkdir(exist_ok=True)
        (root / "sugar_crepe" / f"{subset}.json").write_text(json.dumps({str(k): entry}))

    lines = []
    for i, (a, b) in enumerate(_pair_rows(2, 25)):
        ids = [f"COCO_{i}_{j}" for j in (0, 1)]
        for image_id, level in zip(ids, (a, b)):
            write_level_image(root / "COCOCounterfactuals" / "images" / f"{image_id}.jpg", level)
        lines.append({"id": f"{i}", "image_0": ids[0], "image_1": ids[1], "caption_0": level_text(a),
                      "caption_1": level_text(b)})  # fmt: skip
    (root / "cococounterfactuals.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


SUGARCREPE_FILES = ("add_obj", "add_att", "replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att")
