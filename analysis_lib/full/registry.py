"""Model registry for the scale="full" path: a model name, hub id, ``open_clip:`` spec or local folder -> a scorer.

Offline first. Weights are looked for in a folder (``path=``, else ``$ANALYSIS_LIB_MODELS/<name>``), then in the
Hugging Face cache; nothing is downloaded unless ``allow_download=True`` (or ``ANALYSIS_LIB_ALLOW_DOWNLOAD=1``).
Missing weights raise one ``ModelNotFoundError`` that names every place looked and the command that fetches them.
Loading is safe only: safetensors or ``torch.load(weights_only=True)``, never ``trust_remote_code``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pandas as pd
import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError
from transformers import (
    CLIPModel,
    CLIPProcessor,
    Dinov2Model,
    Dinov2WithRegistersModel,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from analysis_lib.models.image_tokens import ImageTokens, apply_variant
from analysis_lib.models.prompts import (
    LLAMA3_FORMAT,
    LLAMA3_PAPER_FORMAT,
    PHI3_FORMAT,
    PHI3_PAPER_FORMAT,
    PromptFormat,
)
from analysis_lib.scoring.scorers import ClipScorer, CosineScorer, OpenClipScorer, VQAScorer
from analysis_lib.training.embedding_conversion import EmbeddingScorer, merged_model

MODELS_ENV = "ANALYSIS_LIB_MODELS"
DOWNLOAD_ENV = "ANALYSIS_LIB_ALLOW_DOWNLOAD"
OPEN_CLIP = "open_clip:"
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
TOKENIZER_FILES = ("*.json", "*.model", "*.txt")
NON_TORCH_WEIGHTS = ("*.h5", "*.msgpack", "*.onnx", "*.ot", "*.tflite")
VISION_TOWER = "openai/clip-vit-large-patch14-336"

VLM2VEC_BASE = "llava-1.5-7b"  # the registry entry whose weights a VLM2Vec adapter is merged into

Scorer = CosineScorer | VQAScorer
DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
}
T = TypeVar("T")

FORMATS: dict[str, PromptFormat] = {
    "llava-1.5": PromptFormat(),
    "phi-3 (xtuner)": PHI3_FORMAT,
    "llama-3 (xtuner)": LLAMA3_FORMAT,
    "phi-3 (paper)": PHI3_PAPER_FORMAT,
    "llama-3 (paper)": LLAMA3_PAPER_FORMAT,
}
"""VQAScore prompt formats by the name the registry table shows."""


class RegistryError(Exception):
    """A model that cannot be resolved or loaded; the message says why and what to do."""


class UnknownModelError(RegistryError):
    """A model name that is neither registered, an ``open_clip:`` spec nor an existing path."""


class UnsupportedModelError(RegistryError):
    """Weights in a format this library does not load (the message says how to convert them)."""


@dataclass(frozen=True)
class Fetch:
    """One download into the HF cache: a repo's files matching ``include`` (all if empty), minus ``exclude``."""

    repo_id: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def command(self) -> str:
        """The shell command that performs it."""
        flags = (("--include", self.include), ("--exclude", self.exclude))
        return f"hf download {self.repo_id}" + "".join(
            f" {flag}" + "".join(f' "{p}"' for p in patterns) for flag, patterns in flags if patterns
        )

    def run(self) -> None:
        """Download (the only network access of this module)."""
        snapshot_download(
            self.repo_id,
            allow_patterns=list(self.include) or None,
            ignore_patterns=list(self.exclude) or None,
            cache_dir=hf_cache_dir(),
        )


class ModelNotFoundError(RegistryError, FileNotFoundError):
    """No local weights: names the model, every place looked and the command that fetches it."""

    def __init__(self, model: str, places: list[str], fetches: list[Fetch]) -> None:
        self.model, self.places, self.fetches = model, places, fetches
        lines = [f"No weights found for {model!r}. Looked in:", *(f"  - {p}" for p in places)]
        if fetches:
            lines += ["Fetch them with:", *(f"  {f.command()}" for f in fetches)]
            lines.append(
                f"or let load_scorer download them: allow_download=True (or {DOWNLOAD_ENV}=1), "
                "with HF_HUB_OFFLINE unset."
            )
        else:
            lines.append("Pass path= to a folder or checkpoint file holding the weights.")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class ModelEntry:
    """A registered model; ``status``: ok (loads as is), convert (a converted local copy loads) or unsupported."""

    name: str
    family: str
    source: str
    prompt: str = ""
    status: str = "ok"
    notes: str = ""
    howto: str = field(default="", repr=False)
    image_tokens: str = "patches"  # a LLaVA's image tokens (``image_tokens.ImageTokens.tokens``): "cls" for CLS only

    @property
    def label(self) -> str:
        """The name, with the hub id or spec when they differ."""
        return self.name if self.name == self.source else f"{self.name} ({self.source})"

    @property
    def loader(self) -> str:
        """What builds the scorer."""
        if self.status == "unsupported":
            return "none (see notes)"
        if self.source.startswith(OPEN_CLIP):
            return "open_clip -> OpenClipScorer"
        if self.family == "dinov2":
            return "Dinov2Model -> features (load_vision_encoder)"
        if self.family == "vlm2vec":
            return "peft adapter merged into llava-1.5-7b -> EmbeddingScorer"
        loader = "CLIPModel -> ClipScorer" if self.family == "clip" else "LlavaForConditionalGeneration -> VQAScorer"
        return f"convert, then {loader}" if self.status == "convert" else loader


def convert_howto(name: str, source: str, text_model: str, caveat: str = "") -> str:
    """How to turn an original-format LLaVA checkpoint into one that ``LlavaForConditionalGeneration`` loads."""
    return (
        f"{source} is in the original LLaVA repository format, which transformers cannot load. Convert it with "
        "transformers' src/transformers/models/llava/convert_llava_weights_to_hf.py (GitHub repo, not in the pip "
        f"wheel):\n  python convert_llava_weights_to_hf.py --text_model_id {text_model} --vision_model_id "
        f"{VISION_TOWER} --old_state_dict_id {source} --output_hub_path <org/name>\n"
        "(if the checkpoint lacks the vision tower, first save a full state dict with the LLaVA code, as the "
        f"script's epilog shows).{caveat} Then load_scorer({name!r}, path=<converted folder>) or put the folder "
        f"at ${MODELS_ENV}/{name}."
    )


LLAVA_PP_CAVEAT = (
    " The script hard-codes LLaVA-1.5's Vicuna token ids (image 32000, pad 32001) and Llama key names, so it needs "
    "adapting for this LLaVA++ checkpoint."
)

DINOV2_HOWTO = (
    "DINOv2 is a vision encoder without a text side: it gives features, not image-text scores. Load it with "
    "registry.load_vision_encoder(name or folder) and read its layers with multilevel_features.multilevel_features."
)
VISION_ENCODER_TYPES = {"dinov2": Dinov2Model, "dinov2_with_registers": Dinov2WithRegistersModel}

REGISTRY: tuple[ModelEntry, ...] = (
    ModelEntry(
        "openclip-l14-336",
        "clip",
        "open_clip:ViT-L-14-336/openai",
        notes="The paper's CLIP evaluation: OpenAI ViT-L/14-336 through open_clip (QuickGELU, as the tag says).",
    ),
    ModelEntry(
        "clip-l14-336",
        "clip",
        VISION_TOWER,
        notes="The same OpenAI weights through transformers; LLaVA-1.5's vision tower.",
    ),
    ModelEntry(
        "siglip-so400m-384",
        "clip",
        "open_clip:ViT-SO400M-14-SigLIP-384/webli",
        notes="SigLIP, a family the paper's training-data ablation fine-tunes (its exact checkpoint is not stated).",
    ),
    ModelEntry(
        "eva02-l14-336",
        "clip",
        "open_clip:EVA02-L-14-336/merged2b_s6b_b61k",
        notes="EVA-CLIP, a family the paper's training-data ablation fine-tunes (its exact checkpoint is not stated).",
    ),
    ModelEntry(
        "llava-1.5-7b",
        "llava",
        "llava-hf/llava-1.5-7b-hf",
        "llava-1.5",
        notes="The paper's LLaVA (t2v_metrics scored liuhaotian/llava-v1.5-7b; this is its transformers conversion).",
    ),
    ModelEntry(
        "llava-1.5-13b",
        "llava",
        "llava-hf/llava-1.5-13b-hf",
        "llava-1.5",
        notes="t2v_metrics' recommended VQAScore model, transformers conversion.",
    ),
    ModelEntry(
        "llava-phi-3-mini",
        "llava",
        "xtuner/llava-phi-3-mini-hf",
        "phi-3 (xtuner)",
        notes="Phi-3-V in the llava-hf format; xtuner's training run, not the paper's (LLaVA++) checkpoint.",
    ),
    ModelEntry(
        "llava-llama-3-8b",
        "llava",
        "xtuner/llava-llama-3-8b-v1_1-transformers",
        "llama-3 (xtuner)",
        notes="LLaMA-3-V in the llava-hf format; xtuner's training run, not the paper's (LLaVA++) checkpoint.",
    ),
    ModelEntry(
        "llava-1.5-7b-lora-patch",
        "llava",
        "lst627/llava-v1.5-7b-lora-merged",
        "llava-1.5",
        "convert",
        "Paper: LLaVA-1.5-7B retrained (LoRA, merged) on patch tokens, the token-usage baseline; original format.",
        convert_howto("llava-1.5-7b-lora-patch", "lst627/llava-v1.5-7b-lora-merged", "lmsys/vicuna-7b-v1.5"),
    ),
    ModelEntry(
        "llava-1.5-7b-lora-cls",
        "llava",
        "lst627/llava-v1.5-7b-lora-cls-merged",
        "llava-1.5",
        "convert",
        "Paper: LLaVA-1.5-7B retrained on the CLS token only (mm_vision_select_feature='cls': one image token, the "
        "CLS token of layer -2); original format. transformers selects only patch tokens or CLS + patches, so the "
        "loader feeds the projector the CLS token alone (models.image_tokens, as the toy's CLS-only LLaVA).",
        convert_howto(
            "llava-1.5-7b-lora-cls",
            "lst627/llava-v1.5-7b-lora-cls-merged",
            "lmsys/vicuna-7b-v1.5",
            " The converted config keeps transformers' patch-token selection; load_scorer applies the CLS-only one.",
        ),
        image_tokens="cls",
    ),
    ModelEntry(
        "llava-1.5-7b-vlm2vec",
        "vlm2vec",
        "lst627/LLaVA-1.5-7B-VLM2Vec-LoRA",
        notes="Paper: LLaVA-1.5-7B made an embedding model by VLM2Vec (DoRA adapter, merged into 'llava-1.5-7b' "
        "with peft); scored by cosine between the image + question query and the caption.",
    ),
    ModelEntry(
        "llava-phi-3-mini-paper",
        "llava",
        "MBZUAI/LLaVA-Phi-3-mini-4k-instruct",
        "phi-3 (paper)",
        "convert",
        "Paper's Phi-3-V: LLaVA++ format (model_type llava_phi); 'llava-phi-3-mini' loads directly but differs.",
        convert_howto(
            "llava-phi-3-mini-paper",
            "MBZUAI/LLaVA-Phi-3-mini-4k-instruct",
            "microsoft/Phi-3-mini-4k-instruct",
            LLAVA_PP_CAVEAT,
        ),
    ),
    ModelEntry(
        "llava-llama-3-8b-paper",
        "llava",
        "MBZUAI/LLaVA-Meta-Llama-3-8B-Instruct",
        "llama-3 (paper)",
        "convert",
        "Paper's LLaMA-3-V: LLaVA++ format; 'llava-llama-3-8b' loads directly but differs.",
        convert_howto(
            "llava-llama-3-8b-paper",
            "MBZUAI/LLaVA-Meta-Llama-3-8B-Instruct",
            "meta-llama/Meta-Llama-3-8B-Instruct",
            LLAVA_PP_CAVEAT,
        ),
    ),
    ModelEntry(
        "dinov2-small",
        "dinov2",
        "facebook/dinov2-small",
        notes="DINOv2 ViT-S/14 (Oquab et al. 2023), self-supervised, no text side.",
        howto=DINOV2_HOWTO,
    ),
    ModelEntry(
        "dinov2-base",
        "dinov2",
        "facebook/dinov2-base",
        notes="DINOv2 ViT-B/14, self-supervised, no text side.",
        howto=DINOV2_HOWTO,
    ),
    ModelEntry(
        "dinov2-large",
        "dinov2",
        "facebook/dinov2-large",
        notes="DINOv2 ViT-L/14: COMM's self-supervised encoder (arXiv 2310.08825).",
        howto=DINOV2_HOWTO,
    ),
    ModelEntry(
        "dinov2-giant",
        "dinov2",
        "facebook/dinov2-giant",
        notes="DINOv2 ViT-g/14, self-supervised, no text side.",
        howto=DINOV2_HOWTO,
    ),
    ModelEntry(
        "dinov2-large-registers",
        "dinov2",
        "facebook/dinov2-with-registers-large",
        notes="DINOv2 ViT-L/14 with 4 register tokens (Darcet et al. 2024).",
        howto=DINOV2_HOWTO,
    ),
)
ENTRIES = {e.name: e for e in REGISTRY}


def registry_table() -> pd.DataFrame:
    """The registered models, one row each, for the book to print."""
    return pd.DataFrame(
        [
            {
                "name": e.name,
                "family": e.family,
                "hub id": e.source,
                "loader": e.loader,
                "prompt format": e.prompt,
                "notes": e.notes,
            }
            for e in REGISTRY
        ]
    )


def find_entry(model: str) -> ModelEntry:
    """The entry for a registered name or hub id, or an ad-hoc entry for an ``open_clip:`` spec."""
    for entry in REGISTRY:
        if model in (entry.name, entry.source):
            return entry
    if model.startswith(OPEN_CLIP):
        return ModelEntry(model, "clip", model)
    raise UnknownModelError(
        f"Unknown model {model!r}: not an existing path, an 'open_clip:ARCH/TAG' or 'open_clip:hf-hub:ORG/REPO' "
        f"spec, or a registered name. Registered: {', '.join(ENTRIES)} (or their hub ids)."
    )


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache as the environment says now (``HF_HUB_CACHE``, else ``$HF_HOME/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path(hub_constants.HF_HUB_CACHE)


def cached_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot folder of a hub repo, found without any network access."""
    try:
        return Path(snapshot_download(repo_id, local_files_only=True, cache_dir=hf_cache_dir()))
    except LocalEntryNotFoundError:
        return None


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as given; ``ValueError`` saying what to use for a
    name torch does not know or a GPU this machine does not have."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        where = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'auto'") from None
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if where.type == "cuda" and (where.index or 0) >= gpus:
        raise ValueError(f"device {device!r}: this machine has {gpus} CUDA GPU(s); use 'cpu' or 'auto'")
    return where


def resolve_dtype(dtype: torch.dtype | str, device: torch.device) -> torch.dtype:
    """``auto`` -> bf16 on CUDA, fp32 on CPU; a name (``bf16``, ``fp16``, ``fp32``, ``bfloat16``, ...) or a dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use 'auto', {', '.join(map(repr, DTYPES))} or a torch.dtype")
    return DTYPES[dtype]


def download_allowed(allow_download: bool | None) -> bool:
    """The argument, or ``$ANALYSIS_LIB_ALLOW_DOWNLOAD`` when it is None."""
    return os.environ.get(DOWNLOAD_ENV, "0") == "1" if allow_download is None else allow_download


def with_download(locate: Callable[[], T], allow: bool) -> T:
    """``locate()``; when it finds nothing and downloads are allowed, fetch what it asks for and locate again."""
    try:
        return locate()
    except ModelNotFoundError as missing:
        if not (allow and missing.fetches):
            raise
        for fetch in missing.fetches:
            fetch.run()
        return locate()


def folder_kind(path: Path) -> str:
    """What a local path holds: clip, llava, open_clip, original-llava, adapter, checkpoint or unknown."""
    if path.is_file():
        return "checkpoint" if is_checkpoint(path) else "unknown"
    if (path / OPEN_CLIP_CONFIG).is_file():
        return "open_clip"
    if (path / "adapter_config.json").is_file():
        return "adapter"
    if not (path / "config.json").is_file():
        return "unknown"
    config = json.loads((path / "config.json").read_text())
    kind = config.get("model_type", "")
    if kind.startswith("llava_") or "mm_vision_tower" in config:
        return "original-llava"
    if kind in VISION_ENCODER_TYPES:
        return "dinov2"
    return kind if kind in ("clip", "llava") else "unknown"


def is_checkpoint(path: Path) -> bool:
    """Whether a path is a weight file."""
    return path.is_file() and path.suffix in CHECKPOINT_SUFFIXES


def has_weights(path: Path) -> bool:
    """Whether a path is a weight file or a folder holding one."""
    return is_checkpoint(path) or (path.is_dir() and any(is_checkpoint(p) for p in path.iterdir()))


def unsupported_folder(path: Path, kind: str) -> UnsupportedModelError:
    """Why a local folder cannot be loaded, and what to do instead."""
    reasons = {
        "original-llava": convert_howto(path.name, str(path), "<the LLM it was trained from>"),
        "adapter": f"{path} is a PEFT adapter; merge it into its base model and save_pretrained the result.",
        "checkpoint": f"{path} is a bare checkpoint: name its architecture, load_scorer('open_clip:ARCH', path=...).",
        "dinov2": f"{path} holds a DINOv2 model. {DINOV2_HOWTO}",
    }
    default = f"{path} holds neither a CLIPModel / LLaVA config.json nor an {OPEN_CLIP_CONFIG}."
    return UnsupportedModelError(reasons.get(kind, default))


@dataclass(frozen=True)
class LoadOptions:
    """Where and how to load: device, dtype and the scorer's batch size (None: the scorer's default)."""

    device: torch.device
    dtype: torch.dtype
    batch_size: int | None = None

    @property
    def scorer_kwargs(self) -> dict:
        """Keyword arguments for the scorer's constructor."""
        return {} if self.batch_size is None else {"batch_size": self.batch_size}


def load_clip(folder: Path, opts: LoadOptions) -> ClipScorer:
    """A ``ClipScorer`` from a saved ``CLIPModel`` + ``CLIPProcessor`` folder."""
    model = CLIPModel.from_pretrained(folder, dtype=opts.dtype).to(opts.device)
    return ClipScorer(model, CLIPProcessor.from_pretrained(folder), **opts.scorer_kwargs)


def load_llava(folder: Path, prompt_format: PromptFormat, opts: LoadOptions, tokens: str = "patches") -> VQAScorer:
    """A ``VQAScorer`` from a saved llava-hf folder, its projector fed ``tokens`` (``ImageTokens.tokens``: "cls" for
    the CLS token alone); a tokenizer without pad token (Llama-3's) pads with EOS."""
    model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=opts.dtype).to(opts.device)
    if tokens != "patches":
        apply_variant(model, ImageTokens(tokens=tokens))
    processor = LlavaProcessor.from_pretrained(folder)
    if processor.tokenizer.pad_token is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return VQAScorer(model, processor, prompt_format, **opts.scorer_kwargs)


def load_vlm2vec(entry: ModelEntry, path: str | Path | None, opts: LoadOptions, allow: bool) -> EmbeddingScorer:
    """An ``EmbeddingScorer`` (the paper's query template; its 2-way What'sUp questions, ``paper_question``: above/below
    and non-What'sUp texts get this library's) on ``VLM2VEC_BASE`` with ``entry``'s peft adapter
    merged in; the adapter and the base are each looked for offline first, like any registered model."""
    from peft import PeftModel  # only for adapters

    adapter = with_download(lambda: locate_transformers(entry, path), allow)
    if folder_kind(adapter) != "adapter":
        raise UnsupportedModelError(f"{adapter} holds no peft adapter (adapter_config.json) for {entry.label}.")
    base = with_download(lambda: locate_transformers(ENTRIES[VLM2VEC_BASE], None), allow)
    model = LlavaForConditionalGeneration.from_pretrained(base, dtype=opts.dtype)
    merged = merged_model(PeftModel.from_pretrained(model, adapter)).to(opts.device)
    return EmbeddingScorer(merged, LlavaProcessor.from_pretrained(base), **opts.scorer_kwargs)


@dataclass(frozen=True)
class OpenClipWeights:
    """Arguments of ``create_model_from_pretrained``: architecture or ``local-dir:``, checkpoint, tag config."""

    model_name: str
    checkpoint: str | None = None
    tag_cfg: dict = field(default_factory=dict)
    tokenizer_kwargs: dict = field(default_factory=dict)


def load_open_clip(weights: OpenClipWeights, opts: LoadOptions) -> OpenClipScorer:
    """An ``OpenClipScorer`` with open_clip's eval transform and tokenizer (weights_only loading)."""
    import open_clip  # slow import, only for open_clip models

    cfg = weights.tag_cfg
    model, preprocess = open_clip.create_model_from_pretrained(
        weights.model_name,
        pretrained=weights.checkpoint,
        force_quick_gelu=cfg.get("quick_gelu", False),
        image_mean=cfg.get("mean"),
        image_std=cfg.get("std"),
        image_interpolation=cfg.get("interpolation"),
        image_resize_mode=cfg.get("resize_mode"),
        weights_only=True,
    )
    tokenizer = open_clip.get_tokenizer(weights.model_name, **weights.tokenizer_kwargs)
    return OpenClipScorer(model.to(opts.device, opts.dtype), preprocess, tokenizer, **opts.scorer_kwargs)


def local_candidates(entry: ModelEntry, path: str | Path | None) -> tuple[list[Path], list[str]]:
    """Local places to look (``path``, else ``$ANALYSIS_LIB_MODELS/<name>``) and those that could not be looked in."""
    if path is not None:
        return [Path(path).expanduser()], []
    if entry.name not in ENTRIES:
        return [], []
    root = os.environ.get(MODELS_ENV)
    if not root:
        return [], [f"${MODELS_ENV}/{entry.name} ({MODELS_ENV} is not set)"]
    return [Path(root).expanduser() / entry.name], []


def describe(path: Path) -> str:
    """A local place looked in, and what was wrong with it."""
    return f"{path}: " + ("no weight files" if path.exists() else "does not exist")


def cache_place(repo_id: str) -> str:
    """The Hugging Face cache as a place looked in, and what was missing there."""
    status = "is cached without the weight files" if cached_snapshot(repo_id) else "is not cached"
    return f"Hugging Face cache {hf_cache_dir()}: {repo_id} {status}"


def locate_transformers(entry: ModelEntry, path: str | Path | None) -> Path:
    """A local folder with weights, else the cached hub snapshot (its format is checked by the caller)."""
    candidates, places = local_candidates(entry, path)
    for folder in candidates:
        if folder.exists() and has_weights(folder):
            return folder
        places.append(describe(folder))
    snapshot = cached_snapshot(entry.source)
    if snapshot is not None and has_weights(snapshot):
        return snapshot
    places.append(cache_place(entry.source))
    if entry.status == "convert":
        raise UnsupportedModelError(f"No converted copy of {entry.name!r} in: {'; '.join(places)}.\n{entry.howto}")
    raise ModelNotFoundError(entry.label, places, [Fetch(entry.source, exclude=NON_TORCH_WEIGHTS)])


def parse_open_clip(source: str) -> tuple[str, str]:
    """``(model name, pretrained tag)`` of ``open_clip:ARCH/TAG``, ``open_clip:ARCH`` or ``open_clip:hf-hub:REPO``."""
    body = source.removeprefix(OPEN_CLIP)
    if body.startswith("hf-hub:"):
        return body, ""
    arch, _, tag = body.partition("/")
    return arch, tag


def tag_config(arch: str, tag: str) -> dict:
    """open_clip's config of a pretrained tag (weights repo, preprocessing, QuickGELU); {} without a tag."""
    if not tag:
        return {}
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch) or "none: unknown architecture"
        raise UnknownModelError(f"open_clip has no pretrained tag {tag!r} for {arch!r} (its tags: {tags}).")
    return cfg


def hf_tokenizer(arch: str) -> str:
    """The Hugging Face tokenizer repo a built-in open_clip architecture uses ('' for open_clip's own BPE)."""
    import open_clip

    return (open_clip.get_model_config(arch) or {}).get("text_cfg", {}).get("hf_tokenizer_name", "")


def local_open_clip(candidate: Path, arch: str) -> tuple[str, str | None] | None:
    """``(model name, checkpoint)`` of a local open_clip folder (with its config) or checkpoint file."""
    if (candidate / OPEN_CLIP_CONFIG).is_file() and has_weights(candidate):
        return f"local-dir:{candidate}", None
    if arch.startswith("hf-hub:") or not has_weights(candidate):
        return None
    files = [candidate] if candidate.is_file() else sorted(p for p in candidate.iterdir() if is_checkpoint(p))
    return arch, str(files[0])


def cached_open_clip(arch: str, cfg: dict) -> tuple[tuple[str, str | None] | None, Fetch]:
    """``(model name, checkpoint)`` of an ``hf-hub:`` repo or tag in the HF cache (None if missing); its download."""
    if arch.startswith("hf-hub:"):
        repo = arch.removeprefix("hf-hub:")
        snapshot = cached_snapshot(repo)
        found = snapshot is not None and (snapshot / OPEN_CLIP_CONFIG).is_file() and has_weights(snapshot)
        return ((f"local-dir:{snapshot}", None) if found else None), Fetch(repo, ("open_clip_*", *TOKENIZER_FILES))
    repo, filename = os.path.split(cfg["hf_hub"])
    snapshot = cached_snapshot(repo)
    files = [snapshot / n for n in ((filename,) if filename else OPEN_CLIP_WEIGHTS)] if snapshot else []
    checkpoint = next((str(f) for f in files if f.is_file()), None)
    return ((arch, checkpoint) if checkpoint else None), Fetch(repo, (filename or "open_clip_*",))


def locate_open_clip(entry: ModelEntry, path: str | Path | None) -> OpenClipWeights:
    """open_clip weights for ``entry``: a local folder or checkpoint, else the HF cache (tokenizer included)."""
    arch, tag = parse_open_clip(entry.source)
    cfg = tag_config(arch, tag)
    candidates, places = local_candidates(entry, path)
    fetches: list[Fetch] = []
    found = next((f for c in candidates if (f := local_open_clip(c, arch))), None)
    if found is None:
        places += [describe(c) for c in candidates]
        if tag or arch.startswith("hf-hub:"):
            found, fetch = cached_open_clip(arch, cfg)
            if found is None:
                places.append(cache_place(fetch.repo_id))
                fetches.append(fetch)
    in_folder = arch.startswith("hf-hub:") or (found is not None and found[0].startswith("local-dir:"))
    tokenizer = "" if in_folder else hf_tokenizer(arch)
    if tokenizer and cached_snapshot(tokenizer) is None:
        places.append(cache_place(tokenizer) + " (its tokenizer)")
        fetches.append(Fetch(tokenizer, TOKENIZER_FILES))
    if found is None or fetches:
        raise ModelNotFoundError(entry.label, places or ["(no pretrained tag: nowhere to look but path=)"], fetches)
    options = {"cache_dir": str(hf_cache_dir()), "local_files_only": True} if tokenizer else {}
    return OpenClipWeights(found[0], found[1], cfg, options)


def load_entry(
    entry: ModelEntry, path: str | Path | None, opts: LoadOptions, allow: bool, fmt: PromptFormat | None
) -> Scorer:
    """The scorer of a registered (or ad-hoc ``open_clip:``) entry."""
    if entry.status == "unsupported" or entry.family == "dinov2":
        raise UnsupportedModelError(entry.howto)
    if entry.source.startswith(OPEN_CLIP):
        return load_open_clip(with_download(lambda: locate_open_clip(entry, path), allow), opts)
    if entry.family == "vlm2vec":
        return load_vlm2vec(entry, path, opts, allow)
    folder = with_download(lambda: locate_transformers(entry, path), allow)
    kind = folder_kind(folder)
    if kind != entry.family:
        raise UnsupportedModelError(entry.howto) if entry.howto else unsupported_folder(folder, kind)
    if kind == "clip":
        return load_clip(folder, opts)
    return load_llava(folder, fmt or FORMATS[entry.prompt], opts, entry.image_tokens)


def load_path(path: Path, opts: LoadOptions, fmt: PromptFormat | None) -> Scorer:
    """The scorer of a local folder, by what it holds (a LLaVA folder's saved prompt format, else LLaVA-1.5's)."""
    kind = folder_kind(path)
    if kind == "clip":
        return load_clip(path, opts)
    if kind == "llava":
        return load_llava(path, fmt or PromptFormat.load(path), opts)
    if kind == "open_clip":
        return load_open_clip(OpenClipWeights(f"local-dir:{path}"), opts)
    raise unsupported_folder(path, kind)


def locate(model: str, path: str | Path | None = None) -> str:
    """Where ``model``'s weights would load from, without loading them (raises as ``load_scorer`` would)."""
    local = Path(model).expanduser()
    if path is None and local.exists():
        return str(local)
    entry = find_entry(model)
    if entry.status == "unsupported":
        raise UnsupportedModelError(entry.howto)
    if entry.source.startswith(OPEN_CLIP):
        weights = locate_open_clip(entry, path)
        return weights.checkpoint or weights.model_name.removeprefix("local-dir:")
    return str(locate_transformers(entry, path))


def load_scorer(
    model: str,
    path: str | Path | None = None,
    *,
    device: str = "auto",
    dtype: torch.dtype | str = "auto",
    batch_size: int | None = None,
    allow_download: bool | None = None,
    prompt_format: PromptFormat | None = None,
) -> Scorer:
    """A ready scorer for ``model``: a registered name or hub id (see ``registry_table``), an
    ``open_clip:ARCH/TAG`` / ``open_clip:hf-hub:ORG/REPO`` / ``open_clip:ARCH`` spec, or a local folder.

    ``path``: a folder (or open_clip checkpoint file) tried instead of ``$ANALYSIS_LIB_MODELS/<name>``, before the HF
    cache. ``device``: ``cpu``, ``cuda`` or ``auto``; ``dtype``: ``auto`` (bf16 on CUDA, fp32 on CPU),
    a name such as ``bf16`` / ``fp32``, or a ``torch.dtype``.
    ``prompt_format`` overrides a LLaVA model's registered (or saved) format.
    """
    where = resolve_device(device)
    opts = LoadOptions(where, resolve_dtype(dtype, where), batch_size)
    local = Path(model).expanduser()
    if path is None and local.exists():
        return load_path(local, opts, prompt_format)
    return load_entry(find_entry(model), path, opts, download_allowed(allow_download), prompt_format)


def load_vision_encoder(
    model: str,
    path: str | Path | None = None,
    *,
    device: str = "auto",
    dtype: torch.dtype | str = "auto",
    allow_download: bool | None = None,
) -> Dinov2Model | Dinov2WithRegistersModel:
    """A DINOv2 encoder (eval mode) by registered name (e.g. ``dinov2-large``), hub id or local folder, offline
    first like ``load_scorer``: ``path``, else ``$ANALYSIS_LIB_MODELS/<name>``, else the HF cache."""
    local = Path(model).expanduser()
    if path is None and local.exists():
        folder = local
    else:
        entry = find_entry(model)
        if entry.family != "dinov2":
            raise UnsupportedModelError(
                f"{model!r} is a {entry.family} model, not a vision encoder; load it with load_scorer. "
                f"Vision encoders: {', '.join(e.name for e in REGISTRY if e.family == 'dinov2')}."
            )
        folder = with_download(lambda: locate_transformers(entry, path), download_allowed(allow_download))
    kind = folder_kind(folder)
    if kind != "dinov2":
        raise UnsupportedModelError(f"{folder} holds no DINOv2 config.json (model_type {kind!r}); {DINOV2_HOWTO}")
    where = resolve_device(device)
    model_type = json.loads((folder / "config.json").read_text())["model_type"]
    encoder = VISION_ENCODER_TYPES[model_type].from_pretrained(folder, dtype=resolve_dtype(dtype, where))
    return encoder.to(where).eval()
