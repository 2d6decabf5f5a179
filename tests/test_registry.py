import json
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from analysis_lib.data.toyworld import render_all, sample_scenes
from analysis_lib.full.registry import (
    FORMATS,
    REGISTRY,
    Fetch,
    ModelNotFoundError,
    UnknownModelError,
    UnsupportedModelError,
    load_scorer,
    load_vision_encoder,
    registry_table,
    resolve_dtype,
)
from analysis_lib.models.prompts import PHI3_FORMAT, PHI3_PAPER_FORMAT, ChatFormat, PromptFormat
from analysis_lib.models.tiny import TINY_LLAVA_336, random_llava
from analysis_lib.scoring.scorers import ClipScorer, OpenClipScorer, VQAScorer

TEXTS = ["a red circle left of a blue square", "a green cross", "a blue square above a red circle"]
TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """An empty HF cache and models folder, downloads off, and any network connection fails the test."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ANALYSIS_LIB_MODELS", str(tmp_path / "models"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("ANALYSIS_LIB_ALLOW_DOWNLOAD", raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _pairs(n_images: int) -> list[tuple[int, str]]:
    return [(i, t) for i in range(n_images) for t in TEXTS]


def _fake_hub_cache(root, repo_id: str):
    """The snapshot folder of ``repo_id`` in a Hugging Face cache laid out as huggingface_hub writes it."""
    repo = root / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit


def test_clip_folder_by_path_name_and_hub_id_scores_as_in_memory(tiny_models, world, tmp_path):
    clip, processor, _, _ = tiny_models
    images = list(render_all(sample_scenes(2, world, seed=0), world, seed=1))
    expected = ClipScorer(clip, processor).score_pairs(images, _pairs(2))
    folder = tmp_path / "models" / "clip-l14-336"
    clip.save_pretrained(folder)
    processor.save_pretrained(folder)
    for model in (str(folder), "clip-l14-336", "openai/clip-vit-large-patch14-336"):
        scorer = load_scorer(model, device="cpu", batch_size=1)
        assert isinstance(scorer, ClipScorer) and scorer.batch_size == 1
        assert np.allclose(scorer.score_pairs(images, _pairs(2)), expected, atol=1e-6), model


def test_llava_folder_by_path_and_from_hf_cache_scores_as_in_memory(tmp_path):
    model, processor = random_llava(TINY_LLAVA_336, seed=0)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (30, 40, 3), dtype=np.uint8) for _ in range(2)]
    expected = VQAScorer(model, processor, PromptFormat()).score_pairs(images, _pairs(2))
    processor.tokenizer.pad_token = None  # as Llama-3's: the loader pads with EOS, which changes no score
    folder = _fake_hub_cache(tmp_path / "hf", "llava-hf/llava-1.5-7b-hf")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    for name in (str(folder), "llava-1.5-7b"):
        scorer = load_scorer(name, device="cpu")
        assert isinstance(scorer, VQAScorer) and scorer.format == PromptFormat()
        assert scorer.processor.tokenizer.pad_token == scorer.processor.tokenizer.eos_token
        assert np.allclose(scorer.score_pairs(images, _pairs(2)), expected, atol=1e-6), name


@pytest.fixture
def tiny_open_clip(tmp_path):
    """A random tiny open_clip model registered as ``tiny-registry-clip``, its weights saved as safetensors."""
    import open_clip

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny-registry-clip.json").write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(tmp_path / "configs")
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-registry-clip").eval()
    folder = tmp_path / "open_clip_dir"
    folder.mkdir()
    save_file(model.state_dict(), folder / "open_clip_model.safetensors")
    config = {"model_cfg": TINY_OPEN_CLIP, "preprocess_cfg": model.visual.preprocess_cfg}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    return model, folder


def test_open_clip_checkpoint_and_folder_score_as_in_memory_cosine(tiny_open_clip, world):
    from open_clip import get_tokenizer
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    model, folder = tiny_open_clip
    images = list(render_all(sample_scenes(2, world, seed=0), world, seed=1))
    preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(Image.fromarray(im)) for im in images]))
        txt = model.encode_text(get_tokenizer("tiny-registry-clip")(TEXTS))
    expected = (F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T).flatten().numpy()
    checkpoint = folder / "open_clip_model.safetensors"
    for scorer in (load_scorer("open_clip:tiny-registry-clip", path=checkpoint, device="cpu"), load_scorer(folder)):
        assert isinstance(scorer, OpenClipScorer)
        assert np.allclose(scorer.score_pairs(images, _pairs(2)), expected, atol=1e-5)


def test_missing_weights_name_model_places_and_fetch_command(tmp_path):
    with pytest.raises(ModelNotFoundError) as error:
        load_scorer("llava-1.5-7b")
    message = str(error.value)
    for part in (
        "llava-1.5-7b (llava-hf/llava-1.5-7b-hf)",
        f"{tmp_path / 'models' / 'llava-1.5-7b'}: does not exist",
        f"Hugging Face cache {tmp_path / 'hf' / 'hub'}: llava-hf/llava-1.5-7b-hf is not cached",
        'hf download llava-hf/llava-1.5-7b-hf --exclude "*.h5"',
        "allow_download=True (or ANALYSIS_LIB_ALLOW_DOWNLOAD=1)",
    ):
        assert part in message, part


def test_missing_open_clip_tag_names_weights_and_tokenizer_downloads():
    with pytest.raises(ModelNotFoundError) as error:
        load_scorer("open_clip:ViT-L-14-336/openai")
    assert 'hf download timm/vit_large_patch14_clip_336.openai --include "open_clip_*"' in str(error.value)
    with pytest.raises(ModelNotFoundError) as error:
        load_scorer("siglip-so400m-384", allow_download=False)
    assert "hf download timm/ViT-SO400M-14-SigLIP-384" in str(error.value)
    assert "timm/ViT-B-16-SigLIP is not cached (its tokenizer)" in str(error.value)


def test_allowed_download_fetches_into_the_cache_then_loads(tiny_models, monkeypatch, tmp_path):
    clip, processor, _, _ = tiny_models
    fetched = []

    def fake_run(fetch: Fetch) -> None:
        fetched.append(fetch.repo_id)
        folder = _fake_hub_cache(tmp_path / "hf", fetch.repo_id)
        clip.save_pretrained(folder)
        processor.save_pretrained(folder)

    monkeypatch.setattr(Fetch, "run", fake_run)
    monkeypatch.setenv("ANALYSIS_LIB_ALLOW_DOWNLOAD", "1")
    assert isinstance(load_scorer("clip-l14-336", device="cpu"), ClipScorer)
    assert fetched == ["openai/clip-vit-large-patch14-336"]


def test_unknown_model_lists_registered_names():
    with pytest.raises(UnknownModelError) as error:
        load_scorer("llava-9000")
    assert all(entry.name in str(error.value) for entry in REGISTRY)


def test_paper_checkpoints_in_original_formats_say_how_to_convert(tmp_path):
    with pytest.raises(UnsupportedModelError, match="convert_llava_weights_to_hf.py"):
        load_scorer("llava-1.5-7b-lora-patch")
    original = _fake_hub_cache(tmp_path / "hf", "lst627/llava-v1.5-7b-lora-merged")
    original.mkdir(parents=True)
    (original / "config.json").write_text(json.dumps({"model_type": "llava_llama", "mm_vision_tower": "clip"}))
    (original / "model.safetensors").write_bytes(b"")
    for model in ("llava-1.5-7b-lora-patch", str(original)):
        with pytest.raises(UnsupportedModelError, match="--old_state_dict_id"):
            load_scorer(model)
    with pytest.raises(UnsupportedModelError, match="load_scorer applies the CLS-only one"):
        load_scorer("llava-1.5-7b-lora-cls")


def test_the_cls_only_paper_llava_feeds_its_projector_the_cls_token_of_layer_minus_2(tmp_path):
    model, processor = random_llava(TINY_LLAVA_336, seed=0)
    folder = tmp_path / "converted"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    scorer = load_scorer("llava-1.5-7b-lora-cls", path=folder, device="cpu")
    loaded = scorer.model
    assert loaded.config.image_seq_length == 1
    pixels = torch.rand(2, 3, 336, 336)
    with torch.no_grad():
        hidden = loaded.model.vision_tower(pixels, output_hidden_states=True).hidden_states[-2]
        expected = loaded.model.multi_modal_projector(hidden[:, :1])  # the original code's image_features[:, 0:1]
        got = torch.stack(list(loaded.model.get_image_features(pixels)))
    assert got.shape == (2, 1, loaded.config.text_config.hidden_size) and torch.allclose(got, expected, atol=1e-5)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (30, 40, 3), dtype=np.uint8) for _ in range(2)]
    assert np.isfinite(scorer.score_pairs(images, _pairs(2))).all()


def test_registry_table_lists_every_entry_with_a_known_prompt_format():
    table = registry_table()
    assert list(table.columns) == ["name", "family", "hub id", "loader", "prompt format", "notes"]
    assert table["name"].is_unique and len(table) == len(REGISTRY)
    assert all(p in FORMATS for p in table.loc[table["family"] == "llava", "prompt format"])


def test_dtype_defaults_and_names():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_dtype("auto", cpu) == torch.float32 and resolve_dtype("auto", cuda) == torch.bfloat16
    assert resolve_dtype("bf16", cpu) == torch.bfloat16 and resolve_dtype(torch.float16, cpu) == torch.float16
    with pytest.raises(ValueError):
        resolve_dtype("int4", cpu)


def test_chat_formats_carry_their_template_and_end_token():
    question = 'Does this figure show "a dog"? Please answer yes or no.'
    assert PHI3_FORMAT.vqa_prompt("a dog") == f"<|user|>\n<image>\n{question}<|end|>\n<|assistant|>\n"
    assert PHI3_PAPER_FORMAT.vqa_prompt("a dog") == (
        f"<|system|>\nYou are a helpful AI assistant.<|end|>\n<|user|>\n<image>\n{question}<|end|>\n<|assistant|>\n"
    )
    assert PHI3_FORMAT.answer_text("</s>") == "Yes<|end|>" and PromptFormat().answer_text("</s>") == "Yes</s>"


def test_vqascore_ends_the_answer_with_the_chat_end_token():
    model, processor = random_llava(TINY_LLAVA_336, seed=0)
    processor.tokenizer.add_special_tokens({"additional_special_tokens": ["<|end|>"]})
    scorer = VQAScorer(model, processor, ChatFormat(turn="USER: {} ASSISTANT: ", end="<|end|>"))
    assert scorer.answer_ids[-1] == processor.tokenizer.convert_tokens_to_ids("<|end|>")
    score = scorer.score_pairs([np.zeros((20, 20, 3), dtype=np.uint8)], [(0, "a red circle")])
    assert 0 < score[0] < 1


def _tiny_dinov2():
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=28, patch_size=14)
    return Dinov2Model(config).eval()


def test_dinov2_resolves_by_name_hub_id_and_models_folder_offline(tmp_path):
    model = _tiny_dinov2()
    model.save_pretrained(tmp_path / "models" / "dinov2-small")
    model.save_pretrained(_fake_hub_cache(tmp_path / "hf", "facebook/dinov2-large"))
    pixels = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        expected = model(pixel_values=pixels).last_hidden_state
    for name in ("dinov2-small", "dinov2-large", "facebook/dinov2-large"):
        loaded = load_vision_encoder(name, device="cpu")
        with torch.no_grad():
            assert torch.allclose(loaded(pixel_values=pixels).last_hidden_state, expected, atol=1e-6), name
    assert "Dinov2Model" in registry_table().set_index("name").loc["dinov2-large", "loader"]


def test_dinov2_missing_or_misused_says_what_to_do(tmp_path):
    with pytest.raises(ModelNotFoundError) as error:
        load_vision_encoder("dinov2-large")
    assert f"{tmp_path / 'models' / 'dinov2-large'}: does not exist" in str(error.value)
    assert 'hf download facebook/dinov2-large --exclude "*.h5"' in str(error.value)
    with pytest.raises(UnsupportedModelError, match="load_vision_encoder"):
        load_scorer("dinov2-large")
    with pytest.raises(UnsupportedModelError, match="not a vision encoder.*dinov2-large"):
        load_vision_encoder("llava-1.5-7b")
