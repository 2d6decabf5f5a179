"""Patch-aligned contrastive heads on a frozen CLIP (PACL, SPARC): the contrastive side of the token question.

Both towers stay frozen; small heads map the vision tower's last-layer patch tokens and the text
tower's outputs into one space (REFERENCE §3): patch tokens -> LayerNorm -> dropout -> linear, plus a
linear-GELU-linear residual; text end-of-text embedding -> LayerNorm -> linear.

* PACL scores an image with a text by pooling the image's patch embeddings with softmax weights of
  their dot products with the text embedding, then taking the cosine to the text embedding; trained
  with CLIP's symmetric InfoNCE on that score.
* SPARC adds per-word text tokens: each word's similarities to the patches are min-max normalised,
  cut at 1/patches, renormalised into weights; the weighted patches (language-grouped vision
  embeddings) are contrasted with their word against the caption's other words. Loss = 0.5 global
  (PACL's) + 1.0 local. SPARC is scored like PACL, so the two differ only by the per-word loss.
* ``rope``: a 1-D rotary position code (base 10000) over the patch sequence, applied to the patch
  tokens after the LayerNorm, so the head sees each patch's raster index as a rotation.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPModel, CLIPProcessor

from analysis_lib.progress import progress_bar
from analysis_lib.scoring import Pairs, as_pil
from analysis_lib.toyworld import Scene, WorldConfig, training_caption

LOSSES = ("pacl", "sparc")


@dataclass(frozen=True)
class PatchHeadConfig:
    """One patch-aligned head and its contrastive training on the frozen CLIP."""

    loss: str = "pacl"
    rope: bool = False
    steps: int = 500
    batch_size: int = 256
    lr: float = 1e-3
    temperature: float = 0.1
    dropout: float = 0.1
    global_weight: float = 0.5
    local_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown patch-head loss {self.loss!r}; use one of {LOSSES}")


def rope_1d(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate channel pairs (i, i + d/2) of ``... x P x d`` tokens by angle ``p * base^(-2i/d)`` at index p."""
    length, dim = x.shape[-2], x.shape[-1]
    half = dim // 2
    freqs = base ** (-torch.arange(half, dtype=torch.float32, device=x.device) / half)
    angles = torch.arange(length, dtype=torch.float32, device=x.device)[:, None] * freqs
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    first, second = x[..., :half], x[..., half : 2 * half]
    return torch.cat([first * cos - second * sin, first * sin + second * cos, x[..., 2 * half :]], dim=-1)


class PatchHead(nn.Module):
    """Patch tokens -> LayerNorm -> (RoPE) -> dropout -> linear, plus a linear-GELU-linear residual."""

    def __init__(self, width: int, out_width: int, dropout: float, rope: bool) -> None:
        super().__init__()
        self.norm, self.drop, self.rope = nn.LayerNorm(width), nn.Dropout(dropout), rope
        self.linear = nn.Linear(width, out_width)
        self.mlp = nn.Sequential(nn.Linear(out_width, out_width), nn.GELU(), nn.Linear(out_width, out_width))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """``N x P x width`` patch tokens to ``N x P x out_width`` patch embeddings."""
        x = self.norm(patches)
        x = self.linear(self.drop(rope_1d(x) if self.rope else x))
        return x + self.mlp(x)


class TextHead(nn.Module):
    """Text-tower outputs (end-of-text embedding or per-word tokens) -> LayerNorm -> linear."""

    def __init__(self, width: int, out_width: int) -> None:
        super().__init__()
        self.norm, self.linear = nn.LayerNorm(width), nn.Linear(width, out_width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Project text features (any leading shape)."""
        return self.linear(self.norm(tokens))


def pacl_similarity(patches: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """``N x T`` PACL scores: cosine of each text to the image's patches pooled by softmax(patch . text)."""
    weights = torch.einsum("npd,td->ntp", patches, texts).softmax(-1)
    pooled = torch.einsum("ntp,npd->ntd", weights, patches)
    return (F.normalize(pooled, dim=-1) * F.normalize(texts, dim=-1)[None]).sum(-1)


def symmetric_infonce(similarity: torch.Tensor, temperature: float) -> torch.Tensor:
    """CLIP's loss on an ``N x N`` similarity matrix whose diagonal holds the matching pairs."""
    logits = similarity / temperature
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def grouped_patches(patches: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """SPARC's language-grouped vision embeddings: per word, its image's patches weighted by the word's
    min-max normalised similarities, cut below 1/patches and renormalised (``N x L x d``)."""
    sim = torch.einsum("nld,npd->nlp", words, patches)
    low, high = sim.min(-1, keepdim=True).values, sim.max(-1, keepdim=True).values
    sim = (sim - low) / (high - low + 1e-6)
    sim = torch.where(sim < 1.0 / patches.shape[1], torch.zeros_like(sim), sim)
    weights = sim / sim.sum(-1, keepdim=True).clamp(min=1e-6)
    return torch.einsum("nlp,npd->nld", weights, patches)


def sparc_local_loss(
    patches: torch.Tensor, words: torch.Tensor, mask: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Per caption, each word's grouped vision embedding against the caption's words (both ways), over real words."""
    grouped = F.normalize(grouped_patches(patches, words), dim=-1)
    logits = torch.einsum("nld,nkd->nlk", grouped, F.normalize(words, dim=-1)) / temperature
    pad = ~mask.bool()
    target = torch.arange(logits.shape[1], device=logits.device).expand(len(logits), -1).masked_fill(pad, -100)
    to_words = logits.masked_fill(pad[:, None, :], float("-inf"))
    to_vision = logits.transpose(1, 2).masked_fill(pad[:, None, :], float("-inf"))
    total = sum(F.cross_entropy(x.flatten(0, 1), target.flatten(), reduction="sum") for x in (to_words, to_vision))
    return total / (2 * mask.sum())


class PatchAligned(nn.Module):
    """The two heads of one PACL / SPARC model over a frozen CLIP."""

    def __init__(self, clip: CLIPModel, cfg: PatchHeadConfig) -> None:
        super().__init__()
        vision_width, text_width = clip.config.vision_config.hidden_size, clip.config.text_config.hidden_size
        self.patch_head = PatchHead(vision_width, text_width, cfg.dropout, cfg.rope)
        self.text_head = TextHead(text_width, text_width)


@torch.no_grad()
def text_features(clip: CLIPModel, processor: CLIPProcessor, texts: list[str]) -> tuple[torch.Tensor, ...]:
    """The frozen text tower's per-token outputs, their mask, and the end-of-text embedding."""
    device = next(clip.parameters()).device
    enc = processor.tokenizer(texts, padding=True, return_tensors="pt").to(device)
    out = clip.text_model(**enc)
    return out.last_hidden_state, enc["attention_mask"], out.pooler_output


@torch.no_grad()
def last_layer_patches(clip: CLIPModel, pixel_values: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The frozen vision tower's last-layer patch tokens (what CLIP's own pooling reads)."""
    chunks = [clip.vision_model(pixel_values[s : s + batch_size]).last_hidden_state[:, 1:]
              for s in range(0, len(pixel_values), batch_size)]  # fmt: skip
    return torch.cat(chunks)


def train_patch_heads(
    clip: CLIPModel,
    processor: CLIPProcessor,
    scenes: list[Scene],
    patches: torch.Tensor,
    world: WorldConfig,
    cfg: PatchHeadConfig,
    seed: int,
    progress: bool = True,
) -> tuple[PatchAligned, list[float]]:
    """Train PACL or SPARC heads contrastively on CLIP's caption mix; returns the heads and the loss curve."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = PatchAligned(clip, cfg).to(patches.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    losses = []
    for _ in progress_bar(range(cfg.steps), desc=f"{cfg.loss.upper()} heads", disable=not progress, mininterval=5):
        idx = rng.choice(len(scenes), cfg.batch_size, replace=False)
        tokens, mask, eot = text_features(clip, processor, [training_caption(scenes[i], rng, world) for i in idx])
        image = model.patch_head(patches[idx])
        loss = symmetric_infonce(pacl_similarity(image, model.text_head(eot)), cfg.temperature)
        if cfg.loss == "sparc":
            local = sparc_local_loss(image, model.text_head(tokens), mask, cfg.temperature)
            loss = cfg.global_weight * loss + cfg.local_weight * local
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.eval(), losses


def save_heads(model: PatchAligned, cfg: PatchHeadConfig, folder: Path) -> None:
    """Save the heads (safetensors) and their config."""
    save_file(model.state_dict(), str(folder / "heads.safetensors"))
    (folder / "head_config.json").write_text(json.dumps(asdict(cfg)))


def load_heads(clip: CLIPModel, folder: Path) -> PatchAligned:
    """Load heads saved by ``save_heads`` for ``clip``."""
    cfg = PatchHeadConfig(**json.loads((Path(folder) / "head_config.json").read_text()))
    model = PatchAligned(clip, cfg)
    model.load_state_dict(load_file(str(Path(folder) / "heads.safetensors")))
    return model.eval()


class PatchAlignedScorer:
    """PACL score of each ``(image_index, text)`` pair: the frozen CLIP's towers through the trained heads."""

    def __init__(self, clip: CLIPModel, processor: CLIPProcessor, heads: PatchAligned, name: str) -> None:
        self.clip, self.processor, self.heads, self.name = clip.eval(), processor, heads.eval(), name

    @torch.no_grad()
    def score_pairs(self, images, pairs: Pairs) -> np.ndarray:
        """PACL similarity for each pair."""
        device = next(self.clip.parameters()).device
        pixels = self.processor.image_processor([as_pil(im) for im in images], return_tensors="pt")["pixel_values"]
        patches = self.heads.patch_head(last_layer_patches(self.clip, pixels.to(device)))
        texts = sorted({t for _, t in pairs})
        column = {t: i for i, t in enumerate(texts)}
        text = self.heads.text_head(text_features(self.clip, self.processor, texts)[2])
        index = torch.tensor([i for i, _ in pairs])
        columns = torch.tensor([column[t] for _, t in pairs])
        weights = torch.einsum("npd,nd->np", patches[index], text[columns]).softmax(-1)
        pooled = torch.einsum("np,npd->nd", weights, patches[index])
        return F.cosine_similarity(pooled, text[columns], dim=-1).cpu().numpy()
