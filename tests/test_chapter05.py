import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from analysis_lib.chapters import ch05_not_sufficient as ch05
from analysis_lib.data.toyworld import OPPOSITE, RELATION_PHRASES, RELATIONS, caption_with, render_all, sample_scenes
from analysis_lib.models.tiny import LlavaSize, llava_tokenizer, toy_lm
from analysis_lib.training.llm_text_tower import LmTextTower, LmTowerConfig, LmTowerScorer, train_lm_tower
from analysis_lib.training.negclip import NegClipConfig, hard_negative, lock_image_tower, negclip_loss, train_negclip


@pytest.mark.parametrize("relation", RELATIONS)
@pytest.mark.parametrize("prefix", ["", "a photo of "])
def test_hard_negative_swaps_every_relation_for_its_opposite(world, relation, prefix):
    scene = sample_scenes(1, world, seed=0)[0]
    caption = prefix + caption_with(scene, relation=relation)
    assert hard_negative(caption) == prefix + caption_with(scene, relation=OPPOSITE[relation])
    assert hard_negative(hard_negative(caption)) == caption


def test_hard_negative_refuses_a_caption_without_one_relation():
    with pytest.raises(ValueError, match="0 relation phrases"):
        hard_negative("a red circle and a blue square top left")
    assert set(RELATION_PHRASES.values()) == {"left of", "right of", "above", "below"}


def test_negclip_loss_matches_hand_computation_and_leaves_negatives_out_of_text_to_image():
    torch.manual_seed(0)
    images, texts, negatives = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)
    scale = torch.tensor(10.0)
    loss = negclip_loss(images, texts, negatives, scale)
    i, t, n = (F.normalize(x, dim=-1) for x in (images, texts, negatives))
    i2t = -torch.log_softmax(scale * i @ torch.cat([t, n]).T, dim=1).diagonal()  # B x (B + K), gold on the diagonal
    t2i = -torch.log_softmax(scale * t @ i.T, dim=1).diagonal()  # B x B: no negative among the candidates
    assert torch.isclose(loss, (i2t.mean() + t2i.mean()) / 2, atol=1e-6)
    # the negatives enter only the image->text term: changing them moves the loss by exactly that term's change
    other = torch.randn(4, 8)
    moved = negclip_loss(images, texts, other, scale) - loss
    i2t_other = -torch.log_softmax(scale * i @ torch.cat([t, F.normalize(other, dim=-1)]).T, dim=1).diagonal()
    assert torch.isclose(moved, (i2t_other.mean() - i2t.mean()) / 2, atol=1e-6)
    # without negatives it is CLIP's symmetric loss
    plain = negclip_loss(images, texts, torch.empty(0, 8), scale)
    logits = scale * i @ t.T
    target = torch.arange(4)
    assert torch.isclose(plain, (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2)


def test_locked_negclip_changes_only_the_text_side(tiny_models, world):
    clip, processor, _, _ = tiny_models
    model = type(clip)(clip.config)
    model.load_state_dict(clip.state_dict())
    scenes = sample_scenes(32, world, seed=0)
    pixels = processor.image_processor(list(render_all(scenes, world, seed=1)), return_tensors="pt")["pixel_values"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    curve = train_negclip(model, processor, scenes, pixels, NegClipConfig(steps=2, batch_size=8, warmup=1), 0, False)
    after = model.state_dict()
    assert len(curve) == 2 and all(np.isfinite(curve))
    vision = [k for k in after if k.startswith(("vision_model.", "visual_projection."))]
    assert vision and all(torch.equal(before[k], after[k]) for k in vision)
    assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith("text_model."))


def test_lock_image_tower_freezes_vision_and_projection_only(tiny_models):
    clip = type(tiny_models[0])(tiny_models[0].config)
    lock_image_tower(clip)
    frozen = {name for name, p in clip.named_parameters() if not p.requires_grad}
    assert frozen and all(name.startswith(("vision_model.", "visual_projection.")) for name in frozen)
    assert all(p.requires_grad for p in clip.text_model.parameters())


def test_lm_text_tower_reads_the_end_token_and_saves_and_loads(tiny_models, world, tmp_path):
    clip, processor, _, _ = tiny_models
    lm, tokenizer = toy_lm(LlavaSize(width=32, layers=1, heads=2), seed=0)
    tower = LmTextTower(lm, llava_tokenizer(), clip.config.projection_dim).eval()
    texts = ["a red circle left of a blue square", "a blue square"]
    with torch.no_grad():
        batch = tower(texts)
        alone = torch.cat([tower([t]) for t in texts])  # padding must not move the last-token read-out
    assert batch.shape == (2, clip.config.projection_dim) and torch.allclose(batch, alone, atol=1e-5)
    scenes = sample_scenes(16, world, seed=0)
    pixels = processor(images=list(render_all(scenes, world, seed=0)), return_tensors="pt")["pixel_values"]
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    curve = train_lm_tower(tower, clip, pixels, scenes, LmTowerConfig(steps=2, batch_size=8, warmup=1), 0, False)
    assert len(curve) == 2
    assert all(torch.equal(before[k], v) for k, v in clip.state_dict().items())  # the image tower stayed frozen
    tower.save(tmp_path)
    loaded = LmTextTower.load(tmp_path, llava_tokenizer())
    with torch.no_grad():
        assert torch.allclose(loaded(texts), tower.eval()(texts), atol=1e-6)
    pictures = list(render_all(scenes[:2], world, seed=1))
    scores = LmTowerScorer(clip, processor, loaded).score_pairs(pictures, [(0, texts[0]), (1, texts[1])])
    assert scores.shape == (2,) and np.all(np.abs(scores) <= 1 + 1e-6)


def test_the_lm_tower_control_fine_tunes_the_image_tower_and_never_the_clip_text_tower(tiny_models, world):
    clip, processor, _, _ = tiny_models
    clip = type(clip)(clip.config)  # a copy: the fixture is shared
    lm, _ = toy_lm(LlavaSize(width=32, layers=1, heads=2), seed=0)
    tower = LmTextTower(lm, llava_tokenizer(), clip.config.projection_dim)
    scenes = sample_scenes(16, world, seed=0)
    pixels = processor(images=list(render_all(scenes, world, seed=0)), return_tensors="pt")["pixel_values"]
    before = {k: v.clone() for k, v in clip.state_dict().items()}
    cfg = LmTowerConfig(steps=2, batch_size=8, warmup=1, lock_image=False)
    train_lm_tower(tower, clip, pixels, scenes, cfg, 0, False)
    after = clip.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert any(k.startswith("vision_model.") for k in changed)
    assert any(k.startswith("visual_projection.") for k in changed)
    assert not any(k.startswith(("text_model.", "text_projection.", "logit_scale")) for k in changed)
    assert not any(p.requires_grad for p in clip.parameters())  # handed back frozen, ready to score


def _table(means: dict[str, float]) -> pd.DataFrame:
    """A comparison table with relation 4-way ``means`` per condition (every other test at 90%)."""
    table = pd.DataFrame([{"condition": c, "test": t, "mean": means[c] if t == "relation 4-way" else 0.9}
                          for c in ch05.ORDER for t in ch05.TESTS])  # fmt: skip
    return table.assign(ci95_low=table["mean"], ci95_high=table["mean"], **{"per seed": "one seed"})


def test_the_verdict_reads_the_gap_each_variant_closes_and_the_unlocked_lm_tower_control():
    means = {c: 0.25 for c in ch05.ORDER} | {ch05.LLAVA_NAME: 0.95, ch05.NEGCLIP_UNLOCKED: 0.6}
    closed = ch05.gap_closed(_table(means)).set_index("variant")["gap closed"]
    assert closed[ch05.NEGCLIP_UNLOCKED] == pytest.approx(0.5) and closed[ch05.LM_TOWER] == pytest.approx(0.0)
    verdict = ch05.findings(_table(means))
    assert "closes 0% (+0 points against the frozen tower" in verdict and "less than 10 points" in verdict
    helped = ch05.findings(_table(means | {ch05.LM_TOWER_UNLOCKED: 0.46}))
    assert "closes 30% (+30 points against the frozen tower" in helped and "helps the LM text tower too" in helped
