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
