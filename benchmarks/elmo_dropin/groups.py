"""The softmax-less track's groups: a table of (recipe, overrides, sweep, family), data only.

Every group is a recipe that applies to a softmax-less ELMo: one of the book
(prunelm_tf/compression/recipes/<name>.json) or of ``run.LOCAL_RECIPES`` (recipes the
benchmark needs and a user would not choose: wanda, magnitude, one-shot structured,
layers, obs then clustering). Its ``--set`` overrides change the recipe's options; its
sweep sets the amount of the recipe's first stage that has one:

- when that stage is the recipe's last, the group is ONE recipe run with the whole sweep
  as that stage's amounts (one variant per value), in DIR/<group>/;
- otherwise one recipe run per value, in DIR/<group>/<amount x 100>/.

``family`` says what kind of compression it is (the report's sections, and the names
``--groups`` accepts besides group names).
"""

from __future__ import annotations

from typing import NamedTuple, Tuple

# Sparsities of the one-shot pruning groups.
ONE_SHOT_SWEEP = (0.5, 0.7, 0.8, 0.9)
# Fractions of the compressed matrices' parameters removed by factorization.
LOWRANK_SWEEP = (0.3, 0.5, 0.7)
# Weight clustering: the fraction of the 8 int8 bits per weight removed (64, 32, 16, 8
# values per matrix).
CLUSTER_SWEEP = (0.25, 0.375, 0.5, 0.625)
# Sparsities of the distillation retraining groups (obs, then fine-tuning with fixed masks).
DISTILL_SWEEP = (0.8, 0.9)

# The kinds of group, in report order.
FAMILIES = ("one_shot", "shaped", "retrained", "combined")


class DropinGroup(NamedTuple):
  """One group: what ``--groups`` selects by name."""
  # The book's recipe name, or a key of run.LOCAL_RECIPES.
  recipe: str
  # ``--set`` strings applied to the recipe after the benchmark's own settings.
  overrides: Tuple[str, ...]
  # Amounts of the recipe's first stage that has one.
  sweep: Tuple[float, ...]
  # One of FAMILIES.
  family: str


G = DropinGroup
_RT = "finetune.retrain."
GROUPS = {
    # One-shot pruning, no training: each method with its allocations (uniform; from
    # per-matrix curves of 1 - cosine to the dense layers on PTB valid, magnitude- or
    # OBS-pruned alone).
    "obs": G("obs_50_elmo", (), ONE_SHOT_SWEEP, "one_shot"),
    "obs_sens": G("obs_50_elmo", ("obs.allocation=sensitivity",), ONE_SHOT_SWEEP, "one_shot"),
    "obs_osens": G("obs_50_elmo", ("obs.allocation=obs_sensitivity",), ONE_SHOT_SWEEP,
                   "one_shot"),
    "wanda": G("wanda_elmo", (), ONE_SHOT_SWEEP, "one_shot"),
    "wanda_sens": G("wanda_elmo", ("wanda.allocation=sensitivity",), ONE_SHOT_SWEEP,
                    "one_shot"),
    "magnitude": G("magnitude_elmo", (), ONE_SHOT_SWEEP, "one_shot"),
    "magnitude_sens": G("magnitude_elmo", ("threshold.allocation=sensitivity",),
                        ONE_SHOT_SWEEP, "one_shot"),
    # Shape-changing or value-sharing methods, no training.
    "lowrank_data": G("lowrank_50_elmo", (), LOWRANK_SWEEP, "shaped"),
    "lowrank_svd": G("lowrank_50_elmo", ("lowrank.criterion=svd",), LOWRANK_SWEEP, "shaped"),
    "structured": G("structured_elmo", (), (0.3, 0.5), "shaped"),
    # One LSTM layer of two removed: fewer layers, so not a drop-in replacement (the
    # report says so) - the baseline of what a user's downstream model cannot read.
    "layers": G("layers_elmo", (), (0.5,), "shaped"),
    "cluster": G("cluster_32_elmo", (), CLUSTER_SWEEP, "shaped"),
    # Distillation retraining (obs, then the representation objective with fixed masks,
    # 1,320 steps of 32 PTB train sentences): the objectives compared.
    "distill_mse": G("retrain_80_elmo", (), DISTILL_SWEEP, "retrained"),
    "distill_layer_nmse": G("retrain_80_elmo", (_RT + "distill_loss=layer_nmse",),
                            DISTILL_SWEEP, "retrained"),
    "distill_cosine": G("retrain_80_elmo", (_RT + "distill_loss=cosine",), DISTILL_SWEEP,
                        "retrained"),
    # The top layer (what most downstream models weight most) counted twice.
    "distill_mse_top2": G("retrain_80_elmo", (_RT + "distill_layer_weights=1,1,2",), (0.8,),
                          "retrained"),
    "distill_layer_nmse_top2": G("retrain_80_elmo", (_RT + "distill_loss=layer_nmse",
                                                     _RT + "distill_layer_weights=1,1,2"),
                                 (0.8,), "retrained"),
    # The book's 90 % recipe for a released ELMo (sensitivity allocation).
    "retrain_90_elmo": G("retrain_90_elmo", (), (0.9,), "retrained"),
    # Structured pruning fine-tuned by distillation (a physically smaller model).
    "structured_ft": G("structured_30_ft_elmo", (), (0.3,), "retrained"),
    # Combinations: structured (fine-tuned) then one-shot obs; low-rank, clustering and
    # the shared values fine-tuned; one-shot obs then clustering to 16 values.
    "structured_ft_obs": G("structured_obs_elmo", (), (0.3,), "combined"),
    "lowrank_cluster_ft": G("lowrank_cluster_ft_elmo", (), (0.5,), "combined"),
    "obs_cluster": G("obs_cluster_elmo", (), (0.5, 0.7, 0.8), "combined"),
}
del G


def select(names) -> Tuple[str, ...]:
  """The group names ``names`` selects: group names or family names (all their groups).

  Raises:
    ValueError: a name that is neither; the message lists both.
  """
  out = []
  for name in names:
    if name in FAMILIES:
      picked = [g for g, spec in GROUPS.items() if spec.family == name]
    elif name in GROUPS:
      picked = [name]
    else:
      raise ValueError(f"--groups={name}: no such group or family; families: "
                       f"{', '.join(FAMILIES)}; groups: {', '.join(GROUPS)}.")
    out += [g for g in picked if g not in out]
  return tuple(out)
