"""Toy scorers' scores (and patch attributions) cached on disk, so that a chapter re-run with cached models does not
score again.

The key holds everything that determines a score: the scorer's class and settings, every weight, config and
processor setting of its models, the state of any random generator its models draw from (a permuted-positions
LLaVA shuffles afresh per pass), the library's own source (any edit to ``analysis_lib`` scores afresh), the
framework versions (``cache.full_spec``), and the scored images' pixels and texts. A cache hit also leaves the
generators where the scoring would have left them, so later scores match a run without the cache. A scorer with
anything the key cannot describe (a lambda, a closure, a function from outside the library, an unknown
object) is scored directly, never cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import numpy as np
import torch
from transformers import ProcessorMixin

from analysis_lib.core.cache import cached_artifact
from analysis_lib.scoring.attribution import patch_attributions
from analysis_lib.scoring.scorers import ImageLike, Pairs, as_pil

LIBRARY = Path(__file__).resolve().parents[1]
SCORES, GENERATORS = "scores.npy", "generators.npz"


class NotFingerprintable(TypeError):
    """A scorer part that the cache key cannot describe."""


@cache
def library_fingerprint() -> str:
    """A hash of the library's sources (chapter modules included): an edit anywhere scores afresh."""
    digest = hashlib.sha256()
    for path in sorted(LIBRARY.rglob("*.py")):
        digest.update(str(path.relative_to(LIBRARY)).encode() + path.read_bytes())
    return digest.hexdigest()


def module_generators(module: torch.nn.Module) -> dict[str, torch.Generator]:
    """The random generators that ``module`` or its submodules hold as attributes, by dotted name."""
    found = {}
    for prefix, sub in module.named_modules():
        for name, value in vars(sub).items():
            if isinstance(value, torch.Generator):
                found[f"{prefix}.{name}" if prefix else name] = value
    return found


def is_library_function(value: object) -> bool:
    """A plain named function of ``analysis_lib`` (no lambda, no closure over values the key cannot see)."""
    return (inspect.isfunction(value) and value.__module__.split(".")[0] == "analysis_lib"
            and "<" not in value.__qualname__ and not value.__closure__)  # fmt: skip


def _update(digest: hashlib._Hash, value: object) -> None:
    """Feed ``value`` into ``digest``; ``NotFingerprintable`` for what it cannot describe."""
    if isinstance(value, torch.nn.Module):
        digest.update(f"{type(value).__qualname__}:{value.training}".encode())
        for name, tensor in value.state_dict().items():
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}:{tensor.device.type}".encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        config = getattr(value, "config", None)
        if config is not None:
            digest.update(config.to_json_string(use_diff=False).encode())
        for name, generator in module_generators(value).items():
            digest.update(name.encode() + generator.get_state().numpy().tobytes())
    elif isinstance(value, ProcessorMixin):  # its JSON leaves out the tokenizer and image processor
        digest.update(f"{type(value).__qualname__}:{value.to_json_string()}".encode())
        for name in value.attributes:
            _update(digest, getattr(value, name))
    elif hasattr(value, "to_json_string"):  # image processors, configs
        digest.update(f"{type(value).__qualname__}:{value.to_json_string()}".encode())
    elif hasattr(value, "backend_tokenizer"):  # a fast tokenizer: its whole vocabulary and rules
        digest.update(f"{value.padding_side}:{value.backend_tokenizer.to_str()}".encode())
    elif hasattr(value, "score_pairs"):  # a scorer inside a scorer
        digest.update(scorer_fingerprint(value).encode())
    elif dataclasses.is_dataclass(value):
        digest.update(f"{type(value).__qualname__}:{json.dumps(dataclasses.asdict(value), sort_keys=True)}".encode())
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__}{len(value)}".encode())
        for item in value:
            _update(digest, item)
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            digest.update(str(key).encode())
            _update(digest, value[key])
    elif is_library_function(value):  # its behaviour is the library's source, already in the key
        digest.update(f"{value.__module__}.{value.__qualname__}".encode())
    elif value is None or isinstance(value, (str, int, float, bool, torch.dtype, torch.device)):
        digest.update(repr(value).encode())
    else:
        raise NotFingerprintable(f"cannot fingerprint a {type(value).__qualname__}")


def scorer_fingerprint(scorer: object) -> str:
    """A hash of the scorer's class and every attribute (``NotFingerprintable`` if one cannot be described)."""
    digest = hashlib.sha256(f"{type(scorer).__module__}.{type(scorer).__qualname__}".encode())
    for name in sorted(vars(scorer)):
        digest.update(name.encode())
        _update(digest, vars(scorer)[name])
    return digest.hexdigest()


def inputs_fingerprint(images: Sequence[ImageLike], pairs: Pairs) -> str:
    """A hash of the images' pixels and the scored ``(image index, text)`` pairs."""
    digest = hashlib.sha256()
    for image in images:
        pil = as_pil(image)
        digest.update(f"{pil.mode}{pil.size}".encode() + pil.tobytes())
    digest.update(json.dumps(list(pairs)).encode())
    return digest.hexdigest()


def scorer_generators(scorer: object) -> dict[str, torch.Generator]:
    """Every random generator held by the scorer's models (and those of scorers inside it), by dotted name."""
    found = {}
    for attr, value in vars(scorer).items():
        if isinstance(value, torch.nn.Module):
            found |= {f"{attr}.{name}": gen for name, gen in module_generators(value).items()}
        elif hasattr(value, "score_pairs"):
            found |= {f"{attr}.{name}": gen for name, gen in scorer_generators(value).items()}
    return found


def cached_result(scorer: object, spec: dict, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """``compute()`` (an array the scorer computes) read from the artifact cache under ``spec`` with the scorer's and
    the library's fingerprints, the scorer's random generators left where computing would have left them; computed
    directly when the scorer cannot be fingerprinted."""
    try:
        key = scorer_fingerprint(scorer)
    except NotFingerprintable:
        return compute()
    spec = {"scorer": key, **spec, "library": library_fingerprint()}
    generators = scorer_generators(scorer)

    def build(folder: Path) -> None:
        np.save(folder / SCORES, np.asarray(compute()), allow_pickle=False)
        np.savez(folder / GENERATORS, **{name: g.get_state().numpy() for name, g in generators.items()})

    folder, reused = cached_artifact("scores", spec, build)
    if reused:  # leave the generators where the computation would have
        with np.load(folder / GENERATORS, allow_pickle=False) as states:
            for name, generator in generators.items():
                generator.set_state(torch.from_numpy(states[name]))
    return np.load(folder / SCORES, allow_pickle=False)


class CachedScores:
    """A scorer whose ``score_pairs`` is read from the artifact cache when this scorer scored these inputs
    before (see the module docstring); everything else is the wrapped scorer's."""

    def __init__(self, scorer: object) -> None:
        self.scorer = scorer

    def __getattr__(self, name: str):
        return getattr(self.scorer, name)

    def score_pairs(self, images: Sequence[ImageLike], pairs: Pairs) -> np.ndarray:
        """The wrapped scorer's ``score_pairs``, computed once per key."""
        spec = {"inputs": inputs_fingerprint(images, pairs)}
        return cached_result(self.scorer, spec, lambda: self.scorer.score_pairs(images, pairs))


def cached_attributions(
    scorer: object, images: Sequence[ImageLike], captions: Sequence[str], take_log: bool, patch_size: int
) -> np.ndarray:
    """``attribution.patch_attributions`` of the score (its log with ``take_log``) of caption i with image i by a
    scorer with ``pixel_values`` and ``score_batch`` (e.g. ``VQAScorer``), computed once per key."""

    def compute() -> np.ndarray:
        def score(pixels: torch.Tensor) -> torch.Tensor:
            scores = scorer.score_batch(pixels, list(captions))
            return torch.log(scores) if take_log else scores

        return patch_attributions(score, scorer.pixel_values(images), patch_size)

    method = {"method": "captum FeatureAblation, baseline 0", "patch_size": patch_size, "log": take_log}
    spec = {"inputs": inputs_fingerprint(images, list(enumerate(captions))), "attribution": method}
    return cached_result(scorer, spec, compute)


def cached_scores(scorer: object) -> CachedScores:
    """``scorer`` with its scores cached (a scorer already wrapped is returned as it is)."""
    return scorer if isinstance(scorer, CachedScores) else CachedScores(scorer)
