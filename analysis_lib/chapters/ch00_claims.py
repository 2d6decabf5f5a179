"""Chapter 0, "The claims at a glance": every claim of the paper (REFERENCE numbering) as one paired effect
measured by a chapter, read from that chapter's ``results/<chapter>/<scale>/metrics.csv``: how many seeds show it
(k of n), its mean with a percentile bootstrap 95% interval over seeds, the controls that qualify it, and a verdict
by the rule of ``analysis_lib.stats.verdicts``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis_lib.book.runner import chapter_title, chapters, read_chapter
from analysis_lib.chapters import ch01_same_encoder as ch01
from analysis_lib.chapters import ch02_tokens as ch02
from analysis_lib.chapters import ch03_positions as ch03
from analysis_lib.chapters import ch04_prompt_weighting as ch04
from analysis_lib.chapters import ch05_not_sufficient as ch05
from analysis_lib.chapters import ch06_contrastive_conversion as ch06
from analysis_lib.chapters import ch07_clip_to_dino as ch07
from analysis_lib.core.cache import take_used, use_record
from analysis_lib.core.results import atomic_write, git_commit, package_versions, results_dir
from analysis_lib.stats.seed_stats import (
    INTERVAL,
    MARGIN,
    SHARE_INTERVAL,
    interval_caveat,
    k_of_n,
    seed_interval,
    share_interval,
)
from analysis_lib.stats.verdicts import (
    ALIKE,
    BETTER,
    CONFOUNDED,
    GREATER,
    NOT_TESTABLE,
    REPRODUCED,
    RULE,
    VERDICTS,
    WORSE,
    control_passes,
    room,
    shows,
    verdict,
)
from analysis_lib.toy.toy_runs import CHANCE, CLIP_NAME, LLAVA_NAME, headline

CHAPTER = "00_claims"
NOT_RUN = "not run"  # the chapter has no results at this scale
NOT_MEASURED = "not measured"  # the chapter ran at this scale, but not this test on both sides
NOT_RUN_YET = "not run in the toy yet"


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a ``(model, condition)`` row set of a chapter's metrics."""

    model: str
    condition: str
    label: str


@dataclass(frozen=True)
class Control:
    """A control that qualifies a claim effect. With ``test`` it is measured and enters the verdict: on every seed,
    the claim's variant (the side that is not its baseline) must stay within ``MARGIN`` of the baseline on ``test``.
    Without, it is measured in ``where`` (a chapter or another claim), or, if that is empty, not run yet."""

    label: str
    test: str | None = None
    where: str = ""


@dataclass(frozen=True)
class ClaimEffect:
    """One claim as a measured effect: ``better`` minus ``worse`` on ``test`` in ``chapter``'s metrics.

    ``kind``: ``greater`` (the claim says ``better`` wins) or ``alike`` (the claim says the two do not differ);
    ``baseline``: which side is the reference the other (the variant) is compared to; ``controls``: what qualifies it.
    """

    claim: str
    statement: str
    paper: str
    chapter: str
    test: str
    better: Side
    worse: Side
    kind: str = GREATER
    baseline: str = WORSE
    controls: tuple[Control, ...] = ()


def _same(model: str, label: str) -> Side:
    """A side whose model and condition carry the same name (chapters 2-5 store variants that way)."""
    return Side(model, model, label)


UNTRAINED_VIT = Control(
    "LLaVA on an untrained (randomly initialised, frozen) ViT with the same recipe: is it CLIP's "
    "encoder that holds the relation, or the pixels?",
    where="chapter 1, its untrained frozen ViT variant",
)
HELD_OUT = Control(
    "held-out compositions: relation questions about objects the instruction data never showed or named: "
    "does LLaVA read the relation, or recall it?",
    where="chapter 1, its held-out-objects variant",
)
OTHER_QUESTIONS = Control(
    "LLaVA asked in wordings it was not instruction-tuned on (the toy LLaVA saw the test's own "
    "yes/no question in training)",
    where="chapter 4, its other question templates",
)
FAIR_CONTRASTIVE = Control(
    "the fair contrastive baseline: CLIP's locked tower given LLaVA's relational supervision "
    "(NegCLIP, image tower locked)",
    where="chapter 1, its fair contrastive baseline, and claim 5a",
)
UNCONVERTED_RECIPE = Control(
    "the conversion recipe on a LLaVA without instruction training (projector only)",
    where="chapter 6, its projector-only control",
)
UNREPORTED_PILOT = Control(
    "the conversion recipe's settings piloted on a seed that is not reported",
    where="chapter 6's pilot section on seed 5 (until chapter 6 is re-executed: benchmarks/conversion_pilot.txt)",
)

CLAIMS: tuple[ClaimEffect, ...] = (
    ClaimEffect(
        "1", "Same frozen encoder: LLaVA reads relations that CLIP's cosine misses",
        "LLaVA-1.5-7B 88.0 vs CLIP ViT-L/14-336 55.6 individual accuracy (Figure 1 average of six benchmarks)",
        "01_same_encoder", "relation 4-way",
        Side(LLAVA_NAME, ch01.MAIN, "LLaVA (VQAScore)"), Side(CLIP_NAME, ch01.MAIN, "CLIP (cosine)"),
        controls=(UNTRAINED_VIT, HELD_OUT, FAIR_CONTRASTIVE, OTHER_QUESTIONS),
    ),
    ClaimEffect(
        "1", "... and pairs of images that differ only in the objects' places",
        "pair accuracy 59.2 (LLaVA) vs 19.3 (CLIP), Figure 1 average",
        "01_same_encoder", "MMVP-style spatial pairs",
        Side(LLAVA_NAME, ch01.MAIN, "LLaVA (VQAScore)"), Side(CLIP_NAME, ch01.MAIN, "CLIP (cosine)"),
        controls=(UNTRAINED_VIT, HELD_OUT, OTHER_QUESTIONS),
    ),
    ClaimEffect(
        "1", "... and captions made of the same words in another order: the objects' roles swapped",
        "Winoground (in the Figure 1 average): LLaVA-1.5-7B far above CLIP",
        "01_same_encoder", "Winoground-style role swap: group",
        Side(LLAVA_NAME, ch01.MAIN, "LLaVA (VQAScore)"), Side(CLIP_NAME, ch01.MAIN, "CLIP (cosine)"),
        controls=(UNTRAINED_VIT, HELD_OUT),
    ),
    ClaimEffect(
        "1", "... and the objects' colours swapped (a bag of words cannot tell these captions apart)",
        "Winoground (in the Figure 1 average): LLaVA-1.5-7B far above CLIP",
        "01_same_encoder", "Winoground-style colour swap: group",
        Side(LLAVA_NAME, ch01.MAIN, "LLaVA (VQAScore)"), Side(CLIP_NAME, ch01.MAIN, "CLIP (cosine)"),
    ),
    ClaimEffect(
        "2", "Patch tokens matter: LLaVA on the CLS token alone loses its advantage",
        "the CLS-only LLaVA-1.5 (both stages retrained) loses much of its advantage over CLIP",
        "02_tokens", "relation 4-way",
        _same(ch02.ALL_PATCHES, "LLaVA, all patch tokens"),
        Side(LLAVA_NAME, "LLaVA: CLS token only", "LLaVA, CLS token only"), baseline=BETTER,
        controls=(
            Control("the CLS-only LLaVA still works where the claim does not touch it: its attribute 4-way within "
                    f"{100 * MARGIN:.0f} points of the all-patch LLaVA's", test="attribute 4-way"),
            Control("the CLS-only LLaVA passes its curriculum's stages", where="chapter 2, its stage transitions"),
        ),
    ),
    ClaimEffect(
        "2", "Extra text tokens add little to patch-aligned heads (SPARC vs PACL)",
        "SPARC's per-word text tokens add little over PACL",
        "02_tokens", "relation 4-way",
        _same(ch02.SPARC, "SPARC heads"), _same(ch02.PACL, "PACL heads"), ALIKE,
        controls=(Control("the heads read relations at all (a head at chance leaves nothing for text tokens to add "
                          "to)", where="chapter 2, the heads' rows against chance"),),
    ),
    ClaimEffect(
        "3", "The LLM's order over the image tokens carries position",
        "RoPE over the 576 image tokens helps (qualitative in the paper)",
        "03_positions", "relation 4-way",
        _same(ch03.AS_USUAL, "LLaVA, raster positions"),
        _same(ch03.condition_name("equal LM positions for all image tokens", ch03.TEST_ONLY),
              "LLaVA, equal positions (test only)"), baseline=BETTER,
        controls=(
            Control("equal positions at test time leave the LLaVA otherwise working: its attribute 4-way within "
                    f"{100 * MARGIN:.0f} points of the raster LLaVA's", test="attribute 4-way"),
            Control("both routes removed together (ViT position table zeroed and equal LM positions), retrained, "
                    "and then the tokens' order shuffled too", where="the third claim-3 row"),
        ),
    ),
    ClaimEffect(
        "3", "... and a LLaVA needs it: trained with equal LM positions, it reads relations worse",
        "RoPE over the 576 image tokens helps (qualitative in the paper)",
        "03_positions", "relation 4-way",
        _same(ch03.AS_USUAL, "LLaVA, raster positions"),
        Side(LLAVA_NAME, ch03.condition_name("equal LM positions for all image tokens", ch03.TRAINED),
             "LLaVA, equal positions (retrained)"), baseline=BETTER,
        controls=(Control("equal position ids leave the tokens' order, which a causal LM reads: the route this "
                          "retrained LLaVA keeps", where="the next row"),),
    ),
    ClaimEffect(
        "3", "... the order itself: retrained without the ViT's table and with equal LM positions, LLaVA reads "
        "relations from the image tokens' order, and shuffling that order at test takes them away",
        "RoPE over the 576 image tokens helps (qualitative in the paper)",
        "03_positions", "relation 4-way",
        Side(LLAVA_NAME, ch03.condition_name(ch03.BOTH, ch03.TRAINED), "LLaVA, both routes removed (retrained)"),
        _same(ch03.BOTH_SHUFFLED, "... its tokens' order shuffled at test"), baseline=BETTER,
        controls=(Control("shuffling the order leaves the LLaVA otherwise working: its attribute 4-way within "
                          f"{100 * MARGIN:.0f} points", test="attribute 4-way"),),
    ),
    ClaimEffect(
        "4", "A question prompt (VQAScore) beats scoring the caption alone, with no question",
        "VQAScore beats the caption's own likelihood (prompt-based weighting)",
        "04_prompt_weighting", "relation 4-way",
        Side(LLAVA_NAME, ch04.T2V, "VQAScore"), Side(LLAVA_NAME, ch04.CAPTION_ONLY, "caption likelihood"),
        controls=(Control("the caption likelihood in a prompt layout the toy LLaVA was trained on",
                          where="the next row"),),
    ),
    ClaimEffect(
        "4", "... and the caption after the describe question the toy LLaVA was trained on",
        "VQAScore beats the caption's own likelihood (prompt-based weighting)",
        "04_prompt_weighting", "relation 4-way",
        Side(LLAVA_NAME, ch04.T2V, "VQAScore"), Side(LLAVA_NAME, ch04.DESCRIBE, "caption likelihood after 'Describe'"),
    ),
    ClaimEffect(
        "5a", "Better data alone does not close the gap: LLaVA stays ahead of NegCLIP (image tower locked)",
        "NegCLIP-style fine-tuning with the image tower locked stays near CLIP",
        "05_not_sufficient", "relation 4-way",
        _same(LLAVA_NAME, "LLaVA (VQAScore)"), _same(ch05.NEGCLIP_LOCKED, "NegCLIP, tower locked"),
        controls=(OTHER_QUESTIONS,),
    ),
    ClaimEffect(
        "5b", "A stronger text encoder does not close the gap: LLaVA stays ahead of an LM text tower",
        "LLM2CLIP-L-14-336 on What'sUp A 4-way 30.6% (chance 25%)",
        "05_not_sufficient", "relation 4-way",
        _same(LLAVA_NAME, "LLaVA (VQAScore)"), _same(ch05.LM_TOWER, "LM text tower"),
        controls=(Control("the LM text tower with the image tower unlocked",
                          where="chapter 5, its LM text tower with the image tower unlocked"),),
    ),
    ClaimEffect(
        "6", "Converted into an embedding model (VLM2Vec), LLaVA still beats CLIP under CLIP's cosine protocol",
        "LLaVA-1.5-7B converted by contrastive fine-tuning (VLM2Vec) still beats CLIP with cosine scores",
        "06_contrastive_conversion", "relation 4-way",
        _same(ch06.MAIN, "converted LLaVA (cosine)"), _same(CLIP_NAME, "CLIP (cosine)"),
        controls=(UNCONVERTED_RECIPE, UNREPORTED_PILOT),
    ),
    ClaimEffect(
        "6", "... and on pairs of images that differ only in the objects' places",
        "the converted model keeps an advantage on pair tests",
        "06_contrastive_conversion", "MMVP-style spatial pairs",
        _same(ch06.MAIN, "converted LLaVA (cosine)"), _same(CLIP_NAME, "CLIP (cosine)"),
        controls=(UNCONVERTED_RECIPE, UNREPORTED_PILOT),
    ),
    ClaimEffect(
        "7", "Merging every CLIP layer (COMM) beats LLaVA-1.5's last-but-one layer",
        "COMM: multi-level CLIP features beat the penultimate layer alone",
        "07_clip_to_dino", "relation 4-way",
        Side(LLAVA_NAME, ch07.CLIP_COMM, "CLIP multi-level merge"), _same(ch07.PENULTIMATE, "CLIP layer -2"),
    ),
    ClaimEffect(
        "7", "A self-supervised encoder beats CLIP on fine-grained perception",
        "DINOv2 beats CLIP on fine-grained perception (COMM, MMVP)",
        "07_clip_to_dino", "attribute 4-way",
        Side(LLAVA_NAME, ch07.SSL_ONLY, "SSL encoder"), _same(ch07.PENULTIMATE, "CLIP layer -2"),
    ),
    ClaimEffect(
        "7", "Merging CLIP's and the SSL encoder's layers (COMM) beats CLIP's last-but-one layer",
        "COMM (CLIP + DINOv2 multi-level) beats LLaVA-1.5's CLIP features",
        "07_clip_to_dino", "relation 4-way",
        Side(LLAVA_NAME, ch07.CLIP_SSL, "CLIP + SSL merged"), _same(ch07.PENULTIMATE, "CLIP layer -2"),
    ),
)  # fmt: skip
"""Every claim the book measures, in REFERENCE order, each read from the chapter that measures it."""


def read_metrics(chapter: str, scale: str, root: Path | None) -> pd.DataFrame | None:
    """A chapter's ``metrics.csv`` at ``scale``, or None when that chapter has not been run."""
    path = results_dir(chapter, scale, root) / "metrics.csv"
    return pd.read_csv(path) if path.is_file() else None


def side_values(metrics: pd.DataFrame, side: Side, test: str, seeds: list[int]) -> pd.Series:
    """Per-seed values of one side on one headline test, for those of ``seeds`` it has (indexed by seed)."""
    rows = headline(metrics)
    mine = rows[(rows.model == side.model) & (rows.condition == side.condition) & (rows.test == test)]
    mine = mine[mine.seed.isin(seeds)]
    return mine.set_index("seed")["value"].sort_index()


def controls_pass(claim: ClaimEffect, metrics: pd.DataFrame, seeds: list[int]) -> np.ndarray | None:
    """Per seed of ``seeds``, whether the claim's variant passes every measured control (a seed without a control's
    numbers fails it); None when the claim has no measured control."""
    measured = [control for control in claim.controls if control.test]
    if not measured:
        return None
    variant, baseline = (claim.worse, claim.better) if claim.baseline == BETTER else (claim.better, claim.worse)
    passes = np.ones(len(seeds), dtype=bool)
    for control in measured:
        mine, reference = (
            side_values(metrics, side, control.test, seeds).reindex(seeds) for side in (variant, baseline)
        )
        passes &= control_passes(mine, reference)
    return passes


def _signed(values: np.ndarray) -> str:
    """Differences as signed accuracy points: ``+72.5, +74.2``."""
    return ", ".join(f"{100 * v:+.1f}" for v in values)


def claim_row(claim: ClaimEffect, metrics: pd.DataFrame | None, seeds: list[int]) -> dict:
    """One scoreboard row: both sides' means, the paired effect per seed with its mean and bootstrap interval, how
    many seeds show it (k of n, with the exact interval of the share), the baseline's room, the seeds failing a
    control, and the verdict."""
    row = {"claim": claim.claim, "statement": claim.statement, "paper": claim.paper, "chapter": claim.chapter,
           "test": claim.test, "comparison": f"{claim.better.label} - {claim.worse.label}",
           "kind": claim.kind, "baseline": claim.baseline}  # fmt: skip
    if metrics is None:
        return {**row, "verdict": NOT_RUN}
    better = side_values(metrics, claim.better, claim.test, seeds)
    worse = side_values(metrics, claim.worse, claim.test, seeds)
    common = list(better.index.intersection(worse.index))
    if not common:
        return {**row, "verdict": NOT_MEASURED}
    better, worse = better[common], worse[common]
    effect = (better - worse).to_numpy()
    mean, low, high = seed_interval(effect)
    k, n = int(shows(claim.kind, effect).sum()), len(common)
    share_low, share_high = share_interval(k, n)
    headroom = room(claim.baseline, float((better if claim.baseline == BETTER else worse).mean()), CHANCE[claim.test])
    passes = controls_pass(claim, metrics, common)
    failed = [] if passes is None else [seed for seed, ok in zip(common, passes) if not ok]
    return {**row, "better": float(better.mean()), "worse": float(worse.mean()), "effect": mean, "ci95_low": low,
            "ci95_high": high, "interval": INTERVAL, "per seed": _signed(effect), "seeds": n, "showing": k,
            "share_low": share_low, "share_high": share_high, "room": headroom,
            "control failed on seeds": ", ".join(map(str, failed)),
            "verdict": verdict(claim.kind, effect, headroom, passes)}  # fmt: skip


def scoreboard(
    claims: tuple[ClaimEffect, ...], scale: str, root: Path | None = None, seeds: list[int] = (0, 1, 2)
) -> pd.DataFrame:
    """One row per claim effect at ``scale`` over ``seeds`` (chapters without results: verdict ``not run``)."""
    cache: dict[str, pd.DataFrame | None] = {}
    rows = []
    for claim in claims:
        if claim.chapter not in cache:
            cache[claim.chapter] = read_metrics(claim.chapter, scale, root)
        rows.append(claim_row(claim, cache[claim.chapter], list(seeds)))
    return pd.DataFrame(rows)


def is_measured(row: dict) -> bool:
    """Whether a scoreboard row has numbers (its chapter ran this test on both sides)."""
    return row["verdict"] not in (NOT_RUN, NOT_MEASURED)


def effect_text(row: dict) -> str:
    """An effect as text: ``+72.7 points (bootstrap 95% CI +71.2 to +74.2; per seed +72.5, +74.2, +71.2)``."""
    if not is_measured(row):
        return "—"
    return (f"{100 * row['effect']:+.1f} points (bootstrap 95% CI {100 * row['ci95_low']:+.1f} to "
            f"{100 * row['ci95_high']:+.1f}; per seed {row['per seed']})")  # fmt: skip


def showing_text(row: dict) -> str:
    """How many seeds show an effect, with the exact interval of the share: ``3 of 3 (29%-100%)``."""
    if not is_measured(row):
        return "—"
    return f"{k_of_n(row['showing'], row['seeds'])} ({row['share_low']:.0%}-{row['share_high']:.0%})"


def seed_caveat(board: pd.DataFrame) -> str:
    """A line saying the intervals are of limited validity when an effect rests on fewer than ``MIN_SEEDS`` seeds."""
    measured = board[[is_measured(row) for row in board.to_dict("records")]]
    caveat = interval_caveat(int(measured["seeds"].min())) if len(measured) else ""
    return f"*Fewest seeds behind an effect: {caveat}.*" if caveat else ""


def markdown_table(board: pd.DataFrame, chapter_titles: dict[str, str]) -> str:
    """The scoreboard as a Markdown table whose chapter cells link to the chapters' pages, and the seed caveat."""
    lines = [f"| claim | what the toy tests | paper | toy: A - B, mean over seeds ({INTERVAL}) and per seed | "
             f"seeds showing it ({SHARE_INTERVAL}) | verdict | chapter |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in board.to_dict("records"):
        link = f"[{chapter_titles.get(row['chapter'], row['chapter'])}]({row['chapter']}.html)"
        lines.append(f"| {row['claim']} | {row['statement']} ({row['comparison']}, {row['test']}) | {row['paper']} | "
                     f"{effect_text(row)} | {showing_text(row)} | **{row['verdict']}** | {link} |")  # fmt: skip
    return "\n".join(lines) + "\n\n" + seed_caveat(board)


def control_status(control: Control, row: dict) -> str:
    """Where a control stands for one scoreboard row: its result per seed, where it is measured, or not run."""
    if control.test is None:
        return f"measured in {control.where}" if control.where else f"**{NOT_RUN_YET}**"
    if not is_measured(row):
        return row["verdict"]
    failed = row["control failed on seeds"]
    return f"**fails** on seed(s) {failed}" if failed else f"passes on every seed ({row['seeds']})"


def controls_markdown(claims: tuple[ClaimEffect, ...], board: pd.DataFrame) -> str:
    """Per claim effect, the controls that qualify it, each with where it stands, as a Markdown list."""
    lines = []
    for claim, row in zip(claims, board.to_dict("records")):
        lines.append(f"* Claim {claim.claim}, {claim.statement[0].lower()}{claim.statement[1:]} ({claim.test}):"
                     + ("" if claim.controls else " no control beyond the rule's room check."))  # fmt: skip
        lines += [f"    * {control.label}: {control_status(control, row)}." for control in claim.controls]
    return "\n".join(lines)


def chapter_titles() -> dict[str, str]:
    """Every chapter's title (its first heading), by chapter stem."""
    return {path.stem: chapter_title(read_chapter(path), path.stem) for path in chapters()}


def chapter_list(board: pd.DataFrame) -> str:
    """The book's chapters as a Markdown list: a link to each, and its one-line finding where it has one."""
    findings = chapter_findings(board)
    lines = []
    for stem, title in chapter_titles().items():
        if stem == CHAPTER:
            continue
        finding = findings.get(stem, "its claims enter this page once they are listed in `ch00_claims.CLAIMS`.")
        lines.append(f"{int(stem[:2])}. [{title}]({stem}.html): {finding}")
    return "\n".join(lines)


def full_scale_section(root: Path | None, seeds: list[int]) -> str:
    """The scoreboard at full scale as Markdown when any chapter has full-scale results, else a line saying so."""
    board = scoreboard(CLAIMS, "full", root, seeds)
    if board["verdict"].isin([NOT_RUN, NOT_MEASURED]).all():
        return ("No chapter has full-scale results yet (`results/<chapter>/full/`); run a chapter with "
                "`-p scale full` on a GPU with the weights, then re-run this page.")  # fmt: skip
    return markdown_table(board, chapter_titles())


def verdict_reason(row: dict) -> str:
    """Why a measured effect got its verdict, in a few words."""
    if row["verdict"] == NOT_TESTABLE:
        return (f"its baseline leaves {100 * row['room']:.1f} points of room, under the {100 * MARGIN:.0f}-point "
                "margin an effect must clear")  # fmt: skip
    if row["verdict"] == CONFOUNDED:
        return f"its variant fails a control on seed(s) {row['control failed on seeds']}, where the effect shows"
    return f"{k_of_n(row['showing'], row['seeds'])} seeds show it"


def caveat_lines(board: pd.DataFrame) -> str:
    """A Markdown bullet per claim effect the toy does not fully reproduce, with the reason its verdict gives and a
    pointer to where its chapter says why."""
    lines = [f"* Claim {row['claim']}, {row['statement'][0].lower()}{row['statement'][1:]} ({row['test']}): "
             f"**{row['verdict']}**, {verdict_reason(row)}; [chapter {int(row['chapter'][:2])}]({row['chapter']}.html) "
             f"discusses it, in its findings and where the toy differs from the paper."
             for row in board.to_dict("records") if is_measured(row) and row["verdict"] != REPRODUCED]  # fmt: skip
    return "\n".join(lines) or "Every claim effect with results is reproduced."


def chapter_findings(board: pd.DataFrame) -> dict[str, str]:
    """Each chapter's one-line finding: its first claim effect in words."""
    lines = {}
    for chapter, rows in board.groupby("chapter", sort=False):
        row = rows.iloc[0].to_dict()
        if not is_measured(row):
            lines[chapter] = f"{row['verdict']} yet at this scale."
            continue
        lines[chapter] = (f"{row['comparison']} on {row['test']}: {100 * row['better']:.1f}% vs "
                          f"{100 * row['worse']:.1f}%, {effect_text(row)}; {k_of_n(row['showing'], row['seeds'])} "
                          f"seeds show it; {row['verdict']}.")  # fmt: skip
    return lines


def verdict_counts(board: pd.DataFrame) -> pd.Series:
    """How many claim effects got each verdict."""
    return board["verdict"].value_counts().reindex([*VERDICTS, NOT_MEASURED, NOT_RUN], fill_value=0)


def run_record(chapter: str, scale: str, root: Path | None) -> dict | None:
    """A chapter's ``run.json`` at ``scale`` (seeds, versions, commit), or None when it has not been run."""
    path = results_dir(chapter, scale, root) / "run.json"
    return json.loads(path.read_text()) if path.is_file() else None


def provenance(board: pd.DataFrame, scale: str, root: Path | None, seeds: list[int]) -> pd.DataFrame:
    """Per chapter in the scoreboard: its run's seeds, those of ``seeds`` it lacks, its commit and torch version."""
    rows = []
    for chapter in dict.fromkeys(board["chapter"]):
        record = run_record(chapter, scale, root)
        if record is None:
            rows.append({"chapter": chapter, "seeds": "not run"})
            continue
        ran = record["parameters"].get("seeds", [])
        rows.append({"chapter": chapter, "seeds": str(ran), "missing seeds": str([s for s in seeds if s not in ran]),
                     "commit": record.get("git_commit", "unknown")[:10],
                     "torch": record.get("versions", {}).get("torch")})  # fmt: skip
    return pd.DataFrame(rows)


def effect_frame(board: pd.DataFrame) -> pd.DataFrame:
    """The rows with results, each with a ``label`` for the forest plot."""
    done = board[[is_measured(row) for row in board.to_dict("records")]].copy()
    done["label"] = [f"claim {c}: {s}, {t}" for c, s, t in zip(done["claim"], done["comparison"], done["test"])]
    return done.reset_index(drop=True)


def save_results(board: pd.DataFrame, scale: str, smoke: bool, seeds: list[int], root: Path | None,
                 seconds: float) -> Path:  # fmt: skip
    """Write ``scoreboard.csv`` and ``run.json`` (the rule, the seeds, versions) under
    ``<root>/00_claims/<scale>[-smoke]``."""
    folder = results_dir(CHAPTER, scale + ("-smoke" if smoke else ""), root)
    atomic_write(folder / "scoreboard.csv", board.to_csv(index=False, float_format="%.6g"))
    record = {"chapter": CHAPTER, "scale": scale, "parameters": {"scale": scale, "seeds": seeds, "smoke": smoke},
              "margin": MARGIN, "verdict_rule": RULE, "interval": INTERVAL, "share_interval": SHARE_INTERVAL,
              "total_wall_seconds": seconds, "cache": use_record(take_used()),
              "versions": package_versions(), "git_commit": git_commit()}  # fmt: skip
    atomic_write(folder / "run.json", json.dumps(record, indent=2, sort_keys=True, default=str))
    return folder
