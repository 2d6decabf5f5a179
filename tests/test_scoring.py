import numpy as np
import torch
import torch.nn.functional as F

from analysis_lib.data.toyworld import render_all, sample_scenes
from analysis_lib.models.prompts import TOY_FORMAT, PromptFormat
from analysis_lib.scoring.scorers import ClipScorer, VQAScorer, mean_colour, pad_to_square, score_options


def _images(world, n=3):
    return list(render_all(sample_scenes(n, world, seed=0), world, seed=1))


def test_vqascore_equals_hand_computation(tiny_models, world):
    """exp(-mean CE) over the answer tokens 'Yes' + '</s>' = sqrt(P(Yes) * P(</s> | ..., Yes))."""
    _, _, llava, processor = tiny_models
    image = _images(world, 1)[0]
    caption = "a red circle left of a blue square"
    scorer = VQAScorer(llava, processor, TOY_FORMAT)
    got = scorer.score_pairs([image], [(0, caption)])[0]

    prompt = f'USER: <image>\nDoes this figure show "{caption}"? Please answer yes or no. ASSISTANT: '
    enc = processor(images=[image], text=[prompt + "Yes</s>"], return_tensors="pt")
    tok = processor.tokenizer
    assert enc["input_ids"][0, -2:].tolist() == [tok.convert_tokens_to_ids("yes"), tok.eos_token_id]
    with torch.no_grad():
        logits = llava(**enc).logits[0]
    probs = F.softmax(logits, dim=-1)
    p_yes = probs[-3, tok.convert_tokens_to_ids("yes")]
    p_end = probs[-2, tok.eos_token_id]
    assert np.isclose(got, float(torch.sqrt(p_yes * p_end)), atol=1e-6)


def test_vqascore_batching_and_padding_do_not_change_scores(tiny_models, world):
    _, _, llava, processor = tiny_models
    images = _images(world)
    pairs = [
        (0, "a red circle left of a blue square"),
        (1, "a photo of a green cross above a yellow triangle"),
        (2, "a blue square"),
        (0, "a photo of a red circle and a blue square"),
    ]
    batched = VQAScorer(llava, processor, TOY_FORMAT, batch_size=4).score_pairs(images, pairs)
    single = np.concatenate([VQAScorer(llava, processor, TOY_FORMAT).score_pairs(images, [p]) for p in pairs])
    assert np.allclose(batched, single, atol=1e-5)
    assert np.all((batched > 0) & (batched < 1))


def test_vqascore_prompt_is_t2v_metrics_template():
    fmt = PromptFormat()
    prompt = fmt.vqa_prompt("a dog on a table")
    assert prompt.startswith("A chat between a curious user and an artificial intelligence assistant.")
    assert prompt.endswith(
        'USER: <image>\nDoes this figure show "a dog on a table"? Please answer yes or no. ASSISTANT: '
    )


def test_clip_score_is_cosine_of_projected_embeddings(tiny_models, world):
    clip, processor, _, _ = tiny_models
    images = _images(world, 2)
    texts = ["a red circle and a blue square", "a green cross"]
    scores = score_options(ClipScorer(clip, processor), images, [texts, texts])
    with torch.no_grad():
        img = clip.get_image_features(**processor.image_processor(images, return_tensors="pt"))
        txt = clip.get_text_features(**processor.tokenizer(texts, padding=True, return_tensors="pt"))
    expected = (F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T).numpy()
    assert np.allclose(scores, expected, atol=1e-5)


def test_pad_to_square_centres_on_mean_colour():
    from PIL import Image

    image = Image.new("RGB", (4, 2), (255, 0, 0))
    padded = pad_to_square(image, (1, 2, 3))
    assert padded.size == (4, 4)
    assert padded.getpixel((0, 0)) == (1, 2, 3) and padded.getpixel((0, 1)) == (255, 0, 0)


def test_mean_colour_truncates_as_llava_expand2square():
    """LLaVA / t2v_metrics pad with ``tuple(int(x*255) for x in image_mean)``: CLIP's mean gives (122, 116, 104)."""
    from types import SimpleNamespace

    from transformers.image_utils import OPENAI_CLIP_MEAN

    assert mean_colour(SimpleNamespace(image_mean=OPENAI_CLIP_MEAN)) == (122, 116, 104)
    assert mean_colour(SimpleNamespace(image_mean=[0.5, 0.999, 0.0])) == (127, 254, 0)


def test_prefix_cached_vqascore_equals_one_forward_per_pair(tiny_models, world):
    """The shared-prefix KV cache changes the cost, not the scores (fp32, 1e-5)."""
    _, _, llava, processor = tiny_models
    images = _images(world, 3)
    captions = [
        "a red circle left of a blue square",
        "a red circle right of a blue square",
        "a blue square",
        "a photo of a green cross above a yellow triangle and a white circle",
    ]
    pairs = [(i, c) for i in (2, 0, 1) for c in captions] + [(0, "a green cross")]
    reference = VQAScorer(llava, processor, PromptFormat(), prefix_cache=False).score_pairs(images, pairs)
    for batch_size in (1, 5, 64):
        cached = VQAScorer(llava, processor, PromptFormat(), batch_size=batch_size).score_pairs(images, pairs)
        assert np.allclose(cached, reference, atol=1e-5, rtol=0), batch_size
    assert len(set(np.round(reference, 6))) > 3  # the scores differ between captions and images


def test_shared_prefix_length_leaves_the_answer_to_the_suffix():
    from analysis_lib.scoring.scorers import chunk_images, shared_prefix_length

    assert shared_prefix_length([[1, 2, 3, 4, 5], [1, 2, 3, 9, 5]], keep=1) == 3
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 4]], keep=3) == 1
    assert chunk_images({7: [0, 1], 3: [2, 3, 4], 5: [5]}, max_rows=4) == [[7], [3, 5]]
    assert chunk_images({7: [0, 1, 2, 3, 4]}, max_rows=2) == [[7]]


def _sentencepiece_like(prepend_scheme: str):
    """A tiny BPE tokenizer with Llama's layout (``▁`` spaces, BOS only, ``<image>`` special), its ``Metaspace``
    prefixing every call's text (``always``, Llama's legacy) or only the start of the text (``first``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend_scheme, split=False)
    corpus = [PromptFormat().vqa_prompt("a dog left of a cat") + "Yes</s>", "\n Does this figure show"]
    core.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=200, special_tokens=[
        "<unk>", "<s>", "</s>", "<image>", "<pad>"]))  # fmt: skip
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", additional_special_tokens=["<image>"])  # fmt: skip


def _tokenizer_image_token(prompt, tokenizer, image_token_index):
    """LLaVA's ``tokenizer_image_token`` (llava/mm_utils.py, as t2v_metrics vendors it), one id per ``<image>``."""
    prompt_chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]
    separated = [e for sub in zip(prompt_chunks, [[image_token_index] * 2] * len(prompt_chunks)) for e in sub][:-1]
    offset = 1 if prompt_chunks[0] and prompt_chunks[0][0] == tokenizer.bos_token_id else 0
    input_ids = prompt_chunks[0][:offset]
    for x in separated:
        input_ids.extend(x[offset:])
    return input_ids


def test_image_chunk_ids_are_llava_tokenizer_image_token():
    from analysis_lib.scoring.scorers import image_chunk_ids

    tokenizer = _sentencepiece_like("first")
    image = tokenizer.convert_tokens_to_ids("<image>")
    texts = [PromptFormat().vqa_prompt("a dog left of a cat") + "Yes</s>", "a <image> b <image>\nc"]
    assert image_chunk_ids(tokenizer, texts, image, 1) == [_tokenizer_image_token(t, tokenizer, image) for t in texts]
    three = image_chunk_ids(tokenizer, texts[:1], image, 3)[0]
    one = image_chunk_ids(tokenizer, texts[:1], image, 1)[0]
    k = one.index(image)
    assert three == one[:k] + [image] * 3 + one[k + 1 :]


def test_one_call_tokenization_drops_the_space_token_llava_puts_after_the_image():
    """The measured difference: with a tokenizer that prefixes only the text's start, tokenizing the whole prompt in
    one call loses the ``▁`` that LLaVA's chunk-by-chunk tokenization puts after ``<image>``; Llama's legacy
    prefixing and the toy word-level tokenizer give the same ids either way."""
    from analysis_lib.models.conversations import expand_image_tokens
    from analysis_lib.models.tiny import llava_tokenizer
    from analysis_lib.scoring.scorers import image_chunk_ids

    text = PromptFormat().vqa_prompt("a dog left of a cat") + "Yes</s>"
    for scheme, extra in (("first", ["▁"]), ("always", [])):
        tokenizer = _sentencepiece_like(scheme)
        image = tokenizer.convert_tokens_to_ids("<image>")
        chunked = tokenizer.convert_ids_to_tokens(image_chunk_ids(tokenizer, [text], image, 1)[0])
        whole = tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])
        k = chunked.index("<image>")
        assert chunked == whole[: k + 1] + extra + whole[k + 1 :], scheme
    toy = llava_tokenizer()
    toy_text = "USER: <image>\nis a red circle left of a blue square ASSISTANT: yes</s>"
    image = toy.convert_tokens_to_ids("<image>")
    assert image_chunk_ids(toy, [toy_text], image, 4)[0] == toy(expand_image_tokens(toy_text, 4))["input_ids"]
