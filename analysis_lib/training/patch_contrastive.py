"""Patch-aligned contrastive heads on a frozen CLIP (PACL, SPARC): the contrastive side of the token question.

Both towers stay frozen; small heads map their outputs into one space, as the paper's code builds them
(``Patch-Aligned-Contrastive-Learning/model/pacl.py`` in lst627/CLIP-Embeds): the vision tower's last-layer patch
tokens (after its final LayerNorm, as open_clip's ``output_tokens`` returns them) -> LayerNorm -> dropout -> a
linear map plus, in parallel on the same input, a linear-GELU-linear MLP (``Patch_Projection``), into CLIP's
embedding width; text features -> LayerNorm -> dropout -> linear.

* PACL (``open_clip_pacl``) reads the caption's projected end-of-text embedding (CLIP's text embedding). Training:
  each image's patch embeddings are weighted by ``sigmoid(10 * cos(patch, caption))`` with its own caption and
  summed; CLIP's symmetric InfoNCE (temperature 0.1) contrasts these pooled image embeddings with every caption.
  Scoring: the paper's evaluation overrides the weights with ones ("Eval only"), so an image is the sum of its
  patch embeddings and the score is its cosine with the text embedding. The paper's ``model.py`` also leaves that
  override in the forward pass its training script calls; we read its "Eval only" comment as the intent and pool
  with the sigmoid weights in training. (The PACL paper pools each image anew for every caption; the paper's code,
  followed here, pools it with its own caption only.)
* SPARC (``sparc`` / ``SparcLoss``) reads the caption's per-token outputs. Global loss: CLIP's InfoNCE between the
  global image embedding (the mean of the patch embeddings) and the global text embedding (the mean of the
  L2-normalised token embeddings), both L2-normalised. Local loss: each token's similarities to its image's
  patches are min-max normalised, cut below 1/patches and renormalised into weights; the weighted patches
  (language-grouped vision embeddings) are contrasted with their token against the caption's other tokens, both
  ways. Loss = 0.5 global + 1.0 local. Scoring (``sparc.scoring``, ``local=False``, the evaluation's default): the
  cosine of the two global embeddings. One deliberate difference: the paper averages the text tokens over
  open_clip's fixed 77-token context, padding after the end-of-text token included; with padding to the batch's
  longest caption that mean would depend on the batch, so the global text embedding here averages the caption's
  own tokens (start to end-of-text, the mask SPARC's local loss uses).
* ``rope``: 1-D rotary position code (base 10000, ``apply_rope``) over the patch sequence, applied where the paper's
  code applies it (``open_clip_pacl_rope``, ``sparc_rope``): on the frozen patch tokens, before the head's
  LayerNorm.

Also deliberate: Adam at ``lr`` 1e-3 (the paper: 1e-4, for 10 epochs of LLaVA's data) so the toy's few hundred
steps converge, and the SPARC threshold 1/patches (the paper's ViT-L runs keep its default 1/625 for 576 patches).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPModel, CLIPProcessor

from analysis_lib.core.progress import progress_bar
from analysis_lib.data.toyworld import Scene, WorldConfig, training_caption
from analysis_lib.scoring.scorers import Pairs, as_pil

LOSSES = ("pacl", "sparc")


@dataclass(frozen=True)
class PatchHeadConfig:
    """One patch-aligned head and its contrastive training on the frozen CLIP (``gate_scale``: PACL's sigmoid
    gate ``sigmoid(gate_scale * cos)``, 10 in the paper's code; part of every head's cache key)."""

    loss: str = "pacl"
    rope: bool = False
    steps: int = 500
    batch_size: int = 256
    lr: float = 1e-3
    temperature: float = 0.1
    dropout: float = 0.1
    global_weight: float = 0.5
    local_weight: float = 1.0
    gate_scale: float = 10.0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown patch-head loss {self.loss!r}; use one of {LOSSES}")


PACL, SPARC = "PACL heads (patch tokens)", "SPARC heads (patch + word tokens)"
HEADS = {PACL: PatchHeadConfig(loss="pacl"), SPARC: PatchHeadConfig(loss="sparc")}
"""The book's two patch-aligned heads (chapters 2, 3 and 5), by the name its tables give them."""


def smoke_heads(cfg: PatchHeadConfig, smoke: bool) -> PatchHeadConfig:
    """The head recipe, or two small steps of it in a smoke run."""
    return dataclasses.replace(cfg, steps=2, batch_size=16) if smoke else cfg


def rope_1d(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """The paper's ``apply_rope`` on ``... x P x d`` tokens: channel pair (2i, 2i+1) rotated by ``p * base^(-2i/d)``
    at index p, the rotated first members then the rotated second members (its output order)."""
    length, dim = x.shape[-2], x.shape[-1]
    if dim % 2:
        raise ValueError(f"RoPE needs an even width, got {dim}")
    freqs = base ** (-torch.arange(0, dim, 2, dtype=torch.float32, device=x.device) / dim)
    angles = torch.arange(length, dtype=torch.float32, device=x.device)[:, None] * freqs
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    first, second = x[..., 0::2], x[..., 1::2]
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


class PatchHead(nn.Module):
    """Patch tokens -> LayerNorm -> dropout -> linear + a linear-GELU-linear in parallel (``Patch_Projection``)."""

    def __init__(self, width: int, out_width: int, dropout: float) -> None:
        super().__init__()
        self.norm, self.drop = nn.LayerNorm(width), nn.Dropout(dropout)
        self.linear = nn.Linear(width, out_width)
        self.mlp = nn.Sequential(nn.Linear(width, out_width), nn.GELU(), nn.Linear(out_width, out_width))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """``N x P x width`` patch tokens to ``N x P x out_width`` patch embeddings."""
        x = self.drop(self.norm(patches))
        return self.linear(x) + self.mlp(x)


class TextHead(nn.Module):
    """Text-tower outputs (end-of-text embedding or per-token outputs) -> LayerNorm -> dropout -> linear."""

    def __init__(self, width: int, out_width: int, dropout: float) -> None:
        super().__init__()
        self.norm, self.drop, self.linear = nn.LayerNorm(width), nn.Dropout(dropout), nn.Linear(width, out_width)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Project text features (any leading shape)."""
        return self.linear(self.drop(self.norm(tokens)))


def pacl_pooled(patches: torch.Tensor, texts: torch.Tensor, gate_scale: float) -> torch.Tensor:
    """``N x d``: each image's patch embeddings summed with weights ``sigmoid(gate_scale * cos(patch, its text))``."""
    cos = torch.einsum("npd,nd->np", F.normalize(patches, dim=-1), F.normalize(texts, dim=-1))
    return torch.einsum("np,npd->nd", torch.sigmoid(gate_scale * cos), patches)


def symmetric_infonce(similarity: torch.Tensor, temperature: float) -> torch.Tensor:
    """CLIP's loss on an ``N x N`` similarity matrix whose diagonal holds the matching pairs."""
    logits = similarity / temperature
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def pacl_loss(patches: torch.Tensor, texts: torch.Tensor, temperature: float, gate_scale: float) -> torch.Tensor:
    """The paper's PACL loss: InfoNCE between each image pooled with its own caption's gates and every caption."""
    pooled = F.normalize(pacl_pooled(patches, texts, gate_scale), dim=-1)
    return symmetric_infonce(pooled @ F.normalize(texts, dim=-1).T, temperature)


def global_image(patches: torch.Tensor) -> torch.Tensor:
    """SPARC's global image embedding (and PACL's at scoring): the L2-normalised mean of the patch embeddings."""
    return F.normalize(patches.mean(1), dim=-1)


def global_text(words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SPARC's global text embedding: the L2-normalised mean of the L2-normalised token embeddings over ``mask``."""
    mask = mask.to(words.dtype)[..., None]
    return F.normalize((F.normalize(words, dim=-1) * mask).sum(1) / mask.sum(1), dim=-1)


def grouped_patches(patches: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """SPARC's language-grouped vision embeddings: per word, its image's patches weighted by the word's
    min-max normalised similarities, cut below 1/patches and renormalised (``N x L x d``)."""
    sim = torch.einsum("nld,npd->nlp", words, patches)
    low, high = sim.min(-1, keepdim=True).values, sim.max(-1, keepdim=True).values
    sim = (sim - low) / (high - low + 1e-8)
    sim = torch.where(sim < 1.0 / patches.shape[1], torch.zeros_like(sim), sim)
    weights = sim / (sim.sum(-1, keepdim=True) + 1e-8)
    return torch.einsum("nlp,npd->nld", weights, patches)


def sparc_local_loss(
    patches: torch.Tensor, words: torch.Tensor, mask: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Per caption, each word's grouped vision embedding against the caption's words, both ways, averaged over the
    batch's real words (the paper's ``masked_pairwise_contrastive_loss``: a token-weighted mean)."""
    grouped = F.normalize(grouped_patches(patches, words), dim=-1)
    logits = torch.einsum("nld,nkd->nlk", grouped, F.normalize(words, dim=-1)) / temperature
    pad = ~mask.bool()
    target = torch.arange(logits.shape[1], device=logits.device).expand(len(logits), -1).masked_fill(pad, -100)
    to_words = logits.masked_fill(pad[:, None, :], float("-inf"))
    to_vision = logits.transpose(1, 2).masked_fill(pad[:, None, :], float("-inf"))
    total = sum(F.cross_entropy(x.flatten(0, 1), target.flatten(), reduction="sum") for x in (to_words, to_vision))
    return total / (2 * mask.sum())


def sparc_loss(patches: torch.Tensor, words: torch.Tensor, mask: torch.Tensor, cfg: PatchHeadConfig) -> torch.Tensor:
    """SPARC's loss: ``global_weight`` x InfoNCE of the global embeddings + ``local_weight`` x the local loss."""
    global_loss = symmetric_infonce(global_image(patches) @ global_text(words, mask).T, cfg.temperature)
    return cfg.global_weight * global_loss + cfg.local_weight * sparc_local_loss(patches, words, mask, cfg.temperature)


class PatchAligned(nn.Module):
    """The two heads of one PACL / SPARC model over a frozen CLIP, and its image and text embeddings."""

    def __init__(self, clip: CLIPModel, cfg: PatchHeadConfig) -> None:
        super().__init__()
        text_config, embed = clip.config.text_config, clip.config.projection_dim
        text_width = embed if cfg.loss == "pacl" else text_config.hidden_size
        self.loss, self.rope = cfg.loss, cfg.rope
        self.patch_head = PatchHead(clip.config.vision_config.hidden_size, embed, cfg.dropout)
        self.text_head = TextHead(text_width, embed, cfg.dropout)

    def patches(self, tokens: torch.Tensor) -> torch.Tensor:
        """Patch embeddings of the frozen patch tokens (RoPE first when configured)."""
        return self.patch_head(rope_1d(tokens) if self.rope else tokens)

    def texts(self, tokens: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """The text head on what this loss reads: PACL the end-of-text embedding, SPARC every token."""
        return self.text_head(eot if self.loss == "pacl" else tokens)

    def text_embedding(self, tokens: torch.Tensor, mask: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """The L2-normalised text embedding scoring uses (SPARC: the global one)."""
        texts = self.texts(tokens, eot)
        return F.normalize(texts, dim=-1) if self.loss == "pacl" else global_text(texts, mask)

    def loss_value(self, patches: torch.Tensor, texts: torch.Tensor, mask: torch.Tensor, cfg: PatchHeadConfig):
        """The configured loss on a batch of patch embeddings and their captions' head outputs."""
        if self.loss == "pacl":
            return pacl_loss(patches, texts, cfg.temperature, cfg.gate_scale)
        return sparc_loss(patches, texts, mask, cfg)


@torch.no_grad()
def text_features(clip: CLIPModel, processor: CLIPProcessor, texts: list[str]) -> tuple[torch.Tensor, ...]:
    """The frozen text tower's per-token outputs (after its final LayerNorm), their mask, and the projected
    end-of-text embedding (CLIP's text embedding): what open_clip's ``encode_text`` returns."""
    device = next(clip.parameters()).device
    enc = processor.tokenizer(texts, padding=True, return_tensors="pt").to(device)
    out = clip.text_model(**enc)
    return out.last_hidden_state, enc["attention_mask"], clip.text_projection(out.pooler_output)


@torch.no_grad()
def last_layer_patches(clip: CLIPModel, pixel_values: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The frozen vision tower's last-layer patch tokens after its final LayerNorm (open_clip's ``output_tokens``)."""
    vision = clip.vision_model
    chunks = [vision.post_layernorm(vision(pixel_values[s : s + batch_size]).last_hidden_state[:, 1:])
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
        loss = model.loss_value(model.patches(patches[idx]), model.texts(tokens, eot), mask, cfg)
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
    """Score of each ``(image_index, text)`` pair as the paper evaluates the heads: the cosine of the image embedding
    (the mean patch embedding) and the text embedding (PACL: the projected end-of-text one; SPARC: the global one)."""

    def __init__(self, clip: CLIPModel, processor: CLIPProcessor, heads: PatchAligned, name: str) -> None:
        self.clip, self.processor, self.heads, self.name = clip.eval(), processor, heads.eval(), name

    @torch.no_grad()
    def score_pairs(self, images, pairs: Pairs) -> np.ndarray:
        """Cosine of image and text embedding for each pair."""
        device = next(self.clip.parameters()).device
        pixels = self.processor.image_processor([as_pil(im) for im in images], return_tensors="pt")["pixel_values"]
        image = global_image(self.heads.patches(last_layer_patches(self.clip, pixels.to(device))))
        texts = sorted({t for _, t in pairs})
        column = {t: i for i, t in enumerate(texts)}
        text = self.heads.text_embedding(*text_features(self.clip, self.processor, texts))
        index = torch.tensor([i for i, _ in pairs])
        columns = torch.tensor([column[t] for _, t in pairs])
        return (image[index] * text[columns]).sum(-1).cpu().numpy()
