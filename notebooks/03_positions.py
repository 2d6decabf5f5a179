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
# # Chapter 3 — Where does position live?
#
# **The claim** (REFERENCE claim 3). LLaVA's language model gives its 576 image tokens rotary
# position embeddings in raster order, and the paper finds that this helps: position reaches the LLM
# not only through the ViT's own position embeddings (which CLIP also has) but through the order in
# which the LLM reads the tokens. On the contrastive side it adds a 1-D RoPE (base 10000) over the
# patch sequence of PACL heads.
#
# **What this chapter does**, on chapter 1's toy CLIP and LLaVA (same seeds, cached models). Three
# ways of taking position away from the toy LLaVA:
#
# * **equal LM positions** — every image token gets the first image token's position id, so RoPE
#   gives them no order (the text's position ids are unchanged);
# * **permuted LM positions** — the image tokens' position ids are shuffled among themselves, afresh
#   for every image and forward pass;
# * **ViT position embeddings zeroed** — the vision tower's own position table is set to zero (the
#   raster order of the LM positions is kept), so only the LM's RoPE says where a token is;
# * **both routes removed** (a control) — the ViT's position table zeroed *and* equal LM positions:
#   nothing left says where a token is, so a LLaVA trained this way that still read relations would
#   read them from something other than position, and the size of each single ablation's effect is
#   read against it;
# * **the tokens' order shuffled** (at test only) — the image tokens themselves are shuffled in the
#   sequence, per image and forward pass. Equal position ids take RoPE's order away, but a causal
#   language model still tells its tokens apart by their order (each token attends only to those
#   before it; language models without any position encoding learn positions this way, Haviv et al.
#   2022). Applied to chapter 1's LLaVA and to the LLaVA trained with both routes removed, it says
#   whether that last route carried the relation.
#
# Each is applied in two regimes that the paper's question needs apart: **ablated at test only**
# (chapter 1's LLaVA, trained as usual, scored with the ablation) and **trained that way** (the LLaVA
# retrained through the same curriculum, same checks, caps and restarts, with the ablation in place,
# stopped, stalled, at twice the steps the same seed's chapter LLaVA needed). PACL
# heads with and without RoPE are the contrastive side. Relations should move; the attribute control
# (the same images, a colour swapped) should not.
#
# **Targets, set before the run** (table "Targets" below): some test-only ablation costs LLaVA >= 20
# points of relation 4-way accuracy while none costs more than 10 points of attribute accuracy; a
# LLaVA trained with the ViT's position embeddings zeroed still reads relations >= 80% (the LM's
# RoPE alone carries the order); RoPE changes PACL's relation accuracy by at most 10 points.

# %% tags=["parameters"]
scale = "toy"  # only "toy": the trained variants retrain LLaVA (see the end)
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
from analysis_lib.chapters import ch03_positions as chapter
from analysis_lib.toy import toy_runs

FULL_SCALE = "its trained variants retrain LLaVA (at full scale: LLaVA-1.5-7B per variant)"
started = toy_runs.start_toy_chapter("3", scale, torch_threads, FULL_SCALE)

run = chapter.positions_experiment(seeds, device, clip_steps, smoke, workers=workers)

# %% [markdown]
# ## Results across seeds
#
# Mean over seeds with its percentile bootstrap 95% interval over seeds (never clipped; of limited
# validity below five seeds), the per-seed values and how many seeds are at least 10 points above
# chance (a seed that crossed); `chance` is the level of a model that guesses.

# %%
table = chapter.comparison(run)
display(table)
rows = toy_runs.variant_rows(run.metrics, chapter.ORDER, ("relation 4-way", "attribute 4-way"))
fig = plots.accuracy_bars(rows, toy_runs.CHANCE, "Position taken away at test time, or in training (dashed: chance)")
plots.save(fig, "03_positions_accuracy", figures_root or None)

# %% [markdown]
# The change of each ablation from LLaVA as usual, in both regimes:

# %%
display(chapter.effect_table(table))

# %% [markdown]
# When each retrained variant's curriculum stages passed their held-out checks (a stage that does not
# pass runs to its cap):

# %%
transitions = toy_runs.transitions(run)
display(transitions[transitions.target.notna()])
fig = plots.transition_figure(toy_runs.check_curves(run), transitions)
plots.save(fig, "03_positions_transitions", figures_root or None)

# %% [markdown]
# ## Targets

# %%
targets = chapter.target_checks(table)
display(targets)

# %% [markdown]
# ## What the run shows

# %%
display(Markdown(chapter.findings(table, transitions)))

# %% [markdown]
# **Where the toy differs from the paper.** In the toy, every object fills one ViT patch and the
# frozen encoder writes each token's cell into its content (chapter 2's probes read the cell from a
# single patch token almost perfectly), so position reaches the LM through more than one route, and
# taking one away at training time leaves the others: the ViT's table, RoPE's position ids, and the
# tokens' order itself, which a causal LM reads even when every image token has the same position id.
# What the retrained ablations measure is therefore whether a LLaVA *needs* a given route when the
# others remain, not whether the LLM's order carries position; the shuffled-order control is the
# test of the latter (above). The paper's 576-token images make the LM's order a much
# richer signal than our 9 tokens. The RoPE here rotates the frozen patch tokens inside PACL's head,
# as the paper's ablation adds RoPE over the patch sequence; a text embedding has no position, so
# RoPE can only make patches' matches position-dependent, not compare two objects' positions.

# %%
total = time.perf_counter() - started
tables = {"comparison": table, "effects": chapter.effect_table(table), "targets": targets}
folder = chapter.save_results(run, scale, results_root or None, total, tables)
print(f"results in {folder}; total wall time {total:.0f} s")
