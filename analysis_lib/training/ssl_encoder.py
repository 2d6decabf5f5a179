"""A self-supervised toy encoder: DINO self-distillation (Caron et al. 2021, "Emerging Properties in
Self-Supervised Vision Transformers", arXiv 2104.14294) of a ViT of exactly the toy CLIP's vision size,
on the toy CLIP's training images, without any text.

Recipe (DINO's, scaled to 24x24 images): a student and a momentum teacher (EMA of the student, momentum
rising from ``momentum`` to 1 on a cosine), both a transformers ``CLIPVisionModel`` with the toy CLIP's
vision config and initialisation, each with a DINO head on the post-LayerNorm CLS token (MLP -> L2-normalised
bottleneck -> weight-normalised prototypes, the prototypes frozen for the first steps). The teacher sees the
two global views, the student every view; the loss is the cross-entropy between the teacher's centred (EMA
centre) and sharpened (temperature warming up from ``warmup_teacher_temp`` to ``teacher_temp``) softmax
and the student's softmax (``student_temp``), over every pair of different views. The teacher is kept: DINO
evaluates the teacher.

Optimisation as DINO's ``main_dino.py`` / ``utils.py`` (facebookresearch/dino): AdamW with weight decay on the
weights only (``get_params_groups``: no decay on biases nor on any 1-D parameter, i.e. norms' scales and shifts;
the rule is by shape, so CLIP's 1-D class embedding is not decayed, where DINO's 3-D ``cls_token`` is), each
parameter's gradient clipped to norm ``clip_grad`` = 3 on its own (``clip_gradients``), and the head's linear
layers initialised as ``DINOHead._init_weights`` (truncated normal, std 0.02, zero biases) with the prototypes as
a default-initialised bias-free ``nn.Linear`` (DINO's weight-normed ``last_layer``, gain fixed at 1). Stated
differences: DINO's weight-decay schedule (cosine 0.04 -> 0.4) is a constant 0.04 here, its learning rate decays
to 1e-6 where ours decays to 0 (``training.adamw_schedule``), and the encoder starts from the toy CLIP's
initialisation (so that the two encoders differ only by their training), not DINO's truncated-normal ViT init.

Two settings differ from DINO's ViT defaults, both because the toy scenes differ little from one another
(grey background, two small objects): at initialisation, the pooled outputs of different images have cosine
~0.96, so after centring the teacher's targets were nearly uniform and training collapsed to the uniform
output (loss at log K, target entropy at log K) with DINO's ViT head and temperatures (0.04 -> 0.07) in our
runs. So the head uses batch normalisation (DINO's ``--use_bn_in_head`` option, its default for ConvNets),
which standardises each feature across the batch, and the teacher temperature warms up from 0.02 to 0.04
(sharper targets). ``training_log.json`` records the mean target entropy per step to show it did not collapse.

Augmentations (the invariances DINO learns are the augmentations' invariances, and they decide what the
encoder keeps): every view keeps the scene's geometry and its colours. No horizontal/vertical flips or
rotations (they would make the encoder invariant to left/right/above/below, the relations the toy tasks
ask about); no hue or saturation jitter (colour is an attribute the tasks ask about): photometric jitter is
brightness, contrast, a small per-channel gain (+-5%, far below the gaps between the six colours) and
pixel noise. Global views shift the image by at most ``max_shift`` = 2 px (an object's own slack in its
8 px cell), so no object leaves its cell by more than a sliver. Multi-crop's small local crops would be
resized to full size (changing scale and where an object appears); here the ``local_views`` are *in-place*
crops: a ``local_size`` x ``local_size`` window kept where it is, the rest filled with the background grey,
so a local view may hold both objects, one or none, each at its true position. The student must predict
the teacher's whole-scene output from such partial views (DINO's local-to-global correspondence) without
being taught to ignore where things are.

This module is the recipe and its training code, on pixels it is given; ``pipeline.ssl_vision_model(setup, seed,
device, progress, cfg=SSL_TRAIN)`` trains (or loads from the cache) the teacher encoder on the toy CLIP's training
images and returns it (a ``CLIPVisionModel``, eval mode) with its cache folder; ``cfg=smoke_ssl(SSL_TRAIN)``
(2 steps) in smoke runs. Chapter 7's ``ssl_layer_probes`` gives chapter 2's layer-probe table of that encoder.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import CLIPVisionModel

from analysis_lib.core.progress import progress_bar
from analysis_lib.data.toyworld import RELATIONS, WorldConfig
from analysis_lib.models.tiny import IMAGE_MEAN, IMAGE_STD, ClipSize, toy_clip
from analysis_lib.scoring.probing import EMPTY, canonical_relation, fit_probe, layer_views, patch_labels
from analysis_lib.training.clip_llava import adamw_schedule


@dataclass(frozen=True)
class SslTrainConfig:
    """DINO self-distillation of the toy encoder: optimiser, head, temperatures, momentum and views."""

    steps: int = 600
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.04
    clip_grad: float = 3.0
    prototypes: int = 256
    head_hidden: int = 256
    head_batchnorm: bool = True
    bottleneck: int = 64
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.02
    teacher_temp_warmup: int = 200
    momentum: float = 0.99
    center_momentum: float = 0.9
    freeze_prototypes: int = 50
    local_views: int = 2
    local_size: int = 16
    max_shift: int = 2
    brightness: float = 0.1
    contrast: float = 0.2
    channel_gain: float = 0.05
    noise_std: float = 0.03
    check_every: int = 100
    check_scenes: int = 1000


SSL_TRAIN = SslTrainConfig()


def smoke_ssl(cfg: SslTrainConfig) -> SslTrainConfig:
    """Two small steps of ``cfg`` (smoke runs)."""
    return dataclasses.replace(cfg, steps=2, batch_size=16, warmup=1, check_every=1, check_scenes=32)


class DinoHead(torch.nn.Module):
    """DINO's projection head: 3-layer GELU MLP -> L2-normalised bottleneck -> weight-normalised prototypes
    (weight norm with its gain fixed at 1, i.e. unit-norm prototype vectors, no bias), initialised as DINO's."""

    def __init__(self, width: int, hidden: int, bottleneck: int, prototypes: int, batchnorm: bool) -> None:
        super().__init__()

        def block(n_in: int) -> list[torch.nn.Module]:
            norm = [torch.nn.BatchNorm1d(hidden)] if batchnorm else []
            return [torch.nn.Linear(n_in, hidden), *norm, torch.nn.GELU()]

        self.mlp = torch.nn.Sequential(*block(width), *block(hidden), torch.nn.Linear(hidden, bottleneck))
        for layer in self.mlp:
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.trunc_normal_(layer.weight, std=0.02)
                torch.nn.init.zeros_(layer.bias)
        self.prototypes = torch.nn.Parameter(torch.nn.Linear(bottleneck, prototypes, bias=False).weight.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Prototype logits of ``x``."""
        return F.linear(F.normalize(self.mlp(x), dim=-1), F.normalize(self.prototypes, dim=-1))


class DinoNetwork(torch.nn.Module):
    """An encoder and its DINO head on the encoder's pooled (post-LayerNorm CLS) output."""

    def __init__(self, encoder: CLIPVisionModel, head: DinoHead) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Prototype logits of a batch of images."""
        return self.head(self.encoder(pixel_values=pixel_values).pooler_output)


def dino_loss(
    student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor, student_temp: float,
    teacher_temp: float,
) -> torch.Tensor:  # fmt: skip
    """DINO's loss: mean over (teacher view i, student view v != i) of the cross-entropy between
    ``softmax((teacher_i - center) / teacher_temp)`` and ``softmax(student_v / student_temp)``.

    ``student`` lists the views' logits with the teacher's (global) views first, in the same order.
    """
    targets = [F.softmax((t - center) / teacher_temp, dim=-1).detach() for t in teacher]
    log_probs = [F.log_softmax(s / student_temp, dim=-1) for s in student]
    terms = [(-q * log_probs[v]).sum(-1).mean() for i, q in enumerate(targets) for v in range(len(student)) if v != i]
    return torch.stack(terms).mean()


def target_entropy(teacher: torch.Tensor, center: torch.Tensor, teacher_temp: float) -> float:
    """Mean entropy of the teacher's centred, sharpened targets (log K: uniform, collapsed; 0: one-hot)."""
    q = F.softmax((teacher - center) / teacher_temp, dim=-1)
    return -(q * torch.log(q + 1e-12)).sum(-1).mean().item()


def updated_center(center: torch.Tensor, teacher: torch.Tensor, momentum: float) -> torch.Tensor:
    """The EMA centre after one batch of teacher logits (all global views stacked)."""
    return momentum * center + (1 - momentum) * teacher.detach().mean(0)


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, momentum: float) -> None:
    """Teacher <- momentum * teacher + (1 - momentum) * student, parameter by parameter."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)


def teacher_momentum(cfg: SslTrainConfig, step: int) -> float:
    """DINO's momentum schedule: cosine from ``cfg.momentum`` to 1 over training."""
    return 1 - (1 - cfg.momentum) * (math.cos(math.pi * step / max(cfg.steps, 1)) + 1) / 2


def teacher_temperature(cfg: SslTrainConfig, step: int) -> float:
    """DINO's teacher temperature: linear warm-up, then constant."""
    if step >= cfg.teacher_temp_warmup:
        return cfg.teacher_temp
    return cfg.warmup_teacher_temp + (cfg.teacher_temp - cfg.warmup_teacher_temp) * step / cfg.teacher_temp_warmup


def dino_param_groups(module: torch.nn.Module) -> list[dict]:
    """DINO's ``get_params_groups``: weights decayed; biases and 1-D parameters (norms) with weight decay 0."""
    exempt = {n: n.endswith(".bias") or p.ndim == 1 for n, p in module.named_parameters()}
    decayed = [p for n, p in module.named_parameters() if not exempt[n]]
    undecayed = [p for n, p in module.named_parameters() if exempt[n]]
    return [{"params": decayed}, {"params": undecayed, "weight_decay": 0.0}]


def clip_each_gradient(params, max_norm: float) -> None:
    """DINO's ``clip_gradients``: each parameter's gradient scaled to norm ``max_norm`` if above, on its own."""
    for p in params:
        if p.grad is not None:
            coef = max_norm / (p.grad.norm(2) + 1e-6)
            if coef < 1:
                p.grad.mul_(coef)


def dino_step(loss: torch.Tensor, params, opt, sched, clip_grad: float) -> float:
    """One optimiser step with DINO's per-parameter gradient clipping; returns the loss value."""
    loss.backward()
    clip_each_gradient(params, clip_grad)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return loss.detach().item()


def _unit_range(pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixels back in [0, 1] with the toy processor's mean and std (to normalise again)."""
    mean = torch.tensor(IMAGE_MEAN, device=pixel_values.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=pixel_values.device).view(1, 3, 1, 1)
    return pixel_values * std + mean, mean, std


def _uniform(shape: tuple[int, ...], scale: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """Uniform draws in ``[-scale, scale]``."""
    return ((torch.rand(shape, generator=gen) * 2 - 1) * scale).to(device)


def photometric(images: torch.Tensor, cfg: SslTrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, small per-channel gain and noise on ``[0, 1]`` images; clipped to ``[0, 1]``."""
    n, device = len(images), images.device
    mean = images.mean((1, 2, 3), keepdim=True)
    contrast = 1 + _uniform((n, 1, 1, 1), cfg.contrast, gen, device)
    gain = 1 + _uniform((n, 3, 1, 1), cfg.channel_gain, gen, device)
    brightness = _uniform((n, 1, 1, 1), cfg.brightness, gen, device)
    noise = (torch.randn(images.shape, generator=gen) * cfg.noise_std).to(device)
    return ((images - mean) * contrast + mean) * gain + brightness + noise


def shifted(images: torch.Tensor, max_shift: int, gen: torch.Generator, fill: float = 0.5) -> torch.Tensor:
    """Each image translated by up to ``max_shift`` px each way, the uncovered border filled with ``fill``."""
    n, _, h, w = images.shape
    pad = F.pad(images, (max_shift,) * 4, value=fill)
    dy, dx = (torch.randint(0, 2 * max_shift + 1, (2, n), generator=gen)).tolist()
    return torch.stack([pad[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def in_place_crop(images: torch.Tensor, size: int, gen: torch.Generator, fill: float = 0.5) -> torch.Tensor:
    """Each image with only a random ``size x size`` window kept in place, the rest set to ``fill``."""
    n, _, h, w = images.shape
    top, left = torch.randint(0, h - size + 1, (n,), generator=gen), torch.randint(0, w - size + 1, (n,), generator=gen)
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    keep = (rows >= top.view(n, 1, 1)) & (rows < (top + size).view(n, 1, 1))
    keep = keep & (cols >= left.view(n, 1, 1)) & (cols < (left + size).view(n, 1, 1))
    return torch.where(keep.unsqueeze(1).to(images.device), images, torch.full_like(images, fill))


def augmented_view(pixel_values: torch.Tensor, cfg: SslTrainConfig, gen: torch.Generator, local: bool) -> torch.Tensor:
    """One augmented view of a batch of normalised pixels (global: shift + photometric; local: in-place
    crop + photometric), normalised again and in the processor's range."""
    images, mean, std = _unit_range(pixel_values)
    images = in_place_crop(images, cfg.local_size, gen) if local else shifted(images, cfg.max_shift, gen)
    return (photometric(images, cfg, gen).clamp(0, 1) - mean) / std


@torch.no_grad()
def held_out_check(encoder: CLIPVisionModel, pixels: torch.Tensor, scenes: list, seed: int) -> dict[str, float]:
    """Linear-probe accuracies on held-out scenes (first 3/4 train, last 1/4 test): the canonical relation
    from the pooled output and from layer -2's patch tokens (what LLaVA reads), and each layer -2 patch
    token's colour (or empty)."""
    encoder.eval()
    views = layer_views(encoder, pixels)
    cut = 3 * len(scenes) // 4
    relation = torch.tensor([canonical_relation(s) for s in scenes])
    colour = patch_labels(scenes, encoder.config.image_size // encoder.config.patch_size)["colour"]

    def probe(x: torch.Tensor, y: torch.Tensor, n_classes: int) -> float:
        per_scene = y[0].numel()
        x, y = x.reshape(y.numel(), -1), y.reshape(-1)
        rows = cut * per_scene
        return fit_probe(x[:rows], y[:rows], x[rows:], y[rows:], n_classes, "linear", seed, 100)

    return {
        "relation (pooled)": probe(views[-1]["pooled embedding"], relation, len(RELATIONS)),
        "relation (layer -2 patch tokens)": probe(views[-2]["patch tokens (flattened)"], relation, len(RELATIONS)),
        "token colour (layer -2)": probe(views[-2]["patch tokens"], colour, EMPTY + 1),
    }


def train_dino(
    encoder: CLIPVisionModel, pixels: torch.Tensor, cfg: SslTrainConfig, seed: int, check=None,
    progress: bool = True,
) -> tuple[CLIPVisionModel, dict]:  # fmt: skip
    """DINO self-distillation from ``encoder`` (the student's start) on ``pixels``: the trained teacher
    encoder and the log (loss curve; ``check(teacher_encoder)`` every ``cfg.check_every`` steps and at the end)."""
    device = next(encoder.parameters()).device
    torch.manual_seed(seed)
    width = encoder.config.hidden_size
    head = DinoHead(width, cfg.head_hidden, cfg.bottleneck, cfg.prototypes, cfg.head_batchnorm)
    student = DinoNetwork(encoder, head).to(device)
    teacher = copy.deepcopy(student).requires_grad_(False)  # in train mode, as DINO's: batch statistics
    gen = torch.Generator().manual_seed(seed)
    params = list(student.parameters())
    opt, sched = adamw_schedule(dino_param_groups(student), cfg.lr, cfg.weight_decay, cfg.warmup, cfg.steps)
    center = torch.zeros(cfg.prototypes, device=device)
    log = {"loss": [], "target entropy": [], "checks": []}

    def record_check(step: int) -> None:
        if check is not None:
            log["checks"].append({"step": step, **check(teacher.encoder)})
            teacher.train()

    record_check(0)
    student.train()
    for step in progress_bar(range(cfg.steps), desc="SSL encoder (DINO)", disable=not progress, mininterval=5):
        student.head.prototypes.requires_grad_(step >= cfg.freeze_prototypes)  # DINO's frozen last layer
        batch = pixels[torch.randperm(len(pixels), generator=gen)[: cfg.batch_size]].to(device)
        views = [augmented_view(batch, cfg, gen, local=v >= 2) for v in range(2 + cfg.local_views)]
        with torch.no_grad():
            teacher_out = teacher(torch.cat(views[:2]))
        student_out = student(torch.cat(views)).chunk(len(views))
        temp = teacher_temperature(cfg, step)
        loss = dino_loss(list(student_out), list(teacher_out.chunk(2)), center, cfg.student_temp, temp)
        log["target entropy"].append(target_entropy(teacher_out, center, temp))
        log["loss"].append(dino_step(loss, params, opt, sched, cfg.clip_grad))
        ema_update(teacher, student, teacher_momentum(cfg, step))
        center = updated_center(center, teacher_out, cfg.center_momentum)
        if (step + 1) % cfg.check_every == 0 or step + 1 == cfg.steps:
            record_check(step + 1)
    return teacher.encoder.eval(), log


def initial_encoder(world: WorldConfig, size: ClipSize, seed: int) -> CLIPVisionModel:
    """A ``CLIPVisionModel`` of the toy CLIP's vision config, with that CLIP's initial weights for ``seed``."""
    clip, _ = toy_clip(world, size, seed)
    encoder = CLIPVisionModel(clip.config.vision_config)
    encoder.vision_model.load_state_dict(clip.vision_model.state_dict())
    return encoder.eval()
