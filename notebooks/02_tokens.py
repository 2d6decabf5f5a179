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
# # Chapter 2 — Is the information in the encoder, and which tokens carry it?
#
# **The claims** (REFERENCE claims 2 and 7's layer question). Chapter 1 showed that the toy LLaVA
# reads spatial relations from the frozen CLIP encoder that CLIP's own score misses. Two questions
# follow. *Is the information really in the encoder's tokens, and in which?* And *does LLaVA need the
# patch tokens?* The paper retrains LLaVA-1.5 on the CLS token alone (`image_features[:, 0:1]`, both
# training stages redone) and finds that much of the advantage goes; on the contrastive side it
# trains patch-aligned heads on the frozen CLIP (PACL: patch tokens; SPARC: patch tokens and
# per-word text tokens) and finds that the extra text tokens add little.
#
# **What this chapter does**, on chapter 1's toy CLIP and LLaVA (same seeds, same cached models):
#
# 1. **Probes, layer by layer.** Linear and 2-layer MLP probes on the frozen toy CLIP's every layer
#    (0 = embeddings; LLaVA reads layer 3 of 4): the CLS token, CLIP's pooled projected embedding
#    (CLIP's own pooling applied at that layer), the mean patch token and all patch tokens flattened
#    are probed for the scene's relation; each patch token for its object's colour, shape and cell,
#    and an object's token for a detail smaller than a patch: the object's horizontal offset inside
#    its cell (0-2 pixels, drawn at random when the scene is rendered, never named in any text).
#    The relation label is image-level: the relation of the object whose colour comes first in the
#    colour list to the other one. Probes train and test on disjoint fresh scenes.
# 2. **Token usage in LLaVA.** The same curriculum (same stages, checks, caps and restarts; each
#    variant stops, stalled, once it has trained twice the steps the same seed's chapter LLaVA
#    needed) retrains the
#    projector and LM on all patch tokens (LLaVA-1.5, chapter 1's model), the CLS token only, the
#    mean patch token only, or CLS + patch tokens.
# 3. **Patch-aligned contrastive heads** (PACL, SPARC, REFERENCE §3) trained on the frozen CLIP with
#    the same scenes and caption mix as CLIP, scored by PACL's text-conditioned patch pooling.
#
# All are scored on chapter 1's relation, attribute and pair sets.
#
# **Targets, set before the run** (checked in the table "Targets" below): the MLP probe on the
# flattened patch tokens at LLaVA's layer reads the relation >= 80% while no probe on the pooled
# embedding exceeds 60%; the CLS-only LLaVA loses >= 30 points of relation 4-way accuracy but keeps
# attributes >= 80%; PACL stays below the midpoint between CLIP and LLaVA on relations; SPARC is
# within 10 points of PACL.

# %% tags=["parameters"]
scale = "toy"  # "toy" (synthetic world, CPU) or "full" (the paper's patch-token / CLS-only LLaVA-1.5 pair)
seeds = [0, 1, 2, 3, 4]  # chapter 1's seeds: the same toy CLIP and LLaVA per seed (cached)
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
batch_size = 32  # full scale: captions scored per forward pass
probe_clip_model = "clip-l14-336"  # full scale: the transformers CLIP whose layers are probed (registry name or folder)

# %%
import time

from IPython.display import Markdown, display

from analysis_lib.book import plots
from analysis_lib.chapters import ch02_tokens as chapter
from analysis_lib.full import full_scale, whatsup_probes
from analysis_lib.toy import layer_probes, toy_runs

started = toy_runs.start_chapter(scale, torch_threads)

# %% [markdown]
# ## At full scale: the paper's LLaVA-1.5 pair
#
# With `scale="full"` the chapter scores CLIP ViT-L/14-336 (cosine) and the paper's two LLaVA-1.5-7B
# models trained the same way (LoRA, merged), one on all patch tokens and one on the CLS token alone
# (`lst627/llava-v1.5-7b-lora-merged` and `lst627/llava-v1.5-7b-lora-cls-merged`: in the original LLaVA
# format, converted first; the CLS-only one is fed the CLS token of layer -2, as its
# `mm_vision_select_feature='cls'` was) on What'sUp and MMVP-VLM with VQAScore. One error names every
# missing piece. Then it probes the frozen CLIP layer by layer on What'sUp Controlled images
# (`analysis_lib.full.whatsup_probes`, transformers' copy of the same CLIP): linear probes read the
# relation (trained and tested on disjoint object pairs) and the object pair (tested on a relation
# its training never showed for that pair) from the CLS token, the mean patch token and the patch
# tokens pooled to a 4x4 grid. The toy sections below are skipped; the mean-token and CLS + patch
# variants and the PACL/SPARC heads are toy-only here.

# %%
if scale == "full":
    config = full_scale.FullScaleConfig(
        whatsup_root=whatsup_root, mmvp_vlm_root=mmvp_vlm_root, device=device, dtype=dtype, batch_size=batch_size
    )
    full_metrics = chapter.tokens_full(config, full_scale.results_folder(results_root or None))
    display(full_scale.headline_table(full_metrics))
    full_probes = chapter.probes_full(config, probe_clip_model)
    display(whatsup_probes.probe_pivot(full_probes))

# %% [markdown]
# ## The toy world

# %%
if scale == "toy":
    run = chapter.tokens_experiment(seeds, device, clip_steps, smoke, workers=workers)

# %% [markdown]
# ## 1. What the frozen encoder holds, layer by layer
#
# Mean over seeds with the 95% CI; the dotted line is the majority class of each probe's test labels.

# %%
if scale == "toy":
    probe_table = layer_probes.probe_summary(run.probes)
    display(
        probe_table[probe_table.target == "relation"]
        .pivot_table(index=["view", "probe"], columns="layer", values="mean", sort=False)
        .style.format("{:.1%}")
    )
    display(
        probe_table[probe_table.target != "relation"]
        .pivot_table(index=["target", "probe"], columns="layer", values="mean", sort=False)
        .style.format("{:.1%}")
    )
    fig = plots.probe_layers_figure(probe_table)
    plots.save(fig, "02_tokens_probes", figures_root or None)
    display(Markdown(layer_probes.fine_reading(probe_table, chapter.LLAVA_LAYER)))

# %% [markdown]
# Every patch token carries its object's colour and shape and, from its content alone, its cell: the
# ViT's position embedding has written position into the token. The relation is a *binding* of two
# tokens (which colour is where), so no single token holds it: a probe has to combine the tokens, and
# only the MLP probe on all patch tokens can. The CLS token and the pooled embedding, where CLIP's
# score comes from, hold little of it at any layer.
#
# ## 2. Which tokens LLaVA needs, and what patch-aligned contrastive heads read

# %%
if scale == "toy":
    table = chapter.comparison(run)
    display(table)
    rows = toy_runs.variant_rows(run.metrics, chapter.ORDER)
    fig = plots.accuracy_bars(rows, toy_runs.CHANCE, "Which tokens are read (dashed: chance)")
    plots.save(fig, "02_tokens_accuracy", figures_root or None)

# %% [markdown]
# When each token variant's curriculum stages passed their held-out checks (a variant that cannot
# read the relation runs its stages to their caps):

# %%
if scale == "toy":
    transitions = toy_runs.transitions(run)
    display(transitions[transitions.target.notna()])

# %% [markdown]
# ## Targets

# %%
if scale == "toy":
    display(chapter.target_checks(table, probe_table))

# %% [markdown]
# ## Where the CLS-only and the all-patches LLaVA look
#
# captum's feature ablation: each patch is replaced by the mean colour and the drop of the VQAScore
# margin between the true caption and the opposite-relation caption is recorded.

# %%
if scale == "toy":
    image, maps, title = chapter.attribution_maps(run, seeds[-1])
    fig = plots.attribution_figure(image, maps, title)
    plots.save(fig, "02_tokens_attribution", figures_root or None)

# %% [markdown]
# ## What the run shows

# %%
if scale == "toy":
    display(Markdown(chapter.findings(table, probe_table, transitions)))

# %% [markdown]
# A variant that cannot pass a stage's check trains until the stage's cap or its step budget;
# how well it then keeps the attribute control varies from seed to seed, which is why the
# token-starved variants' attribute rows have wide intervals. A variant that can read relations may
# still not cross within its budget on every seed (learning here has sudden transitions; chapter 1).
#
# **Where the toy differs from the paper.** The toy encoder is 4 layers deep and its scenes have two
# objects on a 3x3 grid, so "shallow vs deep layers" spans only a few layers here. The paper's
# CLS-only LLaVA keeps more of its advantage than ours can: a real CLS token summarises a 576-patch
# image with far more capacity, and real benchmarks also reward what a summary holds (objects,
# attributes). PACL/SPARC are scored here with PACL's text-conditioned pooling for both, so the two
# differ only by SPARC's per-word loss. At full scale the chapter scores the paper's released
# patch-token / CLS-only pair and probes the real CLIP's layers on What'sUp images (above); the
# mean-token and CLS + patch variants, the heads and the sub-patch offset probe run in the toy only.

# %%
total = time.perf_counter() - started
if scale == "toy":
    tables = {"comparison": table, "probe_summary": probe_table, "targets": chapter.target_checks(table, probe_table)}
    folder = chapter.save_results(run, scale, results_root or None, total, tables)
else:
    folder = chapter.save_full_results(full_metrics, config, results_root or None, total, full_probes)
print(f"results in {folder}; total wall time {total:.0f} s")
