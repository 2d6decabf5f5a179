"""A word-level tokenizer over the toy world's vocabulary, saved with each toy model, and the check that
tells a user which words of a statement such a tokenizer does not know."""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from analysis_lib.data.toyworld import vocabulary

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<image>")


def word_tokenizer(append_eos: bool) -> PreTrainedTokenizerFast:
    """A lower-casing word-level tokenizer; ``append_eos`` adds ``</s>`` (CLIP-style text towers)."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in vocabulary():
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    template = "<s> $A </s>" if append_eos else "<s> $A"
    core.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
        additional_special_tokens=["<image>"],
        model_max_length=128,
        model_input_names=["input_ids", "attention_mask"],
    )


def is_word_level(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether ``tokenizer`` knows a closed list of words (the toy models'), so unknown words become ``<unk>``."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and isinstance(backend.model, models.WordLevel)


def unknown_words(tokenizer: PreTrainedTokenizerBase, text: str) -> list[str]:
    """The words (and punctuation) of ``text`` that ``tokenizer`` turns into its unknown token, as written."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    pieces = zip(encoded["input_ids"], encoded["offset_mapping"])
    return [text[start:end] for token, (start, end) in pieces if token == tokenizer.unk_token_id]


def vocabulary_warnings(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[str]:
    """A warning per statement that has words outside a word-level vocabulary, naming them and listing the
    vocabulary; ``ValueError`` if a statement has no known word at all."""
    if not is_word_level(tokenizer):
        return []
    special = set(tokenizer.all_special_tokens)
    known = ", ".join(sorted(word for word in tokenizer.get_vocab() if word not in special))
    warnings = []
    for number, text in enumerate(texts, start=1):
        unknown = unknown_words(tokenizer, text)
        n_words = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if unknown and len(unknown) == n_words:
            raise ValueError(
                f"statement {number} ({text!r}) has no word the toy models know; write it with their words: {known}"
            )
        if unknown:
            warnings.append(
                f"statement {number}: the toy models do not know {', '.join(map(repr, unknown))} and read each as "
                f"<unk>; they know only the toy world's words: {known}"
            )
    return warnings
