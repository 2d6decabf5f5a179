"""VQAScore throughput: one forward pass per (image, caption) pair vs the shared image-prefix KV cache.

    .venv/bin/python benchmarks/vqascore_prefix_cache.py                      # CPU, tiny LLaVA, 576 image tokens
    .venv/bin/python benchmarks/vqascore_prefix_cache.py --shape llava-1.5-7b --device cuda --dtype bfloat16

The model is randomly initialised (no weights are downloaded); the shape, the 576 image tokens, the
LLaVA-1.5 system prompt and What'sUp-like captions are the real ones, so the cost is the real cost.
Prints pairs/s for both ways and their ratio for K captions per image (goal: ratio >= 0.8 K), beside the
ratio that language-model token counts alone allow, K(P + S) / (P + K S) for a shared prefix of P tokens
(576 image tokens + system prompt) and caption continuations of S tokens (the vision tower, run once
per image instead of once per pair, can add to it).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from analysis_lib.models.prompts import PromptFormat
from analysis_lib.models.tiny import LLAVA_15_7B, SMALL_LLAVA_336, TINY_LLAVA_336, random_llava
from analysis_lib.scoring.scorers import VQAScorer, shared_prefix_length

SHAPES = {"tiny": TINY_LLAVA_336, "small": SMALL_LLAVA_336, "llava-1.5-7b": LLAVA_15_7B}
CAPTIONS = [
    "a mug to the left of a plate",
    "a mug to the right of a plate",
    "a mug on a plate",
    "a mug under a plate",
    "a red mug to the left of a white plate",
    "a red mug to the right of a white plate",
    "a red mug on a white plate",
    "a red mug under a white plate",
]


def pairs_per_second(scorer: VQAScorer, images: list[np.ndarray], k: int, repeats: int) -> tuple[float, np.ndarray]:
    """Best-of-``repeats`` throughput of scoring every image against the first ``k`` captions."""
    pairs = [(i, c) for i in range(len(images)) for c in CAPTIONS[:k]]
    best, scores = float("inf"), None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        scores = scorer.score_pairs(images, pairs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return len(pairs) / best, scores


def token_ceiling(scorer: VQAScorer, k: int) -> float:
    """The speed-up if cost were proportional to language-model tokens: K(P + S) / (P + K S)."""
    sequences = scorer.sequences(CAPTIONS[:k])
    prefix = shared_prefix_length(sequences, keep=len(scorer.answer_ids) + 1)
    suffix = float(np.mean([len(s) - prefix for s in sequences]))
    return k * (prefix + suffix) / (prefix + k * suffix)


def main() -> None:
    """Time both ways for each K and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--images", type=int, default=8, help="images per measurement")
    parser.add_argument("--batch-size", type=int, default=32, help="captions per forward pass, both ways")
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, processor = random_llava(SHAPES[args.shape], seed=0, device=args.device, dtype=getattr(torch, args.dtype))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (336, 448, 3), dtype=np.uint8) for _ in range(args.images)]
    ways = {
        "per pair": VQAScorer(model, processor, PromptFormat(), args.batch_size, prefix_cache=False),
        "prefix cache": VQAScorer(model, processor, PromptFormat(), args.batch_size, prefix_cache=True),
    }
    ways["per pair"].score_pairs(images[:1], [(0, CAPTIONS[0])])  # warm-up
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({os.cpu_count()} cores)"
    print(
        f"VQAScore, random {args.shape} LLaVA ({args.dtype}) on {device}, {args.images} images, batch {args.batch_size}"
    )
    print(
        f"{'K':>3}{'per pair/s':>12}{'cached/s':>11}{'ratio':>8}{'goal 0.8K':>11}{'tok. ceiling':>14}{'max |diff|':>12}"
    )
    for k in args.ks:
        slow, reference = pairs_per_second(ways["per pair"], images, k, args.repeats)
        fast, cached = pairs_per_second(ways["prefix cache"], images, k, args.repeats)
        diff = float(np.abs(cached - reference).max())
        ceiling = token_ceiling(ways["prefix cache"], k)
        print(f"{k:>3}{slow:>12.2f}{fast:>11.2f}{fast / slow:>8.2f}{0.8 * k:>11.1f}{ceiling:>14.2f}{diff:>12.2e}")


if __name__ == "__main__":
    main()
