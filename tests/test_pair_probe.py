import io
from datetime import datetime

import numpy as np
import pytest
from PIL import Image

from analysis_lib import pair_probe
from analysis_lib.prompts import TOY_FORMAT
from analysis_lib.scoring import ClipScorer, VQAScorer
from analysis_lib.toyworld import render_all, sample_scenes

TEXTS = ["a red circle left of a blue square", "a red circle right of a blue square"]


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
    assert "picks" in box.out.outputs[0]["data"]["text/html"]
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
