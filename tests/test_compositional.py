"""The toy compositional sets: exported in t2v_metrics' layouts, read back by the paper's loaders, and scored with its
metrics (a bag-of-words scorer can never win a swap)."""

import numpy as np
import pandas as pd
import pytest

from analysis_lib.data.t2v_benchmarks import SUGARCREPE_SUBSETS, load_sugarcrepe, load_winoground
from analysis_lib.data.toy_benchmarks import (
    WINOGROUND_KINDS,
    export_compositional_sets,
    sugarcrepe_captions,
    winoground_pair,
)
from analysis_lib.data.toyworld import WorldConfig, relational_caption, sample_scenes, vocabulary
from analysis_lib.toy import compositional
from analysis_lib.toy.toy_runs import COMPOSITIONAL_TESTS

TESTS_SHOWN = list(COMPOSITIONAL_TESTS.values())


def _words(text: str) -> list[str]:
    return sorted(text.split())


@pytest.mark.parametrize("kind", WINOGROUND_KINDS)
def test_winoground_pairs_hold_the_same_words_in_another_order(kind):
    rng = np.random.default_rng(0)
    for _ in range(20):
        scenes = winoground_pair(kind, WorldConfig(), rng)
        first, second = (relational_caption(s) for s in scenes)
        assert first != second and _words(first) == _words(second)
        if kind == "role swap":  # the objects trade places: each caption is false of the other image
            assert scenes[1].first_cell == scenes[0].first_cell and scenes[1].first == scenes[0].second
        else:  # the same cells, the attributes rebound
            assert (scenes[1].first_cell, scenes[1].second_cell) == (scenes[0].first_cell, scenes[0].second_cell)


def test_sugarcrepe_negatives_change_what_their_subset_says():
    rng, scene = np.random.default_rng(1), sample_scenes(1, WorldConfig(), 0)[0]
    for _ in range(20):
        pairs = {subset: sugarcrepe_captions(subset, scene, rng) for subset in SUGARCREPE_SUBSETS}
        assert all(positive != negative for positive, negative in pairs.values())
        for subset in ("swap_obj", "swap_att"):
            assert _words(pairs[subset][0]) == _words(pairs[subset][1])
        assert pairs["add_obj"][1].startswith(pairs["add_obj"][0] + " and a ")
        assert len(pairs["add_att"][1].split()) == len(pairs["add_att"][0].split()) + 1
        for subset in ("replace_obj", "replace_att"):  # one word replaced
            assert sum(a != b for a, b in zip(*(text.split() for text in pairs[subset]))) == 1
        positive, negative = pairs["replace_rel"]  # the same objects in another relation
        assert negative.startswith(f"a {scene.first.phrase} ") and negative.endswith(f" a {scene.second.phrase}")
        words = {w for pair in pairs.values() for text in pair for w in text.split()}
        assert words <= set(vocabulary())  # every word is one the toy tokenizers know
    with pytest.raises(ValueError, match="unknown SugarCREPE subset"):
        sugarcrepe_captions("swap_rel", scene, rng)


def test_the_exported_sets_load_with_the_papers_loaders():
    root = export_compositional_sets(WorldConfig(), 3, seed=0)
    winoground = load_winoground(root)
    assert len(winoground) == 3 * len(WINOGROUND_KINDS)
    assert [item.tags[1] for item in winoground] == [k for k in WINOGROUND_KINDS for _ in range(3)]
    sugarcrepe = load_sugarcrepe(root)
    assert [item.tags[0] for item in sugarcrepe] == [s for s in SUGARCREPE_SUBSETS for _ in range(3)]
    assert export_compositional_sets(WorldConfig(), 3, seed=0) == root  # exported once


class BagOfWords:
    """Scores a text by its words alone, ignoring the image and the order: fewer words score higher."""

    def score_pairs(self, images, pairs):
        return np.array([-float(len(text.split())) for _, text in pairs])


def test_a_bag_of_words_scorer_never_wins_a_swap_and_the_table_says_so():
    root = export_compositional_sets(WorldConfig(), 4, seed=0)
    metrics = pd.DataFrame(
        compositional.score_compositional({"bag": BagOfWords()}, root, seed=0)
        + compositional.score_compositional({"bag": BagOfWords()}, root, seed=1)
    )
    table = compositional.compositional_table(metrics).set_index("test")
    for kind in WINOGROUND_KINDS:
        for score in ("text", "image", "group"):
            assert table.loc[f"Winoground-style {kind}: {score}", "mean"] == 0.0  # same words: a tie, counted wrong
    assert table.loc["SugarCREPE-style swap_att", "mean"] == 0.0
    assert table.loc["SugarCREPE-style add_obj", "mean"] == 1.0  # the shorter positive caption wins
    assert table.loc["Winoground-style role swap: group", "chance"] == pytest.approx(1 / 6)
    assert table.loc["SugarCREPE-style replace_rel", "chance"] == 0.5
    assert set(table["seeds >= chance + 10 points"]) <= {"0 of 2", "2 of 2"}


def test_chapter_1_targets_count_the_seeds_that_meet_each_one():
    from analysis_lib.chapters import ch01_same_encoder as ch01

    rows = []
    for seed, (clip_swap, llava_swap) in enumerate([(0.5, 0.9), (0.5, 0.6)]):
        values = {("toy Winoground", "text colour swap"): (0.3, 0.9),
                  ("toy Winoground", "group role swap"): (0.1, 0.6),
                  ("toy SugarCREPE", "text swap_att"): (clip_swap, llava_swap),
                  ("toy SugarCREPE", "text replace_att"): (0.95, 0.85)}  # fmt: skip
        for (benchmark, metric), pair in values.items():
            rows += [{"benchmark": benchmark, "metric": metric, "model": model, "seed": seed, "value": v}
                     for model, v in zip((ch01.CLIP_NAME, ch01.LLAVA_NAME), pair)]  # fmt: skip
    targets = ch01.compositional_targets(pd.DataFrame(rows)).set_index("seeds meeting it")
    assert list(targets.index) == ["2 of 2", "2 of 2", "1 of 2", "2 of 2"]
    assert list(targets["met"]) == [True, True, False, True]
    assert targets["value"].iloc[2] == pytest.approx(0.25)  # swap_att: +40 and +10 points
    assert list(targets["per seed"]) == ["+5.0, +5.0", "+50.0, +50.0", "+40.0, +10.0", "85.0%, 85.0%"]


def test_the_findings_say_when_clip_binds_attributes_but_not_roles():
    from analysis_lib.chapters import ch01_same_encoder as ch01

    rows = [{"test": test, "model": model, "mean": 0.9 if model == ch01.LLAVA_NAME or "role" not in test else 0.05}
            for test in dict.fromkeys(TESTS_SHOWN) for model in (ch01.CLIP_NAME, ch01.LLAVA_NAME)]  # fmt: skip
    text = ch01.compositional_findings(pd.DataFrame(rows))
    assert "role swap 5.0% vs 90.0%" in text and "does not show on attributes here" in text
    rows = [{**r, "mean": 0.1} if r["model"] == ch01.CLIP_NAME else r for r in rows]
    assert "does not show on attributes" not in ch01.compositional_findings(pd.DataFrame(rows))
