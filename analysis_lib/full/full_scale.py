"""Chapter 1 at full scale: the paper's CLIP and LLaVA-1.5 on What'sUp and MMVP-VLM, and, given a t2v_metrics root
(``t2v_root``), on the paper's other benchmarks (``analysis_lib.data.t2v_benchmarks``) and its Figure-1 aggregate.

Every benchmark is scored through resumable, shardable score logs
(``<results>/scores/<model>/<benchmark>.<spec hash>.part<rank>.jsonl``, keyed by the protocol version, the model,
its weights, dtype and prompt, the benchmark's texts and its images' content), so one command serves a single GPU,
``accelerate launch`` over several GPUs, and a restart after an interruption::

    accelerate launch --num_processes 4 -m analysis_lib.full.full_scale --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis_lib.core.images import ImageError, verify_images
from analysis_lib.core.results import results_dir, write_results
from analysis_lib.data.anchors import CLIP, LLAVA
from analysis_lib.data.benchmarks import (
    PUBLISHED_SIZES,
    WHATSUP_FILES,
    BenchmarkError,
    MMVPPair,
    WhatsUpItem,
    load_mmvp_statements,
    load_mmvp_vlm,
    load_whatsup,
    size_report,
)
from analysis_lib.data.t2v_benchmarks import T2VItem, load_t2v_benchmarks, t2v_size_report
from analysis_lib.full.registry import DTYPES, RegistryError, load_scorer, locate, resolve_device
from analysis_lib.full.score_log import file_digest, keyed_log, score_log_spec, slug
from analysis_lib.full.sharding import process_state, sharded_scores
from analysis_lib.full.t2v_evaluation import score_t2v_benchmark, t2v_records
from analysis_lib.scoring.evaluation import mmvp_records, mmvp_scores, whatsup_option_scores, whatsup_records
from analysis_lib.stats.retrieval_metrics import figure1_aggregate, figure1_inputs

CONDITION = "patch tokens, frozen encoder"
FIGURE1_PUBLISHED = {
    CLIP: {"individual": 0.556, "pair": 0.193},
    LLAVA: {"individual": 0.880, "pair": 0.592},
}
"""Paper Figure 1: CLIP ViT-L/14-336 and LLaVA-1.5-7B averaged over What'sUp, SugarCREPE, Winoground, NaturalBench,
SeeTRUE and MMVP."""


@dataclass(frozen=True)
class FullScaleConfig:
    """What chapter 1 runs at full scale."""

    clip_model: str = "open_clip:ViT-L-14-336/openai"
    llava_model: str = "llava-hf/llava-1.5-7b-hf"
    whatsup_root: str = "data/benchmarks/whatsup_vlms"
    mmvp_vlm_root: str = "data/benchmarks/MMVP_VLM"
    mmvp_root: str = ""  # optional: MMVP with the paper's converted statements (Questions-clip.csv); "" skips it
    t2v_root: str = ""  # optional: a t2v_metrics --root_dir (Winoground, NaturalBench, EqBen, SeeTRUE, ...); "" skips
    coco_images: str = ""  # optional: SugarCREPE's COCO val2017 folder if not <t2v_root>/val2017
    device: str = "auto"
    dtype: str = "auto"  # LLaVA: "auto" is bfloat16 on GPU, float32 on CPU
    # CLIP is small: float32 everywhere (the paper's eval_clip.py runs What'sUp under CUDA autocast, MMVP in float32)
    clip_dtype: str = "float32"
    batch_size: int = 32
    allow_download: bool = False
    strict_sizes: bool = True

    def __post_init__(self) -> None:
        """Refuse, before any work, a setting that would fail only once models load (``ValueError``: what to use)."""
        for name in ("dtype", "clip_dtype"):
            if getattr(self, name) not in ("auto", *DTYPES):
                allowed = ", ".join(map(repr, ("auto", *DTYPES)))
                raise ValueError(f"{name} {getattr(self, name)!r} is unknown; use one of {allowed}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a whole number of captions >= 1, got {self.batch_size!r}")
        resolve_device(self.device)


def load_full_benchmarks(config: FullScaleConfig) -> dict[str, list]:
    """What'sUp subsets, MMVP-VLM pairs and (if configured) the paper's MMVP statement pairs, by name; with
    ``strict_sizes`` each must have its published size."""
    whatsup = load_whatsup(Path(config.whatsup_root), only_present=not config.strict_sizes, strict=config.strict_sizes)
    benchmarks: dict[str, list] = dict(whatsup)
    rows = PUBLISHED_SIZES["MMVP-VLM"] if config.strict_sizes else None
    benchmarks["MMVP-VLM"] = load_mmvp_vlm(Path(config.mmvp_vlm_root), expected_rows=rows)
    if config.mmvp_root:
        rows = PUBLISHED_SIZES["MMVP"] if config.strict_sizes else None
        benchmarks["MMVP (statements)"] = load_mmvp_statements(Path(config.mmvp_root), expected_rows=rows)
    if config.t2v_root:
        coco = Path(config.coco_images) if config.coco_images else None
        benchmarks |= load_t2v_benchmarks(Path(config.t2v_root), only_present=True, strict=config.strict_sizes,
                                          coco_images=coco)  # fmt: skip
    return benchmarks


def _image_paths(item: WhatsUpItem | MMVPPair | T2VItem) -> tuple[Path, ...]:
    """The item's image file(s)."""
    return (item.image_path,) if isinstance(item, WhatsUpItem) else tuple(item.image_paths)


def _image_names(item: WhatsUpItem | MMVPPair) -> str:
    """The item's image file name(s)."""
    return "+".join(p.name for p in _image_paths(item))


def item_keys(items: Sequence[WhatsUpItem | MMVPPair]) -> list[str]:
    """A stable key per item: its position and image file name(s)."""
    return [f"{i}:{_image_names(item)}" for i, item in enumerate(items)]


def _item_texts(item: WhatsUpItem | MMVPPair) -> tuple[str, ...]:
    """The item's statements (MMVP pair) or caption options (What'sUp)."""
    return item.statements if isinstance(item, MMVPPair) else item.caption_options


def items_fingerprint(items: Sequence[WhatsUpItem | MMVPPair]) -> str:
    """SHA-256 of the items' image names, image contents and texts: a changed annotation file or image (same
    name, other pixels or another root) changes the score-log spec."""
    texts = [(_image_names(i), [file_digest(p) for p in _image_paths(i)], _item_texts(i)) for i in items]
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]


def is_pair_benchmark(items: Sequence) -> bool:
    """Whether a benchmark's items are MMVP-style pairs (two images, two statements)."""
    return isinstance(items[0], MMVPPair)


def score_fn(scorer, items: Sequence) -> Callable[[list], np.ndarray]:
    """Items -> one row of scores per item (What'sUp: K options; MMVP pairs: 2 images x 2 statements, flat)."""
    if is_pair_benchmark(items):
        return lambda pairs: mmvp_scores(scorer, pairs).reshape(len(pairs), 4)
    return lambda items: whatsup_option_scores(scorer, items)


def is_t2v_benchmark(items: Sequence) -> bool:
    """Whether a benchmark is one of the paper's other benchmarks (``t2v_benchmarks`` items)."""
    return isinstance(items[0], T2VItem)


def score_benchmark(scorer, model_spec: str, benchmark: str, items: list, folder: Path, batch_size: int) -> np.ndarray:
    """All scores of one model on one benchmark, resumed from and appended to its score log."""
    if is_t2v_benchmark(items):
        return score_t2v_benchmark(scorer, model_spec, benchmark, items, folder, batch_size)
    spec = score_log_spec(scorer, model_spec, benchmark, items_fingerprint(items))
    log = keyed_log(folder / "scores" / slug(model_spec) / f"{slug(benchmark)}.jsonl", spec)
    scores = sharded_scores(score_fn(scorer, items), items, item_keys(items), log, spec, batch_size, benchmark)
    return scores.reshape(len(items), 2, 2) if is_pair_benchmark(items) else scores


def benchmark_records(benchmark: str, items: list, scores: np.ndarray) -> list[dict]:
    """The metric records of one benchmark's scores."""
    if is_t2v_benchmark(items):
        return t2v_records(benchmark, items, scores)
    if is_pair_benchmark(items):
        return mmvp_records(items, scores, benchmark)
    return whatsup_records(items, scores, benchmark, grouped=benchmark.startswith("Controlled"))


def process_device(device: str) -> str:
    """``device``, except that "cuda"/"auto" on a GPU means this process's own GPU under ``accelerate launch``."""
    if device in ("cuda", "auto") and torch.cuda.is_available():
        return str(process_state().device)
    return device


def score_models(
    config: FullScaleConfig, folder: Path, models: Sequence[tuple[str, str, str, str]],
    benchmarks: dict[str, list] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Score each of ``models`` (``(model label, condition, registry spec, dtype)``), one loaded at a time, on every
    benchmark (loaded from ``config`` unless given) through the score logs under ``folder``; one metric row per
    model, benchmark and metric."""
    benchmarks = benchmarks if benchmarks is not None else load_full_benchmarks(config)
    device = process_device(config.device)
    records = []
    for model, condition, spec, dtype in models:
        scorer = load_scorer(
            spec, device=device, dtype=dtype, batch_size=config.batch_size, allow_download=config.allow_download
        )
        for benchmark, items in benchmarks.items():
            scores = score_benchmark(scorer, spec, benchmark, items, Path(folder), config.batch_size)
            rows = benchmark_records(benchmark, items, scores)
            records += [{"model": model, "condition": condition, "seed": 0, **row} for row in rows]
        del scorer
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return pd.DataFrame(records)


def same_encoder_full(config: FullScaleConfig, folder: Path, benchmarks: dict[str, list] | None = None) -> pd.DataFrame:
    """Score CLIP and LLaVA on every benchmark (loaded from ``config`` unless given, e.g. by ``preflight``);
    one metric row per model, benchmark and metric."""
    models = [(CLIP, CONDITION, config.clip_model, config.clip_dtype), (LLAVA, CONDITION, config.llava_model,
              config.dtype)]  # fmt: skip
    return score_models(config, folder, models, benchmarks)


class NotReadyError(RuntimeError):
    """Weights or benchmark files that a full-scale run needs are missing."""


def preflight(config: FullScaleConfig) -> tuple[pd.DataFrame, dict[str, list]]:
    """Check that both models' weights and every benchmark are in place and every image to be scored opens,
    without loading a model: the checks and the loaded benchmarks; one ``NotReadyError`` lists every missing
    or broken piece with what to do."""
    rows, benchmarks = [], {}
    for what, model in (("CLIP weights", config.clip_model), ("LLaVA weights", config.llava_model)):
        try:
            rows.append({"check": what, "ready": True, "detail": locate(model)})
        except RegistryError as err:
            rows.append({"check": what, "ready": False, "detail": str(err)})
    try:
        benchmarks = load_full_benchmarks(config)
        rows.append({"check": "benchmarks", "ready": True, "detail": f"{len(benchmarks)} loaded"})
    except BenchmarkError as err:
        rows.append({"check": "benchmarks", "ready": False, "detail": str(err)})
    if benchmarks:
        paths = [path for items in benchmarks.values() for item in items for path in _image_paths(item)]
        try:
            rows.append({"check": "images", "ready": True, "detail": f"{verify_images(paths)} open"})
        except ImageError as err:
            rows.append({"check": "images", "ready": False, "detail": str(err)})
    table = pd.DataFrame(rows)
    if not table.ready.all():
        problems = "\n\n".join(f"[{r.check}] {r.detail}" for r in table.itertuples() if not r.ready)
        raise NotReadyError(f"the full-scale run is not ready:\n\n{problems}")
    return table, benchmarks


def size_table(benchmarks: dict[str, list]) -> pd.DataFrame:
    """Items found per benchmark beside the published sizes; a What'sUp subset without its file shows as missing, as
    does one of the paper's other benchmarks once any of them is loaded."""
    t2v = {name: items for name, items in benchmarks.items() if items and is_t2v_benchmark(items)}
    others = {name: items for name, items in benchmarks.items() if name not in t2v}
    rows = size_report(others, expected=WHATSUP_FILES) + (t2v_size_report(t2v) if t2v else [])
    return pd.DataFrame(rows)


def figure1_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """The paper's Figure-1 aggregate of a run's metrics (``retrieval_metrics.figure1_aggregate``: individual and pair
    accuracy averaged over the benchmark groups found) beside the published CLIP ViT-L/14-336 and LLaVA-1.5-7B."""
    ours = figure1_aggregate(figure1_inputs(metrics))
    published = pd.DataFrame([{"model": f"{model} (paper)", **values} for model, values in FIGURE1_PUBLISHED.items()])
    return pd.concat([ours, published], ignore_index=True)


FULL_HEADLINE = (
    "2-way individual",
    "2-way pair",
    "2-way set",
    "4-way individual",
    "4-way pair",
    "4-way set",
    "pair all",
)


def headline_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark and headline metric, each model's accuracy with its bootstrap 95% CI."""
    rows = metrics[metrics.metric.isin(FULL_HEADLINE)].copy()
    rows["accuracy [95% CI]"] = [
        f"{r.value:.1%} [{r.ci_low:.1%}, {r.ci_high:.1%}] (n={r.n_units})" for r in rows.itertuples()
    ]
    table = rows.pivot_table(
        index=["benchmark", "metric"], columns="model", values="accuracy [95% CI]", aggfunc="first", sort=False
    )
    return table.reset_index()


def results_folder(root: Path | None = None) -> Path:
    """``<root>/01_same_encoder/full`` (root defaults to the repository's results folder)."""
    return results_dir("01_same_encoder", "full", root)


def save_full_results(metrics: pd.DataFrame, config: FullScaleConfig, folder: Path, seconds: float) -> None:
    """``metrics.csv`` and ``run.json`` (config, versions, commit) of a full-scale run."""
    record = {"chapter": "01_same_encoder", "scale": "full", "config": dataclasses.asdict(config)}
    write_results(folder, metrics, {**record, "total_wall_seconds": seconds})


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: score both models on every benchmark and write metrics.csv and run.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field in dataclasses.fields(FullScaleConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
        else:
            parser.add_argument(flag, default=field.default, type=int if field.type == "int" else str)
    parser.add_argument("--results", default=str(results_folder()), help="folder for metrics.csv, run.json, scores/")
    parser.add_argument("--check", action="store_true", help="only check that weights and benchmarks are in place")
    args = vars(parser.parse_args(argv))
    folder, check_only = Path(args.pop("results")), args.pop("check")
    try:
        config = FullScaleConfig(**args)
    except ValueError as err:
        parser.error(str(err))
    checks, benchmarks = preflight(config)
    print(checks.to_string(index=False))
    print(size_table(benchmarks).to_string(index=False))
    if check_only:
        return
    started = time.perf_counter()
    metrics = same_encoder_full(config, folder, benchmarks)
    if process_state().is_main_process:
        save_full_results(metrics, config, folder, time.perf_counter() - started)
        print(headline_table(metrics).to_string(index=False))
        print(f"results written to {folder}")


if __name__ == "__main__":
    try:
        main()
    except NotReadyError as err:
        sys.exit(f"error: {err}")
