import torch

from analysis_lib.models.conversations import conversation_batch, embed_with_features
from analysis_lib.models.prompts import TOY_FORMAT
from analysis_lib.models.tiny import llava_tokenizer


def test_only_answers_and_their_end_tokens_carry_labels():
    tok = llava_tokenizer()
    conversations = [
        [("Where is the red circle?", "top left"), ("Describe the image.", "a red circle above a blue square")],
        [("Describe the image.", "a blue square")],
    ]
    ids, mask, labels = conversation_batch(tok, TOY_FORMAT, conversations, n_image_tokens=2)
    first = tok.convert_ids_to_tokens(ids[0][labels[0] != -100])
    assert first == ["top", "left", "</s>", "a", "red", "circle", "above", "a", "blue", "square", "</s>"]
    assert tok.convert_ids_to_tokens(ids[0][:5]) == ["<s>", "user", ":", "<image>", "<image>"]
    assert (ids[0] == tok.convert_tokens_to_ids("<image>")).sum() == 2  # the image only in the first turn
    assert mask[1].sum() < mask[0].sum() and (labels[1][mask[1] == 0] == -100).all()


def test_image_placeholders_receive_projected_features(tiny_models):
    _, _, llava, processor = tiny_models
    tok = processor.tokenizer
    ids, _, _ = conversation_batch(tok, TOY_FORMAT, [[("Describe the image.", "a")]], llava.config.image_seq_length)
    features = torch.randn(1, llava.config.image_seq_length, llava.config.vision_config.hidden_size)
    with torch.no_grad():
        embeds = embed_with_features(llava, ids, features)
        projected = llava.model.multi_modal_projector(features)[0]
    image_rows = ids[0] == llava.config.image_token_index
    assert torch.equal(embeds[0, image_rows], projected)
    assert torch.equal(embeds[0, ~image_rows], llava.get_input_embeddings()(ids)[0, ~image_rows])


def test_where_in_text_question_states_both_cells_and_asks_one(world):
    import numpy as np

    from analysis_lib.data.toyworld import cell_words, instruction_example, sample_scenes

    rng = np.random.default_rng(0)
    for scene in sample_scenes(20, world, seed=0):
        question, answer, _ = instruction_example(scene, rng, {"where-in-text": 1.0})
        assert cell_words(scene.first_cell) in question and cell_words(scene.second_cell) in question
        asked = question.split("Where is the ")[1].rstrip("?")
        assert answer == cell_words(scene.first_cell if asked == scene.first.phrase else scene.second_cell)


def test_answer_accuracy_counts_conversations_with_every_answer_word_right(tiny_models):
    import torch

    from analysis_lib.models.prompts import TOY_FORMAT
    from analysis_lib.models.tiny import LlavaSize, toy_llava_from_clip
    from analysis_lib.training.clip_llava import answer_accuracy

    clip, clip_processor, _, _ = tiny_models
    llava, processor = toy_llava_from_clip(clip, clip_processor, LlavaSize(width=32, layers=1, heads=2), seed=0)
    vocab, top = llava.config.text_config.vocab_size, processor.tokenizer.convert_tokens_to_ids("top")
    llava.lm_head = torch.nn.Linear(32, vocab)  # a head that always predicts "top"
    with torch.no_grad():
        llava.lm_head.weight.zero_()
        llava.lm_head.bias.zero_()
        llava.lm_head.bias[top] = 1.0
    features = torch.zeros(2, llava.config.image_seq_length, llava.config.vision_config.hidden_size)
    conversations = [[("Where is the red circle?", "top")], [("Where is the red circle?", "top left")]]
    assert answer_accuracy(llava, processor.tokenizer, TOY_FORMAT, conversations, features) == 0.5
