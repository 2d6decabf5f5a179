"""Probe one image pair: two images, two statements (statement j describes image j), scored by CLIP
and by LLaVA as MMVP-VLM scores a pair — in a notebook, in a JupyterLab widget (``pair_probe.widget(seed=0)``),
or from the shell::

    python -m analysis_lib.book.pair_probe dog_left.jpg dog_right.jpg \\
        --text "a dog facing left" --text "a dog facing right" \\
        --clip open_clip:ViT-L-14-336/openai --llava llava-hf/llava-1.5-7b-hf

Without ``--clip``/``--llava`` the toy models of ``--toy-seed`` are used (trained on first use). They judge
only the toy world's scenes: 24x24 images of two objects of its shapes and colours, described in its words.
The rule for when their verdict means something: both images are 24x24 (anything else is letterboxed to
that size and is not a toy scene) and both statements use only the toy world's words (a warning names any
other word). Otherwise the scores are printed without picks or verdicts, with a note that says why.

Images, statements (no control tokens such as ``<image>`` or ``</s>``; for the toy models at most
``TOY_MAX_WORDS`` words), the model names, the device and the seed are checked before any model loads or
trains; a bad one is one error that says what to change.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from transformers import PreTrainedTokenizerBase

from analysis_lib.core.images import image_from_bytes, load_image
from analysis_lib.data.tokenization import is_word_level, unknown_words, vocabulary_warnings, word_tokenizer
from analysis_lib.data.toyworld import COLOURS, RELATION_PHRASES, SHAPES, WorldConfig
from analysis_lib.full.registry import (
    ModelNotFoundError,
    RegistryError,
    download_allowed,
    load_scorer,
    locate,
    resolve_device,
)
from analysis_lib.scoring.scorers import ImageLike
from analysis_lib.stats.metrics import NO_CHOICE, unique_argmax

TOY_WORLD = WorldConfig()  # the world chapter 1's toy models learn (toy_setup.ToySetup's default)
TOY_TEXT_POSITIONS = 32  # the toy CLIP's text positions (models.toy_clip), <s> and </s> included
TOY_MAX_WORDS = TOY_TEXT_POSITIONS - 2
CONTROL_TOKEN = re.compile(r"<\|?/?[A-Za-z_][\w.-]*\|?>")  # <image>, </s>, <pad>, <|end|>, <|eot_id|>, ...
VERDICT_COLUMNS = ["picks", "correct", "pair correct"]


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


def check_statements(texts: Sequence[str], toy: bool) -> list[str]:
    """Warnings for words the ``toy`` models do not know; ``ValueError`` for a missing statement, a control token
    in one, or (``toy``) one longer than the toy models read or with no word they know."""
    if len(texts) != 2 or not all(text.strip() for text in texts):
        raise ValueError("give two statements (statement 1 describes image 1, statement 2 image 2), neither empty")
    tokenizer = word_tokenizer(append_eos=False) if toy else None
    for number, text in enumerate(texts, start=1):
        _check_statement(number, text, tokenizer)
    return vocabulary_warnings(tokenizer, texts) if toy else []


def _check_statement(number: int, text: str, toy_tokenizer: PreTrainedTokenizerBase | None) -> None:
    """``ValueError`` if statement ``number`` writes a control token or is longer than the toy models read."""
    tokens = CONTROL_TOKEN.findall(text)
    if tokens:
        raise ValueError(
            f"statement {number} contains {', '.join(map(repr, tokens))}, which the models read as a control token "
            "(image placeholder, end of text, padding), not as words; write the statement without it"
        )
    words = len(toy_tokenizer(text, add_special_tokens=False)["input_ids"]) if toy_tokenizer else 0
    if words > TOY_MAX_WORDS:
        raise ValueError(
            f"statement {number} is {words} words long (punctuation marks count as words); the toy models read at "
            f"most {TOY_MAX_WORDS}: shorten it"
        )


def toy_verdict_problems(images: Sequence[Image.Image], texts: Sequence[str]) -> list[str]:
    """Why the toy models' picks and verdicts on this pair would mean nothing: each image that is not the toy
    world's size (so not a toy scene) and each statement with words outside its vocabulary; empty if none."""
    side, tokenizer = TOY_WORLD.image_size, word_tokenizer(append_eos=False)
    sizes = [
        f"image {n} is {im.width}x{im.height}, not a {side}x{side} toy scene"
        for n, im in enumerate(images, start=1)
        if im.size != (side, side)
    ]
    words = [
        f"statement {n} has words they do not know" for n, t in enumerate(texts, start=1) if unknown_words(tokenizer, t)
    ]
    return sizes + words


def toy_notes(problems: Sequence[str]) -> list[str]:
    """What the toy models can judge and, given ``problems``, that the table shows scores only, and why."""
    side, grid = TOY_WORLD.image_size, TOY_WORLD.grid
    relations = " / ".join(RELATION_PHRASES.values())
    scope = (
        f"the toy models judge only the toy world's scenes: {side}x{side} images of two objects ({', '.join(SHAPES)}; "
        f"{', '.join(COLOURS)}) in the cells of a {grid}x{grid} grid, one {relations} the other, described in the "
        "toy world's words (e.g. 'a red circle left of a blue square')"
    )
    if not problems:
        return [scope]
    reasons = "; ".join(problems)
    return [scope, f"scores only: picks and verdicts are left out, they would mean nothing here ({reasons})"]


def resize_notes(scorers: dict, images: Sequence[Image.Image]) -> list[str]:
    """A note per image that a scorer letterboxes to its fixed input size (the toy models: 24x24)."""
    sides = sorted({scorer.input_side for scorer in scorers.values()} - {None})
    return [
        f"image {number} ({image.width}x{image.height}) is letterboxed to {side}x{side}, the toy models' input size"
        for number, image in enumerate(images, start=1)
        for side in sides
        if image.size != (side, side)
    ]


def is_toy(scorers: dict) -> bool:
    """Whether ``scorers`` are toy models (their tokenizers know only the toy world's words)."""
    processors = [scorer.processor for scorer in scorers.values() if hasattr(scorer, "processor")]
    return any(is_word_level(processor.tokenizer) for processor in processors)


def scored_pair(
    scorers: dict, images: Sequence[Image.Image], texts: Sequence[str], toy: bool
) -> tuple[list[str], pd.DataFrame]:
    """The ``note:`` lines to show above the pair's table, and the table (for ``toy`` models without picks and
    verdicts when ``toy_verdict_problems`` finds any)."""
    problems = toy_verdict_problems(images, texts) if toy else []
    notes = resize_notes(scorers, images) + (toy_notes(problems) if toy else [])
    table = probe_pair(scorers, images, texts)
    return [f"note: {note}" for note in notes], table.drop(columns=VERDICT_COLUMNS) if problems else table


def toy_scorers(seed: int = 0, device: str = "cpu") -> dict:
    """Chapter 1's toy CLIP and LLaVA of ``seed`` (trained and cached on first use)."""
    from analysis_lib.book.runner import declared_parameters, find_chapter, read_chapter
    from analysis_lib.toy.pipeline import toy_models
    from analysis_lib.toy.toy_recipe import toy_setup
    from analysis_lib.toy.toy_runs import model_scorers

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
            statements, toy = [t.value for t in texts], is_toy(scorers)
            warnings = [f"warning: {warning}" for warning in check_statements(statements, toy)]
            notes, table = scored_pair(scorers, images, statements, toy)
            for message in warnings + notes:
                out.append_stdout(f"{message}\n")
            out.append_display_data(table)
        except ValueError as err:
            out.append_stdout(f"cannot score: {err}\n")

    button.on_click(score)
    box = widgets.VBox([widgets.HBox(uploads), *texts, button, out])
    box.score, box.uploads, box.texts, box.out = score, uploads, texts, out
    return box


def widget(seed: int = 0, clip: str | None = None, llava: str | None = None, device: str = "cpu"):
    """The pair-probe widget in one call: chapter 1's toy models of ``seed`` (trained and cached on first use), or
    the CLIP and LLaVA that ``clip`` and ``llava`` name (model names or folders, see ``analysis_lib.full.registry``)."""
    if (clip is None) != (llava is None):
        raise ValueError("give both clip and llava, or neither (toy models)")
    if seed < 0:
        raise ValueError(f"seed must be 0 or more (chapter 1's toy models are seeded 0, 1, 2, ...), got {seed}")
    device = str(resolve_device(device))
    if clip is None:
        return probe_widget(toy_scorers(seed, device))
    check_models([clip, llava])
    return probe_widget(named_scorers(clip, llava, device))


def named_scorers(clip: str, llava: str, device: str) -> dict:
    """The CLIP and LLaVA that ``clip`` and ``llava`` name, loaded."""
    return {"CLIP (cosine)": load_scorer(clip, device=device), "LLaVA (VQAScore)": load_scorer(llava, device=device)}


def check_models(specs: Sequence[str]) -> None:
    """``RegistryError`` for a model spec that names no model, or whose weights are not here and may not be fetched."""
    for spec in specs:
        try:
            locate(spec)
        except ModelNotFoundError:
            if not download_allowed(None):
                raise


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: print the pair's table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs=2, type=Path, help="the two image files")
    parser.add_argument("--text", action="append", required=True, help="statement for image 1, then for image 2")
    parser.add_argument("--clip", help="CLIP model name or folder (see analysis_lib.full.registry)")
    parser.add_argument("--llava", help="LLaVA model name or folder")
    parser.add_argument("--toy-seed", type=int, default=0, help="toy models to use when --clip/--llava are not given")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    args = parser.parse_args(argv)
    if len(args.text) != 2:
        parser.error(f"give --text twice (one statement per image), got {len(args.text)}")
    if (args.clip is None) != (args.llava is None):
        parser.error("give both --clip and --llava, or neither (toy models)")
    if args.toy_seed < 0:
        parser.error(
            f"--toy-seed must be 0 or more (chapter 1's toy models are seeded 0, 1, 2, ...), got {args.toy_seed}"
        )
    toy = args.clip is None
    try:  # every input is checked before a model loads or trains
        images = [load_image(path) for path in args.images]
        warnings = check_statements(args.text, toy)
        device = str(resolve_device(args.device))
        check_models([] if toy else [args.clip, args.llava])
    except (ValueError, RegistryError) as err:
        parser.error(str(err))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    scorers = toy_scorers(args.toy_seed, device) if toy else real_scorers(parser, args.clip, args.llava, device)
    notes, table = scored_pair(scorers, images, args.text, toy)
    for note in notes:
        print(note)
    with pd.option_context("display.width", 160, "display.max_colwidth", 60):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def real_scorers(parser: argparse.ArgumentParser, clip: str, llava: str, device: str) -> dict:
    """CLIP and LLaVA loaded from their specs; a model that cannot load is one ``parser`` error."""
    try:
        return named_scorers(clip, llava, device)
    except RegistryError as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()
