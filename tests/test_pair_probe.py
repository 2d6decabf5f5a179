import io
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from upstream_fixtures import photo_like

from analysis_lib.book import pair_probe
from analysis_lib.core.images import load_image
from analysis_lib.data.toyworld import WorldConfig, render_all, sample_scenes
from analysis_lib.models.prompts import TOY_FORMAT
from analysis_lib.models.tiny import toy_image_processor
from analysis_lib.scoring.scorers import ClipScorer, VQAScorer, mean_colour

TEXTS = ["a red circle left of a blue square", "a red circle right of a blue square"]
IMAGE_PROCESSOR = toy_image_processor(WorldConfig())


@pytest.fixture
def scorers(tiny_models):
    clip, clip_processor, llava, llava_processor = tiny_models
    return {
        "CLIP (cosine)": ClipScorer(clip, clip_processor),
        "LLaVA (VQAScore)": VQAScorer(llava, llava_processor, TOY_FORMAT),
    }


def _images(world):
    return list(render_all(sample_scenes(2, world, seed=3), world, seed=4))


def _upload(name: str, content: bytes) -> tuple[dict]:
    """A FileUpload value as JupyterLab sets it."""
    return ({"name": name, "type": "image/png", "size": len(content), "content": memoryview(content),
             "last_modified": datetime.now()},)  # fmt: skip


def _png(image) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_probe_pair_follows_the_mmvp_rule(scorers, world):
    images = _images(world)
    table = pair_probe.probe_pair(scorers, images, TEXTS)
    assert len(table) == 4 and set(table.model) == set(scorers)
    for row in table.itertuples():
        own = "image 1" if row.statement == TEXTS[0] else "image 2"
        first = row._3 > row._4  # score with image 1 > score with image 2
        assert row.picks == ("image 1" if first else "image 2")
        assert row.correct == (row.picks == own)
    clip = scorers["CLIP (cosine)"].score_pairs(images, [(0, TEXTS[1]), (1, TEXTS[1])])
    row = table[(table.model == "CLIP (cosine)") & (table.statement == TEXTS[1])].iloc[0]
    assert np.allclose([row["score with image 1"], row["score with image 2"]], clip, atol=1e-6)


class FixedScores:
    """A scorer that gives fixed scores: ``scores[image, statement]``."""

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=float)

    def score_pairs(self, images, pairs):
        return self.scores.reshape(-1)


@pytest.mark.parametrize(
    "scores, picks, correct, pair",
    [
        ([[0.5, 0.5], [0.5, 0.5]], ["tie", "tie"], ["tie", "tie"], "tie"),
        ([[np.nan, 0.1], [np.nan, 0.9]], ["no verdict", "image 2"], ["no verdict", True], "no verdict"),
        ([[0.7, 0.5], [0.2, 0.5]], ["image 1", "tie"], [True, "tie"], "tie"),
        ([[0.7, 0.5], [0.2, 0.6]], ["image 1", "image 2"], [True, True], True),
        ([[0.1, 0.5], [0.2, 0.5]], ["image 2", "tie"], [False, "tie"], False),
    ],
)
def test_ties_and_nan_give_no_verdict_rather_than_correct(world, scores, picks, correct, pair):
    table = pair_probe.probe_pair({"fixed": FixedScores(scores)}, _images(world), TEXTS)
    assert table.picks.tolist() == picks and table.correct.tolist() == correct
    assert table["pair correct"].tolist() == [pair, pair]


def test_probe_pair_needs_two_images_and_two_statements(scorers, world):
    with pytest.raises(ValueError, match="2 images and 2 statements"):
        pair_probe.probe_pair(scorers, _images(world), TEXTS[:1])


def test_widget_scores_uploads_and_explains_bad_input(scorers, world):
    box = pair_probe.probe_widget(scorers)
    box.score()
    assert "upload both images" in box.out.outputs[0]["text"]
    for upload, image in zip(box.uploads, _images(world)):
        upload.value = _upload("x.png", _png(image))
    box.texts[0].value, box.texts[1].value = TEXTS
    box.score()
    assert "note: the toy models judge only the toy world's scenes" in box.out.outputs[0]["text"]
    assert "picks" in box.out.outputs[-1]["data"]["text/html"]  # toy scenes in toy words: a verdict
    box.uploads[1].value = _upload("broken.png", b"abc")
    box.score()
    assert "image broken.png cannot be read (empty, or not an image" in box.out.outputs[0]["text"]


def test_command_line_scores_a_pair_with_saved_models(full_setup, tmp_path, world, capsys):
    paths = []
    for i, image in enumerate(_images(world)):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.asarray(image)).save(paths[-1])
    args = [*paths, "--text", TEXTS[0], "--text", TEXTS[1], "--clip", full_setup.clip_model]
    pair_probe.main([*args, "--llava", full_setup.llava_model])
    out = capsys.readouterr().out
    assert "CLIP (cosine)" in out and "LLaVA (VQAScore)" in out and "pair correct" in out
    with pytest.raises(SystemExit):
        pair_probe.main(args)  # --clip without --llava
    assert "give both --clip and --llava" in capsys.readouterr().err


def _photos(tmp_path, sizes=((600, 512), (512, 600))) -> list[str]:
    """Photograph-sized JPEGs, as a user would pass them."""
    paths = []
    for seed, (width, height) in enumerate(sizes):
        paths.append(str(tmp_path / f"photo{seed + 1}.jpg"))
        Image.fromarray(photo_like(width, height, seed)).save(paths[-1], quality=90)
    return paths


def _no_models(*args, **kwargs):
    raise AssertionError("bad input must be refused before any model loads or trains")


def test_real_size_photographs_are_probed_end_to_end(scorers, tmp_path, monkeypatch, capsys):
    paths = _photos(tmp_path)
    monkeypatch.setattr(pair_probe, "toy_scorers", lambda seed, device: scorers)
    pair_probe.main([*paths, "--text", TEXTS[0], "--text", TEXTS[1]])
    captured = capsys.readouterr()
    assert "note: image 1 (600x512) is letterboxed to 24x24" in captured.out
    assert "note: image 2 (512x600) is letterboxed to 24x24" in captured.out
    assert "note: the toy models judge only the toy world's scenes: 24x24 images of two objects" in captured.out
    assert (
        "note: scores only: picks and verdicts are left out, they would mean nothing here (image 1 is 600x512, "
        "not a 24x24 toy scene; image 2 is 512x600, not a 24x24 toy scene)" in captured.out
    )
    assert "score with image 1" in captured.out and "warning" not in captured.err
    assert "picks" not in captured.out.splitlines()[-3] and "pair correct" not in captured.out  # no verdict shown
    photos = [load_image(path) for path in paths]
    letterboxed = [
        ImageOps.pad(photo, (24, 24), Image.Resampling.BICUBIC, mean_colour(IMAGE_PROCESSOR)) for photo in photos
    ]
    for scorer in scorers.values():
        pairs = [(i, text) for i in range(2) for text in TEXTS]
        assert np.allclose(scorer.score_pairs(photos, pairs), scorer.score_pairs(letterboxed, pairs), atol=1e-6)


@pytest.mark.parametrize(
    "sizes, texts, message",
    [
        (((600, 512), (600, 3)), TEXTS, r"photo2.jpg is 600x3 pixels; images need at least 16"),
        (((600, 512), (1, 1)), TEXTS, r"photo2.jpg is 1x1 pixels"),
        (((600, 512), (512, 600)), [TEXTS[0], "perro grande"], r"statement 2 \('perro grande'\) has no word"),
        (((600, 512), (512, 600)), [TEXTS[0], "  "], "neither empty"),
        (((600, 512), (512, 600)), [TEXTS[0], " ".join(["red"] * 31)], r"statement 2 is 31 words long .* at most 30"),
        (
            ((600, 512), (512, 600)),
            [TEXTS[0] + " ." * 23, TEXTS[1]],
            r"statement 1 is 31 words long \(punctuation marks count",
        ),
        (((600, 512), (512, 600)), ["a red <pad> circle", TEXTS[1]], r"statement 1 contains '<pad>', which the"),
        (((600, 512), (512, 600)), [TEXTS[0], "a red circle</s>"], r"statement 2 contains '</s>'"),
        (((600, 512), (512, 600)), ["<image> a red circle", TEXTS[1]], r"statement 1 contains '<image>'"),
        (((600, 512), (512, 600)), [TEXTS[0], "a red circle <|eot_id|>"], r"statement 2 contains '<\|eot_id\|>'"),
    ],
)
def test_bad_input_is_refused_before_models_load(tmp_path, monkeypatch, capsys, sizes, texts, message):
    monkeypatch.setattr(pair_probe, "toy_scorers", _no_models)
    paths = _photos(tmp_path, sizes)
    with pytest.raises(SystemExit):
        pair_probe.main([*paths, "--text", texts[0], "--text", texts[1]])
    assert re.search(message, capsys.readouterr().err)


def test_missing_and_unreadable_files_are_refused_before_models_load(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pair_probe, "toy_scorers", _no_models)
    (tmp_path / "empty.jpg").write_bytes(b"")
    for name, message in (("gone.jpg", "image not found: .*gone.jpg"), ("empty.jpg", "empty.jpg cannot be read")):
        with pytest.raises(SystemExit):
            pair_probe.main([_photos(tmp_path)[0], str(tmp_path / name), "--text", TEXTS[0], "--text", TEXTS[1]])
        assert re.search(message, capsys.readouterr().err)


def test_unknown_words_are_named_with_the_toy_vocabulary(scorers, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pair_probe, "toy_scorers", lambda seed, device: scorers)
    pair_probe.main([*_photos(tmp_path), "--text", "a dog facing left", "--text", "a dog facing right"])
    captured = capsys.readouterr()
    assert "warning: statement 1: the toy models do not know 'dog', 'facing'" in captured.err
    assert "warning: statement 2" in captured.err and "only the toy world's words: " in captured.err
    assert "circle" in captured.err and "square" in captured.err  # the vocabulary is listed
    assert "score with image 1" in captured.out  # a warning, not an error: the pair is still scored
    assert "statement 1 has words they do not know; statement 2 has words they do not know)" in captured.out
    assert "pair correct" not in captured.out  # but its verdict would mean nothing, so none is shown


def test_widget_shows_the_same_messages(scorers, tmp_path):
    box = pair_probe.probe_widget(scorers)
    for upload, path in zip(box.uploads, _photos(tmp_path)):
        upload.value = _upload(Path(path).name, Path(path).read_bytes())
    box.texts[0].value, box.texts[1].value = "a dog facing left", TEXTS[1]
    box.score()
    text = "".join(output.get("text", "") for output in box.out.outputs)
    assert "warning: statement 1: the toy models do not know 'dog', 'facing'" in text
    assert "note: image 1 (600x512) is letterboxed to 24x24" in text
    assert "note: scores only: picks and verdicts are left out" in text and "statement 1 has words they" in text
    table = box.out.outputs[-1]["data"]["text/html"]
    assert "score with image 1" in table and "picks" not in table and "pair correct" not in table
    box.texts[0].value = "perro grande"
    box.score()
    assert "cannot score: statement 1 ('perro grande') has no word the toy models know" in box.out.outputs[0]["text"]
    small = io.BytesIO()
    Image.new("RGB", (600, 3)).save(small, format="PNG")
    box.uploads[1].value = _upload("thin.png", small.getvalue())
    box.score()
    assert "cannot score: image thin.png is 600x3 pixels" in box.out.outputs[0]["text"]


def test_toy_scenes_in_toy_words_get_a_verdict_and_the_scope_note(scorers, tmp_path, world, monkeypatch, capsys):
    paths = []
    for i, image in enumerate(_images(world)):
        paths.append(str(tmp_path / f"scene{i}.png"))
        Image.fromarray(np.asarray(image)).save(paths[-1])
    monkeypatch.setattr(pair_probe, "toy_scorers", lambda seed, device: scorers)
    pair_probe.main([*paths, "--text", TEXTS[0], "--text", TEXTS[1]])
    out = capsys.readouterr().out
    assert (
        "note: the toy models judge only the toy world's scenes: 24x24 images of two objects (circle, square, "
        "triangle, cross; red, green, blue, yellow, purple, white) in the cells of a 3x3 grid" in out
    )
    assert "scores only" not in out and "letterboxed" not in out
    assert "picks" in out and "pair correct" in out  # a toy scene described in toy words: the verdict means something


def test_the_word_limit_is_the_toy_clips(scorers, tiny_models, world):
    text_positions = tiny_models[0].config.text_config.max_position_embeddings
    assert pair_probe.TOY_TEXT_POSITIONS == text_positions and pair_probe.TOY_MAX_WORDS == text_positions - 2
    longest = " ".join(["red"] * pair_probe.TOY_MAX_WORDS)
    assert pair_probe.check_statements([longest, TEXTS[1]], toy=True) == []
    assert len(pair_probe.probe_pair(scorers, _images(world), [longest, TEXTS[1]])) == 4  # scored, no error


@pytest.mark.parametrize(
    "options, message",
    [
        (["--toy-seed", "-1"], r"--toy-seed must be 0 or more .* got -1"),
        (["--device", "nonsense"], r"unknown device 'nonsense'; use 'cpu', 'cuda', 'cuda:N' or 'auto'"),
        (["--clip", "no-such", "--llava", "no-such"], r"Unknown model 'no-such': not an existing path"),
    ],
)
def test_bad_options_are_one_error_before_models_load(tmp_path, monkeypatch, capsys, options, message):
    monkeypatch.setattr(pair_probe, "toy_scorers", _no_models)
    monkeypatch.setattr(pair_probe, "load_scorer", _no_models)
    with pytest.raises(SystemExit) as info:
        pair_probe.main([*_photos(tmp_path), "--text", TEXTS[0], "--text", TEXTS[1], *options])
    err = capsys.readouterr().err
    assert info.value.code == 2 and re.search(message, err) and "Traceback" not in err


def test_weights_not_found_are_one_error_before_models_load(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pair_probe, "load_scorer", _no_models)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("ANALYSIS_LIB_MODELS", raising=False)
    monkeypatch.delenv("ANALYSIS_LIB_ALLOW_DOWNLOAD", raising=False)
    (tmp_path / "clip").mkdir()  # found, so the missing LLaVA is what stops the run, before CLIP loads
    with pytest.raises(SystemExit):
        pair_probe.main([*_photos(tmp_path), "--text", TEXTS[0], "--text", TEXTS[1], "--clip", str(tmp_path / "clip"),
                         "--llava", "llava-hf/llava-1.5-7b-hf"])  # fmt: skip
    assert "hf download llava-hf/llava-1.5-7b-hf" in capsys.readouterr().err


def test_a_folder_that_holds_no_model_is_one_error(tmp_path, capsys):
    (tmp_path / "not_a_model").mkdir()
    args = ["--clip", str(tmp_path / "not_a_model"), "--llava", str(tmp_path / "not_a_model"), "--device", "cpu"]
    with pytest.raises(SystemExit) as info:
        pair_probe.main([*_photos(tmp_path), "--text", TEXTS[0], "--text", TEXTS[1], *args])
    assert info.value.code == 2 and "not_a_model" in capsys.readouterr().err


def test_the_widget_opens_with_one_call(scorers, monkeypatch, full_setup):
    seeds = []
    monkeypatch.setattr(pair_probe, "toy_scorers", lambda seed, device: seeds.append((seed, device)) or scorers)
    box = pair_probe.widget(seed=0)
    assert seeds == [(0, "cpu")] and box.uploads and box.texts and box.score
    named = pair_probe.widget(clip=full_setup.clip_model, llava=full_setup.llava_model)
    assert seeds == [(0, "cpu")] and named.uploads
    with pytest.raises(ValueError, match="give both clip and llava, or neither"):
        pair_probe.widget(clip=full_setup.clip_model)
    with pytest.raises(ValueError, match="seed must be 0 or more"):
        pair_probe.widget(seed=-1)
