"""The toy LM's pre-training and the toy LLaVA's staged curriculum."""

import numpy as np
import pytest
import torch

from analysis_lib.data.toyworld import Turn, names_any, relational_caption, sample_scenes, shows_any
from analysis_lib.models.conversations import answer_logprob, conversation_batch, embed_with_features
from analysis_lib.models.prompts import TOY_FORMAT
from analysis_lib.models.tiny import LlavaSize, llava_tokenizer, load_language_model, toy_lm
from analysis_lib.toy.toy_setup import ToySetup
from analysis_lib.training.clip_llava import (
    INSTRUCTION_MIX,
    LlavaTrainConfig,
    Stage,
    run_stage,
    training_batch,
    untold,
    vqascore_accuracies,
    word_accuracy,
)
from analysis_lib.training.lm_pretraining import LmPretrainConfig, copy_accuracy, copy_batch, pretrain_lm, quote_batch

SMALL_LM = LlavaSize(width=32, layers=2, heads=2)


def test_question_loss_covers_the_text_of_truthful_turns_only():
    tok = llava_tokenizer()
    conversations = [
        [Turn("Describe the figure.", "a red circle top left")],
        [Turn('Does this figure show "a red circle"? Please answer yes or no.', "No", truthful=False)],
    ]
    ids, _, labels = conversation_batch(tok, TOY_FORMAT, conversations, n_image_tokens=3, question_loss=True)
    learned = tok.convert_ids_to_tokens(ids[0][labels[0] != -100])
    assert learned[:3] == ["user", ":", "describe"] and "<image>" not in learned and "<s>" not in learned
    assert learned[-6:] == ["a", "red", "circle", "top", "left", "</s>"]
    assert tok.convert_ids_to_tokens(ids[1][labels[1] != -100]) == ["no", "</s>"]
    single, _, answers_only = conversation_batch(tok, TOY_FORMAT, conversations[:1], n_image_tokens=3)
    assert tok.convert_ids_to_tokens(single[0][answers_only[0] != -100]) == learned[-6:]


def test_copy_batches_of_a_seed_are_the_same_with_any_tokenizer_instance():
    batches = [copy_batch(llava_tokenizer(), LmPretrainConfig(), 8, np.random.default_rng(0)) for _ in range(5)]
    assert all(torch.equal(batch[0], batches[0][0]) for batch in batches)  # the vocabulary's dict order varies


def test_copy_batch_repeats_the_segment_and_labels_only_its_predictable_tokens():
    tok = llava_tokenizer()
    cfg = LmPretrainConfig()
    ids, mask, labels = copy_batch(tok, cfg, 200, np.random.default_rng(0))
    lengths = set()
    for row_ids, row_mask, row_labels in zip(ids, mask, labels):
        seq = row_ids[row_mask.bool()].tolist()
        target = row_labels[row_mask.bool()]
        n_labelled = int((target != -100).sum())
        segment = seq[len(seq) - n_labelled - 1 :]
        assert seq[1 : 1 + len(segment)] == segment  # the repeat copies the opening segment
        assert target[-n_labelled:].tolist() == segment[1:] and (target[:-n_labelled] == -100).all()
        assert cfg.segment[0] <= len(segment) <= cfg.segment[1]
        lengths.add(len(seq))
    assert len(lengths) > 5  # random segment and filler lengths: no fixed copy offset to learn
    assert tok.pad_token_id not in ids[mask.bool()] and tok.convert_tokens_to_ids("<image>") not in ids


def test_run_stage_stops_at_the_first_passing_check_and_logs_every_check():
    values = iter([0.1, 0.5, 0.97, 0.99])
    stage = Stage("s", (("list", 1.0),), "cell words", 0.95, 100)
    log = run_stage(stage, lambda _: 1.0, lambda _: {"value": next(values)}, check_every=10, progress=False)
    assert log["passed_at"] == 30 and log["steps"] == 30
    assert [c["step"] for c in log["checks"]] == [10, 20, 30]


def test_run_stage_runs_to_its_cap_when_the_check_never_passes():
    stage = Stage("s", (("list", 1.0),), "cell words", 0.95, 25)
    log = run_stage(stage, lambda _: 1.0, lambda _: {"value": 0.2}, check_every=10, progress=False)
    assert log["passed_at"] is None and log["steps"] == 25
    assert [c["step"] for c in log["checks"]] == [10, 20, 25]
    unchecked = run_stage(Stage("p", (), None, 0.0, 7), lambda _: 1.0, None, check_every=2, progress=False)
    assert unchecked["steps"] == 7 and unchecked["checks"] == []


def test_answer_logprob_is_minus_the_models_answer_loss(tiny_models, world):
    from analysis_lib.data.toyworld import VQA_QUESTION, relational_caption, sample_scenes

    _, _, llava, processor = tiny_models
    tok = processor.tokenizer
    n = llava.config.image_seq_length
    scenes = sample_scenes(3, world, seed=0)
    conversations = [[(VQA_QUESTION.format(relational_caption(s)), "Yes")] for s in scenes]
    features = torch.randn(3, n, llava.config.vision_config.hidden_size, generator=torch.Generator().manual_seed(0))
    got = answer_logprob(llava, tok, TOY_FORMAT, conversations, features)
    for row in range(3):
        ids, mask, labels = conversation_batch(tok, TOY_FORMAT, conversations[row : row + 1], n)
        with torch.no_grad():
            loss = llava(inputs_embeds=embed_with_features(llava, ids, features[row : row + 1]), labels=labels).loss
        assert got[row].item() == pytest.approx(-loss.item(), abs=1e-5)


def test_vqascore_check_picks_the_caption_with_the_highest_answer_probability(tiny_models, world, monkeypatch):
    """With a stand-in scorer that prefers exactly the true caption, both accuracies are 1; preferring
    "left of" and the truth gets the relations of left_of scenes only and every attribute item; tied or NaN
    scores (a broken model) choose nothing, so they count wrong."""
    import analysis_lib.training.clip_llava as training
    from analysis_lib.data.toyworld import VQA_QUESTION, caption_with, relational_caption, sample_scenes

    scenes = sample_scenes(8, world, seed=0)
    truth = {VQA_QUESTION.format(relational_caption(s)) for s in scenes}

    def prefers_truth(model, tokenizer, fmt, conversations, features):
        return torch.tensor([float(c[0][0] in truth) for c in conversations])

    monkeypatch.setattr(training, "answer_logprob", prefers_truth)
    result = vqascore_accuracies(None, None, TOY_FORMAT, scenes, torch.zeros(8, 1, 1))
    assert result["relation 4-way"] == 1.0 and result["attribute"] == 1.0
    first_option = truth | {VQA_QUESTION.format(caption_with(s, relation="left_of")) for s in scenes}
    monkeypatch.setattr(
        training,
        "answer_logprob",
        lambda m, t, f, conv, feats: torch.tensor([float(c[0][0] in first_option) for c in conv]),
    )
    first = vqascore_accuracies(None, None, TOY_FORMAT, scenes, torch.zeros(8, 1, 1))
    assert first["relation left_of"] == 1.0 and first["relation above"] == 0.0 and first["attribute"] == 1.0
    assert first["relation 4-way"] == pytest.approx(np.mean([s.relation == "left_of" for s in scenes]))
    for broken in (torch.zeros, lambda n: torch.full((n,), float("nan"))):
        monkeypatch.setattr(training, "answer_logprob", lambda m, t, f, conv, feats, make=broken: make(len(conv)))
        result = vqascore_accuracies(None, None, TOY_FORMAT, scenes, torch.zeros(8, 1, 1))
        assert result["relation 4-way"] == 0.0 and result["attribute"] == 0.0


def test_word_accuracy_scores_only_the_named_words(world, monkeypatch):
    """A stand-in model that always predicts "top": exactly the row words that are "top" count as right."""
    import analysis_lib.training.clip_llava as training
    from analysis_lib.data.toyworld import ROW_WORDS, instruction_example, sample_scenes

    tok = llava_tokenizer()
    rng = np.random.default_rng(0)
    conversations = [[instruction_example(s, rng, {"list": 1.0})] for s in sample_scenes(20, world, seed=0)]
    _, _, labels = conversation_batch(tok, TOY_FORMAT, conversations, 9)

    def always_top(model, tokenizer, fmt, convs, features):
        logprobs = torch.full((*labels[:, 1:].shape, len(tok)), -10.0)
        logprobs[..., tok.convert_tokens_to_ids("top")] = 0.0
        return logprobs, labels[:, 1:]

    monkeypatch.setattr(training, "teacher_forced", always_top)
    rows = [w for c in conversations for w in c[0].answer.split() if w in ROW_WORDS]
    expected = np.mean([w == "top" for w in rows])
    assert 0 < expected < 1
    assert word_accuracy(None, tok, TOY_FORMAT, conversations, None, ROW_WORDS) == pytest.approx(expected)


def test_pretrained_lm_learns_to_copy_and_llava_starts_from_it(tiny_models):
    cfg = LmPretrainConfig(max_steps=600, check_every=100, target=0.6, batch_size=32, held_out=64)
    model, tok = toy_lm(SMALL_LM, seed=0)
    held_out = copy_batch(tok, cfg, 64, np.random.default_rng(1))
    before = copy_accuracy(model, held_out)
    log = pretrain_lm(model, tok, cfg, seed=0, progress=False)
    assert log["passed_at"] is not None, log["checks"]  # copying is learned, not memorised: fresh sequences
    assert copy_accuracy(model, held_out) > before + 0.3
    _, _, llava, _ = tiny_models
    llava = type(llava)(llava.config)
    load_language_model(llava, model)
    ids = held_out[0][:4]
    with torch.no_grad():
        assert torch.allclose(llava(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5)


def _restart_run(
    tiny_models, world, target: float, restarts: int, budget: int | None = None, stages: tuple[Stage, ...] = ()
) -> tuple[dict, dict]:
    """A two-step curriculum on a tiny LLaVA whose one check needs ``target`` (or ``stages``), with a step
    ``budget``: its log and starting weights."""
    from analysis_lib.data.toyworld import render_all, sample_scenes
    from analysis_lib.models.features import llava_selected_features, pixel_tensor
    from analysis_lib.training.clip_llava import LlavaTrainConfig, train_llava

    _, clip_processor, llava, llava_processor = tiny_models
    scenes = sample_scenes(40, world, seed=0)
    pixels = pixel_tensor(render_all(scenes, world, 1), clip_processor.image_processor)
    features = llava_selected_features(llava, pixels)
    stages = stages or (Stage("list", (("list", 1.0),), "cell words", target, 2),)
    cfg = LlavaTrainConfig(curriculum=stages, check_every=1, batch_size=4, validation_scenes=8, restarts=restarts,
                           step_budget=budget)  # fmt: skip
    start = {k: v.clone() for k, v in llava.state_dict().items()}
    return train_llava(llava, llava_processor.tokenizer, scenes, features, TOY_FORMAT, cfg, 0, False), start


def test_a_stalled_training_restarts_from_its_starting_weights_with_a_fresh_projector(tiny_models, world):
    """A check that cannot pass stalls every attempt: ``restarts`` restarts are used and logged, each attempt
    from the same LM weights but a projector initialised afresh; a check that passes is never restarted."""
    from analysis_lib.training.clip_llava import attempt_seed

    log, start = _restart_run(tiny_models, world, target=1.1, restarts=2)
    assert log["restarts"] == 2 and len(log["abandoned"]) == 2
    assert all(attempt[-1]["passed_at"] is None and attempt[-1]["steps"] == 2 for attempt in log["abandoned"])
    assert log["stages"][-1]["passed_at"] is None  # the last attempt is kept even though it stalled
    assert len({attempt_seed(0, k) for k in range(3)}) == 3
    passed, _ = _restart_run(tiny_models, world, target=0.0, restarts=2)
    assert passed["restarts"] == 0 and passed["abandoned"] == [] and passed["stages"][-1]["passed_at"] == 1


def test_a_step_budget_ends_the_training_stalled_across_attempts(tiny_models, world):
    """The budget counts every attempt's steps: a 3-step budget on 2-step stalling attempts allows one restart and
    one step of it, which ends checked and marked ``budget_spent``; no further restart."""
    from analysis_lib.training.clip_llava import stalled, total_steps

    log, _ = _restart_run(tiny_models, world, target=1.1, restarts=2, budget=3)
    assert log["restarts"] == 1 and total_steps(log) == 3
    (last,) = log["stages"]
    assert last["steps"] == 1 and last["budget_spent"] and last["checks"][-1]["step"] == 1 and stalled(last)


def test_a_budget_spent_between_stages_leaves_the_next_stage_stalled_at_zero_steps(tiny_models, world):
    """A budget that ends exactly where a stage passed still reads as stalled: the next stage is logged with no
    steps and ``budget_spent``, so the training never counts as passed."""
    from analysis_lib.training.clip_llava import stalled, total_steps

    easy = Stage("list", (("list", 1.0),), "cell words", 0.0, 2)
    hard = Stage("describe", (("describe", 1.0),), "relation word", 1.1, 2)
    log, _ = _restart_run(tiny_models, world, 0.0, restarts=2, budget=1, stages=(easy, hard))
    first, second = log["stages"]
    assert first["passed_at"] == 1 and not first["budget_spent"] and not stalled(first)
    assert second["steps"] == 0 and second["budget_spent"] and stalled(second)
    assert log["restarts"] == 0 and total_steps(log) == 1
    unbudgeted, _ = _restart_run(tiny_models, world, 0.0, restarts=0, stages=(easy, hard))
    assert [s["steps"] for s in unbudgeted["stages"]] == [1, 2] and not unbudgeted["stages"][1]["budget_spent"]


def test_restarted_projector_differs_from_the_first_attempts_and_the_lm_starts_where_it_did(tiny_models, world):
    """After ``load_state_dict`` and a re-seeded initialisation the projector is new, so a restart is not a replay."""
    import analysis_lib.training.clip_llava as training

    seen = []
    original = training.curriculum_attempt

    def recording(model, *args, **kwargs):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return original(model, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "curriculum_attempt", recording)
        _, start = _restart_run(tiny_models, world, target=1.1, restarts=1)
    first, second = seen
    projector = [k for k in start if "multi_modal_projector" in k]
    lm = [k for k in start if "language_model" in k]
    assert all(torch.equal(first[k], start[k]) for k in start)
    assert all(torch.equal(second[k], start[k]) for k in lm)
    assert not all(torch.equal(second[k], start[k]) for k in projector)


@pytest.mark.parametrize(("check", "question"), [("relation word", "Describe the"), ("relative word", "relative")])
def test_relation_word_checks_read_the_relation_word_of_their_task(world, monkeypatch, check, question):
    """``relation word`` reads descriptions, ``relative word`` answers to "Where is A relative to B?"; both score
    the relation words only."""
    import analysis_lib.training.clip_llava as training
    from analysis_lib.data.toyworld import RELATION_PHRASES, sample_scenes

    seen = {}

    def recording(model, tokenizer, fmt, conversations, features, words):
        seen.update(conversations=conversations, words=words)
        return 0.5

    monkeypatch.setattr(training, "word_accuracy", recording)
    scenes = sample_scenes(6, world, seed=0)
    result = training.held_out_check(check, None, None, TOY_FORMAT, scenes, None, training.LlavaTrainConfig())
    assert result == {"value": 0.5}
    assert all(question in turns[0][0] for turns in seen["conversations"])
    answers = [turns[0][1] for turns in seen["conversations"]]
    assert all(RELATION_PHRASES[scene.relation] in answer for scene, answer in zip(scenes, answers))
    assert set(seen["words"]) == {p.split()[0] for p in RELATION_PHRASES.values()}


@pytest.mark.parametrize("pairs", [False, True])
def test_training_batch_fills_the_batch_and_pairs_each_yes_no_question_with_its_opposite(world, pairs):
    scenes = sample_scenes(200, world, 0)
    cfg = LlavaTrainConfig(batch_size=32, yes_no_pairs=pairs)
    rows, conversations = training_batch(scenes, 150, dict(INSTRUCTION_MIX), cfg, np.random.default_rng(0))
    assert len(rows) == len(conversations) == 32 and rows.max() < 150
    yes_no = [k for k, (turn,) in enumerate(conversations) if turn.answer in ("Yes", "No")]
    if not pairs:
        assert len(set(rows)) == 32 and yes_no
        return
    assert len(set(rows)) < 32
    for k in yes_no[::2]:  # each pair: the same scene, its true caption then a false one
        (first,), (second,) = conversations[k], conversations[k + 1]
        assert rows[k] == rows[k + 1] and (first.answer, second.answer) == ("Yes", "No")
        assert relational_caption(scenes[rows[k]]) in first.question
        assert relational_caption(scenes[rows[k]]) not in second.question


def test_quote_batch_asks_about_the_written_segment_and_labels_the_answer_and_only_true_quotes():
    tok = llava_tokenizer()
    ids, mask, labels = quote_batch(tok, LmPretrainConfig(), 200, np.random.default_rng(0))
    answers = {"yes": 0, "no": 0}
    for row in range(len(ids)):
        words = tok.convert_ids_to_tokens(ids[row][mask[row] == 1])
        learned = tok.convert_ids_to_tokens(ids[row][labels[row] != -100])
        quote_start = words.index('"') + 1
        quote = words[quote_start : words.index('"', quote_start)]
        context = words[3 : quote_start - 5]  # <s> user : segment filler, then: does this figure show "
        answer = learned[-2]
        answers[answer] += 1
        assert learned[-1] == "</s>" and words[-3:] == [":", answer, "</s>"]
        if answer == "yes":
            assert context[: len(quote)] == quote and learned[:-2] == quote
        else:
            segment = context[: len(quote)]
            differ = [i for i in range(len(quote)) if quote[i] != segment[i]]
            swapped = len(differ) == 2 and sorted(quote) == sorted(segment)
            assert len(differ) == 1 or swapped
            assert learned == ["no", "</s>"]
    assert min(answers.values()) > 60


def test_held_out_objects_are_never_named_in_a_training_turn_though_foils_would_name_them(world):
    held_out = ("red circle", "green square")
    scenes = [s for s in sample_scenes(600, world, 0) if not shows_any(s, held_out)]
    mix = {"yes/no": 1.0, "describe": 1.0, "list": 1.0, "relative": 1.0, "where": 1.0}

    def turns(cfg: LlavaTrainConfig) -> list[Turn]:
        rng = np.random.default_rng(0)
        batches = [training_batch(scenes, len(scenes), mix, cfg, rng)[1] for _ in range(40)]
        return [turn for batch in batches for (turn,) in batch]

    told = turns(LlavaTrainConfig(batch_size=32))
    assert any(names_any(turn, held_out) for turn in told)  # foils recolour or reshape into them
    untold = turns(LlavaTrainConfig(batch_size=32, held_out_objects=held_out))
    assert not any(names_any(turn, held_out) for turn in untold)
    assert {turn.answer for turn in untold} >= {"Yes", "No"}


def test_held_out_objects_key_only_the_llava_that_holds_them_out():
    plain = ToySetup()
    held = ToySetup(llava_train=LlavaTrainConfig(held_out_objects=("red circle",)))
    assert "held_out_objects" not in plain.llava_spec(0)["llava_train"]
    assert held.llava_spec(0)["llava_train"]["held_out_objects"] == ("red circle",)
    assert held.clip_spec(0) == plain.clip_spec(0)


def test_a_turn_that_always_names_a_held_out_object_is_refused_with_a_hint():
    with pytest.raises(RuntimeError, match="hold out fewer objects"):
        untold(lambda: Turn("Where is the red circle?", "top left"), ("red circle",), tries=5)
    assert untold(lambda: Turn("Where is the red circle?", "top left"), ()).answer == "top left"
