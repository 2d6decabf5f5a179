import pandas as pd
import pytest
from test_registry import offline  # noqa: F401  (autouse: no network, empty HF cache and models folder)

from analysis_lib.chapters import ch01_same_encoder as ch01
from analysis_lib.chapters import ch06_contrastive_conversion as ch06
from analysis_lib.core.cache import spec_key
from analysis_lib.full.registry import ModelNotFoundError
from analysis_lib.models.tiny import TINY_LLAVA_336, random_llava
from analysis_lib.toy.toy_runs import CLIP_NAME, HEADLINE
from analysis_lib.training import embedding_conversion as ec

TEST_KEYS = {test: key for key, test in HEADLINE.items()}


def _metrics(relation: dict[str, float]) -> pd.DataFrame:
    """Two seeds of every chapter test per condition: relation 4-way as given, everything else 0.9."""
    rows = []
    for condition in ch06.ORDER:
        for test in ch06.TESTS:
            benchmark, metric = TEST_KEYS[test]
            for seed, jitter in ((0, -0.01), (1, 0.01)):
                value = relation.get(condition, 0.9) if test == "relation 4-way" else 0.9
                rows.append({"model": condition, "condition": condition, "benchmark": benchmark, "metric": metric,
                             "seed": seed, "value": value + jitter})  # fmt: skip
    return pd.DataFrame(rows)


def test_every_recipe_and_base_gets_its_own_cache_key():
    keys = set()
    for variant, cfg in ch06.RECIPES.values():
        setup = ch06.base_setups(300, False)[variant]
        keys.add(spec_key(ch06.converted_spec(setup, cfg, 0)))
        assert spec_key(ch06.converted_spec(setup, cfg, 1)) not in keys
    assert len(keys) == len(ch06.RECIPES)


def test_targets_and_findings_read_the_table():
    scratch = "converted from the LM-from-scratch LLaVA"
    run = ch06.ConversionRun(_metrics({CLIP_NAME: 0.3, ch06.MAIN: 0.75, scratch: 0.4}), {}, {}, {})
    table = ch06.comparison(run)
    targets = ch06.target_checks(table).set_index("target")["met"].tolist()
    assert targets == [True, False, True, False, False]  # spatial pairs are 0.9 for CLIP too; recipes move 15 points
    text = ch06.findings(table, pd.DataFrame(columns=["variant", "seed", "stage", "target", "passed at"]))
    assert "converted LLaVA beats CLIP" in text and "+45.0 points" in text and "Lower than its relation" not in text
    assert f"{scratch}: relation 4-way -35.0 points" in text


def test_full_scale_scores_the_registry_vlm2vec_model_on_every_benchmark(full_setup, tmp_path):
    models = tmp_path / "models"  # $ANALYSIS_LIB_MODELS under test_registry's autouse ``offline`` fixture
    with pytest.raises(ModelNotFoundError, match="llava-1.5-7b-vlm2vec"):
        ch06.conversion_full(full_setup, tmp_path / "out")
    base, processor = random_llava(TINY_LLAVA_336, seed=0)
    base.save_pretrained(models / "llava-1.5-7b")
    processor.save_pretrained(models / "llava-1.5-7b")
    ec.with_adapter(base, ec.ConversionConfig()).save_pretrained(models / ch06.VLM2VEC_ENTRY)
    metrics = ch06.conversion_full(full_setup, tmp_path / "out")
    assert {"Controlled-A", "MMVP-VLM"} <= set(metrics.benchmark)
    assert set(metrics.model) == {ch06.VLM2VEC_ENTRY} and metrics.value.between(0, 1).all()
    assert list((tmp_path / "out" / "scores").rglob("*.jsonl"))


def test_check_figure_texts_do_not_overlap():
    from test_plots import overlaps, text_boxes

    curves = pd.DataFrame([{"variant": name, "seed": seed, "step": step, "value": step / 400}
                           for name in ch06.RECIPES for seed in range(3) for step in range(50, 401, 50)])  # fmt: skip
    fig = ch06.check_figure(curves)
    assert not overlaps(text_boxes(fig)), overlaps(text_boxes(fig))[:3]


def test_the_projector_only_control_stops_after_the_projector_stage():
    bases = ch06.base_setups(300, False)
    main, control = bases[ch01.MAIN], bases[ch06.PROJECTOR_ONLY]
    assert control.llava_train.curriculum == main.llava_train.curriculum[:1]
    assert [stage.name for stage in control.llava_train.curriculum] == ["projector"]
    assert control.clip_spec(0) == main.clip_spec(0) and control.lm_spec(0) == main.lm_spec(0)


def _pilot_checks(runs: dict[tuple[int, str], tuple[int | None, list[float]]]) -> pd.DataFrame:
    """Held-out checks every 50 steps: (seed, recipe) -> (passed at, relation retrieval per check); attribute 1.0."""
    rows = []
    for (seed, name), (passed, relation) in runs.items():
        rows += [{"seed": seed, "recipe": name, "passed at": passed, "step": 50 * (i + 1), "value": r,
                  "relation 4-way": r, "attribute": 1.0} for i, r in enumerate(relation)]  # fmt: skip
    return pd.DataFrame(rows)


def test_the_pilot_replicates_only_where_the_recipe_is_not_beaten():
    lr, random = list(ch06.PILOT)[1:]
    checks = _pilot_checks({
        (5, ch06.MAIN): (100, [0.6, 0.99]),         # passed first
        (5, lr): (150, [0.5, 0.7, 0.99]),
        (5, random): (None, [0.3, 0.4, 0.5, 0.6]),  # ran to the cap
        (6, ch06.MAIN): (None, [0.5, 0.8]),         # no run passes on seed 6: relation at the cap decides
        (6, lr): (None, [0.5, 0.9]),
        (6, random): (None, [0.4, 0.7]),
        (7, ch06.MAIN): (100, [0.6, 0.99]),         # a tie in the step passed at is not a loss ...
        (7, lr): (100, [0.7, 1.0]),                 # ... however high the other's last check
        (7, random): (None, [0.4, 0.7]),
    })  # fmt: skip
    table = ch06.pilot_table(checks)
    assert table.ended.tolist()[:6] == ["passed at 100", "passed at 150", "cap (200 steps)"] + ["cap (100 steps)"] * 3
    assert table["relation 4-way"].tolist()[:6] == [0.99, 0.99, 0.6, 0.8, 0.9, 0.7]
    seed5, seed6, seed7 = ch06.pilot_reading(checks).splitlines()
    assert seed5.startswith(f"* Seed 5: {ch06.MAIN}: passed at 100, relation 99.0%; {lr}: passed at 150")
    assert seed5.endswith("the chapter's recipe did at least as well as every alternative: the pilot's choices "
                          "replicate on this seed.")  # fmt: skip
    assert seed6.endswith(f"By the rule, {lr} did better than the chapter's recipe: the pilot's choice does not "
                          "replicate on this seed.")  # fmt: skip
    assert "did at least as well" in seed7 and f"{random}: cap (100 steps), relation 70.0%" in seed7


def test_the_pilot_recipes_are_the_chapters_own_on_other_seeds():
    assert ch06.PILOT[ch06.MAIN] == ch06.RECIPES[ch06.MAIN][1]
    assert ch06.PILOT[ch06.RANDOM_BATCHES] == ch06.RECIPES[ch06.RANDOM_BATCHES][1]
    assert [cfg.lr for cfg in ch06.PILOT.values()] == [1e-3, 3e-3, 1e-3]
