"""PACL / SPARC losses and RoPE against hand computations on 2-patch, 2-word examples."""

import math

import numpy as np
import pytest
import torch

from analysis_lib.patch_contrastive import (
    PatchAligned,
    PatchAlignedScorer,
    PatchHeadConfig,
    grouped_patches,
    load_heads,
    pacl_similarity,
    rope_1d,
    save_heads,
    sparc_local_loss,
    symmetric_infonce,
)
from analysis_lib.toyworld import render_all, sample_scenes

PATCHES = torch.tensor([[[1.0, 0.0], [0.0, 2.0]], [[3.0, 0.0], [0.0, 1.0]]])  # 2 images x 2 patches x 2 dims
TEXTS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def test_pacl_similarity_by_hand():
    got = pacl_similarity(PATCHES, TEXTS)
    for n in range(2):
        for t in range(2):
            dots = [float(PATCHES[n, p] @ TEXTS[t]) for p in range(2)]
            w = np.exp(dots) / np.exp(dots).sum()
            pooled = w[0] * PATCHES[n, 0].numpy() + w[1] * PATCHES[n, 1].numpy()
            cos = pooled @ TEXTS[t].numpy() / np.linalg.norm(pooled) / np.linalg.norm(TEXTS[t].numpy())
            assert got[n, t].item() == pytest.approx(cos, abs=1e-6)


def test_symmetric_infonce_by_hand():
    sim = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    logits = sim.double().numpy() / 0.1

    def ce(rows):
        return np.mean([-(r[i] - np.log(np.exp(r).sum())) for i, r in enumerate(rows)])

    assert symmetric_infonce(sim, 0.1).item() == pytest.approx((ce(logits) + ce(logits.T)) / 2, rel=1e-4)


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
    logits = grouped @ w.T / 0.5
    ce = np.mean([-(r[i] - np.log(np.exp(r).sum())) for i, r in enumerate(logits)])
    assert got == pytest.approx(ce, rel=1e-5)  # symmetric here, so both directions agree
    words[0, 2] = torch.tensor([-3.0, 7.0])  # the padded word changes nothing
    assert sparc_local_loss(PATCHES[:1], words, mask, 0.5).item() == pytest.approx(got, rel=1e-6)


def test_rope_rotates_by_position_and_keeps_relative_dot_products():
    x = torch.randn(1, 6, 8, generator=torch.Generator().manual_seed(0))
    rotated = rope_1d(x)
    torch.testing.assert_close(rotated[:, 0], x[:, 0])
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))
    same = torch.randn(8, generator=torch.Generator().manual_seed(1)).expand(1, 6, 8)
    r = rope_1d(same)[0]
    assert (r[1] @ r[3]).item() == pytest.approx((r[2] @ r[4]).item(), abs=1e-5)  # depends on m - n only
    assert not math.isclose((r[1] @ r[3]).item(), (r[1] @ r[2]).item())


def test_heads_save_load_and_score(tiny_models, world, tmp_path):
    clip, processor, _, _ = tiny_models
    cfg = PatchHeadConfig(loss="sparc", rope=True)
    heads = PatchAligned(clip, cfg).eval()
    save_heads(heads, cfg, tmp_path)
    loaded = load_heads(clip, tmp_path)
    images = list(render_all(sample_scenes(2, world, 0), world, 1))
    pairs = [(0, "a red circle"), (1, "a blue square"), (0, "a blue square")]
    a = PatchAlignedScorer(clip, processor, heads, "x").score_pairs(images, pairs)
    b = PatchAlignedScorer(clip, processor, loaded, "x").score_pairs(images, pairs)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert a.shape == (3,) and np.all(np.abs(a) <= 1 + 1e-6)
    with pytest.raises(ValueError, match="patch-head loss"):
        PatchHeadConfig(loss="clip")
