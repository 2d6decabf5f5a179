"""Shared toy-chapter helpers: the scale guard and the ordered variant tables."""

import pandas as pd
import pytest

from analysis_lib.toy_runs import ABOVE_CHANCE, seed_row, show, start_toy_chapter, variant_rows, variant_table


def test_toy_only_chapters_refuse_full_scale_with_the_reason():
    with pytest.raises(ValueError, match=r"chapter 2 runs at scale='toy' only \(got 'full'\): needs retraining"):
        start_toy_chapter("2", "full", 0, "needs retraining")
    assert start_toy_chapter("2", "toy", 0, "") > 0


def test_variant_tables_follow_the_given_order_with_seed_intervals():
    values = {"b": [0.3, 0.52, 0.54], "a": [0.9, 0.92, 0.94]}
    rows = [{"model": "m", "condition": c, "benchmark": "relations", "metric": "4-way individual", "seed": s,
             "value": v} for c, per_seed in values.items() for s, v in enumerate(per_seed)]  # fmt: skip
    metrics = pd.DataFrame(rows)
    assert list(dict.fromkeys(variant_rows(metrics, ["a", "b"]).condition)) == ["a", "b"]
    table = variant_table(metrics, ["a", "b"])
    assert table.condition.tolist() == ["a", "b"] and table["mean"].round(2).tolist() == [0.92, 0.45]
    assert (table.ci95_low < table["mean"]).all() and (table["mean"] < table.ci95_high).all()
    assert table["per seed"][0] == "90.0%, 92.0%, 94.0%" and table.chance.tolist() == [0.25, 0.25]
    assert table[ABOVE_CHANCE].tolist() == ["3 of 3", "2 of 3"]  # 30% is not 10 points above chance
    assert (table.ci95_low >= 0.3).all() and (table.ci95_high <= 0.94).all()  # bootstrap: within the seeds' range
    assert show(table.iloc[1].to_dict()).endswith("2 of 3 at least 10 points above chance)")


def test_seed_row_counts_seeds_above_chance_only_where_there_is_one():
    group = pd.DataFrame({"seed": [2, 0, 1], "value": [0.9, 0.3, 0.36]})
    row = seed_row(group, 0.25)
    assert row["per seed"] == "30.0%, 36.0%, 90.0%" and row[ABOVE_CHANCE] == "2 of 3"  # 35% clears 25% by 10 points
    assert ABOVE_CHANCE not in seed_row(group, None) and seed_row(group, None)["mean"] == pytest.approx(0.52)
