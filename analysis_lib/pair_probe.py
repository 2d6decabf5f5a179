"""Probe one image pair: two images, two statements (statement j describes image j), scored by CLIP
and by LLaVA as MMVP-VLM scores a pair — in a notebook, in a JupyterLab widget, or from the shell::

    python -m analysis_lib.pair_probe dog_left.jpg dog_right.jpg \\
        --text "a dog facing left" --text "a dog facing right" \\
        --clip open_clip:ViT-L-14-336/openai --llava llava-hf/llava-1.5-7b-hf

Without ``--clip``/``--llava`` the toy models of ``--toy-seed`` are used (trained on first use); they
know only the toy world's words (a warning names any other word) and see every image letterboxed to
their 24x24 input. Images and statements are checked before any model loads or trains.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from analysis_lib.images import image_from_bytes, load_image
from analysis_lib.metrics import NO_CHOICE, unique_argmax
from analysis_lib.scoring import ImageLike
from analysis_lib.tokenization import vocabulary_warnings, word_tokenizer


def statement_verdict(scores: np.ndarray, own: int) -> bool | str:
    """Whether a statement's scores with the two images pick its ``own`` image; ``no verdict`` if a score is NaN or
    infinite, ``tie`` if both are equal (neither counts as correct nor as incorrect here)."""
    choice = unique_argmax(scores)
    if choice != NO_CHOICE:
        return bool(choice == own)
    return "tie" if np.isfinite(scores).all() else "no verdict"


def pair_verdict(verdicts: Sequence[bool | str]) -> bool | str:
    """The pair's verdict: wrong if a statement is wrong, else the first undecided statement's, else right."""
    if False in verdicts:
        return False
    undecided = [v for v in verdicts if isinstance(v, str)]
    return undecided[0] if undecided else True


def probe_pair(scorers: dict, images: Sequence[ImageLike], texts: Sequence[str]) -> pd.DataFrame:
    """Per scorer and statement: its score with each image, the image it picks, and whether that is its own
    (``tie`` / ``no verdict`` where the scores pick neither image)."""
    if len(images) != 2 or len(texts) != 2:
        raise ValueError(f"a pair is 2 images and 2 statements; got {len(images)} images and {len(texts)} statements")
    rows = []
    for name, scorer in scorers.items():
        scores = scorer.score_pairs(list(images), [(i, t) for i in range(2) for t in texts]).reshape(2, 2)
        verdicts = [statement_verdict(scores[:, j], j) for j in range(2)]
        for j, (text, verdict) in enumerate(zip(texts, verdicts)):
            rows.append(
                {
                    "model": name,
                    "statement": text,
                    "score with image 1": float(scores[0, j]),
                    "score with image 2": float(scores[1, j]),
                    "picks": verdict if isinstance(verdict, str) else f"image {j + 1 if verdict else 2 - j}",
                    "correct": verdict,
                    "pair correct": pair_verdict(verdicts),
                }
            )
    return pd.DataFrame(rows)


def check_statements(texts: Sequence[str], tokenizers: Sequence = ()) -> list[str]:
    """Warnings for words the (word-level) ``tokenizers`` do not know; ``ValueError`` for a missing statement
    or one with no known word."""
    if len(texts) != 2 or not all(text.strip() for text in texts):
        raise ValueError("give two statements (statement 1 describes image 1, statement 2 image 2), neither empty")
    return list(dict.fromkeys(w for tokenizer in tokenizers for w in vocabulary_warnings(tokenizer, texts)))


def resize_notes(scorers: dict, images: Sequence[Image.Image]) -> list[str]:
    """A note per image that a scorer letterboxes to its fixed input size (the toy models: 24x24)."""
    sides = sorted({scorer.input_side for scorer in scorers.values()} - {None})
    return [
        f"image {number} ({image.width}x{image.height}) is letterboxed to {side}x{side}, the toy models' input size"
        for number, image in enumerate(images, start=1)
        for side in sides
        if image.size != (side, side)
    ]


def input_messages(scorers: dict, images: Sequence[Image.Image], texts: Sequence[str]) -> list[str]:
    """What to tell the user before the table: a ``warning:`` line per statement with unknown words, a ``note:``
    line per letterboxed image; ``ValueError`` for a missing statement or one with no known word."""
    tokenizers = [scorer.processor.tokenizer for scorer in scorers.values() if hasattr(scorer, "processor")]
    warnings = [f"warning: {warning}" for warning in check_statements(texts, tokenizers)]
    return warnings + [f"note: {note}" for note in resize_notes(scorers, images)]


def toy_scorers(seed: int = 0, device: str = "cpu") -> dict:
    """Chapter 1's toy CLIP and LLaVA of ``seed`` (trained and cached on first use)."""
    from analysis_lib.book import declared_parameters, find_chapter, read_chapter
    from analysis_lib.chapters.ch01_same_encoder import toy_setup
    from analysis_lib.pipeline import toy_models
    from analysis_lib.toy_runs import model_scorers

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
            statements = [t.value for t in texts]
            for message in input_messages(scorers, images, statements):
                out.append_stdout(f"{message}\n")
            out.append_display_data(probe_pair(scorers, images, statements))
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
    toy = args.clip is None
    try:  # every input is checked before a model loads or trains
        images = [load_image(path) for path in args.images]
        warnings = check_statements(args.text, [word_tokenizer(append_eos=False)] if toy else [])
    except ValueError as err:
        parser.error(str(err))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if toy:
        scorers = toy_scorers(args.toy_seed, args.device)
    else:
        from analysis_lib.registry import load_scorer

        scorers = {name: load_scorer(spec, device=args.device) for name, spec in
                   (("CLIP (cosine)", args.clip), ("LLaVA (VQAScore)", args.llava))}  # fmt: skip
    for note in resize_notes(scorers, images):
        print(f"note: {note}")
    table = probe_pair(scorers, images, args.text)
    with pd.option_context("display.width", 160, "display.max_colwidth", 60):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
