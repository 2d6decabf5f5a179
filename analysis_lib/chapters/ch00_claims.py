"""Chapter 0, "The claims at a glance": every claim of the paper (REFERENCE numbering) as one effect measured by
a chapter, read from that chapter's ``results/<chapter>/<scale>/metrics.csv``, with its 95% CI over seeds and a
verdict computed by one stated rule."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis_lib.book import chapter_title, chapters, read_chapter
from analysis_lib.chapters import ch01_same_encoder as ch01
from analysis_lib.chapters import ch02_tokens as ch02
from analysis_lib.chapters import ch03_positions as ch03
from analysis_lib.chapters import ch04_prompt_weighting as ch04
from analysis_lib.chapters import ch05_not_sufficient as ch05
from analysis_lib.chapters import ch06_contrastive_conversion as ch06
from analysis_lib.chapters import ch07_clip_to_dino as ch07
from analysis_lib.metrics import seed_interval
from analysis_lib.results import atomic_write, git_commit, package_versions, results_dir
from analysis_lib.toy_runs import CLIP_NAME, LLAVA_NAME, headline

CHAPTER = "00_claims"
MIN_EFFECT = 0.10
"""The smallest effect (10 accuracy points) that counts as the claimed advantage, and the largest that counts as
"no difference" for a claim that two things are alike."""
REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_RUN = "reproduced", "partly", "not reproduced", "not run"
NOT_MEASURED = "not measured"  # the chapter ran at this scale, but not this test on both sides
VERDICT_RULE = (
    f"A claim that A beats B is **reproduced** when the 95% CI of A - B over seeds lies entirely above 0 and its "
    f"mean is at least {100 * MIN_EFFECT:.0f} points; **partly** when the mean is at least {100 * MIN_EFFECT:.0f} "
    f"points but "
    f"the CI reaches 0 (not every seed agrees), or the CI is above 0 but the mean is smaller; **not reproduced** "
    f"otherwise. A claim that A and B are alike (|A - B| small) is **reproduced** when the whole CI lies within "
    f"±{100 * MIN_EFFECT:.0f} points, **partly** when only the mean does, **not reproduced** otherwise. With a single "
    f"seed there is no interval, so a claim is at most **partly** reproduced. **Not run**: the chapter has no "
    f"results at this scale; **not measured**: it has, but not this test for both sides."
)


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a ``(model, condition)`` row set of a chapter's metrics."""

    model: str
    condition: str
    label: str


@dataclass(frozen=True)
class ClaimEffect:
    """One claim as a measured effect: ``better`` minus ``worse`` on ``test`` in ``chapter``'s metrics.

    ``kind``: ``greater`` (the claim says ``better`` wins) or ``alike`` (the claim says the two do not differ).
    """

    claim: str
    statement: str
    paper: str
    chapter: str
    test: str
    better: Side
    worse: Side
    kind: str = "greater"


def _same(model: str, label: str) -> Side:
    """A side whose model and condition carry the same name (chapters 2-5 store variants that way)."""
    return Side(model, model, label)


CLAIMS: tuple[ClaimEffect, ...] = (
    ClaimEffect(
        "1", "Same frozen encoder: LLaVA reads relations that CLIP's cosine misses",
        "LLaVA-1.5-7B 88.0 vs CLIP ViT-L/14-336 55.6 individual accuracy (Figure 1 average of six benchmarks)",
        "01_same_encoder", "relation 4-way",
        Side(LLAVA_NAME, ch01.MAIN, "LLaVA (VQAScore)"), Side(CLIP_NAME, ch01.MAIN, "CLIP (cosine)"),
    ),
    ClaimEffect(
        "1", "... and pairs of images that differ only in the objects' places",
        "pair accuracy 59.2 (LLaVA) vs 19.3 (CLIP), Figure 1 average",
        "01_same_encoder", "MMVP-style spatial pairs",
        Side(LLAVA_NAME, ch01.MAIN, "LLaVA (VQAScore)"), Side(CLIP_NAME, ch01.MAIN, "CLIP (cosine)"),
    ),
    ClaimEffect(
        "2", "Patch tokens matter: LLaVA on the CLS token alone loses its advantage",
        "the CLS-only LLaVA-1.5 (both stages retrained) loses much of its advantage over CLIP",
        "02_tokens", "relation 4-way",
        _same(ch02.ALL_PATCHES, "LLaVA, all patch tokens"),
        Side(LLAVA_NAME, "LLaVA: CLS token only", "LLaVA, CLS token only"),
    ),
    ClaimEffect(
        "2", "Extra text tokens add little to patch-aligned heads (SPARC vs PACL)",
        "SPARC's per-word text tokens add little over PACL",
        "02_tokens", "relation 4-way",
        _same(ch02.SPARC, "SPARC heads"), _same(ch02.PACL, "PACL heads"), "alike",
    ),
    ClaimEffect(
        "3", "The LLM's order over the image tokens carries position",
        "RoPE over the 576 image tokens helps (qualitative in the paper)",
        "03_positions", "relation 4-way",
        _same(ch03.AS_USUAL, "LLaVA, raster positions"),
        _same(ch03.condition_name("equal LM positions for all image tokens", ch03.TEST_ONLY),
              "LLaVA, equal positions (test only)"),
    ),
    ClaimEffect(
        "4", "A question prompt (VQAScore) beats scoring the caption alone",
        "VQAScore beats the caption's own likelihood (prompt-based weighting)",
        "04_prompt_weighting", "relation 4-way",
        Side(LLAVA_NAME, ch04.T2V, "VQAScore"), Side(LLAVA_NAME, ch04.CAPTION_ONLY, "caption likelihood"),
    ),
    ClaimEffect(
        "5a", "Better data alone does not close the gap: LLaVA stays ahead of NegCLIP (image tower locked)",
        "NegCLIP-style fine-tuning with the image tower locked stays near CLIP",
        "05_not_sufficient", "relation 4-way",
        _same(LLAVA_NAME, "LLaVA (VQAScore)"), _same(ch05.NEGCLIP_LOCKED, "NegCLIP, tower locked"),
    ),
    ClaimEffect(
        "5b", "A stronger text encoder does not close the gap: LLaVA stays ahead of an LM text tower",
        "LLM2CLIP-L-14-336 on What'sUp A 4-way 30.6% (chance 25%)",
        "05_not_sufficient", "relation 4-way",
        _same(LLAVA_NAME, "LLaVA (VQAScore)"), _same(ch05.LM_TOWER, "LM text tower"),
    ),
    ClaimEffect(
        "6", "Converted into an embedding model (VLM2Vec), LLaVA still beats CLIP under CLIP's cosine protocol",
        "LLaVA-1.5-7B converted by contrastive fine-tuning (VLM2Vec) still beats CLIP with cosine scores",
        "06_contrastive_conversion", "relation 4-way",
        _same(ch06.MAIN, "converted LLaVA (cosine)"), _same(CLIP_NAME, "CLIP (cosine)"),
    ),
    ClaimEffect(
        "6", "... and on pairs of images that differ only in the objects' places",
        "the converted model keeps an advantage on pair tests",
        "06_contrastive_conversion", "MMVP-style spatial pairs",
        _same(ch06.MAIN, "converted LLaVA (cosine)"), _same(CLIP_NAME, "CLIP (cosine)"),
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


def verdict(kind: str, mean: float, low: float, high: float, n_seeds: int) -> str:
    """The verdict of ``VERDICT_RULE`` for an effect's mean and 95% CI over ``n_seeds`` seeds."""
    found = _interval_verdict(kind, mean, low, high)
    return PARTLY if found == REPRODUCED and n_seeds < 2 else found


def _interval_verdict(kind: str, mean: float, low: float, high: float) -> str:
    """The verdict of ``VERDICT_RULE`` given a real 95% CI."""
    if kind == "alike":
        if -MIN_EFFECT <= low and high <= MIN_EFFECT:
            return REPRODUCED
        return PARTLY if abs(mean) <= MIN_EFFECT else NOT_REPRODUCED
    if low > 0 and mean >= MIN_EFFECT:
        return REPRODUCED
    if mean >= MIN_EFFECT or low > 0:
        return PARTLY
    return NOT_REPRODUCED


def claim_row(claim: ClaimEffect, metrics: pd.DataFrame | None, seeds: list[int]) -> dict:
    """One scoreboard row: both sides' means, the effect with its 95% CI over seeds, and the verdict."""
    row = {"claim": claim.claim, "statement": claim.statement, "paper": claim.paper, "chapter": claim.chapter,
           "test": claim.test, "comparison": f"{claim.better.label} - {claim.worse.label}",
           "kind": claim.kind}  # fmt: skip
    if metrics is None:
        return {**row, "verdict": NOT_RUN}
    better = side_values(metrics, claim.better, claim.test, seeds)
    worse = side_values(metrics, claim.worse, claim.test, seeds)
    common = better.index.intersection(worse.index)
    if common.empty:
        return {**row, "verdict": NOT_MEASURED}
    better, worse = better[common], worse[common]
    effect = better - worse
    mean, low, high = seed_interval(effect.to_numpy())
    low, high = max(-1.0, low), min(1.0, high)  # a difference of two accuracies lies in [-1, 1]
    return {**row, "better": float(better.mean()), "worse": float(worse.mean()), "effect": mean,
            "ci95_low": low, "ci95_high": high, "seeds": len(common),
            "verdict": verdict(claim.kind, mean, low, high, len(common))}  # fmt: skip


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


def effect_text(row: dict) -> str:
    """An effect as text: ``+71.3 points (95% CI 65.0 to 77.6; 3 seeds)``."""
    if row["verdict"] in (NOT_RUN, NOT_MEASURED):
        return "—"
    return (f"{100 * row['effect']:+.1f} points (95% CI {100 * row['ci95_low']:+.1f} to {100 * row['ci95_high']:+.1f}; "
            f"{row['seeds']} seeds)")  # fmt: skip


def markdown_table(board: pd.DataFrame, chapter_titles: dict[str, str]) -> str:
    """The scoreboard as a Markdown table whose chapter cells link to the chapters' pages."""
    lines = ["| claim | what the toy tests | paper | toy: A - B on the test | verdict | chapter |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for row in board.to_dict("records"):
        link = f"[{chapter_titles.get(row['chapter'], row['chapter'])}]({row['chapter']}.html)"
        lines.append(f"| {row['claim']} | {row['statement']} ({row['comparison']}, {row['test']}) | {row['paper']} | "
                     f"{effect_text(row)} | **{row['verdict']}** | {link} |")  # fmt: skip
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


def caveat_lines(board: pd.DataFrame) -> str:
    """A Markdown bullet per claim effect the toy does not fully reproduce, pointing to where its chapter says why."""
    lines = [f"* Claim {row['claim']}, {row['statement'][0].lower()}{row['statement'][1:]} ({row['test']}): "
             f"**{row['verdict']}**; [chapter {int(row['chapter'][:2])}]({row['chapter']}.html) discusses why, in "
             f"its findings and where the toy differs from the paper."
             for row in board.to_dict("records") if row["verdict"] in (PARTLY, NOT_REPRODUCED)]  # fmt: skip
    return "\n".join(lines) or "Every claim effect with results is reproduced."


def chapter_findings(board: pd.DataFrame) -> dict[str, str]:
    """Each chapter's one-line finding: its first claim effect in words."""
    lines = {}
    for chapter, rows in board.groupby("chapter", sort=False):
        row = rows.iloc[0].to_dict()
        if row["verdict"] in (NOT_RUN, NOT_MEASURED):
            lines[chapter] = f"{row['verdict']} yet at this scale."
            continue
        lines[chapter] = (f"{row['comparison']} on {row['test']}: {100 * row['better']:.1f}% vs "
                          f"{100 * row['worse']:.1f}%, {effect_text(row)}; {row['verdict']}.")  # fmt: skip
    return lines


def verdict_counts(board: pd.DataFrame) -> pd.Series:
    """How many claim effects got each verdict."""
    order = [REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_MEASURED, NOT_RUN]
    return board["verdict"].value_counts().reindex(order, fill_value=0)


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
    done = board[~board.verdict.isin([NOT_RUN, NOT_MEASURED])].copy()
    done["label"] = [f"claim {c}: {s}, {t}" for c, s, t in zip(done["claim"], done["comparison"], done["test"])]
    return done.reset_index(drop=True)


def save_results(board: pd.DataFrame, scale: str, smoke: bool, seeds: list[int], root: Path | None,
                 seconds: float) -> Path:  # fmt: skip
    """Write ``scoreboard.csv`` and ``run.json`` (the rule, the seeds, versions) under
    ``<root>/00_claims/<scale>[-smoke]``."""
    folder = results_dir(CHAPTER, scale + ("-smoke" if smoke else ""), root)
    atomic_write(folder / "scoreboard.csv", board.to_csv(index=False, float_format="%.6g"))
    record = {"chapter": CHAPTER, "scale": scale, "parameters": {"scale": scale, "seeds": seeds, "smoke": smoke},
              "min_effect": MIN_EFFECT, "verdict_rule": VERDICT_RULE, "total_wall_seconds": seconds,
              "versions": package_versions(), "git_commit": git_commit()}  # fmt: skip
    atomic_write(folder / "run.json", json.dumps(record, indent=2, sort_keys=True, default=str))
    return folder
