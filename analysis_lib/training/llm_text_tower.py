"""An LLM2CLIP-style text tower for the toy CLIP: the pre-trained toy LM's last-token hidden state and a linear
projection into CLIP's embedding space, aligned contrastively to the CLIP image tower (frozen, as LLM2CLIP's, or
fine-tuned with it: a control)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPModel, CLIPProcessor, LlamaForCausalLM, PreTrainedTokenizerFast

from analysis_lib.data.toyworld import Scene, relational_caption
from analysis_lib.scoring.scorers import ClipScorer, CosineScorer
from analysis_lib.training.clip_llava import minibatch_training
from analysis_lib.training.patch_contrastive import symmetric_infonce

PROJECTION_FILE = "projection.safetensors"


@dataclass(frozen=True)
class LmTowerConfig:
    """Contrastive alignment of the LM text tower to the frozen image tower (the LM is fine-tuned too)."""

    steps: int = 800  # NegCLIP's budget (analysis_lib.training.negclip.NegClipConfig)
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 80
    weight_decay: float = 0.0
    temperature: float = 0.05
    lock_image: bool = True  # False: the CLIP image tower and its projection are fine-tuned with the text tower


class LmTextTower(nn.Module):
    """Caption -> the toy LM's last hidden state at the end token -> linear projection."""

    def __init__(self, lm: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, out_dim: int) -> None:
        super().__init__()
        self.lm, self.tokenizer = lm.model, tokenizer
        self.projection = nn.Linear(lm.config.hidden_size, out_dim)

    def forward(self, texts: list[str]) -> torch.Tensor:
        """``len(texts) x out_dim`` embeddings (each text ends with the end token; right padding)."""
        device = self.projection.weight.device
        enc = self.tokenizer([t + self.tokenizer.eos_token for t in texts], padding=True, padding_side="right",
                             return_tensors="pt").to(device)  # fmt: skip
        hidden = self.lm(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        last = enc["attention_mask"].sum(1) - 1
        return self.projection(hidden[torch.arange(len(texts), device=device), last])

    def save(self, folder: Path) -> None:
        """The fine-tuned LM (``save_pretrained``) and the projection (safetensors)."""
        wrapper = LlamaForCausalLM(self.lm.config)
        wrapper.model.load_state_dict(self.lm.state_dict())
        wrapper.save_pretrained(folder)
        save_file(self.projection.state_dict(), str(Path(folder) / PROJECTION_FILE))

    @classmethod
    def load(cls, folder: Path, tokenizer: PreTrainedTokenizerFast) -> LmTextTower:
        """A tower saved by ``save``."""
        projection = load_file(str(Path(folder) / PROJECTION_FILE))
        tower = cls(LlamaForCausalLM.from_pretrained(folder), tokenizer, projection["weight"].shape[0])
        tower.projection.load_state_dict(projection)
        return tower.eval()


@torch.no_grad()
def image_embeddings(clip: CLIPModel, pixels: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """The frozen CLIP's projected image embeddings of preprocessed pixels."""
    device = next(clip.parameters()).device
    rows = [clip.get_image_features(pixel_values=pixels[i : i + batch_size].to(device)) for i in
            range(0, len(pixels), batch_size)]  # fmt: skip
    return torch.cat(rows)


def train_lm_tower(
    tower: LmTextTower,
    clip: CLIPModel,
    pixels: torch.Tensor,
    scenes: list[Scene],
    cfg: LmTowerConfig,
    seed: int,
    progress: bool = True,
) -> list[float]:
    """Align ``tower`` to ``clip``'s image embeddings of ``pixels`` (row i for scene i) with the symmetric InfoNCE
    on the scenes' relational captions; ``clip``'s image tower is frozen (``cfg.lock_image``) or fine-tuned in place
    with the tower (its text tower is never used). Returns the loss curve."""
    if cfg.lock_image:
        images = image_embeddings(clip, pixels)
        trained, embed = tower, images.__getitem__
    else:
        clip.requires_grad_(False)
        for module in (clip.vision_model, clip.visual_projection):
            module.requires_grad_(True)
        trained = nn.ModuleList([tower, clip])
        device = next(clip.parameters()).device
        embed = lambda idx: clip.get_image_features(pixel_values=pixels[idx].to(device))  # noqa: E731

    def batch_loss(idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        text = nn.functional.normalize(tower([relational_caption(scenes[i]) for i in idx]), dim=-1)
        image = nn.functional.normalize(embed(idx).to(text.device), dim=-1)
        return symmetric_infonce(image @ text.T, cfg.temperature)

    curve = minibatch_training(trained, len(scenes), cfg, seed, batch_loss, "LM text tower", progress)
    clip.requires_grad_(False)
    return curve


class LmTowerScorer(CosineScorer):
    """Cosine of the CLIP image embedding and the LM tower's text embedding."""

    name = "CLIP image tower + LM text tower"

    def __init__(self, clip: CLIPModel, processor: CLIPProcessor, tower: LmTextTower, batch_size: int = 256) -> None:
        self.images, self.tower, self.batch_size = ClipScorer(clip, processor, batch_size), tower.eval(), batch_size

    def embed_images(self, images: list) -> torch.Tensor:
        """The CLIP's projected image features."""
        return self.images.embed_images(images)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """The LM tower's text embeddings."""
        return self.tower(texts)
