"""Shared fixtures: every test gets its own cache and toy-data folders."""

from __future__ import annotations

import pytest

from analysis_lib.models import ClipSize, LlavaSize, toy_clip, toy_llava_from_clip
from analysis_lib.toyworld import WorldConfig


@pytest.fixture(autouse=True)
def isolated_storage(tmp_path, monkeypatch):
    """Point the artifact cache and the toy data at a temporary folder."""
    monkeypatch.setenv("ANALYSIS_LIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ANALYSIS_LIB_DATA", str(tmp_path / "toy"))
    return tmp_path


@pytest.fixture(scope="session")
def world() -> WorldConfig:
    """The default toy world."""
    return WorldConfig()


@pytest.fixture(scope="session")
def tiny_models(world):
    """A randomly initialised toy CLIP and the LLaVA built on its vision tower."""
    clip, clip_processor = toy_clip(world, ClipSize(width=32, vision_layers=2, text_layers=1, heads=2), seed=0)
    llava, llava_processor = toy_llava_from_clip(clip, clip_processor, LlavaSize(width=32, layers=2, heads=2), seed=0)
    return clip.eval(), clip_processor, llava.eval(), llava_processor
