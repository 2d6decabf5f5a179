"""Helper for test_score_log: VQAScore of a tiny random LLaVA on 5 images x 2 captions, sharded over
however many processes launched it; rank 0 saves the gathered scores."""

import sys
from pathlib import Path

import numpy as np
import torch

from analysis_lib.full.sharding import process_state, sharded_scores
from analysis_lib.models.prompts import PromptFormat
from analysis_lib.models.tiny import TINY_LLAVA_336, random_llava
from analysis_lib.scoring.scorers import VQAScorer, score_options

CAPTIONS = ("a mug left of a plate", "a mug right of a plate")


def main(log_dir: str, out: str) -> None:
    """Score, gather, save."""
    model, processor = random_llava(TINY_LLAVA_336, seed=0)
    scorer = VQAScorer(model, processor, PromptFormat(), batch_size=4)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8) for _ in range(5)]
    keys = [f"image{i}" for i in range(5)]

    def score(batch):
        return score_options(scorer, batch, [CAPTIONS] * len(batch))

    scores = sharded_scores(score, images, keys, Path(log_dir) / "scores.jsonl", {"test": 1}, chunk_size=2)
    if process_state().is_main_process:
        np.save(out, scores)
    if torch.distributed.is_initialized():  # a clean shutdown: gloo's threads otherwise may abort at exit
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
