import numpy as np
import pytest

from analysis_lib.stats import metrics as m


def test_option_correct_needs_the_gold_column_uniquely_highest():
    scores = np.array([[0.9, 0.1, 0.2, 0.3], [0.2, 0.5, 0.1, 0.0], [0.4, 0.4, 0.1, 0.1]])
    assert m.option_correct(scores).tolist() == [True, False, False]  # a tie at the top is wrong, not option 0


def test_nan_scores_are_never_correct():
    nan = np.full((3, 4), np.nan)  # argmax of an all-NaN row is 0, the gold option
    assert not m.option_correct(nan).any() and not m.option_correct(nan[:, :2]).any()
    partial = np.array([[np.nan, 0.1, 0.2, 0.3], [0.9, np.nan, 0.1, 0.0], [np.inf, 0.1, 0.2, 0.3]])
    assert not m.option_correct(partial).any()
    assert not m.mmvp_statement_correct(np.full((2, 2, 2), np.nan)).any()


def test_unique_argmax_picks_only_a_unique_finite_top():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.5, 0.1], [0.1, 0.2, 0.2], [np.nan, 0.9, 0.1], [0.3, -np.inf, 0.1]])
    assert m.unique_argmax(scores).tolist() == [1, m.NO_CHOICE, m.NO_CHOICE, m.NO_CHOICE, m.NO_CHOICE]
    assert m.unique_argmax(np.array([[[0.1, 0.3], [0.3, 0.3]]])).tolist() == [[1, m.NO_CHOICE]]


def test_two_way_needs_the_gold_caption_strictly_higher():
    scores = np.array([[0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    assert m.option_correct(scores).tolist() == [True, False, False]  # the paper's s0 > s1: a tie is wrong


def test_pair_and_set_accuracy_by_hand():
    # two object pairs x four relations; pair (dog, table) gets left/right right but misses "under".
    obj_pairs = [("dog", "table")] * 4 + [("cup", "box")] * 4
    relations = ["left_of", "right_of", "on", "under"] * 2
    correct = np.array([1, 1, 1, 0, 1, 0, 1, 1], dtype=bool)
    pair = m.pair_units(obj_pairs, relations, correct)
    # units: dog-h 1, dog-v 0, cup-h 0, cup-v 1 -> 2 of N/2 = 4
    assert sorted(pair.tolist()) == [0, 0, 1, 1]
    assert pair.mean() == pytest.approx(0.5)
    assert m.set_units(obj_pairs, correct).tolist() == [0.0, 0.0]
    assert m.set_units(obj_pairs, np.ones(8, dtype=bool)).mean() == 1.0


def test_incomplete_groups_are_an_error():
    with pytest.raises(ValueError, match="pair accuracy"):
        m.pair_units([("a", "b")], ["left_of"], np.array([True]))


@pytest.mark.parametrize(
    "caption, relation",
    [
        ("A dog to the left of a table", "left_of"),
        ("A dog on a table", "on"),
        ("A mug in front of a plate", "in-front_of"),
        ("a red circle below a blue square", "below"),
        # COCO/GQA-spatial phrasing: one-object positions, two-object relations, GQA-two's "to the behind of"
        ("A photo of a dog on the left", "left"),
        ("A photo of a bus at the bottom", "bottom"),
        ("A photo of a laptop on the top", "top"),
        ("A photo of a cup to the right of a bowl", "right_of"),
        ("A photo of a car to the behind of a tree", "behind"),
        ("A photo of a car to the front of a tree", "in-front_of"),
        ("A bowl on top of a table", "on"),
    ],
)
def test_caption_relation(caption, relation):
    assert m.caption_relation(caption) == relation
    assert m.RELATION_AXIS[relation] == m.RELATION_AXIS[m.OPPOSITE_RELATION[relation]]


@pytest.mark.parametrize("caption", ["A photo of a dog", "A dog on the left of a table on a rug"])
def test_caption_without_exactly_one_relation_is_an_error(caption):
    with pytest.raises(ValueError, match="known relations"):
        m.caption_relation(caption)


def test_two_way_picks_the_opposite_relation():
    options = [
        "A dog on a table",
        "A dog under a table",
        "A dog to the left of a table",
        "A dog to the right of a table",
    ]
    assert m.opposite_option(options, "on") == 1
    shuffled = [
        "A dog to the right of a table",
        "A dog on a table",
        "A dog to the left of a table",
        "A dog under a table",
    ]
    assert m.opposite_option(shuffled, "right_of") == 2


def test_mmvp_pair_accuracy_by_hand():
    # scores[pair, image, statement]; statement 0 belongs to image 0, statement 1 to image 1.
    scores = np.array(
        [
            [[0.9, 0.1], [0.2, 0.8]],  # both right
            [[0.9, 0.7], [0.2, 0.3]],  # statement 1 prefers image 0 -> wrong
            [[0.5, 0.5], [0.5, 0.5]],  # ties: neither image is picked -> both statements wrong
            [[0.2, 0.4], [0.9, 0.4]],  # statement 1 ties, statement 0 prefers image 1 -> both wrong
        ]
    )
    assert m.mmvp_statement_correct(scores).tolist() == [[True, True], [True, False], [False, False], [False, False]]
    assert m.mmvp_pair_units(scores).tolist() == [1.0, 0.0, 0.0, 0.0]
    assert m.mmvp_image_choice(scores).tolist() == [[0, 1], [0, 0], [m.NO_CHOICE] * 2, [1, m.NO_CHOICE]]


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = rng.random(40) < 0.7
    large = rng.random(4000) < 0.7
    lo_s, hi_s = m.bootstrap_ci(small)
    lo_l, hi_l = m.bootstrap_ci(large)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert hi_l - lo_l < hi_s - lo_s
    assert m.bootstrap_ci(np.ones(10)) == (1.0, 1.0)
