"""Loaders for the paper's other benchmarks, in the layouts its t2v_metrics fork reads (``lst627/CLIP-Embeds``,
``t2v_metrics/dataset.py``, run by ``eval.py`` with ``--root_dir``, by default ``./datasets``): Winoground,
NaturalBench (retrieval form), EqBen (mini), SeeTRUE, SugarCREPE (seven subsets) and COCO-Counterfactuals.

Every loader takes that same root folder and reads only inside it (images through ``inside_root``); nothing is
downloaded. Each item is a ``T2VItem``: its images and texts in the order the dataset class's ``__getitem__`` returns
them, so a model's scores form the ``N x images x texts`` array that ``evaluate_scores`` reads
(``analysis_lib.stats.retrieval_metrics``). Where the fork reads a file outside ``root_dir`` (SeeTRUE's CSV and
COCO-Counterfactuals' JSONL from ``./datasets``, SugarCREPE's JSON from ``datasets/sugar_crepe`` and its COCO
images from a fixed ``/your-path/val2017``), the file is expected in the root folder (the same place when the root is
the default ``./datasets``) and SugarCREPE's images in ``<root>/val2017`` unless ``image_root`` is given.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from analysis_lib.data.benchmarks import (
    BenchmarkError,
    _check_size,
    _found_images,
    _read_csv,
    inside_root,
    read_json,
    size_report,
)

# Item counts as published; None where this library has not verified a published count (shown as unknown).
T2V_PUBLISHED_SIZES: dict[str, int | None] = {
    "Winoground": 400,
    "NaturalBench": None,
    "EqBen-mini": None,
    "SeeTRUE": None,
    "SugarCREPE": None,
    "COCO-Counterfactuals": None,
}
SUGARCREPE_SUBSETS = ("add_obj", "add_att", "replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att")
# EqBen-mini subsets: an item belongs to the first whose folders include its first image's top folder.
EQBEN_SUBSETS = {
    "eqbensd": ("eqbensd",),
    "eqbenk": ("eqbenkubric_cnt", "eqbenkubric_loc", "eqbenkubric_attr"),
    "eqbeng": ("eqbengebc",),
    "eqbenag": ("eqbenag",),
    "eqbeny": ("eqbenyoucook2",),
}
WINOGROUND_MAIN_PREDS = {1: "1 Main Pred", 2: "2 Main Pred"}
NO_TAG = "No Tag"  # Winoground items without a "why hard" tag


@dataclass(frozen=True)
class T2VItem:
    """One item: its images and texts in the dataset class's order (two images and two captions, caption j true of
    image j; SugarCREPE one image, positive then negative caption; SeeTRUE one image, one text and its 0/1 label);
    ``tags`` the subsets it is also scored in."""

    image_paths: tuple[Path, ...]
    texts: tuple[str, ...]
    tags: tuple[str, ...] = ()
    label: int | None = None


def _strings(entry: object, keys: Sequence[str], source: Path, where: str) -> list[str]:
    """The string values of ``keys`` in one JSON object, or one ``BenchmarkError`` naming what is missing."""
    if not isinstance(entry, dict):
        raise BenchmarkError(f"{source} {where}: expected a JSON object, found {str(entry)[:80]}")
    bad = [key for key in keys if not isinstance(entry.get(key), str)]
    if bad:
        raise BenchmarkError(
            f"{source} {where}: needs text fields {', '.join(map(repr, keys))}; missing or not text: {bad}; "
            "re-download the file"
        )
    return [entry[key] for key in keys]


def _read_jsonl(path: Path) -> list[object]:
    """The values of a JSON-lines file (blank lines skipped), or one clear ``BenchmarkError``."""
    if not path.is_file():
        raise BenchmarkError(f"annotation file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise BenchmarkError(f"{path} is not UTF-8 text ({err}); re-download it") from None
    values = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                values.append(json.loads(line))
            except (json.JSONDecodeError, RecursionError) as err:
                raise BenchmarkError(f"{path} line {number} is not one JSON value ({err}); re-download it") from None
    if not values:
        raise BenchmarkError(f"{path} lists no items; re-download it")
    return values


def _images(folder: Path, names: Sequence[Sequence[str]], source: Path) -> list[tuple[Path, ...]]:
    """Each item's image paths inside ``folder``, checked to exist (one error counting the missing ones)."""
    candidates = [[inside_root(folder, name, source, f"item {i}")] for i, row in enumerate(names) for name in row]
    found = _found_images(candidates, source, f"the images belong in {folder}; re-download the benchmark")
    width = len(names[0])
    return [tuple(found[k : k + width]) for k in range(0, len(found), width)]


def _folder(root: Path, name: str, marker: str) -> Path:
    """``root/name`` (the layout t2v_metrics reads), or ``root`` itself when it already holds ``marker``."""
    root = Path(root)
    return root if (root / marker).is_file() and not (root / name).is_dir() else root / name


def _image_pairs(rows: Sequence[Sequence[str]], folder: Path, source: Path, tags: Sequence[tuple]) -> list[T2VItem]:
    """``T2VItem``s from ``(image_0, image_1, caption_0, caption_1)`` rows, images inside ``folder``."""
    paths = _images(folder, [row[:2] for row in rows], source)
    return [T2VItem(pair, (row[2], row[3]), tuple(tag)) for pair, row, tag in zip(paths, rows, tags)]


def _winoground_tags(folder: Path, n_items: int) -> list[tuple[str, ...]]:
    """Per item: its main-predicate count and collapsed tag (``examples.jsonl``) and why-hard tags
    (``why_winoground_hard.json``, ``No Tag`` if it has none), the subsets t2v_metrics reports."""
    source = folder / "examples.jsonl"
    examples = _read_jsonl(source)
    tags: list[list[str]] = [[] for _ in range(n_items)]
    for number, example in enumerate(examples):
        preds = example.get("num_main_preds") if isinstance(example, dict) else None
        item = example.get("id") if isinstance(example, dict) else None
        if preds not in WINOGROUND_MAIN_PREDS or not isinstance(item, int) or not 0 <= item < n_items:
            raise BenchmarkError(
                f"{source} line {number + 1}: needs an 'id' of one of the {n_items} items and 'num_main_preds' 1 or 2"
            )
        tags[item] += [WINOGROUND_MAIN_PREDS[preds], *_strings(example, ["collapsed_tag"], source, f"id {item}")]
    hard_path = folder / "why_winoground_hard.json"
    for key, names in read_json(hard_path, dict).items():
        if not key.isdigit() or int(key) >= n_items or not isinstance(names, list):
            raise BenchmarkError(f"{hard_path}: entry {key!r} must map an item id to a list of tags")
        tags[int(key)] += [str(name) for name in names] or [NO_TAG]
    return [tuple(dict.fromkeys(item)) for item in tags]


def load_winoground(root: Path, expected_size: int | None = None) -> list[T2VItem]:
    """Winoground from ``<root>/winoground``: ``metadata.csv`` (``id,image_0,image_1,caption_0,caption_1``, ids 0..N-1
    in order), images at the paths it names, tags from ``examples.jsonl`` and ``why_winoground_hard.json``."""
    folder = _folder(root, "winoground", "metadata.csv")
    source = folder / "metadata.csv"
    rows = _read_csv(source, ("id", "image_0", "image_1", "caption_0", "caption_1"), "Winoground metadata file")
    _check_size(source, len(rows), expected_size)
    wrong = next((i for i, row in enumerate(rows) if row["id"].strip() != str(i)), None)
    if wrong is not None:
        raise BenchmarkError(f"{source}: row {wrong} has id {rows[wrong]['id']!r}; ids must run 0, 1, 2, ... in order")
    fields = [[row[key] for key in ("image_0", "image_1", "caption_0", "caption_1")] for row in rows]
    items = _image_pairs(fields, folder, source, [()] * len(rows))
    return [replace(item, tags=tags) for item, tags in zip(items, _winoground_tags(folder, len(rows)))]


def load_naturalbench(root: Path, expected_size: int | None = None) -> list[T2VItem]:
    """NaturalBench (retrieval form) from ``<root>/NaturalBench-Retrieval/metadata.json``: a list of ``{"index",
    "image_0", "image_1", "caption_0", "caption_1"}`` with index i at position i; images in its ``images/``."""
    folder = _folder(root, "NaturalBench-Retrieval", "metadata.json")
    source = folder / "metadata.json"
    entries = read_json(source, list)
    _check_size(source, len(entries), expected_size)
    keys = ["image_0", "image_1", "caption_0", "caption_1"]
    rows = [_strings(entry, keys, source, f"item {i}") for i, entry in enumerate(entries)]
    wrong = next((i for i, entry in enumerate(entries) if entry.get("index") != i), None)
    if wrong is not None:
        raise BenchmarkError(f"{source} item {wrong}: 'index' must equal its position ({wrong}); re-download it")
    return _image_pairs(rows, folder / "images", source, [()] * len(rows))


def eqben_subset(image_path: str) -> tuple[str, ...]:
    """The EqBen-mini subset of an item by its first image's top folder (none if no subset lists that folder)."""
    top = image_path.split("/")[0]
    return next(((name,) for name, folders in EQBEN_SUBSETS.items() if top in folders), ())


def load_eqben_mini(root: Path, expected_size: int | None = None) -> list[T2VItem]:
    """EqBen (mini) from ``<root>/eqben_vllm/all_select.json``: a list of ``{"image0", "image1", "caption0",
    "caption1"}``; images in ``eqben_vllm/images/``; each item tagged with its subset (``EQBEN_SUBSETS``)."""
    folder = _folder(root, "eqben_vllm", "all_select.json")
    source = folder / "all_select.json"
    entries = read_json(source, list)
    _check_size(source, len(entries), expected_size)
    keys = ["image0", "image1", "caption0", "caption1"]
    rows = [_strings(entry, keys, source, f"item {i}") for i, entry in enumerate(entries)]
    return _image_pairs(rows, folder / "images", source, [eqben_subset(row[0]) for row in rows])


def _label(text: str, source: Path, row: int) -> int:
    """A SeeTRUE label: 0 or 1 (also written ``0.0`` / ``1.0``)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value not in (0.0, 1.0):
        raise BenchmarkError(f"{source} data row {row}: label {text!r} is not 0 or 1; re-download the file")
    return int(value)


def load_seetrue(root: Path, expected_size: int | None = None) -> list[T2VItem]:
    """SeeTRUE from ``<root>/SeeTRUE.csv`` (columns ``image,text,label,dataset_source``; label 1 if the text matches)
    and ``<root>/seetrue/images/<image>``; each item tagged with its ``dataset_source``."""
    source = Path(root) / "SeeTRUE.csv"
    rows = _read_csv(source, ("image", "text", "label", "dataset_source"), "SeeTRUE file")
    _check_size(source, len(rows), expected_size)
    labels = [_label(row["label"], source, number) for number, row in enumerate(rows, start=1)]
    paths = _images(Path(root) / "seetrue" / "images", [[row["image"]] for row in rows], source)
    return [
        T2VItem(path, (row["text"],), (row["dataset_source"],), label) for path, row, label in zip(paths, rows, labels)
    ]


def load_sugarcrepe(root: Path, image_root: Path | None = None, expected_size: int | None = None) -> list[T2VItem]:
    """SugarCREPE from ``<root>/sugar_crepe/<subset>.json`` for the seven subsets in t2v_metrics' order (each an
    object of ``{"filename", "caption", "negative_caption"}``), COCO images in ``image_root`` (default
    ``<root>/val2017``); each item tagged with its subset."""
    folder = Path(root) / "sugar_crepe"
    images = Path(image_root) if image_root is not None else Path(root) / "val2017"
    rows, tags = [], []
    for subset in SUGARCREPE_SUBSETS:
        source = folder / f"{subset}.json"
        entries = read_json(source, dict)
        rows += [
            _strings(v, ["filename", "caption", "negative_caption"], source, f"item {k}") for k, v in entries.items()
        ]
        tags += [(subset,)] * len(entries)
    _check_size(folder, len(rows), expected_size)
    paths = _images(images, [[row[0]] for row in rows], folder)
    return [T2VItem(path, (row[1], row[2]), tag) for path, row, tag in zip(paths, rows, tags)]


def load_coco_counterfactuals(root: Path, expected_size: int | None = None) -> list[T2VItem]:
    """COCO-Counterfactuals from ``<root>/cococounterfactuals.jsonl`` (one ``{"image_0", "image_1", "caption_0",
    "caption_1"}`` per line, image ids without extension) and ``<root>/COCOCounterfactuals/images/<id>.jpg``."""
    source = Path(root) / "cococounterfactuals.jsonl"
    entries = _read_jsonl(source)
    _check_size(source, len(entries), expected_size)
    rows = [_strings(entry, ["image_0", "image_1", "caption_0", "caption_1"], source, f"line {i + 1}")
            for i, entry in enumerate(entries)]  # fmt: skip
    named = [[f"{row[0]}.jpg", f"{row[1]}.jpg", *row[2:]] for row in rows]
    return _image_pairs(named, Path(root) / "COCOCounterfactuals" / "images", source, [()] * len(rows))


T2V_LOADERS: dict[str, Callable[..., list[T2VItem]]] = {
    "Winoground": load_winoground,
    "NaturalBench": load_naturalbench,
    "EqBen-mini": load_eqben_mini,
    "SeeTRUE": load_seetrue,
    "SugarCREPE": load_sugarcrepe,
    "COCO-Counterfactuals": load_coco_counterfactuals,
}
"""The six benchmarks in the order t2v_metrics' ``eval.py`` runs them."""
T2V_MARKERS = {
    "Winoground": ("winoground/metadata.csv",),
    "NaturalBench": ("NaturalBench-Retrieval/metadata.json",),
    "EqBen-mini": ("eqben_vllm/all_select.json",),
    "SeeTRUE": ("SeeTRUE.csv",),
    "SugarCREPE": tuple(f"sugar_crepe/{subset}.json" for subset in SUGARCREPE_SUBSETS),
    "COCO-Counterfactuals": ("cococounterfactuals.jsonl",),
}
"""The annotation files under the root that tell whether a benchmark is present."""


def load_t2v_benchmarks(
    root: Path,
    only_present: bool = False,
    strict: bool = False,
    names: Iterable[str] = T2V_LOADERS,
    coco_images: Path | None = None,
) -> dict[str, list[T2VItem]]:
    """The benchmarks ``names`` from a t2v_metrics ``--root_dir``: all, or with ``only_present`` those whose annotation
    files are there (one error naming what is missing otherwise); ``strict`` requires the known published sizes;
    ``coco_images``: SugarCREPE's COCO ``val2017`` folder if not ``<root>/val2017``."""
    root, names = Path(root), list(names)
    unknown = [name for name in names if name not in T2V_LOADERS]
    if unknown:
        raise ValueError(f"unknown benchmarks {unknown}; choose from {', '.join(T2V_LOADERS)}")
    missing = {name: [m for m in T2V_MARKERS[name] if not (root / m).is_file()] for name in names}
    missing = {name: files for name, files in missing.items() if files}
    if missing and (not only_present or len(missing) == len(names)):
        listing = "; ".join(f"{name}: {', '.join(files)}" for name, files in missing.items())
        raise BenchmarkError(
            f"{root}: benchmark files missing ({listing}); place them as t2v_metrics' dataset classes expect under "
            "its --root_dir" + ("" if only_present else ", or pass only_present=True to load the others")
        )
    loaded = {}
    for name in (name for name in names if name not in missing):
        extra = {"image_root": coco_images} if name == "SugarCREPE" else {}
        loaded[name] = T2V_LOADERS[name](root, expected_size=T2V_PUBLISHED_SIZES[name] if strict else None, **extra)
    return loaded


def t2v_size_report(loaded: Mapping[str, Sequence[T2VItem]], expected: Iterable[str] = T2V_LOADERS) -> list[dict]:
    """Per benchmark: items found vs ``T2V_PUBLISHED_SIZES`` (``published`` None: not verified here); each
    ``expected`` benchmark that was not loaded is a row whose ``found`` is "missing"."""
    return size_report(loaded, expected, T2V_PUBLISHED_SIZES)
