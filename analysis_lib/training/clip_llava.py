"""Training the toy models: contrastive CLIP from scratch, then LLaVA on CLIP's frozen features."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from transformers import (
    CLIPModel,
    CLIPProcessor,
    LlavaForConditionalGeneration,
    PreTrainedTokenizerFast,
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
)

from analysis_lib.core.progress import progress_bar
from analysis_lib.data.toyworld import (
    COL_WORDS,
    FOIL_SHARES,
    RELATION_PHRASES,
    RELATIONS,
    ROW_WORDS,
    VQA_QUESTION,
    Obj,
    Scene,
    Turn,
    WorldConfig,
    absent_colours,
    caption_with,
    instruction_example,
    names_any,
    relational_caption,
    shows_any,
    training_caption,
    yes_no_turn,
)
from analysis_lib.models.conversations import (
    EVAL_RNG_SEED,
    answer_logprob,
    conversation_batch,
    embed_with_features,
    teacher_forced,
)
from analysis_lib.models.image_tokens import variant_position_ids
from analysis_lib.models.prompts import PromptFormat
from analysis_lib.stats.metrics import unique_argmax

RELATION_WORD_TASKS = {"relation word": "describe", "relative word": "relative"}  # check -> the task it reads
RESTART_SEED_STRIDE = 100_003  # attempt k of seed s is seeded s + k * stride (no seed's restarts meet another's)


@dataclass(frozen=True)
class ClipTrainConfig:
    """Contrastive training of the toy CLIP."""

    steps: int = 300
    batch_size: int = 256
    lr: float = 2e-3
    warmup: int = 80
    weight_decay: float = 0.1


@dataclass(frozen=True)
class Stage:
    """One stage of the toy LLaVA's curriculum: train on ``tasks`` until the held-out ``check``
    reaches ``target`` (tested every ``check_every`` steps) or ``max_steps`` have run.

    ``check=None`` runs exactly ``max_steps``. ``train_lm=False`` trains the projector alone (LLaVA's
    stage 1). Checks: ``cell words`` (the list task's cell words, teacher-forced), ``relation word``
    (the relation word of held-out descriptions), ``relative word`` (the answer's relation word to "Where is
    the A relative to the B?"), ``vqascore`` (the lower of the VQAScore relation
    4-way and attribute accuracies on held-out scenes).
    """

    name: str
    tasks: tuple[tuple[str, float], ...]
    check: str | None
    target: float
    max_steps: int
    train_lm: bool = True


INSTRUCTION_MIX = (("yes/no", 0.5), ("relative", 0.2), ("where", 0.1), ("describe", 0.1), ("list", 0.1))
GROUNDED_CURRICULUM = (
    Stage("projector", (("list", 1.0),), None, 0.0, 100, train_lm=False),
    Stage("list", (("list", 1.0),), "cell words", 0.98, 1500),
    Stage("describe", (("describe", 0.8), ("list", 0.2)), "relation word", 0.98, 1000),
    Stage("instructions", INSTRUCTION_MIX, "vqascore", 0.95, 3000),
)
"""LLaVA-1.5's two stages on the toy, with a grounding task (list every object with its cell) first."""
UNGROUNDED_CURRICULUM = (
    Stage("projector", (("describe", 1.0),), None, 0.0, 100, train_lm=False),
    Stage("describe", (("describe", 1.0),), "relation word", 0.98, 2500),
    Stage("instructions", tuple(t for t in INSTRUCTION_MIX if t[0] != "list"), "vqascore", 0.95, 3000),
)
"""The ablation: the same stages and step budget without the grounding task."""


@dataclass(frozen=True)
class LlavaTrainConfig:
    """How the toy LLaVA is trained: its curriculum and optimiser.

    Next-token loss on the answers, as LLaVA's (with ``question_loss`` also on every text token of truthful
    turns: a yes/no question about a false caption teaches only its answer). A yes/no question comes as a
    minimal pair (``yes_no_pairs``: the scene's true caption and a false one in the same batch), so that what
    tells the two answers apart is the caption alone. The learning rate warms up over ``warmup`` steps at the
    start of each stage group (projector alone; projector + LM), then stays; AdamW's decoupled ``weight_decay``
    helps the stages cross their plateaus. False captions are drawn with ``foil_shares`` (see
    ``toyworld.false_caption``). The last ``validation_scenes`` training scenes are held out for the checks.
    A training whose stage runs to its cap is restarted from fresh projector weights up to ``restarts`` times
    (see ``train_llava``): every variant of a chapter has the same stage caps and the same restart budget. A
    ``step_budget`` ends the training, stalled, once that many steps (every attempt counted) have run.
    ``held_out_objects`` (phrases such as ``red circle``) are kept out of the instruction data: no training or check
    scene shows one and no training turn names one (a turn that would, a foil included, is drawn again), so a test
    about them asks for compositions the LLaVA was never taught (its CLIP saw them).
    """

    curriculum: tuple[Stage, ...] = GROUNDED_CURRICULUM
    check_every: int = 100
    validation_scenes: int = 512
    vqascore_check_scenes: int = 128
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.1
    question_loss: bool = False
    foil_shares: tuple[tuple[str, float], ...] = tuple(FOIL_SHARES.items())
    restarts: int = 2
    yes_no_pairs: bool = True
    step_budget: int | None = None
    held_out_objects: tuple[str, ...] = ()


def adamw_schedule(params, lr: float, weight_decay: float, warmup: int, steps: int | None):
    """AdamW with linear warm-up, then cosine decay over ``steps`` (constant when ``steps`` is None)."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if steps is None:
        return opt, get_constant_schedule_with_warmup(opt, warmup)
    return opt, get_cosine_schedule_with_warmup(opt, min(warmup, steps // 2), steps)


def clipped_step(loss: torch.Tensor, params, opt, sched) -> float:
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
    device = next(model.parameters()).device

    def batch_loss(idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        captions = [training_caption(scenes[i], rng, world) for i in idx]
        text = processor.tokenizer(captions, padding=True, return_tensors="pt").to(device)
        return model(**text, pixel_values=pixels[idx].to(device), return_loss=True).loss

    return minibatch_training(model, len(scenes), cfg, seed, batch_loss, "CLIP (contrastive)", progress)


def minibatch_training(
    model: torch.nn.Module,
    n_items: int,
    cfg,
    seed: int,
    batch_loss: Callable[[np.ndarray, np.random.Generator], torch.Tensor],
    desc: str,
    progress: bool = True,
) -> list[float]:
    """Seeded training of ``model``'s trainable parameters: ``cfg.steps`` clipped AdamW steps (``cfg.lr``,
    ``weight_decay``, ``warmup``; cosine decay), each on ``batch_loss(idx, rng)`` for ``cfg.batch_size`` of
    ``n_items`` drawn without replacement; returns the loss curve."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt, sched = adamw_schedule(params, cfg.lr, cfg.weight_decay, cfg.warmup, cfg.steps)
    model.train()
    losses = []
    for _ in progress_bar(range(cfg.steps), desc=desc, disable=not progress, mininterval=5):
        idx = rng.choice(n_items, cfg.batch_size, replace=False)
        losses.append(clipped_step(batch_loss(idx, rng), params, opt, sched))
    model.eval()
    return losses


def fold_standardisation(model: LlavaForConditionalGeneration, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Fold ``(x - mean) / std`` into the projector's first layer, so raw features give the same output."""
    linear = model.model.multi_modal_projector.linear_1
    with torch.no_grad():
        weight = linear.weight / std.to(linear.weight)
        linear.bias -= weight @ mean.to(weight)
        linear.weight.copy_(weight)


def answer_accuracy(
    model: LlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerFast,
    prompt_format: PromptFormat,
    conversations: list[list[tuple[str, str]]],
    features: torch.Tensor,
) -> float:
    """Teacher-forced: the share of conversations whose every answer word (end token aside) is predicted."""
    logprobs, labels = teacher_forced(model, tokenizer, prompt_format, conversations, features)
    scored = (labels != -100) & (labels != tokenizer.eos_token_id)
    right = (logprobs.argmax(-1) == labels) | ~scored
    return right.all(dim=1).float().mean().item()


def word_accuracy(
    model: LlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerFast,
    prompt_format: PromptFormat,
    conversations: list[list[tuple[str, str]]],
    features: torch.Tensor,
    words: tuple[str, ...],
) -> float:
    """Teacher-forced: how often an answer token that is one of ``words`` is predicted."""
    logprobs, labels = teacher_forced(model, tokenizer, prompt_format, conversations, features)
    scored = torch.isin(labels, torch.tensor(tokenizer.convert_tokens_to_ids(list(words))))
    return (logprobs.argmax(-1) == labels)[scored].float().mean().item()


def vqascore_accuracies(
    model: LlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerFast,
    prompt_format: PromptFormat,
    scenes: list[Scene],
    features: torch.Tensor,
) -> dict[str, float]:
    """VQAScore choices on held-out scenes: relation 4-way (per relation too) and the attribute control
    (the true caption against its first object recoloured in each absent colour)."""
    options = [[caption_with(s, relation=r) for r in RELATIONS] for s in scenes]
    options += [[relational_caption(s)] + [caption_with(s, first=Obj(c, s.first.shape)) for c in absent_colours(s)]
                for s in scenes]  # fmt: skip
    conversations = [[(VQA_QUESTION.format(c), prompt_format.answer)] for row in options for c in row]
    owner = torch.tensor([i for i, row in enumerate(options) for _ in row])
    scores = answer_logprob(model, tokenizer, prompt_format, conversations, features[owner % len(scenes)])
    picked, start = [], 0
    for row in options:  # a NaN or tied top score is no choice, so it counts wrong
        picked.append(int(unique_argmax(scores[start : start + len(row)].numpy())))
        start += len(row)
    relation = [picked[i] == RELATIONS.index(s.relation) for i, s in enumerate(scenes)]
    result = {
        "relation 4-way": float(np.mean(relation)),
        "attribute": float(np.mean([p == 0 for p in picked[len(scenes) :]])),
    }
    for name in RELATIONS:
        result[f"relation {name}"] = float(np.mean([ok for ok, s in zip(relation, scenes) if s.relation == name]))
    return result


def held_out_check(
    name: str,
    model: LlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerFast,
    prompt_format: PromptFormat,
    scenes: list[Scene],
    features: torch.Tensor,
    cfg: LlavaTrainConfig,
) -> dict[str, float]:
    """One stage's held-out check: ``value`` (compared with the stage's target) and its parts."""
    rng = np.random.default_rng(EVAL_RNG_SEED)
    if name == "cell words":
        conversations = [[instruction_example(s, rng, {"list": 1.0})] for s in scenes]
        words = tuple(ROW_WORDS + COL_WORDS)
        return {"value": word_accuracy(model, tokenizer, prompt_format, conversations, features, words)}
    if name in RELATION_WORD_TASKS:
        conversations = [[instruction_example(s, rng, {RELATION_WORD_TASKS[name]: 1.0})] for s in scenes]
        words = tuple(phrase.split()[0] for phrase in RELATION_PHRASES.values())
        return {"value": word_accuracy(model, tokenizer, prompt_format, conversations, features, words)}
    if name == "vqascore":
        n = cfg.vqascore_check_scenes
        parts = vqascore_accuracies(model, tokenizer, prompt_format, scenes[:n], features[:n])
        kept = held_out_check("relation word", model, tokenizer, prompt_format, scenes[:n], features[:n], cfg)
        return {"value": min(parts["relation 4-way"], parts["attribute"]), **parts, "relation word": kept["value"]}
    raise ValueError(f"unknown check {name!r}; use 'cell words', 'relation word', 'relative word' or 'vqascore'")


def run_stage(
    stage: Stage,
    train_step,
    check,
    check_every: int,
    progress: bool = True,
    budget: int | None = None,
) -> dict:
    """Train ``stage`` until its check passes, its step cap, or ``budget`` steps; returns its log.

    The log holds ``steps`` run, ``passed_at`` (the step whose check first met the target, or None
    when the cap or the budget ended the stage), ``budget_spent`` (the budget, not the cap, ended it), every
    ``checks`` result with its step (one at the last step too), and the loss ``curve``.
    """
    last = stage.max_steps if budget is None else min(stage.max_steps, budget)
    log: dict = {"stage": stage.name, "target": stage.target, "max_steps": stage.max_steps, "checks": [],
                 "curve": [], "passed_at": None, "budget_spent": last < stage.max_steps}  # fmt: skip
    bar = progress_bar(total=last, desc=stage.name, disable=not progress, mininterval=5)
    for step in range(1, last + 1):
        log["curve"].append(train_step(stage))
        bar.update()
        if stage.check is not None and (step % check_every == 0 or step == last):
            result = check(stage.check)
            log["checks"].append({"step": step, **result})
            bar.set_postfix_str(f"{stage.check} {result['value']:.2f}")
            if result["value"] >= stage.target:
                log["passed_at"], log["budget_spent"] = step, False
                break
    bar.close()
    log["steps"] = len(log["curve"])
    return log


def stalled(log: dict) -> bool:
    """Whether a stage's log ended without its held-out check passing: at its cap, or where the step budget ran out."""
    return bool(log.get("budget_spent")) or (bool(log["checks"]) and log["passed_at"] is None)


def total_steps(log: dict) -> int:
    """Every training step of a ``train_llava`` log, its abandoned attempts' included."""
    return sum(stage["steps"] for attempt in [log["stages"], *log.get("abandoned", [])] for stage in attempt)


def attempt_seed(seed: int, attempt: int) -> int:
    """The seed of a training's ``attempt``-th restart (0: the training's own seed)."""
    return seed + RESTART_SEED_STRIDE * attempt


def train_llava(
    model: LlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerFast,
    scenes: list[Scene],
    features: torch.Tensor,
    prompt_format: PromptFormat,
    cfg: LlavaTrainConfig,
    seed: int,
    progress: bool = True,
) -> dict:
    """Train the toy LLaVA through ``cfg.curriculum`` on standardised cached features, restarting a stalled
    training up to ``cfg.restarts`` times.

    The last ``cfg.validation_scenes`` scenes are held out for the stages' checks. A stage that runs to its cap
    without passing stalls the attempt; while restarts remain, the model goes back to its starting weights
    (the pre-trained LM as it was), the projector is initialised afresh and the batches are drawn anew, both
    from ``attempt_seed(seed, k)``. Once ``cfg.step_budget`` steps have run (every attempt counted) the training
    ends where it is, stalled. Returns the last attempt's log per stage (see ``run_stage``), the number of
    ``restarts`` used and the stage logs of every abandoned attempt.
    """
    if cfg.held_out_objects:
        kept = [i for i, scene in enumerate(scenes) if not shows_any(scene, cfg.held_out_objects)]
        scenes, features = [scenes[i] for i in kept], features[kept]
    n_train = len(scenes) - cfg.validation_scenes
    mean, std = features[:n_train].mean(dim=(0, 1)), features[:n_train].std(dim=(0, 1)) + 1e-6
    standardised = ((features - mean) / std).to(next(model.parameters()).device)
    start = {name: value.clone() for name, value in model.state_dict().items()}
    abandoned, budget = [], cfg.step_budget
    for attempt in range(cfg.restarts + 1):
        if attempt:
            model.load_state_dict(start)
            torch.manual_seed(attempt_seed(seed, attempt))
            reinitialise_projector(model.model.multi_modal_projector)
        last = attempt == cfg.restarts
        stages = curriculum_attempt(model, tokenizer, scenes, standardised, prompt_format, cfg,
                                    attempt_seed(seed, attempt), progress, not last, budget)  # fmt: skip
        budget = None if budget is None else budget - sum(stage["steps"] for stage in stages)
        if not stalled(stages[-1]) or last or budget == 0:
            break
        abandoned.append(stages)
    model.eval()
    fold_standardisation(model, mean, std)
    return {"stages": stages, "restarts": len(abandoned), "abandoned": abandoned}


def reinitialise_projector(projector: torch.nn.Module) -> None:
    """Initialise a LLaVA projector afresh from torch's generator: its own ``reset_parameters`` where it has one
    (COMM's merge), else each of its Linear layers in order (LLaVA's two-layer MLP)."""
    if hasattr(projector, "reset_parameters"):
        projector.reset_parameters()
        return
    for module in projector.modules():
        if isinstance(module, torch.nn.Linear):
            module.reset_parameters()


def untold(draw: Callable[[], Turn], held_out: tuple[str, ...], tries: int = 1000) -> Turn:
    """A turn from ``draw`` that names none of the ``held_out`` objects (drawn again until so)."""
    for _ in range(tries):
        turn = draw()
        if not held_out or not names_any(turn, held_out):
            return turn
    raise RuntimeError(f"{tries} turns in a row named a held-out object {held_out}: hold out fewer objects")


def training_batch(
    scenes: list[Scene], n_train: int, tasks: dict[str, float], cfg: LlavaTrainConfig, rng: np.random.Generator
) -> tuple[np.ndarray, list[list[Turn]]]:
    """``cfg.batch_size`` one-turn conversations about training scenes drawn without replacement, and the scene
    index of each row. With ``cfg.yes_no_pairs`` a yes/no question comes as a minimal pair: the scene's true
    caption and a false one (drawn with ``cfg.foil_shares``) in two rows, so fewer scenes fill the batch."""
    foils = dict(cfg.foil_shares)
    rows: list[int] = []
    conversations: list[list[Turn]] = []
    for i in rng.choice(n_train, cfg.batch_size, replace=False):
        if len(rows) == cfg.batch_size:
            break
        turn = untold(functools.partial(instruction_example, scenes[i], rng, tasks, foils), cfg.held_out_objects)
        if cfg.yes_no_pairs and turn.answer in ("Yes", "No") and len(rows) + 2 <= cfg.batch_size:
            true = yes_no_turn(scenes[i], rng, True, foils)  # drawn first: the generator's order of every recipe
            turns = [true, untold(functools.partial(yes_no_turn, scenes[i], rng, False, foils), cfg.held_out_objects)]
        else:
            turns = [turn]
        rows += [int(i)] * len(turns)
        conversations += [[t] for t in turns]
    return np.array(rows), conversations


def curriculum_attempt(
    model: LlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerFast,
    scenes: list[Scene],
    standardised: torch.Tensor,
    prompt_format: PromptFormat,
    cfg: LlavaTrainConfig,
    seed: int,
    progress: bool,
    stop_on_stall: bool,
    budget: int | None = None,
) -> list[dict]:
    """One pass through ``cfg.curriculum`` seeded by ``seed``, at most ``budget`` steps: the log of each stage
    run (none after the budget is spent; with ``stop_on_stall``, none after the first stage that stalls)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    permutations = torch.Generator().manual_seed(seed)  # image-token positions of a ``permuted`` variant
    device = standardised.device
    n_train = len(scenes) - cfg.validation_scenes
    val_scenes, val_features = scenes[n_train:], standardised[n_train:]
    n_tokens = model.config.image_seq_length
    projector = list(model.model.multi_modal_projector.parameters())
    groups = {False: projector, True: projector + list(model.model.language_model.parameters())}
    optimisers: dict[bool, tuple] = {}

    def train_step(stage: Stage) -> float:
        params = groups[stage.train_lm]
        if stage.train_lm not in optimisers:
            optimisers[stage.train_lm] = adamw_schedule(params, cfg.lr, cfg.weight_decay, cfg.warmup, None)
        idx, conversations = training_batch(scenes, n_train, dict(stage.tasks), cfg, rng)
        ids, mask, labels = conversation_batch(tokenizer, prompt_format, conversations, n_tokens, cfg.question_loss)
        embeds = embed_with_features(model, ids.to(device), standardised[idx])
        positions = variant_position_ids(model, ids, permutations)
        positions = None if positions is None else positions.to(device)
        loss = model(
            inputs_embeds=embeds, attention_mask=mask.to(device), position_ids=positions, labels=labels.to(device)
        ).loss
        return clipped_step(loss, params, *optimisers[stage.train_lm])

    def check(name: str) -> dict[str, float]:
        return held_out_check(name, model, tokenizer, prompt_format, val_scenes, val_features, cfg)

    model.train()
    stages = []
    for stage in cfg.curriculum:
        left = None if budget is None else budget - sum(log["steps"] for log in stages)
        stages.append(run_stage(stage, train_step, check, cfg.check_every, progress, left))
        if stages[-1]["budget_spent"] or (stop_on_stall and stalled(stages[-1])):
            break
    return stages


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
