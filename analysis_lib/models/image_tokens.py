"""How image tokens reach a toy LLaVA's language model: which tokens (chapter 2) and what position they
carry (chapter 3), trained that way or ablated at test time only.

A variant is stored in the model's config (``toy_image_tokens``), so a saved model knows what it is;
``install_hooks`` re-attaches the two forward hooks that carry it out after loading:

* ``tokens``: ``patches`` (LLaVA-1.5: every patch token, CLS dropped), ``cls`` (the CLS token only),
  ``mean`` (the mean of the patch tokens, one token) or ``cls+patches`` (transformers' ``full``);
* ``positions``: the language model's position ids of the image tokens, ``raster`` (as usual),
  ``equal`` (all the first image token's id: RoPE gives them no order) or ``permuted`` (shuffled among
  themselves, afresh per image and forward pass); the text's position ids never change;
* ``vit_positions``: False zeroes the ViT's own position embeddings (the raster order is kept).

At test time only, ``ablated_at_test(..., shuffle_order=True)`` also shuffles the image tokens themselves in the
sequence (per image and forward pass): with equal LM positions the language model's causal mask still tells
token i from token j by their order, and this takes that route away too.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import torch
from transformers import LlavaForConditionalGeneration

TOKEN_CHOICES = ("patches", "cls", "mean", "cls+patches")
POSITION_CHOICES = ("raster", "equal", "permuted")
CONFIG_KEY = "toy_image_tokens"
SHUFFLE_KEY = "toy_image_order_shuffled_at_test"  # set in the config only inside ``ablated_at_test``
EVAL_PERMUTATION_SEED = 0


@dataclass(frozen=True)
class ImageTokens:
    """Which image tokens the language model reads, and their positions (see the module docstring)."""

    tokens: str = "patches"
    positions: str = "raster"
    vit_positions: bool = True

    def __post_init__(self) -> None:
        if self.tokens not in TOKEN_CHOICES:
            raise ValueError(f"unknown image tokens {self.tokens!r}; use one of {TOKEN_CHOICES}")
        if self.positions not in POSITION_CHOICES:
            raise ValueError(f"unknown image positions {self.positions!r}; use one of {POSITION_CHOICES}")

    @property
    def is_default(self) -> bool:
        """LLaVA-1.5 as it is: every patch token, raster positions, the ViT's own position embeddings."""
        return self == ImageTokens()

    @property
    def strategy(self) -> str:
        """transformers' ``vision_feature_select_strategy`` whose features the projector receives."""
        return "default" if self.tokens == "patches" else "full"

    def n_tokens(self, n_patches: int) -> int:
        """How many image tokens the language model reads."""
        return {"patches": n_patches, "cls": 1, "mean": 1, "cls+patches": n_patches + 1}[self.tokens]

    def feature_key(self) -> dict:
        """What this variant changes in the frozen encoder's features (empty for LLaVA-1.5's own)."""
        key = {} if self.strategy == "default" else {"strategy": self.strategy}
        return key if self.vit_positions else {**key, "vit_positions": False}


def model_variant(model: torch.nn.Module) -> ImageTokens:
    """The variant a toy LLaVA (or its inner ``LlavaModel``) was built as."""
    return ImageTokens(**getattr(model.config, CONFIG_KEY, None) or {})


def select_tokens(features: torch.Tensor, tokens: str) -> torch.Tensor:
    """From ``N x (1 + P) x d`` CLS + patch features, the tokens ``cls`` / ``mean`` keep (others: as given)."""
    if tokens == "cls":
        return features[:, :1]
    if tokens == "mean":
        return features[:, 1:].mean(1, keepdim=True)
    return features


def projector_inputs(model: LlavaForConditionalGeneration, features: torch.Tensor) -> torch.Tensor:
    """The features the projector receives: the variant's tokens, their order shuffled per image while
    ``ablated_at_test(..., shuffle_order=True)`` holds."""
    features = select_tokens(features, model_variant(model).tokens)
    if not getattr(model.config, SHUFFLE_KEY, False):
        return features
    generator = model.model.image_position_generator
    order = torch.stack([torch.randperm(features.shape[1], generator=generator) for _ in range(len(features))])
    return features.gather(1, order.to(features.device).unsqueeze(-1).expand_as(features))


def image_position_ids(
    input_ids: torch.Tensor,
    image_token_id: int,
    mode: str,
    position_ids: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Position ids (``position_ids``, or 0..L-1) with the image tokens' ids made equal or permuted per row."""
    batch, length = input_ids.shape
    base = position_ids if position_ids is not None else torch.arange(length, device=input_ids.device).expand(batch, -1)
    if mode == "raster":
        return base
    out = base.clone()
    for row in range(batch):
        where = (input_ids[row] == image_token_id).nonzero().squeeze(-1)
        if len(where) == 0:
            continue
        if mode == "equal":
            out[row, where] = base[row, where[0]]
        else:
            order = torch.randperm(len(where), generator=generator).to(where.device)
            out[row, where] = base[row, where[order]]
    return out


def variant_position_ids(
    model: LlavaForConditionalGeneration, input_ids: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor | None:
    """Position ids of right-padded ``input_ids`` for the model's variant (None: the usual ones)."""
    mode = model_variant(model).positions
    if mode == "raster":
        return None
    return image_position_ids(input_ids, model.config.image_token_index, mode, generator=generator)


def _position_hook(module: torch.nn.Module, args: tuple, kwargs: dict):
    """``LlavaModel`` pre-hook: rewrite the image tokens' position ids per the variant."""
    mode, ids = model_variant(module).positions, kwargs.get("input_ids")
    if mode == "raster" or ids is None:
        return None
    kwargs["position_ids"] = image_position_ids(
        ids, module.config.image_token_index, mode, kwargs.get("position_ids"), module.image_position_generator
    )
    return args, kwargs


def install_hooks(model: LlavaForConditionalGeneration) -> LlavaForConditionalGeneration:
    """Attach the hooks that carry out the model's variant (once; they read the config at every call)."""
    inner = model.model
    if getattr(inner, "image_position_generator", None) is not None:
        return model
    inner.image_position_generator = torch.Generator().manual_seed(EVAL_PERMUTATION_SEED)
    inner.register_forward_pre_hook(_position_hook, with_kwargs=True)
    inner.multi_modal_projector.register_forward_pre_hook(
        lambda _module, args: (projector_inputs(model, args[0]), *args[1:])
    )
    return model


def _vit_position_weight(model: LlavaForConditionalGeneration) -> torch.Tensor:
    """The vision tower's position-embedding table."""
    return model.model.vision_tower.vision_model.embeddings.position_embedding.weight


def apply_variant(model: LlavaForConditionalGeneration, variant: ImageTokens) -> LlavaForConditionalGeneration:
    """Make a freshly built toy LLaVA ``variant`` (config, vision tower, hooks) before it is trained."""
    n_patches = (model.config.vision_config.image_size // model.config.vision_config.patch_size) ** 2
    setattr(model.config, CONFIG_KEY, asdict(variant))
    model.config.vision_feature_select_strategy = variant.strategy
    model.config.image_seq_length = variant.n_tokens(n_patches)
    if not variant.vit_positions:
        with torch.no_grad():
            _vit_position_weight(model).zero_()
    return install_hooks(model)


@contextmanager
def ablated_at_test(
    model: LlavaForConditionalGeneration, positions: str | None = None, vit_positions: bool = True,
    shuffle_order: bool = False,
):  # fmt: skip
    """Within the block, score ``model`` with its image positions changed, the ViT's position embeddings zeroed
    and/or its image tokens' order in the sequence shuffled, at test time only (weights and config are restored
    afterwards; the changes live in the config and weights, so the score cache keys them)."""
    install_hooks(model)
    before = model_variant(model)
    changed = replace(before, positions=positions or before.positions)
    saved = _vit_position_weight(model).detach().clone()
    setattr(model.config, CONFIG_KEY, asdict(changed))
    try:
        if not vit_positions:
            with torch.no_grad():
                _vit_position_weight(model).zero_()
        if shuffle_order:
            setattr(model.config, SHUFFLE_KEY, True)
        yield model
    finally:
        setattr(model.config, CONFIG_KEY, asdict(before))
        if hasattr(model.config, SHUFFLE_KEY):
            delattr(model.config, SHUFFLE_KEY)
        with torch.no_grad():
            _vit_position_weight(model).copy_(saved)
