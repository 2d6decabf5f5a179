"""Each image-token variant changes exactly what it says: the tokens the projector gets, the position ids
that reach the language model, or the ViT's position table; test-time ablations restore everything."""

import pytest
import torch

from analysis_lib.data.toyworld import render_all, sample_scenes
from analysis_lib.models.features import pixel_tensor
from analysis_lib.models.image_tokens import (
    ImageTokens,
    ablated_at_test,
    apply_variant,
    image_position_ids,
    model_variant,
)
from analysis_lib.models.prompts import TOY_FORMAT
from analysis_lib.models.tiny import LlavaSize, toy_llava_from_clip
from analysis_lib.scoring.scorers import VQAScorer

IMAGE = 7


def test_equal_and_permuted_positions_touch_only_image_tokens():
    ids = torch.tensor([[1, 2, IMAGE, IMAGE, IMAGE, 3, 4], [0, 1, 2, IMAGE, IMAGE, IMAGE, 3]])
    base = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [0, 0, 0, 1, 2, 3, 4]])  # row 2: left padding
    equal = image_position_ids(ids, IMAGE, "equal", base)
    assert equal.tolist() == [[0, 1, 2, 2, 2, 5, 6], [0, 0, 0, 1, 1, 1, 4]]
    permuted = image_position_ids(ids, IMAGE, "permuted", base, torch.Generator().manual_seed(3))
    is_image = ids == IMAGE
    assert torch.equal(permuted[~is_image], base[~is_image])
    for row in range(2):
        assert sorted(permuted[row][is_image[row]].tolist()) == sorted(base[row][is_image[row]].tolist())
    assert torch.equal(image_position_ids(ids, IMAGE, "raster", base), base)


def test_unknown_variant_names_are_refused():
    with pytest.raises(ValueError, match="image tokens"):
        ImageTokens(tokens="pooled")
    with pytest.raises(ValueError, match="image positions"):
        ImageTokens(positions="reversed")


def _fresh_llava(tiny_models, variant: ImageTokens):
    clip, clip_processor, _, _ = tiny_models
    llava, processor = toy_llava_from_clip(clip, clip_processor, LlavaSize(width=32, layers=2, heads=2), seed=0)
    return apply_variant(llava.eval(), variant), processor


@pytest.fixture
def pixels(tiny_models, world):
    return pixel_tensor(render_all(sample_scenes(2, world, 0), world, 1), tiny_models[1].image_processor)


@pytest.mark.parametrize("tokens", ["patches", "cls", "mean", "cls+patches"])
def test_the_projector_receives_the_variants_tokens(tiny_models, pixels, tokens):
    llava, _ = _fresh_llava(tiny_models, ImageTokens(tokens=tokens))
    hidden = llava.model.vision_tower(pixels, output_hidden_states=True).hidden_states[-2]
    expected = {"patches": hidden[:, 1:], "cls": hidden[:, :1], "mean": hidden[:, 1:].mean(1, keepdim=True),
                "cls+patches": hidden}[tokens]  # fmt: skip
    with torch.no_grad():
        got = torch.stack(list(llava.model.get_image_features(pixels)))
        want = llava.model.multi_modal_projector.linear_2(
            llava.model.multi_modal_projector.act(llava.model.multi_modal_projector.linear_1(expected))
        )
    assert got.shape[1] == llava.config.image_seq_length == expected.shape[1]
    torch.testing.assert_close(got, want)


def _positions_reaching_lm(llava, processor, pixels) -> list[torch.Tensor]:
    """Score two captions and record the position ids the language model receives."""
    seen = []
    hook = llava.model.language_model.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(kwargs["position_ids"].clone()), with_kwargs=True
    )
    scorer = VQAScorer(llava, processor, TOY_FORMAT, prefix_cache=False)
    scorer.score_pairs(list(pixels.new_zeros(2, 24, 24, 3).byte().numpy()), [(0, "a red circle"), (1, "a cross")])
    hook.remove()
    return seen


def test_position_ids_reaching_the_lm_follow_the_variant(tiny_models, pixels):
    image_id = tiny_models[2].config.image_token_index
    usual, processor = _fresh_llava(tiny_models, ImageTokens())
    equal, _ = _fresh_llava(tiny_models, ImageTokens(positions="equal"))
    base, flat = (
        _positions_reaching_lm(usual, processor, pixels)[0],
        _positions_reaching_lm(equal, processor, pixels)[0],
    )
    ids = VQAScorer(usual, processor, TOY_FORMAT).input_batch(["a red circle", "a cross"])["input_ids"]
    is_image = ids == image_id
    assert torch.equal(flat[~is_image], base[~is_image])
    for row in range(len(ids)):
        assert len(set(flat[row][is_image[row]].tolist())) == 1
        assert len(set(base[row][is_image[row]].tolist())) == int(is_image[row].sum())


def test_zeroed_vit_positions_and_test_time_ablations_restore_the_model(tiny_models, pixels):
    zeroed, _ = _fresh_llava(tiny_models, ImageTokens(vit_positions=False))
    assert zeroed.model.vision_tower.vision_model.embeddings.position_embedding.weight.abs().sum() == 0
    usual, _ = _fresh_llava(tiny_models, ImageTokens())
    table = usual.model.vision_tower.vision_model.embeddings.position_embedding.weight
    before = table.detach().clone()
    with torch.no_grad():
        plain = torch.stack(list(usual.model.get_image_features(pixels)))
        with ablated_at_test(usual, positions="permuted", vit_positions=False):
            assert model_variant(usual).positions == "permuted" and table.abs().sum() == 0
            ablated = torch.stack(list(usual.model.get_image_features(pixels)))
        again = torch.stack(list(usual.model.get_image_features(pixels)))
    assert not torch.allclose(plain, ablated)
    torch.testing.assert_close(plain, again)
    assert torch.equal(table, before) and model_variant(usual) == ImageTokens()


def test_shuffled_order_at_test_permutes_each_images_tokens_and_is_keyed_and_undone(tiny_models, pixels):
    from analysis_lib.models.image_tokens import SHUFFLE_KEY
    from analysis_lib.scoring.score_cache import scorer_fingerprint

    usual, processor = _fresh_llava(tiny_models, ImageTokens())
    scorer = VQAScorer(usual, processor, TOY_FORMAT, prefix_cache=False)
    plain_key = scorer_fingerprint(scorer)
    with torch.no_grad():
        plain = torch.stack(list(usual.model.get_image_features(pixels)))
        with ablated_at_test(usual, shuffle_order=True):
            assert scorer_fingerprint(scorer) != plain_key  # a cached score of the usual order is never reused
            shuffled = torch.stack(list(usual.model.get_image_features(pixels)))
        again = torch.stack(list(usual.model.get_image_features(pixels)))
    assert not torch.allclose(plain, shuffled)
    for row in range(len(plain)):  # the same tokens, in another order
        torch.testing.assert_close(plain[row].sort(0).values, shuffled[row].sort(0).values)
    torch.testing.assert_close(plain, again)
    assert not hasattr(usual.config, SHUFFLE_KEY)  # (the key differs still: the shuffle drew from its generator)
