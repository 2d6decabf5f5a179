# %% [markdown]
# # The claims at a glance
#
# This book asks one question: **why do generative multimodal LLMs (LLaVA-style) perceive spatial,
# compositional and fine-grained details that CLIP misses, when both use the very same vision encoder?**
# It follows "Exploring How Generative MLLMs Perceive More Than CLIP with the Same Vision Encoder" (ACL 2025)
# and the COMM paper ("From CLIP to DINO"). Each chapter walks through one of the paper's claims on a toy world
# built so that every claim can be tested under control (rendered scenes, a toy CLIP and a toy LLaVA trained
# here, three seeds), and runs the same code on the paper's real models when a GPU and the weights are there.
#
# This page is written by a run, like every chapter: it reads each chapter's `results/<chapter>/<scale>/metrics.csv`
# and turns every claim into one measured effect, **A - B** on one test (accuracy points, mean over seeds with its
# Student-t 95% interval), and a verdict by the rule printed below. Nothing on this page is typed by hand.

# %% tags=["parameters"]
scale = "toy"  # "toy" or "full": which chapters' results to read (results/<chapter>/<scale>)
seeds = [0, 1, 2]  # the seeds whose results enter the effects (a chapter run without one of them is flagged)
smoke = False  # True: write this page's own results under <scale>-smoke (the inputs are read as usual)
source_root = ""  # folder holding results/<chapter>/<scale>; empty means the repository results folder
results_root = ""  # folder for this page's results/00_claims/<scale>; empty means the repository results folder
figures_root = ""  # folder for figures; empty means the repository figures folder

# %%
import time

from IPython.display import Markdown, display

from analysis_lib import plots
from analysis_lib.chapters import ch00_claims as chapter

started = time.perf_counter()
board = chapter.scoreboard(chapter.CLAIMS, scale, source_root or None, seeds)

# %% [markdown]
# ## The scoreboard

# %%
display(Markdown(chapter.VERDICT_RULE))
display(Markdown(chapter.markdown_table(board, chapter.chapter_titles())))
effects = chapter.effect_frame(board)
if len(effects):
    fig = plots.effect_forest(effects, chapter.MIN_EFFECT, f"The claims at a glance ({scale} scale)")
    plots.save(fig, f"00_claims_{scale}", figures_root or None)
display(chapter.verdict_counts(board).rename("claim effects").to_frame())

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
# A claim that the toy does not reproduce is a finding too; each such chapter gives the likely reason.

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
