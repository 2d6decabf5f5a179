"""Data-parallel scoring across processes (``accelerate launch``): each process scores a contiguous
shard of the items and the results are gathered back in item order, so a multi-GPU run gives exactly
what a single process gives."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object

from analysis_lib.full.score_log import read_log, score_with_log


def process_state() -> PartialState:
    """This process's place in the launch (a single process when not launched by accelerate/torchrun)."""
    return PartialState(cpu=not torch.cuda.is_available())


def shard_log(path: Path, rank: int) -> Path:
    """The score log of process ``rank`` beside ``path`` (``name.part{rank}.jsonl``)."""
    return path.with_name(f"{path.stem}.part{rank}.jsonl")


def logged_scores(path: Path, spec: dict) -> dict[str, list]:
    """Scores in every process's log for ``path`` (runs with another process count resume too)."""
    done: dict[str, list] = {}
    for part in sorted(path.parent.glob(f"{path.stem}.part*.jsonl")):
        done.update(read_log(part, spec))
    return done


def sharded_scores(
    score_fn: Callable[[list], np.ndarray],
    items: Sequence,
    keys: Sequence[str],
    log_path: Path,
    spec: dict,
    chunk_size: int = 64,
    desc: str = "scoring",
) -> np.ndarray:
    """Score ``items`` with every launched process taking one shard; all processes get all scores."""
    state = process_state()
    done = logged_scores(Path(log_path), spec)
    state.wait_for_everyone()  # every process has read the logs before any appends
    with state.split_between_processes(list(range(len(items)))) as shard:
        local = score_with_log(
            score_fn,
            [items[i] for i in shard],
            [keys[i] for i in shard],
            shard_log(Path(log_path), state.process_index),
            spec,
            chunk_size,
            done,
            f"{desc} [{state.process_index + 1}/{state.num_processes}]",
        )
    pieces = gather_object([(shard, local)]) if state.num_processes > 1 else [(shard, local)]
    ordered = sorted((i, row) for positions, rows in pieces for i, row in zip(positions, rows))
    return np.array([row for _, row in ordered])
