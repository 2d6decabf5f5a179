import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from analysis_lib.core.cache import (
    BrokenEntryError,
    build_seconds,
    cache_root,
    cached_artifact,
    move_aside,
    take_used,
    use_record,
)


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


def test_a_run_knows_what_it_built_reused_and_what_building_it_all_took(tmp_path):
    take_used()
    built, _ = cached_artifact("model", {"seed": 0}, _writer([]))
    record = json.loads((built / "build.json").read_text())
    assert record["seconds"] >= 0 and record["cpu_count"] == os.cpu_count()
    cached_artifact("model", {"seed": 0}, _writer([]))  # reused after building it: still built by this run
    cached_artifact("probe", {"seed": 0}, _writer([]))
    used = take_used()
    assert {name.split("/")[0]: was_built for name, (_, was_built) in used.items()} == {"model": True, "probe": True}
    assert take_used() == {}  # taken: the next run starts afresh
    cached_artifact("model", {"seed": 0}, _writer([]))
    used = take_used()
    assert [was_built for _, was_built in used.values()] == [False]
    used["probe/old"] = (tmp_path, False)  # an entry with no build record: counted apart
    record = use_record(used)
    assert record["used"] == 2 and record["built"] == 0 and record["no_record"] == 1
    assert record["build_seconds"] == pytest.approx(build_seconds(built))
    assert record["kinds"]["probe"] == {"used": 1, "built": 0, "build_seconds": 0.0, "no_record": 1}


def test_an_entry_built_inside_another_is_its_dependency_and_its_time_its_own():
    take_used()

    def outer(folder):
        cached_artifact("inner", {"seed": 7}, _writer([]))  # built during the outer build
        (folder / "weights.txt").write_text("outer")

    built, _ = cached_artifact("outer", {"seed": 7}, outer)
    inner = next(iter(entry for name, (entry, _) in take_used().items() if name.startswith("inner/")))
    record = json.loads((built / "build.json").read_text())
    assert record["uses"] == [f"inner/{inner.name}"]
    cached_artifact("outer", {"seed": 7}, outer)  # a later, warm run loads the outer entry only
    used = take_used()
    assert [name.split("/")[0] for name in used] == ["outer"]
    cold = use_record(used)
    assert cold["used"] == 2 and cold["direct"] == 1 and cold["built"] == 0 and cold["no_record"] == 0
    assert cold["build_seconds"] == pytest.approx(build_seconds(built) + build_seconds(inner))


def test_entries_built_before_build_records_count_their_training_time(tmp_path):
    (tmp_path / "training_log.json").write_text(json.dumps({"train_seconds": 210.5, "stages": []}))
    assert build_seconds(tmp_path) == 210.5
    (tmp_path / "build.json").write_text(json.dumps({"seconds": 3.0}))
    assert build_seconds(tmp_path) == 3.0


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


def _flip_byte(path, at=0):
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _save_tensor(folder):
    save_file({"w": torch.ones(64)}, str(folder / "model.safetensors"))


@pytest.fixture
def console_lines(tmp_path, monkeypatch):
    """What the cache tells the console, line by line."""
    path = tmp_path / "console.txt"
    monkeypatch.setenv("ANALYSIS_LIB_PROGRESS_FILE", str(path))
    return lambda: path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda f: _flip_byte(f / "model.safetensors", -1), "model.safetensors changed since it was built"),
        (lambda f: os.truncate(f / "model.safetensors", 40), "model.safetensors changed since it was built"),
        (lambda f: (f / "model.safetensors").unlink(), "missing: ['model.safetensors']"),
        (lambda f: (f / "extra.bin").write_bytes(b"x"), "added: ['extra.bin']"),
        (lambda f: (f / "spec.json").write_text('{"seed": '), "spec.json changed since it was built"),
        (lambda f: (f / "manifest.json").write_text("{"), "manifest.json cannot be read"),
        (lambda f: (f / "manifest.json").unlink(), "no checksum manifest (built before manifests were kept)"),
    ],
    ids=["flipped byte", "truncated", "file missing", "file added", "corrupt spec", "corrupt manifest", "no manifest"],
)
def test_broken_entry_is_named_moved_aside_and_rebuilt(console_lines, damage, problem):
    calls = []

    def build(folder):
        calls.append(folder)
        _save_tensor(folder)

    folder, _ = cached_artifact("model", {"seed": 5}, build)
    assert json.loads((folder / "manifest.json").read_text()).keys() == {"build.json", "model.safetensors", "spec.json"}
    damage(folder)
    again, reused = cached_artifact("model", {"seed": 5}, build)
    assert again == folder and not reused and len(calls) == 2
    assert load_file(str(again / "model.safetensors"))["w"].sum() == 64  # no SafetensorError, no NaN
    (line,) = console_lines()
    assert line.startswith(f"cache entry {folder} is broken (") and problem in line and line.endswith("rebuilding")
    (aside,) = folder.parent.glob(f".{folder.name}.broken-{os.getpid()}-*")  # kept while this process runs
    assert aside.is_dir()
    assert cached_artifact("model", {"seed": 5}, build) == (folder, True) and len(calls) == 2


def test_broken_entries_are_removed_once_their_process_has_ended():
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    kind = cache_root() / "model"
    dead = kind / f".{'a' * 20}.broken-{finished.pid}-0123abcd"
    live = kind / f".{'b' * 20}.broken-{os.getpid()}-4567cdef"
    for folder in (dead, live):
        folder.mkdir(parents=True)
    cached_artifact("other-kind", {"seed": 6}, _writer([]))
    assert not dead.exists() and live.exists()


def test_entry_that_cannot_be_moved_aside_says_how_to_fix_it(monkeypatch):
    folder, _ = cached_artifact("model", {"seed": 7}, _writer([]))
    _flip_byte(folder / "weights.txt")

    def read_only(*args):
        raise PermissionError("Read-only file system")

    monkeypatch.setattr(os, "rename", read_only)
    with pytest.raises(BrokenEntryError, match=rf"weights.txt changed.*Remove it \(rm -rf '{folder}'\) and run again"):
        cached_artifact("model", {"seed": 7}, _writer([]))


def test_an_entry_rebuilt_by_another_process_meanwhile_is_left_in_place(tmp_path):
    final = tmp_path / "entry"
    final.mkdir()
    checked = final.stat().st_ino  # the broken entry this process checked ...
    final.rename(tmp_path / "elsewhere")  # ... was moved aside and rebuilt by another process before this one acts
    final.mkdir()
    (final / "weights.txt").write_text("rebuilt")
    move_aside(final, "a checksum mismatch", checked)
    assert (final / "weights.txt").read_text() == "rebuilt"
