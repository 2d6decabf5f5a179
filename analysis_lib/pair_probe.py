"""Probe one image pair: two images, two statements (statement j describes image j), scored by CLIP
and by LLaVA as MMVP-VLM scores a pair — in a notebook, in a JupyterLab widget, or from the shell::

    python -m analysis_lib.pair_probe dog_left.jpg dog_right.jpg \\
        --text "a dog facing left" --text "a dog facing right" \\
        --clip open_clip:ViT-L-14-336/openai --llava llava-hf/llava-1.5-7b-hf

Without ``--clip``/``--llava`` the toy models of ``--toy-seed`` are used (trained on first use).
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from analysis_lib.benchmarks import load_image
from analysis_lib.metrics import mmvp_statement_correct
from analysis_lib.scoring import ImageLike


def probe_pair(scorers: dict, images: Sequence[ImageLike], texts: Sequence[str]) -> pd.DataFrame:
    """Per scorer and statement: its score with each image, the image it picks, and whether that is its own."""
    if len(images) != 2 or len(texts) != 2:
        raise ValueError(f"a pair is 2 images and 2 statements; got {len(images)} images and {len(texts)} statements")
    rows = []
    for name, scorer in scorers.items():
        scores = scorer.score_pairs(list(images), [(i, t) for i in range(2) for t in texts]).reshape(2, 2)
        correct = mmvp_statement_correct(scores[None])[0]
        for j, text in enumerate(texts):
            rows.append(
                {
                    "model": name,
                    "statement": text,
                    "score with image 1": float(scores[0, j]),
                    "score with image 2": float(scores[1, j]),
                    "picks": f"image {j + 1 if correct[j] else 2 - j}",  # statement j's own image is j + 1
                    "correct": bool(correct[j]),
                    "pair correct": bool(correct.all()),
                }
            )
    return pd.DataFrame(rows)


def image_from_bytes(content: bytes, name: str) -> Image.Image:
    """An RGB image from uploaded bytes, or one clear error naming the file."""
    try:
        with Image.open(io.BytesIO(content)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{name} is not a readable image ({err}); upload a JPEG or PNG") from None


def toy_scorers(seed: int = 0, device: str = "cpu") -> dict:
    """Chapter 1's toy CLIP and LLaVA of ``seed`` (trained and cached on first use)."""
    from analysis_lib.book import declared_parameters, find_chapter, read_chapter
    from analysis_lib.chapters.ch01_same_encoder import model_scorers, toy_setup
    from analysis_lib.pipeline import toy_models

    chapter = declared_parameters(read_chapter(find_chapter("01")))  # the chapter's default recipe
    return model_scorers(toy_models(toy_setup(chapter["clip_steps"], smoke=False), seed, device))


def probe_widget(scorers: dict):
    """A JupyterLab widget: upload two images, type two statements, press Score."""
    import ipywidgets as widgets

    uploads = [widgets.FileUpload(accept="image/*", description=f"image {i}") for i in (1, 2)]
    texts = [widgets.Text(description=f"statement {i}", layout={"width": "60%"}) for i in (1, 2)]
    button, out = widgets.Button(description="Score", button_style="primary"), widgets.Output()

    def score(_=None) -> None:
        out.outputs = ()  # clears in JupyterLab and without a front end alike
        try:
            if not all(u.value for u in uploads) or not all(t.value.strip() for t in texts):
                raise ValueError("upload both images and type both statements first")
            images = [image_from_bytes(bytes(u.value[0]["content"]), u.value[0]["name"]) for u in uploads]
            out.append_display_data(probe_pair(scorers, images, [t.value for t in texts]))
        except ValueError as err:
            out.append_stdout(f"cannot score: {err}\n")

    button.on_click(score)
    box = widgets.VBox([widgets.HBox(uploads), *texts, button, out])
    box.score, box.uploads, box.texts, box.out = score, uploads, texts, out
    return box


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: print the pair's table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs=2, type=Path, help="the two image files")
    parser.add_argument("--text", action="append", required=True, help="statement for image 1, then for image 2")
    parser.add_argument("--clip", help="CLIP model name or folder (see analysis_lib.registry)")
    parser.add_argument("--llava", help="LLaVA model name or folder")
    parser.add_argument("--toy-seed", type=int, default=0, help="toy models to use when --clip/--llava are not given")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if len(args.text) != 2:
        parser.error(f"give --text twice (one statement per image), got {len(args.text)}")
    if (args.clip is None) != (args.llava is None):
        parser.error("give both --clip and --llava, or neither (toy models)")
    if args.clip is None:
        scorers = toy_scorers(args.toy_seed, args.device)
    else:
        from analysis_lib.registry import load_scorer

        scorers = {name: load_scorer(spec, device=args.device) for name, spec in
                   (("CLIP (cosine)", args.clip), ("LLaVA (VQAScore)", args.llava))}  # fmt: skip
    table = probe_pair(scorers, [load_image(p) for p in args.images], args.text)
    with pd.option_context("display.width", 160, "display.max_colwidth", 60):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
