"""Export the toy world's evaluation sets in the benchmarks' upstream formats.

* relation set: What'sUp Controlled-style JSON; each object pair in all four relations, file names
  ``{obj1}_{rel}_{obj2}.png``, four caption options differing only in the relation, gold first;
* attribute control: the same images, options that swap the first object's colour for an absent one;
* pair set: MMVP-VLM-style ``Questions.csv`` + ``MMVP_VLM_Images/<Type>/<qid>.png``: ``Spatial``
  pairs (the same objects in opposite relations) and ``Color`` pairs (the first object recoloured);
* compositional sets (``export_compositional_sets``): a t2v_metrics ``--root_dir`` holding a Winoground-style set
  (``winoground/``: two images, two captions of the same words in another order: the two objects' colours swapped,
  their shapes swapped, or their roles in the relation swapped) and SugarCREPE-style subsets (``sugar_crepe/`` and
  ``val2017/``: one image, its caption against a hard negative that adds, replaces or swaps one thing).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from analysis_lib.core.cache import cached_artifact
from analysis_lib.data.t2v_benchmarks import SUGARCREPE_SUBSETS
from analysis_lib.data.toyworld import (
    COLOURS,
    OPPOSITE,
    RELATIONS,
    Obj,
    Scene,
    WorldConfig,
    absent_colour,
    absent_shape,
    all_objects,
    caption_with,
    random_cells,
    random_scene,
    relational_caption,
    render,
    render_objects,
    sample_multi_scenes,
    with_relation,
)

RELATION_FILE = "controlled_toy_relations.json"
ATTRIBUTE_FILE = "controlled_toy_attributes.json"
MMVP_FOLDER = "mmvp_vlm_toy"
MULTI_OBJECT_FILE = "controlled_toy_{}_objects.json"
WINOGROUND_KINDS = ("colour swap", "shape swap", "role swap")
"""The Winoground-style set's kinds of word-order swap (each item's ``collapsed_tag``)."""


def data_root() -> Path:
    """Where generated toy data lives: ``$ANALYSIS_LIB_DATA`` or ``data/toy`` under the repository."""
    default = Path(__file__).resolve().parents[2] / "data" / "toy"
    return Path(os.environ.get("ANALYSIS_LIB_DATA", default))


def distinct_object_pairs(n: int, rng: np.random.Generator) -> list[tuple[Obj, Obj]]:
    """``n`` distinct ordered object pairs differing in colour and shape."""
    objects = all_objects()
    candidates = [(a, b) for a in objects for b in objects if a.colour != b.colour and a.shape != b.shape]
    if n > len(candidates):
        raise ValueError(f"asked for {n} object pairs; the toy world has {len(candidates)}")
    return [candidates[i] for i in rng.choice(len(candidates), n, replace=False)]


def _save(image: np.ndarray, path: Path) -> str:
    """Write a PNG (lossless: colours matter at this size) and return its path relative to the set."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return str(Path(path.parent.name) / path.name)


def _write_controlled(folder: Path, world: WorldConfig, n_pairs: int, rng: np.random.Generator) -> None:
    """The relation set and its attribute control, sharing images."""
    relation_items, attribute_items = [], []
    for first, second in distinct_object_pairs(n_pairs, rng):
        base = Scene(first, second, (0, 0), (0, 1), "left_of")
        for relation in RELATIONS:
            scene = with_relation(base, relation, rng, world)
            rel_path = _save(
                render(scene, world, rng), folder / "images" / f"{first.slug}_{relation}_{second.slug}.png"
            )
            others = [caption_with(scene, relation=r) for r in RELATIONS if r != relation]
            relation_items.append({"image_path": rel_path, "caption_options": [relational_caption(scene), *others]})
            swaps = [c for c in COLOURS if c not in (first.colour, second.colour)]
            colours = [swaps[i] for i in rng.choice(len(swaps), 3, replace=False)]
            recoloured = [caption_with(scene, first=Obj(c, first.shape)) for c in colours]
            attribute_items.append(
                {"image_path": rel_path, "caption_options": [relational_caption(scene), *recoloured]}
            )
    (folder / RELATION_FILE).write_text(json.dumps(relation_items, indent=1))
    (folder / ATTRIBUTE_FILE).write_text(json.dumps(attribute_items, indent=1))


def _mmvp_pair(kind: str, world: WorldConfig, rng: np.random.Generator) -> tuple[Scene, Scene]:
    """Two scenes that differ only in the relation (``Spatial``) or the first object's colour (``Color``)."""
    ((first, second),) = distinct_object_pairs(1, rng)
    relation = RELATIONS[rng.integers(len(RELATIONS))]
    cells = random_cells(rng, relation, world.grid)
    scene = Scene(first, second, cells[0], cells[1], relation)
    if kind == "Spatial":
        return scene, Scene(first, second, cells[1], cells[0], OPPOSITE[relation])
    return scene, dataclasses.replace(scene, first=Obj(absent_colour(scene, rng), first.shape))


def _write_mmvp(folder: Path, world: WorldConfig, n_pairs: int, rng: np.random.Generator) -> None:
    """MMVP-VLM-style pairs: ``n_pairs`` Spatial then ``n_pairs`` Color."""
    root = folder / MMVP_FOLDER
    rows, qid = [], 1
    for kind in ("Spatial", "Color"):
        for _ in range(n_pairs):
            for scene in _mmvp_pair(kind, world, rng):
                _save(render(scene, world, rng), root / "MMVP_VLM_Images" / kind / f"{qid}.png")
                rows.append({"Question ID": qid, "Type": kind, "Statement": relational_caption(scene)})
                qid += 1
    with (root / "Questions.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["Question ID", "Type", "Statement"])
        writer.writeheader()
        writer.writerows(rows)


Writer = Callable[[Path, WorldConfig, int, np.random.Generator], None]


def exported_set(kind: str, world: WorldConfig, size: tuple[str, int], seed: int, writers: tuple[Writer, ...]) -> Path:
    """Write (or reuse) a cached set of ``kind``: each of ``writers`` in turn with ``size``'s count and one generator
    seeded ``seed``; returns its folder."""

    def build(folder: Path) -> None:
        rng = np.random.default_rng(seed)
        for write in writers:
            write(folder, world, size[1], rng)

    spec = {"world": dataclasses.asdict(world), size[0]: size[1], "seed": seed}
    folder, _ = cached_artifact(kind, spec, build, root=data_root())
    return folder


def export_toy_benchmarks(world: WorldConfig, n_pairs: int, seed: int) -> Path:
    """Write (or reuse) the toy evaluation sets; returns their folder."""
    return exported_set("benchmarks", world, ("n_pairs", n_pairs), seed, (_write_controlled, _write_mmvp))


def export_multi_object_set(world: WorldConfig, n_scenes: int, n_objects: int, seed: int) -> Path:
    """Write (or reuse) a What'sUp Controlled-style set of ``n_objects``-object scenes and return its JSON file.

    Scenes are ``sample_multi_scenes(n_scenes, n_objects, world, seed)`` rendered in order with the generator of
    ``seed + 10``; the caption options name the first two objects in each of the four relations, gold first. Each
    image sits in its own folder (``{index:04d}/{obj1}_{rel}_{obj2}.png``: names repeat across scenes); each item
    also lists ``object_cells``, every object's (row, col), the named two first (What'sUp's loader ignores it).
    """

    def build(folder: Path) -> None:
        rng = np.random.default_rng(seed + 10)
        items = []
        for index, multi in enumerate(sample_multi_scenes(n_scenes, n_objects, world, seed)):
            scene = multi.scene
            name = f"{index:04d}/{scene.first.slug}_{scene.relation}_{scene.second.slug}.png"
            path = _save(render_objects(multi.objects, world, rng), folder / name)
            others = [caption_with(scene, relation=r) for r in RELATIONS if r != scene.relation]
            cells = [list(cell) for _, cell in multi.objects]
            items.append({"image_path": path, "caption_options": [relational_caption(scene), *others],
                          "object_cells": cells})  # fmt: skip
        (folder / MULTI_OBJECT_FILE.format(n_objects)).write_text(json.dumps(items, indent=1))

    spec = {"world": dataclasses.asdict(world), "n_scenes": n_scenes, "n_objects": n_objects, "seed": seed}
    folder, _ = cached_artifact("multi-object-benchmarks", spec, build, root=data_root())
    return folder / MULTI_OBJECT_FILE.format(n_objects)


def winoground_pair(kind: str, world: WorldConfig, rng: np.random.Generator) -> tuple[Scene, Scene]:
    """Two scenes whose relational captions hold the same words in another order: the objects' colours swapped, their
    shapes swapped (both in the same cells), or the two objects trading places (their roles in the relation)."""
    ((first, second),) = distinct_object_pairs(1, rng)
    relation = RELATIONS[rng.integers(len(RELATIONS))]
    cells = random_cells(rng, relation, world.grid)
    scene = Scene(first, second, cells[0], cells[1], relation)
    if kind == "colour swap":
        swapped = (Obj(second.colour, first.shape), Obj(first.colour, second.shape))
        return scene, dataclasses.replace(scene, first=swapped[0], second=swapped[1])
    if kind == "shape swap":
        swapped = (Obj(first.colour, second.shape), Obj(second.colour, first.shape))
        return scene, dataclasses.replace(scene, first=swapped[0], second=swapped[1])
    if kind == "role swap":
        return scene, Scene(second, first, cells[0], cells[1], relation)
    raise ValueError(f"unknown Winoground-style kind {kind!r}; use one of {WINOGROUND_KINDS}")


def _write_winoground(root: Path, world: WorldConfig, n_per_kind: int, rng: np.random.Generator) -> None:
    """``<root>/winoground``: ``metadata.csv``, ``examples.jsonl`` (the kind as ``collapsed_tag``),
    ``why_winoground_hard.json`` (no item tagged) and ``images/ex_<id>_img_<j>.png``, as t2v_metrics' Winoground
    class reads them."""
    folder, rows, examples = root / "winoground", [], []
    for kind in WINOGROUND_KINDS:
        for _ in range(n_per_kind):
            item = len(rows)
            scenes = winoground_pair(kind, world, rng)
            names = [_save(render(s, world, rng), folder / "images" / f"ex_{item}_img_{j}.png") for j, s in
                     enumerate(scenes)]  # fmt: skip
            rows.append(
                {
                    "id": item,
                    "image_0": names[0],
                    "image_1": names[1],
                    "caption_0": relational_caption(scenes[0]),
                    "caption_1": relational_caption(scenes[1]),
                }
            )
            examples.append({"id": item, "num_main_preds": 1, "collapsed_tag": kind})  # fmt: skip
    with (folder / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "image_0", "image_1", "caption_0", "caption_1"])
        writer.writeheader()
        writer.writerows(rows)
    (folder / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    (folder / "why_winoground_hard.json").write_text(json.dumps({str(e["id"]): [] for e in examples}))


def _without_colour(scene: Scene, first: bool, colour: str | None) -> str:
    """The relational caption with one object's colour left out (``colour`` None) or replaced by ``colour``."""
    obj = scene.first if first else scene.second
    bare = Obj("", obj.shape) if colour is None else Obj(colour, obj.shape)
    caption = relational_caption(dataclasses.replace(scene, **{"first" if first else "second": bare}))
    return " ".join(caption.split())  # a left-out colour leaves a double space


def sugarcrepe_captions(subset: str, scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    """A scene's positive caption and its SugarCREPE-style hard negative: ``add_obj`` a third, absent object;
    ``add_att`` a caption with one object's colour left out against that object given an absent colour;
    ``replace_obj`` / ``replace_att`` / ``replace_rel`` one object's shape / colour (by an absent one) or the
    relation (by another) replaced; ``swap_obj`` / ``swap_att`` the two objects' shapes / colours swapped."""
    positive, first = relational_caption(scene), bool(rng.random() < 0.5)
    obj = scene.first if first else scene.second
    if subset == "add_obj":
        extra = Obj(absent_colour(scene, rng), absent_shape(scene, rng))
        return positive, f"{positive} and a {extra.phrase}"
    if subset == "add_att":
        return _without_colour(scene, first, None), _without_colour(scene, first, absent_colour(scene, rng))
    if subset == "replace_obj":
        foil = Obj(obj.colour, absent_shape(scene, rng))
        return positive, relational_caption(dataclasses.replace(scene, **{"first" if first else "second": foil}))
    if subset == "replace_att":
        return positive, _without_colour(scene, first, absent_colour(scene, rng))
    if subset == "replace_rel":
        others = [r for r in RELATIONS if r != scene.relation]
        return positive, caption_with(scene, relation=others[rng.integers(len(others))])
    a, b = scene.first, scene.second
    if subset == "swap_obj":
        return positive, relational_caption(dataclasses.replace(scene, first=Obj(a.colour, b.shape),
                                                                second=Obj(b.colour, a.shape)))  # fmt: skip
    if subset == "swap_att":
        return positive, relational_caption(dataclasses.replace(scene, first=Obj(b.colour, a.shape),
                                                                second=Obj(a.colour, b.shape)))  # fmt: skip
    raise ValueError(f"unknown SugarCREPE subset {subset!r}; use one of {SUGARCREPE_SUBSETS}")


def _write_sugarcrepe(root: Path, world: WorldConfig, n_per_subset: int, rng: np.random.Generator) -> None:
    """``<root>/sugar_crepe/<subset>.json`` (``{key: {"filename", "caption", "negative_caption"}}``) for every
    subset, images in ``<root>/val2017`` (SugarCREPE's COCO folder)."""
    (root / "sugar_crepe").mkdir(parents=True, exist_ok=True)
    number = 0
    for subset in SUGARCREPE_SUBSETS:
        entries = {}
        for key in range(n_per_subset):
            scene = random_scene(rng, world)
            name = f"{number:012d}.png"
            _save(render(scene, world, rng), root / "val2017" / name)
            caption, negative = sugarcrepe_captions(subset, scene, rng)
            entries[str(key)] = {"filename": name, "caption": caption, "negative_caption": negative}
            number += 1
        (root / "sugar_crepe" / f"{subset}.json").write_text(json.dumps(entries, indent=1))


def export_compositional_sets(world: WorldConfig, n_items: int, seed: int) -> Path:
    """Write (or reuse) the Winoground-style set (``n_items`` per kind of swap) and the SugarCREPE-style subsets
    (``n_items`` each) as a t2v_metrics ``--root_dir``; returns it (load with ``t2v_benchmarks``' loaders)."""
    writers = (_write_winoground, _write_sugarcrepe)
    return exported_set("compositional-benchmarks", world, ("n_items", n_items), seed, writers)
