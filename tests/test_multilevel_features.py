import pytest
import torch
from transformers import CLIPVisionModel, Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel

from analysis_lib.full.registry import UnsupportedModelError, load_scorer, load_vision_encoder
from analysis_lib.models.features import encode_images
from analysis_lib.models.multilevel_features import multilevel_features

TINY = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, mlp_ratio=2, image_size=28, patch_size=14)


def _tiny(registers: int) -> Dinov2Model | Dinov2WithRegistersModel:
    torch.manual_seed(0)
    if registers:
        return Dinov2WithRegistersModel(Dinov2WithRegistersConfig(num_register_tokens=registers, **TINY)).eval()
    return Dinov2Model(Dinov2Config(**TINY)).eval()


@pytest.mark.parametrize("registers", [0, 4])
def test_dinov2_saved_and_loaded_by_folder_gives_the_patch_tokens_of_each_layer(tmp_path, registers):
    _tiny(registers).save_pretrained(tmp_path / "dino")
    model = load_vision_encoder(str(tmp_path / "dino"), device="cpu")
    assert type(model) is type(_tiny(registers))
    pixels = torch.randn(2, 3, 28, 28)
    features = multilevel_features(model, pixels, [0, 1, -1])
    assert [f.shape for f in features] == [torch.Size([2, 4, 32])] * 3
    with torch.no_grad():  # layer 0 = patch embeddings + their position codes: CLS and registers dropped
        patches = model.embeddings.patch_embeddings(pixels) + model.embeddings.position_embeddings[:, 1:]
        hidden = model(pixel_values=pixels, output_hidden_states=True).hidden_states
    assert torch.allclose(features[0], patches, atol=1e-6)
    assert torch.equal(features[2], hidden[3][:, 1 + registers :]) and not torch.equal(features[1], features[2])


def test_clip_vision_layers_match_llava_feature_selection(tiny_models, world):
    clip, processor, _, _ = tiny_models
    encoder = CLIPVisionModel(clip.config.vision_config)
    encoder.vision_model.load_state_dict(clip.vision_model.state_dict())
    pixels = torch.randn(3, 3, world.image_size, world.image_size)
    (features,) = multilevel_features(encoder.eval(), pixels, [-2])
    assert features.shape[1] == world.grid**2
    assert torch.allclose(features, encode_images(encoder, pixels, -2, "default"))


def test_bad_layers_and_models_say_what_to_pass(tiny_models, tmp_path):
    model = _tiny(0)
    with pytest.raises(ValueError, match=r"layers \[4\] invalid for an encoder of 3 layers"):
        multilevel_features(model, torch.randn(1, 3, 28, 28), [4])
    with pytest.raises(TypeError, match="vision tower"):
        multilevel_features(tiny_models[0], torch.randn(1, 3, 28, 28), [1])
    model.save_pretrained(tmp_path / "dino")
    with pytest.raises(UnsupportedModelError, match="load_vision_encoder"):
        load_scorer(str(tmp_path / "dino"))
