"""What several compression methods share.

``targets`` (prunable weights, per-weight targets, measured sparsity), ``allocation``
(sensitivity curves, per-matrix budgets), ``calibration`` (the inputs each biLM matrix sees,
their Gram matrices; layer-wise pruning stage by stage), ``layerwise`` (one matrix:
SparseGPT/OBS, Wanda, magnitude, reconstruction error), ``threshold`` (magnitude pruning of
a model), ``finetune`` (the retraining loop and its checks), ``units`` (kept units, their
importance and parameter counts). A method's own algorithm lives in its folder under
``methods/``.
"""
