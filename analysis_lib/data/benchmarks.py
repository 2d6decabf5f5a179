"""Loaders for the benchmarks in their upstream formats: What'sUp (Controlled-A/B, COCO- and GQA-spatial), MMVP-VLM,
MMVP (MLLM questions) and the paper's CLIP statements for MMVP.

The same loaders read the real benchmarks and the toy world's exports, so one code path scores both. Loaders return
image paths (each checked to exist), not pixels: ``load_image`` (from ``analysis_lib.core.images``) reads one,
``images.verify_images`` checks many up front. Every image path a benchmark's files name is resolved inside that
benchmark's image folder (``inside_root``), never against the current directory, and a path that leads outside it
(``..``, an absolute path elsewhere) is refused; an item listed twice is refused too.
"""

from __future__ import annotations

import csv
import json
import os
import re
import string
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from analysis_lib.core.images import load_image as load_image  # re-exported: callers read loaded paths with it
from analysis_lib.stats.metrics import caption_relation

# Published sizes: images (What'sUp), statement rows (MMVP-VLM: 135 pairs), questions (MMVP; also its 300 statements).
PUBLISHED_SIZES = {
    "Controlled-A": 412,
    "Controlled-B": 408,
    "COCO-one": 2247,
    "COCO-two": 440,
    "GQA-one": 1160,
    "GQA-two": 291,
    "MMVP-VLM": 270,
    "MMVP": 300,
}
WHATSUP_FILES = {
    "Controlled-A": "controlled_images_dataset.json",
    "Controlled-B": "controlled_clevr_dataset.json",
    "COCO-one": "coco_qa_one_obj.json",
    "COCO-two": "coco_qa_two_obj.json",
    "GQA-one": "vg_qa_one_obj.json",
    "GQA-two": "vg_qa_two_obj.json",
}
SPATIAL_IMAGES = {"COCO": ("val2017", "{:0>12}.jpg"), "GQA": ("vg_images", "{}.jpg")}  # image folder, file name
MMVP_IMAGE_FOLDERS = ("MLLM_VLM Images", "MMVP_VLM_Images", "MLLM_VLM_Images")
MMVP_QUESTION_IMAGE_FOLDERS = ("MMVP Images", "MMVP_Images")
# MMVP questions whose labels are reported wrong upstream (one public fork corrects 99 and 279).
MMVP_KNOWN_WRONG = frozenset({99, 100, 279, 280})
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
_OPTION_LETTER = re.compile(r"\(([a-z])\)", re.IGNORECASE)
_COLUMN_ALIASES = {"lndex": "Index"}  # some MMVP copies spell the first column "lndex"


class BenchmarkError(ValueError):
    """A benchmark file is missing, unreadable or not in the expected format."""


@dataclass(frozen=True)
class WhatsUpItem:
    """One What'sUp image and its caption options, gold first. Controlled items parse ``{obj1}_{rel}_{obj2}`` file
    names; COCO/GQA items have no object pair ("") and the gold caption's relation (or "unknown")."""

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


@dataclass(frozen=True)
class MMVPQuestion:
    """One MMVP (MLLM) question: its image, the options in letter order and the index of the gold option."""

    index: int
    image_path: Path
    question: str
    options: tuple[str, ...]
    answer: int


def inside_root(root: Path, relative: str | Path, source: Path, entry: str) -> Path:
    """``root / relative`` with ``.`` and ``..`` resolved (symbolic links kept), or one ``BenchmarkError`` naming
    ``source``, ``entry`` and ``root`` when it leads outside ``root``."""
    base = Path(os.path.abspath(root))
    target = Path(os.path.normpath(base / relative))
    if not target.is_relative_to(base):
        raise BenchmarkError(
            f"{source} {entry}: image path {str(relative)!r} leads outside the benchmark's image folder {root}; "
            "a benchmark file may only name images inside that folder (fix or re-download the file)"
        )
    return Path(root) / target.relative_to(base)


def _refuse_duplicates(keys: Sequence[Hashable], source: Path, what: str) -> None:
    """One ``BenchmarkError`` naming the first ``what`` that ``source`` lists twice and both positions."""
    first: dict[Hashable, int] = {}
    for position, key in enumerate(keys):
        if key in first:
            raise BenchmarkError(
                f"{source}: {what} {key} is listed twice (items {first[key]} and {position}, counting from 0); "
                "every item must be listed once: remove the duplicate or re-download the file"
            )
        first[key] = position


def _first_file(candidates: Iterable[Path]) -> Path | None:
    """The first candidate that is a file."""
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def _with_extensions(stem: Path) -> list[Path]:
    """``stem`` with each accepted image extension, ``.jpg`` first."""
    return [stem.parent / f"{stem.name}{ext}" for ext in IMAGE_EXTENSIONS]


def _found_images(candidates: Sequence[Sequence[Path]], source: Path, hint: str) -> list[Path]:
    """Each image's first existing candidate, or one error counting the missing images and naming the first."""
    found = [_first_file(options) for options in candidates]
    missing = [options for options, path in zip(candidates, found) if path is None]
    if missing:
        looked = ", ".join(str(path) for path in missing[0])
        raise BenchmarkError(
            f"{source}: {len(missing)} of {len(found)} images not found, first {missing[0][0].name!r} "
            f"(looked for {looked}); {hint}"
        )
    return found


def _check_size(source: Path | str, found: int, expected: int | None) -> None:
    """Raise if a benchmark does not have its published size."""
    if expected is not None and found != expected:
        raise BenchmarkError(f"{source}: found {found} items, the published benchmark has {expected}")


def _read_json_list(path: Path) -> list:
    """A JSON file whose top level is a list, or a clear error."""
    return read_json(path, list)


def read_json(path: Path, kind: type[list] | type[dict]) -> list | dict:
    """A JSON file whose top level is a non-empty ``kind`` (list or object), or one clear ``BenchmarkError``."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BenchmarkError(f"{path} is not valid JSON: {err}; re-download it") from None
    except RecursionError:
        raise BenchmarkError(
            f"{path} nests lists or objects too deeply to be an annotation file; re-download it"
        ) from None
    if not isinstance(data, kind):
        expected = "list of items" if kind is list else "object of items"
        raise BenchmarkError(f"{path}: expected a JSON {expected}, found {type(data).__name__}")
    if not data:
        raise BenchmarkError(f"{path} lists no items; re-download it")
    return data


def _controlled_entry(entry: object, json_path: Path, index: int) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """One Controlled item checked: its image path, caption options and ``(obj1, rel, obj2)``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("image_path"), str) or "caption_options" not in entry:
        raise BenchmarkError(f"{json_path} item {index}: needs keys 'image_path' and 'caption_options'")
    options = entry["caption_options"]
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
        raise BenchmarkError(f"{json_path} item {index}: 'caption_options' must list at least 2 captions")
    match = _FILE_NAME.match(Path(entry["image_path"]).stem)
    if match is None:
        raise BenchmarkError(
            f"{json_path} item {index}: file name {entry['image_path']!r} is not '{{obj1}}_{{rel}}_{{obj2}}'"
        )
    return entry["image_path"], tuple(options), match.groups()


def _controlled_candidates(raw: str, root: Path, source: Path, entry: str) -> list[Path]:
    """Where a Controlled image may be, all inside ``root``: as given, in a folder named as its own, or at the top."""
    given = inside_root(root, raw, source, entry)
    relative = given.relative_to(root)
    return list(dict.fromkeys([given, root / relative.parent.name / relative.name, root / relative.name]))


def load_whatsup_controlled(
    json_path: Path, image_root: Path | None = None, expected_size: int | None = None
) -> list[WhatsUpItem]:
    """What'sUp Controlled-A/-B items: ``{"image_path", "caption_options"}`` with the gold caption first; image paths
    are relative to ``image_root`` (by default the JSON's folder) and must stay inside it."""
    json_path = Path(json_path)
    root = Path(image_root) if image_root is not None else json_path.parent
    entries = [_controlled_entry(entry, json_path, i) for i, entry in enumerate(_read_json_list(json_path))]
    _check_size(json_path, len(entries), expected_size)
    candidates = [_controlled_candidates(raw, root, json_path, f"item {i}") for i, (raw, _, _) in enumerate(entries)]
    paths = _found_images(candidates, json_path, "pass image_root= the folder the JSON's image paths are relative to")
    _refuse_duplicates(paths, json_path, "image")
    return [WhatsUpItem(path, options, *parts) for path, (_, options, parts) in zip(paths, entries)]


def _spatial_row(entry: object, json_path: Path, index: int) -> tuple[int | str, str, str]:
    """One ``[image_id, correct_caption, wrong_caption]`` row checked."""
    if not (
        isinstance(entry, list)
        and len(entry) == 3
        and isinstance(entry[0], int | str)
        and all(isinstance(caption, str) for caption in entry[1:])
    ):
        raise BenchmarkError(
            f"{json_path} item {index}: expected [image_id, correct_caption, wrong_caption], found {str(entry)[:80]}"
        )
    return entry[0], entry[1], entry[2]


def _relation_or_unknown(caption: str) -> str:
    """The caption's relation, or ``"unknown"`` when it states none or several."""
    try:
        return caption_relation(caption)
    except ValueError:
        return "unknown"


def load_whatsup_spatial(
    json_path: Path, image_root: Path, source: str, expected_size: int | None = None
) -> list[WhatsUpItem]:
    """COCO- or GQA-spatial items (``source`` a key of ``SPATIAL_IMAGES``) from ``[image_id, correct, wrong]`` rows;
    each image inside ``image_root``'s image folder for ``source``."""
    json_path, (folder, name) = Path(json_path), SPATIAL_IMAGES[source]
    rows = [_spatial_row(entry, json_path, i) for i, entry in enumerate(_read_json_list(json_path))]
    _check_size(json_path, len(rows), expected_size)
    _refuse_duplicates(rows, json_path, "image id and captions")
    images = Path(image_root) / folder
    candidates = [[inside_root(images, name.format(row[0]), json_path, f"item {i}")] for i, row in enumerate(rows)]
    hint = f"pass image_root= the folder that holds {folder}/ with the {source} images"
    paths = _found_images(candidates, json_path, hint)
    return [
        WhatsUpItem(path, (correct, wrong), "", _relation_or_unknown(correct), "")
        for path, (_, correct, wrong) in zip(paths, rows)
    ]


def _load_whatsup_subset(name: str, data: Path, strict: bool) -> list[WhatsUpItem]:
    """One subset of an upstream ``data`` folder (Controlled image paths are relative to its parent)."""
    path, expected = data / WHATSUP_FILES[name], PUBLISHED_SIZES[name] if strict else None
    if name.startswith("Controlled"):
        return load_whatsup_controlled(path, data.parent, expected)
    return load_whatsup_spatial(path, data, name.split("-")[0], expected)


def load_whatsup(root: Path, only_present: bool = False, strict: bool = False) -> dict[str, list[WhatsUpItem]]:
    """What'sUp subsets by name from an upstream checkout (``root/data/*.json``, or ``root`` is that folder): all six,
    or with ``only_present`` those whose JSON exists; ``strict`` requires the published sizes."""
    root = Path(root)
    data = root / "data" if (root / "data").is_dir() else root
    present = [name for name, file in WHATSUP_FILES.items() if (data / file).is_file()]
    missing = [file for name, file in WHATSUP_FILES.items() if name not in present]
    if not present or (missing and not only_present):
        raise BenchmarkError(
            f"{data}: What'sUp annotation files missing: {', '.join(missing)}; download them "
            "(github.com/amitakamath/whatsup_vlms)" + ("" if only_present else " or pass only_present=True")
        )
    return {name: _load_whatsup_subset(name, data, strict) for name in present}


def size_report(
    loaded: Mapping[str, Sequence],
    expected: Iterable[str] = (),
    published_sizes: Mapping[str, int | None] = PUBLISHED_SIZES,
) -> list[dict]:
    """Per subset: items found vs ``published_sizes`` (MMVP pairs count as their statement rows, as published);
    each ``expected`` subset that was not loaded is a row whose ``found`` is "missing"."""
    report = []
    for name in dict.fromkeys([*expected, *loaded]):
        items = loaded.get(name)
        found = "missing" if items is None else sum(len(i.statements) if isinstance(i, MMVPPair) else 1 for i in items)
        published = published_sizes.get(name)
        report.append({"subset": name, "found": found, "published": published, "matches": found == published})
    return report


def _read_csv(path: Path, columns: Sequence[str], what: str = "questions file") -> list[dict[str, str]]:
    """The rows of a CSV that has ``columns``, or one clear error naming the file (``what`` it is, if missing)."""
    if not path.is_file():
        raise BenchmarkError(f"{what} not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            reader.fieldnames = [_COLUMN_ALIASES.get(name.strip(), name.strip()) for name in reader.fieldnames or []]
            missing = [column for column in columns if column not in reader.fieldnames]
            if missing:
                raise BenchmarkError(f"{path}: missing columns {missing} (need {','.join(columns)})")
            rows = list(reader)
    except (csv.Error, UnicodeDecodeError) as err:
        raise BenchmarkError(f"{path} is not a readable CSV file ({err}); re-download it") from None
    if not rows:
        raise BenchmarkError(f"{path} has no rows below its header; re-download it")
    for number, row in enumerate(rows, start=1):
        if None in row or None in row.values():
            raise BenchmarkError(
                f"{path} data row {number}: expected the {len(reader.fieldnames)} fields of the header"
            )
    return rows


def _integer(text: str, path: Path, column: str) -> int:
    """An integer id from a CSV field, or a clear error."""
    try:
        return int(text)
    except ValueError:
        raise BenchmarkError(f"{path}: non-integer {column} {text!r}") from None


def mmvp_image_folder(root: Path, names: Sequence[str] = MMVP_IMAGE_FOLDERS) -> Path:
    """The image folder under ``root``, whichever of its spellings (``names``) this copy uses."""
    for name in names:
        if (Path(root) / name).is_dir():
            return Path(root) / name
    raise BenchmarkError(f"no MMVP image folder in {root}; expected one of {', '.join(names)}")


def _image_stems(folder: Path, names: Iterable[tuple[int, str]], source: Path) -> list[list[Path]]:
    """Per ``(question id, image name)``: the image's candidates (each accepted extension) inside ``folder``."""
    return [_with_extensions(inside_root(folder, name, source, f"question {qid}")) for qid, name in names]


def _statement_pairs(
    csv_path: Path, folder: Path, image_name: Callable[[str, int], str], expected_rows: int | None
) -> list[MMVPPair]:
    """Pairs from ``Question ID,Type,Statement`` rows 2k-1 and 2k; image of a row at ``folder / image_name(Type, id)``
    + extension."""
    rows = _read_csv(csv_path, ("Question ID", "Type", "Statement"))
    _check_size(csv_path, len(rows), expected_rows)
    if len(rows) % 2:
        raise BenchmarkError(f"{csv_path}: {len(rows)} rows; statement pairs need an even number")
    ids = [_integer(row["Question ID"], csv_path, "Question ID") for row in rows]
    _refuse_duplicates(ids, csv_path, "Question ID")
    pairs = []
    for first, second, pair_ids in zip(rows[::2], rows[1::2], zip(ids[::2], ids[1::2])):
        if pair_ids[1] != pair_ids[0] + 1 or pair_ids[0] % 2 != 1 or first["Type"] != second["Type"]:
            raise BenchmarkError(f"{csv_path}: rows {pair_ids} do not form a pair (odd id, next id, same Type)")
        pairs.append((first["Type"], pair_ids, (first["Statement"], second["Statement"])))
    names = [(qid, image_name(kind, qid)) for kind, pair_ids, _ in pairs for qid in pair_ids]
    candidates = _image_stems(folder, names, csv_path)
    paths = _found_images(candidates, csv_path, "the image folder is incomplete; re-download the benchmark")
    return [MMVPPair(kind, ids, (paths[2 * i], paths[2 * i + 1]), texts) for i, (kind, ids, texts) in enumerate(pairs)]


def load_mmvp_vlm(root: Path, expected_rows: int | None = None) -> list[MMVPPair]:
    """MMVP-VLM pairs from ``Questions.csv`` (``Question ID,Type,Statement``) and ``<image folder>/<Type>/<id>.jpg``."""
    folder = mmvp_image_folder(root)
    return _statement_pairs(Path(root) / "Questions.csv", folder, lambda kind, qid: f"{kind}/{qid}", expected_rows)


def load_mmvp_statements(
    root: Path, file_name: str = "Questions-clip.csv", expected_rows: int | None = None, drop_known_wrong: bool = False
) -> list[MMVPPair]:
    """The paper's CLIP statements for MMVP (``Question ID,Type,Statement``, 300 rows, kept in the MMVP folder),
    paired and scored like MMVP-VLM, images ``MMVP Images/<id>.jpg``; ``drop_known_wrong``: see ``MMVP_KNOWN_WRONG``."""
    folder = mmvp_image_folder(root, MMVP_QUESTION_IMAGE_FOLDERS)
    pairs = _statement_pairs(Path(root) / file_name, folder, lambda _, qid: str(qid), expected_rows)
    return [pair for pair in pairs if not (drop_known_wrong and MMVP_KNOWN_WRONG & set(pair.question_ids))]


def _parse_options(text: str) -> tuple[str, ...]:
    """``(a) Left (b) Right`` -> ``("Left", "Right")``."""
    head, *parts = _OPTION_LETTER.split(text.strip())
    letters, options = [letter.lower() for letter in parts[::2]], tuple(part.strip() for part in parts[1::2])
    if head.strip() or len(options) < 2 or letters != list(string.ascii_lowercase[: len(letters)]) or not all(options):
        raise ValueError(f"options {text!r} are not '(a) ... (b) ...'")
    return options


def _parse_answer(text: str, n_options: int) -> int:
    """``(b)`` -> 1, checked against the number of options."""
    match = re.fullmatch(r"\(?([a-z])\)?", text.strip(), re.IGNORECASE)
    answer = string.ascii_lowercase.index(match[1].lower()) if match else n_options
    if answer >= n_options:
        raise ValueError(f"answer {text!r} is not the letter of one of the {n_options} options")
    return answer


def _mmvp_question(row: dict[str, str], csv_path: Path) -> tuple[int, str, tuple[str, ...], int]:
    """One ``Index,Question,Options,Correct Answer`` row parsed."""
    index = _integer(row["Index"], csv_path, "Index")
    try:
        options = _parse_options(row["Options"])
        return index, row["Question"].strip(), options, _parse_answer(row["Correct Answer"], len(options))
    except ValueError as err:
        raise BenchmarkError(f"{csv_path} question {index}: {err}") from None


def load_mmvp(root: Path, expected_rows: int | None = None, drop_known_wrong: bool = False) -> list[MMVPQuestion]:
    """MMVP (MLLM) questions from ``Questions.csv`` (``Index,Question,Options,Correct Answer``, e.g. ``(a) Left (b)
    Right`` / ``(a)``) and ``MMVP Images/<Index>.jpg``; labels 99/100 and 279/280 are reported wrong upstream and
    ``drop_known_wrong`` leaves them out."""
    csv_path, folder = Path(root) / "Questions.csv", mmvp_image_folder(root, MMVP_QUESTION_IMAGE_FOLDERS)
    rows = _read_csv(csv_path, ("Index", "Question", "Options", "Correct Answer"))
    _check_size(csv_path, len(rows), expected_rows)
    parsed = [_mmvp_question(row, csv_path) for row in rows]
    _refuse_duplicates([index for index, *_ in parsed], csv_path, "Index")
    parsed = [question for question in parsed if not (drop_known_wrong and question[0] in MMVP_KNOWN_WRONG)]
    candidates = _image_stems(folder, [(index, str(index)) for index, *_ in parsed], csv_path)
    paths = _found_images(candidates, csv_path, "the image folder is incomplete; re-download MMVP")
    return [MMVPQuestion(index, path, *rest) for path, (index, *rest) in zip(paths, parsed)]
