"""Training the toy models: contrastive CLIP from scratch, then LLaVA on CLIP's frozen features."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm
from transformers import (
    CLIPModel,
    CLIPProcessor,
    LlavaForConditionalGeneration,
    PreTrainedTokenizerFast,
    get_cosine_schedule_with_warmup,
)

from analysis_lib.prompts import PromptFormat
from analysis_lib.toyworld import Scene, WorldConfig, instruction_example, relational_caption, training_caption


@dataclass(frozen=True)
class ClipTrainConfig:
    """Contrastive training of the toy CLIP."""

    steps: int = 300
    batch_size: int = 256
    lr: float = 2e-3
    warmup: int = 80
    weight_decay: float = 0.1


CAPTIONING = (("describe", 1.0),)
INSTRUCTION_MIX = (("yes/no", 0.5), ("describe", 0.2), ("relative", 0.15), ("where", 0.15))


@dataclass(frozen=True)
class LlavaTrainConfig:
    """LLaVA's stages on the toy: (1) projector only, on captions; (2) projector + LM, first on
    captions, then on the instruction mix.

    The toy LM is not pre-trained, so stage 2 opens with captioning until the model names the
    relation in held-out captions (``caption_target`` accuracy, checked every ``check_every`` steps,
    at most ``caption_max_steps``): it learns which object is where before it learns to answer
    questions; then ``instruction_steps`` on the mix. The learning rate warms up, then follows one
    cosine decay over ``caption_max_steps + instruction_steps``.
    """

    projector_steps: int = 100
    caption_max_steps: int = 2000
    caption_target: float = 0.95
    check_every: int = 100
    instruction_steps: int = 1000
    validation_scenes: int = 512
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.0
    instruction_mix: tuple[tuple[str, float], ...] = INSTRUCTION_MIX


def _optimise(params, lr: float, weight_decay: float, warmup: int, steps: int):
    """AdamW with linear warm-up and cosine decay."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return opt, get_cosine_schedule_with_warmup(opt, min(warmup, steps // 2), steps)


def _step(loss: torch.Tensor, params, opt, sched) -> float:
    """One clipped optimiser step; returns the loss value."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return loss.detach().item()


def train_clip(
    model: CLIPModel,
    processor: CLIPProcessor,
    scenes: list[Scene],
    pixels: torch.Tensor,
    world: WorldConfig,
    cfg: ClipTrainConfig,
    seed: int,
    progress: bool = True,
) -> list[float]:
    """Train CLIP with the symmetric InfoNCE loss on web-style captions; returns the loss curve."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    opt, sched = _optimise(params, cfg.lr, cfg.weight_decay, cfg.warmup, cfg.steps)
    model.train()
    losses = []
    for _ in tqdm(range(cfg.steps), desc="CLIP (contrastive)", disable=not progress, mininterval=5):
        idx = rng.choice(len(scenes), cfg.batch_size, replace=False)
        text = processor.tokenizer(
            [training_caption(scenes[i], rng, world) for i in idx], padding=True, return_tensors="pt"
        ).to(device)
        out = model(**text, pixel_values=pixels[idx].to(device), return_loss=True)
        losses.append(_step(out.loss, params, opt, sched))
    model.eval()
    return losses


def expand_image_tokens(prompt: str, n_tokens: int, image_token: str = "<image>") -> str:
    """Repeat the image placeholder once per image feature, as ``LlavaProcessor`` does."""
    return prompt.replace(image_token, image_token * n_tokens)


def conversation_batch(
    tokenizer: PreTrainedTokenizerFast,
    prompt_format: PromptFormat,
    conversations: list[list[tuple[str, str]]],
    n_image_tokens: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` for multi-turn conversations.

    LLaVA-1.5's conversation layout: the image in the first user turn, every answer followed by the
    end token; only answer tokens (and their end tokens) carry labels, the rest is -100.
    """
    pieces, owners = [], []
    for row, turns in enumerate(conversations):
        for turn, (question, answer) in enumerate(turns):
            prompt = prompt_format.prompt(question) if turn == 0 else prompt_format.followup(question)
            pieces += [expand_image_tokens(prompt, n_image_tokens), answer + tokenizer.eos_token]
            owners += [(row, False), (row, True)]
    encoded = tokenizer(pieces, add_special_tokens=False)["input_ids"]
    rows: list[tuple[list[int], list[int]]] = [([tokenizer.bos_token_id], [-100]) for _ in conversations]
    for ids, (row, is_answer) in zip(encoded, owners):
        rows[row][0].extend(ids)
        rows[row][1].extend(ids if is_answer else [-100] * len(ids))
    length = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), length), tokenizer.pad_token_id)
    labels = torch.full((len(rows), length), -100)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for row, (ids, labs) in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(ids)] = torch.tensor(labs)
        mask[row, : len(ids)] = 1
    return input_ids, mask, labels


def embed_with_features(
    model: LlavaForConditionalGeneration, input_ids: torch.Tensor, features: torch.Tensor
) -> torch.Tensor:
    """Token embeddings with the image placeholders replaced by projected vision features."""
    embeds = model.get_input_embeddings()(input_ids)
    projected = model.model.multi_modal_projector(features).to(embeds.dtype)
    image_mask = (input_ids == model.config.image_token_index).unsqueeze(-1).expand_as(embeds)
    return embeds.masked_scatter(image_mask, projected)


def fold_standardisation(model: LlavaForConditionalGeneration, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Fold ``(x - mean) / std`` into the projector's first layer, so raw features give the same output."""
    linear = model.model.multi_modal_projector.linear_1
    with torch.no_grad():
        weight = linear.weight / std.to(linear.weight)
        linear.bias -= weight @ mean.to(weight)
        linear.weight.copy_(weight)


@torch.no_grad()
def caption_relation_accuracy(
    model: LlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerFast,
    prompt_format: PromptFormat,
    scenes: list[Scene],
    features: torch.Tensor,
) -> float:
    """Teacher-forced captions: how often the relation word ("a red circle [left] of ...") is predicted."""
    was_training = model.training
    model.eval()
    conversations = [[("Describe the image.", relational_caption(s))] for s in scenes]
    ids, mask, labels = conversation_batch(tokenizer, prompt_format, conversations, model.config.image_seq_length)
    device = next(model.parameters()).device
    ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
    logits = model(inputs_embeds=embed_with_features(model, ids, features.to(device)), attention_mask=mask).logits
    relation_pos = (labels != -100).float().argmax(dim=1) + 3  # after "a", colour, shape
    rows = torch.arange(len(scenes), device=device)
    correct = logits[rows, relation_pos - 1].argmax(-1) == ids[rows, relation_pos]
    model.train(was_training)
    return correct.float().mean().item()


def train_llava(
    model: LlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerFast,
    scenes: list[Scene],
    features: torch.Tensor,
    prompt_format: PromptFormat,
    cfg: LlavaTrainConfig,
    seed: int,
    progress: bool = True,
    caption_tasks: dict[str, float] | None = None,
) -> dict:
    """LLaVA's stages with next-token loss on answers, on standardised cached features.

    ``caption_tasks`` replaces the captioning of stage 1 and of stage 2's first part (controls only).

    The last ``cfg.validation_scenes`` scenes are held out to decide when captioning ends.
    Returns the loss curves, the step at which stage 2 switched to instructions and the
    validation accuracies seen.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    n_train = len(scenes) - cfg.validation_scenes
    mean, std = features[:n_train].mean(dim=(0, 1)), features[:n_train].std(dim=(0, 1)) + 1e-6
    standardised = ((features - mean) / std).to(device)
    val_scenes, val_features = scenes[n_train:], standardised[n_train:]
    n_tokens = model.config.image_seq_length
    projector = list(model.model.multi_modal_projector.parameters())
    params = projector + list(model.model.language_model.parameters())
    log: dict = {"curves": {"projector": [], "projector+LM": []}, "validation": []}

    def train_step(stage: str, trainable: list, opt, sched, tasks: dict[str, float]) -> None:
        idx = rng.choice(n_train, cfg.batch_size, replace=False)
        conversations = [[instruction_example(scenes[i], rng, tasks)] for i in idx]
        ids, mask, labels = conversation_batch(tokenizer, prompt_format, conversations, n_tokens)
        embeds = embed_with_features(model, ids.to(device), standardised[idx])
        loss = model(inputs_embeds=embeds, attention_mask=mask.to(device), labels=labels.to(device)).loss
        log["curves"][stage].append(_step(loss, trainable, opt, sched))

    model.train()
    captions, mix = caption_tasks or dict(CAPTIONING), dict(cfg.instruction_mix)
    opt, sched = _optimise(projector, cfg.lr, cfg.weight_decay, cfg.warmup, cfg.projector_steps)
    for _ in tqdm(range(cfg.projector_steps), desc="LLaVA stage 1 (projector)", disable=not progress):
        train_step("projector", projector, opt, sched, captions)

    opt, sched = _optimise(params, cfg.lr, cfg.weight_decay, cfg.warmup, cfg.caption_max_steps + cfg.instruction_steps)
    switch: dict[str, int | None] = {"at": None}
    bar = tqdm(desc="LLaVA stage 2 (projector+LM)", disable=not progress, mininterval=5)
    step = 0
    while switch["at"] is None or step < switch["at"] + cfg.instruction_steps:
        train_step("projector+LM", params, opt, sched, captions if switch["at"] is None else mix)
        step += 1
        bar.update()
        if switch["at"] is None and (step % cfg.check_every == 0 or step >= cfg.caption_max_steps):
            accuracy = caption_relation_accuracy(model, tokenizer, prompt_format, val_scenes, val_features)
            log["validation"].append({"step": step, "caption_relation_accuracy": accuracy})
            if accuracy >= cfg.caption_target or step >= cfg.caption_max_steps:
                switch["at"] = step
    bar.close()
    log["caption_steps"] = switch["at"]
    model.eval()
    fold_standardisation(model, mean, std)
    return log


@torch.no_grad()
def answer_accuracy(
    model: LlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerFast,
    prompt_format: PromptFormat,
    conversations: list[list[tuple[str, str]]],
    features: torch.Tensor,
) -> float:
    """Teacher-forced: the share of conversations whose every answer word (end token aside) is predicted."""
    was_training = model.training
    model.eval()
    ids, mask, labels = conversation_batch(tokenizer, prompt_format, conversations, model.config.image_seq_length)
    device = next(model.parameters()).device
    ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
    logits = model(inputs_embeds=embed_with_features(model, ids, features.to(device)), attention_mask=mask).logits
    scored = (labels[:, 1:] != -100) & (labels[:, 1:] != tokenizer.eos_token_id)
    right = (logits[:, :-1].argmax(-1) == labels[:, 1:]) | ~scored
    model.train(was_training)
    return right.all(dim=1).float().mean().item()


class Stopwatch:
    """Wall time per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def time(self, stage: str):
        """Add the wall time of the ``with`` block to ``stage``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
