"""The full-scale path of chapter 1 on tiny random models of the real classes and upstream-format fixtures."""

import dataclasses
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from upstream_fixtures import write_image, write_t2v_root

from analysis_lib.book import runner as book
from analysis_lib.data.benchmarks import BenchmarkError
from analysis_lib.full import full_scale
from analysis_lib.models.tiny import TINY_LLAVA_336, random_llava


def test_full_run_scores_every_benchmark_and_resumes_from_its_logs(full_setup, tmp_path, monkeypatch):
    metrics = full_scale.same_encoder_full(full_setup, tmp_path / "out")
    benchmarks = set(metrics.benchmark)
    whatsup = {"Controlled-A", "Controlled-B", "COCO-one", "COCO-two", "GQA-one", "GQA-two"}
    assert benchmarks == whatsup | {"MMVP-VLM", "MMVP (statements)"}
    assert set(metrics.model) == {"CLIP (cosine)", "LLaVA (VQAScore)"}
    controlled = metrics[metrics.benchmark == "Controlled-A"].metric
    assert {"4-way individual", "2-way individual", "2-way pair", "2-way set"} <= set(controlled)
    assert "2-way pair" not in set(metrics[metrics.benchmark == "COCO-one"].metric)
    assert len(list((tmp_path / "out" / "scores").rglob("*.part0.jsonl"))) == 2 * 8

    def no_scoring(*args, **kwargs):
        raise AssertionError("every score should come from the logs")

    monkeypatch.setattr(full_scale, "whatsup_option_scores", no_scoring)
    monkeypatch.setattr(full_scale, "mmvp_scores", no_scoring)
    again = full_scale.same_encoder_full(full_setup, tmp_path / "out")
    pd.testing.assert_frame_equal(again, metrics)


def _scored_by(monkeypatch) -> list[tuple[str, int]]:
    """``(scorer class, number of items)`` of every scoring call from now on (the rest comes from the logs)."""
    calls = []
    for name in ("whatsup_option_scores", "mmvp_scores"):
        real = getattr(full_scale, name)

        def counted(scorer, items, real=real):
            calls.append((type(scorer).__name__, len(items)))
            return real(scorer, items)

        monkeypatch.setattr(full_scale, name, counted)
    return calls


def test_changed_annotations_are_scored_afresh_in_a_log_of_their_own(full_setup, tmp_path, monkeypatch):
    full_scale.same_encoder_full(full_setup, tmp_path / "out")
    questions = tmp_path / "mmvp" / "Questions.csv"
    questions.write_text(questions.read_text().replace("on the left", "on the far left"))
    calls = _scored_by(monkeypatch)
    full_scale.same_encoder_full(full_setup, tmp_path / "out")
    assert calls == [("ClipScorer", 2), ("VQAScorer", 2)]  # MMVP-VLM only, by both models
    assert len(list((tmp_path / "out" / "scores").rglob("MMVP-VLM.*.part0.jsonl"))) == 4  # the old logs are kept


def test_a_changed_image_set_with_the_same_names_is_scored_afresh(full_setup, tmp_path, monkeypatch):
    first = full_scale.same_encoder_full(full_setup, tmp_path / "out")
    copy = tmp_path / "mmvp-copy"
    shutil.copytree(full_setup.mmvp_vlm_root, copy)
    moved = dataclasses.replace(full_setup, mmvp_vlm_root=str(copy))
    calls = _scored_by(monkeypatch)
    pd.testing.assert_frame_equal(full_scale.same_encoder_full(moved, tmp_path / "out"), first)
    assert calls == []  # the same pixels elsewhere: the same scores
    for image in copy.rglob("*.jpg"):
        write_image(image, (10, 220, 90))  # other pixels, same names
    full_scale.same_encoder_full(moved, tmp_path / "out")
    assert [n for _, n in calls] == [2, 2]  # MMVP-VLM re-scored by both models, nothing else
    calls.clear()
    full_scale.same_encoder_full(full_setup, tmp_path / "out")  # the original images: their logs are still there
    assert calls == []


def test_other_weights_or_dtype_in_the_same_place_are_scored_afresh(full_setup, tmp_path, monkeypatch):
    full_scale.same_encoder_full(full_setup, tmp_path / "out")
    llava, _ = random_llava(TINY_LLAVA_336, seed=1)
    llava.save_pretrained(full_setup.llava_model)  # retrained in place: same folder, same file names
    calls = _scored_by(monkeypatch)
    full_scale.same_encoder_full(full_setup, tmp_path / "out")
    assert {scorer for scorer, _ in calls} == {"VQAScorer"} and len(calls) == 8  # every benchmark, LLaVA only
    calls.clear()
    full_scale.same_encoder_full(dataclasses.replace(full_setup, clip_dtype="bfloat16"), tmp_path / "out")
    assert {scorer for scorer, _ in calls} == {"ClipScorer"} and len(calls) == 8


def test_headline_table_and_sizes(full_setup, tmp_path):
    metrics = full_scale.same_encoder_full(full_setup, tmp_path / "out")
    table = full_scale.headline_table(metrics)
    row = table[(table.benchmark == "MMVP-VLM") & (table.metric == "pair all")].iloc[0]
    assert row["CLIP (cosine)"].endswith("(n=2)")
    sizes = full_scale.size_table(full_scale.load_full_benchmarks(full_setup))
    assert sizes.set_index("subset").loc["Controlled-A", "found"] == 4
    assert not sizes.matches.any()


def test_chapter_runs_at_full_scale(full_setup, tmp_path):
    params = {
        "scale": "full",
        "device": "cpu",
        "clip_model": full_setup.clip_model,
        "llava_model": full_setup.llava_model,
        "whatsup_root": full_setup.whatsup_root,
        "mmvp_vlm_root": full_setup.mmvp_vlm_root,
        "mmvp_root": full_setup.mmvp_root,
        "strict_sizes": False,
        "batch_size": 8,
        "results_root": str(tmp_path / "results"),
        "figures_root": str(tmp_path / "figures"),
    }
    book.execute_chapter(book.find_chapter("01"), params, tmp_path / "01.ipynb")
    folder = tmp_path / "results" / "01_same_encoder" / "full"
    metrics = pd.read_csv(folder / "metrics.csv")
    assert np.all((metrics.value >= 0) & (metrics.value <= 1))
    run = json.loads((folder / "run.json").read_text())
    assert run["config"]["llava_model"] == full_setup.llava_model and "open_clip_torch" in run["versions"]
    text = (tmp_path / "01.ipynb").read_text()
    assert "same model and protocol" in text  # the anchors table was shown


def test_command_line_writes_results(full_setup, tmp_path, capsys):
    args = ["--clip-model", full_setup.clip_model, "--llava-model", full_setup.llava_model]
    args += ["--whatsup-root", full_setup.whatsup_root, "--mmvp-vlm-root", full_setup.mmvp_vlm_root]
    args += ["--device", "cpu", "--batch-size", "8", "--no-strict-sizes", "--results", str(tmp_path / "cli")]
    full_scale.main(args)
    assert "Controlled-A" in capsys.readouterr().out
    run = json.loads((tmp_path / "cli" / "run.json").read_text())
    assert run["config"]["strict_sizes"] is False and run["config"]["batch_size"] == 8


def test_preflight_lists_every_missing_piece_with_its_fix(full_setup, tmp_path, monkeypatch):
    checks, benchmarks = full_scale.preflight(full_setup)
    assert checks.ready.all() and set(benchmarks) == set(full_scale.load_full_benchmarks(full_setup))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("ANALYSIS_LIB_MODELS", raising=False)
    broken = dataclasses.replace(
        full_setup, llava_model="llava-hf/llava-1.5-7b-hf", mmvp_vlm_root=str(tmp_path / "no_mmvp")
    )
    with pytest.raises(full_scale.NotReadyError) as info:
        full_scale.preflight(broken)
    message = str(info.value)
    assert "[LLaVA weights]" in message and "hf download llava-hf/llava-1.5-7b-hf" in message
    assert "[benchmarks]" in message and "no_mmvp" in message
    assert "[CLIP weights]" not in message


def _check_args(config: full_scale.FullScaleConfig, results) -> list[str]:
    """``--check`` command-line arguments for ``config`` (sizes not enforced, as for the tiny fixtures)."""
    args = ["--clip-model", config.clip_model, "--llava-model", config.llava_model, "--no-strict-sizes"]
    args += ["--whatsup-root", config.whatsup_root, "--mmvp-vlm-root", config.mmvp_vlm_root, "--mmvp-root"]
    return [*args, config.mmvp_root, "--device", "cpu", "--results", str(results), "--check"]


def test_check_opens_every_image_and_lists_every_bad_one(full_setup, tmp_path, capfd):
    controlled = tmp_path / "whatsup" / "data" / "controlled_images" / "mug_on_plate.jpeg"
    controlled.write_bytes(b"")  # killed download
    pair_image = tmp_path / "mmvp" / "MLLM_VLM Images" / "Spatial" / "3.jpg"
    pair_image.write_bytes(pair_image.read_bytes()[:200])  # truncated
    with pytest.raises(full_scale.NotReadyError) as info:
        full_scale.main(_check_args(full_setup, tmp_path / "out"))
    message = str(info.value)
    assert "[images] 2 of" in message and "images cannot be used" in message
    assert "mug_on_plate.jpeg cannot be read" in message and "3.jpg cannot be read" in message
    assert "checking images" in capfd.readouterr().err  # the progress bar, on the console's stderr
    assert not (tmp_path / "out").exists()


def test_empty_subset_is_one_clear_error(full_setup, tmp_path):
    (tmp_path / "whatsup" / "data" / "coco_qa_two_obj.json").write_text("[]")
    with pytest.raises(full_scale.NotReadyError, match=r"\[benchmarks\] .*coco_qa_two_obj.json lists no items"):
        full_scale.main(_check_args(full_setup, tmp_path / "out"))
    (tmp_path / "mmvp" / "Questions.csv").write_text("Question ID,Type,Statement\n")
    with pytest.raises(BenchmarkError, match="Questions.csv has no rows below its header"):
        full_scale.load_mmvp_vlm(tmp_path / "mmvp")


def test_missing_annotation_file_shows_in_the_size_table(full_setup, tmp_path, capsys):
    (tmp_path / "whatsup" / "data" / "vg_qa_one_obj.json").unlink()
    full_scale.main(_check_args(full_setup, tmp_path / "out"))
    sizes = full_scale.size_table(full_scale.load_full_benchmarks(full_setup)).set_index("subset")
    assert sizes.loc["GQA-one", "found"] == "missing" and not sizes.loc["GQA-one", "matches"]
    assert re.search(r"GQA-one\s+missing\s+1160", capsys.readouterr().out)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--dtype", "bogus", r"dtype 'bogus' is unknown; use one of 'auto', 'bf16'"),
        ("--clip-dtype", "fp8", r"clip_dtype 'fp8' is unknown"),
        ("--batch-size", "0", r"batch_size must be a whole number of captions >= 1, got 0"),
        ("--device", "nonsense", r"unknown device 'nonsense'; use 'cpu', 'cuda', 'cuda:N' or 'auto'"),
    ],
)
def test_bad_settings_are_refused_before_any_work(full_setup, tmp_path, monkeypatch, capsys, option, value, message):
    def no_work(*args, **kwargs):
        raise AssertionError("a bad setting must be refused before benchmarks load or models score")

    monkeypatch.setattr(full_scale, "preflight", no_work)
    monkeypatch.setattr(full_scale, "load_scorer", no_work)
    args = [arg for arg in _check_args(full_setup, tmp_path / "out") if arg != "--check"]
    with pytest.raises(SystemExit) as info:
        full_scale.main([*args, option, value])
    assert info.value.code != 0 and re.search(message, capsys.readouterr().err)
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(full_setup, **{option[2:].replace("-", "_"): int(value) if value == "0" else value})


def test_duplicate_item_is_found_by_check_before_any_scoring(full_setup, tmp_path):
    controlled = tmp_path / "whatsup" / "data" / "controlled_images_dataset.json"
    controlled.write_text(json.dumps([*json.loads(controlled.read_text()), json.loads(controlled.read_text())[0]]))
    with pytest.raises(full_scale.NotReadyError, match=r"\[benchmarks\] .*mug_left_of_plate.jpeg is listed twice"):
        full_scale.main(_check_args(full_setup, tmp_path / "out"))


def test_deeply_nested_annotation_file_is_found_by_check(full_setup, tmp_path):
    (tmp_path / "whatsup" / "data" / "vg_qa_two_obj.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(full_scale.NotReadyError, match=r"\[benchmarks\] .*vg_qa_two_obj.json nests .* too deeply"):
        full_scale.main(_check_args(full_setup, tmp_path / "out"))


def test_the_papers_other_benchmarks_join_the_run_and_its_figure1_aggregate(full_setup, tmp_path):
    write_t2v_root(tmp_path / "datasets")
    config = dataclasses.replace(full_setup, t2v_root=str(tmp_path / "datasets"))
    checks, benchmarks = full_scale.preflight(config)
    assert {"Winoground", "NaturalBench", "SeeTRUE", "SugarCREPE"} <= set(benchmarks) and checks.ready.all()
    sizes = full_scale.size_table(benchmarks).set_index("subset")
    assert {"Controlled-A", "Winoground"} <= set(sizes.index)
    metrics = full_scale.same_encoder_full(config, tmp_path / "out", benchmarks)
    assert {"text all", "group all"} <= set(metrics[metrics.benchmark == "Winoground"].metric)
    logs = {p.parent.name for p in (tmp_path / "out" / "scores").rglob("*.jsonl")}
    assert len(logs) == 2  # one folder of logs per model, every benchmark's log in it
    table = full_scale.figure1_table(metrics).set_index("model")
    assert table.loc[f"{full_scale.CLIP} (paper)", "individual"] == 0.556
    ours = table.loc[full_scale.LLAVA]
    assert ours["n_individual"] == 6 and ours["n_pair"] == 4 and 0 <= ours["individual"] <= 1
    again = full_scale.same_encoder_full(config, tmp_path / "out", benchmarks)  # resumed from the logs
    assert again.value.tolist() == metrics.value.tolist()
