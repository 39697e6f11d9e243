r"""The benchmark report: dense -> compression sweep -> evaluation of every variant, one command.

  python -m benchmarks.run --quick --out_dir=/tmp/prunelm_quick     # <= 15 min on 2 cores
  python -m benchmarks.run --out_dir=saved_models/benchmark          # full, <= 3 h on 2 cores
  python -m benchmarks.run --dense_dir=saved_models/ptb_small --out_dir=...   # reuse a dense run

Stages, each resumable (a second call with the same --out_dir continues):
1. dense: `pipelines.train --flagfile=pipelines/flags/ptb_small.flags` into OUT/dense
   (--quick: a smaller model on 6,000 PTB sentences, one epoch), unless --dense_dir.
2. compression (benchmarks/ptb_sweep.py): uniform thresholding, sensitivity-allocated
   thresholding and tfmot retraining, TFLite none/dynamic/int8, into OUT/compress/<group>.
3. evaluation (prunelm_tf.evaluation): PTB test perplexity of every artifact
   (quantized ones through an LM TFLite of the same mode), SST-2 dev accuracy of a
   frozen-feature probe (and, with --ner_dir / --mrpc_dir, CoNLL-2003 NER test F1 and
   MRPC dev accuracy / F1), sizes; then, in a pass of its own, TFLite (1 and 2 threads)
   and SavedModel latency of every artifact.
4. OUT/report.json, OUT/report.md, OUT/report.html (one self-contained page), PNG plots
   (benchmarks/report.py), TensorBoard HParams in OUT/tensorboard/hparams (check it with
   benchmarks/hparams_screenshot.py).
All data are read from ../shared/data; nothing is tuned on the test split (the
sensitivity allocation is measured on PTB valid).
"""

import argparse
import dataclasses
import os
import platform
import subprocess
import sys
import time

import prunelm_tf  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from benchmarks import paths
from benchmarks import ptb_sweep
from benchmarks import report as report_lib
from prunelm_tf.compression import compress
from prunelm_tf.evaluation import LatencyConfig, ProbeConfig
from prunelm_tf.evaluation.evaluate import EvaluateConfig, evaluate
from prunelm_tf.reporting import entries as entries_lib
from prunelm_tf.reporting.hparams import EVALUATION_METRICS, evaluation_sessions, write_hparams

REPO = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
QUICK_DENSE_FLAGS = ["--lstm_dim=256", "--projection_dim=128", "--num_epochs=1",
                     "--max_sentences=6000", "--num_sampled=1024"]

def machine() -> dict:
  cpu = platform.processor()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  try:
    from importlib.metadata import version
    litert = version("ai-edge-litert")
  except Exception:  # pylint: disable=broad-except
    litert = "unknown"
  return {"cpus": os.cpu_count(), "cpu_model": cpu, "python": platform.python_version(),
          "tensorflow": tf.__version__, "ai_edge_litert": litert,
          "platform": platform.platform()}


def train_dense(out_dir: str, quick: bool) -> str:
  """Trains (or resumes) the dense PTB biLM with the committed flagfile; returns its folder."""
  run_dir = os.path.join(out_dir, "dense")
  if os.path.exists(os.path.join(run_dir, "metrics.json")):
    return run_dir
  cmd = [sys.executable, "-m", "pipelines.train",
         "--flagfile=" + os.path.join("pipelines", "flags", "ptb_small.flags"),
         f"--run_dir={run_dir}"] + (QUICK_DENSE_FLAGS if quick else [])
  subprocess.run(cmd, cwd=REPO, check=True)
  return run_dir


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out_dir", required=True, help="Run folder of the benchmark.")
  parser.add_argument("--quick", action="store_true",
                      help="Small dense model, fewer variants, data subsets (<= 15 min).")
  parser.add_argument("--dense_dir", default="",
                      help="Reuse this pipelines.train run folder as the dense model "
                           "instead of training one (its training time is then not included).")
  parser.add_argument("--ner_dir", default="",
                      help="Folder with CoNLL-2003 eng.train/eng.testa/eng.testb: adds NER test "
                           "F1 of every entry (a tagger trained per entry: minutes each; e.g. "
                           "../shared/data/conll2003). Empty = no NER.")
  parser.add_argument("--mrpc_dir", default="",
                      help="Folder with GLUE MRPC train.tsv/dev.tsv: adds MRPC dev accuracy and "
                           "F1 of every entry (e.g. ../shared/data/mrpc). Empty = no MRPC.")
  parser.add_argument("--sst2_train_sentences", type=int, default=None,
                      help="SST-2 probe training sentences (default 20,000 full, 2,000 quick).")
  args = parser.parse_args()
  try:  # the task folders are checked before any work, not after hours of compression
    EvaluateConfig(target=args.out_dir, ner_dir=args.ner_dir, mrpc_dir=args.mrpc_dir)
  except (FileNotFoundError, ValueError) as e:
    parser.error(str(e))
  start = time.time()
  settings = ptb_sweep.QUICK if args.quick else ptb_sweep.FULL
  stage_seconds = {}

  t = time.time()
  dense_dir = args.dense_dir or train_dense(args.out_dir, args.quick)
  stage_seconds["dense"] = time.time() - t

  t = time.time()
  results = {}
  for group, config in ptb_sweep.compression_configs(dense_dir, settings).items():
    results[group] = compress(config, os.path.join(args.out_dir, "compress", group))
  stage_seconds["compress"] = time.time() - t

  t = time.time()
  sst2_train = args.sst2_train_sentences
  if sst2_train is None:
    sst2_train = 2000 if args.quick else 20000
  eval_config = dict(
      perplexity_corpus=paths.PTB_TEST,
      max_sentences=settings.eval_sentences, sst2_dir=os.path.join(paths.SHARED_DATA, "sst2"),
      probe=ProbeConfig(max_train_sentences=sst2_train), ner_dir=args.ner_dir,
      mrpc_dir=args.mrpc_dir,
      latency=LatencyConfig(runs=30 if args.quick else 100, warmup=5 if args.quick else 10),
      # Words per second of each TFLite file on 1,000 PTB test sentences (latency pass).
      throughput_corpus=paths.PTB_TEST,
      throughput_sentences=200 if args.quick else 1000)
  # Two passes: quality first (perplexity, SST-2, sizes), then every latency in one
  # pass of its own, so that all latencies are measured under the same conditions.
  for measure_latency in (False, True):
    entries = []
    for i, group in enumerate(results):
      found = evaluate(EvaluateConfig(target=os.path.join(args.out_dir, "compress", group),
                                      measure_latency=measure_latency, **eval_config),
                       os.path.join(args.out_dir, "evaluation"), group=group,
                       skip=() if i == 0 else ("dense",))
      for e in found:  # entries evaluated earlier (e.g. by pipelines.evaluate) get their group
        e["group"] = entries_lib.DENSE if entries_lib.is_dense(e) else group
      entries += found
    stage_seconds["latency" if measure_latency else "evaluate"] = time.time() - t
    t = time.time()

  task_notes = ([f"NER: CoNLL-2003 from {args.ner_dir}, frozen features, ScalarMix + BiLSTM "
                 "tagger trained on eng.train, best epoch on eng.testa (dev), F1 on eng.testb "
                 "(test)."] if args.ner_dir else [])
  task_notes += ([f"MRPC: GLUE MRPC from {args.mrpc_dir}, pooled pair features, the SST-2 "
                  "probe settings, accuracy and F1 on dev."] if args.mrpc_dir else [])
  # Every group compressed the same dense model: any run's dense record will do.
  dense_bytes = next(iter(results.values()))["dense"]["sizes"]["saved_model_bytes"]
  report = {
      "machine": machine(), "mode": "quick" if args.quick else "full",
      "command": "python -m benchmarks.run " + " ".join(sys.argv[1:]),
      "wall_seconds": time.time() - start, "stage_seconds": stage_seconds,
      "dense_dir": dense_dir, "dense_saved_model_bytes": dense_bytes, "entries": entries,
      "settings": dataclasses.asdict(settings), "sst2_train_sentences": sst2_train,
      "targets": report_lib.check_targets(entries, dense_bytes),
      "notes": [
          "Perplexity: PTB test" + (f" (first {settings.eval_sentences} sentences)"
                                    if settings.eval_sentences else " (all 3,761 sentences)") +
          "; quantization 'none' = the Keras model, other modes = an LM TFLite file of that "
          "mode (softmax included).",
          f"SST-2: frozen representations, mean-pooled, learned ScalarMix + logistic probe "
          f"trained on {sst2_train} seeded train sentences, accuracy on all 872 dev sentences.",
          "Latency: batch 1, a 20-token sentence, each measurement in its own child process "
          "(TFLite children import no TensorFlow); p50/p90 after warm-up.",
          "Sensitivity allocation is measured on PTB valid; nothing is tuned on PTB test.",
      ] + task_notes + ([f"The dense model was reused from {dense_dir}: its training time is "
                         "not in wall_seconds."] if args.dense_dir else []),
  }
  report_lib.write_report(report, args.out_dir)
  write_hparams(os.path.join(args.out_dir, "tensorboard", "hparams"), evaluation_sessions(entries),
                EVALUATION_METRICS)
  print(open(os.path.join(args.out_dir, "report.md"), encoding="utf-8").read())


if __name__ == "__main__":
  main()
