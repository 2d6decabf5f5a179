from pathlib import Path

import numpy as np

from analysis_lib.benchmarks import MMVPPair, WhatsUpItem
from analysis_lib.evaluation import mmvp_records, whatsup_records

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
    assert got == {"pair Spatial": 0.5, "pair Color": 1.0, "pair all": 2 / 3}
