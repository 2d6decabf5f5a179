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
# # Chapter 5 — What does not suffice
#
# **The claim** (REFERENCE claim 5). If LLaVA reads relations from CLIP's encoder that CLIP's own score
# misses, could CLIP be fixed on its own terms? The paper tries three things and finds that none
# closes the gap: (a) **better training data** — CLIP fine-tuned on LLaVA-1.5's data converted to
# captions, with NegCLIP-style hard negatives (left <-> right swapped), image tower locked; (b) **a
# stronger text encoder** — LLM2CLIP's LLM-based text embeddings; (c) **more text tokens** — SPARC's
# per-word text tokens on top of patch-aligned heads.
#
# **What this chapter does**, on chapter 1's toy CLIP (same seeds, cached models), every variant
# trained on the toy LLaVA's training scenes (the same 20,000 scenes and renderings):
#
# * **(a) NegCLIP**: the toy CLIP fine-tuned on the scenes' relational captions (the toy LLaVA's
#   describe answers: its data converted to captions), each caption with a hard negative whose relation
#   is swapped (left of <-> right of, above <-> below) appended to the text batch; image->text
#   cross-entropy over the B captions and B negatives, text->image over the B images only
#   (REFERENCE §3). Once with the image tower **locked** (the paper's setting), once **unlocked**.
#   800 steps of 128 captions (about 5 epochs, as the paper's 5), AdamW at 1e-3, no weight decay.
#   A control, added after the first run: the same captions, image tower unlocked, **no** hard
#   negatives (plain symmetric InfoNCE), to tell the negatives' part from the data's.
# * **(b) LM text tower** (LLM2CLIP-style): CLIP's text tower replaced by the pre-trained toy LM of
#   chapter 1 (the same LM the toy LLaVA starts from): its last hidden state at the end token and a
#   linear projection, fine-tuned with the symmetric InfoNCE against the frozen CLIP image tower's
#   embeddings, on the same relational captions, with NegCLIP's step budget.
#   A control, added after unlocking the image tower was what moved NegCLIP: the same LM text tower
#   with the image tower **unlocked** (its vision layers and projection fine-tuned with the text tower,
#   same steps and rate), so that (a) and (b) are compared on equal terms.
# * **(c) PACL and SPARC heads** from chapter 2 (the same cached heads): patch tokens, and patch tokens
#   plus per-word text tokens.
#
# All are scored with the cosine protocol on chapter 1's relation, attribute and pair sets, beside
# CLIP and LLaVA (VQAScore).
#
# **Targets, set before the run** (table "Targets" below): NegCLIP with the image tower locked and
# the LM text tower each close less than a quarter of the CLIP-LLaVA relation 4-way gap; SPARC is
# within 10 points of PACL; unlocking the image tower lifts NegCLIP by >= 10 points (what an earlier
# prototype showed); every variant keeps attribute 4-way >= 90%.

# %% tags=["parameters"]
scale = "toy"  # only "toy": the full-scale variants need CLIP ViT-L/14-336 fine-tuned per variant (see the end)
seeds = [0, 1, 2, 3, 4]  # chapter 1's seeds: the same toy CLIP and LLaVA per seed (cached)
device = "cpu"  # "cpu", "cuda" or "auto" (cuda when available)
torch_threads = 1  # CPU threads for torch: 1 stays fast on a shared machine; 0 is torch's default (one per core)
workers = 0  # processes that train the models not cached yet (one torch thread each): 0 is min(2, cores); 1 is this one
clip_steps = 300  # contrastive training steps of the toy CLIP (chapter 1's)
smoke = False  # True: a seconds-long run that only checks the plumbing (numbers meaningless)
results_root = ""  # folder for results/<chapter>/<scale>; empty means the repository results folder
figures_root = ""  # folder for figures; empty means the repository figures folder

# %%
import time

from IPython.display import Markdown, display

from analysis_lib.book import plots
from analysis_lib.chapters import ch05_not_sufficient as chapter
from analysis_lib.toy import toy_runs

FULL_SCALE = "its variants train CLIPs, heads and text towers (at full scale: ViT-L/14-336 each)"
started = toy_runs.start_toy_chapter("5", scale, torch_threads, FULL_SCALE)

run = chapter.not_sufficient_experiment(seeds, device, clip_steps, smoke, workers=workers)

# %% [markdown]
# ## Each variant against CLIP and LLaVA
#
# Mean over seeds with the 95% CI across seeds and the per-seed values.

# %%
table = chapter.comparison(run)
display(table)
shown = ("relation 4-way", "attribute 4-way", "MMVP-style spatial pairs")
rows = toy_runs.variant_rows(run.metrics, chapter.ORDER, shown)
fig = plots.accuracy_bars(rows, toy_runs.CHANCE, "Fixing CLIP on its own terms (dashed: chance)")
plots.save(fig, "05_not_sufficient_accuracy", figures_root or None)

# %% [markdown]
# How much of the CLIP-to-LLaVA gap on relation 4-way each variant closes (0% = CLIP, 100% = LLaVA):

# %%
gaps = chapter.gap_closed(table)
display(gaps)

# %% [markdown]
# ## Targets

# %%
targets = chapter.target_checks(table)
display(targets)

# %% [markdown]
# ## What the run shows

# %%
display(Markdown(chapter.findings(table)))

# %% [markdown]
# **Where the toy differs from the paper.** The toy's "LLaVA data converted to captions" is one
# relational caption per scene (the describe task's answer); LLaVA-1.5's 665k conversations hold far
# more. The toy LM text tower is small (3 layers) and pre-trained on content copying only, where
# LLM2CLIP uses an 8B LLM fine-tuned for caption contrast; it is fully fine-tuned here, not LoRA. The
# toy image tower is 4 layers and sees 3x3 patches, so unlocking it lets fine-tuning rewrite its
# pooled embedding far more easily than 5 epochs at lr 5e-6 rewrite ViT-L/14-336. The fine-tuning
# budget was set once after a first try: 500 steps at lr 5e-4 left both NegCLIP variants on the plateau
# where a caption and its hard negative score alike (seed 0: relation 4-way 24.2% locked, 25.2%
# unlocked); 5 epochs at 1e-3 is what every variant here gets. No full-scale path is wired for this
# chapter.

# %%
total = time.perf_counter() - started
tables = {"comparison": table, "gap_closed": gaps, "targets": targets}
folder = chapter.save_results(run, scale, results_root or None, total, tables)
print(f"results in {folder}; total wall time {total:.0f} s")
