"""Shared fixtures: every test gets its own cache and toy-data folders."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor
from upstream_fixtures import write_mmvp_statements, write_mmvp_vlm, write_whatsup

from analysis_lib.data.tokenization import word_tokenizer
from analysis_lib.data.toyworld import WorldConfig
from analysis_lib.full import full_scale
from analysis_lib.models.tiny import TINY_LLAVA_336, ClipSize, LlavaSize, random_llava, toy_clip, toy_llava_from_clip


@pytest.fixture(autouse=True)
def isolated_storage(tmp_path, monkeypatch):
    """Point the artifact cache and the toy data at a temporary folder."""
    monkeypatch.setenv("ANALYSIS_LIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ANALYSIS_LIB_DATA", str(tmp_path / "toy"))
    return tmp_path


@pytest.fixture(scope="session")
def world() -> WorldConfig:
    """The default toy world."""
    return WorldConfig()


@pytest.fixture(scope="session")
def tiny_models(world):
    """A randomly initialised toy CLIP and the LLaVA built on its vision tower."""
    clip, clip_processor = toy_clip(world, ClipSize(width=32, vision_layers=2, text_layers=1, heads=2), seed=0)
    llava, llava_processor = toy_llava_from_clip(clip, clip_processor, LlavaSize(width=32, layers=2, heads=2), seed=0)
    return clip.eval(), clip_processor, llava.eval(), llava_processor


@pytest.fixture
def full_setup(tmp_path):
    """Tiny CLIP and LLaVA saved with save_pretrained, and a What'sUp checkout and MMVP-VLM folder."""
    tokenizer = word_tokenizer(append_eos=True)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(image_size=32, patch_size=16, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2),
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPModel(config).save_pretrained(tmp_path / "clip")
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(tmp_path / "clip")
    llava, processor = random_llava(TINY_LLAVA_336, seed=0)
    llava.save_pretrained(tmp_path / "llava")
    processor.save_pretrained(tmp_path / "llava")
    write_whatsup(tmp_path / "whatsup")
    write_mmvp_vlm(tmp_path / "mmvp")
    write_mmvp_statements(tmp_path / "mmvp_mllm")
    return full_scale.FullScaleConfig(
        clip_model=str(tmp_path / "clip"),
        llava_model=str(tmp_path / "llava"),
        whatsup_root=str(tmp_path / "whatsup"),
        mmvp_vlm_root=str(tmp_path / "mmvp"),
        mmvp_root=str(tmp_path / "mmvp_mllm"),
        device="cpu",
        batch_size=8,
        strict_sizes=False,
    )
