"""The toy world: rendered two-object scenes with one clear spatial relation, their captions and QA.

Objects sit one per cell of a ``grid x grid`` lattice whose cells coincide with the ViT's patches,
so one object ~ one patch token. Every scene holds two objects that differ in colour and shape,
in the same row (left of / right of) or the same column (above / below). ``MultiScene`` adds distractor
objects to such a pair (chapter 4's 3- and 4-object scenes; the toy models are trained on two-object scenes).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
    "white": (245, 245, 245),
}
RELATIONS = ("left_of", "right_of", "above", "below")
RELATION_PHRASES = {"left_of": "left of", "right_of": "right of", "above": "above", "below": "below"}
OPPOSITE = {"left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above"}
ROW_WORDS = ("top", "middle", "bottom")
COL_WORDS = ("left", "center", "right")
VQA_QUESTION = 'Does this figure show "{}"? Please answer yes or no.'
LIST_QUESTION = "Describe the figure."
TASKS = ("yes/no", "describe", "list", "relative", "where", "where-in-text")


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines the rendered scenes and their text."""

    grid: int = 3
    cell: int = 8
    object_size: int = 6
    noise_std: float = 8.0
    brightness_jitter: float = 20.0
    relational_caption_fraction: float = 0.1

    @property
    def image_size(self) -> int:
        """Side of the square image in pixels."""
        return self.grid * self.cell


@dataclass(frozen=True)
class Obj:
    """One object: a colour and a shape."""

    colour: str
    shape: str

    @property
    def phrase(self) -> str:
        """Noun phrase without article, e.g. ``red circle``."""
        return f"{self.colour} {self.shape}"

    @property
    def slug(self) -> str:
        """File-name form, e.g. ``red-circle``."""
        return f"{self.colour}-{self.shape}"


@dataclass(frozen=True)
class Scene:
    """Two objects, their cells (row, col) and the relation of ``first`` to ``second``."""

    first: Obj
    second: Obj
    first_cell: tuple[int, int]
    second_cell: tuple[int, int]
    relation: str


def placed_objects(scene: Scene) -> list[tuple[Obj, tuple[int, int]]]:
    """The scene's objects with their cells, first then second."""
    return [(scene.first, scene.first_cell), (scene.second, scene.second_cell)]


def relation_of(first_cell: tuple[int, int], second_cell: tuple[int, int]) -> str:
    """The relation of the first cell to the second (same row or column required)."""
    (r1, c1), (r2, c2) = first_cell, second_cell
    if r1 == r2 and c1 != c2:
        return "left_of" if c1 < c2 else "right_of"
    if c1 == c2 and r1 != r2:
        return "above" if r1 < r2 else "below"
    raise ValueError(f"cells {first_cell} and {second_cell} are not in one row or column")


def all_objects() -> list[Obj]:
    """Every colour x shape combination."""
    return [Obj(c, s) for c in COLOURS for s in SHAPES]


def random_object_pair(rng: np.random.Generator) -> tuple[Obj, Obj]:
    """Two objects differing in both colour and shape."""
    colours = rng.choice(len(COLOURS), size=2, replace=False)
    shapes = rng.choice(len(SHAPES), size=2, replace=False)
    names = list(COLOURS)
    return Obj(names[colours[0]], SHAPES[shapes[0]]), Obj(names[colours[1]], SHAPES[shapes[1]])


@functools.cache
def placements(relation: str, grid: int) -> tuple[tuple[tuple[int, int], tuple[int, int]], ...]:
    """Every pair of cells on the grid whose first cell is in ``relation`` to the second."""
    cells = list(itertools.product(range(grid), repeat=2))
    return tuple(
        (a, b)
        for a in cells
        for b in cells
        if a != b and (a[0] == b[0] or a[1] == b[1]) and relation_of(a, b) == relation
    )


def random_cells(rng: np.random.Generator, relation: str, grid: int) -> tuple[tuple[int, int], ...]:
    """Cells for two objects in the given relation, uniformly among valid placements."""
    options = placements(relation, grid)
    return options[rng.integers(len(options))]


def random_scene(rng: np.random.Generator, config: WorldConfig, relation: str | None = None) -> Scene:
    """A random scene; the relation is drawn uniformly unless given."""
    relation = relation or RELATIONS[rng.integers(len(RELATIONS))]
    first, second = random_object_pair(rng)
    cell_a, cell_b = random_cells(rng, relation, config.grid)
    return Scene(first, second, cell_a, cell_b, relation)


def with_relation(scene: Scene, relation: str, rng: np.random.Generator, config: WorldConfig) -> Scene:
    """The same two objects re-placed in another relation."""
    cell_a, cell_b = random_cells(rng, relation, config.grid)
    return dataclasses.replace(scene, first_cell=cell_a, second_cell=cell_b, relation=relation)


def _shape_masks(size: int) -> dict[str, np.ndarray]:
    """Boolean masks of each shape on a ``size x size`` canvas."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    centre = size / 2
    half = size / 2
    masks = {
        "circle": (yy - centre) ** 2 + (xx - centre) ** 2 <= half**2,
        "square": np.ones((size, size), dtype=bool),
        "triangle": np.abs(xx - centre) <= yy / 2,
        "cross": (np.abs(xx - centre) < size / 6 + 0.5) | (np.abs(yy - centre) < size / 6 + 0.5),
    }
    return {k: v.astype(bool) for k, v in masks.items()}


def render(scene: Scene, config: WorldConfig, rng: np.random.Generator) -> np.ndarray:
    """Render a scene to an ``H x W x 3`` uint8 image with pixel noise and brightness jitter."""
    return render_objects(placed_objects(scene), config, rng)


def render_objects(
    objects: list[tuple[Obj, tuple[int, int]]], config: WorldConfig, rng: np.random.Generator
) -> np.ndarray:
    """Render any placed objects (one per cell) the way ``render`` renders a scene's two."""
    return render_with_offsets(objects, config, rng)[0]


def render_with_offsets(
    objects: list[tuple[Obj, tuple[int, int]]], config: WorldConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``render_objects``'s image and each object's offset ``(dy, dx)`` in pixels inside its cell (0 to
    ``cell - object_size``): a detail smaller than a patch, drawn at random and never named in text."""
    side = config.image_size
    image = np.full((side, side, 3), 128.0) + rng.normal(0, config.noise_std, (side, side, 3))
    masks = _shape_masks(config.object_size)
    slack, offsets = config.cell - config.object_size, []
    for obj, (row, col) in objects:
        dy, dx = rng.integers(0, slack + 1, size=2)
        offsets.append((dy, dx))
        top, left = row * config.cell + dy, col * config.cell + dx
        window = image[top : top + config.object_size, left : left + config.object_size]
        colour = np.array(COLOURS[obj.colour], dtype=float) + rng.normal(0, 10, 3)
        window[masks[obj.shape]] = colour
    image += rng.uniform(-config.brightness_jitter, config.brightness_jitter)
    return np.clip(image, 0, 255).astype(np.uint8), np.array(offsets, dtype=np.int64).reshape(len(objects), 2)


@dataclass(frozen=True)
class MultiScene:
    """A two-object ``scene`` (the objects a caption names) plus distractor objects in other cells."""

    scene: Scene
    distractors: tuple[tuple[Obj, tuple[int, int]], ...]

    @property
    def objects(self) -> list[tuple[Obj, tuple[int, int]]]:
        """Every placed object: the named two first, then the distractors."""
        return placed_objects(self.scene) + list(self.distractors)


def random_multi_scene(rng: np.random.Generator, config: WorldConfig, n_objects: int, relation: str) -> MultiScene:
    """A scene of ``n_objects`` (3 or 4: one per shape at most), all differing in colour and shape, whose first
    two are in ``relation``; the distractors sit in random free cells."""
    if not 2 <= n_objects <= len(SHAPES):
        raise ValueError(f"n_objects must be 2-{len(SHAPES)} (objects differ in shape); got {n_objects}")
    scene = random_scene(rng, config, relation)
    free = [
        c for c in itertools.product(range(config.grid), repeat=2) if c not in (scene.first_cell, scene.second_cell)
    ]
    colours = [c for c in COLOURS if c not in (scene.first.colour, scene.second.colour)]
    shapes = [s for s in SHAPES if s not in (scene.first.shape, scene.second.shape)]
    n = n_objects - 2
    cells = [free[i] for i in rng.choice(len(free), n, replace=False)]
    picked = zip(rng.choice(len(colours), n, replace=False), rng.choice(len(shapes), n, replace=False))
    objects = [Obj(colours[c], shapes[s]) for c, s in picked]
    return MultiScene(scene, tuple(zip(objects, cells)))


def sample_multi_scenes(n: int, n_objects: int, config: WorldConfig, seed: int) -> list[MultiScene]:
    """``n`` scenes of ``n_objects`` objects with balanced relations of the named pair, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    return [random_multi_scene(rng, config, n_objects, RELATIONS[i % len(RELATIONS)]) for i in range(n)]


def relational_caption(scene: Scene) -> str:
    """The scene's relation in words, e.g. ``a red circle left of a blue square``."""
    return f"a {scene.first.phrase} {RELATION_PHRASES[scene.relation]} a {scene.second.phrase}"


def caption_with(scene: Scene, relation: str | None = None, first: Obj | None = None) -> str:
    """The relational caption with the relation and/or the first object replaced."""
    return relational_caption(
        dataclasses.replace(scene, relation=relation or scene.relation, first=first or scene.first)
    )


def bag_caption(scene: Scene, rng: np.random.Generator) -> str:
    """A bag-of-objects caption in random order, e.g. ``a blue square and a red circle``."""
    objs = [scene.first, scene.second]
    rng.shuffle(objs)
    return f"a {objs[0].phrase} and a {objs[1].phrase}"


def training_caption(scene: Scene, rng: np.random.Generator, config: WorldConfig) -> str:
    """A web-alt-text-like caption: relational with the configured probability, else bag-of-objects."""
    text = relational_caption(scene) if rng.random() < config.relational_caption_fraction else bag_caption(scene, rng)
    return f"a photo of {text}" if rng.random() < 0.3 else text


def cell_words(cell: tuple[int, int]) -> str:
    """A cell in words, e.g. ``top left``."""
    return f"{ROW_WORDS[cell[0]]} {COL_WORDS[cell[1]]}"


def absent_colours(scene: Scene) -> list[str]:
    """The colours that neither object has."""
    return [c for c in COLOURS if c not in (scene.first.colour, scene.second.colour)]


def absent_colour(scene: Scene, rng: np.random.Generator) -> str:
    """A colour that neither object has."""
    options = absent_colours(scene)
    return options[rng.integers(len(options))]


FOIL_SHARES = {"relation": 0.5, "colour": 1 / 6, "shape": 1 / 6, "absent object": 1 / 6}


def absent_shape(scene: Scene, rng: np.random.Generator) -> str:
    """A shape that neither object has."""
    options = [s for s in SHAPES if s not in (scene.first.shape, scene.second.shape)]
    return options[rng.integers(len(options))]


def false_caption(scene: Scene, rng: np.random.Generator, shares: dict[str, float] | None = None) -> str:
    """A caption that is false for the scene, its kind drawn with the probabilities ``shares``
    (``FOIL_SHARES`` unless given: relation foils as common as the three object foils together).

    relation: another relation word, or the objects swapped around the true one; colour / shape: one
    object's colour / shape replaced by one neither object has; absent object: one object replaced by
    an object of an absent colour and an absent shape.
    """
    shares = shares or FOIL_SHARES
    kind = str(rng.choice(list(shares), p=np.array(list(shares.values())) / sum(shares.values())))
    if kind == "relation":
        if rng.random() < 0.5:
            return relational_caption(
                Scene(scene.second, scene.first, scene.second_cell, scene.first_cell, scene.relation)
            )
        others = [r for r in RELATIONS if r != scene.relation]
        return caption_with(scene, relation=others[rng.integers(len(others))])
    first = rng.random() < 0.5
    obj = scene.first if first else scene.second
    colour = absent_colour(scene, rng) if kind in ("colour", "absent object") else obj.colour
    shape = absent_shape(scene, rng) if kind in ("shape", "absent object") else obj.shape
    foil = Obj(colour, shape)
    return relational_caption(dataclasses.replace(scene, **({"first": foil} if first else {"second": foil})))


def object_list(scene: Scene, rng: np.random.Generator) -> str:
    """Every object with its cell, in random order, e.g. ``a red circle top left and a blue square top right``."""
    objects = placed_objects(scene)
    order = rng.permutation(len(objects))
    return " and ".join(f"a {objects[i][0].phrase} {cell_words(objects[i][1])}" for i in order)


class Turn(NamedTuple):
    """One question and its answer; ``truthful`` is False for a yes/no question about a false caption."""

    question: str
    answer: str
    truthful: bool = True


def yes_no_turn(
    scene: Scene, rng: np.random.Generator, positive: bool, foil_shares: dict[str, float] | None = None
) -> Turn:
    """The VQAScore question about the scene's relational caption (``positive``) or a false caption drawn with
    ``foil_shares``, 30% of them prefixed "a photo of"."""
    caption = relational_caption(scene) if positive else false_caption(scene, rng, foil_shares)
    if rng.random() < 0.3:
        caption = f"a photo of {caption}"
    return Turn(VQA_QUESTION.format(caption), "Yes" if positive else "No", positive)


def instruction_example(
    scene: Scene, rng: np.random.Generator, weights: dict[str, float], foil_shares: dict[str, float] | None = None
) -> Turn:
    """One instruction-style turn about the scene, LLaVA-data style.

    ``weights`` maps task names to sampling weights. Tasks: ``yes/no`` (the VQAScore question,
    half of them about a false caption drawn with ``foil_shares``), ``describe`` (the relational caption), ``list`` (the
    grounding task: every object with its cell), ``relative`` (which relation holds), ``where`` (an
    object's cell in words); ``where-in-text`` (the same, with both objects' cells written in the
    question: a text-only binding control).
    """
    unknown = sorted(set(weights) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown task {unknown[0]!r}; use one of {', '.join(TASKS)}")
    task = str(rng.choice(list(weights), p=np.array(list(weights.values())) / sum(weights.values())))
    if task == "yes/no":
        return yes_no_turn(scene, rng, rng.random() < 0.5, foil_shares)
    if task == "describe":
        return Turn("Describe the image.", relational_caption(scene))
    if task == "list":
        return Turn(LIST_QUESTION, object_list(scene, rng))
    if task == "relative":
        return Turn(
            f"Where is the {scene.first.phrase} relative to the {scene.second.phrase}?",
            RELATION_PHRASES[scene.relation],
        )
    objects = placed_objects(scene)
    if task == "where-in-text":  # the binding control: both objects' cells are written in the question
        obj, cell = objects[rng.integers(2)]
        return Turn(f"{object_list(scene, rng)}. Where is the {obj.phrase}?", cell_words(cell))
    obj, cell = objects[0] if rng.random() < 0.5 else objects[1]
    return Turn(f"Where is the {obj.phrase}?", cell_words(cell))


def shows_any(scene: Scene, phrases: tuple[str, ...]) -> bool:
    """Whether one of the scene's objects is one of ``phrases`` (e.g. ``red circle``)."""
    return any(obj.phrase in phrases for obj, _ in placed_objects(scene))


def names_any(turn: Turn, phrases: tuple[str, ...]) -> bool:
    """Whether the turn's question or answer names one of the objects ``phrases``."""
    text = f" {turn.question} {turn.answer} ".replace('"', " ").replace(".", " ").replace("?", " ")
    return any(f" {phrase} " in text for phrase in phrases)


def sample_scenes(n: int, config: WorldConfig, seed: int) -> list[Scene]:
    """``n`` random scenes with balanced relations, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    return [random_scene(rng, config, RELATIONS[i % len(RELATIONS)]) for i in range(n)]


def render_all(scenes: list[Scene], config: WorldConfig, seed: int) -> np.ndarray:
    """Render scenes to an ``N x H x W x 3`` uint8 array, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    return np.stack([render(s, config, rng) for s in scenes])


def object_offsets(scenes: list[Scene], config: WorldConfig, seed: int) -> np.ndarray:
    """Each scene's objects' offsets in their cells (``N x 2 x 2``: first / second object, dy / dx) in the images
    ``render_all(scenes, config, seed)`` renders."""
    rng = np.random.default_rng(seed)
    return np.stack([render_with_offsets(placed_objects(s), config, rng)[1] for s in scenes])


def vocabulary() -> list[str]:
    """Every word the toy world's text can contain."""
    words = set("a an the of and photo is yes no please answer or describe image where relative to".split())
    words |= set("does this figure show".split()) | {'"', "?", ".", ":", "user", "assistant"}
    words |= set(SHAPES) | set(COLOURS) | set(ROW_WORDS) | set(COL_WORDS)
    words |= {w for p in RELATION_PHRASES.values() for w in p.split()}
    return sorted(words)
