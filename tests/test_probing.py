import numpy as np
import torch

from analysis_lib.data.toyworld import COLOURS, RELATIONS, Obj, Scene, object_offsets, render_all, sample_scenes
from analysis_lib.models.features import pixel_tensor
from analysis_lib.scoring.probing import (
    EMPTY,
    FINE_TARGET,
    IMAGE_VIEWS,
    PATCH_TARGETS,
    canonical_relation,
    chance_levels,
    encoder_probes,
    fit_probe,
    layer_probe_table,
    layer_views,
    linear_probe,
    patch_labels,
    token_labels,
    token_probe_table,
)


def test_linear_probe_separates_separable_data_and_not_noise():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (600,), generator=g)
    signal = torch.nn.functional.one_hot(labels, 3).float() * 3 + torch.randn(600, 3, generator=g) * 0.3
    assert linear_probe(signal, labels, 3) > 0.95
    assert linear_probe(torch.randn(600, 8, generator=g), labels, 3) < 0.5


def test_token_labels_mark_the_two_objects(world):
    scene = sample_scenes(1, world, seed=0)[0]
    colour, cell = token_labels([scene], world.grid)
    r, c = scene.first_cell
    assert colour[0, r * world.grid + c] == list(COLOURS).index(scene.first.colour)
    assert (colour[0] != EMPTY).sum() == 2 and cell[0].tolist() == list(range(world.grid**2))


def test_encoder_probes_run_on_a_tiny_clip(tiny_models, world):
    clip, processor, _, _ = tiny_models
    scenes = sample_scenes(64, world, seed=0)
    pixels = pixel_tensor(render_all(scenes, world, 1), processor.image_processor)
    probes = encoder_probes(clip, pixels, scenes)
    assert set(probes) == set(chance_levels(scenes, world.grid)) == {"token colour", "token cell", "pooled relation"}
    assert all(0.0 <= v <= 1.0 for v in probes.values())


def test_mlp_probe_reads_xor_where_a_linear_probe_cannot():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2, (1200, 2), generator=g).float()
    y = (x[:, 0] != x[:, 1]).long()
    x = x + 0.05 * torch.randn(1200, 2, generator=g)
    train, test = slice(0, 900), slice(900, None)
    assert fit_probe(x[train], y[train], x[test], y[test], 2, "mlp") > 0.95
    assert fit_probe(x[train], y[train], x[test], y[test], 2, "linear") < 0.7


def test_canonical_relation_does_not_depend_on_which_object_is_named_first():
    red, blue = Obj("red", "circle"), Obj("blue", "square")
    named_red_first = Scene(red, blue, (0, 0), (0, 2), "left_of")
    named_blue_first = Scene(blue, red, (0, 2), (0, 0), "right_of")
    assert canonical_relation(named_red_first) == canonical_relation(named_blue_first) == RELATIONS.index("left_of")


def test_layer_probe_table_covers_every_layer_view_and_target(tiny_models, world):
    clip, processor, _, _ = tiny_models

    def data(n, seed):
        scenes = sample_scenes(n, world, seed=seed)
        return pixel_tensor(render_all(scenes, world, seed + 1), processor.image_processor), scenes

    table = layer_probe_table(clip, data(48, 0), data(16, 5), world.grid, steps=3)
    layers = clip.config.vision_config.num_hidden_layers + 1
    assert len(table) == layers * (len(IMAGE_VIEWS) + len(PATCH_TARGETS)) * 2
    assert set(table.layer) == set(range(layers)) and table.accuracy.between(0, 1).all()
    assert table["majority class"].between(0, 1).all()
    offsets = object_offsets(data(48, 0)[1], world, 1), object_offsets(data(16, 5)[1], world, 6)
    fine = layer_probe_table(clip, data(48, 0), data(16, 5), world.grid, steps=3, offsets=offsets)
    assert len(fine) == len(table) + layers * 2 and set(fine.target) == {*table.target, FINE_TARGET}
    assert fine[fine.target != FINE_TARGET].reset_index(drop=True).equals(table)  # nothing else changes


def test_token_probes_read_what_ready_made_tokens_carry_and_nothing_else(world):
    """Tokens that carry each object's offset (one-hot, plus noise) give it up to a linear probe; noise does not."""

    def tokens(n, seed, carry):
        scenes = sample_scenes(n, world, seed=seed)
        offsets = object_offsets(scenes, world, seed + 1)
        noise = torch.randn(n, world.grid**2, 8, generator=torch.Generator().manual_seed(seed))
        labels = patch_labels(scenes, world.grid, offsets)[FINE_TARGET]
        signal = torch.nn.functional.one_hot(labels + 1, 4).float() * (3.0 if carry else 0.0)
        return torch.cat([signal, noise], -1), scenes, offsets

    carried = token_probe_table(tokens(400, 0, True), tokens(200, 9, True), world.grid, "ready-made", steps=150)
    noise = token_probe_table(tokens(400, 0, False), tokens(200, 9, False), world.grid, "ready-made", steps=150)
    assert set(carried.target) == {*PATCH_TARGETS, FINE_TARGET} and set(carried.view) == {"ready-made"}
    read = carried.set_index(["target", "probe"])["accuracy"]
    guess = noise.set_index(["target", "probe"])
    assert read[(FINE_TARGET, "linear")] > 0.98
    assert guess.loc[(FINE_TARGET, "linear"), "accuracy"] < guess.loc[(FINE_TARGET, "linear"), "majority class"] + 0.1


def test_the_fine_target_is_each_object_tokens_horizontal_offset(world):
    scenes = [Scene(Obj("red", "circle"), Obj("blue", "square"), (0, 0), (2, 1), "above")]
    labels = patch_labels(scenes, world.grid, np.array([[[0, 2], [1, 0]]]))
    assert labels[FINE_TARGET].tolist() == [[2, -1, -1, -1, -1, -1, -1, 0, -1]]
    assert FINE_TARGET not in patch_labels(scenes, world.grid)


def test_layer_views_of_a_bare_vision_model_pool_without_projection(tiny_models, world):
    from transformers import CLIPVisionModel

    clip, processor, _, _ = tiny_models
    encoder = CLIPVisionModel(clip.config.vision_config)
    encoder.vision_model.load_state_dict(clip.vision_model.state_dict())
    scenes = sample_scenes(4, world, seed=0)
    pixels = pixel_tensor(render_all(scenes, world, 1), processor.image_processor)
    clip_views, encoder_views = layer_views(clip, pixels), layer_views(encoder.eval(), pixels)
    with torch.no_grad():
        clip_pooled, encoder_pooled = clip.get_image_features(pixel_values=pixels), encoder(pixel_values=pixels)
    assert torch.allclose(clip_views[-1]["pooled embedding"], clip_pooled, atol=1e-5)
    assert torch.allclose(encoder_views[-1]["pooled embedding"], encoder_pooled.pooler_output, atol=1e-5)
    for a, b in zip(clip_views, encoder_views):
        assert torch.equal(a["patch tokens"], b["patch tokens"]) and torch.equal(a["CLS token"], b["CLS token"])
