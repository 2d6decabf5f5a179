from pathlib import Path

import numpy as np
import pytest

from analysis_lib.data.benchmarks import MMVPPair, WhatsUpItem
from analysis_lib.scoring.evaluation import NoVerdictWarning, mmvp_records, whatsup_records

RELS = {"left_of": "left of", "right_of": "right of", "above": "above", "below": "below"}


def _item(obj1: str, relation: str, obj2: str) -> WhatsUpItem:
    gold = f"a {obj1} {RELS[relation]} a {obj2}"
    others = [f"a {obj1} {p} a {obj2}" for r, p in RELS.items() if r != relation]
    return WhatsUpItem(Path(f"{obj1}_{relation}_{obj2}.png"), (gold, *others), obj1, relation, obj2)


def test_whatsup_records_by_hand():
    items = [_item("dog", r, "table") for r in RELS]
    # dog/table: left right (gold top), right_of picks "left of" (opposite), above right, below picks "left of".
    scores = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0.5]], dtype=float)
    got = {r["metric"]: r["value"] for r in whatsup_records(items, scores, "relations")}
    assert got["4-way individual"] == 0.5
    assert got["4-way axis"] == 0.75  # the below image chose "left of": wrong axis
    assert got["2-way individual"] == 0.5  # 2-way keeps gold and the opposite relation
    assert got["2-way pair"] == 0.0 and got["4-way set"] == 0.0
    assert got["4-way left_of"] == 1.0 and got["4-way right_of"] == 0.0


def test_mmvp_records_per_pattern():
    pairs = [MMVPPair("Spatial", (1, 2), (Path("a"), Path("b")), ("s1", "s2"))] * 2
    pairs += [MMVPPair("Color", (5, 6), (Path("c"), Path("d")), ("s3", "s4"))]
    scores = np.array([[[0.9, 0.1], [0.1, 0.9]], [[0.9, 0.9], [0.1, 0.1]], [[0.2, 0.1], [0.1, 0.3]]])
    got = {r["metric"]: r["value"] for r in mmvp_records(pairs, scores, "pairs")}
    assert got == {
        "pair Spatial": 0.5,
        "pair Color": 1.0,
        "pair all": 2 / 3,
        "statement all": 5 / 6,  # only the second pair's second statement picks the wrong image
        "statement no verdict": 0.0,
    }


CONTROLLED_A = {"left_of": "to the left of", "right_of": "to the right of", "on": "on", "under": "under"}


def _controlled_a(obj1: str, relation: str, obj2: str) -> WhatsUpItem:
    """A Controlled-A item: gold caption, then the other three in the order left_of, right_of, on, under."""
    order = [relation, *(r for r in CONTROLLED_A if r != relation)]
    captions = tuple(f"A {obj1} {CONTROLLED_A[r]} a {obj2}" for r in order)
    return WhatsUpItem(Path(f"{obj1}_{relation}_{obj2}.jpeg"), captions, obj1, relation, obj2)


def test_controlled_a_metrics_by_hand():
    items = [_controlled_a(o1, r, o2) for o1, o2 in (("mug", "plate"), ("dog", "table")) for r in CONTROLLED_A]
    # Columns: left_of/right_of images hold [gold, other horizontal, on, under] -> opposite at column 1;
    # on images hold [on, left, right, under] and under images [under, left, right, on] -> opposite at column 3.
    scores = np.array(
        [
            [0.9, 0.1, 0.0, 0.0],  # mug left_of:  4-way ok;            2-way 0.9 > 0.1 ok
            [0.3, 0.5, 0.1, 0.0],  # mug right_of: 4-way no (col 1);    2-way 0.3 < 0.5 no
            [0.4, 0.6, 0.0, 0.2],  # mug on:       4-way no ("left");   2-way 0.4 > 0.2 ok
            [0.7, 0.0, 0.0, 0.1],  # mug under:    4-way ok;            2-way 0.7 > 0.1 ok
            [0.2, 0.1, 0.5, 0.0],  # dog left_of:  4-way no ("on");     2-way 0.2 > 0.1 ok
            [0.6, 0.2, 0.1, 0.1],  # dog right_of: 4-way ok;            2-way ok
            [0.5, 0.1, 0.1, 0.4],  # dog on:       4-way ok;            2-way 0.5 > 0.4 ok
            [0.3, 0.1, 0.2, 0.25],  # dog under:   4-way ok;            2-way 0.3 > 0.25 ok
        ]
    )
    got = {r["metric"]: (r["value"], r["n_units"]) for r in whatsup_records(items, scores, "Controlled-A")}
    # 4-way correct 1,0,0,1 | 0,1,1,1 -> 5/8. 2-way correct 1,0,1,1 | 1,1,1,1 -> 7/8.
    assert got["4-way individual"] == (5 / 8, 8) and got["2-way individual"] == (7 / 8, 8)
    # 2-way pair units (N/2 = 4): mug left/right 1,0 -> 0; mug on/under 1,1 -> 1; dog 1,1 -> 1; dog 1,1 -> 1 => 3/4.
    # 2-way set units (N/4 = 2): mug has a miss -> 0; dog all four -> 1 => 1/2.
    assert got["2-way pair"] == (3 / 4, 4) and got["2-way set"] == (1 / 2, 2)
    # 4-way pair: mug 1,0 -> 0; mug 0,1 -> 0; dog 0,1 -> 0; dog 1,1 -> 1 => 1/4. 4-way set: no pair all correct => 0.
    assert got["4-way pair"] == (1 / 4, 4) and got["4-way set"] == (0.0, 2)
    # 4-way axis: the mug-on image chose "left" and the dog-left_of image chose "on" (wrong axis) => 6/8.
    assert got["4-way axis"] == (6 / 8, 8)
    # per relation, over the two object pairs: 2-way right_of 0,1, the rest 1,1; 4-way under 1,1, the rest one miss.
    assert [got[f"2-way {r}"][0] for r in CONTROLLED_A] == [1.0, 0.5, 1.0, 1.0]
    assert [got[f"4-way {r}"][0] for r in CONTROLLED_A] == [0.5, 0.5, 0.5, 1.0]


def test_coco_gqa_records_are_individual_and_per_relation_only():
    items = [
        WhatsUpItem(Path(f"{i}.jpg"), (gold, "wrong"), "", relation, "")
        for i, (gold, relation) in enumerate(
            [("a dog on the left", "left"), ("a dog on the right", "right"), ("a dog", "unknown"), ("a cat", "left")]
        )
    ]
    scores = np.array([[0.6, 0.4], [0.2, 0.8], [0.7, 0.3], [0.1, 0.9]])  # right, wrong, right, wrong
    got = {r["metric"]: r["value"] for r in whatsup_records(items, scores, "COCO-one", grouped=False)}
    assert got == {"2-way individual": 0.5, "2-way no verdict": 0.0, "2-way left": 0.5, "2-way right": 0.0,
                   "2-way unknown": 1.0}  # fmt: skip


def test_mmvp_vlm_softmax_rule_by_hand():
    # CLIP logits 100 * cos; scores[pair, image, statement]. Statement j's gold is image j; the first image is
    # predicted when softmax over the two images gives it p > 0.5, i.e. p = 1 / (1 + exp(-(s_img0 - s_img1))).
    cos = np.array(
        [
            [[0.30, 0.25], [0.28, 0.26]],  # s0: p = 1/(1+e^-2) = .88 -> img0 ok; s1: p = 1/(1+e^1) = .27 -> img1 ok
            [[0.40, 0.10], [0.10, 0.40]],  # s0: p = .99997 ok; s1: p = .00003 ok          -> pair right
            [[0.22, 0.10], [0.22, 0.20]],  # s0: p = 0.5 exactly: a tie, no verdict, wrong -> pair wrong
            [[0.31, 0.29], [0.30, 0.27]],  # s0: p = .73 ok; s1: p = 1/(1+e^-2) = .88 -> img0, wrong -> pair wrong
        ]
    )
    pairs = [
        MMVPPair(kind, (2 * i + 1, 2 * i + 2), (Path("a"), Path("b")), ("s", "t"))
        for i, kind in enumerate(["Orientation", "Orientation", "Presence", "Presence"])
    ]
    with pytest.warns(NoVerdictWarning, match="1 of 8"):
        got = {r["metric"]: r["value"] for r in mmvp_records(pairs, 100 * cos, "MMVP-VLM")}
    assert got == {
        "pair Orientation": 1.0,
        "pair Presence": 0.0,
        "pair all": 0.5,
        "statement all": 6 / 8,  # the tie and the last pair's second statement are wrong
        "statement no verdict": 1 / 8,
    }
    p_first = 1 / (1 + np.exp(-(100 * cos[:, 0, :] - 100 * cos[:, 1, :])))
    assert p_first[2, 0] == 0.5 and np.allclose(p_first[0], [1 / (1 + np.exp(-2)), 1 / (1 + np.exp(1))])


def test_nan_and_tied_whatsup_scores_count_wrong_and_are_reported():
    items = [_controlled_a(o1, r, o2) for o1, o2 in (("mug", "plate"), ("dog", "table")) for r in CONTROLLED_A]
    with pytest.warns(NoVerdictWarning) as caught:
        records = whatsup_records(items, np.full((8, 4), np.nan), "Controlled-A")
    assert [str(w.message) for w in caught] == [
        f"Controlled-A {way}: 8 of 8 choices had a NaN or tied top score; counted wrong" for way in ("4-way", "2-way")
    ]
    got = {r["metric"]: (r["value"], r["n_units"]) for r in records}
    assert got["4-way individual"] == (0.0, 8) and got["2-way individual"] == (0.0, 8)  # was 100% (argmax -> 0)
    assert got["4-way no verdict"] == (1.0, 8) and got["2-way no verdict"] == (1.0, 8)
    assert got["4-way axis"] == (0.0, 8) and got["4-way set"] == (0.0, 2)
    tied = np.tile([0.5, 0.5, 0.1, 0.5], (8, 1))  # gold tied with the 2-way opposite (column 1 or 3) too
    with pytest.warns(NoVerdictWarning) as caught:
        got = {r["metric"]: r["value"] for r in whatsup_records(items, tied, "Controlled-A")}
    assert len(caught) == 2 and all("8 of 8" in str(w.message) for w in caught)
    assert got["4-way individual"] == 0.0 and got["2-way individual"] == 0.0 and got["4-way no verdict"] == 1.0


def test_tied_mmvp_statements_count_wrong_and_are_reported():
    pairs = [MMVPPair("Spatial", (1, 2), (Path("a"), Path("b")), ("s1", "s2"))] * 2
    scores = np.array([[[0.9, 0.1], [0.1, 0.9]], [[0.5, 0.5], [0.5, 0.5]]])  # the second pair ties both statements
    with pytest.warns(NoVerdictWarning, match="pairs statement: 2 of 4 choices"):
        got = {r["metric"]: (r["value"], r["n_units"]) for r in mmvp_records(pairs, scores, "pairs")}
    assert got["pair all"] == (0.5, 2) and got["statement no verdict"] == (0.5, 4)
