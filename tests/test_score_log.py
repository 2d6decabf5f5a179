import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis_lib.full.score_log import (
    StaleScoresError,
    file_digest,
    keyed_log,
    read_log,
    score_with_log,
    weights_identity,
)
from analysis_lib.full.sharding import sharded_scores

SPEC = {"model": "m", "benchmark": "b", "protocol": "2-way"}


class Interrupted(Exception):
    pass


def _squares(calls):
    def score(items):
        calls.append(list(items))
        return np.array([[x, x * x] for x in items], dtype=float)

    return score


def test_interrupted_run_resumes_where_it_stopped(tmp_path):
    items, keys = list(range(10)), [f"item{i}" for i in range(10)]
    path = tmp_path / "scores.jsonl"
    calls = []

    def dies_on_third_chunk(batch):
        if len(calls) == 2:
            raise Interrupted
        return _squares(calls)(batch)

    with pytest.raises(Interrupted):
        score_with_log(dies_on_third_chunk, items, keys, path, SPEC, chunk_size=3)
    assert len(read_log(path, SPEC)) == 6
    calls.clear()
    got = score_with_log(_squares(calls), items, keys, path, SPEC, chunk_size=3)
    assert calls == [[6, 7, 8], [9]]  # only the missing items are scored
    assert np.array_equal(got, np.array([[x, x * x] for x in items], dtype=float))
    calls.clear()
    assert np.array_equal(score_with_log(_squares(calls), items, keys, path, SPEC), got) and calls == []


def test_half_written_last_line_is_dropped(tmp_path):
    path = tmp_path / "scores.jsonl"
    score_with_log(_squares([]), [1, 2], ["a", "b"], path, SPEC)
    with path.open("a") as handle:
        handle.write('{"key": "c", "scores": [3.0, 9')  # killed mid-write
    assert set(read_log(path, SPEC)) == {"a", "b"}
    got = score_with_log(_squares([]), [1, 2, 3], ["a", "b", "c"], path, SPEC)
    assert got[:, 1].tolist() == [1, 4, 9]
    assert [json.loads(line) for line in path.read_text().splitlines()][-1] == {"key": "c", "scores": [3.0, 9.0]}


def test_log_of_another_spec_is_never_reused(tmp_path):
    path = tmp_path / "scores.jsonl"
    score_with_log(_squares([]), [1], ["a"], path, SPEC)
    with pytest.raises(StaleScoresError, match="another configuration"):
        score_with_log(_squares([]), [1], ["a"], path, {**SPEC, "model": "other"})


def test_single_process_sharding_is_plain_scoring(tmp_path):
    got = sharded_scores(_squares([]), [3, 1, 2], ["x", "y", "z"], tmp_path / "s.jsonl", SPEC, chunk_size=2)
    assert got[:, 1].tolist() == [9, 1, 4]
    assert (tmp_path / "s.part0.jsonl").is_file()


SCRIPT = Path(__file__).with_name("sharded_vqascore_script.py")


def test_two_processes_give_the_single_process_scores(tmp_path):
    """torchrun with 2 CPU processes (gloo), as `accelerate launch` runs on GPUs: same scores, same order."""
    single = tmp_path / "single.npy"
    subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "one"), str(single)], check=True)
    double = tmp_path / "double.npy"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command + [str(SCRIPT), str(tmp_path / "two"), str(double)], check=True, env=env)
    assert np.array_equal(np.load(single), np.load(double))
    assert len(list((tmp_path / "two").glob("scores.part*.jsonl"))) == 2


@pytest.mark.parametrize("content", ["", '{"spec": {"model": "m", "bench'], ids=["empty", "half-written header"])
def test_interrupted_header_write_is_dropped_and_rewritten(tmp_path, content):
    path = tmp_path / "scores.jsonl"
    path.write_text(content)  # killed between creating the file and finishing its header
    assert read_log(path, SPEC) == {} and not path.exists()
    path.write_text(content)
    got = score_with_log(_squares([]), [1, 2], ["a", "b"], path, SPEC)
    assert got[:, 1].tolist() == [1, 4]
    assert [json.loads(line) for line in path.read_text().splitlines()][0] == {"spec": SPEC}


def test_file_that_is_not_a_score_log_is_never_overwritten(tmp_path):
    path = tmp_path / "scores.jsonl"
    path.write_text("metric,value\n0.5\n")
    with pytest.raises(StaleScoresError, match="is not a score log .*delete the file"):
        read_log(path, SPEC)
    assert path.read_text() == "metric,value\n0.5\n"


def test_each_spec_has_its_own_log(tmp_path):
    path = tmp_path / "Controlled-A.jsonl"
    assert keyed_log(path, SPEC) == keyed_log(path, dict(reversed(SPEC.items())))
    other = keyed_log(path, {**SPEC, "items": "other pixels"})
    assert other != keyed_log(path, SPEC) and other.parent == tmp_path and other.name.startswith("Controlled-A.")
    assert other.suffix == ".jsonl"


def test_file_digest_follows_the_content_not_the_name_or_place(tmp_path):
    first, elsewhere = tmp_path / "a" / "img.jpg", tmp_path / "b" / "img.jpg"
    for path in (first, elsewhere):
        path.parent.mkdir()
        path.write_bytes(b"pixels")
    assert file_digest(first) == file_digest(elsewhere)
    before = file_digest(first)
    first.write_bytes(b"other pixels")
    assert file_digest(first) != before


def test_weights_identity_changes_when_weights_are_rewritten_in_place(tmp_path):
    folder = tmp_path / "llava"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    before = weights_identity(folder)
    assert before["location"] == str(folder.resolve())
    (folder / "model.safetensors").write_bytes(b"retrained")
    assert weights_identity(folder) != before
    blob = tmp_path / "blobs" / "0123abcd"  # the Hugging Face cache: a snapshot's files link to content-named blobs
    blob.parent.mkdir()
    blob.write_bytes(b"weights")
    snapshot = tmp_path / "snapshots" / "rev1"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(blob)
    linked = weights_identity(snapshot)
    (snapshot / "model.safetensors").unlink()
    (snapshot / "model.safetensors").symlink_to(tmp_path / "blobs" / "4567cdef")
    (tmp_path / "blobs" / "4567cdef").write_bytes(b"weights")
    assert weights_identity(snapshot) != linked
