"""The benchmark's groups: tables of what each group runs (data only, no running).

A group is one line of the report's families, selected by name on the command line:

- ``ONE_SHOT``: one method at ``ONE_SHOT_SWEEP`` sparsities, one compression run folder.
- ``SHAPED``: a method that changes the model's shape, each with its own sweep (the
  fraction of the compressed matrices' parameters removed).
- ``COMBINED``: a finished variant of another group compressed further (no training).
- ``RECIPE_GROUPS``: a recipe of the book (prunelm_tf/compression/recipes/<name>.json) or
  of ``run.LOCAL_RECIPES``, its ``--set`` overrides, and a sweep whose values set the amount
  of the recipe's first stage that has one (a recipe without one takes (0.0,)); one recipe
  run per value in DIR/<group>/<amount x 100>/.

The ``--method=retrain`` groups (tfmot pruning on a schedule from the dense model) depend
on the number of steps and are made by ``run.method_retrain_groups``.
"""

from __future__ import annotations

from typing import NamedTuple, Tuple

ONE_SHOT_SWEEP = (0.5, 0.7, 0.9)
RETRAIN_SWEEP = (0.9, 0.8, 0.95)
# Weight clustering of a finished variant: the sweep value is the fraction of the 8 int8
# bits per weight removed: 64, 32, 16 and 8 values per matrix.
CLUSTER_SWEEP = (0.25, 0.375, 0.5, 0.625)

# One-shot groups: name -> (method, method options).
ONE_SHOT = {
    "threshold": ("threshold", {}),
    "threshold_sens": ("threshold", {"allocation": "sensitivity"}),
    "wanda": ("wanda", {}),
    "obs": ("obs", {}),
    "obs_sens": ("obs", {"allocation": "sensitivity"}),
    "obs_osens": ("obs", {"allocation": "obs_sensitivity"}),
    # The same curves (first 300 valid sentences), the pruning calibrated on 1,000.
    "obs_osens_cal1000": ("obs", {"allocation": "obs_sensitivity", "sensitivity_sentences": 300}),
    "obs_osens_cal2000": ("obs", {"allocation": "obs_sensitivity", "sensitivity_sentences": 300}),
}
# Run settings of a one-shot group that differ from the benchmark's.
ONE_SHOT_SETTINGS = {"obs_osens_cal1000": {"calibration_sentences": 1000},
                     "obs_osens_cal2000": {"calibration_sentences": 2000,
                                           "sparsity_sweep": (0.7,)}}

# Groups that change the model's shape (issue #11): name -> (method, options, sweep).
# structured and layers work on whole units, so they cannot leave the softmax out
# by --layer_sparsity: their fraction counts it (its rows shrink with nothing).
SHAPED = {
    "lowrank_data": ("lowrank", {"criterion": "data"}, (0.3, 0.5, 0.7)),
    "lowrank_svd": ("lowrank", {"criterion": "svd"}, (0.3, 0.5, 0.7)),
    # lowrank_data at 50 % alone (the source of lowrank_data_cluster, quicker to make).
    "lowrank_data_at50": ("lowrank", {"criterion": "data"}, (0.5,)),
    "structured_obs": ("structured", {"importance": "obs"}, (0.25, 0.5)),
    "structured_norm": ("structured", {"importance": "norm"}, (0.25, 0.5)),
    "layers": ("layers", {}, (0.5,)),
}

# Combinations (issue #11): name -> (source group, source variant, method, options, sweep).
# The sweep is the sparsity of the variant's own matrices (factors, remaining cells). A
# recipe group's variant is "<amount x 100>/<variant>" of its final stage.
COMBINED = {
    "lowrank_data_threshold_sens": ("lowrank_data", "lowrank_data_30", "threshold",
                                    {"allocation": "sensitivity"}, (0.5,)),
    # Deep Compression's weight sharing on the variants that keep their quality: the
    # factors (or the remaining nonzeros) keep 64 ... 8 values per matrix, so the zipped
    # int8 codes shrink; the softmax stays unclustered (--layer_sparsity 0).
    "lowrank_data_cluster": ("lowrank_data_at50", "lowrank_data_50", "cluster", {},
                             CLUSTER_SWEEP),
    "lowrank_data_ft_cluster": ("lowrank_data_ft_nodrop_lr3", "70/finetune", "cluster", {},
                                CLUSTER_SWEEP),
    "lowrank_data_ft80_cluster": ("lowrank_data_ft80_nodrop_lr10", "80/finetune", "cluster", {},
                                  CLUSTER_SWEEP),
    "obs_sens_cluster": ("obs_sens", "obs_sens_50", "cluster", {}, CLUSTER_SWEEP),
}


class RecipeGroup(NamedTuple):
  """One recipe group: what ``recipe_groups`` selects by name."""
  # The book's recipe name, or a key of run.LOCAL_RECIPES.
  recipe: str
  # ``--set`` strings applied to the recipe (after the benchmark's own settings).
  overrides: Tuple[str, ...]
  # Amounts of the first stage that has one; one recipe run each.
  sweep: Tuple[float, ...]


# The dense controls (the dense model fine-tuned as the pruned groups of the same
# overrides are, nothing removed): what the training alone changes.
DENSE_CONTROL = "retrain_kd_dense_control_nodrop_lr10"
DENSE_CONTROL_WARMUP = "retrain_kd_dense_control_nodrop_lr10_wu"
DENSE_CONTROL_EPSILON = "retrain_kd_dense_control_nodrop_lr10_wu_eps5"
DENSE_CONTROL_FROZEN = "retrain_kd_dense_control_nodrop_lr10_wu_fs"
# The momentum-SGD rates of the SGD groups (momentum 0.9).
SGD_RATES = (1, 3)


def sgd_control(lr: int) -> str:
  """The dense control of the momentum-SGD recipe at rate ``lr``."""
  return f"retrain_kd_dense_control_nodrop_sgd{lr}_wu_avg25"


DENSE_CONTROLS = (DENSE_CONTROL, DENSE_CONTROL_WARMUP, DENSE_CONTROL_EPSILON,
                  DENSE_CONTROL_FROZEN) + tuple(map(sgd_control, SGD_RATES))

# Overrides shared by several groups below (option paths of the recipe's stages).
_LR = "finetune.retrain.learning_rate="
_COLD = ("finetune.retrain.warmup_steps=0", "finetune.retrain.average_last=0")  # retrain_90 unwarmed
_NO_AVERAGE = ("finetune.retrain.average_last=0",)
_OSENS = ("obs.sensitivity_max_level=0.95",)  # retrain_95 at the default curve levels
# The first recipe: lr 1e-3, the model's dropout.
_LR1_DROPOUT = (_LR + "0.001", "finetune.retrain.dropout=null")
_NO_DROPOUT = ("finetune.retrain.dropout=null",)
_LM = ("finetune.retrain.objective=lm",)
_EPSILON = ("finetune.retrain.adam_epsilon=1e-05",)
_FROZEN = ("finetune.retrain.frozen=softmax",)
_B16 = ("finetune.retrain.batch_size=16", "finetune.retrain.num_steps=2620")
_T2 = ("finetune.retrain.kd_temperature=2.0",)
_SGD = ("finetune.retrain.optimizer=sgd",)
_QUARTER = ("finetune.retrain.num_steps=330", _LR + "0.001")  # a quarter epoch at lr 1e-3

G = RecipeGroup
RECIPE_GROUPS = {
    # The first recipe (lr 1e-3 with dropout) from each OBS start, objective lm or kd.
    "retrain_lm_obs": G("retrain_90", ("obs.allocation=uniform",) + _COLD + _LR1_DROPOUT + _LM,
                        RETRAIN_SWEEP),
    "retrain_lm_obs_sens": G("retrain_90", _COLD + _LR1_DROPOUT + _LM, RETRAIN_SWEEP),
    "retrain_lm_obs_osens": G("retrain_95", _OSENS + _LR1_DROPOUT + _LM, RETRAIN_SWEEP),
    # Without dropout, or at the dense training's learning rate (3e-3) and above.
    "retrain_lm_obs_osens_nodrop": G("retrain_95", _OSENS + (_LR + "0.001",) + _LM,
                                     RETRAIN_SWEEP),
    "retrain_lm_obs_osens_lr3": G("retrain_95", _OSENS + (_LR + "0.003",) + _NO_DROPOUT + _LM,
                                  RETRAIN_SWEEP),
    "retrain_lm_obs_osens_nodrop_lr3": G("retrain_95", _OSENS + (_LR + "0.003",) + _LM,
                                         RETRAIN_SWEEP),
    "retrain_lm_obs_osens_nodrop_lr5": G("retrain_95", _OSENS + (_LR + "0.005",) + _LM,
                                         RETRAIN_SWEEP),
    "retrain_lm_obs_osens_nodrop_lr10": G("retrain_95", _OSENS + (_LR + "0.01",) + _LM,
                                          RETRAIN_SWEEP),
    "retrain_kd_obs": G("retrain_90", ("obs.allocation=uniform",) + _COLD + _LR1_DROPOUT,
                        RETRAIN_SWEEP),
    "retrain_kd_obs_sens": G("retrain_90", _COLD + _LR1_DROPOUT, RETRAIN_SWEEP),
    "retrain_kd_obs_osens": G("retrain_95", _OSENS + _LR1_DROPOUT, RETRAIN_SWEEP),
    "retrain_kd_obs_osens_nodrop": G("retrain_95", _OSENS + (_LR + "0.001",), RETRAIN_SWEEP),
    "retrain_kd_obs_osens_lr3": G("retrain_95", _OSENS + (_LR + "0.003",) + _NO_DROPOUT,
                                  RETRAIN_SWEEP),
    "retrain_kd_obs_osens_nodrop_lr3": G("retrain_95", _OSENS + (_LR + "0.003",), RETRAIN_SWEEP),
    "retrain_kd_obs_osens_nodrop_lr5": G("retrain_95", _OSENS + (_LR + "0.005",), RETRAIN_SWEEP),
    "retrain_kd_obs_osens_nodrop_lr10": G("retrain_95", _OSENS + (_LR + "0.01",), RETRAIN_SWEEP),
    # Allocation curves measured up to 0.99: a 95 % target no longer spent uniformly.
    "retrain_kd_obs_osens_to99_nodrop_lr10": G("retrain_95", (), (0.95,)),
    "retrain_kd_obs_osens_to99_nodrop_lr5": G("retrain_95", (_LR + "0.005",), (0.95,)),
    # About the same epoch in twice as many steps of half the batch (2 x 1,320 - 20 steps
    # stay within one epoch of PTB train's 2,630 batches of 16).
    "retrain_kd_obs_osens_nodrop_lr10_b16": G("retrain_95", _OSENS + _B16, RETRAIN_SWEEP),
    "retrain_kd_obs_osens_to99_nodrop_lr10_b16": G("retrain_95", _B16, (0.95,)),
    "retrain_kd_obs_osens_nodrop_lr20": G("retrain_95", _OSENS + (_LR + "0.02",), RETRAIN_SWEEP),
    # A softer teacher (KD temperature 2).
    "retrain_kd_obs_osens_nodrop_lr10_t2": G("retrain_95", _OSENS + (_LR + "0.01",) + _T2,
                                             RETRAIN_SWEEP),
    "retrain_kd_obs_osens_nodrop_lr5_t2": G("retrain_95", _OSENS + (_LR + "0.005",) + _T2,
                                            RETRAIN_SWEEP),
    # The same as ..._nodrop_lr10 in folders of its own (95 % and 80 % apart).
    "retrain_kd_obs_osens_to95_nodrop_lr10": G("retrain_95", _OSENS, (0.95,)),
    "retrain_kd_obs_osens_nodrop_lr10_80": G("retrain_95", _OSENS, (0.8,)),
    # KD plus the MSE to the dense model's representations (what the embedder is for).
    "retrain_kd_distill_obs_osens_nodrop": G(
        "retrain_95", _OSENS + (_LR + "0.001", "finetune.retrain.objective=kd+distill"),
        RETRAIN_SWEEP),
    # OBS from the magnitude-sensitivity allocation, lr 1e-2 without dropout, and its control.
    "retrain_kd_obs_sens_nodrop_lr10": G("retrain_90", _COLD, RETRAIN_SWEEP),
    DENSE_CONTROL: G("dense_finetune", _COLD, (0.0,)),
    # The rate warmed up over the first tenth of the steps, its control, the OBS starts.
    DENSE_CONTROL_WARMUP: G("dense_finetune", _NO_AVERAGE, (0.0,)),
    "retrain_kd_obs_osens_nodrop_lr10_wu": G(
        "retrain_90", ("obs.allocation=obs_sensitivity",) + _NO_AVERAGE, RETRAIN_SWEEP),
    "retrain_kd_obs_sens_nodrop_lr10_wu": G("retrain_90", _NO_AVERAGE, RETRAIN_SWEEP),
    # Adam's epsilon at 1e-5 instead of 1e-7.
    DENSE_CONTROL_EPSILON: G("dense_finetune", _NO_AVERAGE + _EPSILON, (0.0,)),
    "retrain_kd_obs_sens_nodrop_lr10_wu_eps5": G("retrain_90", _NO_AVERAGE + _EPSILON,
                                                 RETRAIN_SWEEP),
    # The kept weights as the average of the last steps (SWA, AWD-LSTM's averaged SGD): the
    # warmed-up cosine recipe averaging its last quarter (= the book's retrain_90), and a
    # constant 5e-3 after the same warm-up averaging its last half.
    "retrain_kd_obs_sens_nodrop_lr10_wu_avg25": G("retrain_90", (), RETRAIN_SWEEP),
    "retrain_kd_obs_sens_nodrop_lr5c_wu_avg50": G(
        "retrain_90", (_LR + "0.005", "finetune.retrain.lr_schedule=constant",
                       "finetune.retrain.average_last=0.5"), RETRAIN_SWEEP),
    # The softmax frozen: the retraining changes only the embedder (what is shipped).
    DENSE_CONTROL_FROZEN: G("dense_finetune", _NO_AVERAGE + _FROZEN, (0.0,)),
    "retrain_kd_obs_sens_nodrop_lr10_wu_fs": G("retrain_90", _NO_AVERAGE + _FROZEN,
                                               RETRAIN_SWEEP),
    # Momentum SGD instead of Adam (its steps are the rate times the gradient: what is near
    # the teacher stays), rates 1 and 3 (SGD_RATES), otherwise the averaged recipe.
    "retrain_kd_obs_sens_nodrop_sgd1_wu_avg25": G("retrain_90", _SGD + (_LR + "1.0",),
                                                  RETRAIN_SWEEP),
    sgd_control(1): G("dense_finetune", _SGD + (_LR + "1.0",), (0.0,)),
    "retrain_kd_obs_sens_nodrop_sgd3_wu_avg25": G("retrain_90", _SGD + (_LR + "3.0",),
                                                  RETRAIN_SWEEP),
    sgd_control(3): G("dense_finetune", _SGD + (_LR + "3.0",), (0.0,)),
    # Shape-changing methods fine-tuned afterwards by KD from the dense model (issue #11);
    # the sweep value is the fraction of the compressed matrices' parameters removed.
    "lowrank_data_ft": G("lowrank_70_ft", _LR1_DROPOUT, (0.7,)),
    "structured_obs_ft": G("structured_30_ft", (), (0.3,)),
    # lr 1e-2 without dropout at 70 % and 80 % removed, and lr 3e-3 (the book's lowrank_70_ft).
    "lowrank_data_ft_nodrop_lr10": G("lowrank_70_ft", (_LR + "0.01",), (0.7,)),
    "lowrank_data_ft80_nodrop_lr10": G("lowrank_70_ft", (_LR + "0.01",), (0.8,)),
    "lowrank_data_ft_nodrop_lr3": G("lowrank_70_ft", (), (0.7,)),
    # Structured (30 %, fine-tuned) and then one-shot OBS of half the remaining matrices'
    # weights with the sensitivity allocation (the book's structured_obs).
    "structured_obs_ft_obs_sens": G("structured_obs", (), (0.3,)),
    # Low-rank (50 %), weight sharing and the shared values trained afterwards (Deep
    # Compression's centroid training), assignments and zeros fixed: a quarter epoch at
    # lr 1e-3 with 16 values (cluster 0.5) or 8 (0.625); and 16 values over half an epoch
    # at lr 3e-3 (the book's lowrank_cluster_ft).
    "lowrank_data_cluster_ft": G("lowrank_cluster_ft", _QUARTER, (0.5,)),
    "lowrank_data_cluster8_ft": G("lowrank_cluster_ft", _QUARTER + ("cluster.amount=0.625",),
                                  (0.5,)),
    "lowrank_data_cluster_ft_lr3": G("lowrank_cluster_ft", (), (0.5,)),
}
del G
