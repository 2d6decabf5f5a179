"""Layer probes of a real vision encoder on What'sUp Controlled images (full scale, chapters 2 and 7)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    BitImageProcessor,
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    Dinov2Config,
    Dinov2Model,
)

from analysis_lib.data.benchmarks import WhatsUpItem
from analysis_lib.full import whatsup_probes
from analysis_lib.full.registry import UnsupportedModelError
from analysis_lib.full.whatsup_probes import (
    TARGETS,
    VIEWS,
    clip_encoder,
    dinov2_encoder,
    encoder_probe_table,
    pair_split,
    probe_images,
    probe_pivot,
    relation_split,
    token_views,
    whatsup_layer_probes,
)
from analysis_lib.models.multilevel_features import prefix_tokens

CELLS = {
    "left_of": ((1, 0), (1, 2)),
    "right_of": ((1, 2), (1, 0)),
    "above": ((0, 1), (2, 1)),
    "below": ((2, 1), (0, 1)),
}


class PixelPatches(torch.nn.Module):
    """A stand-in encoder whose every layer is CLS (zeros) plus the image's 8x8 pixel patches: all the pixels keep."""

    def __init__(self, layers: int = 2) -> None:
        super().__init__()
        self.layers, self.scale = layers, torch.nn.Parameter(torch.ones(1))

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool = True) -> SimpleNamespace:
        n = len(pixel_values)
        patches = pixel_values.unfold(2, 8, 8).unfold(3, 8, 8).permute(0, 2, 3, 1, 4, 5).reshape(n, 16, -1)
        hidden = torch.cat([torch.zeros(n, 1, patches.shape[-1]), patches * self.scale], 1)
        return SimpleNamespace(hidden_states=tuple(hidden for _ in range(self.layers + 1)))


def _items(folder, n_pairs: int = 12) -> list[WhatsUpItem]:
    """What'sUp-style items: per object pair, one 32x32 image in each relation, the objects 8x8 squares in cells of a
    3x3 layout on black; the first object of every pair is bright, the second dim (so which is which is readable)."""
    rng, items = np.random.default_rng(0), []
    for pair in range(n_pairs):
        colours = np.stack([rng.integers(200, 256, 3), rng.integers(60, 100, 3)])
        for relation, cells in CELLS.items():
            image = np.zeros((32, 32, 3), np.uint8)
            for colour, (row, col) in zip(colours, cells):
                image[4 + 10 * row : 12 + 10 * row, 4 + 10 * col : 12 + 10 * col] = colour
            path = folder / f"a{pair}_{relation}_b{pair}.png"
            Image.fromarray(image).save(path)
            items.append(WhatsUpItem(path, (f"a {relation} b",), f"a{pair}", relation, f"b{pair}"))
    return items


def _processor() -> CLIPImageProcessor:
    return CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def test_relation_split_tests_on_object_pairs_it_never_trained_on():
    pair = torch.arange(12).repeat_interleave(4)
    train, test = relation_split(pair, seed=0)
    assert not set(pair[train].tolist()) & set(pair[test].tolist())
    assert len(set(pair[test].tolist())) == 3 and bool((train | test).all())
    assert not torch.equal(relation_split(pair, seed=1)[1], test)


def test_pair_split_tests_each_pair_on_a_relation_its_training_never_showed():
    pair = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2])  # pair 2 has one image: it cannot be tested
    relation = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0])
    train, test = pair_split(pair, relation, seed=0)
    assert not (train & test).any() and not train[8] and not test[8]
    for value in (0, 1):
        tested = relation[test & (pair == value)]
        assert len(tested) == 1 and tested.item() not in relation[train & (pair == value)].tolist()


def test_token_views_keep_where_a_patch_is_only_in_the_grid():
    hidden = torch.zeros(2, 17, 3)
    hidden[0, 1, :] = 1.0  # first image: top-left patch lit; second: bottom-right
    hidden[1, 16, :] = 1.0
    views = token_views(hidden, prefix=1, grid=2)
    assert torch.equal(views["mean patch token"][0], views["mean patch token"][1])
    assert not torch.equal(views["patch grid"][0], views["patch grid"][1]) and views["patch grid"].shape == (2, 12)
    with pytest.raises(ValueError, match="square map"):
        token_views(torch.zeros(1, 16, 3), prefix=1)


def test_probes_read_the_relation_from_the_patch_grid_and_not_from_the_mean_patch(tmp_path):
    items = _items(tmp_path)
    table = encoder_probe_table(PixelPatches(), _processor(), items, prefix=1, steps=300)
    assert set(table.view) == set(VIEWS) and set(table.target) == set(TARGETS) and set(table.layer) == {0, 1, 2}
    rel = table[(table.target == "relation") & (table.layer == 0)].set_index("view").accuracy
    assert rel["patch grid"] >= 0.9 and rel["mean patch token"] <= 0.5 and rel["CLS token"] <= 0.5
    pairs = table[(table.target == "object pair") & (table.layer == 0)].set_index("view")
    assert (pairs["test images"] == 12).all() and pairs.loc["mean patch token", "accuracy"] >= 0.9


def test_probe_tables_of_tiny_clip_and_dinov2_towers_have_every_layer(tmp_path):
    items = _items(tmp_path, n_pairs=4)
    clip = CLIPVisionModel(CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=16, intermediate_size=32,
                                            num_hidden_layers=2, num_attention_heads=2)).eval()  # fmt: skip
    dino = Dinov2Model(Dinov2Config(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=3,
                                    num_attention_heads=2, mlp_ratio=2)).eval()  # fmt: skip
    for encoder, layers in ((clip, 3), (dino, 4)):
        table = encoder_probe_table(encoder, _processor(), items, prefix_tokens(encoder), steps=5)
        assert len(table) == layers * len(VIEWS) * len(TARGETS) and table.accuracy.between(0, 1).all()


def test_probe_images_refuse_items_without_object_pairs(tmp_path):
    items = _items(tmp_path, n_pairs=1)
    with pytest.raises(ValueError, match="at least two object pairs"):
        probe_images(items, _processor())


def test_whatsup_layer_probes_load_a_clip_and_a_dinov2_folder_and_probe_every_controlled_subset(tmp_path, full_setup):
    dino_folder = tmp_path / "dinov2"
    Dinov2Model(Dinov2Config(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                             mlp_ratio=2)).save_pretrained(dino_folder)  # fmt: skip
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(dino_folder)
    encoders = [clip_encoder(full_setup.clip_model, "cpu"), dinov2_encoder(str(dino_folder), "cpu")]
    assert [e.prefix for e in encoders] == [1, 1]
    benchmarks = {"Controlled-A": _items(tmp_path, n_pairs=4), "COCO-spatial one-object": []}
    table = whatsup_layer_probes(encoders, benchmarks, steps=5)
    assert set(table.encoder) == {full_setup.clip_model, str(dino_folder)} and set(table.benchmark) == {"Controlled-A"}
    pivot = probe_pivot(table)
    assert list(pivot.columns) == [*VIEWS, "majority class"] and len(pivot) == (2 + 3) * len(TARGETS)
    with pytest.raises(ValueError, match="no What'sUp Controlled subset"):
        whatsup_layer_probes(encoders, {"COCO-spatial one-object": []})


def test_probe_loaders_say_what_to_use_instead(tmp_path, monkeypatch):
    folder = tmp_path / "dinov2"
    Dinov2Model(Dinov2Config(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             mlp_ratio=2)).save_pretrained(folder)  # fmt: skip
    with pytest.raises(FileNotFoundError, match="holds no image processor"):
        dinov2_encoder(str(folder), "cpu")
    monkeypatch.setattr(whatsup_probes, "load_scorer", lambda *args, **kwargs: object())
    with pytest.raises(UnsupportedModelError, match="use clip-l14-336"):
        clip_encoder("open_clip:ViT-L-14-336/openai", "cpu")
