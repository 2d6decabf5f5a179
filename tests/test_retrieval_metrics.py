"""The other benchmarks' metrics pinned on hand-computed examples and against t2v_metrics' own formulas."""

import numpy as np
import pandas as pd
import pytest

from analysis_lib.stats.retrieval_metrics import (
    auc_bootstrap_ci,
    auc_by_source,
    figure1_aggregate,
    figure1_inputs,
    roc_auc,
    sugarcrepe_correct,
    winoground_outcomes,
)

# scores[item, image, caption]: [[c0_i0, c1_i0], [c0_i1, c1_i1]] in t2v_metrics' names.
TEXT_NOT_IMAGE = [[0.9, 0.1], [0.95, 0.96]]  # each image prefers its caption; caption 0 prefers image 1
IMAGE_NOT_TEXT = [[0.5, 0.6], [0.1, 0.7]]  # each caption prefers its image; image 0 prefers caption 1
TIED = [[0.5, 0.5], [0.1, 0.9]]  # image 0 ties its captions: no text score
UNSCORED = [[np.nan, 0.1], [0.1, 0.9]]


def _upstream_winoground(scores: np.ndarray) -> dict[str, float]:
    """t2v_metrics' ``get_winoground_scores`` + ``get_winoground_acc``, written out as upstream has them."""
    text = image = group = 0
    for s in scores:
        r = {"c0_i0": s[0][0], "c0_i1": s[1][0], "c1_i0": s[0][1], "c1_i1": s[1][1]}
        t = r["c0_i0"] > r["c1_i0"] and r["c1_i1"] > r["c0_i1"]
        i = r["c0_i0"] > r["c0_i1"] and r["c1_i1"] > r["c1_i0"]
        text, image, group = text + t, image + i, group + (t and i)
    return {"text": text / len(scores), "image": image / len(scores), "group": group / len(scores)}


def test_winoground_text_image_group_by_hand():
    got = winoground_outcomes(np.array([TEXT_NOT_IMAGE, IMAGE_NOT_TEXT, TIED, UNSCORED]))
    assert got["text"].tolist() == [True, False, False, False]
    assert got["image"].tolist() == [False, True, True, False]  # TIED: each caption still prefers its own image
    assert got["group"].tolist() == [False, False, False, False]
    assert got["individual"].tolist() == [[True, True], [False, True], [False, True], [False, True]]


def test_winoground_outcomes_equal_t2v_metrics_formulas():
    scores = np.random.default_rng(0).normal(size=(200, 2, 2)).round(1)  # rounding makes ties
    scores[::17, 0, 1] = np.nan
    got = {name: float(np.mean(values)) for name, values in winoground_outcomes(scores).items() if name != "individual"}
    assert got == _upstream_winoground(scores)


def test_sugarcrepe_positive_strictly_above_negative():
    scores = np.array([[[0.6, 0.4]], [[0.4, 0.4]], [[0.3, 0.4]], [[np.nan, 0.4]]])
    assert sugarcrepe_correct(scores).tolist() == [True, False, False, False]


def test_roc_auc_on_four_items_by_hand():
    labels = [1, 0, 1, 0]
    # positive/negative pairs: (.9,.8) right, (.9,.1) right, (.3,.8) wrong, (.3,.1) right -> 3/4
    assert roc_auc(labels, [0.9, 0.8, 0.3, 0.1]) == 0.75
    # (.8,.8) a tie counts half: (0.5 + 1 + 0 + 1) / 4
    assert roc_auc(labels, [0.8, 0.8, 0.3, 0.1]) == 0.625
    # a NaN positive ranks below every negative: (0 + 0 + 0 + 1) / 4
    assert roc_auc(labels, [np.nan, 0.8, 0.3, 0.1]) == 0.25
    assert roc_auc(labels, [0.9, np.nan, 0.3, 0.1]) == 0.5  # a NaN negative ranks above every positive: (0+1+0+1)/4
    with pytest.raises(ValueError, match="needs positive and negative items; got 2 positive, 0 negative"):
        roc_auc([1, 1], [0.2, 0.3])


def test_auc_by_source_sorted_as_pandas_groupby():
    table = auc_by_source(
        [1, 0, 1, 0, 1, 0], [0.9, 0.1, 0.2, 0.8, 0.5, 0.5], ["pick", "pick", "coco", "coco", "d", "d"]
    )
    assert table.dataset_source.tolist() == ["coco", "d", "pick"]
    assert table.roc_auc.tolist() == [0.0, 0.5, 1.0]
    assert table[["num_samples", "num_pos", "num_neg"]].values.tolist() == [[2, 1, 1]] * 3
    assert table[["auc_low", "auc_high"]].values.tolist() == [[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]]  # one item a side


def test_auc_bootstrap_ci_brackets_the_auc():
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(40, int), np.zeros(40, int)]
    scores = rng.normal(size=80) + labels
    low, high = auc_bootstrap_ci(labels, scores, n_resamples=500)
    assert low < roc_auc(labels, scores) < high and 0 <= low and high <= 1


def test_figure1_averages_individual_over_benchmarks_and_pair_over_those_with_pairs():
    rows = [
        ("CLIP", "Controlled-A", "2-way individual", 0.6), ("CLIP", "Controlled-A", "2-way pair", 0.2),
        ("CLIP", "Controlled-B", "2-way individual", 0.4), ("CLIP", "Controlled-B", "2-way pair", 0.0),
        ("CLIP", "Winoground", "individual all", 0.7), ("CLIP", "Winoground", "text all", 0.3),
        ("CLIP", "SugarCREPE", "text all", 0.8), ("CLIP", "SeeTRUE", "AUC mean", 0.6),
        ("CLIP", "MMVP-VLM", "statement all", 0.5), ("CLIP", "MMVP-VLM", "pair all", 0.2),
        ("LLaVA", "Winoground", "individual all", 0.9), ("LLaVA", "Winoground", "text all", 0.8),
    ]  # fmt: skip
    metrics = pd.DataFrame(rows, columns=["model", "benchmark", "metric", "value"])
    inputs = figure1_inputs(metrics)
    whatsup = inputs[(inputs.model == "CLIP") & (inputs.group == "What'sUp")].iloc[0]
    assert (whatsup.individual, whatsup.pair) == pytest.approx((0.5, 0.1))  # A and B averaged first
    got = figure1_aggregate(inputs).set_index("model")
    # CLIP individual: What'sUp .5, Winoground .7, SugarCREPE .8, SeeTRUE .6, MMVP .5 -> 3.1 / 5
    # CLIP pair: What'sUp .1, Winoground .3, MMVP .2 -> 0.6 / 3
    assert got.loc["CLIP", "individual"] == pytest.approx(3.1 / 5) and got.loc["CLIP", "n_individual"] == 5
    assert got.loc["CLIP", "pair"] == pytest.approx(0.6 / 3) and got.loc["CLIP", "n_pair"] == 3
    assert got.loc["LLaVA"].tolist() == pytest.approx([0.9, 0.8, 1, 1])
    with pytest.raises(ValueError, match=r"Winoground \(CLIP\) lacks the metric\(s\) \['text all'\]"):
        figure1_inputs(metrics[metrics.metric != "text all"])  # SugarCREPE then has no rows: left out
