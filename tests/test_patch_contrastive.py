"""PACL / SPARC losses, heads and RoPE against hand computations on 2-patch, 2-word examples (the paper's code:
lst627/CLIP-Embeds, ``Patch-Aligned-Contrastive-Learning/model/pacl.py``)."""

import math

import numpy as np
import pytest
import torch

from analysis_lib.data.toyworld import render_all, sample_scenes
from analysis_lib.training.patch_contrastive import (
    PatchAligned,
    PatchAlignedScorer,
    PatchHead,
    PatchHeadConfig,
    global_image,
    global_text,
    grouped_patches,
    last_layer_patches,
    load_heads,
    pacl_loss,
    pacl_pooled,
    rope_1d,
    save_heads,
    sparc_local_loss,
    sparc_loss,
    symmetric_infonce,
    text_features,
    train_patch_heads,
)

PATCHES = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[3.0, 0.0], [0.0, 1.0]]])  # 2 images x 2 patches x 2 dims
TEXTS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def cross_entropy(rows: np.ndarray) -> float:
    """Mean cross-entropy of each row against its diagonal entry."""
    return float(np.mean([-(r[i] - np.log(np.exp(r).sum())) for i, r in enumerate(rows)]))


def unit(v: np.ndarray) -> np.ndarray:
    """``v`` over its L2 norm (last axis)."""
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_pacl_pools_each_image_with_its_own_captions_sigmoid_gates_by_hand():
    got = pacl_pooled(PATCHES, TEXTS, 10.0)
    p, t = PATCHES.numpy(), TEXTS.numpy()
    for n in range(2):
        gates = [1 / (1 + np.exp(-10 * (unit(p[n, k]) @ unit(t[n])))) for k in range(2)]
        np.testing.assert_allclose(got[n].numpy(), gates[0] * p[n, 0] + gates[1] * p[n, 1], rtol=1e-6)


def test_pacl_loss_by_hand():
    p, t = PATCHES.numpy(), TEXTS.numpy()
    # image 0, caption 0: gates sigmoid(10), sigmoid(0) = 1/2; image 1, caption 1: sigmoid(0), sigmoid(10)
    s10 = 1 / (1 + np.exp(-10.0))
    pooled = np.stack([s10 * p[0, 0] + 0.5 * p[0, 1], 0.5 * p[1, 0] + s10 * p[1, 1]])
    logits = unit(pooled) @ unit(t).T / 0.1
    want = (cross_entropy(logits) + cross_entropy(logits.T)) / 2
    assert pacl_loss(PATCHES, TEXTS, 0.1, 10.0).item() == pytest.approx(want, rel=1e-5)


def test_symmetric_infonce_by_hand():
    sim = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    logits = sim.double().numpy() / 0.1
    assert symmetric_infonce(sim, 0.1).item() == pytest.approx(
        (cross_entropy(logits) + cross_entropy(logits.T)) / 2, rel=1e-4
    )


def test_sparc_global_embeddings_by_hand():
    np.testing.assert_allclose(global_image(PATCHES).numpy(), unit(PATCHES.numpy().mean(1)), rtol=1e-6)
    words = torch.tensor([[[3.0, 0.0], [0.0, 1.0], [9.0, 9.0]]])
    # the mean of the unit token embeddings over the mask (the padded third token left out)
    np.testing.assert_allclose(global_text(words, torch.tensor([[1, 1, 0]])).numpy(), [[2**-0.5, 2**-0.5]], rtol=1e-6)


def test_sparc_grouping_keeps_only_patches_above_the_threshold():
    words = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one caption, two words
    patches = PATCHES[:1]
    # min-max over 2 patches gives 0 and 1; the threshold 1/2 drops the 0: each word takes its best patch
    torch.testing.assert_close(grouped_patches(patches, words), torch.stack([patches[0, 0], patches[0, 1]])[None])


def test_sparc_local_loss_by_hand_and_padding_ignored():
    words = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    mask = torch.tensor([[1, 1, 0]])
    got = sparc_local_loss(PATCHES[:1], words, mask, 0.5).item()
    grouped = np.array([[1.0, 0.0], [0.0, 1.0]])  # normalised best patches (see above)
    w = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert got == pytest.approx(cross_entropy(grouped @ w.T / 0.5), rel=1e-5)  # symmetric: both directions agree
    words[0, 2] = torch.tensor([-3.0, 7.0])  # the padded word changes nothing
    assert sparc_local_loss(PATCHES[:1], words, mask, 0.5).item() == pytest.approx(got, rel=1e-6)


def test_sparc_loss_is_half_global_infonce_plus_local_by_hand():
    words = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.0], [1.0, 1.0]]])
    mask = torch.tensor([[1, 1], [1, 1]])
    cfg = PatchHeadConfig(loss="sparc", temperature=0.1)
    image = unit(PATCHES.numpy().mean(1))
    text = unit(unit(words.numpy()).mean(1))
    logits = image @ text.T / 0.1
    global_loss = (cross_entropy(logits) + cross_entropy(logits.T)) / 2
    local = sparc_local_loss(PATCHES, words, mask, 0.1).item()
    assert sparc_loss(PATCHES, words, mask, cfg).item() == pytest.approx(0.5 * global_loss + local, rel=1e-5)


def test_rope_is_the_papers_apply_rope_by_hand():
    x = torch.arange(1.0, 13.0).reshape(1, 3, 4)  # 3 positions, width 4: pairs (0, 1) and (2, 3)
    got = rope_1d(x)[0].numpy()
    for p in range(3):
        a0, a1 = p * 1.0, p * 10000 ** (-2 / 4)  # pair i turns by p * 10000^(-2i/d)
        x0, x1, x2, x3 = x[0, p].tolist()
        first = [x0 * math.cos(a0) - x1 * math.sin(a0), x2 * math.cos(a1) - x3 * math.sin(a1)]
        second = [x0 * math.sin(a0) + x1 * math.cos(a0), x2 * math.sin(a1) + x3 * math.cos(a1)]
        np.testing.assert_allclose(got[p], first + second, rtol=1e-5)  # rotated first members, then second
    with pytest.raises(ValueError, match="even"):
        rope_1d(torch.ones(1, 2, 3))


def test_rope_keeps_norms_and_relative_dot_products():
    x = torch.randn(1, 6, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(rope_1d(x).norm(dim=-1), x.norm(dim=-1))
    same = torch.randn(8, generator=torch.Generator().manual_seed(1)).expand(1, 6, 8)
    r = rope_1d(same)[0]
    assert (r[1] @ r[3]).item() == pytest.approx((r[2] @ r[4]).item(), abs=1e-5)  # depends on m - n only
    assert not math.isclose((r[1] @ r[3]).item(), (r[1] @ r[2]).item())


def test_patch_head_adds_a_linear_map_and_an_mlp_in_parallel():
    head = PatchHead(6, 4, 0.1).eval()
    x = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(0))
    normed = head.norm(x)
    torch.testing.assert_close(head(x), head.linear(normed) + head.mlp(normed))
    assert head.mlp[0].in_features == 6 and head.linear.in_features == 6


def test_rope_comes_before_the_heads_layernorm(tiny_models):
    clip, _, _, _ = tiny_models
    heads = PatchAligned(clip, PatchHeadConfig(rope=True)).eval()
    tokens = torch.randn(2, 9, clip.config.vision_config.hidden_size, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(heads.patches(tokens), heads.patch_head(rope_1d(tokens)))


def test_heads_read_what_the_papers_code_reads(tiny_models, world):
    clip, processor, _, _ = tiny_models
    tokens, mask, eot = text_features(clip, processor, ["a red circle", "a blue square left of a red circle"])
    torch.testing.assert_close(
        eot,
        clip.get_text_features(
            **processor.tokenizer(
                ["a red circle", "a blue square left of a red circle"], padding=True, return_tensors="pt"
            )
        ),
    )
    assert tokens.shape[:2] == mask.shape and mask[0].sum() < mask[1].sum()
    pixels = processor.image_processor(list(render_all(sample_scenes(2, world, 0), world, 1)), return_tensors="pt")
    patches = last_layer_patches(clip, pixels["pixel_values"])
    hidden = clip.vision_model(pixels["pixel_values"]).last_hidden_state[:, 1:]
    torch.testing.assert_close(patches, clip.vision_model.post_layernorm(hidden))
    pacl, sparc = PatchAligned(clip, PatchHeadConfig()), PatchAligned(clip, PatchHeadConfig(loss="sparc"))
    assert pacl.text_head.linear.in_features == clip.config.projection_dim
    assert sparc.text_head.linear.in_features == clip.config.text_config.hidden_size


@pytest.mark.parametrize("loss", ["pacl", "sparc"])
def test_heads_save_load_and_score(tiny_models, world, tmp_path, loss):
    clip, processor, _, _ = tiny_models
    cfg = PatchHeadConfig(loss=loss, rope=True)
    heads = PatchAligned(clip, cfg).eval()
    save_heads(heads, cfg, tmp_path)
    loaded = load_heads(clip, tmp_path)
    images = list(render_all(sample_scenes(2, world, 0), world, 1))
    pairs = [(0, "a red circle"), (1, "a blue square"), (0, "a blue square")]
    a = PatchAlignedScorer(clip, processor, heads, "x").score_pairs(images, pairs)
    b = PatchAlignedScorer(clip, processor, loaded, "x").score_pairs(images, pairs)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    with torch.no_grad():
        pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
        image = global_image(heads.patches(last_layer_patches(clip, pixels)))
        text = heads.text_embedding(*text_features(clip, processor, ["a blue square"]))
    assert a[2] == pytest.approx((image[0] @ text[0]).item(), abs=1e-6)  # the cosine of the two embeddings
    assert a.shape == (3,) and np.all(np.abs(a) <= 1 + 1e-6)
    with pytest.raises(ValueError, match="patch-head loss"):
        PatchHeadConfig(loss="clip")


@pytest.mark.parametrize("loss", ["pacl", "sparc"])
def test_training_runs_and_the_loss_is_finite(tiny_models, world, loss):
    clip, processor, _, _ = tiny_models
    scenes = sample_scenes(16, world, 0)
    pixels = processor.image_processor(list(render_all(scenes, world, 1)), return_tensors="pt")["pixel_values"]
    cfg = PatchHeadConfig(loss=loss, rope=True, steps=3, batch_size=8)
    heads, curve = train_patch_heads(clip, processor, scenes, last_layer_patches(clip, pixels), world, cfg, 0, False)
    assert len(curve) == 3 and all(math.isfinite(v) for v in curve) and not heads.training
