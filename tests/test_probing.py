import torch

from analysis_lib.features import pixel_tensor
from analysis_lib.probing import EMPTY, chance_levels, encoder_probes, linear_probe, token_labels
from analysis_lib.toyworld import COLOURS, render_all, sample_scenes


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
