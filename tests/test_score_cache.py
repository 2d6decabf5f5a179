"""Cached scores: the same as scoring afresh, reused only for the same scorer and inputs, and random generators
left where scoring would have left them."""

import numpy as np
import pytest
import torch
from PIL import Image

from analysis_lib.core.cache import cache_root
from analysis_lib.scoring import score_cache
from analysis_lib.scoring.attribution import patch_attributions


class CountingScorer:
    """Scores = a linear model of the pixel mean plus noise from a generator the model holds."""

    def __init__(self, seed: int = 0, scale: float = 1.0) -> None:
        torch.manual_seed(seed)
        self.model = torch.nn.Linear(1, 1)
        self.model.noise = torch.Generator().manual_seed(seed)
        self.scale, self.calls = scale, 0

    def score_pairs(self, images, pairs) -> np.ndarray:
        self.calls += 1
        means = [float(np.asarray(images[i]).mean()) for i, _ in pairs]
        with torch.no_grad():
            out = self.model(torch.tensor(means).unsqueeze(1)).squeeze(1)
        return (self.scale * out + torch.rand(len(pairs), generator=self.model.noise)).numpy()


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANALYSIS_LIB_CACHE", str(tmp_path))


def _images(value: int = 0) -> list[Image.Image]:
    return [Image.new("RGB", (4, 4), (value, 10, 20)), Image.new("RGB", (4, 4), (200, value, 0))]


PAIRS = [(0, "a"), (1, "a"), (1, "b")]


def _direct(scorer_args: dict, images, pairs) -> np.ndarray:
    """What the scorer gives without any cache, from a fresh instance."""
    return CountingScorer(**scorer_args).score_pairs(images, pairs)


def test_cached_scores_equal_fresh_ones_and_are_reused():
    cold = CountingScorer()
    first = score_cache.cached_scores(cold).score_pairs(_images(), PAIRS)
    np.testing.assert_array_equal(first, _direct({}, _images(), PAIRS))
    warm = CountingScorer()
    again = score_cache.cached_scores(warm).score_pairs(_images(), PAIRS)
    np.testing.assert_array_equal(again, first)
    assert (cold.calls, warm.calls) == (1, 0)


def test_a_hit_leaves_the_generator_where_scoring_would():
    cold, warm = CountingScorer(), CountingScorer()
    score_cache.cached_scores(cold).score_pairs(_images(), PAIRS)
    score_cache.cached_scores(warm).score_pairs(_images(), PAIRS)
    assert warm.calls == 0 and torch.equal(warm.model.noise.get_state(), cold.model.noise.get_state())
    # the next scoring therefore matches a run that never used the cache
    fresh = CountingScorer()
    fresh.score_pairs(_images(), PAIRS)
    np.testing.assert_array_equal(
        score_cache.cached_scores(warm).score_pairs(_images(), PAIRS), fresh.score_pairs(_images(), PAIRS)
    )


@pytest.mark.parametrize(
    ("change", "args"),
    [("other weights", {"seed": 1}), ("other setting", {"scale": 2.0}), ("other pixels", {}), ("other texts", {})],
)
def test_anything_that_changes_a_score_scores_afresh(change, args):
    score_cache.cached_scores(CountingScorer()).score_pairs(_images(), PAIRS)
    images = _images(7) if change == "other pixels" else _images()
    pairs = [(0, "a"), (1, "c")] if change == "other texts" else PAIRS
    scorer = CountingScorer(**args)
    out = score_cache.cached_scores(scorer).score_pairs(images, pairs)
    assert scorer.calls == 1
    np.testing.assert_array_equal(out, _direct(args, images, pairs))


def test_a_scorer_the_key_cannot_describe_is_never_cached(tmp_path):
    scorer = CountingScorer()
    scorer.hook = lambda x: x  # a callable could change the scores in ways no key sees
    for _ in range(2):
        score_cache.cached_scores(scorer).score_pairs(_images(), PAIRS)
    assert scorer.calls == 2 and not (tmp_path / "scores").exists()


def test_library_edits_enter_the_key(monkeypatch):
    cold = CountingScorer()
    score_cache.cached_scores(cold).score_pairs(_images(), PAIRS)
    monkeypatch.setattr(score_cache, "library_fingerprint", lambda: "an edited library")
    edited = CountingScorer()
    score_cache.cached_scores(edited).score_pairs(_images(), PAIRS)
    assert edited.calls == 1


def test_library_functions_are_keyed_by_name_and_others_are_not_cached():
    from analysis_lib.stats.seed_stats import seed_interval

    def local(x):
        return x

    assert score_cache.is_library_function(seed_interval)
    assert not score_cache.is_library_function(local) and not score_cache.is_library_function(lambda x: x)
    scorer = CountingScorer()
    scorer.helper = seed_interval
    score_cache.cached_scores(scorer).score_pairs(_images(), PAIRS)
    again = CountingScorer()
    again.helper = seed_interval
    score_cache.cached_scores(again).score_pairs(_images(), PAIRS)
    assert again.calls == 0


@pytest.mark.parametrize("damage", ["flipped byte", "truncated"])
def test_damaged_cached_scores_are_scored_afresh(tmp_path, damage):
    first = score_cache.cached_scores(CountingScorer()).score_pairs(_images(), PAIRS)
    (stored,) = (tmp_path / "scores").glob(f"*/{score_cache.SCORES}")
    data = bytearray(stored.read_bytes())
    if damage == "flipped byte":
        data[-1] ^= 0x7F  # a wrong score that still loads
    stored.write_bytes(bytes(data if damage == "flipped byte" else data[:50]))
    warm = CountingScorer()
    np.testing.assert_array_equal(score_cache.cached_scores(warm).score_pairs(_images(), PAIRS), first)
    assert warm.calls == 1


class PixelScorer:
    """A scorer with ``pixel_values`` / ``score_batch``: the sigmoid of a linear map of the pixels and the caption."""

    def __init__(self, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model, self.calls = torch.nn.Linear(3 * 4 * 4, 1), 0

    def pixel_values(self, images) -> torch.Tensor:
        return torch.stack(
            [torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1) for image in images]
        )

    def score_batch(self, pixels: torch.Tensor, captions) -> torch.Tensor:
        self.calls += 1
        shift = torch.tensor([len(caption) for caption in captions], dtype=torch.float32)
        return torch.sigmoid(self.model(pixels.flatten(1)).squeeze(1) + shift)


def test_cached_attributions_equal_captums_and_are_reused_only_for_the_same_question():
    images, captions = _images(), ["a", "bb"]
    first = score_cache.cached_attributions(PixelScorer(), images, captions, True, 2)
    direct_scorer = PixelScorer()
    direct = patch_attributions(lambda p: torch.log(direct_scorer.score_batch(p, captions)),
                                direct_scorer.pixel_values(images), 2)  # fmt: skip
    np.testing.assert_allclose(first, direct, rtol=1e-6)
    assert first.shape == (2, 2, 2)
    warm = PixelScorer()
    np.testing.assert_array_equal(score_cache.cached_attributions(warm, images, captions, True, 2), first)
    assert warm.calls == 0
    score_cache.cached_attributions(warm, images, captions, False, 2)  # another function of the pixels
    score_cache.cached_attributions(warm, images, ["a", "b"], True, 2)  # another caption
    score_cache.cached_attributions(PixelScorer(seed=1), images, captions, True, 2)  # other weights
    assert warm.calls > 0 and len(list((cache_root() / "scores").iterdir())) == 4
