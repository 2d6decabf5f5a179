"""The toy models' cache keys: every spec a ``ToySetup`` gives (CLIP, LM, LLaVA, features, vision source, SSL
encoder) has the key recorded in ``tests/data/cache_specs.json``, so models cached before stay found.

A change of recipe that is meant to retrain (a new key) records the new specs: ``python tests/test_cache_keys.py``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from analysis_lib.chapters import ch01_same_encoder as ch01
from analysis_lib.chapters import ch02_tokens as ch02
from analysis_lib.chapters import ch07_clip_to_dino as ch07
from analysis_lib.core.cache import spec_key
from analysis_lib.models.comm_merge import VisionSource
from analysis_lib.models.image_tokens import ImageTokens
from analysis_lib.toy.toy_setup import ToySetup, ssl_recipe, ssl_spec

RECORDED = Path(__file__).parent / "data" / "cache_specs.json"
SEED = 3


def setups() -> dict[str, ToySetup]:
    """The setups whose keys are recorded: the default, image-token and vision-source variants, the chapters'
    own (smoke ones included)."""
    default = ToySetup()
    cases = {"default": default, "cls tokens": dataclasses.replace(default, image_tokens=ImageTokens(tokens="cls"))}
    cases |= {f"vision {s.encoder} {s.merge}": dataclasses.replace(default, vision=s) for s in ch07.SOURCES.values()}
    cases["vision ssl smoke"] = dataclasses.replace(default, vision=VisionSource(encoder="ssl", ssl_smoke=True))
    for smoke in (False, True):
        cases |= {f"ch01 {v} smoke={smoke}": ch01.toy_setup(300, smoke, v) for v in ch01.VARIANTS}
        cases |= {f"ch02 {n} smoke={smoke}": ch02.chapter_setup(300, smoke, t) for n, t in ch02.TOKEN_VARIANTS.items()}
        cases |= {f"ch07 {n} smoke={smoke}": ch07.chapter_setup(300, smoke, s) for n, s in ch07.SOURCES.items()}
    return cases


def specs(setup: ToySetup) -> dict[str, str]:
    """The key of every spec of ``setup`` for ``SEED`` (the hash the cache names its folder by)."""
    layer = setup.vision.feature_layer(setup.clip_size.vision_layers)
    found = {
        "clip": setup.clip_spec(SEED),
        "lm": setup.lm_spec(SEED),
        "llava": setup.llava_spec(SEED),
        "features": setup.feature_spec(SEED, layer),
        "vision": setup.vision_spec(SEED),
        "ssl": ssl_spec(setup, SEED, ssl_recipe(setup)),
    }
    return {kind: spec_key(spec) for kind, spec in found.items()}


def all_specs() -> dict[str, dict[str, str]]:
    """Every recorded setup's specs."""
    return {name: specs(setup) for name, setup in setups().items()}


@pytest.mark.parametrize("name", sorted(setups()))
def test_specs_are_the_recorded_ones(name):
    assert specs(setups()[name]) == json.loads(RECORDED.read_text()).get(name)


def test_every_setup_is_recorded():
    assert sorted(setups()) == sorted(json.loads(RECORDED.read_text()))


if __name__ == "__main__":
    RECORDED.write_text(json.dumps(all_specs(), indent=1, sort_keys=True) + "\n")
    print(f"recorded {RECORDED}")
