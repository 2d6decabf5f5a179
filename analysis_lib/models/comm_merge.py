"""Where a toy LLaVA's image tokens come from (chapter 7, COMM: Jiang et al. 2023, arXiv 2310.08825).

A ``VisionSource`` names the frozen encoder(s) and how their layers are read:

* ``clip`` + ``penultimate``: LLaVA-1.5 as it is (CLIP's layer -2, the usual two-layer MLP projector);
* ``clip`` + ``comm``: COMM's multi-level merge of CLIP: every encoder block's patch tokens go through
  their own Linear + LayerNorm, are weighted by a learnable scalar per layer and summed, then projected;
* ``ssl`` + ``penultimate``: the self-supervised (DINO) toy encoder's layer -2 in CLIP's place;
* ``untrained`` + ``penultimate``: the toy CLIP's vision tower at its initial (random) weights, never trained, in
  CLIP's place (chapter 1's control: does LLaVA read what CLIP's training put in the encoder, or the pixels?);
* ``clip+ssl`` + ``comm``: COMM itself: CLIP merged as above, the SSL encoder's deeper half of blocks
  merged the same way and then passed through an MLP, the two streams **concatenated along channels**
  (COMM concatenates its CLIP and DINOv2 features; same patch grid, so the LM still reads 9 image
  tokens, and neither stream can cancel the other as a sum could) and projected into the LM.

The source is stored in the model's config (``toy_vision``), so a saved model knows what it is;
``CommLlavaForConditionalGeneration`` (a ``LlavaForConditionalGeneration``) builds the merge projector and
the tower pair from that config, so ``from_pretrained`` reproduces a trained variant exactly. Layer selection
is transformers' own: ``vision_feature_layer`` as a list concatenates the chosen hidden states along
channels, and the merge projector splits them again. The per-layer Linears are one block-diagonal
``linear_1`` (off-block weights held at zero), so the training loop's folding of the feature
standardisation into ``linear_1`` applies as is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, LlavaConfig, LlavaForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutputWithPooling

ENCODERS = ("clip", "ssl", "clip+ssl", "untrained")
MERGES = ("penultimate", "comm")
CONFIG_KEY = "toy_vision"
PENULTIMATE = -2


@dataclass(frozen=True)
class VisionSource:
    """Which frozen encoder(s) give the image tokens and how their layers are merged (module docstring)."""

    encoder: str = "clip"
    merge: str = "penultimate"
    ssl_smoke: bool = False  # the SSL encoder's two-step smoke recipe (smoke runs only)

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown vision encoder {self.encoder!r}; use one of {ENCODERS}")
        if self.merge not in MERGES:
            raise ValueError(f"unknown layer merge {self.merge!r}; use one of {MERGES}")
        if self.ssl_smoke and not self.uses_ssl:
            raise ValueError(f"ssl_smoke=True needs an encoder that reads the SSL encoder, not {self.encoder!r}")
        if self.encoder == "clip+ssl" and self.merge != "comm":
            raise ValueError("encoder 'clip+ssl' needs merge='comm' (the two streams are merged as COMM does)")

    @property
    def is_default(self) -> bool:
        """LLaVA-1.5 as it is: CLIP's penultimate layer."""
        return self == VisionSource()

    @property
    def architecture(self) -> dict:
        """What a saved model's config keeps: the encoder(s) and the merge."""
        return {"encoder": self.encoder, "merge": self.merge}

    @property
    def second_tower(self) -> bool:
        """Whether the LLaVA reads a tower other than the toy CLIP's trained one (besides it or instead of it)."""
        return self.encoder != "clip"

    @property
    def uses_ssl(self) -> bool:
        """Whether the SSL encoder feeds the LLaVA."""
        return "ssl" in self.encoder

    def streams(self, n_layers: int) -> list[tuple[list[int], bool]]:
        """Per stream: the hidden-state indices it merges (into the towers' concatenated hidden states;
        0 is the embeddings) and whether an MLP follows its merge."""
        blocks = list(range(1, n_layers + 1))
        if self.encoder == "clip+ssl":
            deeper = [n_layers + 1 + i for i in blocks[n_layers // 2 :]]  # the SSL tower's deeper half of blocks
            return [(blocks, False), (deeper, True)]
        return [(blocks, False)]

    def feature_layer(self, n_layers: int) -> int | list[int]:
        """transformers' ``vision_feature_layer``: -2, or the list of every stream's layers."""
        if self.merge == "penultimate":
            return PENULTIMATE
        return [layer for layers, _ in self.streams(n_layers) for layer in layers]


def model_source(model: torch.nn.Module) -> VisionSource:
    """The vision source a toy LLaVA (or its config) was built with."""
    config = getattr(model, "config", model)
    return VisionSource(**getattr(config, CONFIG_KEY, None) or {})


class CommProjector(nn.Module):
    """COMM's merge: per layer Linear + LayerNorm, a learnable scalar per layer, summed per stream (an MLP
    after a stream that asks for one), streams concatenated, then LLaVA's two-layer MLP projector."""

    def __init__(self, width: int, text_width: int, streams: list[tuple[int, bool]]) -> None:
        super().__init__()
        self.width, self.stream_sizes = width, [n for n, _ in streams]
        total = sum(self.stream_sizes)
        self.linear_1 = nn.Linear(total * width, total * width)
        with torch.no_grad():
            self.linear_1.weight.mul_(self.block_mask())
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(total))
        self.layer_weights = nn.ParameterList(nn.Parameter(torch.full((n,), 1.0 / n)) for n in self.stream_sizes)
        self.stream_mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width)) if mlp else nn.Identity()
            for _, mlp in streams
        )
        self.projector = nn.Sequential(
            nn.Linear(len(streams) * width, text_width), nn.GELU(), nn.Linear(text_width, text_width)
        )

    def reset_parameters(self) -> None:
        """Initialise every layer afresh as ``__init__`` does (a restarted training's new projector)."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        with torch.no_grad():
            self.linear_1.weight.mul_(self.block_mask())
            for weights, n in zip(self.layer_weights, self.stream_sizes):
                weights.fill_(1.0 / n)

    def block_mask(self) -> torch.Tensor:
        """The block-diagonal pattern of ``linear_1``: layer i's channels map only to layer i's."""
        n = sum(self.stream_sizes)
        return torch.kron(torch.eye(n), torch.ones(self.width, self.width)).to(self.linear_1.weight)

    def per_layer(self, features: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's features after its own Linear + LayerNorm."""
        hidden = nn.functional.linear(features, self.linear_1.weight * self.block_mask(), self.linear_1.bias)
        return [norm(part) for norm, part in zip(self.norms, hidden.split(self.width, dim=-1))]

    def merged(self, features: torch.Tensor) -> torch.Tensor:
        """The streams' weighted sums (after their MLPs), concatenated along channels."""
        layers, out, start = self.per_layer(features), [], 0
        for n, weights, mlp in zip(self.stream_sizes, self.layer_weights, self.stream_mlps):
            stack = torch.stack(layers[start : start + n], dim=-1)
            out.append(mlp((stack * weights).sum(-1)))
            start += n
        return torch.cat(out, dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``N x P x (layers * width)`` concatenated layer features -> ``N x P x text_width`` image tokens."""
        return self.projector(self.merged(features))


class TowerPair(nn.Module):
    """Two vision towers read as one: their hidden states concatenated (CLIP's first, then the SSL one's)."""

    def __init__(self, clip: nn.Module, ssl: nn.Module) -> None:
        super().__init__()
        self.clip, self.ssl = clip, ssl

    def forward(
        self, pixel_values: torch.Tensor, output_hidden_states: bool = True, **kwargs
    ) -> BaseModelOutputWithPooling:
        """Both towers' hidden states, CLIP's ``0..n`` then the SSL tower's ``n+1..2n+1``."""
        first = self.clip(pixel_values, output_hidden_states=True, **kwargs)
        second = self.ssl(pixel_values, output_hidden_states=True, **kwargs)
        return BaseModelOutputWithPooling(
            last_hidden_state=second.last_hidden_state, hidden_states=first.hidden_states + second.hidden_states
        )


class CommLlavaForConditionalGeneration(LlavaForConditionalGeneration):
    """A toy LLaVA whose vision tower(s) and projector follow its config's ``VisionSource``."""

    def __init__(self, config: LlavaConfig) -> None:
        super().__init__(config)
        source = model_source(config)
        if source.encoder == "clip+ssl":
            self.model.vision_tower = TowerPair(self.model.vision_tower, AutoModel.from_config(config.vision_config))
        if source.merge == "comm":
            streams = [(len(layers), mlp) for layers, mlp in source.streams(config.vision_config.num_hidden_layers)]
            width, text_width = config.vision_config.hidden_size, config.text_config.hidden_size
            self.model.multi_modal_projector = CommProjector(width, text_width, streams)


def source_config(config: LlavaConfig, source: VisionSource) -> LlavaConfig:
    """A copy of a toy LLaVA's config set up for ``source`` (layers to read, the source stored)."""
    config = LlavaConfig.from_dict(config.to_dict())
    config.vision_feature_layer = source.feature_layer(config.vision_config.num_hidden_layers)
    setattr(config, CONFIG_KEY, source.architecture)
    return config


def with_source(
    model: LlavaForConditionalGeneration, source: VisionSource, tower: nn.Module | None, seed: int
) -> LlavaForConditionalGeneration:
    """A freshly built toy LLaVA turned into ``source``'s variant: ``model``'s LM and CLIP tower kept, ``tower``'s
    weights (a ``CLIPVisionModel`` of the same config: the SSL encoder or the untrained one) loaded where the
    source reads them, a new merge projector (initialised from ``seed``); every vision tower frozen. The default
    source returns ``model`` itself."""
    if source.is_default:
        return model
    if source.second_tower and tower is None:
        raise ValueError(f"vision source {source} reads a second encoder: pass its CLIPVisionModel as tower")
    torch.manual_seed(seed)
    out = CommLlavaForConditionalGeneration(source_config(model.config, source))
    kept = {k: v for k, v in model.state_dict().items() if source.merge != "comm" or "multi_modal_projector" not in k}
    if source.encoder == "clip+ssl":
        kept = {k.replace("vision_tower.", "vision_tower.clip.", 1): v for k, v in kept.items()}
    missing, unexpected = out.load_state_dict(kept, strict=False)
    left = [k for k in missing if "multi_modal_projector" not in k and "vision_tower.ssl." not in k]
    if unexpected or left:
        raise RuntimeError(f"building {source}: unexpected weights {unexpected}, weights left unset {left}")
    if source.encoder in ("ssl", "untrained"):
        out.model.vision_tower.load_state_dict(tower.state_dict())
    elif source.encoder == "clip+ssl":
        out.model.vision_tower.ssl.load_state_dict(tower.state_dict())
    out.model.vision_tower.requires_grad_(False)
    return out


def load_toy_llava(folder) -> LlavaForConditionalGeneration:
    """A saved toy LLaVA of any vision source (``CommLlavaForConditionalGeneration`` unless it is the default)."""
    config = LlavaConfig.from_pretrained(folder)
    cls = LlavaForConditionalGeneration if model_source(config).is_default else CommLlavaForConditionalGeneration
    return cls.from_pretrained(folder)


def layer_weights(model: LlavaForConditionalGeneration) -> list[list[float]]:
    """The learned per-layer merge weights of each stream of a COMM variant."""
    projector = model.model.multi_modal_projector
    if not isinstance(projector, CommProjector):
        raise ValueError("this LLaVA has no COMM merge projector (its vision source merges no layers)")
    return [w.detach().cpu().tolist() for w in projector.layer_weights]
