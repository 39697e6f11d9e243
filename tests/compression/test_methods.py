"""The method interface: test-only methods go through the whole product without any
other file knowing them (registry, compress, export, evaluation, latency, embed)."""

import dataclasses

import numpy as np
import pytest

from prunelm_tf.compression import CompressConfig, prunable_weights
from prunelm_tf.compression.methods import (REGISTRY, CompressedModel, CompressionMethod,
                                            registered)
from prunelm_tf.compression.options import option, option_flags


@dataclasses.dataclass(frozen=True)
class RandomOptions:
  # Seed of the random masks.
  mask_seed: int = option(0, "Seed of the random masks.")


class RandomPruning(CompressionMethod):
  """Zeroes an exact random fraction of every targeted matrix."""
  name = "test_random"
  summary = "random pruning (test only)"
  Options = RandomOptions
  hparam_domains = {"random_kind": ("uniform",)}

  def compress(self, options, context):
    model = context.copy_source()
    rng = np.random.default_rng(options.mask_seed)
    for name, weight in prunable_weights(model).items():
      target = context.targets[name]
      values = weight.numpy()
      flat = values.reshape(-1)
      flat[rng.permutation(flat.size)[:int(round(target * flat.size))]] = 0.0
      weight.assign(values)
    return CompressedModel(model, context.source.config, metrics={"mask_seed": options.mask_seed})

  def hparams(self, options):
    return {"random_kind": "uniform"}


def test_registry_lists_every_method_and_the_test_ones_only_while_registered():
  assert {"threshold", "retrain"} <= set(REGISTRY)
  with registered(RandomPruning()):
    assert "test_random" in REGISTRY
    with pytest.raises(ValueError, match="already registered"):
      with registered(RandomPruning()):
        pass
  assert "test_random" not in REGISTRY
  with pytest.raises(ValueError, match="not a compression method; choose from"):
    CompressConfig(model_dir="m", eval="e", method="test_random")


def test_option_flags_come_from_the_options_and_shared_names_once():
  specs = {s.name: s for s in option_flags(list(REGISTRY.values()))}
  assert specs["threshold_scope"].choices == ("layer", "global")
  assert specs["end_step"].targets == (("retrain", ("schedule", "end_step")),)
  assert "final_sparsity" not in specs  # the target is the sweep value, one name
  # An option that defaults to None carries its flag's type; unset, the option stays None.
  dropout = specs["retrain_dropout"]
  assert dropout.kind is float and dropout.default is None and dropout.lower == 0
  assert {m for m, _ in dropout.targets} == {"retrain", "finetune"}
  assert specs["warmup_steps"].kind is int
  # Every method that trains takes the same Adam epsilon under one flag.
  epsilon = specs["adam_epsilon"]
  assert epsilon.kind is float and epsilon.default == 1e-7
  assert {m for m, _ in epsilon.targets} == {m for m, _ in dropout.targets}
  average = specs["retrain_average_last"]
  assert average.kind is float and average.default == 0.0
  assert {m for m, _ in average.targets} == {m for m, _ in dropout.targets}
  frozen = specs["retrain_frozen"]
  assert frozen.kind is str and frozen.default == ""
  assert {m for m, _ in frozen.targets} == {m for m, _ in dropout.targets}
  optimizer, momentum = specs["retrain_optimizer"], specs["retrain_momentum"]
  assert optimizer.choices == ("adam", "sgd") and optimizer.default == "adam"
  assert momentum.kind is float and (momentum.lower, momentum.upper) == (0, 1)
  assert ({m for m, _ in optimizer.targets} == {m for m, _ in momentum.targets}
          == {m for m, _ in dropout.targets})
  with pytest.raises(ValueError, match="defaults to None: give its kind"):
    option(None, "no type", flag="nothing")
