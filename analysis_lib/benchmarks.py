"""Loaders for the benchmarks in their upstream formats: What'sUp Controlled JSON and MMVP-VLM.

The same loaders read the real benchmarks and the toy world's exports, so one code path scores both.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

MMVP_IMAGE_FOLDERS = ("MLLM_VLM Images", "MMVP_VLM_Images", "MLLM_VLM_Images")
MMVP_PATTERNS = (
    "Orientation",
    "Presence",
    "State",
    "Quantity",
    "Spatial",
    "Color",
    "Structural Character",
    "Text",
    "Camera Perspective",
)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_FILE_NAME = re.compile(
    r"^(?P<obj1>.+?)_(?P<rel>left_of|right_of|in-front_of|behind|on|under|above|below)_(?P<obj2>.+)$"
)


class BenchmarkError(ValueError):
    """A benchmark file is missing, unreadable or not in the expected format."""


@dataclass(frozen=True)
class WhatsUpItem:
    """One What'sUp image with its caption options (gold first), parsed from ``{obj1}_{rel}_{obj2}``."""

    image_path: Path
    caption_options: tuple[str, ...]
    obj1: str
    relation: str
    obj2: str

    @property
    def obj_pair(self) -> tuple[str, str]:
        """The object pair shared by the item's group of images."""
        return self.obj1, self.obj2


@dataclass(frozen=True)
class MMVPPair:
    """Two MMVP-VLM images and their two statements; statement j is true of image j."""

    pattern: str
    question_ids: tuple[int, int]
    image_paths: tuple[Path, Path]
    statements: tuple[str, str]


def load_image(path: Path) -> Image.Image:
    """An RGB image, or one clear error naming the file."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise BenchmarkError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise BenchmarkError(f"image {path} cannot be read ({err}); re-download or re-export it") from None


def _resolve_image(raw: str, json_dir: Path, image_root: Path | None) -> Path:
    """Find an annotation's image: as given, under ``image_root``, or beside the JSON file."""
    given = Path(raw)
    roots = [r for r in (image_root, json_dir) if r is not None]
    candidates = [given] + [r / given for r in roots] + [r / given.name for r in roots]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise BenchmarkError(
        f"image {raw!r} not found (looked in {', '.join(str(c) for c in candidates)}); "
        "pass image_root= the folder the JSON's image paths are relative to"
    )


def _read_json_list(path: Path) -> list:
    """A JSON file whose top level is a list, or a clear error."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise BenchmarkError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, list):
        raise BenchmarkError(f"{path}: expected a JSON list of items, found {type(data).__name__}")
    return data


def load_whatsup_controlled(
    json_path: Path, image_root: Path | None = None, expected_size: int | None = None
) -> list[WhatsUpItem]:
    """What'sUp Controlled-A/-B items: ``{"image_path", "caption_options"}`` with the gold caption first."""
    json_path = Path(json_path)
    items = []
    for index, entry in enumerate(_read_json_list(json_path)):
        if not isinstance(entry, dict) or not {"image_path", "caption_options"} <= entry.keys():
            raise BenchmarkError(f"{json_path} item {index}: needs keys 'image_path' and 'caption_options'")
        options = entry["caption_options"]
        if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
            raise BenchmarkError(f"{json_path} item {index}: 'caption_options' must list at least 2 captions")
        match = _FILE_NAME.match(Path(entry["image_path"]).stem)
        if match is None:
            raise BenchmarkError(
                f"{json_path} item {index}: file name {entry['image_path']!r} is not '{{obj1}}_{{rel}}_{{obj2}}'"
            )
        path = _resolve_image(entry["image_path"], json_path.parent, image_root)
        items.append(WhatsUpItem(path, tuple(options), match["obj1"], match["rel"], match["obj2"]))
    _check_size(json_path, len(items), expected_size)
    return items


def _check_size(source: Path, found: int, expected: int | None) -> None:
    """Raise if a benchmark does not have its published size."""
    if expected is not None and found != expected:
        raise BenchmarkError(f"{source}: found {found} items, the published benchmark has {expected}")


def mmvp_image_folder(root: Path) -> Path:
    """The MMVP-VLM image folder under ``root``, whichever of its three spellings this copy uses."""
    for name in MMVP_IMAGE_FOLDERS:
        if (Path(root) / name).is_dir():
            return Path(root) / name
    raise BenchmarkError(f"no MMVP-VLM image folder in {root}; expected one of {', '.join(MMVP_IMAGE_FOLDERS)}")


def _mmvp_image(folder: Path, pattern: str, qid: int) -> Path:
    """``<folder>/<Type>/<qid>.jpg`` (or .jpeg/.png)."""
    for ext in IMAGE_EXTENSIONS:
        path = folder / pattern / f"{qid}{ext}"
        if path.is_file():
            return path
    raise BenchmarkError(f"image for question {qid} not found: {folder / pattern / f'{qid}.jpg'}")


def load_mmvp_vlm(root: Path, expected_rows: int | None = None) -> list[MMVPPair]:
    """MMVP-VLM pairs from ``Questions.csv`` (``Question ID,Type,Statement``); rows 2k-1 and 2k pair up."""
    root = Path(root)
    csv_path = root / "Questions.csv"
    if not csv_path.is_file():
        raise BenchmarkError(f"MMVP-VLM questions not found: {csv_path}")
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"Question ID", "Type", "Statement"} - set(rows[0] if rows else {})
    if missing:
        raise BenchmarkError(f"{csv_path}: missing columns {sorted(missing)} (need Question ID,Type,Statement)")
    _check_size(csv_path, len(rows), expected_rows)
    if len(rows) % 2:
        raise BenchmarkError(f"{csv_path}: {len(rows)} rows; MMVP-VLM pairs need an even number")
    folder = mmvp_image_folder(root)
    pairs = []
    for first, second in zip(rows[::2], rows[1::2]):
        try:
            ids = (int(first["Question ID"]), int(second["Question ID"]))
        except ValueError:
            raise BenchmarkError(f"{csv_path}: non-integer Question ID near {first['Question ID']!r}") from None
        if ids[1] != ids[0] + 1 or ids[0] % 2 != 1 or first["Type"] != second["Type"]:
            raise BenchmarkError(f"{csv_path}: rows {ids} do not form a pair (odd id, next id, same Type)")
        paths = tuple(_mmvp_image(folder, first["Type"], qid) for qid in ids)
        pairs.append(MMVPPair(first["Type"], ids, paths, (first["Statement"], second["Statement"])))
    return pairs
