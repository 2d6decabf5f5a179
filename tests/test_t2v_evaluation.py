"""Scoring the other benchmarks through score logs (with resume) and their metric records."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from upstream_fixtures import write_t2v_root

from analysis_lib.data.t2v_benchmarks import T2VItem, load_t2v_benchmarks
from analysis_lib.full import t2v_evaluation as te
from analysis_lib.scoring.evaluation import NoVerdictWarning
from analysis_lib.stats.retrieval_metrics import figure1_aggregate, figure1_inputs


class LevelScorer:
    """Scores a text ``... level N`` by minus the distance of the image's mean red level to N; counts its calls."""

    def __init__(self) -> None:
        self.model = torch.nn.Linear(1, 1)
        self.calls = 0

    def score_pairs(self, images, pairs) -> np.ndarray:
        """Minus |red level - the text's level| per ``(image index, text)``."""
        self.calls += 1
        red = [float(np.asarray(image)[..., 0].mean()) for image in images]
        return np.array([-abs(red[i] - int(text.split()[-1])) for i, text in pairs])


def test_scores_have_t2v_metrics_layout(tmp_path):
    write_t2v_root(tmp_path)
    loaded = load_t2v_benchmarks(tmp_path)
    scores = te.t2v_scores(LevelScorer(), loaded["Winoground"])
    assert scores.shape == (2, 2, 2)
    assert scores[0, 0, 0] > scores[0, 0, 1] and scores[0, 1, 1] > scores[0, 1, 0]  # [item, image, text]
    assert te.t2v_scores(LevelScorer(), loaded["SugarCREPE"]).shape == (7, 1, 2)
    assert te.t2v_scores(LevelScorer(), loaded["SeeTRUE"]).shape == (4, 1, 1)
    with pytest.raises(ValueError, match="same numbers of images and texts"):
        te.item_shape([*loaded["Winoground"], *loaded["SeeTRUE"]])


def test_pair_records_by_hand_with_tags():
    items = [T2VItem((Path("a"), Path("b")), ("x", "y"), ("Object",)),
             T2VItem((Path("c"), Path("d")), ("x", "y"), ("Relation",))]  # fmt: skip
    scores = np.array([[[0.9, 0.1], [0.95, 0.96]], [[0.5, 0.5], [0.1, 0.9]]])  # text only; image only (image 0 tied)
    with pytest.warns(NoVerdictWarning, match="W comparison: 1 of 8 choices"):
        got = {r["metric"]: (r["value"], r["n_units"]) for r in te.pair_records("W", items, scores)}
    assert got["text all"] == (0.5, 2) and got["image all"] == (0.5, 2) and got["group all"] == (0.0, 2)
    assert got["individual all"] == (0.75, 4)  # images: 1, 1 | 0 (tie), 1
    assert got["text Object"] == (1.0, 1) and got["image Relation"] == (1.0, 1) and got["text Relation"] == (0.0, 1)
    assert got["comparison no verdict"] == (1 / 8, 8)


def test_sugarcrepe_and_seetrue_records_by_hand():
    items = [T2VItem((Path("a"),), ("p", "n"), (subset,)) for subset in ("add_obj", "add_obj", "swap_att")]
    got = {r["metric"]: r["value"] for r in te.t2v_records("S", items, np.array([[[2, 1]], [[1, 2]], [[3, 0]]]))}
    assert got == {"text all": 2 / 3, "text add_obj": 0.5, "text swap_att": 1.0, "comparison no verdict": 0.0}
    labelled = [T2VItem((Path("a"),), ("t",), (source,), label)
                for source, label in (("b", 1), ("b", 0), ("a", 1), ("a", 0), ("a", 0))]  # fmt: skip
    scores = np.array([0.9, 0.1, 0.3, 0.5, 0.2]).reshape(5, 1, 1)  # a: .3 vs .5 wrong, .3 vs .2 right -> 1/2
    got = {r["metric"]: (r["value"], r["n_units"]) for r in te.t2v_records("SeeTRUE", labelled, scores)}
    assert got == {"AUC a": (0.5, 3), "AUC b": (1.0, 2), "AUC mean": (0.75, 5)}


def test_score_t2v_benchmarks_scores_all_six_resumes_from_logs_and_feeds_figure1(tmp_path):
    write_t2v_root(tmp_path / "datasets")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "model.bin").write_bytes(b"0")
    scorer = LevelScorer()
    scorers = {"level": (str(tmp_path / "weights"), scorer)}
    metrics = te.score_t2v_benchmarks(scorers, tmp_path / "datasets", tmp_path / "out")
    assert scorer.calls == 6 and set(metrics.model) == {"level"}
    assert len(list((tmp_path / "out" / "scores").rglob("*.part0.jsonl"))) == 6
    accuracy = metrics[metrics.metric.str.startswith(("text", "image", "group", "individual", "AUC"))]
    assert (accuracy.value == 1.0).all()  # every caption names its own image's level
    assert set(metrics.benchmark) == {"Winoground", "NaturalBench", "EqBen-mini", "SeeTRUE", "SugarCREPE",
                                      "COCO-Counterfactuals"}  # fmt: skip

    again = te.score_t2v_benchmarks(scorers, tmp_path / "datasets", tmp_path / "out")
    assert scorer.calls == 6  # every score came from the logs
    pd.testing.assert_frame_equal(again, metrics)

    aggregate = figure1_aggregate(figure1_inputs(metrics)).iloc[0]
    assert aggregate.individual == 1.0 and aggregate.n_individual == 4  # Winoground, NaturalBench, SugarCREPE, SeeTRUE
    assert aggregate.pair == 1.0 and aggregate.n_pair == 2


@pytest.mark.filterwarnings(
    "ignore::analysis_lib.scoring.evaluation.NoVerdictWarning"
)  # the toy vocabulary ties captions
def test_tiny_clip_and_llava_of_the_real_classes_score_all_six(full_setup, tmp_path):
    """The full-scale path: CLIP cosine and LLaVA VQAScore (tiny random weights, saved and loaded back) on every
    benchmark; scores are finite and in range, and a rerun reads them from the logs."""
    from analysis_lib.full.registry import load_scorer

    write_t2v_root(tmp_path / "datasets")
    scorers = {
        label: (spec, load_scorer(spec, device="cpu", batch_size=8))
        for label, spec in (("CLIP", full_setup.clip_model), ("LLaVA", full_setup.llava_model))
    }
    metrics = te.score_t2v_benchmarks(scorers, tmp_path / "datasets", tmp_path / "out", batch_size=4)
    assert set(metrics.model) == {"CLIP", "LLaVA"} and metrics.value.between(0, 1).all()
    logs = sorted((tmp_path / "out" / "scores").rglob("*.jsonl"))
    assert len(logs) == 12
    vqa = [
        json.loads(line)["scores"]
        for log in logs
        if log.parent.name.endswith("llava")
        for line in log.read_text().split("\n")[1:-1]
    ]
    assert all(0 < score <= 1 for row in vqa for score in row)  # exp(-mean cross-entropy)
    again = te.score_t2v_benchmarks(scorers, tmp_path / "datasets", tmp_path / "out", batch_size=4)
    pd.testing.assert_frame_equal(again, metrics)
