"""How a toy LLaVA reads a conversation: LLaVA-1.5's layout as token ids, image placeholders replaced by projected
features, and the teacher-forced log-probabilities of the answers (log VQAScore); shared by training and scoring."""

from __future__ import annotations

import torch
from transformers import LlavaForConditionalGeneration, PreTrainedTokenizerFast

from analysis_lib.models.image_tokens import variant_position_ids
from analysis_lib.models.prompts import PromptFormat

EVAL_RNG_SEED = 2024  # fixes the held-out checks' random parts (object order in lists), the same at every check


def expand_image_tokens(prompt: str, n_tokens: int, image_token: str = "<image>") -> str:
    """Repeat the image placeholder once per image feature, as ``LlavaProcessor`` does."""
    return prompt.replace(image_token, image_token * n_tokens)


def conversation_batch(
    tokenizer: PreTrainedTokenizerFast,
    prompt_format: PromptFormat,
    conversations: list[list[tuple[str, str]]],
    n_image_tokens: int,
    question_loss: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` for multi-turn conversations.

    LLaVA-1.5's conversation layout: the image in the first user turn, every answer followed by the
    end token. Answer tokens (and their end tokens) carry labels; with ``question_loss`` so do the
    text tokens of each truthful turn's prompt (a ``Turn`` with ``truthful=False`` keeps only its
    answer); image placeholders and padding never do.
    """
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    pieces, owners = [], []
    for row, turns in enumerate(conversations):
        for turn, (question, answer, *truthful) in enumerate(turns):
            prompt = prompt_format.prompt(question) if turn == 0 else prompt_format.followup(question)
            pieces += [expand_image_tokens(prompt, n_image_tokens), answer + tokenizer.eos_token]
            owners += [(row, question_loss and all(truthful)), (row, True)]
    encoded = tokenizer(pieces, add_special_tokens=False)["input_ids"]
    rows: list[tuple[list[int], list[int]]] = [([tokenizer.bos_token_id], [-100]) for _ in conversations]
    for ids, (row, learned) in zip(encoded, owners):
        rows[row][0].extend(ids)
        rows[row][1].extend(i if learned and i != image_id else -100 for i in ids)
    length = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), length), tokenizer.pad_token_id)
    labels = torch.full((len(rows), length), -100)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for row, (ids, labs) in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(ids)] = torch.tensor(labs)
        mask[row, : len(ids)] = 1
    return input_ids, mask, labels


def embed_with_features(
    model: LlavaForConditionalGeneration, input_ids: torch.Tensor, features: torch.Tensor
) -> torch.Tensor:
    """Token embeddings with the image placeholders replaced by projected vision features."""
    embeds = model.get_input_embeddings()(input_ids)
    projected = model.model.multi_modal_projector(features).to(embeds.dtype)
    image_mask = (input_ids == model.config.image_token_index).unsqueeze(-1).expand_as(embeds)
    return embeds.masked_scatter(image_mask, projected)


@torch.no_grad()
def teacher_forced(
    model: LlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerFast,
    prompt_format: PromptFormat,
    conversations: list[list[tuple[str, str]]],
    features: torch.Tensor,
    chunk: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token log-probabilities (row, position, vocabulary) and the answer labels they predict."""
    was_training = model.training
    model.eval()
    ids, mask, labels = conversation_batch(tokenizer, prompt_format, conversations, model.config.image_seq_length)
    device = next(model.parameters()).device
    logprobs = []
    positions = variant_position_ids(model, ids, torch.Generator().manual_seed(EVAL_RNG_SEED))
    for start in range(0, len(ids), chunk):
        part = slice(start, start + chunk)
        embeds = embed_with_features(model, ids[part].to(device), features[part].to(device))
        where = None if positions is None else positions[part].to(device)
        logits = model(inputs_embeds=embeds, attention_mask=mask[part].to(device), position_ids=where).logits
        logprobs.append(logits[:, :-1].float().log_softmax(-1).cpu())
    model.train(was_training)
    return torch.cat(logprobs), labels[:, 1:]


def answer_logprob(
    model: LlavaForConditionalGeneration,
    tokenizer: PreTrainedTokenizerFast,
    prompt_format: PromptFormat,
    conversations: list[list[tuple[str, str]]],
    features: torch.Tensor,
) -> torch.Tensor:
    """Mean log-probability of each conversation's answer tokens (log VQAScore for a yes/no question)."""
    logprobs, labels = teacher_forced(model, tokenizer, prompt_format, conversations, features)
    scored = labels != -100
    picked = logprobs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * scored
    return picked.sum(1) / scored.sum(1)
