"""The toy encoders' probe summaries: the fine-grained reading names the layers and seeds that carry it."""

import pandas as pd

from analysis_lib.scoring.probing import FINE_TARGET
from analysis_lib.toy.layer_probes import fine_reading, probe_summary


def probes(accuracy_by_layer: dict[int, list[float]], target: str = FINE_TARGET) -> pd.DataFrame:
    """A probe table of one target and probe kind: per layer, one accuracy per seed."""
    return pd.DataFrame([
        {"layer": layer, "view": "patch token", "target": target, "probe": "mlp", "accuracy": value,
         "majority class": 0.34, "seed": seed}
        for layer, values in accuracy_by_layer.items() for seed, value in enumerate(values)
    ])  # fmt: skip


def test_fine_reading_names_the_embeddings_the_best_and_llavas_layer_with_k_of_n():
    summary = probe_summary(probes({0: [0.5, 0.6, 0.4], 1: [0.7, 0.8, 0.3], 2: [0.4, 0.5, 0.35]}))
    line = fine_reading(summary, llava_layer=2, encoder="the toy CLIP")
    assert "mlp probe: layer 0 50.0% (2 of 3), layer 1 60.0% (2 of 3), layer 2 41.7% (1 of 3), best layer 1" in line
    assert "majority class 34.0%" in line and "the toy CLIP" in line


def test_fine_reading_is_empty_without_the_fine_target():
    assert fine_reading(probe_summary(probes({0: [0.9]}, target="cell")), llava_layer=0) == ""
