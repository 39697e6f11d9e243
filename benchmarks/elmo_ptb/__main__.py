"""The command line of the ELMo-shaped PTB benchmark (see the package docstring)."""

import os
import sys
import time

from absl import app
from absl import flags

from pipelines import cli  # first: Keras 2 before TensorFlow
from benchmarks.elmo_ptb import downstream, groups, rows as rows_lib, run
from benchmarks.elmo_ptb.report import report
from prunelm_tf.export.tflite import QUANTIZATION_MODES
from prunelm_tf.utils import files

_DENSE_DIR = flags.DEFINE_string("dense_dir", None, "The pipelines.train run of "
                                 "pipelines/flags/ptb_elmo.flags.", required=True)
_OUT_DIR = flags.DEFINE_string("out_dir", None, "The benchmark folder; a second call resumes.",
                               required=True)
_GROUPS = flags.DEFINE_list("groups", list(groups.ONE_SHOT), "One-shot groups to run.")
_RETRAIN_GROUPS = flags.DEFINE_list(
    "retrain_groups", [], "Retraining groups to run: recipe groups (e.g. "
    "retrain_kd_obs_sens_nodrop_lr10_wu_avg25, a dense control) or --method=retrain groups ("
    f"{', '.join(run.method_retrain_groups(1))}, tfmot pruning on a schedule from the dense "
    "model).")
_SHAPED_GROUPS = flags.DEFINE_list("shaped_groups", [], "Shape-changing groups to run (of "
                                   f"{', '.join(groups.SHAPED)}), each with its own sweep.")
_FINETUNED_GROUPS = flags.DEFINE_list(
    "finetuned_groups", [], "Recipe groups that change the shape and fine-tune by KD "
    "afterwards, e.g. lowrank_data_ft_nodrop_lr3, structured_obs_ft, lowrank_data_cluster_ft_lr3.")
_RECIPE_GROUPS = flags.DEFINE_list(
    "recipe_groups", [], "Any recipe groups: each runs its recipe with its overrides once per "
    "sweep value, into DIR/<group>/<amount x 100>.")
_COMBINED_GROUPS = flags.DEFINE_list(
    "combined_groups", [], "Combinations: a finished variant of another group compressed "
    f"further (of {', '.join(groups.COMBINED)}).")
_RETRAIN_STEPS = flags.DEFINE_integer(
    "retrain_steps", None, "Optimizer steps per retrained variant. --method=retrain groups: "
    "default 1,320 (one PTB epoch at batch 32). Recipe groups: every fine-tuning stage's steps, "
    "unless the group sets its own; default: the recipe's.", lower_bound=1)
_RETRAIN_SWEEP = flags.DEFINE_list(
    "retrain_sweep", [], "Sparsities replacing the sweep of the --retrain_groups that remove "
    f"something (default: each group's own; {','.join(map(str, groups.RETRAIN_SWEEP))} for "
    "most).")
_PRUNE_SOFTMAX = flags.DEFINE_bool("prune_softmax", False,
                                   "Also prune the softmax (default: the embedder only).")
_CALIBRATION_SENTENCES = flags.DEFINE_integer(
    "calibration_sentences", 300, "PTB valid sentences the data-aware methods and the "
    "sensitivity allocation calibrate on.", lower_bound=1)
_DOWNSTREAM = flags.DEFINE_list(
    "downstream", [], "Group/variant names (or group for all its variants) to evaluate on "
    "CoNLL-2003 NER, SST-2 and MRPC, with the dense model (issue #12), after the groups "
    "above; resumable.")
_DOWNSTREAM_NER_SEEDS = flags.DEFINE_list(
    "downstream_ner_seeds", [], "With --downstream: evaluate those variants' NER only, as mean "
    "± std over these tagger seeds (e.g. 0,1,2, as the dense model), for the target lines; "
    "their single-seed entries stay.")
_DOWNSTREAM_QUANTIZATION = flags.DEFINE_enum(
    "downstream_quantization", "none", QUANTIZATION_MODES, "Artifact the downstream tasks "
    "read: none (the float model) or a TFLite mode of the variants.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only gather the finished variants of "
                                 "every group folder in --out_dir into the report (computes "
                                 "nothing).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  out_dir, mode = _OUT_DIR.value, _DOWNSTREAM_QUANTIZATION.value
  start = time.time()
  if _REPORT_ONLY.value:
    rows = rows_lib.finished_rows(out_dir)
  else:
    rows = run.run_groups(
        _DENSE_DIR.value, out_dir, groups=_GROUPS.value, shaped_groups=_SHAPED_GROUPS.value,
        combined_groups=_COMBINED_GROUPS.value, retrain_groups=_RETRAIN_GROUPS.value,
        finetuned_groups=_FINETUNED_GROUPS.value, recipe_groups=_RECIPE_GROUPS.value,
        retrain_steps=_RETRAIN_STEPS.value,
        retrain_sweep=[float(s) for s in _RETRAIN_SWEEP.value],
        prune_softmax=_PRUNE_SOFTMAX.value, calibration_sentences=_CALIBRATION_SENTENCES.value)
    if _DOWNSTREAM.value:
      downstream.evaluate_downstream(_DENSE_DIR.value, out_dir, _DOWNSTREAM.value, mode,
                                     ner_seeds=[int(x) for x in _DOWNSTREAM_NER_SEEDS.value])
  downstream.with_downstream(rows, out_dir, mode)
  embedder_bytes = run.embedder_saved_model_bytes(_DENSE_DIR.value, out_dir)
  command = "python -m benchmarks.elmo_ptb " + " ".join(sys.argv[1:])
  record = {"rows": rows, "dense_embedder_saved_model_bytes": embedder_bytes,
            "command": command}
  if not _REPORT_ONLY.value:
    record["wall_seconds"] = time.time() - start
  files.write_json(os.path.join(out_dir, "report.json"), record)
  print(report(rows, embedder_bytes, out_dir, command, mode))


if __name__ == "__main__":
  cli.run(main)
