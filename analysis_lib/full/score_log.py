"""Resumable score files: per-item scores appended as they are computed, so an interrupted
evaluation restarts where it stopped.

A log is a JSON-lines file. Its first line records the spec (model, benchmark, protocol, ...) the
scores belong to; each later line is ``{"key": item key, "scores": [...]}``. A log written for another
spec is never reused: opening it raises. What a kill mid-write leaves is dropped on open: a half-written
last line, or a file whose header line is empty or unfinished (the whole file is then written anew).

The spec must hold everything that determines a score: ``keyed_log`` names each spec's log by its hash, so a
changed spec scores afresh into a log of its own. ``file_digest`` (the images' content) and ``weights_identity``
(where the weights are and which files they are) are the parts that file names alone do not tell.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import numpy as np

from analysis_lib.core.cache import file_sha256, spec_key
from analysis_lib.core.progress import progress_bar
from analysis_lib.full.registry import locate
from analysis_lib.scoring.scorers import PROTOCOL_VERSION


class StaleScoresError(RuntimeError):
    """A score log on disk was written for a different spec."""


def keyed_log(path: Path, spec: dict) -> Path:
    """The log of ``spec`` beside ``path``: ``<name>.<hash of spec>.jsonl``."""
    return path.with_name(f"{path.stem}.{spec_key(spec)}{path.suffix}")


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content, hashed once per process while its resolved path, size and mtime stay the same."""
    real = Path(path).resolve()
    stat = real.stat()
    return _digest(real, stat.st_size, stat.st_mtime_ns)


@cache
def _digest(path: Path, size: int, mtime_ns: int) -> str:
    """SHA-256 of ``path`` (``size`` and ``mtime_ns`` make an edited file another key)."""
    return file_sha256(path)


def weights_identity(location: str | Path) -> dict:
    """Which weights a folder or checkpoint file holds, without reading them: its resolved location and a hash of
    each file's name, resolved path (a Hugging Face cache blob is named by its content hash), size and mtime."""
    root = Path(location).expanduser().resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    digest = hashlib.sha256()
    for path in files:
        real = path.resolve()
        stat = real.stat()
        digest.update(f"{path.relative_to(root.parent)}:{real}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return {"location": str(root), "files": digest.hexdigest()}


def read_log(path: Path, spec: dict) -> dict[str, list]:
    """Scores already in the log at ``path`` (empty if none); raises if it holds another spec's scores."""
    if not path.is_file():
        return {}
    lines = path.read_text().split("\n")
    if len(lines) == 1:  # no complete header line: killed between creating the file and writing its header
        path.unlink(missing_ok=True)  # another process reading the same log may have dropped it already
        return {}
    header = _header(path, lines[0])
    if header.get("spec") != json.loads(json.dumps(spec)):
        raise StaleScoresError(
            f"{path} holds scores for another configuration ({header.get('spec')}); "
            f"this run is {spec}. Delete the file or choose another results folder."
        )
    done, good = {}, len(lines[0]) + 1
    for line in lines[1:-1]:  # the text after the last newline is never a complete row
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        done[row["key"]] = row["scores"]
        good += len(line) + 1
    if good < path.stat().st_size:  # drop a half-written tail so appends start on a clean line
        with path.open("r+") as handle:
            handle.truncate(good)
    return done


def _header(path: Path, line: str) -> dict:
    """The complete first line of a log as its header, or a ``StaleScoresError`` if it is not one."""
    try:
        header = json.loads(line)
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict):
        raise StaleScoresError(f"{path} is not a score log (its first line is {line[:80]!r}); delete the file")
    return header


def _append(path: Path, spec: dict, rows: list[dict]) -> None:
    """Append rows (header first if the file is new) and flush them to disk."""
    new = not path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        if new:
            handle.write(json.dumps({"spec": spec}) + "\n")
        handle.writelines(json.dumps(row) + "\n" for row in rows)
        handle.flush()
        os.fsync(handle.fileno())


def score_with_log(
    score_fn: Callable[[list], np.ndarray],
    items: Sequence,
    keys: Sequence[str],
    path: Path,
    spec: dict,
    chunk_size: int = 64,
    done: dict[str, list] | None = None,
    desc: str = "scoring",
) -> np.ndarray:
    """``score_fn`` over ``items`` in chunks, skipping keys already logged, appending each chunk's scores.

    ``score_fn`` maps a list of items to an array with one leading row per item. ``done`` adds
    scores known from elsewhere (e.g. other processes' logs). Returns the scores in ``items`` order.
    """
    if len(set(keys)) != len(keys):
        raise ValueError("item keys must be unique")
    path = Path(path)
    known = {**(done or {}), **read_log(path, spec)}
    todo = [i for i, key in enumerate(keys) if key not in known]
    for start in progress_bar(range(0, len(todo), chunk_size), desc=desc, disable=not todo):
        positions = todo[start : start + chunk_size]
        scores = np.asarray(score_fn([items[i] for i in positions]))
        rows = [{"key": keys[i], "scores": s.tolist()} for i, s in zip(positions, scores)]
        _append(path, spec, rows)
        known.update({row["key"]: row["scores"] for row in rows})
    return np.array([known[key] for key in keys], dtype=float)


def scorer_spec(scorer) -> dict:
    """What besides the weights determines a scorer's numbers: its class, dtype, prompt format and, for a caption
    likelihood, the question before the caption."""
    prompt_format = getattr(scorer, "format", None)
    spec = {
        "class": type(scorer).__name__,
        "dtype": str(next(scorer.model.parameters()).dtype),
        "prompt_format": dataclasses.asdict(prompt_format) if dataclasses.is_dataclass(prompt_format) else None,
    }
    return {**spec, "question": scorer.question} if hasattr(scorer, "question") else spec


def weights_spec(scorer, model_spec: str) -> list[dict]:
    """``weights_identity`` of each place a scorer's weights came from: where ``model_spec`` is found and the folder
    its model was loaded from (they differ for an adapter merged into a base model)."""
    named = (locate(model_spec), getattr(scorer.model, "name_or_path", ""))
    places = {Path(place).expanduser().resolve() for place in named if place}
    return [weights_identity(place) for place in sorted(places) if place.exists()]


def slug(text: str) -> str:
    """A file-name-safe form of a model spec."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def score_log_spec(scorer, model_spec: str, benchmark: str, items_digest: str) -> dict:
    """What keys a model's score log on one benchmark: protocol version, weights, scorer settings, the items."""
    return {
        "protocol": PROTOCOL_VERSION,
        "model": model_spec,
        "weights": weights_spec(scorer, model_spec),
        "scorer": scorer_spec(scorer),
        "benchmark": benchmark,
        "items": items_digest,
    }
