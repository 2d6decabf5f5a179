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

from analysis_lib.data.tokenization import SPECIAL_TOKENS
from analysis_lib.data.toyworld import VQA_QUESTION
from analysis_lib.models.prompts import TOY_FORMAT, PromptFormat
from analysis_lib.training.clip_llava import Stage, adamw_schedule, clipped_step, run_stage

HELD_OUT_SEED = 99


@dataclass(frozen=True)
class LmPretrainConfig:
    """Content-copying pre-training: segment and filler lengths, optimiser, and its stopping check.

    With ``quote_steps`` a second stage follows (at most that many steps): a ``quote_share`` of its sequences
    ask whether a quoted segment is the one written before (see ``quote_batch``), the rest are copying; it
    stops when held-out quote answers reach ``quote_target``."""

    segment: tuple[int, int] = (3, 10)
    filler: tuple[int, int] = (0, 8)
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100
    max_steps: int = 3000
    target: float = 0.98
    check_every: int = 250
    held_out: int = 512
    quote_steps: int = 0
    quote_share: float = 0.5
    quote_target: float = 0.95


def content_words(tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """The vocabulary's word ids, sorted (dict order varies between tokenizer instances)."""
    return sorted(i for tok, i in tokenizer.get_vocab().items() if tok not in SPECIAL_TOKENS)


def padded(rows: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` of ``(ids, labels)`` rows."""
    length = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), length), pad_id)
    labels = torch.full((len(rows), length), -100)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for row, (ids, labs) in enumerate(rows):
        input_ids[row, : len(ids)], labels[row, : len(ids)], mask[row, : len(ids)] = (
            torch.tensor(ids), torch.tensor(labs), 1
        )  # fmt: skip
    return input_ids, mask, labels


def copy_batch(
    tokenizer: PreTrainedTokenizerFast, cfg: LmPretrainConfig, n: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` right-padded sequences ``<s> segment filler segment`` with labels on the predictable repeat."""
    words = content_words(tokenizer)
    rows = []
    for _ in range(n):
        segment = list(rng.choice(words, rng.integers(cfg.segment[0], cfg.segment[1] + 1)))
        filler = list(rng.choice(words, rng.integers(cfg.filler[0], cfg.filler[1] + 1)))
        ids = [tokenizer.bos_token_id, *segment, *filler, *segment]
        labels = [-100] * (len(ids) - len(segment) + 1) + segment[1:]
        rows.append((ids, labels))
    return padded(rows, tokenizer.pad_token_id)


def quoted_segment(segment: list[int], words: list[int], rng: np.random.Generator) -> tuple[list[int], bool]:
    """The segment itself (half the time) or a false copy: one word replaced by another, or two different
    words swapped; returns it and whether it is true."""
    if rng.random() < 0.5:
        return segment, True
    quote = list(segment)
    swappable = [(i, j) for i in range(len(quote)) for j in range(i + 1, len(quote)) if quote[i] != quote[j]]
    if rng.random() < 0.5 and swappable:
        i, j = swappable[rng.integers(len(swappable))]
        quote[i], quote[j] = quote[j], quote[i]
    else:
        k = int(rng.integers(len(quote)))
        quote[k] = int(rng.choice([w for w in words if w != quote[k]]))
    return quote, False


def quote_batch(
    tokenizer: PreTrainedTokenizerFast, cfg: LmPretrainConfig, n: int, rng: np.random.Generator,
    prompt_format: PromptFormat = TOY_FORMAT,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """``n`` sequences that ask, in the VQAScore question's words, whether a quoted segment is the one written
    where the toy LLaVA's image goes: ``USER: segment filler\nDoes this figure show "quote"? ... ASSISTANT: Yes``.

    The answer is learned; so is the quote when it is true (a false one is not text to imitate), as the toy
    LLaVA's ``question_loss`` does."""
    words = [w for w in content_words(tokenizer) if tokenizer.convert_ids_to_tokens(w).isalpha()]
    head, tail = prompt_format.prompt(VQA_QUESTION).split("{}")
    rows = []
    for _ in range(n):
        segment = [int(w) for w in rng.choice(words, rng.integers(cfg.segment[0], cfg.segment[1] + 1))]
        filler = [int(w) for w in rng.choice(words, rng.integers(cfg.filler[0], cfg.filler[1] + 1))]
        quote, true = quoted_segment(segment, words, rng)
        before, image_after = head.split("<image>")
        pieces = [
            ([tokenizer.bos_token_id, *tokenizer.encode(before, add_special_tokens=False), *segment, *filler,
              *tokenizer.encode(image_after, add_special_tokens=False)], False),
            (quote, true),
            (tokenizer.encode(tail, add_special_tokens=False), False),
            (tokenizer.encode(("Yes" if true else "No") + tokenizer.eos_token, add_special_tokens=False), True),
        ]  # fmt: skip
        ids = [i for piece, _ in pieces for i in piece]
        labels = [i if learned else -100 for piece, learned in pieces for i in piece]
        rows.append((ids, labels))
    return padded(rows, tokenizer.pad_token_id)


@torch.no_grad()
def copy_accuracy(
    model: LlamaForCausalLM, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], answers_only: bool = False
) -> float:
    """Share of the labelled tokens that the model predicts (``answers_only``: of each row's first-from-last
    labelled token before the end token, i.e. a quote question's yes/no answer)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids, mask, labels = (t.to(device) for t in batch)
    predicted = model(input_ids=ids, attention_mask=mask).logits[:, :-1].argmax(-1)
    scored = labels[:, 1:] != -100
    if answers_only:
        last = scored.long().cumsum(1).argmax(1)  # each row's last labelled position: its end token
        scored = torch.zeros_like(scored)
        scored[torch.arange(len(ids)), last - 1] = True
    model.train(was_training)
    return (predicted == labels[:, 1:])[scored].float().mean().item()


def pretrain_lm(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    cfg: LmPretrainConfig,
    seed: int,
    progress: bool = True,
) -> dict:
    """Train on fresh copying sequences until held-out copy accuracy reaches ``cfg.target`` (then, with
    ``cfg.quote_steps``, on copying and quote questions until held-out quote answers reach ``cfg.quote_target``);
    returns the copying stage's log, the quote stage's under ``"quote checking"``."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    held_out = copy_batch(tokenizer, cfg, cfg.held_out, np.random.default_rng(HELD_OUT_SEED))
    params = list(model.parameters())
    opt, sched = adamw_schedule(params, cfg.lr, 0.0, cfg.warmup, None)

    def train_step(stage: Stage) -> float:
        quote = stage.name == "quote checking" and rng.random() < cfg.quote_share
        batch = (quote_batch if quote else copy_batch)(tokenizer, cfg, cfg.batch_size, rng)
        ids, mask, labels = (t.to(device) for t in batch)
        return clipped_step(model(input_ids=ids, attention_mask=mask, labels=labels).loss, params, opt, sched)

    model.train()
    stage = Stage("content copying", (), "copy accuracy", cfg.target, cfg.max_steps)
    log = run_stage(stage, train_step, lambda _: {"value": copy_accuracy(model, held_out)}, cfg.check_every, progress)
    if cfg.quote_steps:
        quotes = quote_batch(tokenizer, cfg, cfg.held_out, np.random.default_rng(HELD_OUT_SEED + 1))
        stage = Stage("quote checking", (), "quote answers", cfg.quote_target, cfg.quote_steps)
        log["quote checking"] = run_stage(
            stage, train_step, lambda _: {"value": copy_accuracy(model, quotes, answers_only=True)}, cfg.check_every,
            progress,
        )  # fmt: skip
    model.eval()
    return log
