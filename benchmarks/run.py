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
   frozen-feature probe, sizes; then, in a pass of its own, TFLite (1 and 2 threads)
   and SavedModel latency of every artifact.
4. OUT/report.json, OUT/report.md, four PNG plots, TensorBoard HParams in OUT/tensorboard.
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
from tensorboard.plugins.hparams import api as hp

from benchmarks import ptb_sweep
from benchmarks import report as report_lib
from prunelm_tf.compression import compress
from prunelm_tf.evaluation import LatencyConfig, ProbeConfig
from prunelm_tf.evaluation.evaluate import EvaluateConfig, evaluate

REPO = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
QUICK_DENSE_FLAGS = ["--lstm_dim=256", "--projection_dim=128", "--num_epochs=1",
                     "--max_sentences=6000", "--num_sampled=1024"]

HPARAMS = [hp.HParam("group", hp.Discrete(["dense", "threshold", "threshold_sens", "retrain"])),
           hp.HParam("method", hp.Discrete(["dense", "threshold", "retrain"])),
           hp.HParam("target_sparsity", hp.RealInterval(0.0, 1.0)),
           hp.HParam("quantization", hp.Discrete(["none", "dynamic", "float16", "int8"]))]
METRICS = ["perplexity/mean", "perplexity/forward", "perplexity/backward", "sst2/accuracy",
           "sparsity/overall", "size/tflite_zip_bytes", "size/saved_model_zip_bytes",
           "latency/tflite_p50_ms_1_thread", "latency/tflite_p50_ms_2_threads",
           "latency/saved_model_p50_ms_1_thread"]


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


def write_hparams(log_dir: str, entries) -> None:
  """One HParams session per entry, with the same keys for every entry of every run."""
  with tf.summary.create_file_writer(log_dir).as_default():
    hp.hparams_config(hparams=HPARAMS, metrics=[hp.Metric(m) for m in METRICS])
  for e in entries:
    trial = e["name"].replace("/", "-")
    values = {"sparsity/overall": e["sparsity"],
              "size/tflite_zip_bytes": e["sizes"]["tflite_zip_bytes"],
              "size/saved_model_zip_bytes": e["sizes"]["saved_model_zip_bytes"],
              "sst2/accuracy": e["sst2_accuracy"]}
    for k in ("mean", "forward", "backward"):
      values[f"perplexity/{k}"] = e["perplexity"][k] if e["perplexity"] else None
    tfl, sm = e["latency"]["tflite"], e["latency"]["saved_model"]
    values["latency/tflite_p50_ms_1_thread"] = tfl.get("1", {}).get("p50_ms")
    values["latency/tflite_p50_ms_2_threads"] = tfl.get("2", {}).get("p50_ms")
    values["latency/saved_model_p50_ms_1_thread"] = sm.get("1", {}).get("p50_ms")
    with tf.summary.create_file_writer(os.path.join(log_dir, trial)).as_default():
      hp.hparams({"group": e["group"], "method": e["method"],
                  "target_sparsity": e["target_sparsity"], "quantization": e["quantization"]},
                 trial_id=trial)
      for name, value in values.items():
        if value is not None:
          tf.summary.scalar(name, value, step=0)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out_dir", required=True, help="Run folder of the benchmark.")
  parser.add_argument("--quick", action="store_true",
                      help="Small dense model, fewer variants, data subsets (<= 15 min).")
  parser.add_argument("--dense_dir", default="",
                      help="Reuse this pipelines.train run folder as the dense model "
                           "instead of training one (its training time is then not included).")
  parser.add_argument("--sst2_train_sentences", type=int, default=None,
                      help="SST-2 probe training sentences (default 20,000 full, 2,000 quick).")
  args = parser.parse_args()
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
      perplexity_corpus=os.path.join(ptb_sweep.PTB, "ptb.test.txt"),
      max_sentences=settings.eval_sentences, sst2_dir=os.path.join(ptb_sweep.SHARED_DATA, "sst2"),
      probe=ProbeConfig(max_train_sentences=sst2_train),
      latency=LatencyConfig(runs=30 if args.quick else 100, warmup=5 if args.quick else 10),
      # Words per second of each TFLite file on 1,000 PTB test sentences (latency pass).
      throughput_corpus=os.path.join(ptb_sweep.PTB, "ptb.test.txt"),
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
        e["group"] = "dense" if e["variant"] == "dense" else group
      entries += found
    stage_seconds["latency" if measure_latency else "evaluate"] = time.time() - t
    t = time.time()

  dense_bytes = results["threshold"]["dense"]["sizes"]["saved_model_bytes"]
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
      ] + ([f"The dense model was reused from {dense_dir}: its training time is not in "
            "wall_seconds."] if args.dense_dir else []),
  }
  write_hparams(os.path.join(args.out_dir, "tensorboard", "hparams"), entries)
  report_lib.write_report(report, args.out_dir)
  print(open(os.path.join(args.out_dir, "report.md"), encoding="utf-8").read())


if __name__ == "__main__":
  main()
