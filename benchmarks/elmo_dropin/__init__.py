r"""The softmax-less track (issue #33): a dense ELMo compressed as a released one is, and
whether a downstream model trained on the dense ELMo still works on each variant.

  python -m benchmarks.elmo_dropin --dense_dir=saved_models/ptb_elmo --out_dir=DIR \
      [--groups=one_shot,shaped,retrained,combined | GROUP,...] [--downstream=all]
  python -m benchmarks.elmo_dropin --options_file=OPTIONS --weight_file=HDF5 --out_dir=DIR

``--dense_dir`` (a ``pipelines.train`` run of pipelines/flags/ptb_elmo.flags) is exported
once to an ELMo options.json + HDF5 without its softmax in DIR/elmo/; a released ELMo is
taken as it is. Every group is a recipe (the book's or the track's own) with ``--set``
overrides and a sweep, run by ``staged.run_recipe`` on options_file/weight_file with PTB
train (distillation), PTB test (fidelity) and PTB valid (calibration, never test). The
downstream models are trained once on the dense ELMo's features; each variant's features
are fed to them unchanged (drop-in) and to models retrained on them. A second call
resumes; DIR/report.md and DIR/report.json hold one row per variant and the issue's
target lines, DIR/ner_dropin_vs_size.png the figure.

Modules:
  groups      the table of groups: (recipe, overrides, sweep, family)
  layout      the track's folder
  run         the ELMo input, the groups' recipe runs, the track's own recipes
  fidelity    each variant's fidelity per layer to the dense model
  downstream  drop-in and retrained NER, SST-2, MRPC, CoLA
  rows        report rows read from the finished runs
  targets     the issue's target lines
  report      report.md, report.json
  plots       drop-in NER F1 against size
  __main__    the command line
"""
