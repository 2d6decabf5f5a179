import numpy as np
import pandas as pd

from analysis_lib.data.anchors import beside_anchors, published_anchors


def test_anchors_match_reference_numbers():
    table = published_anchors().set_index(["benchmark", "metric", "model"])
    assert np.isclose(table.loc[("MMVP-VLM", "pair all", "CLIP (cosine)"), "published"], 0.20)
    assert np.isclose(table.loc[("MMVP-VLM", "pair Spatial", "CLIP (cosine)"), "published"], 0.067)
    assert np.isclose(table.loc[("Controlled-A", "2-way pair", "CLIP (cosine)"), "published"], 0.0922)
    assert np.isclose(table.loc[("six-benchmark average", "pair", "LLaVA (VQAScore)"), "published"], 0.592)
    assert not table.loc[("Controlled-A", "2-way pair", "CLIP (cosine)"), "same model and protocol"]


def test_beside_anchors_puts_our_seed_mean_next_to_the_anchor():
    ours = pd.DataFrame(
        {
            "benchmark": ["MMVP-VLM", "MMVP-VLM"],
            "metric": ["pair all", "pair all"],
            "model": ["CLIP (cosine)", "CLIP (cosine)"],
            "value": [0.2, 0.3],
        }
    )
    table = beside_anchors(ours).set_index(["benchmark", "metric", "model"])
    assert np.isclose(table.loc[("MMVP-VLM", "pair all", "CLIP (cosine)"), "ours"], 0.25)
    assert np.isnan(table.loc[("Controlled-A", "2-way individual", "CLIP (cosine)"), "ours"])
