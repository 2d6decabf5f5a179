import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from peft.tuners.lora import LoraLayer
from test_registry import offline  # noqa: F401  (autouse: no network, empty HF cache and models folder)

from analysis_lib.data.toyworld import render_all, sample_scenes
from analysis_lib.full.registry import ModelNotFoundError, load_scorer, registry_table
from analysis_lib.models.features import llava_selected_features, pixel_tensor
from analysis_lib.models.tiny import TINY_LLAVA_336, random_llava
from analysis_lib.training import embedding_conversion as ec

PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
PAPER_PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "down_proj"}  # the paper's fork on LLaMA's names
TEXTS = ["a red circle left of a blue square", "a red circle", "a photo of a red circle above a blue square"]


def _adapted(cfg: ec.ConversionConfig):
    model, processor = random_llava(TINY_LLAVA_336, seed=0)
    return ec.with_adapter(model, cfg), processor


@pytest.mark.parametrize(
    ("cfg", "projections"),
    [
        (ec.ConversionConfig(), PAPER_PROJECTIONS),
        (ec.ConversionConfig(rank=32, use_dora=False, targets="all"), PROJECTIONS),
    ],
)
def test_adapter_has_the_requested_kind_rank_alpha_and_modules_and_freezes_the_base(cfg, projections):
    peft_model, _ = _adapted(cfg)
    layers = {name: m for name, m in peft_model.named_modules() if isinstance(m, LoraLayer)}
    n_lm_layers = peft_model.base_model.model.config.text_config.num_hidden_layers
    assert len(layers) == n_lm_layers * len(projections)
    assert {name.rsplit(".", 1)[-1] for name in layers} == projections
    for name, layer in layers.items():
        assert ".language_model." in name, name
        assert layer.r["default"] == cfg.rank and layer.lora_alpha["default"] == cfg.alpha
        assert layer.lora_dropout["default"].p == pytest.approx(cfg.dropout)
        assert layer.use_dora["default"] is cfg.use_dora
        assert ("default" in layer.lora_magnitude_vector) is cfg.use_dora
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and ".language_model." in n for n in trainable)
    assert not any(name in n for n in trainable for name in ("vision_tower", "multi_modal_projector", "embed_tokens"))
    b_weights = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert b_weights and all(torch.all(p == 0) for p in b_weights)  # gaussian init: A random, B zero
    a_weights = torch.cat([p.flatten() for n, p in peft_model.named_parameters() if "lora_A" in n])
    assert a_weights.std().item() == pytest.approx(1 / cfg.rank, rel=0.2)


def test_conversion_trains_only_the_adapter_and_the_merged_model_embeds_as_the_adapted_one(tiny_models, world):
    _, _, llava, processor = tiny_models
    model = copy.deepcopy(llava)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = ec.ConversionConfig(steps=3, batch_size=8, n_scenes=32, held_out=8, check_every=1, lr=1e-2, warmup=1)
    merged, log = ec.convert(model, processor, world, cfg, seed=0, progress=False)
    assert log["stages"][0]["steps"] >= 1 and len(log["stages"][0]["checks"]) >= 1
    # outside the adapted layers nothing moved; the adapted layers changed only by merging the trained adapter
    names = dict(merged.named_parameters())
    unchanged = [n for n in before if "language_model" not in n or not any(p in n for p in PROJECTIONS)]
    assert all(torch.equal(before[n], names[n]) for n in unchanged)
    changed = [n for n in before if n not in unchanged]
    assert changed and any(not torch.equal(before[n], names[n]) for n in changed)


def test_merged_weights_give_the_adapted_models_embeddings(tiny_models, world):
    _, _, llava, processor = tiny_models
    model = copy.deepcopy(llava)
    peft_model = ec.with_adapter(model, ec.ConversionConfig(dropout=0.0))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.eval()
    adapted = ec.text_embeddings(model, processor.tokenizer, TEXTS)
    merged = ec.merged_model(peft_model)
    assert not torch.allclose(adapted, ec.text_embeddings(copy.deepcopy(llava), processor.tokenizer, TEXTS))
    assert torch.allclose(adapted, ec.text_embeddings(merged, processor.tokenizer, TEXTS), atol=1e-5)


def test_last_token_pooling_is_the_same_with_left_and_right_padding(tiny_models, world):
    _, _, llava, processor = tiny_models
    tok = processor.tokenizer
    left, right = (ec.text_embeddings(llava, tok, TEXTS, side) for side in ("left", "right"))
    assert torch.allclose(left, right, atol=1e-5)
    alone = torch.cat([ec.text_embeddings(llava, tok, [t]) for t in TEXTS])
    assert torch.allclose(alone, right, atol=1e-5)
    scenes = sample_scenes(3, world, 0)
    features = llava_selected_features(llava, pixel_tensor(render_all(scenes, world, 1), processor.image_processor))
    questions = ["Describe the image.", "Where is the red circle relative to the blue square?", "Describe the figure."]
    q_left, q_right = (ec.query_embeddings(llava, tok, ec.TOY_QUERY, questions, features, s) for s in ("left", "right"))
    assert torch.allclose(q_left, q_right, atol=1e-5)
    assert torch.allclose(left.norm(dim=-1), torch.ones(len(TEXTS)))


def test_last_token_pool_picks_the_last_attended_position():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float).view(2, 4, 1)
    mask = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1]])
    assert ec.last_token_pool(hidden, mask).flatten().tolist() == [1.0, 7.0]
    assert ec.position_ids(mask).tolist() == [[0, 1, 1, 1], [0, 0, 1, 2]]


def test_info_nce_is_cross_entropy_over_in_batch_targets():
    torch.manual_seed(0)
    q, t = F.normalize(torch.randn(5, 8), dim=-1), F.normalize(torch.randn(5, 8), dim=-1)
    expected = F.cross_entropy(q @ t.T / 0.02, torch.arange(5))
    assert torch.isclose(ec.info_nce(q, t, 0.02), expected)
    assert ec.info_nce(q, q, 0.02) < 1e-6 < ec.info_nce(q, t, 0.02)


def test_questions_name_the_shared_objects_and_never_the_relation():
    relation_options = ["a red circle left of a blue square", "a red circle above a blue square"]
    assert ec.toy_question(relation_options) == "Where is the red circle relative to the blue square?"
    assert ec.toy_question(["a red circle left of a blue square", "a green circle left of a blue square"]) == (
        "Describe the image."
    )
    assert ec.toy_question(["a photo of a red circle below a blue square", "a photo of a red circle above a "
                            "blue square"]) == "Where is the red circle relative to the blue square?"  # fmt: skip
    whatsup = ["A mug to the left of a plate", "A mug to the right of a plate", "A mug on a plate"]
    assert ec.paper_question(whatsup) == "Is the mug to the left of or to the right of the plate?"
    assert ec.paper_question(["A mug under a plate", "A mug on a plate"]) == (
        "Is the mug at the bottom of the plate or at the top of the plate?"
    )
    assert ec.paper_question(["A dog in front of a tree", "A dog behind a tree"]) == (
        "Is the dog in the back of the tree or in the front of the tree?"
    )
    assert ec.paper_question(["A dog above a tree", "A dog below a tree"]) == "Is the dog above or below the tree?"
    assert ec.paper_question(["a dog", "a cat"]) == ec.PAPER_FALLBACK


def test_paper_4way_questions_follow_the_controlled_subset():
    a_options = [
        "A mug on a plate",
        "A mug under a plate",
        "A mug to the left of a plate",
        "A mug to the right of a plate",
    ]
    assert ec.paper_question_4way(a_options) == "Is the mug to the left of, to the right of, on, or under the plate?"
    b_options = [
        "A dog behind a tree",
        "A dog in front of a tree",
        "A dog to the left of a tree",
        "A dog to the right of a tree",
    ]
    assert ec.paper_question_4way(b_options) == (
        "Is the dog to the left of, to the right of, in front of, or behind the tree?"
    )
    assert ec.paper_question_4way(a_options[2:]) == ec.paper_question(a_options[2:])
    assert ec.paper_question_4way(["a dog", "a cat"]) == ec.PAPER_FALLBACK


def test_conversion_pairs_use_toy_words_and_relation_groups_share_objects(tiny_models, world):
    tok = tiny_models[3].tokenizer
    rng = np.random.default_rng(0)
    scenes = ec.relation_group_scenes(8, world, 0)
    assert [s.relation for s in scenes[:4]] == ["left_of", "right_of", "above", "below"]
    assert len({(s.first, s.second) for s in scenes[:4]}) == 1
    for scene in scenes:
        for text in ec.conversion_pair(scene, rng, ec.ConversionConfig()):
            assert not tokenization_unknown(tok, text), text
    idx = ec.batch_indices(rng, dataclasses.replace(ec.ConversionConfig(), n_scenes=32, batch_size=8))
    assert sorted(idx % 4) == [0, 0, 1, 1, 2, 2, 3, 3] and len(set(idx // 4)) == 2
    with pytest.raises(ValueError, match="unknown conversion task"):
        ec.conversion_pair(scenes[0], rng, ec.ConversionConfig(tasks=(("yes/no", 1.0),)))


def tokenization_unknown(tokenizer, text: str) -> list[str]:
    from analysis_lib.data.tokenization import unknown_words

    return unknown_words(tokenizer, text)


def test_embedding_scorer_scores_each_image_query_against_its_texts(tiny_models, world):
    _, _, llava, processor = tiny_models
    scorer = ec.EmbeddingScorer(llava, processor, ec.TOY_QUERY, ec.toy_question)
    images = list(render_all(sample_scenes(2, world, 5), world, 6))
    options = [["a red circle left of a blue square", "a red circle above a blue square"],
               ["a green cross below a white square", "a purple cross below a white square"]]  # fmt: skip
    pairs = [(i, t) for i, row in enumerate(options) for t in row]
    scores = scorer.score_pairs(images, pairs)
    assert scorer.questions(2, pairs) == ["Where is the red circle relative to the blue square?", "Describe the image."]
    features = llava_selected_features(llava, pixel_tensor(np.stack(images), processor.image_processor))
    queries = ec.query_embeddings(llava, processor.tokenizer, ec.TOY_QUERY, scorer.questions(2, pairs), features)
    texts = ec.text_embeddings(llava, processor.tokenizer, [t for _, t in pairs])
    expected = (queries[[0, 0, 1, 1]] * texts).sum(-1)
    assert np.allclose(scores, expected.detach().numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="query template"):
        ec.EmbeddingScorer(llava, processor, "{}", ec.toy_question)


def test_registry_merges_the_vlm2vec_adapter_into_its_base_and_scores_by_cosine(tmp_path):
    models = tmp_path / "models"  # $ANALYSIS_LIB_MODELS under test_registry's autouse ``offline`` fixture
    with pytest.raises(ModelNotFoundError, match="lst627/LLaVA-1.5-7B-VLM2Vec-LoRA"):
        load_scorer("llava-1.5-7b-vlm2vec", device="cpu")
    base, processor = random_llava(TINY_LLAVA_336, seed=0)
    base.save_pretrained(models / "llava-1.5-7b")
    processor.save_pretrained(models / "llava-1.5-7b")
    peft_model = ec.with_adapter(copy.deepcopy(base), ec.ConversionConfig())
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(models / "llava-1.5-7b-vlm2vec")
    assert (models / "llava-1.5-7b-vlm2vec" / "adapter_model.safetensors").is_file()
    scorer = load_scorer("llava-1.5-7b-vlm2vec", device="cpu")
    assert isinstance(scorer, ec.EmbeddingScorer) and scorer.template == ec.PAPER_QUERY
    expected = ec.EmbeddingScorer(ec.merged_model(peft_model), processor)
    images = [np.full((40, 30, 3), 90, dtype=np.uint8), np.full((30, 30, 3), 200, dtype=np.uint8)]
    pairs = [(i, t) for i in range(2) for t in ("A mug to the left of a plate", "A mug to the right of a plate")]
    assert np.allclose(scorer.score_pairs(images, pairs), expected.score_pairs(images, pairs), atol=1e-5)
    unmerged = ec.EmbeddingScorer(base, processor).score_pairs(images, pairs)
    assert not np.allclose(scorer.score_pairs(images, pairs), unmerged, atol=1e-4)
    row = registry_table().set_index("name").loc["llava-1.5-7b-vlm2vec"]
    assert "EmbeddingScorer" in row["loader"]


def test_retrieval_check_counts_tied_and_nan_embeddings_wrong(world, monkeypatch):
    """A model whose embeddings are all equal (every option ties) or NaN retrieves nothing: both accuracies 0,
    never the first option's share."""
    scenes = sample_scenes(8, world, seed=0)
    for broken in (torch.ones, lambda *shape: torch.full(shape, float("nan"))):
        monkeypatch.setattr(ec, "query_embeddings", lambda m, t, fmt, q, f, make=broken: make(len(q), 4))
        monkeypatch.setattr(ec, "text_embeddings", lambda m, t, texts, make=broken: make(len(texts), 4))
        result = ec.retrieval_check(torch.nn.Linear(1, 1), None, scenes, torch.zeros(8, 1, 1))
        assert result == {"value": 0.0, "relation 4-way": 0.0, "attribute": 0.0}
