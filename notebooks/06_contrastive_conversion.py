# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 6 — Is it the generative loss? Convert LLaVA into an embedding model
#
# **The claim** (REFERENCE claim 6). Chapters 1-5 compared two *ways of reading* one frozen encoder:
# CLIP's cosine between two pooled embeddings, and LLaVA's generative VQAScore. One could object that
# the difference is the autoregressive loss and the yes/no read-out, not what the model extracts from
# the image tokens. The paper answers by converting LLaVA-1.5 into an embedding model with VLM2Vec's
# recipe and scoring it with CLIP's own protocol: the image + a question become one embedding, each
# caption another, the score is their cosine. The converted model still beats CLIP, so the generative
# loss is not what matters.
#
# **What this chapter does**, on chapter 1's toy LLaVA (same seeds, cached models), with `peft`:
#
# * **The recipe** (REFERENCE §3): a LoRA adapter r=8, alpha=64, dropout 0.1, DoRA, on every attention
#   and MLP projection of the LM (vision tower and projector frozen); last-token pooling, L2-normalised;
#   InfoNCE from query to target with in-batch negatives, temperature 0.02. The adapter is merged
#   into the weights after training and the merged model is cached (safetensors).
# * **Training pairs** from the toy world's own tasks: the query is the image + a question, the target
#   the answer text: *Where is the {o1} relative to the {o2}?* (either object first) and *Describe the
#   image.* are answered by the relational caption (`a red circle left of a blue square`, sometimes
#   `a photo of ...`), *Describe the figure.* by the list of objects and their cells. Fresh scenes come
#   in groups of four (one object pair in each relation) and a batch holds 16 whole groups, so the
#   in-batch negatives include the same objects in the other relations. (A pilot on seed 0 with random
#   batches, whose negatives almost never share both objects, reached 33% held-out relation retrieval
#   after 300 steps against 73% with groups; the run below keeps it as an ablation.)
#   Training stops when a held-out retrieval check (the lower of the relation 4-way and attribute
#   retrieval accuracies on 256 held-out scenes) reaches 0.99, or at its step cap.
# * **Evaluation with CLIP's protocol** on chapter 1's sets (the same files CLIP and VQAScore are
#   scored on): per image, the query *<image> Where is the {o1} relative to the {o2}?* names the two
#   objects all its candidate captions share (no relation: it does not tell the answer); where the
#   candidates do not share both objects (the attribute control, the colour pairs) the question is
#   *Describe the image.*; the score is the cosine to each caption.
# * **Ablations**: LoRA instead of DoRA, rank 32 instead of 8 (alpha kept at 64), temperature 0.07
#   instead of 0.02, the same recipe on chapter 1's LLaVA whose LM was **not pre-trained** (does
#   conversion need the reading ability first?), and random batches instead of relation groups.
#   A control: the same recipe on chapter 1's LLaVA stopped after its projector stage (LLaVA's
#   stage 1, no instruction training): does the conversion build on what instruction training
#   taught, or does the contrastive recipe alone get there? Beside them: CLIP (cosine), LLaVA
#   (VQAScore), the LM-from-scratch LLaVA (VQAScore), and the LLaVA before conversion read the same
#   way (last token, cosine).
#
# **Where the toy differs from the paper.** The toy vocabulary is closed (45 words):
# VLM2Vec's instruction *Represent the given image with the following question:* and the paper's
# question *Is the {o1} to the left of or to the right of the {o2}?* are not toy words (they would be
# `<unk>`), so the toy query is VLM2Vec's layout `<image> {question}` with the toy's own relative
# question. The exact strings are kept for the full-scale path (`embedding_conversion.PAPER_QUERY`,
# `paper_question`). The paper trains 1000 steps at lr 2e-5 (warm-up 100) on a 7B model with batches
# gathered across GPUs; the toy adapter needs a higher rate (1e-3, warm-up 50, at most 400 steps of 64
# pairs) to move a 64-wide, 3-layer LM. The recipe was fixed on seed 0's held-out check before the
# chapter's first three seeds ran (seed 0 is one of the seeds reported, so the pilot was not held out; the section
# "The pilot, repeated" re-runs its choices on a seed that is not reported): at
# 300 steps lr 1e-3 reached 73% relation retrieval and 3e-3 63%; the final recipe runs 400 steps with a
# larger share of relative questions (0.6, describe 0.2, list 0.2).
#
# **Targets, set before the run** (table "Targets" below): the converted LLaVA beats CLIP by >= 20
# points on relation 4-way and on MMVP-style spatial pairs, and keeps attributes within 10 points of
# CLIP; no recipe choice (LoRA/DoRA, rank, temperature) moves relation 4-way by 10 points or more; the
# LLaVA whose LM was not pre-trained, converted, still beats CLIP by >= 20 points.

# %% tags=["parameters"]
scale = "toy"  # "toy" (synthetic world, CPU) or "full" (the paper's converted checkpoint on the real benchmarks)
seeds = [0, 1, 2, 3, 4]  # chapter 1's seeds: the same toy CLIP and LLaVA per seed (cached)
pilot_seeds = [5]  # seeds the chapter does not report, on which the recipe's pilot choices are re-run
device = "cpu"  # "cpu", "cuda" or "auto" (cuda when available)
torch_threads = 1  # CPU threads for torch: 1 stays fast on a shared machine; 0 is torch's default (one per core)
workers = 0  # processes that train the models not cached yet (one torch thread each): 0 is min(2, cores); 1 is this one
clip_steps = 300  # contrastive training steps of the toy CLIP (chapter 1's)
smoke = False  # True: a seconds-long run that only checks the plumbing (numbers meaningless)
results_root = ""  # folder for results/<chapter>/<scale>; empty means the repository results folder
figures_root = ""  # folder for figures; empty means the repository figures folder
whatsup_root = "data/benchmarks/whatsup_vlms"  # full scale: a checkout of amitakamath/whatsup_vlms with its images
mmvp_vlm_root = "data/benchmarks/MMVP_VLM"  # full scale: the MMVP-VLM folder (Questions.csv + image folder)
dtype = "auto"  # full scale: "auto" (bfloat16 on GPU, float32 on CPU), "bfloat16", "float16" or "float32"
batch_size = 32  # full scale: queries / captions embedded per forward pass

# %%
import time

from IPython.display import Markdown, display

from analysis_lib.book import plots
from analysis_lib.chapters import ch06_contrastive_conversion as chapter
from analysis_lib.full import full_scale
from analysis_lib.toy import toy_runs

started = toy_runs.start_chapter(scale, torch_threads)

# %% [markdown]
# ## At full scale: the paper's converted checkpoint
#
# With `scale="full"` the chapter loads the registry's `llava-1.5-7b-vlm2vec` (the paper's DoRA
# adapter `lst627/LLaVA-1.5-7B-VLM2Vec-LoRA` merged into `llava-hf/llava-1.5-7b-hf` with peft; one
# error naming every place looked when either is missing) and scores it with the same cosine code on
# What'sUp and MMVP-VLM, with the paper's query and questions. The toy sections below are skipped.

# %%
if scale == "full":
    config = full_scale.FullScaleConfig(
        whatsup_root=whatsup_root, mmvp_vlm_root=mmvp_vlm_root, device=device, dtype=dtype, batch_size=batch_size
    )
    full_metrics = chapter.conversion_full(config, full_scale.results_folder(results_root or None))
    display(full_scale.headline_table(full_metrics))

# %% [markdown]
# ## The toy world: convert, then score with CLIP's protocol

# %%
if scale == "toy":
    run = chapter.conversion_experiment(seeds, device, clip_steps, smoke, workers=workers)

# %% [markdown]
# ## Results across seeds
#
# Mean over seeds with its percentile bootstrap 95% interval over seeds (never clipped; of limited
# validity below five seeds), the per-seed values and how many seeds are at least 10 points above
# chance (a seed that crossed); `chance` is the level of a model that guesses. Rows marked
# *(cosine)* or *converted* are scored exactly as CLIP is: one embedding per image query, one per
# caption, the highest cosine wins.

# %%
if scale == "toy":
    table = chapter.comparison(run)
    display(table)
    rows = toy_runs.variant_rows(run.metrics, chapter.ORDER, chapter.TESTS)
    fig = plots.accuracy_bars(rows, toy_runs.CHANCE, "LLaVA converted to an embedding model, scored as CLIP is")
    plots.save(fig, "06_contrastive_conversion_accuracy", figures_root or None)

# %% [markdown]
# Seconds each conversion trained on one CPU thread, as recorded when it was first built (the machine
# was shared with other jobs then, so these are upper bounds):

# %%
if scale == "toy":
    display(chapter.training_seconds(run).round(0))

# %% [markdown]
# The held-out retrieval check during each conversion (a converted model that does not reach 0.99
# runs to its step cap):

# %%
if scale == "toy":
    training = chapter.training_run(run)
    transitions = toy_runs.transitions(training)
    display(transitions.drop(columns=["stage", "starts at"]))
    fig = chapter.check_figure(toy_runs.check_curves(training))
    plots.save(fig, "06_contrastive_conversion_checks", figures_root or None)

# %% [markdown]
# ## The pilot, repeated on a seed the chapter does not report
#
# The recipe's learning rate and its batches of relation groups were chosen on seed 0's held-out check,
# and seed 0 is reported above, so the choice could fit that seed. The same choices run here on
# `pilot_seeds` (chapter 1's LLaVA of each, trained the same way; no number of theirs enters a mean
# above): the chapter's recipe, the learning rate the pilot rejected (3e-3), and random batches. The
# rule, set before this run: the choice replicates on a seed if the chapter's recipe passes its held-out
# check no later than each alternative or, where none passes, reaches at least the same relation
# retrieval at the step cap.

# %%
if scale == "toy":
    pilot = chapter.pilot_checks(pilot_seeds, device, clip_steps, smoke, workers=workers)
    pilot_table = chapter.pilot_table(pilot)
    display(pilot_table)
    display(Markdown(chapter.pilot_reading(pilot)))

# %% [markdown]
# ## Targets

# %%
if scale == "toy":
    targets = chapter.target_checks(table)
    display(targets)

# %% [markdown]
# ## What the run shows

# %%
if scale == "toy":
    display(Markdown(chapter.findings(table, transitions)))

# %% [markdown]
# **Reading it** (the numbers are in the list above). The cosine protocol itself is not what fails
# CLIP: an embedding that the LLaVA's LM makes from the same frozen image tokens, compared with a
# caption's embedding by cosine, keeps the relations that CLIP's pooled embedding loses, as the paper
# finds at full scale; the autoregressive loss and the yes/no read-out are not what matters. The
# controls say what the conversion rests on:
#
# * The LLaVA before conversion, read by its last token, is at chance: the contrastive fine-tuning
#   makes the embedding, out of what the LLaVA's LM already extracts from the image tokens.
# * The in-batch negatives decide what the embedding keeps. With random batches, where almost no
#   negative shares both objects, relations are learned slowly and on some seeds not within the step
#   cap: the same pressure that lets CLIP's own contrastive training ignore relations (chapter 1).
# * The recipe's own choices (LoRA or DoRA, rank, temperature) move little.
# * Conversion of the LLaVA whose LM was not pre-trained is slower and less reliable: its held-out
#   checks climb more slowly and none passes within the step cap. With this cap the toy cannot tell
#   "conversion needs an LM that could read first" from "it needs more steps"; that LLaVA is also the
#   weaker reader by VQAScore (chapter 1).
# * MMVP-style spatial pairs are lower than relation 4-way for the converted models: a pair compares,
#   for one statement, the cosines of two different images' queries, and VLM2Vec's loss (query to
#   target only, softmax over targets) never compares queries with each other, so those cosines are
#   not calibrated across images. This is our likely explanation, not a tested one.

# %%
total = time.perf_counter() - started
if scale == "toy":
    tables = {"comparison": table, "targets": targets, "transitions": transitions, "pilot": pilot_table}
    folder = chapter.save_results(run, scale, results_root or None, total, tables)
    print(f"results in {folder}; total wall time {total:.0f} s")
