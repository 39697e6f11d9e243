r"""Compression of the ELMo-shaped PTB biLM (issue #10): one-shot, shape-changing, combined and
recipe groups, one report.

  python -m benchmarks.elmo_ptb --dense_dir=saved_models/ptb_elmo --out_dir=DIR \
      [--groups=threshold,threshold_sens,wanda,obs,obs_sens] [--retrain_groups=...] \
      [--shaped_groups=...] [--finetuned_groups=...] [--recipe_groups=...] \
      [--combined_groups=...] [--prune_softmax] [--downstream=GROUP/VARIANT,...] [--report_only]

The dense model comes from `pipelines.train --flagfile=pipelines/flags/ptb_elmo.flags`.
The **embedder** is compressed (char CNN, highway, token projection, LSTMs, projections);
the softmax stays dense unless --prune_softmax (released ELMo files have none; it is only
there to measure perplexity). Data-aware methods and the sensitivity allocation calibrate
on PTB valid (300 sentences); every figure is measured on all of PTB test. A second call
resumes; DIR/report.md and DIR/report.json gather the rows, DIR/ppl_vs_sparsity.png plots
them, and the issue's targets are checked.

Modules:
  groups      the tables of groups (one-shot, shaped, combined, recipe groups)
  layout      the benchmark folder: where each group's runs, variants, downstream entries are
  run         running groups: their configs and recipes, work shared between groups
  downstream  NER, SST-2 and MRPC of chosen variants (issue #12)
  rows        report rows read from finished runs
  report      report.md and its target lines
  plots       the figures
  __main__    the command line
"""
