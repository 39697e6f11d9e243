"""``layers``: LD-Net-style layer selection, a biLM with fewer LSTM layers.

The amount (``layers_removed``, ``--layers_removed_sweep``) is the fraction of the LSTM
layers (and so of the LSTM parameters: every layer has the same size) removed, rounded to
whole layers (``round(value * n_layers)`` layers go, half up); a value that rounds to every layer is refused. The kept
layers keep their order and weights (`selection.select_layers`); which ones
are kept is chosen by a criterion:

* ``representation``: every choice of kept layers is built and run on
  --calibration text; the one whose top-layer states (what the softmax reads
  and the last representation) are closest to the dense model's (mean
  1 - cosine over real positions, both directions) is kept;
* ``perplexity``: the same, scored by the LM perplexity (needs a softmax);
* ``scalar_mix``: the layers with the largest learned ScalarMix weights of a
  downstream task (``scalar_mix_weights``, as in LD-Net), no calibration.

With more than `MAX_SUBSETS` choices, layers are removed greedily one at a time.
Fine-tuning the smaller model is a ``finetune`` stage after this one (kd or lm:
representation distillation compares layers, and their number changed).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from typing import Dict, List, Sequence, Tuple

import numpy as np

from prunelm_tf.compression.amounts import LAYERS_REMOVED
from prunelm_tf.compression.methods.base import CompressedModel, CompressionMethod, Needs
from prunelm_tf.compression.methods.layers.selection import lstm_parameters, select_layers
from prunelm_tf.compression.options import option
from prunelm_tf.compression.shared.calibration import CALIBRATION_BATCH
from prunelm_tf.compression.shared.targets import prunable_weights
from prunelm_tf.compression.shared.units import matrix_parameters, most_important
from prunelm_tf.models.bilm import output_model
from prunelm_tf.training.loop import evaluate_perplexity, model_input

CRITERIA = ("representation", "perplexity", "scalar_mix")
# Above this many choices of kept layers, layers are removed greedily.
MAX_SUBSETS = 64


def layers_to_remove(target: float, n_layers: int) -> int:
  """``round(target * n_layers)``, half up."""
  return int(math.floor(target * n_layers + 0.5))


def parse_scalar_mix(text: str) -> Tuple[float, ...]:
  """``"0.1,-0.3,0.2"`` -> floats; errors name --scalar_mix_weights."""
  try:
    values = tuple(float(v) for v in text.split(","))
  except ValueError:
    raise ValueError(f"--scalar_mix_weights takes comma-separated numbers (the ScalarMix "
                     f"parameters s_0..s_L, layer 0 = token embedding), got {text!r}.") from None
  if not all(math.isfinite(v) for v in values):
    raise ValueError(f"--scalar_mix_weights must be finite numbers, got {text!r}.")
  return values


@dataclasses.dataclass(frozen=True)
class LayersOptions:
  """How the kept layers are chosen, and the optional fine-tuning."""

  # "representation" / "perplexity": measured on --calibration; "scalar_mix":
  # from the learned ScalarMix weights in `scalar_mix_weights`.
  criterion: str = option("representation", "layers: keep the layers whose removal changes the "
                          "top-layer states least on --calibration (representation), costs the "
                          "least perplexity there (perplexity, needs a softmax), or have the "
                          "largest learned ScalarMix weights (scalar_mix, with "
                          "--scalar_mix_weights).", flag="layer_criterion", choices=CRITERIA)
  # The ScalarMix parameters s_0..s_L of a downstream task (layer 0 = token embedding).
  scalar_mix_weights: str = option("", "layers with --layer_criterion=scalar_mix: the learned "
                                   "ScalarMix parameters s_0,...,s_L (before the softmax; s_0 is "
                                   "the token embedding), comma separated.",
                                   flag="scalar_mix_weights")

  def __post_init__(self):
    if self.criterion not in CRITERIA:
      raise ValueError(f"--layer_criterion must be one of {CRITERIA}, got {self.criterion!r}.")
    if self.criterion == "scalar_mix":
      if not self.scalar_mix_weights:
        raise ValueError("--layer_criterion=scalar_mix needs --scalar_mix_weights (the learned "
                         "ScalarMix parameters s_0,...,s_L of a downstream task).")
      parse_scalar_mix(self.scalar_mix_weights)
    elif self.scalar_mix_weights:
      raise ValueError(f"--scalar_mix_weights is read only with --layer_criterion=scalar_mix, "
                       f"not {self.criterion}; drop it or change the criterion.")


def _top_states(model, batch) -> np.ndarray:
  """Top-layer states of both directions at real positions: float32 [n, 2 * proj]."""
  view = output_model(model, ["forward_hidden", "backward_hidden"])
  out = view(model_input(model, batch), training=False)
  real = batch["token_ids"].numpy() > 0
  return np.concatenate([out["forward_hidden"].numpy()[real],
                         out["backward_hidden"].numpy()[real]], axis=-1)


def _cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
  return 1.0 - (a * b).sum(-1) / np.maximum(na * nb, 1e-12)


def _candidates(n_layers: int, n_keep: int, cost) -> Tuple[List[int], List[Dict]]:
  """The kept layers of least ``cost`` (exhaustive, or greedy above MAX_SUBSETS)."""
  tried = []
  if math.comb(n_layers, n_keep) <= MAX_SUBSETS:
    for kept in itertools.combinations(range(n_layers), n_keep):
      tried.append({"kept_layers": list(kept), "cost": cost(list(kept))})
    best = min(tried, key=lambda r: r["cost"])["kept_layers"]
    return best, tried
  kept = list(range(n_layers))
  while len(kept) > n_keep:
    options = []
    for drop in kept:
      candidate = [l for l in kept if l != drop]
      options.append({"kept_layers": candidate, "cost": cost(candidate)})
    tried += options
    kept = min(options, key=lambda r: r["cost"])["kept_layers"]
  return kept, tried


class LayersMethod(CompressionMethod):
  """LD-Net-style layer selection: a biLM with fewer layers."""

  name = "layers"
  summary = ("drop whole LSTM layers (LD-Net), chosen by their effect on --calibration text or "
             "by learned ScalarMix weights: a biLM with fewer layers")
  Options = LayersOptions
  amount = LAYERS_REMOVED
  one_shot = True
  hparam_domains = {"layer_criterion": CRITERIA}

  def needs(self, options):
    return Needs(calibration=options.criterion != "scalar_mix")

  def check(self, options, config, source):
    if config.layer_sparsity:
      raise ValueError(f"--layer_sparsity sets per-matrix targets; --method={self.name} removes "
                       "whole layers, so drop --layer_sparsity.")
    n_layers = source.config.n_layers
    for s in config.sparsity_sweep:
      if layers_to_remove(s, n_layers) >= n_layers:
        raise ValueError(
            f"--{self.amount.flag} value {s} rounds to removing all {n_layers} LSTM layers of "
            f"{source.description}; --method={self.name} keeps at least one, so use values below "
            f"{(n_layers - 0.5) / n_layers:.3f}.")
    if options.criterion == "perplexity" and not source.config.has_softmax:
      raise ValueError(f"--layer_criterion=perplexity needs a softmax and {source.description} "
                       "has none (ELMo weight files never do); use "
                       "--layer_criterion=representation.")
    if options.criterion == "scalar_mix":
      weights = parse_scalar_mix(options.scalar_mix_weights)
      if len(weights) != n_layers + 1:
        raise ValueError(f"--scalar_mix_weights has {len(weights)} values; a ScalarMix over "
                         f"{source.description} has {n_layers + 1} (token embedding + "
                         f"{n_layers} layers).")

  def variant_name(self, options, target_sparsity):
    return f"{self.name}_{options.criterion}_{round(target_sparsity * 100):02d}"

  def _cost(self, options, context):
    """``kept layers -> cost`` for the measured criteria (lower is better)."""
    source = context.source
    batches = list(context.dataset(context.calibration_sentences, CALIBRATION_BATCH,
                                   shuffle=False))
    if options.criterion == "perplexity":
      def cost(kept: Sequence[int]) -> float:
        model, _ = select_layers(source.model, source.config, kept)
        return math.log(evaluate_perplexity(model, batches)["mean"])
      return cost
    dense = [_top_states(source.model, b) for b in batches]

    def cost(kept: Sequence[int]) -> float:
      model, _ = select_layers(source.model, source.config, kept)
      distances = [_cosine_distance(_top_states(model, b), d) for b, d in zip(batches, dense)]
      return float(np.mean(np.concatenate(distances)))
    return cost

  def compress(self, options, context):
    t = time.time()
    source = context.source
    n_layers = source.config.n_layers
    n_keep = n_layers - layers_to_remove(context.target_sparsity, n_layers)
    if options.criterion == "scalar_mix":
      s = np.asarray(parse_scalar_mix(options.scalar_mix_weights))
      mix = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
      kept = most_important(mix[1:], n_keep)
      tried = [{"kept_layers": kept, "scalar_mix": mix.tolist()}]
    elif n_keep == n_layers:
      kept, tried = list(range(n_layers)), []
    else:
      kept, tried = _candidates(n_layers, n_keep, self._cost(options, context))
    model, config = select_layers(source.model, source.config, kept)
    names = list(prunable_weights(source.model))
    dense_matrices = matrix_parameters(source.config, names)
    record = {
        "criterion": options.criterion, "kept_layers": kept,
        "removed_layers": [l for l in range(n_layers) if l not in kept],
        "removed_lstm_fraction": 1.0 - lstm_parameters(config) / lstm_parameters(source.config),
        "n_layers": config.n_layers, "candidates": tried,
    }
    metrics = {"removed_fraction": 1.0 - matrix_parameters(config, names) / dense_matrices,
               "layers": record}
    seconds = {"select": time.time() - t}
    return CompressedModel(model, config, metrics=metrics, seconds=seconds)

  def hparams(self, options):
    return {"layer_criterion": options.criterion}
