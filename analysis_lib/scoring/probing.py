"""Probes on frozen features: what the encoder's tokens hold, whatever a scorer extracts.

Linear (softmax regression) and 2-layer MLP probes, trained on one set of scenes and tested on
disjoint fresh ones; image-level probes on four views of each encoder layer (CLS token, CLIP's
pooled projected embedding, mean patch token, all patch tokens flattened) and per-patch-token probes
for the object in the token's cell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from transformers import CLIPModel, CLIPVisionModel

from analysis_lib.data.toyworld import COLOURS, OPPOSITE, RELATIONS, SHAPES, Scene
from analysis_lib.models.features import encode_images

EMPTY = len(COLOURS)
PROBE_KINDS = ("linear", "mlp")
IMAGE_VIEWS = ("CLS token", "pooled embedding", "mean patch token", "patch tokens (flattened)")
PATCH_TARGETS = ("colour", "shape", "cell")
FINE_TARGET = "offset in cell"  # an object's horizontal offset inside its cell (0-2 px): a detail below a patch
OBJECT_TARGETS = ("cell", FINE_TARGET)  # probed on object tokens only
MLP_HIDDEN = 128
PATCH_PROBE_SCENES = 1000  # per-patch-token probes train on the first 1000 scenes (9 tokens each)
PROBE_STEPS = 300


def _probe_model(n_features: int, n_classes: int, kind: str) -> torch.nn.Module:
    """A softmax-regression (``linear``) or one-hidden-layer GELU (``mlp``) classifier."""
    if kind == "linear":
        return torch.nn.Linear(n_features, n_classes)
    if kind == "mlp":
        return torch.nn.Sequential(
            torch.nn.Linear(n_features, MLP_HIDDEN), torch.nn.GELU(), torch.nn.Linear(MLP_HIDDEN, n_classes)
        )
    raise ValueError(f"unknown probe kind {kind!r}; use one of {PROBE_KINDS}")


def fit_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    n_classes: int,
    kind: str = "linear",
    seed: int = 0,
    steps: int = PROBE_STEPS,
) -> float:
    """Test accuracy of a probe trained full-batch (Adam, 1e-2, weight decay 1e-4) on standardised features."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    torch.manual_seed(seed)
    probe = _probe_model(train_x.shape[1], n_classes, kind)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-4)
    x = (train_x - mean) / std
    with torch.enable_grad():
        for _ in range(steps):
            loss = F.cross_entropy(probe(x), train_y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return (probe((test_x - mean) / std).argmax(-1) == test_y).float().mean().item()


def linear_probe(features: torch.Tensor, labels: torch.Tensor, n_classes: int, seed: int = 0) -> float:
    """Held-out accuracy of a softmax-regression probe on a seeded 75/25 split of one feature set."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    train, test = order[: int(0.75 * len(labels))], order[int(0.75 * len(labels)) :]
    return fit_probe(features[train], labels[train], features[test], labels[test], n_classes, "linear", seed)


def canonical_relation(scene: Scene) -> int:
    """The relation (index into ``RELATIONS``) of the object whose colour comes first in ``COLOURS`` to
    the other: an image-level label (which object a caption names first is not in the image)."""
    colours = list(COLOURS)
    if colours.index(scene.first.colour) < colours.index(scene.second.colour):
        return RELATIONS.index(scene.relation)
    return RELATIONS.index(OPPOSITE[scene.relation])


def token_labels(scenes: list[Scene], grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per patch token: the colour of the object in its cell (or EMPTY), and its cell index."""
    labels = patch_labels(scenes, grid)
    return labels["colour"], labels["cell"]


def patch_labels(scenes: list[Scene], grid: int, offsets: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """Per scene and patch token: its object's colour and shape (``EMPTY`` / ``len(SHAPES)`` where no
    object is) and the token's cell index; given the objects' ``offsets`` in their cells (``object_offsets``),
    also ``FINE_TARGET``: the horizontal offset of the object in that token's cell (-1 where no object is)."""
    colours = list(COLOURS)
    colour = torch.full((len(scenes), grid * grid), EMPTY)
    shape = torch.full((len(scenes), grid * grid), len(SHAPES))
    offset = torch.full((len(scenes), grid * grid), -1)
    for n, scene in enumerate(scenes):
        for k, (obj, (row, col)) in enumerate(((scene.first, scene.first_cell), (scene.second, scene.second_cell))):
            colour[n, row * grid + col] = colours.index(obj.colour)
            shape[n, row * grid + col] = SHAPES.index(obj.shape)
            if offsets is not None:
                offset[n, row * grid + col] = int(offsets[n, k, 1])
    labels = {"colour": colour, "shape": shape, "cell": torch.arange(grid * grid).repeat(len(scenes), 1)}
    return labels | ({FINE_TARGET: offset} if offsets is not None else {})


def _pooling(encoder: CLIPModel | CLIPVisionModel) -> torch.nn.Module:
    """The encoder's own pooling of a CLS token: post-LayerNorm, then CLIP's visual projection if it has one."""
    norm = encoder.vision_model.post_layernorm
    return torch.nn.Sequential(norm, encoder.visual_projection) if isinstance(encoder, CLIPModel) else norm


@torch.no_grad()
def layer_views(
    clip: CLIPModel | CLIPVisionModel, pixel_values: torch.Tensor, batch_size: int = 512
) -> list[dict[str, torch.Tensor]]:
    """Per encoder layer (0 = embeddings): the image-level ``IMAGE_VIEWS`` and the ``patch tokens``.

    The pooled embedding of layer l is the encoder's own pooling applied there: post-LayerNorm and, for a
    ``CLIPModel``, the visual projection of that layer's CLS token (at the last layer, exactly what CLIP
    scores with); a bare ``CLIPVisionModel`` (e.g. the self-supervised encoder) has no projection.
    """
    vision, device, pool = clip.vision_model, next(clip.parameters()).device, _pooling(clip)
    layers = [[] for _ in range(vision.config.num_hidden_layers + 1)]
    for start in range(0, len(pixel_values), batch_size):
        hidden = vision(pixel_values[start : start + batch_size].to(device), output_hidden_states=True).hidden_states
        for layer, h in enumerate(hidden):
            layers[layer].append(h)
    views = []
    for chunks in layers:
        h = torch.cat(chunks)
        pooled = pool(h[:, 0])
        views.append({"CLS token": h[:, 0].cpu(), "pooled embedding": pooled.cpu(),
                      "mean patch token": h[:, 1:].mean(1).cpu(), "patch tokens (flattened)": h[:, 1:].flatten(1).cpu(),
                      "patch tokens": h[:, 1:].cpu()})  # fmt: skip
    return views


def majority_accuracy(train_y: torch.Tensor, test_y: torch.Tensor) -> float:
    """Test accuracy of always predicting the most frequent training class."""
    return (test_y == torch.bincount(train_y).argmax()).float().mean().item()


def _fitted_rows(tasks: list[tuple], kinds: tuple[str, ...], seed: int, steps: int) -> list[dict]:
    """One row per task ``(view, target, x_train, y_train, x_test, y_test, n_classes)`` and probe kind: its test
    accuracy beside the majority-class rate."""
    rows = []
    for view, target, x_tr, y_tr, x_te, y_te, n_classes in tasks:
        for kind in kinds:
            rows.append({"view": view, "target": target, "probe": kind,
                         "accuracy": fit_probe(x_tr, y_tr, x_te, y_te, n_classes, kind, seed, steps),
                         "majority class": majority_accuracy(y_tr, y_te)})  # fmt: skip
    return rows


def token_tasks(
    train_tokens: torch.Tensor,
    test_tokens: torch.Tensor,
    labels_train: dict[str, torch.Tensor],
    labels_test: dict[str, torch.Tensor],
    targets: tuple[str, ...],
    view: str = "patch token",
) -> list[tuple]:
    """Probe tasks on per-patch tokens (``N x P x D``, P = grid cells): each target of ``targets`` from each
    token's own feature; ``OBJECT_TARGETS`` on object tokens only, the others on every token of the first
    ``PATCH_PROBE_SCENES`` training scenes."""
    object_tr, object_te = labels_train["colour"] != EMPTY, labels_test["colour"] != EMPTY
    object_tr[PATCH_PROBE_SCENES:] = False  # patch tokens are many: a subset of scenes suffices
    first = torch.arange(min(PATCH_PROBE_SCENES, len(train_tokens)))
    tasks = []
    for target in targets:
        on_objects = target in OBJECT_TARGETS
        keep_tr = object_tr if on_objects else torch.zeros_like(object_tr).index_fill_(0, first, True)
        keep_te = object_te if on_objects else torch.ones_like(object_te)
        n_classes = int(max(labels_train[target].max(), labels_test[target].max())) + 1
        tasks.append((view, target, train_tokens[keep_tr], labels_train[target][keep_tr],
                      test_tokens[keep_te], labels_test[target][keep_te], n_classes))  # fmt: skip
    return tasks


def layer_probe_table(
    clip: CLIPModel | CLIPVisionModel,
    train: tuple[torch.Tensor, list[Scene]],
    test: tuple[torch.Tensor, list[Scene]],
    grid: int,
    kinds: tuple[str, ...] = PROBE_KINDS,
    seed: int = 0,
    steps: int = PROBE_STEPS,
    offsets: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Probe accuracy per layer, view / target and probe kind, beside the majority-class rate.

    ``train`` and ``test`` are ``(pixel_values, scenes)`` of disjoint scenes. Image views are probed for
    the canonical relation (4-way); each patch token for its object's colour, shape (empty tokens
    included) and, on object tokens only, its cell and, given the objects' ``offsets`` in their cells (train,
    test), ``FINE_TARGET``; patch-token probes train on the first ``PATCH_PROBE_SCENES`` scenes.
    """
    (train_px, train_scenes), (test_px, test_scenes) = train, test
    rel_train = torch.tensor([canonical_relation(s) for s in train_scenes])
    rel_test = torch.tensor([canonical_relation(s) for s in test_scenes])
    offsets_train, offsets_test = offsets or (None, None)
    labels_train, labels_test = (
        patch_labels(train_scenes, grid, offsets_train),
        patch_labels(test_scenes, grid, offsets_test),
    )
    targets = PATCH_TARGETS + ((FINE_TARGET,) if offsets else ())
    rows = []
    for layer, (tr, te) in enumerate(zip(layer_views(clip, train_px), layer_views(clip, test_px))):
        tasks = [(view, "relation", tr[view], rel_train, te[view], rel_test, len(RELATIONS)) for view in IMAGE_VIEWS]
        tasks += token_tasks(tr["patch tokens"], te["patch tokens"], labels_train, labels_test, targets)
        rows += [{"layer": layer, **row} for row in _fitted_rows(tasks, kinds, seed, steps)]
    return pd.DataFrame(rows)


def token_probe_table(
    train: tuple[torch.Tensor, list[Scene], np.ndarray],
    test: tuple[torch.Tensor, list[Scene], np.ndarray],
    grid: int,
    view: str,
    kinds: tuple[str, ...] = PROBE_KINDS,
    seed: int = 0,
    steps: int = PROBE_STEPS,
) -> pd.DataFrame:
    """Per-token probes (``token_tasks``: colour, shape, cell and ``FINE_TARGET``) of ready-made tokens, e.g. the
    image tokens a LLaVA's language model receives; ``train`` and ``test`` are ``(tokens N x P x D, scenes, the
    objects' offsets in their cells)`` of disjoint scenes, the rows named ``view``."""
    (train_tokens, train_scenes, train_offsets), (test_tokens, test_scenes, test_offsets) = train, test
    labels_train = patch_labels(train_scenes, grid, train_offsets)
    labels_test = patch_labels(test_scenes, grid, test_offsets)
    targets = (*PATCH_TARGETS, FINE_TARGET)
    tasks = token_tasks(train_tokens, test_tokens, labels_train, labels_test, targets, view)
    return pd.DataFrame(_fitted_rows(tasks, kinds, seed, steps))


@torch.no_grad()
def encoder_probes(clip: CLIPModel, pixel_values: torch.Tensor, scenes: list[Scene], layer: int = -2) -> dict:
    """Probe accuracies: per patch token (what LLaVA reads) and from CLIP's pooled embedding (what CLIP scores).

    * ``token colour``: the object's colour (or empty) from each patch token's own feature;
    * ``token cell``: which cell an object token sits in, from its feature alone (no sequence index);
    * ``pooled relation``: the scene's canonical relation from CLIP's projected image embedding.
    """
    grid = int(round(clip.config.vision_config.image_size / clip.config.vision_config.patch_size))
    tokens = encode_images(clip.vision_model, pixel_values, layer, "default")
    colour, cell = token_labels(scenes, grid)
    flat, colour, cell = tokens.reshape(-1, tokens.shape[-1]), colour.reshape(-1), cell.reshape(-1)
    objects = colour != EMPTY
    pooled = clip.get_image_features(pixel_values=pixel_values)
    relation = torch.tensor([canonical_relation(s) for s in scenes])
    return {
        "token colour": linear_probe(flat, colour, EMPTY + 1),
        "token cell": linear_probe(flat[objects], cell[objects], grid * grid),
        "pooled relation": linear_probe(pooled, relation, len(RELATIONS)),
    }


def chance_levels(scenes: list[Scene], grid: int) -> dict[str, float]:
    """Majority-class accuracy of each probe's labels."""
    colour, cell = token_labels(scenes, grid)
    objects = colour != EMPTY
    relation = np.array([canonical_relation(s) for s in scenes])
    return {
        "token colour": float(np.bincount(colour.reshape(-1).numpy()).max() / colour.numel()),
        "token cell": float(np.bincount(cell[objects].numpy()).max() / int(objects.sum())),
        "pooled relation": float(np.bincount(relation).max() / len(relation)),
    }
