"""The command line of the softmax-less track (see the package docstring)."""

import sys
import time

from absl import app
from absl import flags

from pipelines import cli  # first: Keras 2 before TensorFlow
from benchmarks.elmo_dropin import downstream, groups, report, rows as rows_lib, run
from prunelm_tf.evaluation.evaluate import DOWNSTREAM_PROTOCOLS

_DENSE_DIR = flags.DEFINE_string(
    "dense_dir", "", "A pipelines.train run of pipelines/flags/ptb_elmo.flags; exported once to "
    "an ELMo options.json + HDF5 without softmax in OUT_DIR/elmo/, which every group then "
    "compresses. Give this or --options_file/--weight_file.")
_OPTIONS_FILE = flags.DEFINE_string("options_file", "", "A released ELMo's options.json "
                                    "(with --weight_file), instead of --dense_dir.")
_WEIGHT_FILE = flags.DEFINE_string("weight_file", "", "A released ELMo's HDF5 weights (with "
                                   "--options_file), instead of --dense_dir.")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "The track's folder; a second call resumes.",
                               required=True)
_GROUPS = flags.DEFINE_list(
    "groups", list(groups.FAMILIES), "Groups to run: group names or families "
    f"({', '.join(groups.FAMILIES)}: all their groups). Groups: {', '.join(groups.GROUPS)}.")
_CALIBRATION_SENTENCES = flags.DEFINE_integer(
    "calibration_sentences", None, "PTB valid sentences the one-shot methods and the allocation "
    "curves calibrate on (default: each recipe's, 300).", lower_bound=1)
_RETRAIN_STEPS = flags.DEFINE_integer(
    "retrain_steps", None, "Steps of every fine-tuning stage (default: each recipe's; 1,320 = "
    "one PTB epoch at batch 32, about an hour on 2 cores).", lower_bound=1)
_MAX_SENTENCES = flags.DEFINE_integer(
    "max_sentences", 0, "Read at most this many sentences of each corpus (0 = all); for a "
    "quick look only, the figures then do not describe PTB test.", lower_bound=0)
_DOWNSTREAM = flags.DEFINE_list(
    "downstream", ["all"], "Variants to evaluate downstream after the groups: all, group names "
    "or GROUP/VARIANT (the report's names); empty: none. Cached per variant.")
_DOWNSTREAM_MODE = flags.DEFINE_enum(
    "downstream_quantization", "dynamic", ["dynamic", "none"], "The variants' artifact the "
    "downstream models read: dynamic (the dynamic-range TFLite file whose size is reported) or "
    "none (the float model).")
_PROTOCOLS = flags.DEFINE_list(
    "downstream_protocol", list(DOWNSTREAM_PROTOCOLS)[::-1], "dropin (the dense model's "
    "downstream models fed each variant unchanged) and/or retrain (models trained on the "
    "variant's own features; three NER taggers per variant).")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only gather what --out_dir holds into "
                                 "the report (computes nothing).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  out_dir, mode = _OUT_DIR.value, _DOWNSTREAM_MODE.value
  command = "python -m benchmarks.elmo_dropin " + " ".join(sys.argv[1:])
  start, extra = time.time(), {}
  if not _REPORT_ONLY.value:
    try:
      selected = groups.select(_GROUPS.value)
      if _DOWNSTREAM.value:  # the protocols and the tasks' data, before any work
        downstream.downstream_config("dense", _PROTOCOLS.value)
      elmo = run.elmo_input(out_dir, dense_dir=_DENSE_DIR.value,
                            options_file=_OPTIONS_FILE.value, weight_file=_WEIGHT_FILE.value)
    except (ValueError, FileNotFoundError) as e:
      raise app.UsageError(str(e)) from None
    extra["run_seconds"] = run.run_groups(
        elmo, out_dir, selected, max_sentences=_MAX_SENTENCES.value,
        calibration_sentences=_CALIBRATION_SENTENCES.value, retrain_steps=_RETRAIN_STEPS.value)
    if _DOWNSTREAM.value:
      downstream.evaluate_downstream(out_dir, rows_lib.finished_rows(out_dir), _DOWNSTREAM.value,
                                     mode=mode, protocols=_PROTOCOLS.value)
    extra["wall_seconds"] = time.time() - start
  rows = rows_lib.finished_rows(out_dir)
  downstream.with_downstream(out_dir, rows, mode)
  print(report.report(rows, out_dir, command, mode, extra))


if __name__ == "__main__":
  cli.run(main)
