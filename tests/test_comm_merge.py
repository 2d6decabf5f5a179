"""COMM variants of the toy LLaVA: the merge projector's maths, its gradients, the features each vision
source feeds, and that a trained variant saved and loaded scores the same; LLaVA-1.5's own spec unchanged."""

import dataclasses

import pytest
import torch
from transformers import CLIPVisionModel

from analysis_lib.data.toyworld import render_all, sample_scenes
from analysis_lib.models.comm_merge import (
    CommLlavaForConditionalGeneration,
    CommProjector,
    TowerPair,
    VisionSource,
    layer_weights,
    with_source,
)
from analysis_lib.models.conversations import conversation_batch, embed_with_features
from analysis_lib.models.features import llava_selected_features, pixel_tensor
from analysis_lib.models.prompts import TOY_FORMAT
from analysis_lib.models.tiny import toy_clip
from analysis_lib.scoring.scorers import VQAScorer
from analysis_lib.toy import pipeline
from analysis_lib.toy.toy_setup import ToySetup, ssl_spec
from analysis_lib.training.clip_llava import fold_standardisation, reinitialise_projector
from analysis_lib.training.ssl_encoder import SSL_TRAIN, smoke_ssl

COMM = VisionSource(merge="comm")
SSL = VisionSource(encoder="ssl")
BOTH = VisionSource(encoder="clip+ssl", merge="comm")
UNTRAINED = VisionSource(encoder="untrained")


@pytest.fixture
def ssl_tower(tiny_models):
    """A CLIPVisionModel of the toy CLIP's vision config with other weights (stands in for the SSL encoder)."""
    torch.manual_seed(7)
    return CLIPVisionModel(tiny_models[2].config.vision_config).eval()


@pytest.fixture
def pixels(tiny_models, world):
    return pixel_tensor(render_all(sample_scenes(3, world, 0), world, 1), tiny_models[1].image_processor)


def _variant(tiny_models, source, ssl_tower):
    return with_source(tiny_models[2], source, ssl_tower if source.second_tower else None, seed=0).eval()


def test_unknown_or_unsupported_sources_are_refused():
    with pytest.raises(ValueError, match="vision encoder"):
        VisionSource(encoder="dino")
    with pytest.raises(ValueError, match="layer merge"):
        VisionSource(merge="mean")
    with pytest.raises(ValueError, match="needs merge='comm'"):
        VisionSource(encoder="clip+ssl")
    with pytest.raises(ValueError, match="ssl_smoke"):
        VisionSource(merge="comm", ssl_smoke=True)


def test_layers_read_per_source():
    assert VisionSource().feature_layer(4) == SSL.feature_layer(4) == -2
    assert COMM.feature_layer(4) == [1, 2, 3, 4]
    assert BOTH.streams(4) == [([1, 2, 3, 4], False), ([8, 9], True)]  # the SSL tower's blocks 3 and 4


def test_one_hot_merge_weights_give_that_layers_path():
    torch.manual_seed(0)
    projector = CommProjector(8, 6, [(3, False)]).eval()
    x = torch.randn(2, 5, 24)
    with torch.no_grad():
        projector.layer_weights[0].copy_(torch.tensor([0.0, 1.0, 0.0]))
        got = projector(x)
        single = projector.norms[1](projector.linear_1(x)[..., 8:16])  # layer 1's Linear block alone + its LN
        assert torch.allclose(got, projector.projector(single), atol=1e-6)
        other = x.clone()
        other[..., :8] += 5.0  # change the layers with zero weight: nothing moves
        other[..., 16:] -= 3.0
        assert torch.allclose(projector(other), got, atol=1e-6)


def test_per_layer_linears_stay_block_diagonal_and_folding_standardisation_is_exact():
    torch.manual_seed(0)
    projector = CommProjector(4, 6, [(2, False), (1, True)])
    model = type("M", (), {})()
    model.model = type("Inner", (), {"multi_modal_projector": projector})()
    off_block = projector.block_mask() == 0
    assert torch.all(projector.linear_1.weight[off_block] == 0)
    x = torch.randn(3, 5, 12) * 2 + 1
    mean, std = x.mean(dim=(0, 1)), x.std(dim=(0, 1))
    with torch.no_grad():
        expected = projector((x - mean) / std)
        fold_standardisation(model, mean, std)
        assert torch.allclose(projector(x), expected, atol=1e-5)


def test_a_restart_initialises_any_projector_afresh_as_its_constructor_does():
    """A restarted training needs a new projector: COMM's merge exactly as a seeded __init__ builds it (block-diagonal
    per-layer linears, every layer weight 1/n); LLaVA's MLP projector each Linear in order, as before COMM existed."""
    torch.manual_seed(1)
    projector = CommProjector(4, 6, [(2, False), (1, True)])
    with torch.no_grad():
        for parameter in projector.parameters():
            parameter.add_(1.0)  # as if trained
    torch.manual_seed(2)
    reinitialise_projector(projector)
    torch.manual_seed(2)
    fresh = CommProjector(4, 6, [(2, False), (1, True)])
    assert all(torch.equal(a, b) for a, b in zip(projector.state_dict().values(), fresh.state_dict().values()))
    assert [w.tolist() for w in projector.layer_weights] == [[0.5, 0.5], [1.0]]
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.GELU(), torch.nn.Linear(6, 6))
    torch.manual_seed(3)
    mlp[0].reset_parameters(), mlp[2].reset_parameters()
    expected = [parameter.clone() for parameter in mlp.parameters()]
    torch.manual_seed(3)
    reinitialise_projector(mlp)
    assert all(torch.equal(a, b) for a, b in zip(mlp.parameters(), expected))


@pytest.mark.parametrize("source", [COMM, BOTH])
def test_merge_weights_and_per_layer_linears_get_gradients_through_a_llava_loss(tiny_models, ssl_tower, pixels, source):
    llava = _variant(tiny_models, source, ssl_tower).train()
    tokenizer = tiny_models[3].tokenizer
    features = llava_selected_features(llava, pixels)
    conversations = [[("what is there?", "a red circle")]] * len(pixels)
    ids, mask, labels = conversation_batch(tokenizer, TOY_FORMAT, conversations, llava.config.image_seq_length)
    loss = llava(inputs_embeds=embed_with_features(llava, ids, features), attention_mask=mask, labels=labels).loss
    loss.backward()
    projector = llava.model.multi_modal_projector
    for weights in projector.layer_weights:
        assert weights.grad is not None and torch.all(weights.grad != 0)
    for norm in projector.norms:
        assert norm.weight.grad.abs().sum() > 0
    grad = projector.linear_1.weight.grad
    mask_ = projector.block_mask()
    assert grad[mask_ == 0].abs().sum() == 0 and grad[mask_ == 1].abs().sum() > 0
    assert all(p.grad is None for p in llava.model.vision_tower.parameters())


def _hidden(tower, pixels):
    return tower(pixels, output_hidden_states=True).hidden_states


@pytest.mark.parametrize("source", [VisionSource(), COMM, SSL, BOTH, UNTRAINED])
def test_each_source_feeds_its_encoders_layers(tiny_models, ssl_tower, pixels, source):
    clip = tiny_models[0]
    llava = _variant(tiny_models, source, ssl_tower)
    with torch.no_grad():
        clip_hidden, ssl_hidden = _hidden(clip.vision_model, pixels), _hidden(ssl_tower, pixels)
        expected = {
            VisionSource(): clip_hidden[-2],
            COMM: torch.cat(clip_hidden[1:], -1),
            SSL: ssl_hidden[-2],
            UNTRAINED: ssl_hidden[-2],  # the fixture's tower stands in for the untrained one
            BOTH: torch.cat([*clip_hidden[1:], *ssl_hidden[-1:]], -1),  # tiny CLIP: 2 blocks, SSL's deeper half = 2
        }[source][:, 1:]
        got = llava_selected_features(llava, pixels)
        assert torch.allclose(got, expected, atol=1e-6)
        through_model = torch.stack(list(llava.model.get_image_features(pixels)))
        assert torch.allclose(through_model, llava.model.multi_modal_projector(got), atol=1e-6)
    tower = llava.model.vision_tower
    if source in (SSL, UNTRAINED):
        assert all(torch.equal(a, b) for a, b in zip(tower.parameters(), ssl_tower.parameters()))
    if source == BOTH:
        assert isinstance(tower, TowerPair)
        assert all(torch.equal(a, b) for a, b in zip(tower.ssl.parameters(), ssl_tower.parameters()))
        assert all(
            torch.equal(a, b) for a, b in zip(tower.clip.vision_model.parameters(), clip.vision_model.parameters())
        )
    assert not any(p.requires_grad for p in tower.parameters())


def test_the_default_source_leaves_the_model_and_its_cache_keys_alone(tiny_models):
    assert with_source(tiny_models[2], VisionSource(), None, seed=0) is tiny_models[2]
    setup = ToySetup()
    assert "vision" not in setup.llava_spec(0) and "vision" not in setup.feature_spec(0, -2)
    comm = dataclasses.replace(setup, vision=COMM)
    source = {"encoder": "clip", "merge": "comm", "ssl_smoke": False}
    assert comm.llava_spec(0) == {**setup.llava_spec(0), "vision": source}
    assert comm.feature_spec(0, [1, 2, 3, 4])["vision"] == source


def test_ssl_sources_are_keyed_by_the_ssl_encoders_spec():
    setup = dataclasses.replace(ToySetup(), vision=SSL)
    assert setup.llava_spec(1)["vision"]["ssl"] == ssl_spec(setup, 1, SSL_TRAIN)
    smoke = dataclasses.replace(setup, vision=dataclasses.replace(SSL, ssl_smoke=True))
    assert smoke.feature_spec(1, -2)["vision"]["ssl"] == ssl_spec(setup, 1, smoke_ssl(SSL_TRAIN))


def _stand_in_ssl(setup, seed, *_args) -> CLIPVisionModel:
    """A random encoder of the toy CLIP's vision config (the real SSL encoder: analysis_lib.training.ssl_encoder)."""
    clip, _ = toy_clip(setup.world, setup.clip_size, seed + 7)
    return CLIPVisionModel(clip.config.vision_config).eval()


@pytest.mark.parametrize("source", [COMM, BOTH])
def test_a_trained_variant_saved_and_loaded_scores_the_same(monkeypatch, source):
    from analysis_lib.toy.toy_recipe import toy_setup

    setup = dataclasses.replace(toy_setup(clip_steps=3, smoke=True), vision=source)
    if source.uses_ssl:  # a stand-in SSL encoder: the real one is trained by analysis_lib.training.ssl_encoder
        monkeypatch.setattr(pipeline, "ssl_tower", _stand_in_ssl)
        monkeypatch.setattr(ToySetup, "vision_spec", lambda self, seed: {"stand-in": True})
    first = pipeline.toy_models(setup, seed=0, progress=False)
    second = pipeline.toy_models(setup, seed=0, progress=False)
    assert first.reused["llava"] is False and second.reused["llava"] is True
    assert isinstance(second.llava, CommLlavaForConditionalGeneration)
    first_state, second_state = first.llava.state_dict(), second.llava.state_dict()
    assert first_state.keys() == second_state.keys()
    assert all(torch.equal(first_state[k], second_state[k]) for k in first_state)
    streams = source.streams(setup.clip_size.vision_layers)
    assert [len(w) for w in layer_weights(second.llava)] == [len(layers) for layers, _ in streams]
    images = list(render_all(sample_scenes(2, setup.world, 5), setup.world, 6))
    pairs = [(0, "a red circle left of a blue square"), (1, "a green cross above a red circle")]
    scores = [
        VQAScorer(m.llava, m.llava_processor, m.prompt_format).score_pairs(images, pairs) for m in (first, second)
    ]
    assert (scores[0] == scores[1]).all()


def test_the_untrained_source_reads_the_toy_clips_initial_tower_and_asks_for_it():
    from analysis_lib.training.ssl_encoder import initial_encoder

    setup = dataclasses.replace(ToySetup(), vision=UNTRAINED)
    tower, initial = pipeline.second_tower(setup, seed=3), initial_encoder(setup.world, setup.clip_size, 3)
    assert all(torch.equal(a, b) for a, b in zip(tower.parameters(), initial.parameters()))
    assert setup.llava_spec(3)["vision"] == {"encoder": "untrained", "merge": "penultimate", "ssl_smoke": False}
    assert pipeline.second_tower(ToySetup(), seed=3) is None
    model = toy_clip(setup.world, setup.clip_size, 0)[0]
    with pytest.raises(ValueError, match="second encoder"):
        with_source(model, UNTRAINED, None, seed=0)
