import torch
from transformers import CLIPModel, LlavaForConditionalGeneration, LlavaProcessor

from analysis_lib.data.toyworld import render_all, sample_scenes
from analysis_lib.models.features import llava_selected_features, pixel_tensor, select_features
from analysis_lib.toy.pipeline import toy_models
from analysis_lib.toy.toy_setup import ToySetup
from analysis_lib.training.clip_llava import fold_standardisation


def test_llava_vision_tower_is_clips_frozen_vision_model(tiny_models):
    clip, _, llava, _ = tiny_models
    clip_state = clip.vision_model.state_dict()
    tower_state = llava.model.vision_tower.vision_model.state_dict()
    assert clip_state.keys() == tower_state.keys()
    assert all(torch.equal(clip_state[k], tower_state[k]) for k in clip_state)
    assert not any(p.requires_grad for p in llava.model.vision_tower.parameters())
    assert llava.config.vision_feature_layer == -2 and llava.config.vision_feature_select_strategy == "default"


def test_cached_features_through_projector_match_llava(tiny_models, world):
    _, clip_processor, llava, _ = tiny_models
    pixels = pixel_tensor(render_all(sample_scenes(4, world, 0), world, 1), clip_processor.image_processor)
    features = llava_selected_features(llava, pixels)
    assert features.shape == (4, world.grid**2, llava.config.vision_config.hidden_size)
    with torch.no_grad():
        expected = torch.stack(list(llava.model.get_image_features(pixels)))
        got = llava.model.multi_modal_projector(features)
    assert torch.allclose(got, expected.view_as(got), atol=1e-5)
    hidden = (torch.zeros(1, 10, 3), torch.ones(1, 10, 3))
    assert select_features(hidden, -1, "full").shape == (1, 10, 3)


def test_folding_standardisation_is_exact(tiny_models):
    _, _, llava, _ = tiny_models
    projector = llava.model.multi_modal_projector
    x = torch.randn(2, 9, projector.linear_1.in_features) * 3 + 1
    mean, std = x.mean(dim=(0, 1)), x.std(dim=(0, 1))
    with torch.no_grad():
        expected = projector((x - mean) / std)
        saved = {k: v.clone() for k, v in projector.state_dict().items()}
        fold_standardisation(llava, mean, std)
        got = projector(x)
        projector.load_state_dict(saved)
    assert torch.allclose(got, expected, atol=1e-4)


def test_toy_models_train_save_and_reload_from_cache(world):
    from analysis_lib.toy.toy_recipe import toy_setup

    setup: ToySetup = toy_setup(clip_steps=3, smoke=True)
    first = toy_models(setup, seed=0, progress=False)
    assert first.reused == {"clip": False, "lm": False, "llava": False}
    assert (first.folders["llava"] / "model.safetensors").is_file()
    assert isinstance(LlavaProcessor.from_pretrained(first.folders["llava"]), LlavaProcessor)
    second = toy_models(setup, seed=0, progress=False)
    assert second.reused == {"clip": True, "lm": True, "llava": True}
    for a, b in zip(first.llava.parameters(), second.llava.parameters()):
        assert torch.equal(a, b)
    other_seed = toy_models(setup, seed=1, progress=False)
    assert other_seed.folders["clip"] != first.folders["clip"]
    reloaded = CLIPModel.from_pretrained(first.folders["clip"])
    tower = LlavaForConditionalGeneration.from_pretrained(first.folders["llava"]).model.vision_tower.vision_model
    assert all(torch.equal(a, b) for a, b in zip(reloaded.vision_model.parameters(), tower.parameters()))
