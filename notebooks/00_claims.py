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
# # The claims at a glance
#
# This book asks one question: **why do generative multimodal LLMs (LLaVA-style) perceive spatial,
# compositional and fine-grained details that CLIP misses, when both use the very same vision encoder?**
# It follows "Exploring How Generative MLLMs Perceive More Than CLIP with the Same Vision Encoder" (ACL 2025)
# and the COMM paper ("From CLIP to DINO"). Each chapter walks through one of the paper's claims on a toy world
# built so that every claim can be tested under control (rendered scenes, a toy CLIP and a toy LLaVA trained
# here, five seeds 0-4; chapters not yet re-executed since the book moved from three seeds still show seeds 0-2,
# and the page flags them), and runs the same code on the paper's real models when a GPU and the weights are there.
#
# This page is written by a run, like every chapter: it reads each chapter's `results/<chapter>/<scale>/metrics.csv`
# and turns every claim into one paired effect, **A - B** on one test, measured on every seed. A toy LLaVA's
# outcome per seed is bimodal (it learns to read the relation or it stalls), so the page says first **how many
# seeds show the effect** (k of n, with the exact Clopper-Pearson 95% interval of that share), then the mean in
# accuracy points with a percentile bootstrap 95% interval over seeds (never clipped) and the value per seed. The
# verdict follows the rule printed below: it asks whether the toy can show the effect at all (a baseline at its
# ceiling or floor cannot) and whether the variant passes its own controls, then counts seeds. Below the
# scoreboard, each claim's controls: measured, measured elsewhere, or not run yet. Nothing on this page is typed
# by hand.

# %% tags=["parameters"]
scale = "toy"  # "toy" or "full": which chapters' results to read (results/<chapter>/<scale>)
seeds = [0, 1, 2, 3, 4]  # the seeds whose results enter the effects (a chapter run without one of them is flagged)
smoke = False  # True: write this page's own results under <scale>-smoke (the inputs are read as usual)
source_root = ""  # folder holding results/<chapter>/<scale>; empty means the repository results folder
results_root = ""  # folder for this page's results/00_claims/<scale>; empty means the repository results folder
figures_root = ""  # folder for figures; empty means the repository figures folder

# %%
import time

from IPython.display import Markdown, display

from analysis_lib.book import plots
from analysis_lib.chapters import ch00_claims as chapter
from analysis_lib.stats import seed_stats, verdicts

started = time.perf_counter()
board = chapter.scoreboard(chapter.CLAIMS, scale, source_root or None, seeds)

# %% [markdown]
# ## The scoreboard

# %%
display(Markdown(verdicts.RULE))
display(Markdown(chapter.markdown_table(board, chapter.chapter_titles())))
effects = chapter.effect_frame(board)
if len(effects):
    fig = plots.effect_forest(effects, seed_stats.MARGIN, f"The claims at a glance ({scale} scale)")
    plots.save(fig, f"00_claims_{scale}", figures_root or None)
display(chapter.verdict_counts(board).rename("claim effects").to_frame())

# %% [markdown]
# ## The controls that qualify each claim
#
# A measured control enters the verdict (a seed that shows the effect but fails it makes the effect
# **confounded**); one measured elsewhere is named; one not run yet is a question the toy leaves open.

# %%
display(Markdown(chapter.controls_markdown(chapter.CLAIMS, board)))

# %% [markdown]
# ## The same claims at full scale
#
# The paper's models on the real benchmarks, where a chapter has been run with `scale="full"`.

# %%
if scale == "toy":
    display(Markdown(chapter.full_scale_section(source_root or None, seeds)))

# %% [markdown]
# ## What the toy does not reproduce
#
# A claim that the toy does not reproduce, cannot test, or cannot credit to what it names is a finding too;
# each such chapter gives the likely reason.

# %%
display(Markdown(chapter.caveat_lines(board)))

# %% [markdown]
# ## The chapters
#
# Each chapter's one-line finding is its first claim effect above, in words.

# %%
display(Markdown(chapter.chapter_list(board)))

# %% [markdown]
# ## Where the numbers come from
#
# The seeds, commit and torch version each chapter's results were made with (from its `run.json`). A chapter
# whose results lack one of this page's seeds is listed under "missing seeds" and its effects use the seeds it has.

# %%
display(chapter.provenance(board, scale, source_root or None, seeds))

# %%
folder = chapter.save_results(board, scale, smoke, seeds, results_root or None, time.perf_counter() - started)
print(f"results in {folder}")
