"""The toy's Vicuna: pre-training the toy LLaVA's language model on a generic content-copying corpus.

LLaVA starts from a language model that can already bind words to what they refer to. The toy LM
learns the closest generic skill first: find an earlier occurrence of the current content and copy
what followed it (an induction head). Each sequence is a random segment of 3-10 vocabulary words, a
random filler of 0-8 words, and the segment again; the loss falls on the repeat's tokens that the
first occurrence predicts (all but its first). The random lengths matter: with a fixed layout the LM
learns a positional shortcut (copy from k tokens back) instead of matching content.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from analysis_lib.tokenization import SPECIAL_TOKENS
from analysis_lib.training import Stage, adamw_schedule, clipped_step, run_stage

HELD_OUT_SEED = 99


@dataclass(frozen=True)
class LmPretrainConfig:
    """Content-copying pre-training: segment and filler lengths, optimiser, and its stopping check."""

    segment: tuple[int, int] = (3, 10)
    filler: tuple[int, int] = (0, 8)
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100
    max_steps: int = 3000
    target: float = 0.98
    check_every: int = 250
    held_out: int = 512


def copy_batch(
    tokenizer: PreTrainedTokenizerFast, cfg: LmPretrainConfig, n: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` right-padded sequences ``<s> segment filler segment`` with labels on the predictable repeat."""
    words = sorted(i for tok, i in tokenizer.get_vocab().items() if tok not in SPECIAL_TOKENS)  # dict order varies
    rows = []
    for _ in range(n):
        segment = list(rng.choice(words, rng.integers(cfg.segment[0], cfg.segment[1] + 1)))
        filler = list(rng.choice(words, rng.integers(cfg.filler[0], cfg.filler[1] + 1)))
        ids = [tokenizer.bos_token_id, *segment, *filler, *segment]
        labels = [-100] * (len(ids) - len(segment) + 1) + segment[1:]
        rows.append((ids, labels))
    length = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((n, length), tokenizer.pad_token_id)
    labels = torch.full((n, length), -100)
    mask = torch.zeros((n, length), dtype=torch.long)
    for row, (ids, labs) in enumerate(rows):
        input_ids[row, : len(ids)], labels[row, : len(ids)], mask[row, : len(ids)] = (
            torch.tensor(ids), torch.tensor(labs), 1
        )  # fmt: skip
    return input_ids, mask, labels


@torch.no_grad()
def copy_accuracy(model: LlamaForCausalLM, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> float:
    """Share of the predictable repeated tokens that the model predicts."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids, mask, labels = (t.to(device) for t in batch)
    predicted = model(input_ids=ids, attention_mask=mask).logits[:, :-1].argmax(-1)
    scored = labels[:, 1:] != -100
    model.train(was_training)
    return (predicted == labels[:, 1:])[scored].float().mean().item()


def pretrain_lm(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    cfg: LmPretrainConfig,
    seed: int,
    progress: bool = True,
) -> dict:
    """Train on fresh copying sequences until held-out copy accuracy reaches ``cfg.target``; returns the log."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    held_out = copy_batch(tokenizer, cfg, cfg.held_out, np.random.default_rng(HELD_OUT_SEED))
    params = list(model.parameters())
    opt, sched = adamw_schedule(params, cfg.lr, 0.0, cfg.warmup, None)
    stage = Stage("content copying", (), "copy accuracy", cfg.target, cfg.max_steps)

    def train_step(_: Stage) -> float:
        ids, mask, labels = (t.to(device) for t in copy_batch(tokenizer, cfg, cfg.batch_size, rng))
        return clipped_step(model(input_ids=ids, attention_mask=mask, labels=labels).loss, params, opt, sched)

    model.train()
    log = run_stage(stage, train_step, lambda _: {"value": copy_accuracy(model, held_out)}, cfg.check_every, progress)
    model.eval()
    return log
