"""A content-keyed artifact cache with atomic writes.

An artifact is a folder named by the hash of everything that determines it (its *spec*); the spec is
stored beside the files and checked on load. Folders are built under a temporary name and renamed
into place, so a killed run leaves nothing that a later run would load; the temporary folders of
processes that no longer run are removed the next time the cache is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import torch
import transformers

import analysis_lib
from analysis_lib.leftovers import remove_dead

CACHE_ENV = "ANALYSIS_LIB_CACHE"
SPEC_FILE = "spec.json"
TMP_FOLDER = re.compile(r"^\..+\.tmp-(?P<pid>\d+)-[0-9a-f]{8}$")  # what cached_artifact builds in


def cache_root() -> Path:
    """The cache folder: ``$ANALYSIS_LIB_CACHE`` or ``data/cache`` under the repository."""
    default = Path(__file__).resolve().parent.parent / "data" / "cache"
    return Path(os.environ.get(CACHE_ENV, default))


def full_spec(spec: dict) -> dict:
    """The spec plus the library and framework versions that also determine an artifact."""
    versions = {
        "analysis_lib": analysis_lib.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    return {**spec, "versions": versions}


def spec_key(spec: dict) -> str:
    """A stable short hash of a JSON-able spec."""
    text = json.dumps(spec, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def remove_stale_builds(root: Path) -> None:
    """Delete the temporary build folders (``<kind>/.<key>.tmp-<pid>-<id>``) whose process no longer runs."""
    remove_dead((folder for folder in Path(root).glob("*/.*.tmp-*") if folder.is_dir()), TMP_FOLDER)


def cached_artifact(
    kind: str, spec: dict, build: Callable[[Path], None], root: Path | None = None
) -> tuple[Path, bool]:
    """Return ``(folder, reused)``; build the folder with ``build(tmp_dir)`` unless a valid one exists."""
    spec, root = full_spec(spec), root or cache_root()
    remove_stale_builds(root)
    final = root / kind / spec_key(spec)
    if final.is_dir():
        stored = json.loads((final / SPEC_FILE).read_text())
        if stored == json.loads(json.dumps(spec, default=str)):
            return final, True
        shutil.rmtree(final)  # a hash collision or an edited folder: never reuse it
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        build(tmp)
        (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True, default=str))
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished the same artifact first
            if not (final / SPEC_FILE).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final, False
