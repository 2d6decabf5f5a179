import json
import os
import subprocess
import sys

import pytest

from analysis_lib.cache import cache_root, cached_artifact


def _writer(calls):
    def build(folder):
        calls.append(folder)
        (folder / "weights.txt").write_text("trained")

    return build


def test_reuse_same_spec_and_retrain_on_change():
    calls = []
    first, reused = cached_artifact("model", {"lr": 1e-3, "seed": 0}, _writer(calls))
    assert not reused and (first / "weights.txt").read_text() == "trained"
    again, reused = cached_artifact("model", {"seed": 0, "lr": 1e-3}, _writer(calls))
    assert reused and again == first and len(calls) == 1
    other, reused = cached_artifact("model", {"lr": 2e-3, "seed": 0}, _writer(calls))
    assert not reused and other != first and len(calls) == 2
    stored = json.loads((first / "spec.json").read_text())
    assert stored["lr"] == 1e-3 and "transformers" in stored["versions"]


def test_interrupted_build_leaves_nothing_loadable():
    def crash(folder):
        (folder / "weights.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_artifact("model", {"seed": 1}, crash)
    assert list((cache_root() / "model").iterdir()) == []
    calls = []
    _, reused = cached_artifact("model", {"seed": 1}, _writer(calls))
    assert not reused and len(calls) == 1


def test_folder_with_a_different_stored_spec_is_rebuilt():
    calls = []
    folder, _ = cached_artifact("model", {"seed": 2}, _writer(calls))
    spec = json.loads((folder / "spec.json").read_text())
    (folder / "spec.json").write_text(json.dumps({**spec, "seed": 99}))
    again, reused = cached_artifact("model", {"seed": 2}, _writer(calls))
    assert again == folder and not reused and len(calls) == 2


def test_cache_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ANALYSIS_LIB_CACHE", str(tmp_path / "elsewhere"))
    folder, _ = cached_artifact("model", {"seed": 3}, _writer([]))
    assert folder.is_relative_to(tmp_path / "elsewhere")


def test_stale_temporary_folders_of_dead_processes_are_removed():
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    kind = cache_root() / "model"
    dead = kind / f".{'a' * 20}.tmp-{finished.pid}-0123abcd"  # left by a killed training run
    live = kind / f".{'b' * 20}.tmp-{os.getpid()}-4567cdef"  # a build in progress in a running process
    for folder in (dead, live):
        folder.mkdir(parents=True)
        (folder / "weights.txt").write_text("half")
    cached_artifact("other-kind", {"seed": 4}, _writer([]))
    assert not dead.exists() and (live / "weights.txt").read_text() == "half"
