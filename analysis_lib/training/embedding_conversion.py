"""VLM2Vec's conversion of a LLaVA into an embedding model (REFERENCE §3), and the cosine scorer that reads it.

A peft LoRA / DoRA adapter on the language model's projections (vision tower and projector frozen) is trained
with InfoNCE from query (image + question) to target (the answer text), in-batch negatives;
both sides are embedded by last-token pooling, L2-normalised. ``EmbeddingScorer`` then scores an image against
a caption as the cosine between the image's query (built per image from the captions it is scored against) and
the caption, the same protocol as CLIP's.

Which projections the adapter adapts (``ConversionConfig.targets``, one of ``LORA_TARGETS``): VLM2Vec's default
``lora_target_modules`` (TIGER-AI-Lab/VLM2Vec ``src/arguments.py``) is ``qkv_proj,o_proj,gate_up_proj,down_proj,
k_proj,q_proj,out_proj,v_proj``, written for Phi-3.5-V, whose fused names cover every attention and MLP projection
of the LM. The paper's fork (lst627/CLIP-Embeds ``VLM2Vec/src/model.py``, LLaVA-1.5 branch) keeps that list and
excludes ``.*vision_tower.*``; on LLaMA's unfused names it matches q, k, v, o and down only: gate and up are not
adapted. ``"paper"`` is that set and the default: the book tests the paper's converted model, and its training code
adapts exactly these; ``"all"`` adds gate and up, what VLM2Vec's list means on a model with unfused MLP names. Both,
like the fork, initialise the adapter with peft's ``"gaussian"`` (A normal with std 1/rank, B zero).
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from PIL import Image
from transformers import LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerBase

from analysis_lib.data.toyworld import (
    LIST_QUESTION,
    OPPOSITE,
    RELATIONS,
    Obj,
    Scene,
    WorldConfig,
    absent_colours,
    caption_with,
    object_list,
    relational_caption,
    render_all,
    sample_scenes,
    with_relation,
)
from analysis_lib.models.conversations import embed_with_features, expand_image_tokens
from analysis_lib.models.features import llava_selected_features, pixel_tensor
from analysis_lib.scoring.scorers import (
    CosineScorer,
    ImageLike,
    Pairs,
    as_pil,
    fit_to_input,
    fixed_input_side,
    mean_colour,
    pad_token_ids,
)
from analysis_lib.stats.metrics import RELATION_AXIS, caption_relation, unique_argmax
from analysis_lib.training.clip_llava import (
    Stage,
    adamw_schedule,
    clipped_step,
    run_stage,
)

LORA_TARGETS = {
    "paper": ("q_proj", "k_proj", "v_proj", "o_proj", "down_proj"),
    "all": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}
"""The LM projections each adapter choice adapts (see the module docstring); never the vision tower or projector."""
PAPER_QUERY = "<image> Represent the given image with the following question: {}"
TOY_QUERY = "<image> {}"
"""The toy's query: VLM2Vec's layout without its instruction, whose words the toy vocabulary does not have."""
DESCRIBE = "Describe the image."
TOY_RELATIVE = "Where is the {} relative to the {}?"
PAPER_QUESTIONS = {
    "horizontal": "Is the {0} to the left of or to the right of the {1}?",
    "on/under": "Is the {0} at the bottom of the {1} or at the top of the {1}?",
    "depth": "Is the {0} in the back of the {1} or in the front of the {1}?",
}
"""The paper's VLM2Vec What'sUp questions (its ``eval_llava15.py``, 2-way: gold caption vs the opposite relation)."""
ABOVE_BELOW_QUESTION = "Is the {0} above or below the {1}?"
"""This library's question for above/below: the paper builds its COCO/GQA question from the gold caption with one
side's relation swapped at random (``Is the {part1} or {part2}?``), which no fixed template reproduces."""
PAPER_4WAY_QUESTIONS = {
    "on/under": "Is the {0} to the left of, to the right of, on, or under the {1}?",
    "depth": "Is the {0} to the left of, to the right of, in front of, or behind the {1}?",
}
"""The paper's 4-way What'sUp questions (``eval_4``): Controlled-A (on/under) and Controlled-B (front/behind)."""
PAPER_FALLBACK = "What is in the image?"
CONVERSION_TASKS = ("relative", "describe", "list")
_CAPTION = re.compile(
    r"^(?:a photo of )?(?:an? |the )?(?P<o1>.+?) (?:is )?(?:to the |in )?"
    r"(?:left of|right of|on|under|front of|behind|above|below) (?:an? |the )?(?P<o2>.+?)\.?$"
)


@dataclass(frozen=True)
class ConversionConfig:
    """The adapter, the contrastive loss and the training run of one conversion.

    Training runs ``steps`` steps at most and stops early once the held-out check (``min`` of the relation
    4-way and attribute retrieval accuracies) reaches ``target``, tested every ``check_every`` steps.
    ``targets``: the key of ``LORA_TARGETS`` the adapter adapts.
    ``tasks``: the toy world's question kinds that make the (query, target) pairs, with sampling weights.
    Scenes come in groups of four: one object pair in each relation. With ``relation_groups`` a batch is made of
    whole groups, so its in-batch negatives include the same objects in the other relations; else of random scenes.
    """

    rank: int = 8
    alpha: int = 64
    dropout: float = 0.1
    use_dora: bool = True
    targets: str = "paper"
    temperature: float = 0.02
    steps: int = 400
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 50
    weight_decay: float = 0.0
    tasks: tuple[tuple[str, float], ...] = (("relative", 0.6), ("describe", 0.2), ("list", 0.2))
    relation_groups: bool = True
    photo_prefix: float = 0.3
    n_scenes: int = 4096
    held_out: int = 256
    check_every: int = 50
    target: float = 0.99

    def peft_config(self) -> LoraConfig:
        """The peft adapter: rank, alpha, dropout, DoRA and the LM projections as configured, Gaussian init."""
        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            use_dora=self.use_dora,
            target_modules=rf".*language_model.*\.({'|'.join(LORA_TARGETS[self.targets])})",
            init_lora_weights="gaussian",
            bias="none",
        )


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions that count only attended tokens, so left and right padding give the same positions."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The hidden state of each row's last attended token (left or right padding)."""
    last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(-1)
    return hidden[torch.arange(len(hidden), device=hidden.device), last]


def pooled(model: LlavaForConditionalGeneration, mask: torch.Tensor, **inputs) -> torch.Tensor:
    """L2-normalised last-token embeddings of the LLM run on ``inputs`` (ids or embeddings) under ``mask``."""
    hidden = model.model.language_model(attention_mask=mask, position_ids=position_ids(mask), **inputs)
    return F.normalize(last_token_pool(hidden.last_hidden_state, mask).float(), dim=-1)


def _device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter."""
    return next(model.parameters()).device


def text_embeddings(
    model: LlavaForConditionalGeneration, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], side: str = "right"
) -> torch.Tensor:
    """Target embeddings: each text alone through the LLM, last token pooled (``side``: the padding side)."""
    ids, mask = pad_token_ids(tokenizer(list(texts))["input_ids"], tokenizer.pad_token_id, side)
    device = _device(model)
    return pooled(model, mask.to(device), input_ids=ids.to(device))


def query_embeddings(
    model: LlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    template: str,
    questions: Sequence[str],
    features: torch.Tensor,
    side: str = "left",
) -> torch.Tensor:
    """Query embeddings: ``template`` with question i and image i (its selected vision features), last token pooled."""
    texts = [expand_image_tokens(template.format(q), model.config.image_seq_length) for q in questions]
    ids, mask = pad_token_ids(tokenizer(texts)["input_ids"], tokenizer.pad_token_id, side)
    device = _device(model)
    embeds = embed_with_features(model, ids.to(device), features.to(device, model.get_input_embeddings().weight.dtype))
    return pooled(model, mask.to(device), inputs_embeds=embeds)


def info_nce(queries: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy of query i over all targets of the batch, target i the positive (VLM2Vec's loss)."""
    logits = queries @ targets.T / temperature
    return F.cross_entropy(logits, torch.arange(len(queries), device=logits.device))


def parse_objects(caption: str) -> tuple[str, str] | None:
    """The two objects a relational caption names, ``(first, second)``; None if it is not ``<o1> <relation> <o2>``."""
    match = _CAPTION.match(caption.strip().lower())
    return (match["o1"], match["o2"]) if match else None


def shared_objects(texts: Sequence[str]) -> tuple[str, str] | None:
    """The object pair every text names in the same order, or None."""
    pairs = {parse_objects(t) for t in texts}
    return pairs.pop() if len(pairs) == 1 and None not in pairs else None


def toy_question(texts: Sequence[str]) -> str:
    """The toy query's question for an image scored against ``texts``: the toy's relative question about the objects
    all texts share (it names no relation, so it does not tell the answer), else ``Describe the image.``."""
    objects = shared_objects(texts)
    return TOY_RELATIVE.format(*objects) if objects else DESCRIBE


def question_group(relation: str) -> str:
    """Which of the paper's What'sUp questions a relation gets: horizontal, on/under, depth, or above/below."""
    if relation in ("on", "under"):
        return "on/under"
    return "above/below" if RELATION_AXIS[relation] == "vertical" else RELATION_AXIS[relation]


def paper_question(texts: Sequence[str]) -> str:
    """The What'sUp 2-way question for an image scored against ``texts``: the gold caption (listed first) picks it by
    its relation, as the paper's VLM2Vec eval does for left/right, on/under and front/behind (its 2-way score is then
    gold vs the opposite caption, ``whatsup_records``' "2-way"); above/below gets ``ABOVE_BELOW_QUESTION``; a generic
    question when the texts share no object pair."""
    objects = shared_objects(texts)
    if objects is None:
        return PAPER_FALLBACK
    group = question_group(caption_relation(texts[0]))
    return PAPER_QUESTIONS.get(group, ABOVE_BELOW_QUESTION).format(*objects)


def paper_question_4way(texts: Sequence[str]) -> str:
    """The paper's 4-way What'sUp question (``question_for`` of a 4-way run): Controlled-A's when the options state
    on/under, Controlled-B's when they state front/behind; ``paper_question`` otherwise."""
    objects = shared_objects(texts)
    groups = {question_group(caption_relation(text)) for text in texts} if objects else set()
    found = [group for group in PAPER_4WAY_QUESTIONS if group in groups]
    return PAPER_4WAY_QUESTIONS[found[0]].format(*objects) if len(found) == 1 else paper_question(texts)


class EmbeddingScorer(CosineScorer):
    """Cosine between an image's query embedding (``template`` with ``question_for(the image's texts)``) and each
    text's embedding, both last-token pooled from a converted LLaVA's LLM."""

    name = "converted LLaVA cosine"

    def __init__(
        self,
        model: LlavaForConditionalGeneration,
        processor: LlavaProcessor,
        template: str = PAPER_QUERY,
        question_for: Callable[[Sequence[str]], str] = paper_question,
        batch_size: int = 64,
    ) -> None:
        if "<image>" not in template or "{}" not in template:
            raise ValueError(f"the query template needs '<image>' and '{{}}' (the question); got {template!r}")
        self.model, self.processor, self.template = model.eval(), processor, template
        self.question_for, self.batch_size = question_for, batch_size
        self.input_side = fixed_input_side(model, processor.image_processor)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """Target embeddings of one batch of texts."""
        return text_embeddings(self.model, self.processor.tokenizer, texts)

    def embed_queries(self, queries: list[tuple[Image.Image, str]]) -> torch.Tensor:
        """Query embeddings of one batch of ``(image, question)``."""
        fill = mean_colour(self.processor.image_processor)
        images = fit_to_input([im for im, _ in queries], self.input_side, fill)
        pixels = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
        dtype = self.model.get_input_embeddings().weight.dtype
        features = llava_selected_features(self.model, pixels.to(_device(self.model), dtype))
        return query_embeddings(self.model, self.processor.tokenizer, self.template, [q for _, q in queries], features)

    def questions(self, n_images: int, pairs: Pairs) -> list[str]:
        """The question of each image, from all the texts it is scored against."""
        texts: list[list[str]] = [[] for _ in range(n_images)]
        for image, text in pairs:
            texts[image].append(text)
        return [self.question_for(t) if t else DESCRIBE for t in texts]

    @torch.no_grad()
    def score_pairs(self, images: Sequence[ImageLike], pairs: Pairs) -> np.ndarray:
        """Cosine of each ``(image_index, text)`` pair: the image's query against the text."""
        used = sorted({i for i, _ in pairs})
        questions = self.questions(len(images), pairs)
        queries = self._normalised([(as_pil(images[i]), questions[i]) for i in used], self.embed_queries)
        texts = sorted({t for _, t in pairs})
        row, column = {i: k for k, i in enumerate(used)}, {t: k for k, t in enumerate(texts)}
        txt = self.text_embeddings(texts)
        index = torch.tensor([row[i] for i, _ in pairs])
        columns = torch.tensor([column[t] for _, t in pairs])
        return (queries[index] * txt[columns]).sum(-1).cpu().numpy()


def swapped(scene: Scene) -> Scene:
    """The same scene described from its second object."""
    return Scene(scene.second, scene.first, scene.second_cell, scene.first_cell, OPPOSITE[scene.relation])


def conversion_pair(scene: Scene, rng: np.random.Generator, cfg: ConversionConfig) -> tuple[str, str]:
    """One (question, target) pair from the toy world's tasks: ``relative`` (either object first) and ``describe``
    answer with the relational caption (sometimes ``a photo of ...``), ``list`` with every object and its cell."""
    weights = dict(cfg.tasks)
    unknown = sorted(set(weights) - set(CONVERSION_TASKS))
    if unknown:
        raise ValueError(f"unknown conversion task {unknown[0]!r}; use one of {', '.join(CONVERSION_TASKS)}")
    task = str(rng.choice(list(weights), p=np.array(list(weights.values())) / sum(weights.values())))
    if task == "list":
        return LIST_QUESTION, object_list(scene, rng)
    if task == "relative" and rng.random() < 0.5:
        scene = swapped(scene)
    caption = relational_caption(scene)
    caption = f"a photo of {caption}" if rng.random() < cfg.photo_prefix else caption
    question = DESCRIBE if task == "describe" else TOY_RELATIVE.format(scene.first.phrase, scene.second.phrase)
    return question, caption


def retrieval_check(
    model: LlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    scenes: list[Scene],
    features: torch.Tensor,
) -> dict[str, float]:
    """Held-out retrieval under the scoring protocol: the relative question against the four relation captions,
    and ``Describe the image.`` against the true caption and its first object recoloured; ``value`` is the lower."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        relation = [[caption_with(s, relation=r) for r in RELATIONS] for s in scenes]
        attribute = [[relational_caption(s)] + [caption_with(s, first=Obj(c, s.first.shape)) for c in absent_colours(s)]
                     for s in scenes]  # fmt: skip
        result = {}
        for name, options, gold in (
            ("relation 4-way", relation, [RELATIONS.index(s.relation) for s in scenes]),
            ("attribute", attribute, [0] * len(scenes)),
        ):
            questions = [toy_question(row) for row in options]
            queries = query_embeddings(model, tokenizer, TOY_QUERY, questions, features)
            flat = [t for row in options for t in row]
            targets = text_embeddings(model, tokenizer, flat).view(len(scenes), len(options[0]), -1)
            picked = unique_argmax((targets @ queries[:, :, None]).squeeze(-1).float().cpu().numpy())  # tie/NaN: wrong
            result[name] = float(np.mean(picked == np.array(gold)))
    model.train(was_training)
    return {"value": min(result.values()), **result}


def relation_group_scenes(n_groups: int, world: WorldConfig, seed: int) -> list[Scene]:
    """``n_groups`` object pairs, each placed in all four relations (consecutive scenes), deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    return [with_relation(s, r, rng, world) for s in sample_scenes(n_groups, world, seed) for r in RELATIONS]


def conversion_data(
    model: LlavaForConditionalGeneration, processor: LlavaProcessor, world: WorldConfig, n_scenes: int, seed: int
) -> tuple[list[Scene], torch.Tensor]:
    """Fresh toy scenes in relation groups (``seed``) and the frozen vision tower's features of their images."""
    if n_scenes % len(RELATIONS):
        raise ValueError(f"n_scenes must be a multiple of {len(RELATIONS)} (whole relation groups); got {n_scenes}")
    scenes = relation_group_scenes(n_scenes // len(RELATIONS), world, seed)
    pixels = pixel_tensor(render_all(scenes, world, seed + 1), processor.image_processor)
    return scenes, llava_selected_features(model, pixels.to(_device(model)))


def merged_model(peft_model) -> LlavaForConditionalGeneration:
    """The adapter merged into the base weights, in eval mode. The adapter never targets the tied input and output
    embeddings, so peft's warning that merging unties them is silenced (their values stay equal)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Input and output embeddings are no longer tied after merging")
        return peft_model.merge_and_unload().eval()


def with_adapter(model: LlavaForConditionalGeneration, cfg: ConversionConfig):
    """``model`` wrapped by peft with the configured adapter: only the adapter trains (every base weight frozen)."""
    return get_peft_model(model, cfg.peft_config())


def batch_indices(rng: np.random.Generator, cfg: ConversionConfig) -> np.ndarray:
    """A training batch: whole relation groups (``relation_groups``) or random scenes, ``batch_size`` in all."""
    if not cfg.relation_groups:
        return rng.choice(cfg.n_scenes, cfg.batch_size, replace=False)
    k = len(RELATIONS)
    groups = rng.choice(cfg.n_scenes // k, cfg.batch_size // k, replace=False)
    return (groups[:, None] * k + np.arange(k)).ravel()


def convert(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    world: WorldConfig,
    cfg: ConversionConfig,
    seed: int,
    progress: bool = True,
) -> tuple[LlavaForConditionalGeneration, dict]:
    """Train a VLM2Vec adapter on ``model`` (changed in place) and merge it; returns the merged model and the log
    (loss curve, held-out checks, steps, seconds)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    tokenizer = processor.tokenizer
    scenes, features = conversion_data(model, processor, world, cfg.n_scenes + cfg.held_out, seed + 50_000)
    train_scenes, val_scenes, val_features = scenes[: cfg.n_scenes], scenes[cfg.n_scenes :], features[cfg.n_scenes :]
    peft_model = with_adapter(model, cfg)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt, sched = adamw_schedule(params, cfg.lr, cfg.weight_decay, cfg.warmup, cfg.steps)

    def train_step(_stage: Stage) -> float:
        idx = batch_indices(rng, cfg)
        questions, targets = zip(*(conversion_pair(train_scenes[i], rng, cfg) for i in idx))
        queries = query_embeddings(model, tokenizer, TOY_QUERY, questions, features[idx])
        loss = info_nce(queries, text_embeddings(model, tokenizer, targets), cfg.temperature)
        return clipped_step(loss, params, opt, sched)

    stage = Stage("contrastive", cfg.tasks, "retrieval", cfg.target, cfg.steps)
    start = time.perf_counter()
    peft_model.train()
    log = run_stage(stage, train_step, lambda _: retrieval_check(model, tokenizer, val_scenes, val_features),
                    cfg.check_every, progress)  # fmt: skip
    seconds = time.perf_counter() - start
    return merged_model(peft_model), {"stages": [log], "train_seconds": seconds, "config": asdict(cfg)}
