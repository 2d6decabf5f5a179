"""Training many toy models at once (``pipeline.train_toy_models``): each artefact built once, in the order the
others need it; a model trained in a worker process is the model trained in-process; workers' progress goes to
the console only."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from analysis_lib.chapters import ch01_same_encoder as ch01
from analysis_lib.chapters import ch07_clip_to_dino as ch07
from analysis_lib.core.cache import cached_artifact
from analysis_lib.core.progress import PROGRESS_ENV
from analysis_lib.toy import pipeline


def _kinds(phases: list[list[pipeline.Build]]) -> list[list[tuple[str, int]]]:
    """Each phase's builds as sorted ``(kind, seed)`` pairs."""
    return [sorted((build.kind, build.seed) for build in phase) for phase in phases]


def test_shared_prerequisites_are_built_once_and_first():
    # chapter 1's variants share a CLIP and an LM; all but the untrained-ViT control share features too (the
    # held-out-objects control reads the chapter LLaVA's features and leaves some scenes out)
    setups = [ch01.toy_setup(3, True, variant) for variant in ch01.VARIANTS]
    assert _kinds(pipeline.missing_builds(pipeline.seed_jobs(setups, [0, 1]))) == [
        [("clip", 0), ("clip", 1), ("toy-lm", 0), ("toy-lm", 1)],
        [("features", 0), ("features", 0), ("features", 1), ("features", 1)],
        [("llava", 0)] * 5 + [("llava", 1)] * 5,
    ]


def test_ssl_sources_build_their_encoder_and_their_own_features():
    setups = [ch07.chapter_setup(3, True, source) for source in ch07.SOURCES.values()]
    phases = _kinds(pipeline.missing_builds(pipeline.seed_jobs(setups, [0])))
    assert phases[0] == [("clip", 0), ("ssl-encoder", 0), ("toy-lm", 0)]
    assert phases[1] == [("features", 0)] * 4 and phases[2] == [("llava", 0)] * 4


def test_cached_models_are_not_built_again():
    setup = ch01.toy_setup(3, True)
    cached_artifact("llava", setup.llava_spec(0), lambda folder: None)
    cached_artifact("clip", setup.clip_spec(1), lambda folder: None)
    phases = _kinds(pipeline.missing_builds(pipeline.seed_jobs([setup], [0, 1])))
    assert phases == [[("clip", 0), ("toy-lm", 0), ("toy-lm", 1)], [("features", 1)], [("llava", 1)]]


def _llava_weights(folder: Path) -> bytes:
    """The bytes of a saved LLaVA's weights."""
    return (folder / "model.safetensors").read_bytes()


def test_a_model_trained_in_a_worker_is_the_one_trained_in_process(tmp_path, monkeypatch, capfd):
    setup = dataclasses.replace(ch01.toy_setup(3, True), n_train_scenes=64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a worker
    try:
        monkeypatch.setenv("ANALYSIS_LIB_CACHE", str(tmp_path / "in-process"))
        in_process = pipeline.toy_models(setup, 0, progress=False).folders
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setenv("ANALYSIS_LIB_CACHE", str(tmp_path / "workers"))
    monkeypatch.setenv(PROGRESS_ENV, str(tmp_path / "console.log"))  # the book runner's console
    pipeline.train_toy_models(pipeline.seed_jobs([setup], [0, 1]), workers=2)
    assert pipeline.missing_builds(pipeline.seed_jobs([setup], [0, 1])) == [[], [], []]
    in_workers = pipeline.toy_models(setup, 0, progress=False)
    assert all(in_workers.reused.values())
    assert _llava_weights(in_workers.folders["llava"]) == _llava_weights(in_process["llava"])
    console = (tmp_path / "console.log").read_text()
    assert "toy models: 8 to build in 2 process(es)" in console and "(8/8)" in console
    assert "CLIP (contrastive)" in console and "it/s" in console  # the workers' progress bars
    captured = capfd.readouterr()
    assert "it/s" not in captured.out + captured.err and "toy models" not in captured.out + captured.err


def test_nothing_to_build_starts_no_worker(monkeypatch):
    monkeypatch.setattr(pipeline, "missing_builds", lambda jobs: [[], [], []])
    monkeypatch.setattr(pipeline.multiprocessing, "get_context", lambda *_: pytest.fail("must not start workers"))
    pipeline.train_toy_models(pipeline.seed_jobs([ch01.toy_setup(3, True)], [0, 1]), workers=2)


def test_workers_exit_on_their_own_when_done():
    with pipeline._mapper(2) as mapped:
        pool = mapped.__self__
        assert sorted(mapped(abs, [-1, -2, -3])) == [1, 2, 3]
    assert [worker.exitcode for worker in pool._pool] == [0, 0]  # not killed: semaphores they made are released
