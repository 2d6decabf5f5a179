"""Chapter 2 at full scale: CLIP and the paper's patch-token / CLS-only LLaVA-1.5 pair on the real benchmarks (tested
on tiny random models of the same classes and fixture files in the upstream formats)."""

from pathlib import Path

import pandas as pd
import pytest
import torch
from test_registry import offline  # noqa: F401  (autouse: no network, empty HF cache and models folder)
from upstream_fixtures import add_whatsup_pair

from analysis_lib.chapters import ch02_tokens as ch02
from analysis_lib.full.registry import ModelNotFoundError, UnsupportedModelError
from analysis_lib.models.tiny import TINY_LLAVA_336, random_llava


def test_full_scale_scores_clip_and_both_llavas_and_the_cls_one_reads_one_token(full_setup, tmp_path):
    with pytest.raises((ModelNotFoundError, UnsupportedModelError), match="convert_llava_weights_to_hf"):
        ch02.tokens_full(full_setup, tmp_path / "out")  # the paper's checkpoints are not converted here
    models = tmp_path / "models"  # $ANALYSIS_LIB_MODELS under test_registry's autouse ``offline`` fixture
    llava, processor = random_llava(TINY_LLAVA_336, seed=0)
    for name in ch02.FULL_MODELS.values():
        llava.save_pretrained(models / name)
        processor.save_pretrained(models / name)
    metrics = ch02.tokens_full(full_setup, tmp_path / "out")
    assert set(metrics.condition) == {ch02.CLIP_NAME, *ch02.FULL_MODELS}
    assert {"Controlled-A", "MMVP-VLM"} <= set(metrics.benchmark) and metrics.value.between(0, 1).all()
    by = metrics.set_index(["condition", "benchmark", "metric"])["value"]
    patch, cls = ch02.FULL_MODELS
    # the same weights read different image tokens, so they score differently
    assert not torch.allclose(torch.tensor(by[patch].values), torch.tensor(by[cls].values))
    assert len(list((tmp_path / "out" / "scores").rglob("*.jsonl"))) >= 3 * 2
    for k, (obj1, obj2) in enumerate((("cup", "bowl"), ("book", "lamp"), ("shoe", "box"))):
        add_whatsup_pair(Path(full_setup.whatsup_root), obj1, obj2, seed=10 * k)
    probes = ch02.probes_full(full_setup, full_setup.clip_model)  # the tiny CLIP: one layer after the embeddings
    assert set(probes.benchmark) == {"Controlled-A", "Controlled-B"} and set(probes.layer) == {0, 1}
    relation = probes[probes.target == "relation"]
    assert (relation["test images"] == 4).all() and (relation["train images"] == 12).all()  # one of 4 pairs
    folder = ch02.save_full_results(metrics, full_setup, tmp_path / "results", 1.0, probes)
    assert folder == tmp_path / "results" / "02_tokens" / "full" and (folder / "metrics.csv").is_file()
    saved = pd.read_csv(folder / "metrics.csv")
    assert len(saved[saved.metric.str.endswith(" probe")]) == len(probes) and len(saved) == len(metrics) + len(probes)
